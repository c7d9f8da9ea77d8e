//! `$SYS/broker/...` statistics topics, published as retained messages at
//! an interval.

use std::sync::Arc;
use std::time::Duration;

use tern_hub::{Hub, Message, Stats};

/// Publishes the statistics every `interval` until the task is dropped.
pub async fn run(hub: Arc<Hub>, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        publish_once(&hub);
    }
}

/// Publishes every statistics topic once.
pub fn publish_once(hub: &Hub) {
    let s = &hub.stats;
    let uptime = hub.started().elapsed().as_secs();
    let values: [(&str, String); 19] = [
        (
            "$SYS/broker/version",
            format!("tern {}", env!("CARGO_PKG_VERSION")),
        ),
        ("$SYS/broker/uptime", format!("{uptime} seconds")),
        (
            "$SYS/broker/clients/connected",
            Stats::get(&s.clients_connected).to_string(),
        ),
        (
            "$SYS/broker/clients/total",
            Stats::get(&s.sessions).to_string(),
        ),
        (
            "$SYS/broker/messages/received",
            Stats::get(&s.messages_received).to_string(),
        ),
        (
            "$SYS/broker/messages/sent",
            Stats::get(&s.messages_sent).to_string(),
        ),
        (
            "$SYS/broker/messages/dropped",
            (Stats::get(&s.dropped_queue_full) + Stats::get(&s.dropped_offline)).to_string(),
        ),
        (
            "$SYS/broker/bytes/received",
            Stats::get(&s.bytes_received).to_string(),
        ),
        (
            "$SYS/broker/bytes/sent",
            Stats::get(&s.bytes_sent).to_string(),
        ),
        (
            "$SYS/broker/retained messages/count",
            hub.retained_count().to_string(),
        ),
        (
            "$SYS/broker/subscriptions/count",
            hub.subscription_count().to_string(),
        ),
        (
            "$SYS/broker/protocol errors",
            Stats::get(&s.protocol_errors).to_string(),
        ),
        (
            "$SYS/broker/connections/refused",
            Stats::get(&s.connects_refused).to_string(),
        ),
        (
            "$SYS/broker/wills/published",
            Stats::get(&s.wills_published).to_string(),
        ),
        (
            "$SYS/broker/logins/failed",
            Stats::get(&s.logins_failed).to_string(),
        ),
        (
            "$SYS/broker/logins/rate limited",
            Stats::get(&s.logins_rate_limited).to_string(),
        ),
        (
            "$SYS/broker/publishes/denied",
            Stats::get(&s.publishes_denied).to_string(),
        ),
        (
            "$SYS/broker/subscriptions/denied",
            Stats::get(&s.subscribes_denied).to_string(),
        ),
        (
            "$SYS/broker/tls/handshakes failed",
            Stats::get(&s.tls_handshakes_failed).to_string(),
        ),
    ];
    for (topic, value) in values {
        let mut m = Message::new(topic, value, 0);
        m.retain = true;
        if let Err(e) = hub.publish(m) {
            tracing::warn!(topic, error = %e, "could not publish a $SYS topic");
        }
    }
}
