//! Tern's hub: the protocol-agnostic core every adapter (MQTT, realtime
//! WebSocket, SSE, REST) talks to.
//!
//! It speaks channels, filters, messages and sessions — never sockets or
//! wire formats — and can be driven from a plain `#[test]`: create a
//! [`Hub`], attach sessions, publish, and drain each session's queue.
//!
//! # Layout
//! - `topic`: channel-name and filter validation, wildcard matching.
//! - `index`: the subscription trie, with shared-subscription groups.
//! - `message`: [`Message`] (one `Arc` shared by every subscriber) and
//!   [`Delivery`] (a message on its way to one session).
//! - `retained`: retained messages in a trie matched by filter.
//! - `session`: [`SessionHandle`], [`SessionState`] with the outbound
//!   QoS 1/2 window and inbound QoS 2 ids, [`ConnLink`] to the owning
//!   connection.
//! - `hub`: [`Hub`]: connect/disconnect, subscribe, publish, retained
//!   messages, wills, expiry timers (driven by [`Hub::tick`]).
//! - `stats`: counters for metrics and `$SYS`.
//! - `journal`: the ordered stream of durable changes an engine commits,
//!   and the durability watermark adapters wait on.

pub mod history;
pub mod hub;
pub mod index;
pub mod journal;
pub mod message;
pub mod retained;
pub mod session;
pub mod stats;
pub mod topic;

pub use history::{HistoryPage, HistoryQuery, HistoryRule, HistoryRules, HistoryStore};
pub use hub::{
    Attached, ConnectError, EXPIRY_NEVER, Hub, HubConfig, PublishError, PublishOnce, Published,
    Recovered, RecoveredSession, SubscribeError, Subscribed, Will, unix_ms,
};
pub use journal::{EntryRecord, Journal, SessionRecord, StoreFailed, StoreOp, Stored, StoredWill};
pub use message::{Delivery, Message, MessageProps, Qos};
pub use session::{
    ConnLink, KickReason, NextOutgoing, OutState, Outgoing, QueueFullPolicy, SessionHandle,
    SessionState, SubOptions,
};
pub use stats::Stats;
pub use topic::{TopicError, TopicLimits};
