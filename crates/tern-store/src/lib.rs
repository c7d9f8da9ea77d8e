//! Tern's embedded durable store.
//!
//! The hub pushes every durable change to its [`Journal`]; this crate's
//! writer thread takes all pending changes at once, writes them to the
//! embedded engine ([fjall], an LSM tree with a write-ahead journal) as
//! one atomic batch, syncs it (group commit: one `fdatasync` for however
//! many messages arrived meanwhile) and then raises the journal's
//! durability watermark, which releases the acknowledgements waiting on
//! it. At start-up [`open`] reads the state back for [`Hub::restore`];
//! [`HistoryReader`] serves channel history to the adapters.
//!
//! # Layout (one keyspace each)
//! | keyspace | key | value |
//! |---|---|---|
//! | `sessions` | session id (u64 BE) | client id, expiry, when it left, subscriptions |
//! | `entries` | session id, queue key (u64 BE each) | message seq, QoS, retain, subscription ids, in-flight packet id and state |
//! | `messages` | message seq (u64 BE) | the message, written once for every entry and history index that refers to it |
//! | `history` | channel, 0x00, message seq (u64 BE) | receive time (ms, u64 BE) |
//! | `incoming` | session id (u64 BE), packet id (u16 BE) | inbound QoS 2 ids awaiting PUBREL |
//! | `retained` | channel name | the retained message |
//!
//! A message record lives while a queue entry or the history index refers
//! to it: the writer counts entry references in memory (rebuilt at open)
//! and checks the history index when the last entry goes.
//!
//! [`Hub::restore`]: tern_hub::Hub::restore

pub mod codec;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use tern_hub::{
    HistoryPage, HistoryQuery, HistoryRules, HistoryStore, Hub, Journal, Message, Recovered,
    RecoveredSession, StoreOp, unix_ms,
};

/// How the store trades durability for speed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sync {
    /// Every group commit is synced to disk (`fdatasync`) before what it
    /// holds is acknowledged. Survives a crash of the process, the
    /// operating system or the power.
    EveryCommit,
    /// Group commits reach the operating system before they are
    /// acknowledged (surviving a crash of the process), and are synced to
    /// disk at most this long afterwards (a power loss can lose that
    /// window).
    Interval(Duration),
}

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("the data directory {0} is in use by another Tern process")]
    Locked(PathBuf),
    #[error("cannot create the data directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the store in {path}: {source}")]
    Engine { path: PathBuf, source: fjall::Error },
}

