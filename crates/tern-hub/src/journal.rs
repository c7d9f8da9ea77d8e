//! The hub's side of durability: an ordered stream of state changes
//! ([`StoreOp`]) that a storage engine consumes and makes durable in group
//! commits, and the durability watermark adapters wait on before they
//! acknowledge.
//!
//! The hub never knows the engine. It pushes ops as its state changes
//! (under the same locks that change the state, so the op order is the
//! state order); every op gets a sequence number; the engine takes every
//! pending op at once, commits them as one atomic batch and then reports
//! the highest sequence number it made durable. An adapter that must not
//! acknowledge before the change is durable (a QoS 1/2 PUBACK/PUBREC, a
//! QoS 2 PUBREL or PUBCOMP, a QoS 2 delivery's packet id) remembers the
//! sequence number and waits for [`Journal::wait_durable`].
//!
//! Messages are written once (`PutMessage`, keyed by the message's publish
//! sequence number) and referenced by every queue entry that carries them
//! and by the channel's history index; the engine deletes a record when
//! neither refers to it any more.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use crate::message::{Message, Qos};
use crate::session::{OutState, SubOptions};

/// One durable change, in the order the hub made it.
#[derive(Debug)]
pub enum StoreOp {
    /// A persistent session's record (created, resumed, subscriptions
    /// changed, disconnected).
    PutSession(SessionRecord),
    /// The session ended: remove its record, queue entries and inbound
    /// QoS 2 ids.
    DeleteSession { sid: u64 },
    /// A message referenced by a stored queue entry or history (its key is
    /// `msg.seq`).
    PutMessage { msg: Arc<Message> },
    /// A new queued delivery of a persistent session.
    PutEntry(EntryRecord),
    /// A stored delivery changed state (QoS 2 packet id and state).
    UpdateEntry(EntryRecord),
    /// The delivery was acknowledged, dropped or expired.
    DeleteEntry {
        sid: u64,
        qkey: u64,
        msg_seq: u64,
        /// The message was also written to its channel's history.
        history: bool,
    },
    /// The message (already `PutMessage`d) joins its channel's history,
    /// kept within the channel rule's bounds.
    PutHistory {
        channel: Arc<str>,
        seq: u64,
        /// Receive time, ms since the Unix epoch.
        at_ms: u64,
    },
    /// An inbound QoS 2 packet id was received (PUBREC to be sent).
    PutIncoming { sid: u64, packet_id: u16 },
    /// An inbound QoS 2 packet id was released (PUBCOMP to be sent).
    DeleteIncoming { sid: u64, packet_id: u16 },
    /// The retained message of a channel (stored whole, one per channel).
    PutRetained { msg: Arc<Message> },
    /// The channel's retained message was cleared.
    DeleteRetained { topic: Arc<str> },
}

/// What is stored of a persistent session besides its queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// Store id of the session (its [`SessionHandle`](crate::SessionHandle)
    /// id when it was created).
    pub sid: u64,
    pub client_id: String,
    /// Session expiry interval in seconds ([`EXPIRY_NEVER`](crate::EXPIRY_NEVER) = never).
    pub expiry_secs: u32,
    /// Wall-clock time (ms since the Unix epoch) the last connection
    /// left; `None` while connected. Expiry counts from here, across
    /// restarts.
    pub disconnected_at_ms: Option<u64>,
    /// Raw filter → options.
    pub subscriptions: Vec<(String, SubOptions)>,
    /// The will of the connection attached (published after a restart,
    /// since the server's end lost that connection), or a will waiting
    /// for its delay after the connection left.
    pub will: Option<StoredWill>,
}

/// A will as stored with its session.
#[derive(Debug, Clone)]
pub struct StoredWill {
    pub msg: Message,
    /// Will delay of the attached connection's will.
    pub delay_secs: u32,
    /// When a pending will is due (ms since the Unix epoch); `None` while
    /// its connection is attached.
    pub due_ms: Option<u64>,
}

impl PartialEq for StoredWill {
    fn eq(&self, o: &StoredWill) -> bool {
        self.delay_secs == o.delay_secs
            && self.due_ms == o.due_ms
            && self.msg.topic == o.msg.topic
            && self.msg.payload == o.msg.payload
            && self.msg.qos == o.msg.qos
            && self.msg.retain == o.msg.retain
            && self.msg.props == o.msg.props
            && self.msg.expiry == o.msg.expiry
    }
}

impl Eq for StoredWill {}

/// One stored delivery of a persistent session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryRecord {
    pub sid: u64,
    /// Orders the session's entries; unique in the store.
    pub qkey: u64,
    /// The message's store sequence number.
    pub msg_seq: u64,
    pub qos: Qos,
    pub retain: bool,
    pub sub_ids: Vec<u32>,
    /// Packet id and state once sent (recorded for QoS 2, so a restart
    /// resends with the same id or only the release).
    pub inflight: Option<(u16, OutState)>,
}

/// The durability stream was broken by a storage failure: nothing pushed
/// after it becomes durable, and the server must stop acknowledging.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the store failed{}: changes are no longer made durable", if self.disk_full { " (disk full)" } else { "" })]
pub struct StoreFailed {
    /// The disk is full (as opposed to another I/O error).
    pub disk_full: bool,
}

#[derive(Debug, Default)]
struct Pending {
    ops: Vec<StoreOp>,
    /// Sequence number of the last op pushed.
    last: u64,
}

