//! Presence: who is on each channel, and the connections watching it.
//!
//! Members live in memory, per hub channel, keyed by (clientId,
//! connectionId) (TP3h). Events go to every connection attached with
//! PRESENCE_SUBSCRIBE — the sender included — through that connection's
//! [`Mailbox`], which wakes it through its hub [`ConnLink`]. Presence does
//! not go through the hub: MQTT subscribers of the channel never see it.
//!
//! Lock order: the registry's lock, then a mailbox's (a leaf).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use tern_hub::ConnLink;

use crate::message::{ErrorInfo, PresenceMessage, presence_action};

/// Presence events waiting for one connection: (the channel string the
/// connection attached with, the events).
#[derive(Debug)]
pub struct Mailbox {
    events: Mutex<VecDeque<(Arc<str>, PresenceMessage)>>,
    /// More than `max` events were waiting: the connection must go (its
    /// member list would be wrong).
    overflowed: AtomicBool,
    max: usize,
    link: Arc<ConnLink>,
}

impl Mailbox {
    /// A mailbox holding at most `max` events, waking `link`.
    pub fn new(link: Arc<ConnLink>, max: usize) -> Arc<Mailbox> {
        Arc::new(Mailbox {
            events: Mutex::new(VecDeque::new()),
            overflowed: AtomicBool::new(false),
            max,
            link,
        })
    }

    fn push(&self, channel: &Arc<str>, event: &PresenceMessage) {
        {
            let mut q = self.events.lock();
            if q.len() >= self.max {
                self.overflowed.store(true, Ordering::Release);
            } else {
                q.push_back((channel.clone(), event.clone()));
            }
        }
        self.link.wake();
    }

    /// Takes every waiting event, in order.
    pub fn take(&self) -> Vec<(Arc<str>, PresenceMessage)> {
        self.events.lock().drain(..).collect()
    }

    /// True once an event was lost.
    pub fn overflowed(&self) -> bool {
        self.overflowed.load(Ordering::Acquire)
    }
}

/// One watcher: a connection attached with PRESENCE_SUBSCRIBE, under the
/// channel strings it used (qualifiers differ).
#[derive(Debug)]
struct Watcher {
    mailbox: Arc<Mailbox>,
    channels: Vec<Arc<str>>,
}

#[derive(Debug, Default)]
struct ChannelPresence {
    /// (clientId, connectionId) → the member as last entered/updated, in
    /// entry order.
    members: Vec<PresenceMessage>,
    /// Connection id → watcher.
    watchers: HashMap<String, Watcher>,
}

impl ChannelPresence {
    fn find(&self, client_id: &str, connection_id: &str) -> Option<usize> {
        self.members.iter().position(|m| {
            m.client_id.as_deref() == Some(client_id)
                && m.connection_id.as_deref() == Some(connection_id)
        })
    }

    fn broadcast(&self, event: &PresenceMessage) {
        for w in self.watchers.values() {
            for c in &w.channels {
                w.mailbox.push(c, event);
            }
        }
    }

    fn is_unused(&self) -> bool {
        self.members.is_empty() && self.watchers.is_empty()
    }
}

/// Every channel's presence.
#[derive(Debug)]
pub struct Presence {
    channels: Mutex<HashMap<String, ChannelPresence>>,
    members_max: usize,
}

impl Presence {
    /// An empty registry allowing `members_max` members per channel.
    pub fn new(members_max: usize) -> Presence {
        Presence {
            channels: Mutex::new(HashMap::new()),
            members_max,
        }
    }

    /// The members of hub channel `channel`, as PRESENT messages (for SYNC
    /// and `GET /channels/{name}/presence`).
    pub fn members(&self, channel: &str) -> Vec<PresenceMessage> {
        self.channels
            .lock()
            .get(channel)
            .map(|c| c.members.iter().map(present).collect())
            .unwrap_or_default()
    }

