//! Tern's HTTP listener: MQTT over WebSocket (`/mqtt`), the token endpoint
//! (`POST /keys/{keyName}/requestToken`) and the server clock (`GET /time`).
//! The REST and realtime channel APIs will join this router.
//!
//! # Layout
//! - `ws`: turns a WebSocket into the byte stream the MQTT connection task
//!   reads and writes (binary frames; packets may span frames and a frame
//!   may hold several packets).
//! - `tls`: an accept loop that completes TLS handshakes off the accept
//!   path, for HTTPS and `wss://`.
//! - `tokens`: `requestToken` and `time`, with Ably-style error bodies.
//! - `rest`: the channel REST API (publish, history, presence, channel
//!   details), JSON or MessagePack.
//! - `sse`: Server-Sent Events on channels, with rewind and resume.
//! - `assets`: the browser client library `/lib/tern.js` and the live
//!   channel page `/demo/channel`.

mod assets;
mod cors;
mod deadline;
mod realtime;
pub mod rest;
mod sse;
mod tls;
mod tokens;
mod ws;

pub use tls::TlsListener;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use tern_mqtt::MqttContext;

/// What the HTTP handlers share.
#[derive(Debug)]
pub struct HttpState {
    /// The MQTT side (hub, settings, authentication), used by `/mqtt` and
    /// by the token endpoint.
    pub mqtt: Arc<MqttContext>,
    /// The listener is encrypted (WebSocket connections count as `wss`).
    pub secure: bool,
    /// The listener is on a loopback address.
    pub loopback: bool,
    /// The Ably-compatible realtime protocol, served at `/`.
    pub realtime: Arc<tern_realtime::Realtime>,
}

/// The router for one HTTP listener.
pub fn router(state: Arc<HttpState>) -> Router {
    Router::new()
        .route("/mqtt", get(ws::mqtt_over_websocket))
        .route("/", get(realtime::realtime_over_websocket))
        .route("/time", get(tokens::time))
        .route("/channels", get(rest::channels))
        .route("/channels/{name}", get(rest::channel_details))
        .route(
            "/channels/{name}/messages",
            get(rest::history)
                .post(rest::publish)
                .layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/channels/{name}/presence", get(rest::presence))
        .route(
            "/channels/{name}/presence/history",
            get(rest::presence_history),
        )
        .route("/sse", get(sse::stream))
        .route("/lib/tern.js", get(assets::tern_js))
        .route("/demo/channel", get(assets::channel_page))
        .route(
            "/keys/{key_name}/requestToken",
            post(tokens::request_token).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .layer(axum::middleware::from_fn(cors::layer))
        .with_state(state)
}

/// The client's address, for handlers (`ConnectInfo<Peer>`), on plain and
/// TLS listeners alike.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

impl
    axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, tokio::net::TcpListener>>
    for Peer
{
    fn connect_info(s: axum::serve::IncomingStream<'_, tokio::net::TcpListener>) -> Peer {
        Peer(*s.remote_addr())
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>> for Peer {
    fn connect_info(s: axum::serve::IncomingStream<'_, TlsListener>) -> Peer {
        Peer(*s.remote_addr())
    }
}

/// Bounds of an HTTP listener.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Time allowed for a request's headers to arrive (also the idle time
    /// allowed between requests on a kept-alive connection).
    pub header_read_timeout: std::time::Duration,
    /// Connections held at once (WebSockets included); more are closed at
    /// accept.
    pub connections_max: usize,
}

/// Serves the router on `listener` (plain TCP or [`TlsListener`]) until
/// `shutdown` resolves; then lets requests in progress finish for up to
/// two seconds.
pub async fn serve<L>(
    mut listener: L,
    state: Arc<HttpState>,
    limits: HttpLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tower::ServiceExt;

    let router = router(state.clone());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let active = Arc::new(AtomicUsize::new(0));
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    tokio::pin!(shutdown);
    loop {
        let (io, peer) = tokio::select! {
            a = listener.accept() => a,
            _ = &mut shutdown => break,
        };
        if active.load(Ordering::Relaxed) >= limits.connections_max {
            tern_hub::Stats::add(&state.mqtt.hub.stats.connects_refused, 1);
            drop(io);
            continue;
        }
        active.fetch_add(1, Ordering::Relaxed);
        let router = router.clone();
        let svc =
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(Peer(peer)));
                router.clone().oneshot(req)
            });
        let conn = builder
            .serve_connection_with_upgrades(
                TokioIo::new(deadline::FirstByteDeadline::new(
                    io,
                    tokio::time::Instant::now() + limits.header_read_timeout,
                )),
                svc,
            )
            .into_owned();
        let conn = graceful.watch(conn);
        let active = active.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
            }
            active.fetch_sub(1, Ordering::Relaxed);
        });
    }
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), graceful.shutdown()).await;
    Ok(())
}
