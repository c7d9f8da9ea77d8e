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
}

/// The router for one HTTP listener.
pub fn router(state: Arc<HttpState>) -> Router {
    Router::new()
        .route("/mqtt", get(ws::mqtt_over_websocket))
        .route("/time", get(tokens::time))
        .route("/keys/{key_name}/requestToken", post(tokens::request_token))
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

/// Serves the router on `listener` (plain TCP) until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<HttpState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<Peer>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// Serves the router over TLS (HTTPS, `wss://`) until `shutdown` resolves.
pub async fn serve_tls(
    listener: TlsListener,
    state: Arc<HttpState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<Peer>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
