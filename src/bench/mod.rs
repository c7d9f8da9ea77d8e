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
//! See `docs/bench-tool.md`.

mod conn;
mod payload;
mod procstat;
mod publisher;
mod report;
mod subscriber;
mod tracker;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use hdrhistogram::Histogram;
use tern_mqtt_codec::{ProtocolVersion, QoS};
use tokio::sync::watch;
use tokio::task::JoinSet;

use conn::{ClientCfg, Conn, ReadState, describe_disconnect};
use publisher::{PubCfg, PubStats, Template, Timeline};
use report::{Report, percentiles};
use subscriber::{SubCfg, SubStats, new_histogram};

/// Time allowed after the publishers stop for acknowledgements and
/// deliveries still on their way.
const DRAIN: Duration = Duration::from_secs(2);
/// Slack of the hard deadline beyond warm-up + duration.
const DEADLINE_SLACK: Duration = Duration::from_secs(30);

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
            args,
        })
    }

    fn client_cfg(&self, addr: SocketAddr) -> ClientCfg {
        ClientCfg {
            addr,
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
    let deadline = Instant::now() + allowance;
    // Last resort if the runtime itself is wedged: the tokio timeout below
    // normally fires first.
    std::thread::Builder::new()
        .name("bench-watchdog".into())
        .spawn(move || {
            std::thread::sleep(allowance + Duration::from_secs(5));
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
        match tokio::time::timeout_at(deadline.into(), scenario(&run)).await {
            Ok(r) => r,
            Err(_) => Err(anyhow!(
                "the run did not finish within its hard deadline of {} s \
                 (warm-up + duration + {} s): the broker may have stalled",
                allowance.as_secs(),
                DEADLINE_SLACK.as_secs()
            )),
        }
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

async fn scenario(run: &Run) -> anyhow::Result<Report> {
    let addr = resolve(&run.args.host, run.args.port).await?;
    let cfg = run.client_cfg(addr);
    match run.scenario {
        Scenario::Conns => conns(run, &cfg).await,
        _ => messages(run, &cfg).await,
    }
}

/// Connections made by [`connect_many`], in index order, with their
/// connect latencies and the time the whole batch took.
struct Connected {
    conns: Vec<Conn>,
    latency: Histogram<u64>,
    elapsed: Duration,
}

/// Connects `ids.len()` clients, at most `concurrency` at once and at most
/// `rate` per second (0 = no limit); subscribes each to `filters[i]` if given.
async fn connect_many(
    cfg: &ClientCfg,
    ids: Vec<String>,
    filters: Option<(Vec<String>, QoS)>,
    concurrency: usize,
    rate: f64,
    what: &'static str,
) -> anyhow::Result<Connected> {
    let start = Instant::now();
    let n = ids.len();
    let mut slots: Vec<Option<Conn>> = (0..n).map(|_| None).collect();
    let mut latency = new_histogram();
    let mut set: JoinSet<anyhow::Result<(usize, Conn, Duration)>> = JoinSet::new();
    let filters = filters.map(|(f, q)| (Arc::new(f), q));
    let mut take = |r: Result<anyhow::Result<(usize, Conn, Duration)>, tokio::task::JoinError>,
                    slots: &mut Vec<Option<Conn>>|
     -> anyhow::Result<()> {
        let (i, c, took) = r.map_err(|e| anyhow!("connect task failed: {e}"))??;
        subscriber::record(&mut latency, took.as_micros() as u64);
        slots[i] = Some(c);
        Ok(())
    };
    for (i, id) in ids.into_iter().enumerate() {
        if rate > 0.0 {
            tokio::time::sleep_until((start + Duration::from_secs_f64(i as f64 / rate)).into())
                .await;
        }
        while set.len() >= concurrency {
            if let Some(r) = set.join_next().await {
                take(r, &mut slots)?;
            }
        }
        let cfg = cfg.clone();
        let filters = filters.clone();
        set.spawn(async move {
            let t = Instant::now();
            let mut c = Conn::connect(&cfg, &id)
                .await
                .with_context(|| format!("{what} {i} ({id})"))?;
            if let Some((f, q)) = &filters {
                c.subscribe(&f[i], *q, cfg.timeout)
                    .await
                    .with_context(|| format!("{what} {i} ({id})"))?;
            }
            Ok((i, c, t.elapsed()))
        });
    }
    while let Some(r) = set.join_next().await {
        take(r, &mut slots)?;
    }
    let elapsed = start.elapsed();
    let conns = slots.into_iter().flatten().collect::<Vec<_>>();
    if conns.len() != n {
        bail!("internal error: {} of {n} connections made", conns.len());
    }
    Ok(Connected {
        conns,
        latency,
        elapsed,
    })
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

/// CPU readings at the start and the end of the measured window.
#[derive(Default)]
struct CpuWindow {
    tool: (Option<procstat::CpuSample>, Option<procstat::CpuSample>),
    broker: (Option<procstat::CpuSample>, Option<procstat::CpuSample>),
}

/// fanin, fanout and pairs.
async fn messages(run: &Run, cfg: &ClientCfg) -> anyhow::Result<Report> {
    let qos = run.qos;
    let concurrency = run.args.connect_concurrency as usize;
    let sub_plans: Vec<(String, u32, u32)> =
        (0..run.subscribers).map(|i| run.sub_plan(i)).collect();
    let subs = connect_many(
        cfg,
        (0..run.subscribers)
            .map(|i| format!("{}-s{i}", run.run_id))
            .collect(),
        Some((sub_plans.iter().map(|p| p.0.clone()).collect(), qos)),
        concurrency,
        run.args.connect_rate,
        "subscriber",
    )
    .await?;
    let pubs = connect_many(
        cfg,
        (0..run.publishers)
            .map(|i| format!("{}-p{i}", run.run_id))
            .collect(),
        None,
        concurrency,
        run.args.connect_rate,
        "publisher",
    )
    .await?;
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
    for (i, (c, (_, first, count))) in subs.conns.into_iter().zip(sub_plans).enumerate() {
        let scfg = SubCfg {
            qos,
            first,
            count,
            time,
            finals: finals_rx.clone(),
        };
        set.spawn(async move {
            subscriber::run(c, scfg)
                .await
                .map(Done::Sub)
                .with_context(|| format!("subscriber {i}"))
        });
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
    let broker_pid = run.args.broker_pid;
    let sampler = tokio::spawn(async move {
        let me = std::process::id();
        let mut w = CpuWindow::default();
        tokio::time::sleep_until(measure_from.into()).await;
        w.tool.0 = procstat::CpuSample::take(me);
        w.broker.0 = broker_pid.and_then(procstat::CpuSample::take);
        tokio::time::sleep_until(stop.into()).await;
        w.tool.1 = procstat::CpuSample::take(me);
        w.broker.1 = broker_pid.and_then(procstat::CpuSample::take);
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
    let mut hist = new_histogram();
    for s in &sub_stats {
        for (k, t) in s.streams.iter().enumerate() {
            let p = s.first as usize + k;
            let Some(ps) = pub_stats.get(p) else { continue };
            let ex = excused.get(p).map(Vec::as_slice).unwrap_or(&[]);
            expected += ps.sent - ex.len() as u64;
            received += t.unique;
            lost += t.lost(ps.sent, ex);
            dup += t.dup;
            ooo += t.out_of_order;
        }
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
    r.delivered_per_sec = Some(delivered as f64 / secs);
    r.foreign = Some(sub_stats.iter().map(|s| s.foreign).sum());
    r.wrong_qos = Some(sub_stats.iter().map(|s| s.wrong_qos).sum());
    let (p50, p99, p999, max, mean) = percentiles(&hist);
    r.p50_us = Some(p50);
    r.p99_us = Some(p99);
    r.p999_us = Some(p999);
    r.max_us = Some(max);
    r.mean_us = Some(mean);
    if let (Some(a), Some(b)) = cpu.tool {
        r.tool_cpu_pct = a.percent_until(&b);
    }
    if let (Some(a), Some(b)) = cpu.broker {
        r.broker_cpu_pct = a.percent_until(&b);
    }
    Ok(r)
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
