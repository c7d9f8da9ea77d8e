//! `tern bench`: an MQTT load generator for measuring a broker (Tern or
//! any other) from one core.
//!
//! Every client is one tokio task on one raw TCP connection speaking our
//! own codec: PUBLISHes are batched into one write buffer (many per write
//! call) and every complete packet in the read buffer is decoded per
//! wake-up. Payloads carry a send timestamp, the publisher's index and a
//! sequence number ([`payload`]), from which subscribers derive latency,
//! losses, duplicates and reorderings ([`tracker`]).
//!
//! Run outline: connect the subscribers (and wait for their SUBACKs), then
//! the publishers; publish for `warmup + duration` seconds, measuring only
//! messages stamped after the warm-up; stop the publishers; wait up to 2 s
//! for outstanding acknowledgements and deliveries; count and report. The
//! whole run is bounded by a hard deadline of `warmup + duration + 30 s`.
//!
//! With `--persistent` the subscribers hold persistent sessions (clean
//! start 0, session expiry 3600 s), removed again at the end of the run.
//! With `--offline` they also disconnect after subscribing; the publishers
//! run alone, then the subscribers reconnect and drain what the broker
//! queued for them (bounded by `max(30 s, 3 × duration)`).
//! See `docs/bench-tool.md`.

mod conn;
mod payload;
mod procstat;
mod publisher;
mod realtime;
mod report;
mod subscriber;
mod tracker;
mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use hdrhistogram::Histogram;
use tern_mqtt_codec::{ProtocolVersion, QoS};
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use conn::Transport;
use conn::{ClientCfg, Conn, ReadState, SessionMode, describe_disconnect};
use publisher::{PubCfg, PubStats, Template, Timeline};
use report::{Report, percentiles};
use subscriber::{SubCfg, SubStats, new_histogram};

/// Time allowed after the publishers stop for acknowledgements and
/// deliveries still on their way.
const DRAIN: Duration = Duration::from_secs(2);
/// Slack of the hard deadline beyond warm-up + duration.
const DEADLINE_SLACK: Duration = Duration::from_secs(30);
/// Session Expiry Interval asked for by `--persistent` subscribers (v5).
const SESSION_EXPIRY_SECS: u32 = 3600;
/// Shortest bound of the `--offline` drain, and of the wait for late
/// deliveries with `--persistent` (else 3 × duration).
const PERSISTENT_DRAIN_MIN: Duration = Duration::from_secs(30);
/// `--persistent` drain: this long without an arrival ends it.
const IDLE_STOP: Duration = Duration::from_secs(5);
/// `--offline`: pause between the subscribers going offline and the
/// publishers connecting.
const OFFLINE_SETTLE: Duration = Duration::from_millis(200);
/// `--offline` drain: CPU readings are taken this often, so that the drain's
/// CPU can be cut at the last arrival (not at the idle stop after it).
const DRAIN_CPU_EVERY: Duration = Duration::from_millis(100);
/// Time allowed to remove the persistent sessions at the end of a run.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(30);

/// The traffic shape of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// P publishers (`--publishers`, default 4) → 1 subscriber on a
    /// wildcard (or, with `--shared`, a shared) subscription.
    Fanin,
    /// 1 publisher → N subscribers (`--subscribers`, default 100) on one topic.
    Fanout,
    /// N publisher → subscriber pairs (`--count`, default 100), one topic each.
    Pairs,
    /// C idle connections (`--count`, default 1000), held for `--duration`.
    Conns,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Fanin => "fanin",
            Scenario::Fanout => "fanout",
            Scenario::Pairs => "pairs",
            Scenario::Conns => "conns",
        }
    }
}

/// The protocol a side of the run speaks (`--sub-protocol`, `--pub-protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// MQTT, over `--transport`.
    Mqtt,
    /// The realtime protocol (Ably-compatible, JSON) on the HTTP listener
    /// (`--ws-port`), anonymous.
    Realtime,
}

impl Protocol {
    fn name(self) -> &'static str {
        match self {
            Protocol::Mqtt => "mqtt",
            Protocol::Realtime => "realtime",
        }
    }
}

