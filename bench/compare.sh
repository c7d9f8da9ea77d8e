#!/usr/bin/env bash
# Side-by-side broker benchmark: Tern vs Mosquitto vs rumqttd, same machine,
# same run, same load tool (`tern bench`). See docs/benchmarks.md.
#
#   bench/compare.sh                 # everything, RUNS=3
#   RUNS=5 bench/compare.sh
#   TERN_REV=HEAD bench/compare.sh   # build Tern from a clean export of a commit
#
# Environment:
#   RUNS=3          repetitions of every scenario (median and min-max reported)
#   DURATION=5      measured seconds per scenario (conns: hold time)
#   WARMUP=2        warm-up seconds per scenario
#   CONNS=10000     idle connections in the conns scenario
#   CONNECT_CONCURRENCY=50  conns: connection attempts in flight
#   BROKERS="tern mosquitto rumqttd"
#   UNPINNED=1      also run Tern unpinned (fan-in QoS 0, pairs QoS 1)
#   STALL=1         also run the stalled-subscriber memory test
#   SWEEP=1         also run fan-out 1->100 QoS 0 open loop at SWEEP_RATES
#   SWEEP_RATES="1000 2000 5000 10000 20000 30000 40000"   publishes/s (x100 deliveries)
#   TERN_REV=       if set (e.g. HEAD), build that commit from `git archive`
#                   into bench/.tools/ instead of the working tree
#   BROKER_CPU=0 TOOL_CPU=1   cores for taskset
#
# Every broker is started fresh for every measurement, pinned to BROKER_CPU
# with taskset, on a free port; the load tool runs pinned to TOOL_CPU. Raw
# JSON lines go to bench/results/<timestamp>.jsonl, the Markdown table to
# stdout and bench/results/<timestamp>.md.
set -u -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

RUNS=${RUNS:-3}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-2}
CONNS=${CONNS:-10000}
# rumqttd 0.20 accepts ~900 connections/s (it sleeps >= 1 ms after every
# accept); with the tool's default 500 attempts in flight some of them wait
# more than the tool's 10 s CONNACK timeout. 50 in flight works for all three.
CONNECT_CONCURRENCY=${CONNECT_CONCURRENCY:-50}
BROKERS=${BROKERS:-"tern mosquitto rumqttd"}
UNPINNED=${UNPINNED:-1}
STALL=${STALL:-1}
SWEEP=${SWEEP:-1}
SWEEP_RATES=${SWEEP_RATES:-"1000 2000 5000 10000 20000 30000 40000"}
TERN_REV=${TERN_REV:-}
BROKER_CPU=${BROKER_CPU:-0}
TOOL_CPU=${TOOL_CPU:-1}

