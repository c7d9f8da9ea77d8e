//! Sessions: the state of one client identity that outlives its
//! connections — subscriptions, queued messages, outbound and inbound QoS
//! 1/2 state.
//!
//! The state sits behind a per-session mutex; publishers lock only the
//! sessions they deliver to, never a global lock. A connection that owns
//! the session is woken through [`SessionHandle::wake`] and drains the
//! queue with [`SessionState::next_outgoing`].

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Instant;

use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::journal::{EntryRecord, Journal, StoreOp};
use crate::message::{Delivery, Qos};

/// What happens when a session's queue is full and one more QoS 1/2
/// message arrives. QoS 0 messages are always dropped then.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueueFullPolicy {
    /// Drop the oldest queued message to make room (counted).
    #[default]
    DropOldest,
    /// Drop the arriving message (counted).
    DropNew,
    /// Disconnect the client (reason: quota exceeded) and drop the message.
    Disconnect,
}

/// Why the hub asks a connection to close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum KickReason {
    /// Not asked.
    None = 0,
    /// Another connection took the session over.
    TakenOver = 1,
    /// The session's queue overflowed under the `disconnect` policy.
    QueueFull = 2,
    /// The server is shutting down.
    ShuttingDown = 3,
}

impl KickReason {
    fn from_u8(v: u8) -> KickReason {
        match v {
            1 => KickReason::TakenOver,
            2 => KickReason::QueueFull,
            3 => KickReason::ShuttingDown,
            _ => KickReason::None,
        }
    }
}

/// Options of one subscription, protocol-neutral.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SubOptions {
    /// Maximum QoS granted.
    pub qos: Qos,
    /// Do not deliver messages this session's client published itself.
    pub no_local: bool,
    /// Keep the publisher's retain flag on live deliveries.
    pub retain_as_published: bool,
    /// Subscription identifier to attach to matching deliveries.
    pub sub_id: Option<u32>,
}

/// Where an outbound QoS 1/2 message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutState {
    /// QoS 1 sent, waiting for the acknowledgement.
    AwaitAck,
    /// QoS 2 sent, waiting for the receipt.
    AwaitRec,
    /// QoS 2 released, waiting for the completion.
    AwaitComp,
}

/// An outbound message that holds a packet id.
#[derive(Debug, Clone)]
pub struct InFlight {
    pub delivery: Delivery,
    pub state: OutState,
}

/// What a connection must send next.
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// A message; `packet_id` is `Some` for QoS 1/2.
    Publish {
        delivery: Delivery,
        packet_id: Option<u16>,
        dup: bool,
    },
    /// A release for a QoS 2 message whose receipt came back.
    Release { packet_id: u16 },
}

/// Mutable state of a session, guarded by [`SessionHandle::state`].
#[derive(Debug, Default)]
pub struct SessionState {
    /// Raw filter (including any `$share/` prefix) → options.
    pub subscriptions: HashMap<String, SubOptions>,
    /// Messages waiting to be sent (bounded by the hub's queue limit).
    pub queue: VecDeque<Delivery>,
    /// Outbound messages holding a packet id, in send order.
    pub inflight: BTreeMap<u16, InFlight>,
    /// Order in which inflight ids were assigned, for resending in order.
    inflight_order: VecDeque<u16>,
    /// Inbound QoS 2 ids received (PUBREC sent) and not yet released.
    pub incoming_qos2: HashSet<u16>,
    /// Last packet id handed out.
    next_packet_id: u16,
    /// Session expiry interval, seconds (u32::MAX = never).
    pub expiry_secs: u32,
    /// The connection currently attached, if any.
    pub owner: Option<Arc<ConnLink>>,
    /// Incremented at every attach; timers armed at a disconnect only
    /// act if it has not changed since.
    pub generation: u64,
    /// A will waiting for its delay (or the session's end): when, and what.
    /// Boxed: every session holds this field, few hold a will.
    pub pending_will: Option<Box<(Instant, crate::message::Message)>>,
    /// The attached connection's will, kept for the store (a restart
    /// publishes it: the connection was lost). The connection holds its
    /// own copy to publish when it closes.
    pub will: Option<Box<crate::hub::Will>>,
    /// A publisher's back-pressure pause on this session timed out: it is a
    /// slow consumer and stops pausing publishers until its queue drains
    /// below half the back-pressure mark (its queue policy applies instead).
    pub slow_consumer: bool,
    /// Ids that must be resent with DUP on the next drain (session resumed).
    resend: VecDeque<u16>,
    /// Set while the session is persistent (expiry > 0 and a durable
    /// store): every change to its queue, in-flight and inbound QoS 2
    /// state is also pushed to the journal.
    pub journal: Option<Arc<Journal>>,
    /// The session's store id (its handle's id).
    pub sid: u64,
    /// Journal sequence number of the last op pushed for this session: a
    /// connection must not send what depends on it before it is durable.
    pub last_op: u64,
    /// Journal sequence number of the last QoS 2 state change of an
    /// outbound delivery (packet id assigned, released): the PUBLISH or
    /// PUBREL that depends on it must not go out before it is durable.
    pub last_state_op: u64,
}

