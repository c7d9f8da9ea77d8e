//! Tern's Ably-compatible realtime protocol (ABLY-PROTOCOL.md): the wire
//! types shared with the REST API and SSE, the WebSocket connection the
//! official Ably SDKs speak, and presence.
//!
//! A realtime connection is a hub session (client id `"\0rt:" +
//! connectionId`, clean, subscribed to each attached channel), so realtime
//! and MQTT clients exchange messages on the same channels.
//!
//! # Layout
//! - `message`: [`ProtocolMessage`], [`Message`], [`PresenceMessage`],
//!   [`ErrorInfo`]; JSON and msgpack; the mapping to and from
//!   `tern_hub::Message`.
//! - `config`: [`RealtimeConfig`], every bound with its default.
//! - `params`: the WebSocket connect query ([`ConnectParams`]).
//! - `presence`: [`Presence`], members per channel and their watchers.
//! - `resume`: connection state kept for `resume` ([`resume::Resumes`]).
//! - `connection`: one WebSocket connection's task.

#![forbid(unsafe_code)]

pub mod config;
pub mod connection;
pub mod message;
pub mod params;
pub mod presence;
pub mod resume;

pub use config::RealtimeConfig;
pub use message::{
    Data, DecodeError, ErrorInfo, Extras, Format, Message, PresenceMessage, ProtocolMessage,
    channel_name, id_of, serial_of,
};
pub use params::{ConnectParams, Rewind};
pub use presence::Presence;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ws::WebSocketUpgrade;
use axum::response::Response;
use tern_mqtt::MqttContext;

/// What every realtime connection shares.
#[derive(Debug)]
pub struct Realtime {
    /// The hub, the MQTT settings (connection limit) and the
    /// authentication policy shared with MQTT.
    pub ctx: Arc<MqttContext>,
    /// Bounds and timers.
    pub cfg: RealtimeConfig,
    /// Presence members of every channel.
    pub presence: Presence,
    /// Live connection keys and the state of lost connections, for
    /// `resume`.
    pub resumes: resume::Resumes,
}

/// How a WebSocket reached the server.
#[derive(Debug, Clone, Copy)]
pub struct Origin {
    /// The client's address.
    pub peer: SocketAddr,
    /// Over TLS (`wss://`).
    pub secure: bool,
    /// The listener is on a loopback address (keys in clear allowed by
    /// default, as for MQTT).
    pub loopback_listener: bool,
}

impl Realtime {
    /// The realtime side over `ctx`'s hub and authentication.
    pub fn new(ctx: Arc<MqttContext>, cfg: RealtimeConfig) -> Arc<Realtime> {
        let presence = Presence::new(cfg.presence_members_per_channel_max);
        let resumes = resume::Resumes::new(cfg.connection_state_ttl, cfg.resume_states_max);
        Arc::new(Realtime {
            ctx,
            cfg,
            presence,
            resumes,
        })
    }

    /// The presence members of `channel` (a channel string; any `[?...]`
    /// qualifier is ignored), as PRESENT messages with `data` as entered —
    /// for `GET /channels/{name}/presence`. Empty for an invalid name.
    pub fn members(&self, channel: &str) -> Vec<PresenceMessage> {
        match channel_name(channel) {
            Ok(name) => self.presence.members(name),
            Err(_) => Vec::new(),
        }
    }

    /// `GET /` with a WebSocket upgrade: runs a realtime connection with
    /// the connect parameters in `query`.
    pub fn upgrade(
        self: &Arc<Realtime>,
        origin: Origin,
        query: Vec<(String, String)>,
        ws: WebSocketUpgrade,
    ) -> Response {
        // Read past our own frame limit so an oversized frame is answered
        // with ERROR 40009 rather than a dropped socket; beyond twice the
        // limit the WebSocket layer drops it.
        let ws_max = self.cfg.frame_bytes_max.saturating_mul(2);
        let rt = self.clone();
        let params = ConnectParams::parse(&query);
        // The WebSocket layer zeroes its read buffer (default 128 KiB)
        // before every socket read: keep it small.
        ws.read_buffer_size(8 * 1024)
            .max_message_size(ws_max)
            .max_frame_size(ws_max)
            .on_upgrade(move |socket| connection::serve(socket, params, origin, rt))
    }
}
