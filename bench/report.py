#!/usr/bin/env python3
"""Markdown tables from a bench/compare.sh results file.

usage: bench/report.py bench/results/<timestamp>.jsonl
"""
import json
import statistics
import sys
from collections import defaultdict

BROKERS = ["tern", "mosquitto", "rumqttd"]

ROWS = [
    # (label, scenario label, value function, formatter)
    ("fan-in 4→1 QoS 0, delivered msg/s", "fanin_q0", lambda r: r["delivered_per_sec"], "rate"),
    ("fan-in 4→1 QoS 1, delivered msg/s", "fanin_q1", lambda r: r["delivered_per_sec"], "rate"),
    ("fan-out 1→100 QoS 0, delivered msg/s", "fanout_q0", lambda r: r["delivered_per_sec"], "rate"),
    ("100 pairs QoS 1, delivered msg/s", "pairs_q1", lambda r: r["delivered_per_sec"], "rate"),
    ("fan-out 1→100 QoS 0, whole-run received ÷ (warm-up + measured + 2 s drain), msg/s ‡", "fanout_q0",
     lambda r: r["received"] / (r["warmup_secs"] + r["duration_secs"] + 2), "rate"),
    ("QoS 1 p99 latency at 5k msg/s (10 pairs), µs", "lat_q1_5k", lambda r: r["p99_us"], "int"),
    ("QoS 1 p50 latency at 5k msg/s (10 pairs), µs", "lat_q1_5k", lambda r: r["p50_us"], "int"),
    ("KiB per idle connection (10k)", "conns_10k", lambda r: r["broker_rss_bytes_per_conn"] / 1024, "f2"),
    ("broker CPU s per 1M deliveries (fan-in QoS 0)", "fanin_q0", lambda r: cpu_per_million(r), "f2"),
]

SCEN_NAMES = {
    "fanin_q0": "fan-in 4→1 QoS 0",
    "fanin_q1": "fan-in 4→1 QoS 1",
    "fanout_q0": "fan-out 1→100 QoS 0",
    "pairs_q1": "100 pairs QoS 1",
    "lat_q1_5k": "10 pairs QoS 1 @ 5k/s",
    "conns_10k": "10k idle connections",
}


def cpu_per_million(r):
    # broker CPU-seconds per million deliveries over the measured window
    if not r.get("delivered"):
        return None
    return r["broker_cpu_pct"] / 100 * r["duration_secs"] / r["delivered"] * 1e6


def fmt(v, kind):
    if v is None:
        return "–"
    if kind == "rate":
        if v >= 1e6:
            return f"{v / 1e6:.2f}M"
        if v >= 1e3:
            return f"{v / 1e3:.0f}k" if v >= 1e4 else f"{v / 1e3:.1f}k"
        return f"{v:.0f}"
    if kind == "int":
        return f"{v:,.0f}"
    if kind == "f2":
        return f"{v:.2f}"
    return str(v)


def cell(vals, kind):
    vals = [v for v in vals if v is not None]
    if not vals:
        return "–"
    med = statistics.median(vals)
    if len(vals) == 1:
        return fmt(med, kind)
    return f"{fmt(med, kind)} ({fmt(min(vals), kind)}–{fmt(max(vals), kind)})"


def safe(f, r):
    try:
        return f(r)
    except (KeyError, TypeError, ZeroDivisionError):
        return None


