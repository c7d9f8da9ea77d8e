//! `tern`: the server binary. Parses the command line, resolves settings,
//! and wires the hub to the protocol adapters.

mod bench;
mod config;

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use tern_hub::{Hub, KickReason};
use tokio::net::TcpListener;

use crate::config::{ServeOptions, Settings};

/// Tern: a realtime pub/sub server with an MQTT 3.1.1/5.0 broker at its core.
#[derive(Debug, Parser)]
#[command(name = "tern", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// `tern token` options.
#[derive(Debug, clap::Args)]
struct TokenArgs {
    /// The signing key, `appId.keyId:secret`.
    #[arg(long, env = "TERN_KEY")]
    key: String,
    /// Capability JSON; at most the key's [default: {"*":["*"]}].
    #[arg(long, default_value = r#"{"*":["*"]}"#)]
    capability: String,
    /// Lifetime: seconds, or with a unit (`90s`, `30m`, `1h`, `1d`); at most 24 h.
    #[arg(long, default_value = "1h")]
    ttl: String,
    /// Bind the token to this client id.
    #[arg(long)]
    client_id: Option<String>,
    /// Print the whole TokenDetails JSON instead of the token alone.
    #[arg(long)]
    json: bool,
}

fn parse_ttl_ms(text: &str) -> anyhow::Result<u64> {
    let (num, unit) = text
        .find(|c: char| !c.is_ascii_digit())
        .map_or((text, ""), |i| text.split_at(i));
    let n: u64 = num
        .parse()
        .with_context(|| format!("ttl {text:?}: expected e.g. 3600, 30m or 1h"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        other => anyhow::bail!("ttl {text:?}: unknown unit {other:?} (use s, m, h or d)"),
    };
    Ok(secs * 1000)
}

fn token(args: TokenArgs) -> anyhow::Result<()> {
    let key = tern_auth::ApiKey::parse(&args.key).context("--key")?;
    let requested = tern_auth::Capability::parse(&args.capability).context("--capability")?;
    let capability = requested.intersect(key.capability());
    if capability.is_empty() {
        anyhow::bail!("--capability grants nothing within the key's capability");
    }
    let ttl_ms = parse_ttl_ms(&args.ttl)?;
    let max = tern_auth::AuthLimits::default().ttl_max_ms;
    if ttl_ms == 0 || ttl_ms > max {
        anyhow::bail!("--ttl must be between 1 s and 24 h");
    }
    let details = tern_auth::issue_token(
        &key,
        ttl_ms,
        &capability,
        args.client_id.as_deref(),
        tern_auth::now_ms(),
    );
    if args.json {
        println!("{}", serde_json::to_string(&details)?);
    } else {
        println!("{}", details.token);
    }
    Ok(())
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server. With no options: MQTT on 127.0.0.1:1883, anonymous
    /// clients allowed because it listens on loopback only.
    Serve(Box<ServeOptions>),
    /// Print a token signed with an API key, for a device or a page that
    /// must not hold the key itself.
    Token(TokenArgs),
    /// Load-test an MQTT broker: throughput, latency, losses (see
    /// docs/bench-tool.md).
    Bench(bench::BenchArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Serve(opts) => {
            let settings = Settings::resolve(&opts)?;
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?
                .block_on(serve(settings))
        }
        Command::Bench(args) => bench::run(args),
        Command::Token(args) => token(args),
    }
}

async fn serve(s: Settings) -> anyhow::Result<()> {
    let (hub, writer) = if s.persist {
        let (mut store, journal, recovered) = tern_store::open(&s.data_dir, s.hub.history.clone())?;
        let hub = Hub::with_journal(s.hub.clone(), journal.clone());
        store.adopt_clock(&hub);
        hub.restore(recovered, Instant::now());
        hub.set_history_store(Arc::new(store.history_reader()));
        let sync = match s.fsync_interval {
            None => tern_store::Sync::EveryCommit,
            Some(d) => tern_store::Sync::Interval(d),
        };
        let writer = store.start(journal, Some(hub.clone()), sync);
        (hub, Some(writer))
    } else {
        (Hub::new(s.hub.clone()), None)
    };
    let mqtt = bind(s.mqtt).with_context(|| format!("binding the MQTT listener on {}", s.mqtt))?;
    let http = bind(s.http).with_context(|| format!("binding the HTTP listener on {}", s.http))?;
    let mqtts = match (&s.mqtts, &s.tls) {
        (Some(addr), Some(_)) => {
            Some(bind(*addr).with_context(|| format!("binding the MQTT/TLS listener on {addr}"))?)
        }
        _ => None,
    };
    let https = match (&s.https, &s.tls) {
        (Some(addr), Some(_)) => {
            Some(bind(*addr).with_context(|| format!("binding the HTTPS listener on {addr}"))?)
        }
        _ => None,
    };
    let (tls, https_tls) = match &s.tls {
        Some(t) => {
            let resolver = Arc::new(
                tern_mqtt::tls::ReloadingCert::open(&t.cert, &t.key)
                    .context("loading the TLS certificate")?,
            );
            tokio::spawn(resolver.clone().watch(t.reload_every));
            let ca = t.client_ca.as_deref();
            (
                Some(tern_mqtt::tls::server_config(
                    resolver.clone(),
                    &[b"mqtt"],
                    ca,
                )?),
                Some(tern_mqtt::tls::server_config(
                    resolver,
                    &[b"http/1.1"],
                    None,
                )?),
            )
        }
        None => (None, None),
    };

    tokio::spawn(drive_timers(hub.clone()));
    if let Some(every) = s.sys_interval {
        tokio::spawn(tern_mqtt::sys::run(hub.clone(), every));
    }
    let authenticator = tern_auth::Authenticator::from_config(&s.auth)?;
    let auth = tern_mqtt::AuthPolicy::new(
        authenticator,
        s.allow_anonymous,
        Arc::new(s.anonymous_capability.clone()),
        s.key_login_plain,
        tern_mqtt::auth::LoginLimits {
            failures_max: s.login_failures_max,
            ..Default::default()
        },
    );
    tracing::info!(
        keys = s.auth.keys.len(),
        deny_rules = s.auth.deny.len(),
        allow_anonymous = s.allow_anonymous,
        key_login_plain = ?s.key_login_plain,
        data_dir = %s.data_dir.display(),
        persist = s.persist,
        fsync_interval_ms = s.fsync_interval.map_or(0, |d| d.as_millis() as u64),
        "starting"
    );
    let ctx = Arc::new(tern_mqtt::MqttContext {
        hub: hub.clone(),
        cfg: Arc::new(s.mqtt_cfg.clone()),
        auth,
    });

    // One line per listener a script can read (`listening mqtt HOST:PORT`),
    // then `ready`.
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening mqtt {}", mqtt.local_addr()?)?;
        if let Some(l) = &mqtts {
            writeln!(out, "listening mqtts {}", l.local_addr()?)?;
        }
        writeln!(out, "listening http {}", http.local_addr()?)?;
        if let Some(l) = &https {
            writeln!(out, "listening https {}", l.local_addr()?)?;
        }
        writeln!(out, "ready")?;
        out.flush()?;
    }
    tracing::info!(mqtt = %mqtt.local_addr()?, http = %http.local_addr()?, "listening");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|v| *v).await;
        }
    };
    let mut tasks = vec![tokio::spawn(tern_mqtt::server::run(
        mqtt,
        ctx.clone(),
        stopped(),
    ))];
    if let (Some(l), Some(cfg)) = (mqtts, tls) {
        tasks.push(tokio::spawn(tern_mqtt::server::run_tls(
            l,
            ctx.clone(),
            cfg,
            stopped(),
        )));
    }
    let realtime = tern_realtime::Realtime::new(ctx.clone(), s.realtime.clone());
    let http_state = Arc::new(tern_http::HttpState {
        mqtt: ctx.clone(),
        secure: false,
        loopback: s.http.ip().is_loopback(),
        realtime: realtime.clone(),
    });
    let http_limits = tern_http::HttpLimits {
        header_read_timeout: s.mqtt_cfg.connect_timeout,
        connections_max: s.mqtt_cfg.connections_max,
    };
    let http_stop = stopped();
    tasks.push(tokio::spawn(async move {
        if let Err(e) = tern_http::serve(http, http_state, http_limits, http_stop).await {
            tracing::error!(error = %e, "HTTP listener failed");
        }
    }));
    if let (Some(l), Some(cfg)) = (https, https_tls) {
        let loopback = l.local_addr().is_ok_and(|a| a.ip().is_loopback());
        let listener = tern_http::TlsListener::new(l, cfg, s.mqtt_cfg.connect_timeout)?;
        let state = Arc::new(tern_http::HttpState {
            mqtt: ctx.clone(),
            secure: true,
            loopback,
            realtime: realtime.clone(),
        });
        let stop = stopped();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = tern_http::serve(listener, state, http_limits, stop).await {
                tracing::error!(error = %e, "HTTPS listener failed");
            }
        }));
    }
    shutdown_signal().await;
    let _ = stop_tx.send(true);
    // Graceful drain: tell every client why, give them a moment.
    tracing::info!("shutting down");
    hub.kick_all(KickReason::ShuttingDown);
    let deadline = Instant::now() + Duration::from_secs(2);
    while hub
        .stats
        .clients_connected
        .load(std::sync::atomic::Ordering::Relaxed)
        > 0
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for t in tasks {
        t.abort();
    }
    if let (Some(w), Some(j)) = (writer, hub.journal()) {
        // What is still in memory stays in the store: stop recording, let
        // the writer commit what is pending.
        j.close();
        let done = tokio::task::spawn_blocking(move || w.join(Duration::from_secs(10))).await;
        if !matches!(done, Ok(true)) {
            tracing::error!("the store did not finish its last commit in time");
        }
    }
    Ok(())
}

/// Binds a listener with a backlog deep enough for connection bursts (the
/// default of 128 overflows when thousands of clients connect at once).
fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Pending connections the kernel may queue per listener.
const LISTEN_BACKLOG: u32 = 4096;

/// Runs the hub's timers (will delays, session expiry).
async fn drive_timers(hub: Arc<Hub>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if hub.next_deadline().is_some_and(|d| d <= Instant::now()) {
            hub.tick(Instant::now());
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
