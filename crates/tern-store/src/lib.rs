//! Tern's embedded durable store.
//!
//! The hub pushes every durable change to its [`Journal`]; this crate's
//! writer thread takes all pending changes at once, writes them to the
//! embedded engine ([fjall], an LSM tree with a write-ahead journal) as
//! one atomic batch, syncs it (group commit: one `fdatasync` for however
//! many messages arrived meanwhile) and then raises the journal's
//! durability watermark, which releases the acknowledgements waiting on
//! it. At start-up [`open`] reads the state back for [`Hub::restore`].
//!
//! # Layout (one keyspace each)
//! | keyspace | key | value |
//! |---|---|---|
//! | `sessions` | session id (u64 BE) | client id, expiry, when it left, subscriptions |
//! | `entries` | session id, queue key (u64 BE each) | message seq, QoS, retain, subscription ids, in-flight packet id and state |
//! | `messages` | message seq (u64 BE) | the message, written once for every entry that refers to it |
//! | `incoming` | session id (u64 BE), packet id (u16 BE) | inbound QoS 2 ids awaiting PUBREL |
//! | `retained` | channel name | the retained message |
//!
//! [`Hub::restore`]: tern_hub::Hub::restore

pub mod codec;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use tern_hub::{Hub, Journal, Message, Recovered, RecoveredSession, StoreOp, StoredRef, unix_ms};

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
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

#[derive(Clone)]
struct Spaces {
    sessions: Keyspace,
    entries: Keyspace,
    messages: Keyspace,
    incoming: Keyspace,
    retained: Keyspace,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Space {
    Sessions,
    Entries,
    Messages,
    Incoming,
    Retained,
}

impl Spaces {
    fn get(&self, s: Space) -> &Keyspace {
        match s {
            Space::Sessions => &self.sessions,
            Space::Entries => &self.entries,
            Space::Messages => &self.messages,
            Space::Incoming => &self.incoming,
            Space::Retained => &self.retained,
        }
    }
}

/// Opens (or creates) the store in `path` and reads its state back. The
/// returned journal continues the store's numbering; build the hub with
/// it and call [`Hub::restore`] with the recovered state before serving.
pub fn open(path: &Path) -> Result<(Store, Arc<Journal>, Recovered), OpenError> {
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
        .open()
        .map_err(engine_err)?;
    let ks = |name: &str| db.keyspace(name, KeyspaceCreateOptions::default);
    let spaces = Spaces {
        sessions: ks("sessions").map_err(engine_err)?,
        entries: ks("entries").map_err(engine_err)?,
        messages: ks("messages").map_err(engine_err)?,
        incoming: ks("incoming").map_err(engine_err)?,
        retained: ks("retained").map_err(engine_err)?,
    };
    let store = Store {
        path: path.to_owned(),
        db,
        ks: spaces,
    };
    let journal = Journal::new(0);
    let recovered = store.recover(&journal).map_err(engine_err)?;
    Ok((store, journal, recovered))
}

impl Store {
    /// Reads every record back. Records that cannot be decoded are
    /// reported and removed; entries and ids of sessions that no longer
    /// exist, and messages no entry refers to, are removed too.
    fn recover(&self, journal: &Arc<Journal>) -> Result<Recovered, fjall::Error> {
        let now = Instant::now();
        let now_ms = unix_ms();
        let mut max_key = 0u64;
        let mut out = Recovered::default();

        for kv in self.ks.retained.iter() {
            let (k, v) = kv.into_inner()?;
            match codec::decode_message(&v, now, now_ms) {
                Ok(m) if *m.topic.as_bytes() == *k => out.retained.push(m),
                Ok(_) => self.drop_corrupt("retained message", &k, "channel does not match key"),
                Err(e) => self.drop_corrupt("retained message", &k, e.why),
            }
        }

        let mut sessions: BTreeMap<u64, RecoveredSession> = BTreeMap::new();
        for kv in self.ks.sessions.iter() {
            let (k, v) = kv.into_inner()?;
            let Some(sid) = codec::read_u64(&k, 0) else {
                self.drop_corrupt("session", &k, "bad key");
                continue;
            };
            max_key = max_key.max(sid);
            match codec::decode_session(sid, &v) {
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
                Err(e) => self.drop_corrupt("session", &k, e.why),
            }
        }

        // Messages: one `Arc` per record, shared by every entry; a record
        // no entry keeps is deleted when its last reference drops below.
        let mut messages: HashMap<u64, Arc<Message>> = HashMap::new();
        for kv in self.ks.messages.iter() {
            let (k, v) = kv.into_inner()?;
            let Some(seq) = codec::read_u64(&k, 0) else {
                self.drop_corrupt("message", &k, "bad key");
                continue;
            };
            max_key = max_key.max(seq);
            match codec::decode_message(&v, now, now_ms) {
                Ok(m) => {
                    let _ = m.stored.set(Arc::new(StoredRef::new(seq, journal.clone())));
                    messages.insert(seq, Arc::new(m));
                }
                Err(e) => self.drop_corrupt("message", &k, e.why),
            }
        }

        for kv in self.ks.entries.iter() {
            let (k, v) = kv.into_inner()?;
            let (Some(sid), Some(qkey)) = (codec::read_u64(&k, 0), codec::read_u64(&k, 8)) else {
                self.drop_corrupt("queue entry", &k, "bad key");
                continue;
            };
            max_key = max_key.max(qkey);
            let e = match codec::decode_entry(sid, qkey, &v) {
                Ok(e) => e,
                Err(e) => {
                    self.drop_corrupt("queue entry", &k, e.why);
                    continue;
                }
            };
            match (sessions.get_mut(&sid), messages.get(&e.msg_seq)) {
                (Some(s), Some(m)) => s.entries.push((e, m.clone())),
                _ => {
                    journal.push(StoreOp::DeleteEntry { sid, qkey });
                }
            }
        }

        for kv in self.ks.incoming.iter() {
            let (k, _) = kv.into_inner()?;
            let (Some(sid), Some(pid)) = (codec::read_u64(&k, 0), codec::read_u16(&k, 8)) else {
                self.drop_corrupt("inbound id", &k, "bad key");
                continue;
            };
            match sessions.get_mut(&sid) {
                Some(s) => s.incoming.push(pid),
                None => {
                    journal.push(StoreOp::DeleteIncoming {
                        sid,
                        packet_id: pid,
                    });
                }
            }
        }
        // Messages only the map holds are deleted as the map drops.
        drop(messages);
        journal.raise_next_key(max_key);
        out.sessions = sessions.into_values().collect();
        tracing::info!(
            path = %self.path.display(),
            sessions = out.sessions.len(),
            queued = out.sessions.iter().map(|s| s.entries.len()).sum::<usize>(),
            retained = out.retained.len(),
            "store opened"
        );
        Ok(out)
    }