/// `tern bench`: drive an MQTT broker with load and report throughput,
/// latency, losses and duplicates.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Traffic shape.
    #[arg(long, value_enum)]
    pub scenario: Scenario,
    /// Broker host name or address.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Broker MQTT port.
    #[arg(long, default_value_t = 1883)]
    pub port: u16,
    /// MQTT clients' transport: raw TCP to `--port`, or WebSocket to
    /// `ws://HOST:WS_PORT/mqtt`.
    #[arg(long, value_enum, default_value_t = Transport::Tcp)]
    pub transport: Transport,
    /// The broker's HTTP port: MQTT over WebSocket (`/mqtt`) and the
    /// realtime protocol (`/`).
    #[arg(long, default_value_t = 8080)]
    pub ws_port: u16,
    /// Subscribers speak MQTT, or the realtime protocol (JSON over
    /// WebSocket on `--ws-port`; QoS 0; not with `fanin`).
    #[arg(long, value_enum, default_value_t = Protocol::Mqtt)]
    pub sub_protocol: Protocol,
    /// Publishers speak MQTT, or the realtime protocol (JSON over
    /// WebSocket on `--ws-port`, one message per MESSAGE frame; QoS 0).
    #[arg(long, value_enum, default_value_t = Protocol::Mqtt)]
    pub pub_protocol: Protocol,
    /// QoS of publishes and subscriptions.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: u8,
    /// Payload bytes; at least 20 (send time, publisher id, sequence number).
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Measured seconds of publishing (for `conns`: seconds to hold).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds of publishing before measuring starts (not counted).
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Total publish rate over all publishers, msgs/s (open loop);
    /// 0 = closed loop, as fast as the window and the socket allow.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Open loop: each publisher sends the messages due once per tick of
    /// this many milliseconds, in one write.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub tick_ms: u64,
    /// QoS 1/2: unacknowledged publishes per publisher (closed-loop window);
    /// QoS 0: publishes per batch before yielding.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..))]
    pub inflight: u16,
    /// MQTT version: 5, or 3 for 3.1.1 (4 is accepted as 3.1.1 too).
    #[arg(long = "mqtt-version", default_value_t = 5, value_parser = clap::value_parser!(u8).range(3..=5))]
    pub mqtt_version: u8,
    /// Publishers (`fanin`; default 4).
    #[arg(long)]
    pub publishers: Option<usize>,
    /// Subscribers (`fanout`; default 100).
    #[arg(long)]
    pub subscribers: Option<usize>,
    /// Pairs (`pairs`; default 100) or connections (`conns`; default 1000).
    #[arg(long)]
    pub count: Option<usize>,
    /// `fanin`: subscribe with a shared subscription (`$share/bench/...`)
    /// instead of a plain wildcard.
    #[arg(long)]
    pub shared: bool,
    /// Also print the figures as one JSON line at the end.
    #[arg(long)]
    pub json: bool,
    /// New connections per second (0 = as fast as possible).
    #[arg(long, default_value_t = 0.0, value_name = "N")]
    pub connect_rate: f64,
    /// Connection attempts in flight at once.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..))]
    pub connect_concurrency: u64,
    /// Runtime worker threads; 1 = a single-threaded runtime.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub threads: u64,
    /// Process id of the broker, to report its CPU (and, for `conns`, its
    /// resident memory) from /proc.
    #[arg(long, value_name = "PID")]
    pub broker_pid: Option<u32>,
    /// Topic prefix [default: tern-bench/<run id>].
    #[arg(long)]
    pub topic_prefix: Option<String>,
    /// Keep alive asked for, seconds (PINGREQ at half of it).
    #[arg(long, default_value_t = 60)]
    pub keepalive: u16,
    /// Subscribers use persistent sessions: clean start 0 and (MQTT 5) a
    /// session expiry of 3600 s, client ids fixed for the run; the sessions
    /// are removed at the end (reconnect with clean start 1, disconnect).
    #[arg(long)]
    pub persistent: bool,
    /// With `--persistent`, `fanin` and `fanout`: the subscribers
    /// disconnect after subscribing, the publishers run alone, then the
    /// subscribers reconnect and drain what the broker queued for them.
    #[arg(long, requires = "persistent")]
    pub offline: bool,
}

/// Checked settings of a run.
#[derive(Debug, Clone)]
struct Run {
    args: BenchArgs,
    scenario: Scenario,
    qos: QoS,
    version: ProtocolVersion,
    publishers: usize,
    subscribers: usize,
    duration: Duration,
    warmup: Duration,
    run_id: String,
    prefix: String,
    /// Session the subscribers ask for.
    sub_session: SessionMode,
    /// `--persistent`: the longest the subscribers may take to drain
    /// (`--offline`), or wait for late deliveries after the 2 s drain.
    drain_timeout: Duration,
}

fn secs(name: &str, v: f64, zero_ok: bool) -> anyhow::Result<Duration> {
    if !v.is_finite() || v < 0.0 || (!zero_ok && v == 0.0) || v > 1e7 {
        bail!(
            "--{name} must be a number of seconds{}",
            if zero_ok { "" } else { " above 0" }
        );
    }
    Ok(Duration::from_secs_f64(v))
}

impl Run {
    fn check(args: BenchArgs) -> anyhow::Result<Run> {
        let qos = QoS::from_u8(args.qos).ok_or_else(|| anyhow!("--qos must be 0, 1 or 2"))?;
        let version = match args.mqtt_version {
            5 => ProtocolVersion::V5,
            3 | 4 => ProtocolVersion::V3_1_1,
            _ => bail!("--mqtt-version must be 3 (3.1.1) or 5"),
        };
        if args.size < payload::HEADER_LEN {
            bail!(
                "--size must be at least {} bytes (send time, publisher id, sequence number)",
                payload::HEADER_LEN
            );
        }
        if args.size > 16 * 1024 * 1024 {
            bail!("--size must be at most 16 MiB");
        }
        let duration = secs("duration", args.duration, false)?;
        let warmup = secs("warmup", args.warmup, true)?;
        if !args.rate.is_finite() || args.rate < 0.0 {
            bail!("--rate must be 0 (closed loop) or a positive number of msgs/s");
        }
        if !args.connect_rate.is_finite() || args.connect_rate < 0.0 {
            bail!("--connect-rate must be 0 (unlimited) or a positive number per second");
        }
        let s = args.scenario;
        let only = |flag: &str, v: Option<usize>, allowed: bool| -> anyhow::Result<()> {
            if v.is_some() && !allowed {
                bail!("--{flag} does not apply to the {} scenario", s.name());
            }
            Ok(())
        };
        only("publishers", args.publishers, s == Scenario::Fanin)?;
        only("subscribers", args.subscribers, s == Scenario::Fanout)?;
        only(
            "count",
            args.count,
            matches!(s, Scenario::Pairs | Scenario::Conns),
        )?;
        if args.shared && s != Scenario::Fanin {
            bail!("--shared only applies to the fanin scenario");
        }
        if args.persistent && s == Scenario::Conns {
            bail!("--persistent does not apply to the conns scenario");
        }
        if args.offline && !args.persistent {
            bail!("--offline needs --persistent (only persistent sessions queue messages)");
        }
        if args.offline && !matches!(s, Scenario::Fanin | Scenario::Fanout) {
            bail!("--offline only applies to the fanin and fanout scenarios");
        }
        let realtime =
            args.sub_protocol == Protocol::Realtime || args.pub_protocol == Protocol::Realtime;
        if realtime {
            if s == Scenario::Conns {
                bail!("--sub-protocol / --pub-protocol realtime do not apply to conns");
            }
            if qos != QoS::AtMostOnce {
                bail!("realtime clients only run with --qos 0");
            }
            if args.persistent {
                bail!("realtime clients have no persistent sessions (--persistent)");
            }
        }
        if args.sub_protocol == Protocol::Realtime && s == Scenario::Fanin {
            bail!(
                "--sub-protocol realtime does not apply to fanin: a realtime subscriber \
                 attaches to one channel (no wildcard)"
            );
        }
        let (publishers, subscribers) = match s {
            Scenario::Fanin => (args.publishers.unwrap_or(4), 1),
            Scenario::Fanout => (1, args.subscribers.unwrap_or(100)),
            Scenario::Pairs => {
                let n = args.count.unwrap_or(100);
                (n, n)
            }
            Scenario::Conns => (0, 0),
        };
        if s != Scenario::Conns && (publishers == 0 || subscribers == 0) {
            bail!("a run needs at least one publisher and one subscriber");
        }
        if s == Scenario::Conns && args.count == Some(0) {
            bail!("--count must be at least 1");
        }
        if publishers > u32::MAX as usize {
            bail!("too many publishers");
        }
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let run_id = format!(
            "tb{}-{}",
            std::process::id(),
            since_epoch.as_millis() % 1_000_000
        );
        let prefix = args
            .topic_prefix
            .clone()
            .unwrap_or_else(|| format!("tern-bench/{run_id}"));
        if prefix.is_empty() || prefix.contains(['+', '#']) {
            bail!("--topic-prefix must be a non-empty topic name without wildcards");
        }
        let sub_session = if args.persistent {
            SessionMode::Persistent(SESSION_EXPIRY_SECS)
        } else {
            SessionMode::Clean
        };
        let drain_timeout = if args.persistent {
            PERSISTENT_DRAIN_MIN.max(duration * 3)
        } else {
            Duration::ZERO
        };
        Ok(Run {
            scenario: s,
            qos,
            version,
            publishers,
            subscribers,
            duration,
            warmup,
            run_id,
            prefix,
            sub_session,
            drain_timeout,
            args,
        })
    }