impl SessionState {
    /// The next thing to send: first the resends of a resumed session,
    /// then queued messages while the outbound window (`window` packets
    /// holding ids) allows. Expired messages are dropped on the way.
    pub fn next_outgoing(&mut self, window: usize, now: Instant) -> NextOutgoing {
        while let Some(pid) = self.resend.pop_front() {
            // An id acknowledged since the resume needs no resend.
            if let Some(f) = self.inflight.get(&pid) {
                return NextOutgoing::Send(match f.state {
                    OutState::AwaitComp => Outgoing::Release { packet_id: pid },
                    _ => Outgoing::Publish {
                        delivery: f.delivery.clone(),
                        packet_id: Some(pid),
                        dup: true,
                    },
                });
            }
        }
        let Some(front) = self.queue.front() else {
            return NextOutgoing::Idle;
        };
        if front.msg.is_expired(now) {
            if let Some(d) = self.queue.pop_front() {
                self.unstore(&d);
            }
            return NextOutgoing::Expired;
        }
        if front.qos > 0 && self.inflight.len() >= window {
            return NextOutgoing::WindowFull;
        }
        let Some(d) = self.queue.pop_front() else {
            return NextOutgoing::Idle;
        };
        if d.qos == 0 {
            return NextOutgoing::Send(Outgoing::Publish {
                delivery: d,
                packet_id: None,
                dup: false,
            });
        }
        let pid = self.alloc_packet_id();
        let state = if d.qos == 1 {
            OutState::AwaitAck
        } else {
            OutState::AwaitRec
        };
        if d.qos == 2 {
            // The id must be durable before the PUBLISH goes out, so a
            // restart resends it with the same id [MQTT-4.3.3].
            self.store_entry(&d, Some((pid, state)));
        }
        self.inflight.insert(
            pid,
            InFlight {
                delivery: d.clone(),
                state,
            },
        );
        self.inflight_order.push_back(pid);
        NextOutgoing::Send(Outgoing::Publish {
            delivery: d,
            packet_id: Some(pid),
            dup: false,
        })
    }

    fn alloc_packet_id(&mut self) -> u16 {
        // The window is far below 65_535, so a free id exists; bound the
        // search anyway.
        for _ in 0..=u16::MAX as u32 {
            self.next_packet_id = self.next_packet_id.wrapping_add(1);
            if self.next_packet_id == 0 {
                self.next_packet_id = 1;
            }
            if !self.inflight.contains_key(&self.next_packet_id) {
                return self.next_packet_id;
            }
        }
        self.next_packet_id
    }

    fn forget(&mut self, pid: u16) {
        if let Some(f) = self.inflight.remove(&pid) {
            self.unstore(&f.delivery);
        }
        if let Some(pos) = self.inflight_order.iter().position(|&p| p == pid) {
            self.inflight_order.remove(pos);
        }
    }

    /// Pushes `op` if the session is persistent.
    fn push(&mut self, op: StoreOp) {
        if let Some(j) = &self.journal {
            self.last_op = self.last_op.max(j.push(op));
        }
    }

    /// Records (or updates) the stored entry of a delivery.
    pub(crate) fn store_entry(&mut self, d: &Delivery, inflight: Option<(u16, OutState)>) {
        if d.qkey == 0 {
            return;
        }
        if d.msg.stored.get().is_none() {
            return;
        }
        let rec = EntryRecord {
            sid: self.sid,
            qkey: d.qkey,
            msg_seq: d.msg.seq,
            qos: d.qos,
            retain: d.retain,
            sub_ids: d.sub_ids.clone(),
            inflight,
        };
        if inflight.is_some() {
            self.push(StoreOp::UpdateEntry(rec));
            self.last_state_op = self.last_op;
        } else {
            self.push(StoreOp::PutEntry(rec));
        }
    }