TS=$(date -u +%Y%m%dT%H%M%SZ)
TOOLS="$ROOT/bench/.tools"
RESULTS="$ROOT/bench/results"
OUT="$RESULTS/$TS.jsonl"
WORK="$RESULTS/$TS"          # broker configs and logs, tool stdout/stderr
mkdir -p "$TOOLS" "$WORK"
: >"$OUT"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- cleanup
BPID=""          # the broker currently running
BDATA=""         # its data directory (Tern), removed when it stops
AUX_PIDS=()      # helpers (stalled subscriber, RSS sampler)
stop_pid() {     # stop_pid PID: TERM, wait up to 5 s, then KILL
    local pid=$1 i
    [ -n "$pid" ] || return 0
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
    kill -TERM "$pid" 2>/dev/null
    for i in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    return 0
}
cleanup() {
    local p
    for p in "${AUX_PIDS[@]}"; do stop_pid "$p"; done
    AUX_PIDS=()
    stop_pid "$BPID"
    BPID=""
    [ -n "$BDATA" ] && rm -rf "$BDATA"
    BDATA=""
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# ---------------------------------------------------------------- fd limit
# 10,000 connections need 10,000+ descriptors in the tool and in the broker.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null
NOFILE=$(ulimit -n)
if [ "$NOFILE" != unlimited ] && [ "$NOFILE" -lt $((CONNS + 1000)) ]; then
    log "warning: ulimit -n is $NOFILE (hard $(ulimit -Hn)); conns with $CONNS connections may fail"
fi

# ---------------------------------------------------------------- Tern
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$TERN_REV" ]; then
    COMMIT=$(git rev-parse --short "$TERN_REV") || die "unknown TERN_REV $TERN_REV"
    SRC="$TOOLS/src-$COMMIT"
    log "building Tern $COMMIT (git archive) in $SRC"
    rm -rf "$SRC" && mkdir -p "$SRC"
    git archive "$COMMIT" | tar -x -C "$SRC" || die "git archive failed"
    (cd "$SRC" && CARGO_TARGET_DIR="$TOOLS/target" cargo build --release --bin tern) \
        || die "cargo build --release failed"
    BUILT="$TOOLS/target/release/tern"
    DIRTY=false
else
    log "building Tern (working tree) with cargo build --release"
    cargo build --release --bin tern || die "cargo build --release failed"
    BUILT="$ROOT/target/release/tern"
    if [ -n "$(git status --porcelain -- src crates Cargo.toml Cargo.lock 2>/dev/null)" ]; then
        DIRTY=true
    else
        DIRTY=false
    fi
fi
# A private copy: a concurrent rebuild must not swap the binary mid-run.
TERN="$TOOLS/tern-$TS"
cp "$BUILT" "$TERN" || die "copying $BUILT"
TOOL=("$TERN" bench)

# ---------------------------------------------------------------- Mosquitto
MOSQUITTO=$(command -v mosquitto || { [ -x /usr/sbin/mosquitto ] && echo /usr/sbin/mosquitto; } || true)
if [ -z "$MOSQUITTO" ] && [[ " $BROKERS " == *" mosquitto "* ]]; then
    log "installing mosquitto (apt-get)"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq mosquitto
    MOSQUITTO=$(command -v mosquitto || { [ -x /usr/sbin/mosquitto ] && echo /usr/sbin/mosquitto; } || true)
fi
MOSQUITTO_VERSION=""
[ -n "$MOSQUITTO" ] && MOSQUITTO_VERSION=$("$MOSQUITTO" -h 2>&1 | sed -n 's/^mosquitto version //p' | head -1)

# ---------------------------------------------------------------- rumqttd
find_rumqttd() {
    local c
    for c in "$TOOLS/bin/rumqttd" "$HOME/.cargo/bin/rumqttd" "$(command -v rumqttd 2>/dev/null)"; do
        [ -n "$c" ] && [ -x "$c" ] && { echo "$c"; return 0; }
    done
    return 1
}
RUMQTTD=$(find_rumqttd || true)
RUMQTTD_NOTE=""
if [ -z "$RUMQTTD" ] && [[ " $BROKERS " == *" rumqttd "* ]]; then
    log "installing rumqttd (cargo install --locked) into $TOOLS"
    if ! timeout 1800 cargo install rumqttd --locked --root "$TOOLS" >"$WORK/rumqttd-install.log" 2>&1; then
        # rumqttd 0.20.0's lock file pins metrics 0.22.1, which current
        # rustc rejects (E0521); without --locked cargo takes the fixed
        # semver-compatible releases.
        log "cargo install --locked failed (see $WORK/rumqttd-install.log); retrying without --locked"
        RUMQTTD_NOTE="installed without --locked"
        timeout 1800 cargo install rumqttd --root "$TOOLS" >>"$WORK/rumqttd-install.log" 2>&1 || true
    fi
    RUMQTTD=$(find_rumqttd || true)
    [ -n "$RUMQTTD" ] || log "warning: rumqttd could not be installed; skipping it (see $WORK/rumqttd-install.log)"
fi
RUMQTTD_VERSION=""
[ -n "$RUMQTTD" ] && RUMQTTD_VERSION=$("$RUMQTTD" --version 2>/dev/null | awk '{print $2}')

# ---------------------------------------------------------------- helpers
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
load1() { cut -d' ' -f1 /proc/loadavg; }
rss_kib() { awk '/^VmRSS:/{print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

write_mosquitto_conf() {  # write_mosquitto_conf PORT FILE
    cat >"$2" <<EOF
# Generated by bench/compare.sh. Everything not listed is Mosquitto's default
# (persistence false, set_tcp_nodelay false, max_connections -1, ...).
listener $1 127.0.0.1
allow_anonymous true
# Defaults, written out because they shape the QoS 1 results:
max_inflight_messages 20
max_queued_messages 1000
EOF
}

# start_broker NAME PINNED(1|0) TAG: starts NAME fresh; sets BPID, BPORT.
start_broker() {
    local name=$1 pinned=$2 tag=$3 pin=() i
    [ "$pinned" = 1 ] && pin=(taskset -c "$BROKER_CPU")
    BPORT=$(free_port)
    local logf="$WORK/$tag.broker.log"
    case $name in
    tern)
        # A fresh store per start: runs never see another run's sessions.
        BDATA="$WORK/tern-data.$tag"
        rm -rf "$BDATA"
        "${pin[@]}" "$TERN" serve --mqtt "127.0.0.1:$BPORT" --sys-interval-secs 0 \
            --data-dir "$BDATA" >"$logf" 2>&1 &
        ;;
    mosquitto)
        write_mosquitto_conf "$BPORT" "$WORK/mosquitto.conf"
        "${pin[@]}" "$MOSQUITTO" -c "$WORK/mosquitto.conf" >"$logf" 2>&1 &
        ;;
    rumqttd)
        local v5
        v5=$(free_port)
        sed -e "s/@V4_PORT@/$BPORT/" -e "s/@V5_PORT@/$v5/" \
            "$ROOT/bench/rumqttd.toml" >"$WORK/rumqttd.toml"
        "${pin[@]}" "$RUMQTTD" -q -c "$WORK/rumqttd.toml" >"$logf" 2>&1 &
        ;;
    *) die "unknown broker $name" ;;
    esac
    BPID=$!   # taskset execs the broker: this is the broker's PID
    for i in $(seq 100); do
        port_open "$BPORT" && return 0
        kill -0 "$BPID" 2>/dev/null || break
        sleep 0.1
    done
    log "error: $name did not accept on port $BPORT (log: $logf)"
    stop_broker
    return 1
}
stop_broker() {
    stop_pid "$BPID"; BPID=""
    [ -n "$BDATA" ] && rm -rf "$BDATA"
    BDATA=""
    return 0
}