    /// Client ids of the subscribers, the same for every connection of
    /// one run (and so for its persistent sessions).
    fn sub_ids(&self) -> Vec<String> {
        (0..self.subscribers)
            .map(|i| format!("{}-s{i}", self.run_id))
            .collect()
    }

    fn client_cfg(&self, addr: SocketAddr) -> ClientCfg {
        ClientCfg {
            addr,
            transport: self.args.transport,
            version: self.version,
            keep_alive: self.args.keepalive,
            packet_bytes_max: (self.args.size + 64 * 1024).max(1024 * 1024),
            timeout: Duration::from_secs(10),
        }
    }

    /// Topic publisher `i` publishes to.
    fn pub_topic(&self, i: usize) -> String {
        match self.scenario {
            Scenario::Fanin => format!("{}/fanin/{i}", self.prefix),
            Scenario::Fanout => format!("{}/fanout", self.prefix),
            _ => format!("{}/pairs/{i}", self.prefix),
        }
    }

    /// Filter subscriber `i` subscribes to, and the publishers it hears:
    /// `(filter, first, count)`.
    fn sub_plan(&self, i: usize) -> (String, u32, u32) {
        match self.scenario {
            Scenario::Fanin if self.args.shared => (
                format!("$share/bench/{}/fanin/+", self.prefix),
                0,
                self.publishers as u32,
            ),
            Scenario::Fanin => (
                format!("{}/fanin/+", self.prefix),
                0,
                self.publishers as u32,
            ),
            Scenario::Fanout => (format!("{}/fanout", self.prefix), 0, 1),
            _ => (format!("{}/pairs/{i}", self.prefix), i as u32, 1),
        }
    }

    fn base_report(&self) -> Report {
        Report {
            scenario: self.scenario.name(),
            mqtt_version: if self.version.is_v5() { "5" } else { "3.1.1" },
            qos: self.args.qos,
            size: self.args.size,
            publishers: self.publishers,
            subscribers: self.subscribers,
            duration_secs: self.duration.as_secs_f64(),
            warmup_secs: if self.scenario == Scenario::Conns {
                0.0
            } else {
                self.warmup.as_secs_f64()
            },
            rate: self.args.rate,
            tick_ms: self.args.tick_ms,
            inflight: self.args.inflight,
            threads: self.args.threads as usize,
            transport: match self.args.transport {
                Transport::Tcp => "tcp",
                Transport::Ws => "ws",
            },
            sub_protocol: self.args.sub_protocol.name(),
            pub_protocol: self.args.pub_protocol.name(),
            persistent: self.args.persistent,
            offline: self.args.offline,
            ..Default::default()
        }
    }
}

/// Entry point of `tern bench`: builds the runtime and runs the scenario
/// under the hard deadline.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let run = Run::check(args)?;
    let mut allowance = run.warmup + run.duration + DEADLINE_SLACK;
    if run.scenario == Scenario::Conns && run.args.connect_rate > 0.0 {
        let n = run.args.count.unwrap_or(1000) as f64;
        allowance += Duration::from_secs_f64(n / run.args.connect_rate);
    }
    if run.args.offline {
        // Reconnecting the subscribers, then draining.
        allowance += run.drain_timeout + DEADLINE_SLACK;
    } else if run.args.persistent {
        // Waiting for late deliveries.
        allowance += run.drain_timeout;
    }
    let deadline = Instant::now() + allowance;
    let cleanup = if run.args.persistent {
        CLEANUP_TIMEOUT
    } else {
        Duration::ZERO
    };
    // Last resort if the runtime itself is wedged: the tokio timeout below
    // normally fires first.
    std::thread::Builder::new()
        .name("bench-watchdog".into())
        .spawn(move || {
            std::thread::sleep(allowance + cleanup + Duration::from_secs(5));
            eprintln!(
                "error: tern bench exceeded its hard deadline of {} s and was stopped",
                allowance.as_secs()
            );
            std::process::exit(2);
        })
        .context("starting the watchdog thread")?;

    let rt = if run.args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(run.args.threads as usize)
            .enable_all()
            .build()
    }
    .context("starting the async runtime")?;

    let report = rt.block_on(async {
        let r = match tokio::time::timeout_at(deadline.into(), scenario(&run)).await {
            Ok(r) => r,
            Err(_) => Err(anyhow!(
                "the run did not finish within its hard deadline of {} s \
                 (warm-up + duration{} + {} s): the broker may have stalled",
                allowance.as_secs(),
                if run.args.offline { " + drain" } else { "" },
                DEADLINE_SLACK.as_secs()
            )),
        };
        if run.args.persistent {
            // Whatever happened, do not leave this run's sessions behind.
            match tokio::time::timeout(CLEANUP_TIMEOUT, forget_sessions(&run)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => eprintln!(
                    "tern bench: warning: removing this run's persistent sessions failed: {e:#}"
                ),
                Err(_) => eprintln!(
                    "tern bench: warning: removing this run's persistent sessions took over {} s; \
                     some may be left on the broker",
                    CLEANUP_TIMEOUT.as_secs()
                ),
            }
        }
        r
    })?;
    // Tasks still parked (none normally) must not hold the exit.
    rt.shutdown_timeout(Duration::from_millis(100));

    print!("{}", report.table());
    if run.args.json {
        println!("{}", report.json());
    }
    let lost = report.lost.unwrap_or(0);
    let dup = report.dup.unwrap_or(0);
    if run.qos != QoS::AtMostOnce && lost > 0 {
        bail!("{lost} QoS {} messages were lost", run.args.qos);
    }
    if run.qos == QoS::ExactlyOnce && dup > 0 {
        bail!("{dup} QoS 2 messages were delivered more than once");
    }
    if let Some(d) = report.dropped.filter(|&d| d > 0) {
        bail!("the broker closed {d} of the held connections");
    }
    Ok(())
}

