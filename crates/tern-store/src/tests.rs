//! The store under the hub: state written through the journal is read
//! back by a new process-like instance (a fresh hub over the same
//! directory).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tern_hub::{
    Hub, HubConfig, Journal, Message, NextOutgoing, Outgoing, SessionHandle, StoreOp, SubOptions,
};

use super::*;
use tern_hub::HistoryRule;

struct Tmp(PathBuf);

impl Tmp {
    fn new(name: &str) -> Tmp {
        let p = std::env::temp_dir().join(format!(
            "tern-store-{name}-{}-{}",
            std::process::id(),
            unix_ms()
        ));
        let _ = std::fs::remove_dir_all(&p);
        Tmp(p)
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Running {
    hub: Arc<Hub>,
    journal: Arc<Journal>,
    writer: Writer,
}

fn start(dir: &Path) -> Running {
    start_with(dir, HistoryRules::default())
}

fn start_with(dir: &Path, history: HistoryRules) -> Running {
    let (mut store, journal, rec) = open(dir, history.clone()).expect("open");
    let hub = Hub::with_journal(
        HubConfig {
            history,
            ..HubConfig::default()
        },
        journal.clone(),
    );
    store.adopt_clock(&hub);
    hub.restore(rec, Instant::now());
    hub.set_history_store(Arc::new(store.history_reader()));
    let writer = store.start(journal.clone(), Some(hub.clone()), Sync::EveryCommit);
    Running {
        hub,
        journal,
        writer,
    }
}

impl Running {
    /// Waits until everything pushed so far is durable.
    fn settle(&self) {
        let seq = self.journal.last_pushed();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.journal.durable() < seq {
            assert!(Instant::now() < deadline, "store did not commit");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Stops like a process would: what is in memory stays in the store.
    fn stop(self) {
        self.settle();
        self.journal.close();
        assert!(self.writer.join(Duration::from_secs(10)));
        drop(self.hub);
    }
}

fn opts(qos: u8) -> SubOptions {
    SubOptions {
        qos,
        ..SubOptions::default()
    }
}

fn sends(s: &SessionHandle) -> Vec<Outgoing> {
    let mut out = vec![];
    let mut st = s.state.lock();
    loop {
        match st.next_outgoing(100, Instant::now()) {
            NextOutgoing::Send(o) => out.push(o),
            NextOutgoing::Expired => {}
            _ => break,
        }
    }
    out
}

fn payloads(o: &[Outgoing]) -> Vec<String> {
    o.iter()
        .filter_map(|o| match o {
            Outgoing::Publish { delivery, .. } => {
                Some(String::from_utf8_lossy(&delivery.msg.payload).into_owned())
            }
            Outgoing::Release { .. } => None,
        })
        .collect()
}

#[test]
fn persistent_session_subscriptions_and_queue_survive_reopen() {
    let dir = Tmp::new("session");
    let r = start(&dir.0);
    let now = Instant::now();
    let a = r.hub.connect("keep", false, 3600, now).unwrap();
    r.hub.subscribe(&a.session, "s/+", opts(2)).unwrap();
    let b = r.hub.connect("gone", true, 0, now).unwrap();
    r.hub.subscribe(&b.session, "s/+", opts(1)).unwrap();
    r.hub.disconnect(&a.session, &a.link, None, 3600, now);
    for i in 0..5 {
        r.hub
            .publish(Message::new("s/1", format!("m{i}"), (i % 2 + 1) as u8))
            .unwrap();
    }
    r.hub.publish(Message::new("s/1", "qos0", 0)).unwrap();
    r.stop();

    let r = start(&dir.0);
    assert_eq!(r.hub.session_count(), 1, "only the persistent session");
    let a = r.hub.connect("keep", false, 3600, Instant::now()).unwrap();
    assert!(a.session_present);
    let got = payloads(&sends(&a.session));
    assert_eq!(
        got,
        vec!["m0", "m1", "m2", "m3", "m4"],
        "in order, QoS 0 not kept"
    );
    // The subscription came back too.
    r.hub.publish(Message::new("s/9", "live", 1)).unwrap();
    assert_eq!(payloads(&sends(&a.session)), vec!["live"]);
    r.stop();
}

#[test]
fn acknowledged_messages_are_gone_and_their_records_deleted() {
    let dir = Tmp::new("acked");
    let r = start(&dir.0);
    let a = r.hub.connect("c", false, 3600, Instant::now()).unwrap();
    r.hub.subscribe(&a.session, "t", opts(1)).unwrap();
    for i in 0..3 {
        r.hub.publish(Message::new("t", format!("{i}"), 1)).unwrap();
    }
    let out = sends(&a.session);
    let Outgoing::Publish {
        packet_id: Some(first),
        ..
    } = out[0]
    else {
        panic!("{out:?}")
    };
    assert!(a.session.state.lock().on_ack(first));
    r.hub
        .disconnect(&a.session, &a.link, None, 3600, Instant::now());
    r.stop();

    let r = start(&dir.0);
    let a = r.hub.connect("c", false, 3600, Instant::now()).unwrap();
    assert_eq!(payloads(&sends(&a.session)), vec!["1", "2"]);
    r.settle();
    // Two entries, two message records: the acknowledged one was deleted.
    let (store, _j, rec) = {
        r.stop();
        open(&dir.0, HistoryRules::default()).unwrap()
    };
    assert_eq!(store.ks.messages.len().unwrap(), 2);
    assert_eq!(rec.sessions[0].entries.len(), 2);
}

#[test]
fn one_message_record_serves_every_session() {
    let dir = Tmp::new("shared");
    let r = start(&dir.0);
    for c in ["a", "b", "c"] {
        let s = r.hub.connect(c, false, 3600, Instant::now()).unwrap();
        r.hub.subscribe(&s.session, "t", opts(1)).unwrap();
        r.hub
            .disconnect(&s.session, &s.link, None, 3600, Instant::now());
    }
    r.hub.publish(Message::new("t", "x", 1)).unwrap();
    r.stop();
    let (store, _j, rec) = open(&dir.0, HistoryRules::default()).unwrap();
    assert_eq!(store.ks.messages.len().unwrap(), 1);
    assert_eq!(store.ks.entries.len().unwrap(), 3);
    let seqs: Vec<u64> = rec.sessions.iter().map(|s| s.entries[0].1.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] == w[1]));
    // And the three share one Arc in memory.
    assert!(Arc::ptr_eq(
        &rec.sessions[0].entries[0].1,
        &rec.sessions[2].entries[0].1
    ));
}

#[test]
fn qos2_outbound_state_resumes_with_the_same_ids() {
    let dir = Tmp::new("qos2");
    let r = start(&dir.0);
    let a = r.hub.connect("q", false, 3600, Instant::now()).unwrap();
    r.hub.subscribe(&a.session, "t", opts(2)).unwrap();
    r.hub.publish(Message::new("t", "rec", 2)).unwrap();
    r.hub.publish(Message::new("t", "comp", 2)).unwrap();
    r.hub.publish(Message::new("t", "queued", 2)).unwrap();
    let mut ids = vec![];
    {
        let mut st = a.session.state.lock();
        for _ in 0..2 {
            if let NextOutgoing::Send(Outgoing::Publish {
                packet_id: Some(p), ..
            }) = st.next_outgoing(2, Instant::now())
            {
                ids.push(p);
            }
        }
        assert!(st.on_rec(ids[1], true), "second one received: release sent");
    }
    r.hub
        .disconnect(&a.session, &a.link, None, 3600, Instant::now());
    r.stop();

    let r = start(&dir.0);
    let a = r.hub.connect("q", false, 3600, Instant::now()).unwrap();
    let out = sends(&a.session);
    match &out[..] {
        [
            Outgoing::Publish {
                packet_id: Some(p0),
                dup: true,
                delivery,
            },
            Outgoing::Release { packet_id: p1 },
            Outgoing::Publish {
                dup: false,
                delivery: d3,
                ..
            },
        ] => {
            assert_eq!(*p0, ids[0]);
            assert_eq!(&delivery.msg.payload[..], b"rec");
            assert_eq!(*p1, ids[1]);
            assert_eq!(&d3.msg.payload[..], b"queued");
        }
        other => panic!("{other:?}"),
    }
    r.stop();
}

#[test]
fn inbound_qos2_ids_survive() {
    let dir = Tmp::new("incoming");
    let r = start(&dir.0);
    let a = r.hub.connect("p", false, 3600, Instant::now()).unwrap();
    {
        let mut st = a.session.state.lock();
        assert!(st.add_incoming(7));
        assert!(st.add_incoming(8));
        assert!(st.remove_incoming(7));
    }
    r.stop();
    let r = start(&dir.0);
    let a = r.hub.connect("p", false, 3600, Instant::now()).unwrap();
    let ids: Vec<u16> = a
        .session
        .state
        .lock()
        .incoming_qos2
        .iter()
        .copied()
        .collect();
    assert_eq!(ids, vec![8]);
    r.stop();
}

#[test]
fn retained_messages_survive_and_clears_stick() {
    let dir = Tmp::new("retained");
    let r = start(&dir.0);
    for (t, p) in [("r/1", "one"), ("r/2", "two"), ("r/1", "uno"), ("r/2", "")] {
        let mut m = Message::new(t, p, 1);
        m.retain = true;
        r.hub.publish(m).unwrap();
    }
    r.stop();
    let r = start(&dir.0);
    assert_eq!(r.hub.retained_count(), 1);
    let a = r.hub.connect("w", true, 0, Instant::now()).unwrap();
    r.hub.deliver_retained(&a.session, "r/#", opts(1));
    assert_eq!(payloads(&sends(&a.session)), vec!["uno"]);
    r.stop();
}

#[test]
fn expiry_counts_across_restarts() {
    let dir = Tmp::new("expiry");
    let r = start(&dir.0);
    let a = r.hub.connect("short", false, 3600, Instant::now()).unwrap();
    r.hub.subscribe(&a.session, "t", opts(1)).unwrap();
    r.hub
        .disconnect(&a.session, &a.link, None, 3600, Instant::now());
    r.hub.publish(Message::new("t", "x", 1)).unwrap();
    // The same session as if it had left two hours ago with a one-hour
    // expiry: it must be gone after a restart.
    let mut rec = tern_hub::SessionRecord {
        sid: a.session.id,
        client_id: "short".into(),
        expiry_secs: 3600,
        disconnected_at_ms: Some(unix_ms() - 7_200_000),
        subscriptions: vec![("t".into(), opts(1))],
        will: None,
    };
    r.journal.push(StoreOp::PutSession(rec.clone()));
    // And one that left 10 s ago with a one-hour expiry stays.
    rec.sid = 999_999;
    rec.client_id = "long".into();
    rec.disconnected_at_ms = Some(unix_ms() - 10_000);
    r.journal.push(StoreOp::PutSession(rec));
    r.stop();

    let r = start(&dir.0);
    assert_eq!(r.hub.session_count(), 1);
    let s = r.hub.connect("long", false, 3600, Instant::now()).unwrap();
    assert!(s.session_present);
    let s = r.hub.connect("short", false, 3600, Instant::now()).unwrap();
    assert!(!s.session_present);
    r.stop();
    // The expired session's entry and message were removed too.
    let (store, _j, _rec) = open(&dir.0, HistoryRules::default()).unwrap();
    assert_eq!(store.ks.entries.len().unwrap(), 0);
    assert_eq!(store.ks.messages.len().unwrap(), 0);
}

#[test]
fn clean_start_and_expiry_zero_remove_the_stored_session() {
    let dir = Tmp::new("clean");
    let r = start(&dir.0);
    let a = r.hub.connect("c", false, 3600, Instant::now()).unwrap();
    r.hub.subscribe(&a.session, "t", opts(1)).unwrap();
    r.hub
        .disconnect(&a.session, &a.link, None, 3600, Instant::now());
    r.hub.publish(Message::new("t", "x", 1)).unwrap();
    let b = r.hub.connect("c", true, 0, Instant::now()).unwrap();
    r.hub
        .disconnect(&b.session, &b.link, None, 0, Instant::now());
    r.stop();
    let (store, _j, rec) = open(&dir.0, HistoryRules::default()).unwrap();
    assert!(rec.sessions.is_empty());
    assert_eq!(store.ks.entries.len().unwrap(), 0);
    assert_eq!(store.ks.messages.len().unwrap(), 0);
}

#[test]
fn a_second_process_on_the_same_directory_is_refused() {
    let dir = Tmp::new("lock");
    let r = start(&dir.0);
    let e = open(&dir.0, HistoryRules::default()).unwrap_err();
    assert!(matches!(e, OpenError::Locked(_)), "{e}");
    assert!(e.to_string().contains(&dir.0.display().to_string()));
    r.stop();
}

#[test]
fn unreadable_records_are_skipped_not_fatal() {
    let dir = Tmp::new("corrupt");
    let r = start(&dir.0);
    let a = r.hub.connect("c", false, 3600, Instant::now()).unwrap();
    r.hub.subscribe(&a.session, "t", opts(1)).unwrap();
    r.hub
        .disconnect(&a.session, &a.link, None, 3600, Instant::now());
    r.hub.publish(Message::new("t", "good", 1)).unwrap();
    r.stop();
    {
        let (store, _j, _rec) = open(&dir.0, HistoryRules::default()).unwrap();
        store
            .ks
            .sessions
            .insert(codec::key8(12345), vec![9u8, 9, 9])
            .unwrap();
        store
            .ks
            .messages
            .insert(codec::key8(777), vec![1u8])
            .unwrap();
        store.db.persist(PersistMode::SyncAll).unwrap();
    }
    let r = start(&dir.0);
    assert_eq!(r.hub.session_count(), 1);
    let a = r.hub.connect("c", false, 3600, Instant::now()).unwrap();
    assert_eq!(payloads(&sends(&a.session)), vec!["good"]);
    r.stop();
}

#[test]
fn torn_journal_tail_loses_only_the_torn_batch() {
    let dir = Tmp::new("torn");
    let r = start(&dir.0);
    let a = r.hub.connect("c", false, 3600, Instant::now()).unwrap();
    r.hub.subscribe(&a.session, "t", opts(1)).unwrap();
    r.hub
        .disconnect(&a.session, &a.link, None, 3600, Instant::now());
    for i in 0..50 {
        r.hub.publish(Message::new("t", format!("{i}"), 1)).unwrap();
        r.settle();
    }
    r.stop();
    // Tear the end of the newest journal file: as if the last write was
    // cut short by a power loss.
    let journal = newest_journal(&dir.0).expect("a journal file");
    let len = std::fs::metadata(&journal).unwrap().len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&journal)
        .unwrap();
    f.set_len(len - 7).unwrap();
    drop(f);

    let r = start(&dir.0);
    let a = r.hub.connect("c", false, 3600, Instant::now()).unwrap();
    let got = payloads(&sends(&a.session));
    assert!(
        got.len() >= 49 && got.len() <= 50,
        "at most the torn batch is lost: {}",
        got.len()
    );
    let want: Vec<String> = (0..got.len()).map(|i| i.to_string()).collect();
    assert_eq!(got, want, "a prefix, in order");
    r.stop();
}

fn newest_journal(dir: &Path) -> Option<PathBuf> {
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).ok()?.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "jnl")
                && let Ok(m) = e.metadata()
                && m.len() > 0
            {
                found.push((m.modified().ok()?, p));
            }
        }
    }
    found.sort();
    found.pop().map(|(_, p)| p)
}