    /// Removes a delivery's stored entry (acknowledged, dropped, expired).
    pub(crate) fn unstore(&mut self, d: &Delivery) {
        if d.qkey != 0 {
            let op = StoreOp::DeleteEntry {
                sid: self.sid,
                qkey: d.qkey,
                msg_seq: d.msg.seq,
                history: d.msg.stored.get().is_some_and(|s| s.history),
            };
            self.push(op);
        }
    }

    /// Takes an inbound QoS 2 packet id (PUBREC to follow); false if it
    /// was already held.
    pub fn add_incoming(&mut self, pid: u16) -> bool {
        if !self.incoming_qos2.insert(pid) {
            return false;
        }
        let sid = self.sid;
        self.push(StoreOp::PutIncoming {
            sid,
            packet_id: pid,
        });
        true
    }

    /// Releases an inbound QoS 2 packet id (PUBCOMP to follow); false if
    /// it was not held.
    pub fn remove_incoming(&mut self, pid: u16) -> bool {
        if !self.incoming_qos2.remove(&pid) {
            return false;
        }
        let sid = self.sid;
        self.push(StoreOp::DeleteIncoming {
            sid,
            packet_id: pid,
        });
        true
    }

    /// Drops the oldest queued delivery (queue-full policy).
    pub(crate) fn drop_oldest(&mut self) {
        if let Some(d) = self.queue.pop_front() {
            self.unstore(&d);
        }
    }

    /// Restores a stored in-flight delivery at recovery.
    pub(crate) fn restore_inflight(&mut self, pid: u16, delivery: Delivery, state: OutState) {
        self.inflight.insert(pid, InFlight { delivery, state });
        self.inflight_order.push_back(pid);
    }

    /// A QoS 1 acknowledgement came back. False if the id was unknown or
    /// not waiting for one.
    pub fn on_ack(&mut self, pid: u16) -> bool {
        match self.inflight.get(&pid) {
            Some(f) if f.state == OutState::AwaitAck => {
                self.forget(pid);
                true
            }
            _ => false,
        }
    }

    /// A QoS 2 receipt came back; the caller answers with a release.
    /// `accepted` false (a failure reason code) ends the exchange.
    /// Returns false if the id was unknown.
    pub fn on_rec(&mut self, pid: u16, accepted: bool) -> bool {
        match self.inflight.get_mut(&pid) {
            Some(f) if f.state == OutState::AwaitRec || f.state == OutState::AwaitComp => {
                if accepted {
                    let first = f.state == OutState::AwaitRec;
                    f.state = OutState::AwaitComp;
                    if first {
                        // Durable before the PUBREL goes out: a restart
                        // then resends only the release.
                        let d = f.delivery.clone();
                        self.store_entry(&d, Some((pid, OutState::AwaitComp)));
                    }
                } else {
                    self.forget(pid);
                }
                true
            }
            _ => false,
        }
    }

    /// A QoS 2 completion came back. False if the id was unknown.
    pub fn on_comp(&mut self, pid: u16) -> bool {
        match self.inflight.get(&pid) {
            Some(f) if f.state == OutState::AwaitComp => {
                self.forget(pid);
                true
            }
            _ => false,
        }
    }

    /// Gives up on an in-flight message as if it had completed (it could
    /// not be sent, e.g. too large for the client).
    pub fn abandon(&mut self, pid: u16) {
        self.forget(pid);
    }

    /// Marks every in-flight message for resending (with DUP, or as a
    /// release), in original order. Called when a connection resumes the
    /// session [MQTT-4.4.0-1].
    pub fn prepare_resume(&mut self) {
        self.resend = self.inflight_order.iter().copied().collect();
    }

    /// Counts of queued and in-flight messages.
    pub fn pending(&self) -> usize {
        self.queue.len() + self.inflight.len()
    }
}

/// Result of [`SessionState::next_outgoing`].
#[derive(Debug)]
pub enum NextOutgoing {
    Send(Outgoing),
    /// A queued message had expired and was dropped; call again.
    Expired,
    /// Only QoS 1/2 messages are queued and the window is full.
    WindowFull,
    /// Nothing queued.
    Idle,
}

/// The link between a session and the connection that currently owns it.
/// Each connection has its own, so a takeover can kick the old connection
/// while the new one attaches to the same session.
#[derive(Debug)]
pub struct ConnLink {
    /// Unique connection id.
    pub id: u64,
    /// Wakes the connection when its session has something to send.
    wake: Notify,
    /// Set (with a reason) when the hub wants this connection gone.
    kick: AtomicU8,
}

impl ConnLink {
    /// A new link with connection id `id`.
    pub fn new(id: u64) -> ConnLink {
        ConnLink {
            id,
            wake: Notify::new(),
            kick: AtomicU8::new(0),
        }
    }