async fn resolve(host: &str, port: u16) -> anyhow::Result<SocketAddr> {
    tokio::net::lookup_host((host, port))
        .await
        .with_context(|| format!("cannot resolve --host {host}"))?
        .next()
        .ok_or_else(|| anyhow!("--host {host} resolves to no address"))
}

/// Address of the MQTT clients: `--port` for TCP, `--ws-port` for
/// WebSocket.
async fn mqtt_addr(run: &Run) -> anyhow::Result<SocketAddr> {
    match run.args.transport {
        Transport::Tcp => resolve(&run.args.host, run.args.port).await,
        Transport::Ws => resolve(&run.args.host, run.args.ws_port).await,
    }
}

async fn scenario(run: &Run) -> anyhow::Result<Report> {
    let addr = mqtt_addr(run).await?;
    let cfg = run.client_cfg(addr);
    match run.scenario {
        Scenario::Conns => conns(run, &cfg).await,
        _ => messages(run, &cfg).await,
    }
}

/// Connections made by [`connect_many`] / [`connect_all`], in index order,
/// with their connect latencies, the time the whole batch took, and each
/// one's CONNACK Session Present flag.
struct Connected<T = Conn> {
    conns: Vec<T>,
    present: Vec<bool>,
    latency: Histogram<u64>,
    elapsed: Duration,
}

/// One connection made by a task of [`connect_all`].
type Made<T> = (usize, T, bool, Duration);

/// Makes `n` connections with `make(i)`, at most `concurrency` at once and
/// at most `rate` per second (0 = no limit).
async fn connect_all<T, F, Fut>(
    n: usize,
    concurrency: usize,
    rate: f64,
    make: F,
) -> anyhow::Result<Connected<T>>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<(T, bool)>> + Send + 'static,
{
    let start = Instant::now();
    let mut slots: Vec<Option<(T, bool)>> = (0..n).map(|_| None).collect();
    let mut latency = new_histogram();
    let mut set: JoinSet<anyhow::Result<Made<T>>> = JoinSet::new();
    let mut take = |r: Result<anyhow::Result<Made<T>>, tokio::task::JoinError>,
                    slots: &mut Vec<Option<(T, bool)>>|
     -> anyhow::Result<()> {
        let (i, c, present, took) = r.map_err(|e| anyhow!("connect task failed: {e}"))??;
        subscriber::record(&mut latency, took.as_micros() as u64);
        slots[i] = Some((c, present));
        Ok(())
    };
    for i in 0..n {
        if rate > 0.0 {
            tokio::time::sleep_until((start + Duration::from_secs_f64(i as f64 / rate)).into())
                .await;
        }
        while set.len() >= concurrency {
            if let Some(r) = set.join_next().await {
                take(r, &mut slots)?;
            }
        }
        let fut = make(i);
        set.spawn(async move {
            let t = Instant::now();
            let (c, present) = fut.await?;
            Ok((i, c, present, t.elapsed()))
        });
    }
    while let Some(r) = set.join_next().await {
        take(r, &mut slots)?;
    }
    let elapsed = start.elapsed();
    let (conns, present): (Vec<T>, Vec<bool>) = slots.into_iter().flatten().unzip();
    if conns.len() != n {
        bail!("internal error: {} of {n} connections made", conns.len());
    }
    Ok(Connected {
        conns,
        present,
        latency,
        elapsed,
    })
}

/// Connects `ids.len()` MQTT clients asking for the session `session`, at
/// most `concurrency` at once and at most `rate` per second (0 = no limit);
/// subscribes each to `filters[i]` if given.
async fn connect_many(
    cfg: &ClientCfg,
    ids: Vec<String>,
    filters: Option<(Vec<String>, QoS)>,
    session: SessionMode,
    concurrency: usize,
    rate: f64,
    what: &'static str,
) -> anyhow::Result<Connected> {
    let filters = filters.map(|(f, q)| (Arc::new(f), q));
    let ids = Arc::new(ids);
    connect_all(ids.len(), concurrency, rate, |i| {
        let cfg = cfg.clone();
        let filters = filters.clone();
        let ids = ids.clone();
        async move {
            let id = &ids[i];
            let (mut c, present) = Conn::connect_session(&cfg, id, session)
                .await
                .with_context(|| format!("{what} {i} ({id})"))?;
            if let Some((f, q)) = &filters {
                c.subscribe(&f[i], *q, cfg.timeout)
                    .await
                    .with_context(|| format!("{what} {i} ({id})"))?;
            }
            Ok((c, present))
        }
    })
    .await
}