fn chat_rules(messages: u32) -> HistoryRules {
    HistoryRules {
        rules: vec![HistoryRule {
            channels: "chat:*".into(),
            messages,
            age: Duration::from_secs(3600),
        }],
    }
}

fn query(
    r: &Running,
    channel: &str,
    limit: usize,
    forwards: bool,
    after: Option<u64>,
) -> (Vec<String>, Option<u64>) {
    let page = r
        .hub
        .history()
        .expect("history store")
        .query(&HistoryQuery {
            channel: channel.into(),
            start_ms: None,
            end_ms: None,
            limit,
            forwards,
            after_seq: after,
        })
        .unwrap();
    (
        page.messages
            .iter()
            .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
            .collect(),
        page.next,
    )
}

#[test]
fn history_keeps_the_rule_count_and_pages_both_ways() {
    let dir = Tmp::new("history");
    let r = start_with(&dir.0, chat_rules(5));
    for i in 0..8 {
        r.hub
            .publish(Message::new("chat:a", format!("{i}"), 0))
            .unwrap();
    }
    r.hub.publish(Message::new("other", "not kept", 0)).unwrap();
    r.settle();
    let (got, next) = query(&r, "chat:a", 3, false, None);
    assert_eq!(got, vec!["7", "6", "5"]);
    let (got, next) = query(&r, "chat:a", 3, false, next);
    assert_eq!(got, vec!["4", "3"], "only 5 kept");
    assert_eq!(next, None);
    let (got, next) = query(&r, "chat:a", 2, true, None);
    assert_eq!(got, vec!["3", "4"]);
    let (got, _) = query(&r, "chat:a", 10, true, next);
    assert_eq!(got, vec!["5", "6", "7"]);
    assert!(query(&r, "other", 10, false, None).0.is_empty());
    r.stop();
    let (store, _j, _rec) = open(&dir.0, chat_rules(5)).unwrap();
    assert_eq!(
        store.ks.messages.len().unwrap(),
        5,
        "trimmed records deleted"
    );
    assert_eq!(store.ks.history.len().unwrap(), 5);
}

