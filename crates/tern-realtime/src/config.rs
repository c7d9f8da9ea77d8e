//! [`RealtimeConfig`]: every bound of the realtime protocol, with its
//! default.

use std::time::Duration;

/// Bounds and timers of realtime connections. Every field a client can
/// push against has a bound here.
#[derive(Debug, Clone)]
pub struct RealtimeConfig {
    /// Largest total payload of one MESSAGE or PRESENCE (sent to clients
    /// as `maxMessageSize`); more is NACKed with 40009.
    pub message_bytes_max: usize,
    /// Largest frame read from a client; a larger one is refused with
    /// ERROR 40009 and the connection closes. Covers `message_bytes_max`
    /// plus the envelope.
    pub frame_bytes_max: usize,
    /// Channels attached at once per connection (90021 beyond).
    pub channels_per_connection_max: usize,
    /// Presence members per channel (91003 beyond).
    pub presence_members_per_channel_max: usize,
    /// Presence events queued for one connection before it is
    /// disconnected (it then re-attaches and gets a fresh SYNC).
    pub presence_events_queued_max: usize,
    /// Bytes of deliveries moved from the session queue into one write
    /// batch; the rest waits in the (bounded) session queue.
    pub write_batch_bytes_max: usize,
    /// A write that takes longer ends the connection (a client that does
    /// not read).
    pub write_timeout: Duration,
    /// A HEARTBEAT goes out when nothing else did for this long (sent to
    /// clients as `maxIdleInterval`).
    pub max_idle_interval: Duration,
    /// Nothing at all (not even a pong) from the client for this long ends
    /// the connection.
    pub client_silence_max: Duration,
    /// How long the state of a connection lost without CLOSE is kept for
    /// `resume` (sent to clients as `connectionStateTtl`).
    pub connection_state_ttl: Duration,
    /// Lost connections whose state is kept for `resume` at once; the
    /// oldest is forgotten beyond.
    pub resume_states_max: usize,
    /// Most messages replayed per channel on a resumed attach (after the
    /// client's `channelSerial`); more means the gap was not covered (no
    /// RESUMED).
    pub resume_replay_max: usize,
    /// Most messages a `rewind` replays per channel (a larger count is
    /// reduced to this).
    pub rewind_max: usize,
    /// After a connection is lost without CLOSE, its presence members stay
    /// this long before an implicit LEAVE.
    pub presence_leave_grace: Duration,
    /// Members per SYNC frame.
    pub sync_page_members: usize,
    /// Longest client id accepted (40012 beyond).
    pub client_id_bytes_max: usize,
    /// Sent in `connectionDetails.serverId`.
    pub server_id: String,
}

impl Default for RealtimeConfig {
    fn default() -> Self {
        RealtimeConfig {
            message_bytes_max: 65_536,
            frame_bytes_max: 65_536 + 16_384,
            channels_per_connection_max: 1000,
            presence_members_per_channel_max: 10_000,
            presence_events_queued_max: 10_000,
            write_batch_bytes_max: 256 * 1024,
            write_timeout: Duration::from_secs(30),
            max_idle_interval: Duration::from_secs(15),
            client_silence_max: Duration::from_secs(60),
            connection_state_ttl: Duration::from_secs(120),
            resume_states_max: 10_000,
            resume_replay_max: 1000,
            rewind_max: 100,
            presence_leave_grace: Duration::from_secs(15),
            sync_page_members: 100,
            client_id_bytes_max: 256,
            server_id: "tern".to_owned(),
        }
    }
}