/// Connects realtime clients, attaching client `i` to `channels[i]` if
/// given.
async fn connect_realtime(
    run: &Run,
    n: usize,
    channels: Option<Vec<String>>,
    what: &'static str,
) -> anyhow::Result<Connected<ws::WsStream>> {
    let addr = resolve(&run.args.host, run.args.ws_port).await?;
    let timeout = run.client_cfg(addr).timeout;
    let channels = channels.map(Arc::new);
    connect_all(
        n,
        run.args.connect_concurrency as usize,
        run.args.connect_rate,
        |i| {
            let channels = channels.clone();
            async move {
                let ch = channels.as_ref().map(|c| c[i].as_str());
                let ws = realtime::connect(addr, ch, timeout)
                    .await
                    .with_context(|| format!("realtime {what} {i}"))?;
                Ok((ws, false))
            }
        },
    )
    .await
}

/// `--offline`: disconnects the subscribers (keeping their sessions) and
/// waits until the broker has closed each connection.
async fn go_offline(conns: Vec<Conn>, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut set: JoinSet<anyhow::Result<bool>> = JoinSet::new();
    for c in conns {
        set.spawn(c.disconnect_and_wait(deadline));
    }
    let mut open = 0usize;
    while let Some(r) = set.join_next().await {
        if !r.map_err(|e| anyhow!("disconnect task failed: {e}"))?? {
            open += 1;
        }
    }
    if open > 0 {
        eprintln!(
            "tern bench: warning: the broker had not closed {open} subscriber connection(s) \
             {} s after their DISCONNECT",
            timeout.as_secs()
        );
    }
    Ok(())
}

/// Removes the persistent sessions of this run's subscribers: connects
/// each client id with clean start 1 (no session expiry) and disconnects.
async fn forget_sessions(run: &Run) -> anyhow::Result<()> {
    let addr = mqtt_addr(run).await?;
    let cfg = run.client_cfg(addr);
    let made = connect_many(
        &cfg,
        run.sub_ids(),
        None,
        SessionMode::Clean,
        run.args.connect_concurrency as usize,
        0.0,
        "session cleanup of subscriber",
    )
    .await?;
    let mut set = JoinSet::new();
    for c in made.conns {
        set.spawn(c.disconnect());
    }
    while set.join_next().await.is_some() {}
    Ok(())
}

fn connect_figures(r: &mut Report, n: usize, elapsed: Duration, lat: &Histogram<u64>) {
    r.connections = n;
    r.connect_secs = elapsed.as_secs_f64();
    r.connect_per_sec = if elapsed.is_zero() {
        0.0
    } else {
        n as f64 / elapsed.as_secs_f64()
    };
    let (p50, p99, _, max, _) = percentiles(lat);
    r.connect_p50_us = p50;
    r.connect_p99_us = p99;
    r.connect_max_us = max;
}

enum Done {
    Pub(PubStats),
    Sub(SubStats),
}

/// One reading of [`cpu_now`] and when it was taken.
type CpuReading = (
    Instant,
    Option<procstat::CpuSample>,
    Option<procstat::CpuSample>,
);

/// CPU readings at the start and the end of the measured window.
#[derive(Default)]
struct CpuWindow {
    tool: (Option<procstat::CpuSample>, Option<procstat::CpuSample>),
    broker: (Option<procstat::CpuSample>, Option<procstat::CpuSample>),
}

/// Reads this process's and the broker's CPU time now.
fn cpu_now(broker_pid: Option<u32>) -> (Option<procstat::CpuSample>, Option<procstat::CpuSample>) {
    (
        procstat::CpuSample::take(std::process::id()),
        broker_pid.and_then(procstat::CpuSample::take),
    )
}

/// Spawns one subscriber task per connection, each with `proto` but the
/// publishers of its plan.
fn spawn_subscribers(
    set: &mut JoinSet<anyhow::Result<Done>>,
    conns: Vec<Conn>,
    plans: &[(String, u32, u32)],
    proto: &SubCfg,
) {
    for (i, (c, (_, first, count))) in conns.into_iter().zip(plans).enumerate() {
        let scfg = SubCfg {
            first: *first,
            count: *count,
            ..proto.clone()
        };
        set.spawn(async move {
            subscriber::run(c, scfg)
                .await
                .map(Done::Sub)
                .with_context(|| format!("subscriber {i}"))
        });
    }
}