    /// Starts sending `channel`'s events to `connection_id` under the
    /// channel string `as_channel`, and returns the members at that instant
    /// (no event is lost or doubled between the two).
    pub fn watch(
        &self,
        channel: &str,
        connection_id: &str,
        as_channel: &str,
        mailbox: &Arc<Mailbox>,
    ) -> Vec<PresenceMessage> {
        let mut all = self.channels.lock();
        let c = all.entry(channel.to_owned()).or_default();
        let w = c
            .watchers
            .entry(connection_id.to_owned())
            .or_insert_with(|| Watcher {
                mailbox: mailbox.clone(),
                channels: Vec::new(),
            });
        if !w.channels.iter().any(|s| &**s == as_channel) {
            w.channels.push(as_channel.into());
        }
        c.members.iter().map(present).collect()
    }

    /// Stops sending `channel`'s events under `as_channel` to the
    /// connection.
    pub fn unwatch(&self, channel: &str, connection_id: &str, as_channel: &str) {
        let mut all = self.channels.lock();
        let Some(c) = all.get_mut(channel) else {
            return;
        };
        if let Some(w) = c.watchers.get_mut(connection_id) {
            w.channels.retain(|s| &**s != as_channel);
            if w.channels.is_empty() {
                c.watchers.remove(connection_id);
            }
        }
        if c.is_unused() {
            all.remove(channel);
        }
    }

    /// Applies an ENTER, UPDATE or LEAVE whose clientId, connectionId, id
    /// and timestamp are filled in, and broadcasts it. A repeated ENTER is
    /// sent as UPDATE, an UPDATE of an absent member as ENTER; a LEAVE of
    /// an absent member changes nothing and is not sent.
    pub fn apply(&self, channel: &str, mut event: PresenceMessage) -> Result<(), ErrorInfo> {
        let client_id = event.client_id.clone().unwrap_or_default();
        let connection_id = event.connection_id.clone().unwrap_or_default();
        let mut all = self.channels.lock();
        let c = all.entry(channel.to_owned()).or_default();
        let at = c.find(&client_id, &connection_id);
        match (event.action, at) {
            (presence_action::LEAVE, None) => {
                if c.is_unused() {
                    all.remove(channel);
                }
                return Ok(());
            }
            (presence_action::LEAVE, Some(i)) => {
                let m = c.members.remove(i);
                if event.data.is_none() {
                    // A leave without data carries the member's last data.
                    event.data = m.data;
                    event.encoding = m.encoding;
                }
            }
            (_, Some(i)) => {
                event.action = presence_action::UPDATE;
                c.members[i] = event.clone();
            }
            (_, None) => {
                if c.members.len() >= self.members_max {
                    return Err(ErrorInfo::new(
                        91003,
                        400,
                        format!(
                            "the channel has its maximum of {} presence members",
                            self.members_max
                        ),
                    ));
                }
                event.action = presence_action::ENTER;
                c.members.push(event.clone());
            }
        }
        c.broadcast(&event);
        if c.is_unused() {
            all.remove(channel);
        }
        Ok(())
    }

    /// Removes every member `connection_id` entered on `channel`,
    /// broadcasting a LEAVE for each (implicit leave). The LEAVE's id does
    /// not start with the connection id, so clients order it by timestamp
    /// (RTP2b1).
    pub fn leave_connection(&self, channel: &str, connection_id: &str, now_ms: u64) {
        let mut all = self.channels.lock();
        let Some(c) = all.get_mut(channel) else {
            return;
        };
        let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut c.members)
            .into_iter()
            .partition(|m| m.connection_id.as_deref() == Some(connection_id));
        c.members = kept;
        for (i, mut m) in gone.into_iter().enumerate() {
            m.action = presence_action::LEAVE;
            m.id = Some(format!("leave-{connection_id}:{now_ms}:{i}"));
            m.timestamp = Some(now_ms);
            c.broadcast(&m);
        }
        if c.is_unused() {
            all.remove(channel);
        }
    }

    /// Channels with presence state (members or watchers), for tests and
    /// metrics.
    pub fn channel_count(&self) -> usize {
        self.channels.lock().len()
    }
}