def main():
    recs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
    meta = next((r for r in recs if r.get("kind") == "meta"), {})
    bench = [r for r in recs if r.get("kind") == "bench"]
    stall = [r for r in recs if r.get("kind") == "stall"]
    by = defaultdict(list)
    for r in bench:
        by[(r["broker"], r["mode"], r["label"])].append(r)
    brokers = [b for b in BROKERS if any(k[0] == b for k in by)]
    vers = {"tern": meta.get("tern_commit", ""), "mosquitto": meta.get("mosquitto", ""),
            "rumqttd": meta.get("rumqttd", "")}
    head = [f"{b} {vers.get(b, '')}".strip() for b in brokers]

    print(f"Run {meta.get('ts')}: {meta.get('cpu')}, {meta.get('nproc')} CPUs, kernel "
          f"{meta.get('kernel')}, Tern {meta.get('tern_commit')}"
          f"{' (dirty tree)' if meta.get('tern_dirty') else ''}, runs {meta.get('runs')}, "
          f"{meta.get('warmup')} s warm-up + {meta.get('duration')} s measured, "
          f"ulimit -n {meta.get('ulimit_n')}, load at start {meta.get('loadavg_start')}.")
    print()
    print("Broker pinned to one core, tool to the other; median (min–max) of the runs.")
    print()
    print("| | " + " | ".join(head) + " |")
    print("|---|" + "---|" * len(brokers))
    for label, scen, f, kind in ROWS:
        cells = [cell([safe(f, r) for r in by[(b, "pinned", scen)]], kind) for b in brokers]
        print(f"| {label} | " + " | ".join(cells) + " |")
    print()

    print("Losses over the whole run (warm-up included), per run; `rc` = tool exit status "
          "when not 0; conns: connections dropped.")
    print()
    print("| scenario | " + " | ".join(brokers) + " |")
    print("|---|" + "---|" * len(brokers))
    for scen, name in SCEN_NAMES.items():
        cells = []
        for b in brokers:
            parts = []
            for r in sorted(by[(b, "pinned", scen)], key=lambda r: r["run"]):
                if "error" in r:
                    parts.append("error")
                    continue
                if scen.startswith("conns"):
                    s = f"{r.get('dropped', '?')} of {r.get('connections', '?')}"
                else:
                    exp = r.get("expected") or 0
                    lost = r.get("lost", 0)
                    s = f"{lost:,}" + (f" ({100 * lost / exp:.1f}%)" if lost and exp else "")
                    if r.get("dup"):
                        s += f" dup {r['dup']:,}"
                if r.get("rc"):
                    s += f" rc {r['rc']}"
                if not r.get("broker_alive", True):
                    s += " CRASHED"
                parts.append(s)
            cells.append(" / ".join(parts) if parts else "–")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print()

    print("CPU (median % of one core over the measured window) and sent rate; the tool is "
          "the bottleneck when its CPU nears 100 %.")
    print()
    print("| scenario | broker | sent msg/s | broker CPU % | tool CPU % | p50 µs | p99 µs | load1 before |")
    print("|---|---|---|---|---|---|---|---|")
    for scen, name in SCEN_NAMES.items():
        for b in brokers:
            rs = [r for r in by[(b, "pinned", scen)] if "error" not in r]
            if not rs:
                continue
            med = lambda k: statistics.median([r[k] for r in rs if r.get(k) is not None] or [0])
            loads = "/".join(f"{r['load1_before']:.2f}" for r in sorted(rs, key=lambda r: r["run"]))
            if scen.startswith("conns"):
                print(f"| {name} | {b} | – | {med('broker_cpu_pct'):.0f} | {med('tool_cpu_pct'):.0f} "
                      f"| – | – | {loads} |")
            else:
                print(f"| {name} | {b} | {fmt(med('sent_per_sec'), 'rate')} | {med('broker_cpu_pct'):.0f} "
                      f"| {med('tool_cpu_pct'):.0f} | {med('p50_us'):,.0f} | {med('p99_us'):,.0f} | {loads} |")
    print()

    unp = [k for k in by if k[1] == "unpinned"]
    if unp:
        print("Tern unpinned (broker and tool free on both cores) against pinned, same runs.")
        print()
        print("| scenario | pinned delivered msg/s | unpinned delivered msg/s | ratio (medians) "
              "| unpinned broker CPU % | unpinned tool CPU % | unpinned losses |")
        print("|---|---|---|---|---|---|---|")
        for scen in ["fanin_q0", "pairs_q1"]:
            p = [r["delivered_per_sec"] for r in by[("tern", "pinned", scen)] if "error" not in r]
            u = [r for r in by[("tern", "unpinned", scen)] if "error" not in r]
            if not u:
                continue
            uv = [r["delivered_per_sec"] for r in u]
            ratio = (statistics.median(uv) / statistics.median(p)) if p else None
            print(f"| {SCEN_NAMES[scen]} | {cell(p, 'rate')} | {cell(uv, 'rate')} | "
                  f"{'–' if ratio is None else f'{ratio:.2f}×'} | "
                  f"{statistics.median([r['broker_cpu_pct'] for r in u]):.0f} | "
                  f"{statistics.median([r['tool_cpu_pct'] for r in u]):.0f} | "
                  f"{' / '.join(str(r.get('lost')) for r in u)} |")
        print()

    sweep = [r for r in bench if r["mode"] == "sweep"]
    if sweep:
        print("Fan-out 1→100 QoS 0, open loop (`--rate R`, 1 ms ticks), one run per rate: "
              "delivered msg/s / loss over the whole run / p99 latency; the tool's CPU when ≥ 80 % "
              "(near its limit).")
        print()
        rates = sorted({r["rate"] for r in sweep})
        print("| publish rate (deliveries/s offered) | " + " | ".join(brokers) + " |")
        print("|---|" + "---|" * len(brokers))
        for rate in rates:
            cells = []
            for b in brokers:
                rs = [r for r in sweep if r["broker"] == b and r["rate"] == rate]
                if not rs:
                    cells.append("–")
                    continue
                r = rs[0]
                if "error" in r:
                    cells.append("error")
                    continue
                exp = r.get("expected") or 0
                lp = 100 * r["lost"] / exp if exp else 0
                c = f"{fmt(r['delivered_per_sec'], 'rate')} / {lp:.1f}% / {fmt(r['p99_us'] / 1000, 'f2')} ms"
                if r.get("tool_cpu_pct", 0) >= 80:
                    c += f" (tool {r['tool_cpu_pct']:.0f}%)"
                cells.append(c)
            print(f"| {fmt(rate, 'rate')}/s ({fmt(rate * 100, 'rate')}/s) | " + " | ".join(cells) + " |")
        print()

    if stall:
        print("Stalled subscriber: one subscriber never reads after SUBACK while 1 KiB messages "
              "go past it at 10k/s for 20 s (+1 s warm-up, ~205 MiB); the tool's own subscriber "
              "on the same topic reads normally. Broker RSS sampled every second.")
        print()
        print("| broker | stalled sub QoS | RSS before, MiB | peak, MiB | at end, MiB | growth (peak − before), MiB "
              "| healthy sub delivered msg/s | healthy sub lost |")
        print("|---|---|---|---|---|---|---|---|")
        for r in stall:
            series = [kib for _, kib in r.get("rss_series", [])]
            peak = max(series) if series else 0
            end = series[-1] if series else 0
            b0 = r.get("rss_kib_before", 0)
            note = "" if r.get("broker_alive", True) else " (broker died)"
            print(f"| {r['broker']}{note} | {r['stalled_qos']} | {b0 / 1024:.1f} | {peak / 1024:.1f} | "
                  f"{end / 1024:.1f} | {(peak - b0) / 1024:.1f} | "
                  f"{fmt(r.get('delivered_per_sec'), 'rate')} | {r.get('lost', 'error')} |")
        print()
        print("RSS series, every 2 s (seconds after the stalled subscriber connected: MiB):")
        print()
        for r in stall:
            s = ", ".join(f"{t}: {kib / 1024:.1f}" for t, kib in r.get("rss_series", []) if t % 2 == 0)
            print(f"- {r['broker']} QoS {r['stalled_qos']}: {s}")
        print()


if __name__ == "__main__":
    main()