/// fanin, fanout and pairs.
async fn messages(run: &Run, cfg: &ClientCfg) -> anyhow::Result<Report> {
    let qos = run.qos;
    let concurrency = run.args.connect_concurrency as usize;
    let sub_plans: Vec<(String, u32, u32)> =
        (0..run.subscribers).map(|i| run.sub_plan(i)).collect();
    let sub_ids = run.sub_ids();
    let mut rt_subs = None;
    let subs = if run.args.sub_protocol == Protocol::Realtime {
        let made = connect_realtime(
            run,
            run.subscribers,
            Some(sub_plans.iter().map(|p| p.0.clone()).collect()),
            "subscriber",
        )
        .await?;
        rt_subs = Some(made.conns);
        Connected {
            conns: Vec::new(),
            present: made.present,
            latency: made.latency,
            elapsed: made.elapsed,
        }
    } else {
        connect_many(
            cfg,
            sub_ids.clone(),
            Some((sub_plans.iter().map(|p| p.0.clone()).collect(), qos)),
            run.sub_session,
            concurrency,
            run.args.connect_rate,
            "subscriber",
        )
        .await?
    };
    if let Some(i) = subs.present.iter().position(|&p| p) {
        bail!(
            "the broker already had a session for client id {} (Session Present): \
             it may hold messages from another run",
            sub_ids[i]
        );
    }
    let mut online_subs = Some(subs.conns);
    if run.args.offline {
        go_offline(online_subs.take().unwrap_or_default(), cfg.timeout).await?;
        tokio::time::sleep(OFFLINE_SETTLE).await;
    }
    let mut rt_pubs = None;
    let pubs = if run.args.pub_protocol == Protocol::Realtime {
        let made = connect_realtime(run, run.publishers, None, "publisher").await?;
        rt_pubs = Some(made.conns);
        Connected {
            conns: Vec::new(),
            present: made.present,
            latency: made.latency,
            elapsed: made.elapsed,
        }
    } else {
        connect_many(
            cfg,
            (0..run.publishers)
                .map(|i| format!("{}-p{i}", run.run_id))
                .collect(),
            None,
            SessionMode::Clean,
            concurrency,
            run.args.connect_rate,
            "publisher",
        )
        .await?
    };
    let mut latency = subs.latency.clone();
    latency
        .add(&pubs.latency)
        .map_err(|e| anyhow!("merging histograms: {e:?}"))?;

    // The timeline starts a moment from now, once every task is spawned.
    let origin = Instant::now();
    let t0 = origin + Duration::from_millis(20);
    let measure_from = t0 + run.warmup;
    let stop = measure_from + run.duration;
    let time = Timeline {
        origin,
        t0,
        measure_from,
        stop,
        drain_until: stop + DRAIN,
    };
    let (finals_tx, finals_rx) = watch::channel(None);
    let mut set: JoinSet<anyhow::Result<Done>> = JoinSet::new();
    if let Some(conns) = online_subs {
        // Persistent sessions: every acknowledged message must come, so
        // wait past the 2 s drain for late ones (until idle, bounded).
        let persistent = run.args.persistent;
        let proto = SubCfg {
            qos,
            first: 0,
            count: 0,
            time,
            finals: finals_rx.clone(),
            late_until: persistent.then_some(stop + run.drain_timeout),
            idle_stop: persistent.then_some(IDLE_STOP),
            idle_from: persistent.then_some(time.drain_until),
        };
        spawn_subscribers(&mut set, conns, &sub_plans, &proto);
        for (i, (ws, (_, first, count))) in
            rt_subs.into_iter().flatten().zip(&sub_plans).enumerate()
        {
            let scfg = SubCfg {
                first: *first,
                count: *count,
                ..proto.clone()
            };
            set.spawn(async move {
                realtime::run_sub(ws, scfg)
                    .await
                    .map(Done::Sub)
                    .with_context(|| format!("realtime subscriber {i}"))
            });
        }
    }
    let per_pub_rate = run.args.rate / run.publishers as f64;
    for (i, c) in pubs.conns.into_iter().enumerate() {
        let pcfg = PubCfg {
            id: i as u32,
            template: Template::new(&run.pub_topic(i), qos, run.args.size, run.version)?,
            qos,
            rate: per_pub_rate,
            tick: Duration::from_millis(run.args.tick_ms),
            inflight: usize::from(run.args.inflight),
            time,
        };
        set.spawn(async move {
            publisher::run(c, pcfg)
                .await
                .map(Done::Pub)
                .with_context(|| format!("publisher {i}"))
        });
    }
    for (i, ws) in rt_pubs.into_iter().flatten().enumerate() {
        let pcfg = realtime::RtPubCfg {
            id: i as u32,
            channel: run.pub_topic(i),
            size: run.args.size,
            rate: per_pub_rate,
            tick: Duration::from_millis(run.args.tick_ms),
            inflight: usize::from(run.args.inflight),
            time,
        };
        set.spawn(async move {
            realtime::run_pub(ws, pcfg)
                .await
                .map(Done::Pub)
                .with_context(|| format!("realtime publisher {i}"))
        });
    }
    let broker_pid = run.args.broker_pid;
    let sampler = tokio::spawn(async move {
        let mut w = CpuWindow::default();
        tokio::time::sleep_until(measure_from.into()).await;
        (w.tool.0, w.broker.0) = cpu_now(broker_pid);
        tokio::time::sleep_until(stop.into()).await;
        (w.tool.1, w.broker.1) = cpu_now(broker_pid);
        w
    });

    let mut pub_stats: Vec<Option<PubStats>> = (0..run.publishers).map(|_| None).collect();
    let mut sub_stats: Vec<SubStats> = Vec::with_capacity(run.subscribers);
    let mut pubs_left = run.publishers;
    while let Some(r) = set.join_next().await {
        match r.map_err(|e| anyhow!("client task failed: {e}"))?? {
            Done::Pub(s) => {
                let id = s.id as usize;
                pub_stats[id] = Some(s);
                pubs_left -= 1;
                if pubs_left == 0 {
                    let finals: Vec<u64> = pub_stats.iter().flatten().map(|s| s.sent).collect();
                    finals_tx.send_replace(Some(Arc::new(finals)));
                }
            }
            Done::Sub(s) => sub_stats.push(s),
        }
    }
    let cpu = sampler.await.unwrap_or_default();

    // --offline: the publishers are done; the subscribers come back for
    // what was queued for them.
    let mut drain = None;
    if run.args.offline {
        let drain_start = Instant::now();
        let (stop_tx, mut stop_rx) = watch::channel(false);
        let drain_sampler = tokio::spawn(async move {
            // Bounded by the drain: the coordinator stops it when done.
            let mut v: Vec<CpuReading> = Vec::new();
            loop {
                let (t, b) = cpu_now(broker_pid);
                v.push((Instant::now(), t, b));
                tokio::select! {
                    _ = tokio::time::sleep(DRAIN_CPU_EVERY) => {}
                    _ = stop_rx.changed() => break,
                }
            }
            let (t, b) = cpu_now(broker_pid);
            v.push((Instant::now(), t, b));
            v
        });
        let back = connect_many(
            cfg,
            sub_ids.clone(),
            None,
            run.sub_session,
            concurrency,
            run.args.connect_rate,
            "subscriber (reconnecting)",
        )
        .await?;
        let resumed = back.present.iter().filter(|&&p| p).count();
        if resumed < run.subscribers {
            eprintln!(
                "tern bench: warning: the broker had kept only {resumed} of the {} \
                 subscriber sessions (Session Present 0 on reconnection): what was \
                 queued for the others is lost",
                run.subscribers
            );
        }
        let dtime = Timeline {
            drain_until: drain_start + run.drain_timeout,
            ..time
        };
        let mut dset: JoinSet<anyhow::Result<Done>> = JoinSet::new();
        let proto = SubCfg {
            qos,
            first: 0,
            count: 0,
            time: dtime,
            finals: finals_rx.clone(),
            late_until: None,
            idle_stop: Some(IDLE_STOP),
            idle_from: None,
        };
        spawn_subscribers(&mut dset, back.conns, &sub_plans, &proto);
        while let Some(r) = dset.join_next().await {
            if let Done::Sub(s) = r.map_err(|e| anyhow!("client task failed: {e}"))?? {
                sub_stats.push(s);
            }
        }
        stop_tx.send_replace(true);
        let readings = drain_sampler.await.unwrap_or_default();
        drop(finals_tx);
        drain = Some((drain_start, back.elapsed, resumed, readings));
    }

    let pub_stats: Vec<PubStats> = pub_stats.into_iter().flatten().collect();
    let undrained = pub_stats.iter().filter(|s| s.undrained).count();
    if undrained > 0 {
        eprintln!(
            "tern bench: warning: {undrained} publisher(s) still had unwritten messages {} s \
             after stopping: the broker was not reading them (overloaded?)",
            DRAIN.as_secs()
        );
    }
    let unknown: u64 = pub_stats.iter().map(|s| s.unknown_acks).sum();
    if unknown > 0 {
        eprintln!(
            "tern bench: warning: the broker acknowledged {unknown} packet identifier(s) \
             that were not in flight"
        );
    }

    let mut r = run.base_report();
    connect_figures(
        &mut r,
        run.publishers + run.subscribers,
        subs.elapsed + pubs.elapsed,
        &latency,
    );
    let secs = run.duration.as_secs_f64();
    let sent: u64 = pub_stats.iter().map(|s| s.sent_measured).sum();
    r.sent = Some(sent);
    r.sent_per_sec = Some(sent as f64 / secs);
    r.unacked = Some(pub_stats.iter().map(|s| s.unacked.len() as u64).sum());
    r.refused = Some(pub_stats.iter().map(|s| s.refused.len() as u64).sum());
    if run.args.pub_protocol == Protocol::Realtime {
        // Realtime publishes are ACKed whatever the QoS.
        r.acked = Some(pub_stats.iter().map(|s| s.accepted).sum());
        r.acked_per_sec =
            Some(pub_stats.iter().map(|s| s.accepted_measured).sum::<u64>() as f64 / secs);
    } else if run.args.persistent && qos != QoS::AtMostOnce {
        r.acked = Some(pub_stats.iter().map(|s| s.accepted).sum());
        r.acked_per_sec =
            Some(pub_stats.iter().map(|s| s.accepted_measured).sum::<u64>() as f64 / secs);
    }

    // Losses over the whole run, per (subscriber, publisher) stream.
    let excused: Vec<Vec<u64>> = pub_stats
        .iter()
        .map(|s| {
            let mut v: Vec<u64> = s.unacked.iter().chain(&s.refused).copied().collect();
            v.sort_unstable();
            v
        })
        .collect();
    let (mut expected, mut received, mut lost, mut dup, mut ooo) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut delivered = 0u64;
    // Per subscriber: (owed, received), for the queue-overflow hint.
    let mut per_sub: Vec<(u64, u64)> = Vec::with_capacity(sub_stats.len());
    let mut hist = new_histogram();
    for s in &sub_stats {
        let (mut owed_s, mut received_s) = (0u64, 0u64);
        for (k, t) in s.streams.iter().enumerate() {
            let p = s.first as usize + k;
            let Some(ps) = pub_stats.get(p) else { continue };
            let ex = excused.get(p).map(Vec::as_slice).unwrap_or(&[]);
            owed_s += ps.sent - ex.len() as u64;
            received_s += t.unique;
            lost += t.lost(ps.sent, ex);
            dup += t.dup;
            ooo += t.out_of_order;
        }
        expected += owed_s;
        received += received_s;
        per_sub.push((owed_s, received_s));
        delivered += s.delivered_measured;
        hist.add(&s.latency)
            .map_err(|e| anyhow!("merging histograms: {e:?}"))?;
    }
    r.expected = Some(expected);
    r.received = Some(received);
    r.lost = Some(lost);
    r.dup = Some(dup);
    r.out_of_order = Some(ooo);
    r.delivered = Some(delivered);
    r.foreign = Some(sub_stats.iter().map(|s| s.foreign).sum());
    r.wrong_qos = Some(sub_stats.iter().map(|s| s.wrong_qos).sum());
    if let (Some(a), Some(b)) = cpu.tool {
        r.tool_cpu_pct = a.percent_until(&b);
    }
    if let (Some(a), Some(b)) = cpu.broker {
        r.broker_cpu_pct = a.percent_until(&b);
    }
    if let Some((start, reconnect, resumed, readings)) = drain {
        // Offline delivery: no latency (it is the time spent offline), no
        // delivery rate over the publishing window; the drain instead.
        r.reconnect_secs = Some(reconnect.as_secs_f64());
        r.sessions_resumed = Some(resumed as u64);
        r.drain_timeout_secs = Some(run.drain_timeout.as_secs_f64());
        r.drained = Some(lost == 0);
        let last = sub_stats.iter().filter_map(|s| s.last_arrival).max();
        if let Some(last) = last {
            let d = last.saturating_duration_since(start).as_secs_f64();
            r.drain_secs = Some(d);
            if d > 0.0 {
                r.drain_per_sec = Some(received as f64 / d);
            }
        }
        // CPU from the start of the reconnection to the first reading
        // after the last arrival (or the end, if nothing arrived).
        let first = readings.first();
        let end = last
            .and_then(|l| readings.iter().find(|x| x.0 >= l))
            .or(readings.last());
        if let (Some(a), Some(b)) = (first, end) {
            if let (Some(x), Some(y)) = (a.1, b.1) {
                r.drain_tool_cpu_pct = x.percent_until(&y);
            }
            if let (Some(x), Some(y)) = (a.2, b.2) {
                r.drain_broker_cpu_pct = x.percent_until(&y);
            }
        }
    } else {
        if run.args.persistent {
            r.late = Some(sub_stats.iter().map(|s| s.late).sum());
            r.lag_secs = sub_stats
                .iter()
                .filter_map(|s| s.last_arrival)
                .max()
                .map(|t| t.saturating_duration_since(stop).as_secs_f64());
        }
        r.delivered_per_sec = Some(delivered as f64 / secs);
        let (p50, p99, p999, max, mean) = percentiles(&hist);
        r.p50_us = Some(p50);
        r.p99_us = Some(p99);
        r.p999_us = Some(p999);
        r.max_us = Some(max);
        r.mean_us = Some(mean);
    }
    if run.args.persistent && lost > 0 {
        queue_hint(run, lost, &per_sub);
    }
    Ok(r)
}

