//! The hub: sessions, routing, retained messages, wills and timers.
//!
//! Lock order (never taken the other way round): `sessions` → `index` →
//! a session's `state`; `retained` and `timers` are leaves taken alone.
//! The publish path takes `index` shared and each target session's state
//! briefly; no global lock is held exclusively per message.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};

use crate::history::{HistoryRules, HistoryStore};
use crate::index::{Subscriber, SubscriptionIndex};
use crate::journal::{EntryRecord, Journal, SessionRecord, StoreOp, Stored, StoredWill};
use crate::message::{Delivery, Message, Qos};
use crate::retained::RetainedStore;
use crate::session::{
    ConnLink, KickReason, OutState, QueueFullPolicy, SessionHandle, SessionState, SubOptions,
};
use crate::stats::Stats;
use crate::topic::{self, TopicError, TopicLimits};

thread_local! {
    /// Scratch space for the subscriptions matching one publish.
    static MATCHES: std::cell::Cell<Vec<Subscriber>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Session expiry value meaning "never expires".
pub const EXPIRY_NEVER: u32 = u32::MAX;

/// Bounds and policies of the hub. Every field is a server setting.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Topic name and filter bounds.
    pub topic: TopicLimits,
    /// Messages queued per session (QoS 0 included) before the policy applies.
    pub session_queue_max: usize,
    /// What to do with a QoS 1/2 message for a full queue.
    pub queue_full_policy: QueueFullPolicy,
    /// Subscriptions per session.
    pub subscriptions_max: usize,
    /// Retained messages held in all.
    pub retained_max: usize,
    /// Sessions held in all (connected and offline persistent ones).
    pub sessions_max: usize,
    /// Deliver one copy per matching subscription instead of one copy per
    /// session at the highest granted QoS.
    pub overlap_deliver_each: bool,
    /// Queue length at which a connected session is reported congested by
    /// `publish` for QoS 1/2 messages, so the publisher's adapter can slow
    /// down (back-pressure) before the queue overflows; 0 turns it off.
    pub backpressure_queue_messages: usize,
    /// Channels that keep history, and how much (needs a store).
    pub history: HistoryRules,
    /// How long a published message id is remembered: a message with the
    /// same id on the same channel within this window is accepted and not
    /// published again (idempotent publishing).
    pub dedup_window: Duration,
    /// Most message ids remembered (the oldest are forgotten first).
    pub dedup_ids_max: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            topic: TopicLimits::default(),
            session_queue_max: 1000,
            queue_full_policy: QueueFullPolicy::DropOldest,
            subscriptions_max: 1000,
            retained_max: 1_000_000,
            sessions_max: 1_000_000,
            overlap_deliver_each: false,
            backpressure_queue_messages: 500,
            history: HistoryRules::default(),
            dedup_window: Duration::from_secs(120),
            dedup_ids_max: 100_000,
        }
    }
}

/// A will message and its delay.
#[derive(Debug, Clone)]
pub struct Will {
    pub msg: Message,
    /// Seconds to wait after the connection is lost.
    pub delay_secs: u32,
}

/// Result of attaching a connection to a session.
#[derive(Debug)]
pub struct Attached {
    pub session: Arc<SessionHandle>,
    /// The link the connection waits on.
    pub link: Arc<ConnLink>,
    /// An earlier session was resumed [MQTT-3.2.2-2].
    pub session_present: bool,
}

/// Why a connection could not attach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    #[error("the session limit is reached")]
    SessionsFull,
}

/// Why a subscription was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    #[error("invalid filter: {0}")]
    InvalidFilter(#[from] TopicError),
    #[error("the session has reached its subscription limit")]
    TooManySubscriptions,
}

/// Why a publish was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    #[error("invalid topic name: {0}")]
    InvalidTopic(#[from] TopicError),
}

/// What a publish did.
#[derive(Debug, Clone, Default)]
pub struct Published {
    /// Sessions the message was queued for.
    pub queued: usize,
    /// The message asked to be retained but the retained store is full;
    /// it was routed to current subscribers only.
    pub retained_refused: bool,
    /// A connected session whose queue passed the back-pressure mark with
    /// this QoS 1/2 message: the publisher should pause until it drains.
    pub congested: Option<Arc<SessionHandle>>,
    /// Journal sequence number that must be durable before a QoS 1/2
    /// publish is acknowledged; 0 when the publish changed nothing durable.
    pub durable_seq: u64,
    /// The publish sequence number the message got (`Message::seq`): the
    /// basis of its serial.
    pub seq: u64,
}

/// What a subscribe did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscribed {
    /// A subscription to the same filter existed and was replaced.
    pub existed: bool,
    /// It is a shared subscription (no retained messages on subscribe).
    pub shared: bool,
}

#[derive(Debug)]
enum TimerEvent {
    /// Publish the session's pending will if still disconnected.
    Will(Arc<SessionHandle>, u64),
    /// End the session if still disconnected.
    Expire(Arc<SessionHandle>, u64),
}

/// The protocol-agnostic core shared by every adapter.
#[derive(Debug)]
pub struct Hub {
    config: HubConfig,
    sessions: Mutex<HashMap<Arc<str>, Arc<SessionHandle>>>,
    index: RwLock<SubscriptionIndex>,
    retained: RwLock<RetainedStore>,
    timers: Mutex<BTreeMap<(Instant, u64), TimerEvent>>,
    next_id: AtomicU64,
    /// Last publish sequence number handed out.
    publish_seq: AtomicU64,
    /// Wall-clock milliseconds at `started`, to turn receive instants
    /// into timestamps.
    started_ms: u64,
    /// Counters for metrics and `$SYS`.
    pub stats: Stats,
    started: Instant,
    /// Where durable changes go; `None` keeps everything in memory.
    journal: Option<Arc<Journal>>,
    /// Where channel history is read from.
    history: std::sync::OnceLock<Arc<dyn HistoryStore>>,
    /// Recently published message ids.
    dedup: Mutex<Dedup>,
}

/// Message ids published recently: (channel, id) → publish sequence
/// number, in arrival order for expiry.
#[derive(Debug, Default)]
struct Dedup {
    seen: HashMap<(Arc<str>, String), u64>,
    order: std::collections::VecDeque<(Instant, Arc<str>, String)>,
}

/// The outcome of [`Hub::publish_once`].
#[derive(Debug, Clone)]
pub enum PublishOnce {
    /// Published now.
    Published(Published, u64),
    /// The same id was published on the channel within the window: not
    /// published again; the first one's sequence number.
    Duplicate(u64),
}