#[test]
fn history_survives_restart_and_sequence_continues() {
    let dir = Tmp::new("history-restart");
    let r = start_with(&dir.0, chat_rules(100));
    for i in 0..3 {
        r.hub
            .publish(Message::new("chat:a", format!("{i}"), 0))
            .unwrap();
    }
    let before = r.hub.last_seq();
    r.stop();
    let r = start_with(&dir.0, chat_rules(100));
    r.hub.publish(Message::new("chat:a", "3", 0)).unwrap();
    assert!(
        r.hub.last_seq() > before,
        "publish sequence continues after restart"
    );
    r.settle();
    assert_eq!(
        query(&r, "chat:a", 10, true, None).0,
        vec!["0", "1", "2", "3"]
    );
    r.stop();
}

#[test]
fn a_message_in_history_and_a_queue_is_stored_once_and_kept_while_either_holds_it() {
    let dir = Tmp::new("history-shared");
    let r = start_with(&dir.0, chat_rules(1));
    let a = r.hub.connect("c", false, 3600, Instant::now()).unwrap();
    r.hub.subscribe(&a.session, "chat:a", opts(1)).unwrap();
    r.hub.publish(Message::new("chat:a", "first", 1)).unwrap();
    r.settle();
    assert_eq!(
        r.hub
            .history()
            .unwrap()
            .query(&HistoryQuery {
                channel: "chat:a".into(),
                start_ms: None,
                end_ms: None,
                limit: 10,
                forwards: true,
                after_seq: None
            })
            .unwrap()
            .messages
            .len(),
        1
    );
    // A second message pushes the first out of history (rule: 1), but the
    // queue still holds it.
    r.hub.publish(Message::new("chat:a", "second", 1)).unwrap();
    r.settle();
    assert_eq!(query(&r, "chat:a", 10, true, None).0, vec!["second"]);
    let out = sends(&a.session);
    assert_eq!(payloads(&out), vec!["first", "second"]);
    // Acknowledge both: "first" is gone everywhere; "second" stays in history.
    for o in &out {
        if let Outgoing::Publish {
            packet_id: Some(p), ..
        } = o
        {
            assert!(a.session.state.lock().on_ack(*p));
        }
    }
    r.hub
        .disconnect(&a.session, &a.link, None, 3600, Instant::now());
    r.stop();
    let (store, _j, _rec) = open(&dir.0, chat_rules(1)).unwrap();
    assert_eq!(store.ks.messages.len().unwrap(), 1);
    assert_eq!(store.ks.entries.len().unwrap(), 0);
}