/// Explains losses with persistent sessions: most often the broker's
/// per-session queue bound, which drops what does not fit.
fn queue_hint(run: &Run, lost: u64, per_sub: &[(u64, u64)]) {
    let owed_max = per_sub.iter().map(|p| p.0).max().unwrap_or(0);
    let lossy: Vec<u64> = per_sub
        .iter()
        .filter(|(o, r)| r < o)
        .map(|&(_, r)| r)
        .collect();
    let (lo, hi) = (
        lossy.iter().copied().min().unwrap_or(0),
        lossy.iter().copied().max().unwrap_or(0),
    );
    // Received counts that agree closely across the lossy subscribers (or
    // a single one) are what a queue bound leaves: the bound plus the
    // messages in flight.
    let looks_bounded = (lossy.len() >= 2 || run.args.offline) && hi - lo <= hi / 100 + 1024;
    let when = if run.args.offline {
        "while it was offline"
    } else {
        "over the run"
    };
    eprintln!(
        "tern bench: hint: {lost} acknowledged message(s) never arrived. Each subscriber was \
         owed up to {owed_max} messages {when}; the {} lossy subscriber(s) received between \
         {lo} and {hi}.{} A broker drops what exceeds its per-session queue bound: Tern \
         --session-queue-max (default 1000; --queue-full-policy drop-oldest), Mosquitto \
         max_queued_messages (default 1000). Start the broker with a bound above {owed_max}.",
        lossy.len(),
        if looks_bounded {
            " That looks like a queue bound (similar counts received, fewer than owed)."
        } else {
            ""
        }
    );
}