# bench_run BROKER MODE SCENARIO RUN -- TOOL ARGS...: one measurement on the
# running broker; appends one JSON line to $OUT (the tool's, plus context).
bench_run() {
    local broker=$1 mode=$2 scen=$3 run=$4; shift 5
    local tag="$broker.$mode.$scen.$run" pin=() rc l0 l1 alive json
    [ "$mode" = unpinned ] || pin=(taskset -c "$TOOL_CPU")
    l0=$(load1)
    timeout -k 5 $((WARMUP + DURATION + 60)) "${pin[@]}" "${TOOL[@]}" \
        --port "$BPORT" --broker-pid "$BPID" --mqtt-version 3 --size 64 \
        --duration "$DURATION" --warmup "$WARMUP" --json "$@" \
        >"$WORK/$tag.out" 2>"$WORK/$tag.err"
    rc=$?
    l1=$(load1)
    if kill -0 "$BPID" 2>/dev/null; then alive=true; else alive=false; fi
    json=$(grep '^{' "$WORK/$tag.out" | tail -1)
    if [ -z "$json" ]; then
        json=$(jq -cn --arg e "$(tail -3 "$WORK/$tag.err" | tr '\n' ' ')" '{error:$e}')
    fi
    jq -c --arg b "$broker" --arg m "$mode" --arg s "$scen" \
        --argjson r "$run" --argjson rc "$rc" --argjson l0 "$l0" --argjson l1 "$l1" \
        --argjson alive "$alive" --arg args "$*" \
        '{kind:"bench", broker:$b, mode:$m, label:$s, run:$r, rc:$rc,
          load1_before:$l0, load1_after:$l1, broker_alive:$alive, args:$args} + .' \
        <<<"$json" >>"$OUT"
    log "  $tag rc=$rc load=$l0 $(jq -r '
        if .error then "ERROR " + .error
        elif .scenario == "conns" then "held=\(.held) dropped=\(.dropped) B/conn=\(.broker_rss_bytes_per_conn)"
        else "delivered/s=\(.delivered_per_sec|floor) lost=\(.lost) p99=\(.p99_us)us broker=\(.broker_cpu_pct|floor)% tool=\(.tool_cpu_pct|floor)%" end' \
        <<<"$(tail -1 "$OUT")")"
    [ "$alive" = true ] || log "  warning: $broker exited during $tag (log: $WORK/$tag.broker.log)"
}

