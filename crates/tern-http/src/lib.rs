//! Tern's HTTP listener: MQTT over WebSocket (`/mqtt`), the token endpoint
//! (`POST /keys/{keyName}/requestToken`) and the server clock (`GET /time`).
//! The REST and realtime channel APIs will join this router.
//!
//! # Layout
//! - `ws`: turns a WebSocket into the byte stream the MQTT connection task
//!   reads and writes (binary frames; packets may span frames and a frame
//!   may hold several packets).
//! - `tokens`: `requestToken` and `time`, with Ably-style error bodies.

mod tokens;
mod ws;

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

/// Serves `router` on `listener` (plain TCP) until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<HttpState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
