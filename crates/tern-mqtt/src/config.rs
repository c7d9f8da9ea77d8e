//! Settings of the MQTT adapter. Every field is a server flag and config
//! key; defaults are documented on each field and in `tern serve --help`.

use std::time::Duration;

/// Bounds and behaviour of MQTT connections.
#[derive(Debug, Clone)]
pub struct MqttConfig {
    /// Largest packet accepted from a client, and advertised to v5
    /// clients as Maximum Packet Size. Default 1 MiB.
    pub packet_bytes_max: usize,
    /// Inbound QoS 1/2 window advertised as Receive Maximum (v5); a client
    /// exceeding it is disconnected with 0x93. Default 128.
    pub receive_maximum: u16,
    /// Outbound QoS 1/2 messages in flight per connection, further capped
    /// by the client's own Receive Maximum. Default 512.
    pub inflight_max: u16,
    /// Time allowed between the TCP accept and a complete CONNECT. Default 10 s.
    pub connect_timeout: Duration,
    /// Largest keep alive granted, seconds; larger requests are capped (v5
    /// clients are told with Server Keep Alive). Default 65535.
    pub keepalive_max_secs: u16,
    /// Largest session expiry granted, seconds. Default u32::MAX (never).
    pub session_expiry_max_secs: u32,
    /// Topic aliases a client may define (v5 Topic Alias Maximum), and the
    /// most aliases the server defines towards a client. Default 64.
    pub topic_alias_max: u16,
    /// Longest client identifier accepted, bytes. Default 256.
    pub client_id_bytes_max: usize,
    /// Connections held at once; further ones are closed at accept. Default 100 000.
    pub connections_max: usize,
    /// Output bytes buffered per connection before the connection stops
    /// taking messages from its queue (they wait in the bounded session
    /// queue instead). Default 64 KiB.
    pub write_buffer_bytes_high: usize,
    /// Longest a publisher is paused (not read) while a connected
    /// subscriber it feeds is congested; after that the subscriber's
    /// queue policy applies. Default 1 s.
    pub backpressure_pause_max: Duration,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            packet_bytes_max: 1024 * 1024,
            receive_maximum: 128,
            inflight_max: 512,
            connect_timeout: Duration::from_secs(10),
            keepalive_max_secs: 65_535,
            session_expiry_max_secs: u32::MAX,
            topic_alias_max: 64,
            client_id_bytes_max: 256,
            connections_max: 100_000,
            write_buffer_bytes_high: 64 * 1024,
            backpressure_pause_max: Duration::from_secs(1),
        }
    }
}