    fn drop_corrupt(&self, what: &str, key: &[u8], why: &str) {
        tracing::error!(
            path = %self.path.display(),
            record = what,
            key = ?key,
            why,
            "unreadable record skipped and removed"
        );
        let space = match what {
            "retained message" => Space::Retained,
            "session" => Space::Sessions,
            "message" => Space::Messages,
            "queue entry" => Space::Entries,
            _ => Space::Incoming,
        };
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

    fn run(self, journal: &Journal, hub: Option<&Hub>, sync: Sync) {
        let mut last_sync = Instant::now();
        let mut unsynced = false;
        loop {
            let wait = match sync {
                Sync::EveryCommit => Duration::from_millis(200),
                Sync::Interval(d) => d.min(Duration::from_millis(200)),
            };
            let (ops, last) = journal.take(wait);
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
        journal.mark_failed();
    }

    /// Writes one group of ops as one atomic batch. The last op on a key
    /// wins (a batch gives every item the same sequence number, so it
    /// must not hold one key twice).
    fn commit(&self, ops: Vec<StoreOp>, mode: PersistMode) -> Result<(), fjall::Error> {
        let now = Instant::now();
        let now_ms = unix_ms();
        let mut writes: BTreeMap<(Space, Vec<u8>), Option<Vec<u8>>> = BTreeMap::new();
        for op in ops {
            match op {
                StoreOp::PutSession(r) => {
                    writes.insert(
                        (Space::Sessions, codec::key8(r.sid).to_vec()),
                        Some(codec::encode_session(&r)),
                    );
                }
                StoreOp::DeleteSession { sid } => {
                    // The scan must see this group's earlier writes.
                    self.write_batch(std::mem::take(&mut writes), None)?;
                    let prefix = codec::key8(sid);
                    for space in [Space::Entries, Space::Incoming] {
                        for kv in self.ks.get(space).prefix(prefix) {
                            writes.insert((space, kv.key()?.to_vec()), None);
                        }
                    }
                    writes.insert((Space::Sessions, prefix.to_vec()), None);
                }
                StoreOp::PutMessage { seq, msg } => {
                    writes.insert(
                        (Space::Messages, codec::key8(seq).to_vec()),
                        Some(codec::encode_message(&msg, now, now_ms)),
                    );
                }
                StoreOp::DeleteMessage { seq } => {
                    writes.insert((Space::Messages, codec::key8(seq).to_vec()), None);
                }
                StoreOp::PutEntry(e) => {
                    writes.insert(
                        (Space::Entries, codec::key16(e.sid, e.qkey).to_vec()),
                        Some(codec::encode_entry(&e)),
                    );
                }
                StoreOp::DeleteEntry { sid, qkey } => {
                    writes.insert((Space::Entries, codec::key16(sid, qkey).to_vec()), None);
                }
                StoreOp::PutIncoming { sid, packet_id } => {
                    writes.insert(
                        (Space::Incoming, codec::key10(sid, packet_id).to_vec()),
                        Some(Vec::new()),
                    );
                }
                StoreOp::DeleteIncoming { sid, packet_id } => {
                    writes.insert(
                        (Space::Incoming, codec::key10(sid, packet_id).to_vec()),
                        None,
                    );
                }
                StoreOp::PutRetained { msg } => {
                    writes.insert(
                        (Space::Retained, msg.topic.as_bytes().to_vec()),
                        Some(codec::encode_message(&msg, now, now_ms)),
                    );
                }
                StoreOp::DeleteRetained { topic } => {
                    writes.insert((Space::Retained, topic.as_bytes().to_vec()), None);
                }
            }
        }
        self.write_batch(writes, Some(mode))
    }

    fn write_batch(
        &self,
        writes: BTreeMap<(Space, Vec<u8>), Option<Vec<u8>>>,
        mode: Option<PersistMode>,
    ) -> Result<(), fjall::Error> {
        if !writes.is_empty() {
            let mut b = self.db.batch().durability(None);
            for ((space, k), v) in writes {
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