/// State read back from a durable store at start-up.
#[derive(Debug, Default)]
pub struct Recovered {
    pub sessions: Vec<RecoveredSession>,
    /// Retained messages (each with its channel in `topic`).
    pub retained: Vec<Message>,
    /// Highest publish sequence number found (later ones continue above).
    pub last_seq: u64,
}

/// One persistent session as stored.
#[derive(Debug)]
pub struct RecoveredSession {
    pub record: SessionRecord,
    /// Its queue entries in order, each with its message (one `Arc` per
    /// stored message, shared by every entry that refers to it).
    pub entries: Vec<(EntryRecord, Arc<Message>)>,
    /// Inbound QoS 2 packet ids received and not yet released.
    pub incoming: Vec<u16>,
}

/// Milliseconds since the Unix epoch, now.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Hub {
    /// A hub with `config` and no state.
    pub fn new(config: HubConfig) -> Arc<Hub> {
        Hub::build(config, None)
    }

    /// A hub that records its durable changes in `journal`.
    pub fn with_journal(config: HubConfig, journal: Arc<Journal>) -> Arc<Hub> {
        Hub::build(config, Some(journal))
    }

    fn build(config: HubConfig, journal: Option<Arc<Journal>>) -> Arc<Hub> {
        Arc::new(Hub {
            config,
            sessions: Mutex::new(HashMap::new()),
            index: RwLock::new(SubscriptionIndex::default()),
            retained: RwLock::new(RetainedStore::default()),
            timers: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(1),
            publish_seq: AtomicU64::new(0),
            started_ms: unix_ms(),
            stats: Stats::default(),
            started: Instant::now(),
            journal,
            history: std::sync::OnceLock::new(),
            dedup: Mutex::new(Dedup::default()),
        })
    }

    /// Publishes `msg` unless a message with the same id (`props.id`) was
    /// published on the same channel within the dedup window. Messages
    /// without an id are always published.
    pub fn publish_once(&self, msg: Message) -> Result<PublishOnce, PublishError> {
        let Some(id) = msg.props.as_ref().and_then(|p| p.id.clone()) else {
            let (r, seq) = self.publish_seq_of(msg)?;
            return Ok(PublishOnce::Published(r, seq));
        };
        let now = Instant::now();
        let topic = msg.topic.clone();
        // Held across the publish: two publishes of one id cannot both pass.
        let mut d = self.dedup.lock();
        while let Some((at, _, _)) = d.order.front() {
            if now.saturating_duration_since(*at) < self.config.dedup_window
                && d.order.len() < self.config.dedup_ids_max
            {
                break;
            }
            if let Some((_, t, i)) = d.order.pop_front() {
                d.seen.remove(&(t, i));
            }
        }
        if let Some(&seq) = d.seen.get(&(topic.clone(), id.clone())) {
            return Ok(PublishOnce::Duplicate(seq));
        }
        let mut msg = msg;
        msg.seq = 0;
        let r = self.publish_seq_of(msg)?;
        d.seen.insert((topic.clone(), id.clone()), r.1);
        d.order.push_back((now, topic, id));
        Ok(PublishOnce::Published(r.0, r.1))
    }

    /// [`publish`](Self::publish), also returning the sequence number given.
    fn publish_seq_of(&self, msg: Message) -> Result<(Published, u64), PublishError> {
        let seq = std::cell::Cell::new(0);
        let r = self.publish_inner(msg, &seq)?;
        Ok((r, seq.get()))
    }

    /// Sets where channel history is read from (once, at start-up).
    pub fn set_history_store(&self, h: Arc<dyn HistoryStore>) {
        let _ = self.history.set(h);
    }

    /// Where channel history is read from; `None` without a store.
    pub fn history(&self) -> Option<&Arc<dyn HistoryStore>> {
        self.history.get()
    }

    /// The journal durable changes go to, if the hub has a store.
    pub fn journal(&self) -> Option<&Arc<Journal>> {
        self.journal.as_ref()
    }

    /// The record of a persistent session, as it is now.
    fn session_record(
        &self,
        session: &SessionHandle,
        st: &SessionState,
        disconnected_at_ms: Option<u64>,
    ) -> SessionRecord {
        let mut subscriptions: Vec<(String, SubOptions)> = st
            .subscriptions
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        subscriptions.sort_by(|a, b| a.0.cmp(&b.0));
        let will = match (&st.will, &st.pending_will) {
            (Some(w), _) if st.owner.is_some() => Some(StoredWill {
                msg: w.msg.clone(),
                delay_secs: w.delay_secs,
                due_ms: None,
            }),
            (_, Some(p)) => Some(StoredWill {
                msg: p.1.clone(),
                delay_secs: 0,
                due_ms: Some(self.wall_ms(p.0)),
            }),
            _ => None,
        };
        SessionRecord {
            sid: session.id,
            client_id: session.client_id.to_string(),
            expiry_secs: st.expiry_secs,
            disconnected_at_ms,
            subscriptions,
            will,
        }
    }

    /// Records the will of the connection now attached to `session`, so a
    /// restart publishes it (the restart lost that connection). The
    /// adapter still publishes it itself when the connection ends.
    /// Only persistent sessions keep it (others end with the server).
    pub fn set_will(&self, session: &SessionHandle, will: Option<&Will>) {
        let mut st = session.state.lock();
        if st.journal.is_none() {
            return;
        }
        st.will = will.map(|w| Box::new(w.clone()));
        self.save_session(session, &mut st);
    }

    /// Writes the session's record (after a change of subscriptions,
    /// connection or expiry) if it is persistent.
    fn save_session(&self, session: &SessionHandle, st: &mut SessionState) {
        if st.journal.is_none() {
            return;
        }
        let at = if st.owner.is_some() {
            None
        } else {
            Some(unix_ms())
        };
        let rec = self.session_record(session, st, at);
        if let Some(j) = &st.journal {
            st.last_op = st.last_op.max(j.push(StoreOp::PutSession(rec)));
        }
    }

    /// Makes a session persistent or not, following its expiry: a
    /// session with expiry 0 lives only as long as its connection, so it
    /// has no place in the store.
    fn set_persistence(&self, session: &SessionHandle, st: &mut SessionState) {
        let Some(journal) = &self.journal else {
            return;
        };
        let want = st.expiry_secs > 0;
        match (want, st.journal.is_some()) {
            (true, true) => self.save_session(session, st),
            (true, false) => {
                // Newly persistent: write everything it holds.
                st.journal = Some(journal.clone());
                st.sid = session.id;
                self.save_session(session, st);
                for pid in st.incoming_qos2.clone() {
                    let seq = journal.push(StoreOp::PutIncoming {
                        sid: session.id,
                        packet_id: pid,
                    });
                    st.last_op = st.last_op.max(seq);
                }
                let mut queue = std::mem::take(&mut st.queue);
                for d in queue.iter_mut() {
                    if d.qos > 0 {
                        self.stored_seq(&d.msg, journal);
                        d.qkey = journal.next_key();
                        st.store_entry(d, None);
                    }
                }
                st.queue = queue;
            }
            (false, true) => {
                let seq = journal.push(StoreOp::DeleteSession { sid: st.sid });
                st.last_op = st.last_op.max(seq);
                st.journal = None;
                for d in st.queue.iter_mut() {
                    d.qkey = 0;
                }
            }
            (false, false) => {}
        }
    }

    /// Writes the message's record the first time a persistent session
    /// needs it (once per message, shared by every entry).
    fn stored_seq(&self, msg: &Arc<Message>, journal: &Arc<Journal>) {
        msg.stored.get_or_init(|| {
            journal.push(StoreOp::PutMessage { msg: msg.clone() });
            Stored { history: false }
        });
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &HubConfig {
        &self.config
    }

    /// When the hub was created.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Wall-clock milliseconds at [`started`](Self::started): the anchor of
    /// [`wall_ms`](Self::wall_ms).
    pub fn started_ms(&self) -> u64 {
        self.started_ms
    }

    /// Wall-clock milliseconds since the Unix epoch of an instant of this
    /// process (a message's receive time, for its timestamp).
    pub fn wall_ms(&self, at: Instant) -> u64 {
        if at >= self.started {
            self.started_ms + at.duration_since(self.started).as_millis() as u64
        } else {
            self.started_ms
                .saturating_sub(self.started.duration_since(at).as_millis() as u64)
        }
    }

    /// The last publish sequence number handed out.
    pub fn last_seq(&self) -> u64 {
        self.publish_seq.load(Ordering::Relaxed)
    }

    /// Makes later publish sequence numbers greater than `seq` (after
    /// reading stored messages back).
    pub fn raise_seq(&self, seq: u64) {
        self.publish_seq.fetch_max(seq, Ordering::Relaxed);
    }

    /// A fresh id for a connection or session.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Attaches a new connection to `client_id`'s session: resumes it
    /// unless `clean_start`, kicks a connection that holds it, cancels a
    /// pending will [MQTT-3.1.3-9].
    pub fn connect(
        &self,
        client_id: &str,
        clean_start: bool,
        expiry_secs: u32,
        now: Instant,
    ) -> Result<Attached, ConnectError> {
        let link = Arc::new(ConnLink::new(self.next_id()));
        let mut sessions = self.sessions.lock();
        let existing = sessions.get(client_id).cloned();
        let mut session_present = false;
        let session = match existing {
            Some(s) if !clean_start => {
                session_present = true;
                s
            }
            other => {
                if let Some(old) = other {
                    // A clean start ends the old session now.
                    if let Some(owner) = old.state.lock().owner.take() {
                        owner.kick(KickReason::TakenOver);
                    }
                    self.end_session_locked(&mut sessions, &old, now);
                } else if sessions.len() >= self.config.sessions_max {
                    return Err(ConnectError::SessionsFull);
                }
                let s = Arc::new(SessionHandle::new(
                    self.next_id(),
                    client_id.into(),
                    expiry_secs,
                ));
                sessions.insert(s.client_id.clone(), s.clone());
                self.stats
                    .sessions
                    .store(sessions.len() as u64, Ordering::Relaxed);
                s
            }
        };
        drop(sessions);
        let mut st = session.state.lock();
        if let Some(owner) = st.owner.replace(link.clone()) {
            owner.kick(KickReason::TakenOver);
            self.stats.takeovers.fetch_add(1, Ordering::Relaxed);
        }
        st.generation += 1;
        st.expiry_secs = expiry_secs;
        st.pending_will = None;
        st.will = None;
        if session_present {
            st.prepare_resume();
        }
        self.set_persistence(&session, &mut st);
        drop(st);
        session.set_connected(true);
        Ok(Attached {
            session,
            link,
            session_present,
        })
    }

    /// Detaches connection `link` from `session`. `will` is published now,
    /// after its delay, or when the session ends, whichever is first; pass
    /// `None` after a normal disconnect. `expiry_secs` is the session
    /// expiry in force (it may have been changed at DISCONNECT).
    pub fn disconnect(
        &self,
        session: &Arc<SessionHandle>,
        link: &ConnLink,
        will: Option<Will>,
        expiry_secs: u32,
        now: Instant,
    ) {
        let mut st = session.state.lock();
        let owned = st.owner.as_ref().is_some_and(|o| o.id == link.id);
        if !owned {
            drop(st);
            // Taken over. The will still goes out at once if it has no
            // delay, or if the session it belonged to has ended.
            if let Some(w) = will {
                let ended = !self
                    .sessions
                    .lock()
                    .get(&session.client_id)
                    .is_some_and(|s| Arc::ptr_eq(s, session));
                if w.delay_secs == 0 || ended {
                    self.publish_will(w.msg);
                }
            }
            return;
        }
        st.owner = None;
        st.expiry_secs = expiry_secs;
        st.will = None;
        session.set_connected(false);
        // Publishers paused on this session stop waiting for it.
        session.drained.notify_waiters();
        let generation = st.generation;
        if expiry_secs == 0 {
            drop(st);
            let mut sessions = self.sessions.lock();
            self.end_session_locked(&mut sessions, session, now);
            drop(sessions);
            if let Some(w) = will {
                self.publish_will(w.msg);
            }
            return;
        }
        let mut timers = Vec::new();
        if expiry_secs != EXPIRY_NEVER {
            let at = now + Duration::from_secs(u64::from(expiry_secs));
            timers.push((at, TimerEvent::Expire(session.clone(), generation)));
        }
        let mut will_now = None;
        if let Some(w) = will {
            let delay = w.delay_secs.min(expiry_secs);
            if delay == 0 {
                will_now = Some(w.msg);
            } else {
                let at = now + Duration::from_secs(u64::from(delay));
                st.pending_will = Some(Box::new((at, w.msg)));
                timers.push((at, TimerEvent::Will(session.clone(), generation)));
            }
        }
        // Expiry (and a pending will) count from now, across restarts too.
        self.set_persistence(session, &mut st);
        drop(st);
        if let Some(m) = will_now {
            self.publish_will(m);
        }
        let mut t = self.timers.lock();
        for (at, ev) in timers {
            let seq = self.next_id();
            t.insert((at, seq), ev);
        }
    }

    fn publish_will(&self, mut msg: Message) {
        self.stats.wills_published.fetch_add(1, Ordering::Relaxed);
        msg.received_at = Instant::now();
        if let Err(e) = self.publish(msg) {
            tracing::warn!(error = %e, "will message refused");
        }
    }

    /// Removes a session and its subscriptions; publishes its pending will.
    fn end_session_locked(
        &self,
        sessions: &mut HashMap<Arc<str>, Arc<SessionHandle>>,
        session: &Arc<SessionHandle>,
        _now: Instant,
    ) {
        if sessions
            .get(&session.client_id)
            .is_some_and(|s| Arc::ptr_eq(s, session))
        {
            sessions.remove(&session.client_id);
        }
        self.stats
            .sessions
            .store(sessions.len() as u64, Ordering::Relaxed);
        let (subs, will) = {
            let mut st = session.state.lock();
            let subs: Vec<String> = st.subscriptions.drain().map(|(k, _)| k).collect();
            if let Some(j) = st.journal.take() {
                j.push(StoreOp::DeleteSession { sid: st.sid });
            }
            st.queue.clear();
            (subs, st.pending_will.take())
        };
        {
            let mut idx = self.index.write();
            for raw in &subs {
                if let Ok(p) = topic::parse_filter(raw, &self.config.topic) {
                    idx.remove(p.filter, p.share_group, session.id);
                }
            }
            self.stats
                .subscriptions
                .store(idx.len() as u64, Ordering::Relaxed);
        }
        if let Some(w) = will {
            self.publish_will(w.1);
        }
    }

    /// Runs timers due at `now`: delayed wills and session expiry.
    pub fn tick(&self, now: Instant) {
        loop {
            let ev = {
                let mut t = self.timers.lock();
                let Some(entry) = t.first_entry() else { break };
                if entry.key().0 > now {
                    break;
                }
                entry.remove()
            };
            match ev {
                TimerEvent::Will(s, generation) => {
                    let msg = {
                        let mut st = s.state.lock();
                        if st.generation != generation || st.owner.is_some() {
                            None
                        } else {
                            st.pending_will.take().map(|w| w.1)
                        }
                    };
                    if let Some(m) = msg {
                        self.publish_will(m);
                    }
                }
                TimerEvent::Expire(s, generation) => {
                    let still = {
                        let st = s.state.lock();
                        st.generation == generation && st.owner.is_none()
                    };
                    if still {
                        self.stats.sessions_expired.fetch_add(1, Ordering::Relaxed);
                        let mut sessions = self.sessions.lock();
                        self.end_session_locked(&mut sessions, &s, now);
                    }
                }
            }
        }
    }

    /// When [`tick`](Self::tick) next has work, if ever.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.lock().keys().next().map(|k| k.0)
    }

    /// Adds or replaces a subscription of `session`.
    pub fn subscribe(
        &self,
        session: &Arc<SessionHandle>,
        raw_filter: &str,
        opts: SubOptions,
    ) -> Result<Subscribed, SubscribeError> {
        let parsed = topic::parse_filter(raw_filter, &self.config.topic)?;
        let mut idx = self.index.write();
        let mut st = session.state.lock();
        let existed = st.subscriptions.contains_key(raw_filter);
        if !existed && st.subscriptions.len() >= self.config.subscriptions_max {
            return Err(SubscribeError::TooManySubscriptions);
        }
        st.subscriptions.insert(raw_filter.to_owned(), opts);
        self.save_session(session, &mut st);
        drop(st);
        idx.insert(
            parsed.filter,
            parsed.share_group,
            Subscriber {
                session: session.clone(),
                opts,
            },
        );
        self.stats
            .subscriptions
            .store(idx.len() as u64, Ordering::Relaxed);
        Ok(Subscribed {
            existed,
            shared: parsed.share_group.is_some(),
        })
    }

    /// Removes a subscription; false if there was none.
    pub fn unsubscribe(&self, session: &Arc<SessionHandle>, raw_filter: &str) -> bool {
        let Ok(parsed) = topic::parse_filter(raw_filter, &self.config.topic) else {
            return false;
        };
        let mut idx = self.index.write();
        let had = {
            let mut st = session.state.lock();
            let had = st.subscriptions.remove(raw_filter).is_some();
            if had {
                self.save_session(session, &mut st);
            }
            had
        };
        if had {
            idx.remove(parsed.filter, parsed.share_group, session.id);
            self.stats
                .subscriptions
                .store(idx.len() as u64, Ordering::Relaxed);
        }
        had
    }

    /// Queues the retained messages matching `filter` for `session`, with
    /// the retain flag set [MQTT-3.3.1-8]. Returns how many.
    pub fn deliver_retained(
        &self,
        session: &Arc<SessionHandle>,
        filter: &str,
        opts: SubOptions,
    ) -> usize {
        let now = Instant::now();
        let mut msgs: Vec<Arc<Message>> = Vec::new();
        self.retained.read().matching(filter, &mut msgs);
        msgs.retain(|m| !m.is_expired(now));
        let n = msgs.len();
        for msg in msgs {
            let qos = msg.qos.min(opts.qos);
            self.enqueue(
                session,
                Delivery {
                    msg,
                    qos,
                    retain: true,
                    sub_ids: opts.sub_id.into_iter().collect(),
                    qkey: 0,
                },
            );
        }
        n
    }

    /// The retained message of channel `topic` (an exact name, not a
    /// filter), unless it has expired.
    pub fn retained(&self, topic: &str) -> Option<Arc<Message>> {
        let now = Instant::now();
        self.retained
            .read()
            .get(topic)
            .filter(|m| !m.is_expired(now))
            .cloned()
    }

    /// Queues `msgs` (a channel's history, oldest first) for `session`
    /// ahead of anything queued since — the backlog of a rewinding
    /// subscription. Returns how many.
    pub fn deliver_backlog(
        &self,
        session: &SessionHandle,
        msgs: &[Arc<Message>],
        opts: SubOptions,
    ) -> usize {
        let now = Instant::now();
        let mut st = session.state.lock();
        let mut n = 0;
        for m in msgs.iter().rev() {
            if m.is_expired(now) {
                continue;
            }
            if st.queue.len() >= self.config.session_queue_max {
                break;
            }
            st.queue.push_front(Delivery {
                msg: m.clone(),
                qos: m.qos.min(opts.qos),
                retain: false,
                sub_ids: opts.sub_id.into_iter().collect(),
                qkey: 0,
            });
            n += 1;
        }
        if let Some(o) = &st.owner {
            o.wake();
        }
        n
    }

    /// Number of retained messages.
    pub fn retained_count(&self) -> usize {
        self.retained.read().len()
    }

    /// Number of subscriptions.
    pub fn subscription_count(&self) -> usize {
        self.index.read().len()
    }

    /// Sessions subscribed to `channel` (by an exact name or a matching
    /// filter, any protocol): the channel's subscriber occupancy.
    pub fn occupancy(&self, channel: &str) -> usize {
        let mut matched = Vec::new();
        self.index.read().lookup(channel, &mut matched);
        let mut ids: Vec<u64> = matched.iter().map(|s| s.session.id).collect();
        ids.sort_unstable();
        ids.dedup();
        ids.len()
    }

    /// Filters with subscribers (exact channel names and MQTT filters),
    /// each with its number of subscriptions; at most `limit`, only those
    /// starting with `prefix`.
    pub fn subscribed_filters(&self, prefix: &str, limit: usize) -> Vec<(String, usize)> {
        self.index.read().filters(prefix, limit)
    }

    /// Number of sessions (connected or not).
    pub fn session_count(&self) -> usize {
        self.sessions.lock().len()
    }

    /// Routes `msg` to every matching subscription and updates the
    /// retained store.
    pub fn publish(&self, msg: Message) -> Result<Published, PublishError> {
        self.publish_inner(msg, &std::cell::Cell::new(0))
    }

    fn publish_inner(
        &self,
        mut msg: Message,
        seq_out: &std::cell::Cell<u64>,
    ) -> Result<Published, PublishError> {
        topic::validate_name(&msg.topic, &self.config.topic)?;
        msg.seq = self.publish_seq.fetch_add(1, Ordering::Relaxed) + 1;
        seq_out.set(msg.seq);
        let msg = Arc::new(msg);
        let mut retained_refused = false;
        let mut durable_seq = 0;
        if msg.retain {
            let mut r = self.retained.write();
            if msg.payload.is_empty() {
                if r.remove(&msg.topic)
                    && let Some(j) = &self.journal
                {
                    durable_seq = j.push(StoreOp::DeleteRetained {
                        topic: msg.topic.clone(),
                    });
                }
            } else if r.len() >= self.config.retained_max && !r.contains(&msg.topic) {
                retained_refused = true;
                self.stats.retained_refused.fetch_add(1, Ordering::Relaxed);
            } else {
                r.insert(msg.clone());
                if let Some(j) = &self.journal {
                    durable_seq = j.push(StoreOp::PutRetained { msg: msg.clone() });
                }
            }
            self.stats.retained.store(r.len() as u64, Ordering::Relaxed);
        }
        if let Some(j) = &self.journal
            && !self.config.history.is_empty()
            && self.config.history.for_channel(&msg.topic).is_some()
        {
            // Written once; the queue entries below refer to the same record.
            let _ = msg.stored.set(Stored { history: true });
            j.push(StoreOp::PutMessage { msg: msg.clone() });
            durable_seq = j.push(StoreOp::PutHistory {
                channel: msg.topic.clone(),
                seq: msg.seq,
                at_ms: self.wall_ms(msg.received_at),
            });
        }
        self.stats.messages_received.fetch_add(1, Ordering::Relaxed);
        // The match list is reused across publishes on this thread: no
        // allocation per message in the steady state.
        MATCHES.with(|cell| {
            let mut matched = cell.take();
            matched.clear();
            self.index.read().lookup(&msg.topic, &mut matched);
            let r = self.route(&msg, &mut matched, retained_refused);
            matched.clear();
            cell.replace(matched);
            r.map(|mut p| {
                p.durable_seq = p.durable_seq.max(durable_seq);
                p.seq = msg.seq;
                p
            })
        })
    }

    fn route(
        &self,
        msg: &Arc<Message>,
        matched: &mut [Subscriber],
        retained_refused: bool,
    ) -> Result<Published, PublishError> {
        if matched.is_empty() {
            return Ok(Published {
                queued: 0,
                retained_refused,
                congested: None,
                durable_seq: 0,
                seq: 0,
            });
        }
        if !self.config.overlap_deliver_each && matched.len() > 1 {
            matched.sort_by_key(|s| s.session.id);
        }
        let mut queued = 0;
        let mut congested = None;
        let mut durable_seq = 0;
        let mut i = 0;
        while i < matched.len() {
            let sub = &matched[i];
            let mut delivery: Option<Delivery> = None;
            let mut j = i;
            // Merge every subscription of the same session into one copy.
            while j < matched.len()
                && (j == i
                    || (!self.config.overlap_deliver_each
                        && matched[j].session.id == sub.session.id))
            {
                let s = &matched[j];
                j += 1;
                if s.opts.no_local
                    && msg
                        .origin
                        .as_deref()
                        .is_some_and(|o| o == &*s.session.client_id)
                {
                    continue;
                }
                let qos: Qos = msg.qos.min(s.opts.qos);
                let retain = s.opts.retain_as_published && msg.retain;
                match &mut delivery {
                    None => {
                        delivery = Some(Delivery {
                            msg: msg.clone(),
                            qos,
                            retain,
                            sub_ids: s.opts.sub_id.into_iter().collect(),
                            qkey: 0,
                        })
                    }
                    Some(d) => {
                        d.qos = d.qos.max(qos);
                        d.retain |= retain;
                        d.sub_ids.extend(s.opts.sub_id);
                    }
                }
            }
            if let Some(d) = delivery {
                let (c, seq) = self.enqueue_stored(&sub.session, d);
                if c && congested.is_none() {
                    congested = Some(sub.session.clone());
                }
                durable_seq = durable_seq.max(seq);
                queued += 1;
            }
            i = j;
        }
        Ok(Published {
            queued,
            retained_refused,
            congested,
            durable_seq,
            seq: 0,
        })
    }

    /// Puts a delivery in a session's queue, applying the bounds, and wakes
    /// its connection.
    /// Returns true when a connected session's queue is at or past the
    /// back-pressure mark after a QoS 1/2 message.
    fn enqueue(&self, session: &SessionHandle, d: Delivery) -> bool {
        self.enqueue_stored(session, d).0
    }

    /// [`enqueue`](Self::enqueue), also returning the journal sequence
    /// number of the stored entry (0 if not stored).
    fn enqueue_stored(&self, session: &SessionHandle, mut d: Delivery) -> (bool, u64) {
        let mut st = session.state.lock();
        if st.owner.is_none() && d.qos == 0 {
            // QoS 0 is not kept for offline sessions.
            self.stats.dropped_offline.fetch_add(1, Ordering::Relaxed);
            return (false, 0);
        }
        let mark = self.config.backpressure_queue_messages;
        if st.slow_consumer && st.queue.len() < mark / 2 {
            st.slow_consumer = false;
        }
        let congested = mark > 0
            && d.qos > 0
            && st.owner.is_some()
            && !st.slow_consumer
            && st.queue.len() + 1 >= mark;
        if st.queue.len() >= self.config.session_queue_max {
            self.stats
                .dropped_queue_full
                .fetch_add(1, Ordering::Relaxed);
            if d.qos == 0 {
                return (false, 0);
            }
            match self.config.queue_full_policy {
                QueueFullPolicy::DropOldest => st.drop_oldest(),
                QueueFullPolicy::DropNew => return (congested, 0),
                QueueFullPolicy::Disconnect => {
                    if let Some(o) = &st.owner {
                        o.kick(KickReason::QueueFull);
                    }
                    return (false, 0);
                }
            }
        }
        let mut seq = 0;
        if d.qos > 0
            && let Some(j) = st.journal.clone()
        {
            self.stored_seq(&d.msg, &j);
            d.qkey = j.next_key();
            st.store_entry(&d, None);
            seq = st.last_op;
        }
        st.queue.push_back(d);
        if let Some(o) = &st.owner {
            o.wake();
        }
        (congested, seq)
    }

    /// Rebuilds the state read back from the store at start-up (before
    /// any connection): persistent sessions with their subscriptions,
    /// queues, in-flight and inbound QoS 2 state, expiry counting from
    /// when they were last disconnected; and retained messages. Sessions
    /// that expired while the server was down are removed from the store.
    pub fn restore(&self, rec: Recovered, now: Instant) {
        let Some(journal) = self.journal.clone() else {
            return;
        };
        let now_ms = unix_ms();
        let mut max_id = 0;
        self.raise_seq(rec.last_seq);
        {
            let mut r = self.retained.write();
            for m in rec.retained {
                self.raise_seq(m.seq);
                r.insert(Arc::new(m));
            }
            self.stats.retained.store(r.len() as u64, Ordering::Relaxed);
        }
        // Wills due now: published once every session is back.
        let mut wills_now = Vec::new();
        for rs in rec.sessions {
            let SessionRecord {
                sid,
                client_id,
                expiry_secs,
                disconnected_at_ms,
                subscriptions,
                will,
            } = rs.record;
            max_id = max_id.max(sid);
            let left_ms = match (expiry_secs, disconnected_at_ms) {
                (EXPIRY_NEVER, _) => None,
                (e, Some(at)) => {
                    let end = at.saturating_add(u64::from(e) * 1000);
                    Some(end.saturating_sub(now_ms))
                }
                // Connected when the server stopped: it left then, as far
                // as anyone can tell; count from now.
                (e, None) => Some(u64::from(e) * 1000),
            };
            if left_ms == Some(0) || expiry_secs == 0 {
                journal.push(StoreOp::DeleteSession { sid });
                self.stats.sessions_expired.fetch_add(1, Ordering::Relaxed);
                // The session ended while the server was down: its will
                // goes out now [MQTT-3.1.3-9: at the session's end].
                if let Some(w) = will {
                    wills_now.push(w.msg);
                }
                continue;
            }
            let session = Arc::new(SessionHandle::new(
                sid,
                client_id.as_str().into(),
                expiry_secs,
            ));
            {
                let mut st = session.state.lock();
                st.journal = Some(journal.clone());
                st.sid = sid;
                st.incoming_qos2.extend(rs.incoming);
                for (e, msg) in rs.entries {
                    self.raise_seq(msg.seq);
                    let d = Delivery {
                        msg,
                        qos: e.qos,
                        retain: e.retain,
                        sub_ids: e.sub_ids,
                        qkey: e.qkey,
                    };
                    match e.inflight {
                        Some((pid, state @ (OutState::AwaitRec | OutState::AwaitComp))) => {
                            st.restore_inflight(pid, d, state)
                        }
                        _ => st.queue.push_back(d),
                    }
                }
                let mut idx = self.index.write();
                for (raw, opts) in subscriptions {
                    if let Ok(p) = topic::parse_filter(&raw, &self.config.topic) {
                        idx.insert(
                            p.filter,
                            p.share_group,
                            Subscriber {
                                session: session.clone(),
                                opts,
                            },
                        );
                        st.subscriptions.insert(raw, opts);
                    }
                }
                self.stats
                    .subscriptions
                    .store(idx.len() as u64, Ordering::Relaxed);
                drop(idx);
                // A will: pending when it left, or its connection's, lost
                // with the server (due after its delay from now).
                if let Some(w) = will {
                    let delay_ms = match w.due_ms {
                        Some(due) => due.saturating_sub(now_ms),
                        None => u64::from(w.delay_secs.min(expiry_secs)) * 1000,
                    };
                    if delay_ms == 0 {
                        wills_now.push(w.msg);
                    } else {
                        let at = now + Duration::from_millis(delay_ms);
                        st.pending_will = Some(Box::new((at, w.msg)));
                        let seq = self.next_id();
                        self.timers
                            .lock()
                            .insert((at, seq), TimerEvent::Will(session.clone(), st.generation));
                    }
                }
                // Record when it left, so expiry keeps counting.
                let at = disconnected_at_ms.unwrap_or(now_ms);
                let record = self.session_record(&session, &st, Some(at));
                journal.push(StoreOp::PutSession(record));
                if let Some(ms) = left_ms {
                    let seq = self.next_id();
                    self.timers.lock().insert(
                        (now + Duration::from_millis(ms), seq),
                        TimerEvent::Expire(session.clone(), st.generation),
                    );
                }
            }
            let mut sessions = self.sessions.lock();
            sessions.insert(session.client_id.clone(), session);
            self.stats
                .sessions
                .store(sessions.len() as u64, Ordering::Relaxed);
        }
        self.next_id.fetch_max(max_id + 1, Ordering::Relaxed);
        for m in wills_now {
            self.publish_will(m);
        }
    }

    /// The queue length of `session` (for back-pressure checks).
    pub fn queue_len(session: &SessionHandle) -> usize {
        session.state.lock().queue.len()
    }

    /// Asks every connection to close (shutdown).
    pub fn kick_all(&self, reason: KickReason) {
        for s in self.sessions.lock().values() {
            if let Some(o) = &s.state.lock().owner {
                o.kick(reason);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{NextOutgoing, Outgoing};

    fn drain(s: &SessionHandle) -> Vec<Delivery> {
        let mut out = vec![];
        let mut st = s.state.lock();
        loop {
            match st.next_outgoing(100, Instant::now()) {
                NextOutgoing::Send(Outgoing::Publish { delivery, .. }) => out.push(delivery),
                NextOutgoing::Send(_) | NextOutgoing::Expired => {}
                NextOutgoing::WindowFull | NextOutgoing::Idle => break,
            }
        }
        out
    }

    fn opts(qos: Qos, sub_id: Option<u32>) -> SubOptions {
        SubOptions {
            qos,
            sub_id,
            ..SubOptions::default()
        }
    }

    #[test]
    fn publish_reaches_matching_sessions_with_downgraded_qos() {
        let hub = Hub::new(HubConfig::default());
        let now = Instant::now();
        let a = hub.connect("a", true, 0, now).unwrap();
        let b = hub.connect("b", true, 0, now).unwrap();
        hub.subscribe(&a.session, "s/+", opts(0, None)).unwrap();
        hub.subscribe(&b.session, "s/1", opts(2, None)).unwrap();
        assert_eq!(hub.publish(Message::new("s/1", "x", 1)).unwrap().queued, 2);
        assert_eq!(hub.publish(Message::new("s/2", "y", 1)).unwrap().queued, 1);
        let da = drain(&a.session);
        assert_eq!(da.len(), 2);
        assert!(da.iter().all(|d| d.qos == 0));
        let db = drain(&b.session);
        assert_eq!(db.len(), 1);
        assert_eq!(db[0].qos, 1, "min(published 1, granted 2)");
    }

    #[test]
    fn mqtt_3_3_4_2_overlapping_subscriptions_one_copy_all_ids() {
        let hub = Hub::new(HubConfig::default());
        let a = hub.connect("a", true, 0, Instant::now()).unwrap();
        hub.subscribe(&a.session, "s/#", opts(0, Some(1))).unwrap();
        hub.subscribe(&a.session, "s/+", opts(2, Some(2))).unwrap();
        hub.publish(Message::new("s/1", "x", 2)).unwrap();
        let d = drain(&a.session);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].qos, 2);
        let mut ids = d[0].sub_ids.clone();
        ids.sort();
        assert_eq!(ids, vec![1, 2]);

        let hub = Hub::new(HubConfig {
            overlap_deliver_each: true,
            ..HubConfig::default()
        });
        let a = hub.connect("a", true, 0, Instant::now()).unwrap();
        hub.subscribe(&a.session, "s/#", opts(0, Some(1))).unwrap();
        hub.subscribe(&a.session, "s/+", opts(2, Some(2))).unwrap();
        hub.publish(Message::new("s/1", "x", 2)).unwrap();
        assert_eq!(drain(&a.session).len(), 2);
    }

    #[test]
    fn retained_set_replace_clear() {
        let hub = Hub::new(HubConfig::default());
        let mut m = Message::new("r/1", "one", 1);
        m.retain = true;
        hub.publish(m.clone()).unwrap();
        m.payload = "two".into();
        hub.publish(m.clone()).unwrap();
        assert_eq!(hub.retained_count(), 1);
        let a = hub.connect("a", true, 0, Instant::now()).unwrap();
        hub.subscribe(&a.session, "r/#", opts(1, None)).unwrap();
        assert_eq!(hub.deliver_retained(&a.session, "r/#", opts(1, None)), 1);
        let d = drain(&a.session);
        assert_eq!(&d[0].msg.payload[..], b"two");
        assert!(d[0].retain);
        m.payload = bytes::Bytes::new();
        hub.publish(m).unwrap();
        assert_eq!(hub.retained_count(), 0);
    }

    #[test]
    fn no_local_skips_own_messages() {
        let hub = Hub::new(HubConfig::default());
        let a = hub.connect("a", true, 0, Instant::now()).unwrap();
        let o = SubOptions {
            no_local: true,
            ..SubOptions::default()
        };
        hub.subscribe(&a.session, "t", o).unwrap();
        let mut m = Message::new("t", "x", 0);
        m.origin = Some("a".into());
        hub.publish(m).unwrap();
        assert!(drain(&a.session).is_empty());
    }

    #[test]
    fn persistent_session_queues_qos1_drops_qos0_offline_and_resumes() {
        let hub = Hub::new(HubConfig::default());
        let now = Instant::now();
        let a = hub.connect("a", false, 100, now).unwrap();
        assert!(!a.session_present);
        hub.subscribe(&a.session, "t", opts(1, None)).unwrap();
        hub.disconnect(&a.session, &a.link, None, 100, now);
        hub.publish(Message::new("t", "q0", 0)).unwrap();
        hub.publish(Message::new("t", "q1", 1)).unwrap();
        let b = hub.connect("a", false, 100, now).unwrap();
        assert!(b.session_present);
        assert!(Arc::ptr_eq(&a.session, &b.session));
        let d = drain(&b.session);
        assert_eq!(d.len(), 1);
        assert_eq!(&d[0].msg.payload[..], b"q1");
    }

    #[test]
    fn session_expiry_ends_session_after_interval() {
        let hub = Hub::new(HubConfig::default());
        let now = Instant::now();
        let a = hub.connect("a", false, 10, now).unwrap();
        hub.subscribe(&a.session, "t", opts(1, None)).unwrap();
        hub.disconnect(&a.session, &a.link, None, 10, now);
        hub.tick(now + Duration::from_secs(9));
        assert_eq!(hub.session_count(), 1);
        hub.tick(now + Duration::from_secs(10));
        assert_eq!(hub.session_count(), 0);
        assert_eq!(hub.subscription_count(), 0);
        let b = hub.connect("a", false, 10, now).unwrap();
        assert!(!b.session_present);
    }

    #[test]
    fn will_delay_published_at_earlier_of_delay_and_session_end() {
        let hub = Hub::new(HubConfig::default());
        let now = Instant::now();
        let watcher = hub.connect("w", true, 0, now).unwrap();
        hub.subscribe(&watcher.session, "will/#", opts(1, None))
            .unwrap();
        // Delay 30 s, session expiry 5 s: the will goes at 5 s.
        let a = hub.connect("a", false, 5, now).unwrap();
        let will = Will {
            msg: Message::new("will/a", "gone", 1),
            delay_secs: 30,
        };
        hub.disconnect(&a.session, &a.link, Some(will.clone()), 5, now);
        hub.tick(now + Duration::from_secs(4));
        assert!(drain(&watcher.session).is_empty());
        hub.tick(now + Duration::from_secs(5));
        assert_eq!(drain(&watcher.session).len(), 1);

        // Reconnecting within the delay cancels it [MQTT-3.1.3-9].
        let b = hub.connect("b", false, 100, now).unwrap();
        hub.disconnect(&b.session, &b.link, Some(will), 100, now);
        let _b2 = hub.connect("b", false, 100, now).unwrap();
        hub.tick(now + Duration::from_secs(200));
        assert!(drain(&watcher.session).is_empty());
    }

    #[test]
    fn takeover_kicks_old_connection() {
        let hub = Hub::new(HubConfig::default());
        let now = Instant::now();
        let a = hub.connect("a", false, 100, now).unwrap();
        let b = hub.connect("a", false, 100, now).unwrap();
        assert_eq!(a.link.kicked(), KickReason::TakenOver);
        assert_eq!(b.link.kicked(), KickReason::None);
        // The old connection's late disconnect leaves the new owner alone.
        hub.disconnect(&a.session, &a.link, None, 100, now);
        assert!(b.session.is_connected());
    }

    #[test]
    fn queue_bound_drops_oldest_and_counts() {
        let hub = Hub::new(HubConfig {
            session_queue_max: 3,
            ..HubConfig::default()
        });
        let a = hub.connect("a", true, 0, Instant::now()).unwrap();
        hub.subscribe(&a.session, "t", opts(1, None)).unwrap();
        for i in 0..10u8 {
            hub.publish(Message::new("t", vec![i], 1)).unwrap();
        }
        let d = drain(&a.session);
        let got: Vec<u8> = d.iter().map(|d| d.msg.payload[0]).collect();
        assert_eq!(got, vec![7, 8, 9]);
        assert_eq!(hub.stats.dropped_queue_full.load(Ordering::Relaxed), 7);
    }

    #[test]
    fn backpressure_reports_congestion_until_marked_slow_then_until_drained() {
        let hub = Hub::new(HubConfig {
            session_queue_max: 10,
            backpressure_queue_messages: 4,
            ..HubConfig::default()
        });
        let a = hub.connect("a", true, 0, Instant::now()).unwrap();
        hub.subscribe(&a.session, "t", opts(1, None)).unwrap();
        let congested: Vec<bool> = (0..5)
            .map(|_| {
                hub.publish(Message::new("t", "x", 1))
                    .unwrap()
                    .congested
                    .is_some()
            })
            .collect();
        assert_eq!(congested, vec![false, false, false, true, true]);
        // QoS 0 never pushes back.
        assert!(
            hub.publish(Message::new("t", "x", 0))
                .unwrap()
                .congested
                .is_none()
        );
        // A pause that timed out marks the session slow: no more congestion…
        a.session.state.lock().slow_consumer = true;
        assert!(
            hub.publish(Message::new("t", "x", 1))
                .unwrap()
                .congested
                .is_none()
        );
        // …until it drains below half the mark.
        drain(&a.session);
        assert!(
            hub.publish(Message::new("t", "x", 1))
                .unwrap()
                .congested
                .is_none()
        );
        assert!(!a.session.state.lock().slow_consumer);
    }

    #[test]
    fn publish_once_accepts_an_id_once_per_channel_within_the_window() {
        let hub = Hub::new(HubConfig {
            dedup_ids_max: 2,
            ..HubConfig::default()
        });
        let a = hub.connect("a", true, 0, Instant::now()).unwrap();
        hub.subscribe(&a.session, "#", opts(0, None)).unwrap();
        let with_id = |t: &str, id: &str| {
            let mut m = Message::new(t, "x", 0);
            m.props = Some(Box::new(crate::MessageProps {
                id: Some(id.into()),
                ..Default::default()
            }));
            m
        };
        let first = match hub.publish_once(with_id("c", "m1")).unwrap() {
            PublishOnce::Published(_, seq) => seq,
            other => panic!("{other:?}"),
        };
        assert!(
            matches!(hub.publish_once(with_id("c", "m1")).unwrap(), PublishOnce::Duplicate(s) if s == first)
        );
        // Another channel, same id: a different message.
        assert!(matches!(
            hub.publish_once(with_id("d", "m1")).unwrap(),
            PublishOnce::Published(..)
        ));
        assert!(matches!(
            hub.publish_once(Message::new("c", "no id", 0)).unwrap(),
            PublishOnce::Published(..)
        ));
        assert_eq!(drain(&a.session).len(), 3);
        // The bound forgets the oldest ids.
        hub.publish_once(with_id("c", "m2")).unwrap();
        hub.publish_once(with_id("c", "m3")).unwrap();
        assert!(matches!(
            hub.publish_once(with_id("c", "m1")).unwrap(),
            PublishOnce::Published(..)
        ));
    }

    #[test]
    fn subscription_limit_is_enforced() {
        let hub = Hub::new(HubConfig {
            subscriptions_max: 2,
            ..HubConfig::default()
        });
        let a = hub.connect("a", true, 0, Instant::now()).unwrap();
        hub.subscribe(&a.session, "a", opts(0, None)).unwrap();
        hub.subscribe(&a.session, "b", opts(0, None)).unwrap();
        hub.subscribe(&a.session, "b", opts(1, None)).unwrap();
        assert_eq!(
            hub.subscribe(&a.session, "c", opts(0, None)),
            Err(SubscribeError::TooManySubscriptions)
        );
    }

    #[test]
    fn expired_messages_are_not_delivered() {
        let hub = Hub::new(HubConfig::default());
        let a = hub.connect("a", true, 0, Instant::now()).unwrap();
        hub.subscribe(&a.session, "t", opts(1, None)).unwrap();
        let mut m = Message::new("t", "x", 1);
        m.received_at = Instant::now() - Duration::from_secs(5);
        m.expiry = Some(Duration::from_secs(1));
        hub.publish(m).unwrap();
        assert!(drain(&a.session).is_empty());
    }
}