fn present(m: &PresenceMessage) -> PresenceMessage {
    PresenceMessage {
        action: presence_action::PRESENT,
        ..m.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(action: u8, client: &str, conn: &str) -> PresenceMessage {
        PresenceMessage {
            action,
            client_id: Some(client.into()),
            connection_id: Some(conn.into()),
            id: Some(format!("{conn}:0:0")),
            ..PresenceMessage::default()
        }
    }

    #[test]
    fn enter_update_leave_reach_watchers_including_the_sender() {
        let p = Presence::new(10);
        let mb = Mailbox::new(Arc::new(ConnLink::new(1)), 100);
        assert!(p.watch("room", "c1", "[?x=1]room", &mb).is_empty());
        p.apply("room", ev(presence_action::ENTER, "alice", "c1"))
            .unwrap();
        p.apply("room", ev(presence_action::ENTER, "alice", "c1"))
            .unwrap();
        p.apply("room", ev(presence_action::UPDATE, "bob", "c2"))
            .unwrap();
        assert_eq!(p.members("room").len(), 2);
        assert!(
            p.members("room")
                .iter()
                .all(|m| m.action == presence_action::PRESENT)
        );
        p.apply("room", ev(presence_action::LEAVE, "alice", "c1"))
            .unwrap();
        p.apply("room", ev(presence_action::LEAVE, "nobody", "c1"))
            .unwrap();
        let got: Vec<(String, u8)> = mb
            .take()
            .into_iter()
            .map(|(c, e)| (c.to_string(), e.action))
            .collect();
        assert_eq!(
            got,
            vec![
                ("[?x=1]room".to_owned(), presence_action::ENTER),
                ("[?x=1]room".to_owned(), presence_action::UPDATE),
                ("[?x=1]room".to_owned(), presence_action::ENTER),
                ("[?x=1]room".to_owned(), presence_action::LEAVE),
            ]
        );
    }

    #[test]
    fn implicit_leave_and_cleanup() {
        let p = Presence::new(10);
        p.apply("room", ev(presence_action::ENTER, "a", "c1"))
            .unwrap();
        p.apply("room", ev(presence_action::ENTER, "b", "c1"))
            .unwrap();
        p.apply("room", ev(presence_action::ENTER, "a", "c2"))
            .unwrap();
        let mb = Mailbox::new(Arc::new(ConnLink::new(1)), 100);
        assert_eq!(p.watch("room", "c3", "room", &mb).len(), 3);
        p.leave_connection("room", "c1", 5);
        let leaves = mb.take();
        assert_eq!(leaves.len(), 2);
        assert!(
            leaves
                .iter()
                .all(|(_, e)| e.action == presence_action::LEAVE
                    && !e.id.as_deref().unwrap_or("").starts_with("c1"))
        );
        assert_eq!(p.members("room").len(), 1);
        p.leave_connection("room", "c2", 6);
        p.unwatch("room", "c3", "room");
        assert_eq!(p.channel_count(), 0);
    }

    #[test]
    fn member_limit_is_91003_and_mailbox_overflow_is_flagged() {
        let p = Presence::new(1);
        let mb = Mailbox::new(Arc::new(ConnLink::new(1)), 1);
        p.watch("room", "w", "room", &mb);
        p.apply("room", ev(presence_action::ENTER, "a", "c1"))
            .unwrap();
        let e = p
            .apply("room", ev(presence_action::ENTER, "b", "c1"))
            .unwrap_err();
        assert_eq!(e.code, 91003);
        assert!(!mb.overflowed());
        p.apply("room", ev(presence_action::UPDATE, "a", "c1"))
            .unwrap();
        assert!(mb.overflowed());
    }
}
