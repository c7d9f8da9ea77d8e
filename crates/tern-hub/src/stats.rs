//! Counters the hub keeps for metrics and `$SYS` topics. Relaxed atomics:
//! each is independent and read approximately.

use std::sync::atomic::{AtomicU64, Ordering};

/// Hub-wide counters and gauges. Adapters add their own byte and
/// connection counts here too, so one place feeds every report.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connected clients (gauge).
    pub clients_connected: AtomicU64,
    /// Connections accepted since start.
    pub connections_total: AtomicU64,
    /// Sessions held (gauge).
    pub sessions: AtomicU64,
    /// Subscriptions held (gauge).
    pub subscriptions: AtomicU64,
    /// Retained messages held (gauge).
    pub retained: AtomicU64,
    /// Messages published into the hub.
    pub messages_received: AtomicU64,
    /// Messages written to clients.
    pub messages_sent: AtomicU64,
    /// Bytes read from clients.
    pub bytes_received: AtomicU64,
    /// Bytes written to clients.
    pub bytes_sent: AtomicU64,
    /// QoS 0 messages not kept for offline sessions.
    pub dropped_offline: AtomicU64,
    /// Messages dropped because a session queue was full.
    pub dropped_queue_full: AtomicU64,
    /// Messages dropped because they expired before delivery.
    pub dropped_expired: AtomicU64,
    /// Messages not sent because they exceeded the client's maximum packet size.
    pub dropped_too_large: AtomicU64,
    /// Retained messages refused because the retained store was full.
    pub retained_refused: AtomicU64,
    /// Publishers paused because a subscriber they feed was congested.
    pub backpressure_pauses: AtomicU64,
    /// Pauses that reached their maximum before the subscriber drained.
    pub backpressure_timeouts: AtomicU64,
    /// Malformed packets and protocol violations received.
    pub protocol_errors: AtomicU64,
    /// Logins refused for bad credentials.
    pub logins_failed: AtomicU64,
    /// Logins refused because the source address failed too often.
    pub logins_rate_limited: AtomicU64,
    /// PUBLISHes refused by capability or deny rule.
    pub publishes_denied: AtomicU64,
    /// Subscriptions refused by capability or deny rule.
    pub subscribes_denied: AtomicU64,
    /// TLS handshakes that failed or timed out.
    pub tls_handshakes_failed: AtomicU64,
    /// Connections refused at CONNECT (any reason).
    pub connects_refused: AtomicU64,
    /// Sessions taken over by a new connection.
    pub takeovers: AtomicU64,
    /// Connections closed for keep-alive timeout.
    pub keepalive_timeouts: AtomicU64,
    /// Sessions ended by expiry.
    pub sessions_expired: AtomicU64,
    /// Will messages published.
    pub wills_published: AtomicU64,
    /// Group commits written by the durable store.
    pub store_commits: AtomicU64,
    /// Changes written by the durable store.
    pub store_ops: AtomicU64,
    /// Store write failures (the store stops acknowledging after one).
    pub store_errors: AtomicU64,
}

impl Stats {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Subtracts one from a gauge.
    pub fn add_neg(gauge: &AtomicU64) {
        gauge.fetch_sub(1, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
