//! MQTT over WebSocket: the `mqtt` subprotocol (also `mqttv3.1`), binary
//! frames carrying the MQTT byte stream.

use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tern_hub::Stats;
use tern_mqtt::{Transport, TransportKind};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::io::{CopyToBytes, SinkWriter, StreamReader};

use crate::HttpState;

/// Largest WebSocket frame accepted beyond the MQTT packet limit (frame
/// headers, or a client that packs a few packets in one frame).
const FRAME_SLACK_BYTES: usize = 64 * 1024;

/// The WebSocket layer's read buffer. Its default (128 KiB) is zeroed
/// again before every socket read: at 2,000 small frames per second per
/// connection that memset was a third of the broker's CPU.
pub const WS_READ_BUFFER_BYTES: usize = 8 * 1024;

/// `GET /mqtt`: upgrades to a WebSocket and runs an MQTT connection on it.
pub async fn mqtt_over_websocket(
    State(st): State<Arc<HttpState>>,
    ConnectInfo(crate::Peer(peer)): ConnectInfo<crate::Peer>,
    ws: WebSocketUpgrade,
) -> Response {
    let ctx = st.mqtt.clone();
    let connected = Stats::get(&ctx.hub.stats.clients_connected) as usize;
    if connected >= ctx.cfg.connections_max {
        Stats::add(&ctx.hub.stats.connects_refused, 1);
        return (StatusCode::SERVICE_UNAVAILABLE, "connection limit reached").into_response();
    }
    let frame_max = ctx.cfg.packet_bytes_max + FRAME_SLACK_BYTES;
    let kind = if st.secure {
        TransportKind::SecureWebSocket
    } else {
        TransportKind::WebSocket
    };
    let loopback = st.loopback;
    ws.protocols(["mqtt", "mqttv3.1"])
        .read_buffer_size(WS_READ_BUFFER_BYTES)
        .max_message_size(frame_max)
        .max_frame_size(frame_max)
        .on_upgrade(move |socket| async move {
            let transport = Transport {
                kind,
                peer,
                cert_key: None,
                loopback_listener: loopback,
                accepted_at: std::time::Instant::now(),
            };
            tern_mqtt::connection::serve(byte_stream(socket), transport, ctx).await;
        })
}

/// The WebSocket as one byte stream: binary frames in, each write out as
/// one binary frame. Text frames are a protocol error (MQTT-6.0.0-1) and
/// end the stream; pings are answered by the WebSocket layer.
fn byte_stream(socket: WebSocket) -> impl AsyncRead + AsyncWrite + Send + 'static {
    let (sink, stream) = socket.split();
    let incoming = stream
        .take_while(|m| {
            let more = !matches!(m, Ok(Message::Close(_)) | Err(_));
            std::future::ready(more)
        })
        .filter_map(|m| {
            std::future::ready(match m {
                Ok(Message::Binary(b)) => Some(Ok::<Bytes, std::io::Error>(b)),
                Ok(Message::Text(_)) => Some(Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "text frame on an MQTT WebSocket",
                ))),
                _ => None,
            })
        });
    let reader = StreamReader::new(incoming);
    let outgoing = sink
        .sink_map_err(std::io::Error::other)
        .with(|b: Bytes| std::future::ready(Ok::<Message, std::io::Error>(Message::Binary(b))));
    let writer = SinkWriter::new(CopyToBytes::new(outgoing));
    tokio::io::join(reader, writer)
}