/// An open store, before its writer runs.
pub struct Store {
    path: PathBuf,
    db: Database,
    ks: Spaces,
    /// Queue entries referring to each message record.
    refs: HashMap<u64, u32>,
    /// History kept per channel.
    channels: HashMap<Vec<u8>, ChannelHistory>,
    rules: HistoryRules,
    /// Wall-clock ↔ monotonic conversion of receive times.
    clock: codec::Clock,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

/// What the writer knows of one channel's history.
#[derive(Debug, Clone, Copy, Default)]
struct ChannelHistory {
    count: u64,
    /// Receive time of the oldest message kept (ms).
    oldest_ms: u64,
}

#[derive(Clone)]
struct Spaces {
    sessions: Keyspace,
    entries: Keyspace,
    messages: Keyspace,
    history: Keyspace,
    incoming: Keyspace,
    retained: Keyspace,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Space {
    Sessions,
    Entries,
    Messages,
    History,
    Incoming,
    Retained,
}

impl Spaces {
    fn get(&self, s: Space) -> &Keyspace {
        match s {
            Space::Sessions => &self.sessions,
            Space::Entries => &self.entries,
            Space::Messages => &self.messages,
            Space::History => &self.history,
            Space::Incoming => &self.incoming,
            Space::Retained => &self.retained,
        }
    }
}

/// Key of a history index entry.
fn history_key(channel: &[u8], seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(channel.len() + 9);
    k.extend_from_slice(channel);
    k.push(0);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// Splits a history index key into channel and sequence number.
fn split_history_key(k: &[u8]) -> Option<(&[u8], u64)> {
    if k.len() < 9 || k[k.len() - 9] != 0 {
        return None;
    }
    let (ch, rest) = k.split_at(k.len() - 9);
    Some((ch, codec::read_u64(rest, 1)?))
}

/// Opens (or creates) the store in `path` and reads its state back. The
/// returned journal continues the store's numbering; build the hub with
/// it and call [`Hub::restore`] with the recovered state before serving.
/// `rules` bound the channel history the store keeps.
pub fn open(
    path: &Path,
    rules: HistoryRules,
) -> Result<(Store, Arc<Journal>, Recovered), OpenError> {
    std::fs::create_dir_all(path).map_err(|source| OpenError::CreateDir {
        path: path.to_owned(),
        source,
    })?;
    let engine_err = |source: fjall::Error| match source {
        fjall::Error::Locked => OpenError::Locked(path.to_owned()),
        source => OpenError::Engine {
            path: path.to_owned(),
            source,
        },
    };
    let db = Database::builder(path)
        .manual_journal_persist(true)
        // Journals beyond 64 MiB in all (the engine's minimum; default 512)
        // force memtables to be flushed, so acknowledged-and-deleted
        // messages do not keep hundreds of MiB of journal around.
        .max_journaling_size(64 * 1024 * 1024)
        .open()
        .map_err(engine_err)?;
    let ks = |name: &str| db.keyspace(name, KeyspaceCreateOptions::default);
    let spaces = Spaces {
        sessions: ks("sessions").map_err(engine_err)?,
        entries: ks("entries").map_err(engine_err)?,
        messages: ks("messages").map_err(engine_err)?,
        history: ks("history").map_err(engine_err)?,
        incoming: ks("incoming").map_err(engine_err)?,
        retained: ks("retained").map_err(engine_err)?,
    };
    let mut store = Store {
        path: path.to_owned(),
        db,
        ks: spaces,
        refs: HashMap::new(),
        channels: HashMap::new(),
        rules,
        clock: codec::Clock::now(),
    };
    let journal = Journal::new(0);
    let recovered = store.recover(&journal).map_err(engine_err)?;
    Ok((store, journal, recovered))
}

impl Store {
    /// Converts receive times with the hub's clock from now on (call
    /// before [`history_reader`](Self::history_reader) and
    /// [`start`](Self::start)), so stored times, the history index and the
    /// timestamps clients see agree to the millisecond.
    pub fn adopt_clock(&mut self, hub: &Hub) {
        self.clock = codec::Clock {
            at: hub.started(),
            ms: hub.started_ms(),
        };
    }

    /// A reader of channel history, usable while the writer runs.
    pub fn history_reader(&self) -> HistoryReader {
        HistoryReader {
            messages: self.ks.messages.clone(),
            history: self.ks.history.clone(),
            clock: self.clock,
        }
    }

    /// Reads every record back. Records that cannot be decoded are
    /// reported and removed; entries and ids of sessions that no longer
    /// exist, and messages nothing refers to, are removed too.
    fn recover(&mut self, journal: &Arc<Journal>) -> Result<Recovered, fjall::Error> {
        let mut max_key = 0u64;
        let mut out = Recovered::default();

        for kv in self.ks.retained.iter() {
            let (k, v) = kv.into_inner()?;
            match codec::decode_message(&v, &self.clock) {
                Ok(m) if *m.topic.as_bytes() == *k => {
                    out.last_seq = out.last_seq.max(m.seq);
                    out.retained.push(m)
                }
                Ok(_) => self.drop_corrupt(Space::Retained, &k, "channel does not match key"),
                Err(e) => self.drop_corrupt(Space::Retained, &k, e.why),
            }
        }

        let mut sessions: BTreeMap<u64, RecoveredSession> = BTreeMap::new();
        for kv in self.ks.sessions.iter() {
            let (k, v) = kv.into_inner()?;
            let Some(sid) = codec::read_u64(&k, 0) else {
                self.drop_corrupt(Space::Sessions, &k, "bad key");
                continue;
            };
            max_key = max_key.max(sid);
            match codec::decode_session(sid, &v, &self.clock) {
                Ok(record) => {
                    sessions.insert(
                        sid,
                        RecoveredSession {
                            record,
                            entries: Vec::new(),
                            incoming: Vec::new(),
                        },
                    );
                }
                Err(e) => self.drop_corrupt(Space::Sessions, &k, e.why),
            }
        }

        // Entries, each with its message: one `Arc` per record, shared by
        // every entry that refers to it.
        let mut messages: HashMap<u64, Arc<Message>> = HashMap::new();
        let mut dead_entries = Vec::new();
        for kv in self.ks.entries.iter() {
            let (k, v) = kv.into_inner()?;
            let (Some(sid), Some(qkey)) = (codec::read_u64(&k, 0), codec::read_u64(&k, 8)) else {
                self.drop_corrupt(Space::Entries, &k, "bad key");
                continue;
            };
            max_key = max_key.max(qkey);
            let e = match codec::decode_entry(sid, qkey, &v) {
                Ok(e) => e,
                Err(e) => {
                    self.drop_corrupt(Space::Entries, &k, e.why);
                    continue;
                }
            };
            let msg = match messages.get(&e.msg_seq) {
                Some(m) => Some(m.clone()),
                None => match self.ks.messages.get(codec::key8(e.msg_seq))? {
                    Some(v) => match codec::decode_message(&v, &self.clock) {
                        Ok(mut m) => {
                            m.seq = e.msg_seq;
                            // Stored (with the history flag if it had one).
                            let _ = m.stored.set(tern_hub::Stored { history: false });
                            let m = Arc::new(m);
                            messages.insert(e.msg_seq, m.clone());
                            Some(m)
                        }
                        Err(err) => {
                            self.drop_corrupt(Space::Messages, &codec::key8(e.msg_seq), err.why);
                            None
                        }
                    },
                    None => None,
                },
            };
            match (sessions.get_mut(&sid), msg) {
                (Some(s), Some(m)) => {
                    *self.refs.entry(e.msg_seq).or_default() += 1;
                    s.entries.push((e, m));
                }
                _ => dead_entries.push(k.to_vec()),
            }
        }
        for k in dead_entries {
            self.ks.entries.remove(k)?;
        }

        for kv in self.ks.incoming.iter() {
            let (k, _) = kv.into_inner()?;
            let (Some(sid), Some(pid)) = (codec::read_u64(&k, 0), codec::read_u16(&k, 8)) else {
                self.drop_corrupt(Space::Incoming, &k, "bad key");
                continue;
            };
            match sessions.get_mut(&sid) {
                Some(s) => s.incoming.push(pid),
                None => self.ks.incoming.remove(k.to_vec())?,
            }
        }

        // History: per-channel counts and oldest times; index entries
        // whose message is gone are removed.
        let mut in_history: BTreeSet<u64> = BTreeSet::new();
        let mut dead_index = Vec::new();
        for kv in self.ks.history.iter() {
            let (k, v) = kv.into_inner()?;
            let Some((ch, seq)) = split_history_key(&k) else {
                self.drop_corrupt(Space::History, &k, "bad key");
                continue;
            };
            if !self.ks.messages.contains_key(codec::key8(seq))? {
                dead_index.push(k.to_vec());
                continue;
            }
            let at = codec::read_u64(&v, 0).unwrap_or(0);
            let c = self.channels.entry(ch.to_vec()).or_default();
            if c.count == 0 {
                c.oldest_ms = at;
            }
            c.count += 1;
            in_history.insert(seq);
            out.last_seq = out.last_seq.max(seq);
        }
        for k in dead_index {
            self.ks.history.remove(k)?;
        }

        // Message records nothing refers to.
        let mut orphans = Vec::new();
        for kv in self.ks.messages.iter() {
            let k = kv.key()?;
            match codec::read_u64(&k, 0) {
                Some(seq) => {
                    out.last_seq = out.last_seq.max(seq);
                    if !self.refs.contains_key(&seq) && !in_history.contains(&seq) {
                        orphans.push(k.to_vec());
                    }
                }
                None => orphans.push(k.to_vec()),
            }
        }
        for k in orphans {
            self.ks.messages.remove(k)?;
        }

        journal.raise_next_key(max_key);
        out.sessions = sessions.into_values().collect();
        tracing::info!(
            path = %self.path.display(),
            sessions = out.sessions.len(),
            queued = out.sessions.iter().map(|s| s.entries.len()).sum::<usize>(),
            retained = out.retained.len(),
            history_channels = self.channels.len(),
            history_messages = in_history.len(),
            "store opened"
        );
        Ok(out)
    }

    fn drop_corrupt(&self, space: Space, key: &[u8], why: &str) {
        tracing::error!(
            path = %self.path.display(),
            record = ?space,
            key = ?key,
            why,
            "unreadable record skipped and removed"
        );
        if let Err(e) = self.ks.get(space).remove(key.to_vec()) {
            tracing::error!(error = %e, "could not remove an unreadable record");
        }
    }

    /// Starts the writer thread: it commits the journal's ops in groups
    /// until the journal is closed and drained.
    pub fn start(self, journal: Arc<Journal>, hub: Option<Arc<Hub>>, sync: Sync) -> Writer {
        let thread = std::thread::Builder::new()
            .name("tern-store".into())
            .spawn(move || self.run(&journal, hub.as_deref(), sync));
        match thread {
            Ok(t) => Writer { thread: Some(t) },
            Err(e) => {
                tracing::error!(error = %e, "cannot start the store writer thread");
                Writer { thread: None }
            }
        }
    }

    fn run(mut self, journal: &Journal, hub: Option<&Hub>, sync: Sync) {
        let mut last_sync = Instant::now();
        let mut last_sweep = Instant::now();
        let mut unsynced = false;
        loop {
            let wait = match sync {
                Sync::EveryCommit => Duration::from_millis(200),
                Sync::Interval(d) => d.min(Duration::from_millis(200)),
            };
            let (ops, last) = journal.take(wait);
            if last_sweep.elapsed() >= Duration::from_secs(1) {
                last_sweep = Instant::now();
                if let Err(e) = self.sweep_history_age() {
                    self.failed(journal, hub, &e);
                    return;
                }
                unsynced = true;
            }
            if ops.is_empty() {
                if let Sync::Interval(d) = sync
                    && unsynced
                    && last_sync.elapsed() >= d
                {
                    if let Err(e) = self.db.persist(PersistMode::SyncData) {
                        self.failed(journal, hub, &e);
                        return;
                    }
                    unsynced = false;
                    last_sync = Instant::now();
                }
                if journal.is_closed() {
                    break;
                }
                continue;
            }
            let n = ops.len();
            let mode = match sync {
                Sync::EveryCommit => PersistMode::SyncData,
                Sync::Interval(_) => PersistMode::Buffer,
            };
            if let Err(e) = self.commit(ops, mode) {
                self.failed(journal, hub, &e);
                return;
            }
            unsynced = matches!(sync, Sync::Interval(_));
            if let Some(h) = hub {
                tern_hub::Stats::add(&h.stats.store_commits, 1);
                tern_hub::Stats::add(&h.stats.store_ops, n as u64);
            }
            journal.mark_durable(last);
        }
        if let Err(e) = self.db.persist(PersistMode::SyncAll) {
            tracing::error!(error = %e, path = %self.path.display(), "final store sync failed");
        }
    }

    fn failed(&self, journal: &Journal, hub: Option<&Hub>, e: &fjall::Error) {
        tracing::error!(
            error = %e,
            path = %self.path.display(),
            "the store could not write; nothing more is acknowledged until the server restarts"
        );
        if let Some(h) = hub {
            tern_hub::Stats::add(&h.stats.store_errors, 1);
        }
        // The kind sits in an io::Error somewhere inside the engine's
        // error; its debug form names it whichever layer it came from.
        let disk_full = format!("{e:?}").contains("StorageFull");
        journal.mark_failed(disk_full);
    }

    /// Writes one group of ops as one atomic batch, then trims the history
    /// of the channels it touched, then syncs. The last op on a key wins
    /// (a batch gives every item the same sequence number, so it must not
    /// hold one key twice).
    fn commit(&mut self, ops: Vec<StoreOp>, mode: PersistMode) -> Result<(), fjall::Error> {
        let now_ms = unix_ms();
        let mut w = Writes::default();
        let mut touched: BTreeSet<Vec<u8>> = BTreeSet::new();
        for op in ops {
            match op {
                StoreOp::PutSession(r) => {
                    w.put(
                        Space::Sessions,
                        codec::key8(r.sid).to_vec(),
                        codec::encode_session(&r, &self.clock),
                    );
                }
                StoreOp::DeleteSession { sid } => {
                    // The scan must see this group's earlier writes.
                    self.write_batch(std::mem::take(&mut w), None)?;
                    let prefix = codec::key8(sid);
                    let mut released = Vec::new();
                    for kv in self.ks.entries.prefix(prefix) {
                        let (k, v) = kv.into_inner()?;
                        if let Ok(e) = codec::decode_entry(sid, 0, &v) {
                            released.push(e.msg_seq);
                        }
                        w.del(Space::Entries, k.to_vec());
                    }
                    for kv in self.ks.incoming.prefix(prefix) {
                        w.del(Space::Incoming, kv.key()?.to_vec());
                    }
                    w.del(Space::Sessions, prefix.to_vec());
                    for seq in released {
                        self.release(seq, None, &mut w)?;
                    }
                }
                StoreOp::PutMessage { msg } => {
                    w.put(
                        Space::Messages,
                        codec::key8(msg.seq).to_vec(),
                        codec::encode_message(&msg, &self.clock),
                    );
                }
                StoreOp::PutEntry(e) => {
                    *self.refs.entry(e.msg_seq).or_default() += 1;
                    w.put(
                        Space::Entries,
                        codec::key16(e.sid, e.qkey).to_vec(),
                        codec::encode_entry(&e),
                    );
                }
                StoreOp::UpdateEntry(e) => {
                    w.put(
                        Space::Entries,
                        codec::key16(e.sid, e.qkey).to_vec(),
                        codec::encode_entry(&e),
                    );
                }
                StoreOp::DeleteEntry {
                    sid,
                    qkey,
                    msg_seq,
                    history,
                } => {
                    w.del(Space::Entries, codec::key16(sid, qkey).to_vec());
                    self.release(msg_seq, Some(history), &mut w)?;
                }
                StoreOp::PutHistory {
                    channel,
                    seq,
                    at_ms,
                } => {
                    let ch = channel.as_bytes();
                    w.put(
                        Space::History,
                        history_key(ch, seq),
                        at_ms.to_be_bytes().to_vec(),
                    );
                    let c = self.channels.entry(ch.to_vec()).or_default();
                    if c.count == 0 {
                        c.oldest_ms = at_ms;
                    }
                    c.count += 1;
                    touched.insert(ch.to_vec());
                }
                StoreOp::PutIncoming { sid, packet_id } => {
                    w.put(
                        Space::Incoming,
                        codec::key10(sid, packet_id).to_vec(),
                        Vec::new(),
                    );
                }
                StoreOp::DeleteIncoming { sid, packet_id } => {
                    w.del(Space::Incoming, codec::key10(sid, packet_id).to_vec());
                }
                StoreOp::PutRetained { msg } => {
                    w.put(
                        Space::Retained,
                        msg.topic.as_bytes().to_vec(),
                        codec::encode_message(&msg, &self.clock),
                    );
                }
                StoreOp::DeleteRetained { topic } => {
                    w.del(Space::Retained, topic.as_bytes().to_vec());
                }
            }
        }
        if !touched.is_empty() {
            self.write_batch(std::mem::take(&mut w), None)?;
            for ch in touched {
                self.trim(&ch, now_ms, &mut w)?;
            }
        }
        self.write_batch(w, Some(mode))
    }

    /// One queue entry no longer refers to message `seq`: when it was the
    /// last, delete the record unless the channel's history still holds it.
    /// `history`: whether the message went to history (`None`: unknown,
    /// read the record).
    fn release(
        &mut self,
        seq: u64,
        history: Option<bool>,
        w: &mut Writes,
    ) -> Result<(), fjall::Error> {
        match self.refs.get_mut(&seq) {
            Some(n) if *n > 1 => {
                *n -= 1;
                return Ok(());
            }
            Some(_) => {
                self.refs.remove(&seq);
            }
            None => {}
        }
        let key = codec::key8(seq).to_vec();
        let record = match w.get(Space::Messages, &key) {
            Some(v) => v.cloned(),
            None => self.ks.messages.get(&key)?.map(|v| v.to_vec()),
        };
        let Some(record) = record else {
            return Ok(());
        };
        let flagged = history.unwrap_or_else(|| {
            codec::message_flags(&record).is_some_and(|f| f & codec::M_HISTORY != 0)
        });
        if flagged {
            // Still in the channel's history? The channel is in the record.
            if let Ok(m) = codec::decode_message(&record, &self.clock) {
                let hk = history_key(m.topic.as_bytes(), seq);
                let indexed = match w.get(Space::History, &hk) {
                    Some(v) => v.is_some(),
                    None => self.ks.history.contains_key(&hk)?,
                };
                if indexed {
                    return Ok(());
                }
            }
        }
        w.del(Space::Messages, key);
        Ok(())
    }

    /// Drops a channel's oldest history beyond its rule's count and age.
    /// Reads committed state: call after writing the group's batch.
    fn trim(&mut self, ch: &[u8], now_ms: u64, w: &mut Writes) -> Result<(), fjall::Error> {
        let name = String::from_utf8_lossy(ch);
        let Some(rule) = self.rules.for_channel(&name).cloned() else {
            return Ok(());
        };
        let Some(c) = self.channels.get(ch).copied() else {
            return Ok(());
        };
        let cutoff = now_ms.saturating_sub(rule.age.as_millis() as u64);
        let over = c.count.saturating_sub(u64::from(rule.messages));
        if over == 0 && c.oldest_ms >= cutoff {
            return Ok(());
        }
        let mut prefix = ch.to_vec();
        prefix.push(0);
        let mut removed = 0u64;
        let mut oldest = None;
        let mut dropped = Vec::new();
        for kv in self.ks.history.prefix(&prefix) {
            let (k, v) = kv.into_inner()?;
            let at = codec::read_u64(&v, 0).unwrap_or(0);
            if removed >= over && at >= cutoff {
                oldest = Some(at);
                break;
            }
            if let Some((_, seq)) = split_history_key(&k) {
                dropped.push(seq);
            }
            w.del(Space::History, k.to_vec());
            removed += 1;
        }
        for seq in dropped {
            if !self.refs.contains_key(&seq) {
                w.del(Space::Messages, codec::key8(seq).to_vec());
            }
        }
        match oldest {
            Some(at) => {
                if let Some(c) = self.channels.get_mut(ch) {
                    c.count = c.count.saturating_sub(removed);
                    c.oldest_ms = at;
                }
            }
            None => {
                self.channels.remove(ch);
            }
        }
        Ok(())
    }

    /// Applies the age bound to every channel whose oldest message is
    /// past its rule's age.
    fn sweep_history_age(&mut self) -> Result<(), fjall::Error> {
        let now_ms = unix_ms();
        let due: Vec<Vec<u8>> = self
            .channels
            .iter()
            .filter(|(ch, c)| {
                self.rules
                    .for_channel(&String::from_utf8_lossy(ch))
                    .is_none_or(|r| c.oldest_ms < now_ms.saturating_sub(r.age.as_millis() as u64))
            })
            .map(|(ch, _)| ch.clone())
            .collect();
        if due.is_empty() {
            return Ok(());
        }
        let mut w = Writes::default();
        for ch in due {
            if self
                .rules
                .for_channel(&String::from_utf8_lossy(&ch))
                .is_none()
            {
                // No rule covers it any more (configuration changed): keep
                // it until a rule says otherwise.
                continue;
            }
            self.trim(&ch, now_ms, &mut w)?;
        }
        self.write_batch(w, None)
    }

    fn write_batch(&self, w: Writes, mode: Option<PersistMode>) -> Result<(), fjall::Error> {
        if !w.0.is_empty() {
            let mut b = self.db.batch().durability(None);
            for ((space, k), v) in w.0 {
                match v {
                    Some(v) => b.insert(self.ks.get(space), k, v),
                    None => b.remove(self.ks.get(space), k),
                }
            }
            b.commit()?;
        }
        if let Some(mode) = mode {
            self.db.persist(mode)?;
        }
        Ok(())
    }
}

/// The writes of one group: the last value per key.
#[derive(Default)]
struct Writes(BTreeMap<(Space, Vec<u8>), Option<Vec<u8>>>);

impl Writes {
    fn put(&mut self, s: Space, k: Vec<u8>, v: Vec<u8>) {
        self.0.insert((s, k), Some(v));
    }
    fn del(&mut self, s: Space, k: Vec<u8>) {
        self.0.insert((s, k), None);
    }
    /// `Some(Some(v))` written, `Some(None)` deleted, `None` untouched in
    /// this group.
    fn get(&self, s: Space, k: &[u8]) -> Option<Option<&Vec<u8>>> {
        self.0.get(&(s, k.to_vec())).map(Option::as_ref)
    }
}

/// Reads channel history from the store (shared with the writer).
#[derive(Clone)]
pub struct HistoryReader {
    messages: Keyspace,
    history: Keyspace,
    clock: codec::Clock,
}

impl std::fmt::Debug for HistoryReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HistoryReader")
    }
}

impl HistoryStore for HistoryReader {
    fn query(&self, q: &HistoryQuery) -> Result<HistoryPage, String> {
        let ch = q.channel.as_bytes();
        let (lo, hi) = match (q.forwards, q.after_seq) {
            (true, Some(a)) => (a.saturating_add(1), u64::MAX),
            (false, Some(0)) => return Ok(HistoryPage::default()),
            (false, Some(a)) => (0, a - 1),
            (_, None) => (0, u64::MAX),
        };
        let range = self
            .history
            .range(history_key(ch, lo)..=history_key(ch, hi));
        let iter: Box<dyn Iterator<Item = fjall::Guard>> = if q.forwards {
            Box::new(range)
        } else {
            Box::new(range.rev())
        };
        let limit = q.limit.max(1);
        let mut page = HistoryPage::default();
        for g in iter {
            let (k, v) = g.into_inner().map_err(|e| e.to_string())?;
            let at = codec::read_u64(&v, 0).unwrap_or(0);
            if q.end_ms.is_some_and(|e| at > e) {
                if q.forwards {
                    break;
                }
                continue;
            }
            if q.start_ms.is_some_and(|s| at < s) {
                if q.forwards {
                    continue;
                }
                break;
            }
            let Some((_, seq)) = split_history_key(&k) else {
                continue;
            };
            if page.messages.len() == limit {
                page.next = page.messages.last().map(|m| m.seq);
                break;
            }
            let Some(rec) = self
                .messages
                .get(codec::key8(seq))
                .map_err(|e| e.to_string())?
            else {
                continue;
            };
            match codec::decode_message(&rec, &self.clock) {
                Ok(mut m) => {
                    m.seq = seq;
                    page.messages.push(Arc::new(m));
                }
                Err(e) => tracing::warn!(seq, why = e.why, "unreadable history message skipped"),
            }
        }
        Ok(page)
    }
}

/// The running writer thread.
#[derive(Debug)]
pub struct Writer {
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    /// Waits for the writer to commit what is pending and stop (after the
    /// journal was closed), for at most `timeout`.
    pub fn join(mut self, timeout: Duration) -> bool {
        let Some(t) = self.thread.take() else {
            return true;
        };
        let deadline = Instant::now() + timeout;
        while !t.is_finished() {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        t.join().is_ok()
    }
}

#[cfg(test)]
mod tests;
