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

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server. With no options: MQTT on 127.0.0.1:1883, anonymous
    /// clients allowed because it listens on loopback only.
    Serve(ServeOptions),
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
    }
}

async fn serve(s: Settings) -> anyhow::Result<()> {
    let hub = Hub::new(s.hub.clone());
    let listener =
        bind(s.mqtt).with_context(|| format!("binding the MQTT listener on {}", s.mqtt))?;
    let addr = listener.local_addr()?;
    // One line a script can read: `listening mqtt HOST:PORT`.
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening mqtt {addr}")?;
        out.flush()?;
    }
    tracing::info!(%addr, http_reserved = %s.http, data_dir = %s.data_dir.display(), "MQTT listener ready (HTTP listener and data directory are reserved for later releases)");

    tokio::spawn(drive_timers(hub.clone()));
    if let Some(every) = s.sys_interval {
        tokio::spawn(tern_mqtt::sys::run(hub.clone(), every));
    }
    let cfg = Arc::new(s.mqtt_cfg.clone());
    let server = tokio::spawn(tern_mqtt::server::run(
        listener,
        hub.clone(),
        cfg,
        shutdown_signal(),
    ));
    server.await.context("MQTT server task")?;
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