#[test]
fn history_older_than_the_rule_age_is_dropped() {
    let dir = Tmp::new("history-age");
    let r = start_with(&dir.0, chat_rules(100));
    // A message received two hours ago (the rule keeps one hour).
    let mut old = Message::new("chat:a", "old", 0);
    old.seq = 1;
    let old = Arc::new(old);
    let _ = old.stored.set(tern_hub::Stored { history: true });
    r.journal.push(StoreOp::PutMessage { msg: old.clone() });
    r.journal.push(StoreOp::PutHistory {
        channel: "chat:a".into(),
        seq: 1,
        at_ms: unix_ms() - 7_200_000,
    });
    r.settle();
    r.hub.raise_seq(1);
    r.hub.publish(Message::new("chat:a", "new", 0)).unwrap();
    r.settle();
    assert_eq!(query(&r, "chat:a", 10, true, None).0, vec!["new"]);
    r.stop();
}

fn watcher(r: &Running, id: &str) -> Arc<SessionHandle> {
    let w = r.hub.connect(id, false, 3600, Instant::now()).unwrap();
    r.hub.subscribe(&w.session, "will/#", opts(1)).unwrap();
    r.hub
        .disconnect(&w.session, &w.link, None, 3600, Instant::now());
    w.session
}

#[test]
fn the_will_of_a_connection_lost_with_the_server_is_published_after_restart() {
    let dir = Tmp::new("will-crash");
    let r = start(&dir.0);
    watcher(&r, "watch");
    let a = r.hub.connect("dev", false, 3600, Instant::now()).unwrap();
    let will = tern_hub::Will {
        msg: Message::new("will/dev", "offline", 1),
        delay_secs: 0,
    };
    r.hub.set_will(&a.session, Some(&will));
    // A second device that disconnects normally: its will is gone.
    let b = r.hub.connect("dev2", false, 3600, Instant::now()).unwrap();
    r.hub.set_will(&b.session, Some(&will));
    r.hub
        .disconnect(&b.session, &b.link, None, 3600, Instant::now());
    // The server stops with "dev" still connected.
    r.stop();
    let r = start(&dir.0);
    let w = r.hub.connect("watch", false, 3600, Instant::now()).unwrap();
    let out = sends(&w.session);
    assert_eq!(payloads(&out), vec!["offline"]);
    for o in &out {
        if let Outgoing::Publish {
            packet_id: Some(p), ..
        } = o
        {
            assert!(w.session.state.lock().on_ack(*p));
        }
    }
    r.hub
        .disconnect(&w.session, &w.link, None, 3600, Instant::now());
    r.stop();
    // Published once: not again after another restart.
    let r = start(&dir.0);
    let w = r.hub.connect("watch", false, 3600, Instant::now()).unwrap();
    assert!(payloads(&sends(&w.session)).is_empty());
    r.stop();
}

#[test]
fn a_delayed_will_keeps_its_delay_across_restart() {
    let dir = Tmp::new("will-delay");
    let r = start(&dir.0);
    watcher(&r, "watch");
    let a = r.hub.connect("dev", false, 3600, Instant::now()).unwrap();
    let will = tern_hub::Will {
        msg: Message::new("will/dev", "late", 1),
        delay_secs: 600,
    };
    r.hub.set_will(&a.session, Some(&will));
    // The connection is lost: the will waits 600 s.
    r.hub
        .disconnect(&a.session, &a.link, Some(will), 3600, Instant::now());
    r.stop();
    let r = start(&dir.0);
    let now = Instant::now();
    r.hub.tick(now + Duration::from_secs(590));
    let w = r.hub.connect("watch", false, 3600, now).unwrap();
    assert!(
        payloads(&sends(&w.session)).is_empty(),
        "not before its delay"
    );
    r.hub.disconnect(&w.session, &w.link, None, 3600, now);
    r.hub.tick(now + Duration::from_secs(601));
    let w = r.hub.connect("watch", false, 3600, now).unwrap();
    assert_eq!(payloads(&sends(&w.session)), vec!["late"]);
    r.stop();
}