    /// Wakes the connection (the permit is kept if it is not waiting).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Waits until [`wake`](Self::wake) or a kick.
    pub async fn woken(&self) {
        self.wake.notified().await
    }

    /// Asks the connection to close for `reason`.
    pub fn kick(&self, reason: KickReason) {
        self.kick.store(reason as u8, Ordering::Release);
        self.wake.notify_one();
    }

    /// The pending kick, or [`KickReason::None`].
    pub fn kicked(&self) -> KickReason {
        KickReason::from_u8(self.kick.load(Ordering::Acquire))
    }
}

/// A session shared between the hub, the subscription index and the
/// connection that currently owns it.
#[derive(Debug)]
pub struct SessionHandle {
    /// Unique for the life of the process; a new session for the same
    /// client id gets a new id.
    pub id: u64,
    /// The client identity.
    pub client_id: Arc<str>,
    /// Mutable state.
    pub state: Mutex<SessionState>,
    /// True while a connection owns it (read on the publish path without
    /// taking the lock, e.g. to pick a shared-subscription member).
    connected: AtomicBool,
    /// Signalled when the queue drains below the back-pressure low mark,
    /// waking the publishers paused on this session.
    pub drained: Notify,
}

impl SessionHandle {
    pub(crate) fn new(id: u64, client_id: Arc<str>, expiry_secs: u32) -> SessionHandle {
        SessionHandle {
            id,
            client_id,
            state: Mutex::new(SessionState {
                expiry_secs,
                ..SessionState::default()
            }),
            connected: AtomicBool::new(false),
            drained: Notify::new(),
        }
    }

    /// True while a connection owns the session.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    pub(crate) fn set_connected(&self, v: bool) {
        self.connected.store(v, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;

    fn d(qos: Qos) -> Delivery {
        Delivery {
            msg: Arc::new(Message::new("t", "x", qos)),
            qos,
            retain: false,
            sub_ids: vec![],
            qkey: 0,
        }
    }

    #[test]
    fn window_limits_inflight_and_acks_free_it() {
        let mut s = SessionState::default();
        for _ in 0..3 {
            s.queue.push_back(d(1));
        }
        let now = Instant::now();
        let mut ids = vec![];
        for _ in 0..2 {
            match s.next_outgoing(2, now) {
                NextOutgoing::Send(Outgoing::Publish { packet_id, .. }) => {
                    ids.push(packet_id.unwrap())
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(s.next_outgoing(2, now), NextOutgoing::WindowFull));
        assert!(s.on_ack(ids[0]));
        assert!(!s.on_ack(ids[0]), "second ack of the same id is unknown");
        assert!(matches!(s.next_outgoing(2, now), NextOutgoing::Send(_)));
    }

    #[test]
    fn qos2_flow_and_resume_resends_in_order() {
        let mut s = SessionState::default();
        s.queue.push_back(d(2));
        s.queue.push_back(d(1));
        let now = Instant::now();
        let NextOutgoing::Send(Outgoing::Publish {
            packet_id: Some(a), ..
        }) = s.next_outgoing(10, now)
        else {
            panic!()
        };
        let NextOutgoing::Send(Outgoing::Publish {
            packet_id: Some(b), ..
        }) = s.next_outgoing(10, now)
        else {
            panic!()
        };
        assert!(s.on_rec(a, true));
        s.prepare_resume();
        assert!(matches!(
            s.next_outgoing(10, now),
            NextOutgoing::Send(Outgoing::Release { packet_id }) if packet_id == a
        ));
        assert!(matches!(
            s.next_outgoing(10, now),
            NextOutgoing::Send(Outgoing::Publish { packet_id: Some(p), dup: true, .. }) if p == b
        ));
        assert!(s.on_comp(a));
        assert!(s.on_ack(b));
        assert!(s.inflight.is_empty());
    }

    #[test]
    fn packet_ids_skip_zero_and_ids_in_use() {
        let mut s = SessionState {
            next_packet_id: u16::MAX - 1,
            ..SessionState::default()
        };
        s.queue.push_back(d(1));
        s.queue.push_back(d(1));
        s.queue.push_back(d(1));
        let now = Instant::now();
        let mut ids = vec![];
        while let NextOutgoing::Send(Outgoing::Publish {
            packet_id: Some(p), ..
        }) = s.next_outgoing(10, now)
        {
            ids.push(p);
        }
        assert_eq!(ids, vec![u16::MAX, 1, 2]);
    }
}