# ---------------------------------------------------------------- metadata
jq -cn --arg ts "$TS" --arg commit "$COMMIT" --argjson dirty "$DIRTY" --arg rev "$TERN_REV" \
    --arg cpu "$(lscpu | sed -n 's/^Model name: *//p' | head -1)" \
    --arg nproc "$(nproc)" --arg kernel "$(uname -r)" --arg nofile "$NOFILE" \
    --arg mosq "$MOSQUITTO_VERSION" --arg rumq "$RUMQTTD_VERSION" --arg rnote "$RUMQTTD_NOTE" \
    --argjson runs "$RUNS" --argjson dur "$DURATION" --argjson warm "$WARMUP" \
    --argjson conns "$CONNS" --arg load "$(cat /proc/loadavg)" \
    '{kind:"meta", ts:$ts, tern_commit:$commit, tern_dirty:$dirty, tern_rev:$rev,
      cpu:$cpu, nproc:$nproc, kernel:$kernel, ulimit_n:$nofile,
      mosquitto:$mosq, rumqttd:$rumq, rumqttd_note:$rnote, runs:$runs,
      duration:$dur, warmup:$warm, conns:$conns, loadavg_start:$load}' >>"$OUT"

# ---------------------------------------------------------------- scenarios
SCENARIOS=(
    "fanin_q0|--scenario fanin --publishers 4 --qos 0"
    "fanin_q1|--scenario fanin --publishers 4 --qos 1"
    "fanout_q0|--scenario fanout --subscribers 100 --qos 0"
    "pairs_q1|--scenario pairs --count 100 --qos 1"
    "lat_q1_5k|--scenario pairs --count 10 --qos 1 --rate 5000"
    "conns_10k|--scenario conns --count $CONNS --connect-concurrency $CONNECT_CONCURRENCY"
)
UNPINNED_SCENARIOS=(
    "fanin_q0|--scenario fanin --publishers 4 --qos 0"
    "pairs_q1|--scenario pairs --count 100 --qos 1"
)

available() {
    case $1 in
    tern) return 0 ;;
    mosquitto) [ -n "$MOSQUITTO" ] ;;
    rumqttd) [ -n "$RUMQTTD" ] ;;
    esac
}

log "results: $OUT"
log "tern $COMMIT (dirty=$DIRTY), mosquitto ${MOSQUITTO_VERSION:-none}, rumqttd ${RUMQTTD_VERSION:-none}; ulimit -n $NOFILE"
# Runs outermost and brokers inside, so that background noise spreads over
# all brokers rather than hitting one; a fresh broker for every measurement.
for run in $(seq "$RUNS"); do
    for broker in $BROKERS; do
        available "$broker" || continue
        for entry in "${SCENARIOS[@]}"; do
            scen=${entry%%|*}
            read -r -a args <<<"${entry#*|}"
            start_broker "$broker" 1 "$broker.pinned.$scen.$run" || continue
            bench_run "$broker" pinned "$scen" "$run" -- "${args[@]}"
            stop_broker
        done
    done
    if [ "$UNPINNED" = 1 ]; then
        for entry in "${UNPINNED_SCENARIOS[@]}"; do
            scen=${entry%%|*}
            read -r -a args <<<"${entry#*|}"
            start_broker tern 0 "tern.unpinned.$scen.$run" || continue
            bench_run tern unpinned "$scen" "$run" -- "${args[@]}"
            stop_broker
        done
    fi
done