/// conns: open C connections, hold them idle for the duration, close them.
async fn conns(run: &Run, cfg: &ClientCfg) -> anyhow::Result<Report> {
    let n = run.args.count.unwrap_or(1000);
    let broker_pid = run.args.broker_pid;
    let rss_before = broker_pid.and_then(procstat::rss_kib);
    let made = connect_many(
        cfg,
        (0..n).map(|i| format!("{}-c{i}", run.run_id)).collect(),
        None,
        SessionMode::Clean,
        run.args.connect_concurrency as usize,
        run.args.connect_rate,
        "connection",
    )
    .await?;
    eprintln!(
        "tern bench: {n} connections open after {:.3} s; holding them for {} s",
        made.elapsed.as_secs_f64(),
        run.duration.as_secs_f64()
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut set: JoinSet<anyhow::Result<()>> = JoinSet::new();
    for c in made.conns {
        set.spawn(hold(c, stop_rx.clone()));
    }
    let hold_from = Instant::now();
    let cpu_from = (
        procstat::CpuSample::take(std::process::id()),
        broker_pid.and_then(procstat::CpuSample::take),
    );
    // Let the broker settle before reading its memory.
    tokio::time::sleep(run.duration.min(Duration::from_secs(1))).await;
    let rss_after = broker_pid.and_then(procstat::rss_kib);
    tokio::time::sleep_until((hold_from + run.duration).into()).await;
    let cpu_to = (
        procstat::CpuSample::take(std::process::id()),
        broker_pid.and_then(procstat::CpuSample::take),
    );
    stop_tx.send_replace(true);
    let mut dropped = 0u64;
    let mut first_error: Option<anyhow::Error> = None;
    while let Some(r) = set.join_next().await {
        if let Err(e) = r
            .map_err(|e| anyhow!("connection task failed: {e}"))
            .and_then(|r| r)
        {
            dropped += 1;
            first_error.get_or_insert(e);
        }
    }
    if let Some(e) = first_error {
        eprintln!("tern bench: {dropped} held connection(s) failed; first: {e:#}");
    }
    let mut r = run.base_report();
    connect_figures(&mut r, n, made.elapsed, &made.latency);
    r.held = Some((n as u64).saturating_sub(dropped));
    r.dropped = Some(dropped);
    r.broker_rss_kib_before = rss_before;
    r.broker_rss_kib_after = rss_after;
    if let (Some(b), Some(a)) = (rss_before, rss_after) {
        r.broker_rss_bytes_per_conn = Some(a.saturating_sub(b) * 1024 / n as u64);
    }
    if let Some((a, b)) = cpu_from.0.zip(cpu_to.0) {
        r.tool_cpu_pct = a.percent_until(&b);
    }
    if let Some((a, b)) = cpu_from.1.zip(cpu_to.1) {
        r.broker_cpu_pct = a.percent_until(&b);
    }
    Ok(r)
}

/// Holds one idle connection: answers nothing, pings on keep alive, and
/// notices if the broker closes it. Returns an error if it was closed.
async fn hold(mut conn: Conn, mut stop: watch::Receiver<bool>) -> anyhow::Result<()> {
    conn.make_idle();
    loop {
        if *stop.borrow_and_update() {
            break;
        }
        if conn.try_read()? == ReadState::Closed {
            while let Some(p) = conn.decode_next()? {
                if let tern_mqtt_codec::Packet::Disconnect(d) = p {
                    bail!("{}", describe_disconnect(&d));
                }
            }
            bail!("the broker closed the connection");
        }
        while let Some(p) = conn.decode_next()? {
            if let tern_mqtt_codec::Packet::Disconnect(d) = p {
                bail!("{}", describe_disconnect(&d));
            }
        }
        conn.ping_if_due(Instant::now())?;
        conn.try_flush()?;
        let wake = conn.next_ping();
        tokio::select! {
            r = conn.wait(wake) => r?,
            r = stop.changed() => {
                if r.is_err() {
                    break;
                }
            }
        }
    }
    conn.disconnect().await;
    Ok(())
}