/// The ordered stream of durable changes between the hub and the engine.
#[derive(Debug)]
pub struct Journal {
    pending: Mutex<Pending>,
    ready: Condvar,
    durable: tokio::sync::watch::Sender<u64>,
    failed: AtomicBool,
    /// The failure was a full disk.
    disk_full: AtomicBool,
    /// Set at shutdown: in-memory state is being torn down and must not
    /// be reflected in the store (dropping the last reference to a
    /// message must not delete its record then).
    closed: AtomicBool,
    /// Next message sequence number / queue key.
    next_key: AtomicU64,
}

impl Default for Journal {
    fn default() -> Self {
        Journal {
            pending: Mutex::new(Pending::default()),
            ready: Condvar::new(),
            durable: tokio::sync::watch::Sender::new(0),
            failed: AtomicBool::new(false),
            disk_full: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            next_key: AtomicU64::new(1),
        }
    }
}

impl Journal {
    /// A journal whose message keys start after `last_key` (the highest
    /// key found in the store).
    pub fn new(last_key: u64) -> Arc<Journal> {
        let j = Journal::default();
        j.next_key.store(last_key + 1, Ordering::Relaxed);
        Arc::new(j)
    }

    /// Makes later keys greater than `last` (the highest key found in the
    /// store).
    pub fn raise_next_key(&self, last: u64) {
        self.next_key.fetch_max(last + 1, Ordering::Relaxed);
    }

    /// A fresh key for a message or a queue entry.
    pub fn next_key(&self) -> u64 {
        self.next_key.fetch_add(1, Ordering::Relaxed)
    }

    /// Appends `op`; returns its sequence number. Ops pushed after
    /// [`close`](Self::close) are discarded (and get number 0: nothing to
    /// wait for).
    pub fn push(&self, op: StoreOp) -> u64 {
        if self.closed.load(Ordering::Acquire) {
            return 0;
        }
        let mut p = self.pending.lock();
        p.last += 1;
        p.ops.push(op);
        let seq = p.last;
        let first = p.ops.len() == 1;
        drop(p);
        if first {
            self.ready.notify_one();
        }
        seq
    }

    /// Sequence number of the last op pushed.
    pub fn last_pushed(&self) -> u64 {
        self.pending.lock().last
    }

    /// For the engine: waits up to `timeout` for ops and takes all of
    /// them, with the sequence number of the last one.
    pub fn take(&self, timeout: Duration) -> (Vec<StoreOp>, u64) {
        let mut p = self.pending.lock();
        if p.ops.is_empty() {
            self.ready.wait_for(&mut p, timeout);
        }
        (std::mem::take(&mut p.ops), p.last)
    }

    /// For the engine: every op up to `seq` is durable.
    pub fn mark_durable(&self, seq: u64) {
        self.durable.send_if_modified(|d| {
            if seq > *d {
                *d = seq;
                true
            } else {
                false
            }
        });
    }

    /// For the engine: the store failed (`disk_full`: for lack of space);
    /// waiters are told so.
    pub fn mark_failed(&self, disk_full: bool) {
        self.disk_full.store(disk_full, Ordering::Release);
        self.failed.store(true, Ordering::Release);
        self.durable.send_modify(|_| {});
    }

    /// True once the store has failed.
    pub fn has_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// The highest sequence number known durable.
    pub fn durable(&self) -> u64 {
        *self.durable.borrow()
    }

    /// Waits until every op up to `seq` is durable.
    pub async fn wait_durable(&self, seq: u64) -> Result<(), StoreFailed> {
        let mut rx = self.durable.subscribe();
        let failed = &self.failed;
        let r = rx
            .wait_for(|&d| d >= seq || failed.load(Ordering::Acquire))
            .await;
        if self.has_failed() || r.is_err() {
            return Err(StoreFailed {
                disk_full: self.disk_full.load(Ordering::Acquire),
            });
        }
        Ok(())
    }

    /// Stops recording changes (shutdown): state dropped from memory from
    /// now on stays in the store.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.ready.notify_all();
    }

    /// True after [`close`](Self::close).
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

/// Set on a message (see [`Message::stored`]) once its record was written
/// to the store (under the key `msg.seq`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    /// It was written to its channel's history as well.
    pub history: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(seq: u64) -> StoreOp {
        StoreOp::DeleteIncoming {
            sid: seq,
            packet_id: 1,
        }
    }

    #[test]
    fn ops_are_numbered_in_order_and_taken_together() {
        let j = Journal::new(0);
        let a = j.push(op(1));
        let b = j.push(op(2));
        assert_eq!((a, b), (1, 2));
        let (ops, last) = j.take(Duration::ZERO);
        assert_eq!(ops.len(), 2);
        assert_eq!(last, 2);
        assert!(j.take(Duration::ZERO).0.is_empty());
    }

    #[tokio::test]
    async fn waiters_wake_on_durability_or_failure() {
        let j = Journal::new(0);
        let s = j.push(op(1));
        let j2 = j.clone();
        let w = tokio::spawn(async move { j2.wait_durable(s).await });
        tokio::task::yield_now().await;
        assert!(!w.is_finished());
        j.mark_durable(s);
        assert_eq!(w.await.unwrap(), Ok(()));

        let s = j.push(op(2));
        let j2 = j.clone();
        let w = tokio::spawn(async move { j2.wait_durable(s).await });
        tokio::task::yield_now().await;
        j.mark_failed(true);
        assert_eq!(w.await.unwrap(), Err(StoreFailed { disk_full: true }));
    }

    #[test]
    fn nothing_is_recorded_after_close() {
        let j = Journal::new(0);
        j.close();
        assert_eq!(j.push(op(1)), 0);
        assert!(j.take(Duration::ZERO).0.is_empty());
    }
}