# ---------------------------------------------------------------- fan-out sweep
# Closed-loop QoS 0 fan-out measures overload (the warm-up fills megabytes of
# socket buffers); an open-loop sweep shows what each broker sustains.
if [ "$SWEEP" = 1 ]; then
    for rate in $SWEEP_RATES; do
        for broker in $BROKERS; do
            available "$broker" || continue
            start_broker "$broker" 1 "$broker.sweep.fanout_q0_r$rate.1" || continue
            bench_run "$broker" sweep "fanout_q0_r$rate" 1 -- \
                --scenario fanout --subscribers 100 --qos 0 --rate "$rate"
            stop_broker
        done
    done
fi

# ---------------------------------------------------------------- stalled subscriber
# One subscriber that never reads after SUBACK, 1 KiB messages at 10k/s for
# 20 s (~195 MiB) past it, a normal subscriber alongside (the tool's); broker
# RSS sampled every second.
STALL_RATE=10000 STALL_SIZE=1024 STALL_SECS=20
if [ "$STALL" = 1 ]; then
    for broker in $BROKERS; do
        available "$broker" || continue
        for q in 0 1; do
            tag="$broker.stall.q$q"
            start_broker "$broker" 1 "$tag" || continue
            prefix="bench-stall-$broker-q$q"
            python3 "$ROOT/bench/stalled_sub.py" "$BPORT" "$prefix/fanout" "$q" \
                >"$WORK/$tag.stalled.out" 2>&1 &
            spid=$!; AUX_PIDS+=("$spid")
            for i in $(seq 100); do
                grep -q subscribed "$WORK/$tag.stalled.out" 2>/dev/null && break
                sleep 0.1
            done
            rss0=$(rss_kib "$BPID")
            (
                t=0
                while kill -0 "$BPID" 2>/dev/null; do
                    echo "$t $(rss_kib "$BPID")"
                    sleep 1; t=$((t + 1))
                done
            ) >"$WORK/$tag.rss" &
            sampler=$!; AUX_PIDS+=("$sampler")
            l0=$(load1)
            timeout -k 5 $((STALL_SECS + 60)) taskset -c "$TOOL_CPU" "${TOOL[@]}" \
                --port "$BPORT" --broker-pid "$BPID" --mqtt-version 3 \
                --scenario fanout --subscribers 1 --topic-prefix "$prefix" --qos "$q" \
                --size "$STALL_SIZE" --rate "$STALL_RATE" --tick-ms 10 \
                --duration "$STALL_SECS" --warmup 1 --json \
                >"$WORK/$tag.out" 2>"$WORK/$tag.err"
            rc=$?
            sleep 3   # RSS after publishing stopped
            if kill -0 "$BPID" 2>/dev/null; then alive=true; else alive=false; fi
            stop_pid "$sampler"; stop_pid "$spid"; AUX_PIDS=()
            stop_broker
            json=$(grep '^{' "$WORK/$tag.out" | tail -1)
            [ -n "$json" ] || json='{"error":"no JSON from the tool"}'
            series=$(awk '{printf "%s[%s,%s]", (NR>1?",":""), $1, $2}' "$WORK/$tag.rss")
            jq -c --arg b "$broker" --argjson q "$q" --argjson rc "$rc" --argjson rss0 "${rss0:-0}" \
                --argjson alive "$alive" --argjson l0 "$l0" --argjson series "[$series]" \
                --arg stalled "$(tr '\n' ' ' <"$WORK/$tag.stalled.out")" \
                '{kind:"stall", broker:$b, stalled_qos:$q, rc:$rc, load1_before:$l0,
                  broker_alive:$alive, rss_kib_before:$rss0, rss_series:$series,
                  stalled_client:$stalled} + .' <<<"$json" >>"$OUT"
            log "  $tag rc=$rc rss before=${rss0} KiB max=$(awk 'BEGIN{m=0}{if($2>m)m=$2}END{print m}' "$WORK/$tag.rss") KiB"
        done
    done
fi

rm -f "$TERN"
python3 "$ROOT/bench/report.py" "$OUT" | tee "$RESULTS/$TS.md"
log "raw results: $OUT; table: $RESULTS/$TS.md"
