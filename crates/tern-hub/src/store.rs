//! The seam where durable storage plugs in.
//!
//! This release keeps sessions and retained messages in memory only: the
//! hub owns the live state, and [`MemoryStore`] is the (no-op) backend.
//! The durable store (embedded engine, then the NATS cluster) will
//! implement [`Store`] to be told of each change and to give state back
//! at start-up. The trait is deliberately small until that work shapes it.

use std::sync::Arc;

use crate::message::Message;

/// Receives the hub's state changes that must survive a restart.
pub trait Store: Send + Sync + std::fmt::Debug {
    /// A retained message was set (`Some`) or cleared (`None`) on `topic`.
    fn retained_changed(&self, topic: &str, msg: Option<&Arc<Message>>);
    /// A persistent session was created or changed its subscriptions.
    fn session_changed(&self, client_id: &str);
    /// A session ended (expired, or replaced by a clean start).
    fn session_ended(&self, client_id: &str);
}

/// Keeps nothing: state lives in the hub's memory for the process's life.
#[derive(Debug, Default)]
pub struct MemoryStore;

impl Store for MemoryStore {
    fn retained_changed(&self, _topic: &str, _msg: Option<&Arc<Message>>) {}
    fn session_changed(&self, _client_id: &str) {}
    fn session_ended(&self, _client_id: &str) {}
}
