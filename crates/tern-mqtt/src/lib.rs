//! Tern's MQTT adapter: turns MQTT 3.1, 3.1.1 and 5.0 connections into
//! hub operations and the hub's deliveries back into packets.
//!
//! It decodes with `tern-mqtt-codec`, routes nothing itself (the hub does),
//! and keeps only per-connection state: topic aliases, keep alive, the
//! output buffer.
//!
//! # Layout
//! - `config`: [`MqttConfig`], every bound with its default.
//! - `server`: the TCP accept loop ([`server::run`]).
//! - `connection`: one connection's handshake and main loop, generic over
//!   the stream so TLS and WebSocket reuse it.
//! - `auth`: credentials from CONNECT → principal; the transport; the
//!   failed-login limiter.
//! - `close`: [`CloseReason`], the closed set of ways a connection ends.
//! - `tls`: rustls configuration with certificate reload.
//! - `sys`: the `$SYS/broker/...` statistics publisher.

pub mod auth;
pub mod close;
pub mod config;
pub mod connection;
pub mod server;
pub mod sys;
pub mod tls;

pub use auth::{AuthPolicy, Transport, TransportKind};
pub use close::CloseReason;
pub use config::MqttConfig;

use std::sync::Arc;

/// What every MQTT connection shares: the hub, the settings and the
/// authentication policy.
#[derive(Debug)]
pub struct MqttContext {
    pub hub: Arc<tern_hub::Hub>,
    pub cfg: Arc<MqttConfig>,
    pub auth: AuthPolicy,
}
