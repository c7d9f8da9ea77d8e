//! `GET /` with a WebSocket upgrade: the Ably-compatible realtime
//! protocol (`tern-realtime`).

use std::sync::Arc;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, Query, State};
use axum::response::Response;

use crate::HttpState;

/// Runs a realtime connection with the connect parameters of the query.
pub async fn realtime_over_websocket(
    State(st): State<Arc<HttpState>>,
    ConnectInfo(crate::Peer(peer)): ConnectInfo<crate::Peer>,
    Query(query): Query<Vec<(String, String)>>,
    ws: WebSocketUpgrade,
) -> Response {
    let origin = tern_realtime::Origin {
        peer,
        secure: st.secure,
        loopback_listener: st.loopback,
    };
    st.realtime.upgrade(origin, query, ws)
}
