//! Connection state kept for `resume` (RTN15c6): when a connection is lost
//! without CLOSE (the socket went, DISCONNECT, DISCONNECTED from the
//! server), its identity, the answers to its last msgSerials and the
//! channels it had attached are parked under its connectionKey for
//! `connection_state_ttl`. A reconnect with `resume=<connectionKey>` takes
//! them back and continues as the same connection.
//!
//! Bounded: at most `resume_states_max` parked states (the oldest is
//! forgotten first), each with at most `channels_per_connection_max`
//! channels and [`RECENT_ANSWERS_MAX`] answers.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tern_hub::{ConnLink, KickReason};

use crate::message::{ErrorInfo, PublishResult};

/// Answers kept for msgSerials a client may send again after a resume.
pub const RECENT_ANSWERS_MAX: usize = 256;

/// How long a resume waits for the connection it replaces to let go of
/// its state.
const TAKEOVER_WAIT: Duration = Duration::from_secs(2);

/// The answer given to one msgSerial.
#[derive(Debug, Clone)]
pub enum Answer {
    Ack(Option<PublishResult>),
    Nack(ErrorInfo),
}

/// The msgSerials a connection has answered (RTN19a: a resent one is
/// answered again, not processed twice).
#[derive(Debug, Clone)]
pub struct Answers {
    /// Highest msgSerial answered; -1 before the first.
    pub high: i64,
    /// The last answers, oldest first (bounded).
    recent: VecDeque<(i64, Answer)>,
}

impl Default for Answers {
    fn default() -> Self {
        Answers {
            high: -1,
            recent: VecDeque::new(),
        }
    }
}

impl Answers {
    /// Records the answer to `serial`.
    pub fn record(&mut self, serial: i64, a: Answer) {
        self.high = self.high.max(serial);
        if self.recent.len() >= RECENT_ANSWERS_MAX {
            self.recent.pop_front();
        }
        self.recent.push_back((serial, a));
    }

    /// The answer given to `serial`, if still known.
    pub fn get(&self, serial: i64) -> Option<&Answer> {
        self.recent
            .iter()
            .rev()
            .find(|(s, _)| *s == serial)
            .map(|(_, a)| a)
    }
}

/// The presence channels of a lost connection, until its implicit LEAVE
/// runs (then `None`) or a resume takes them back.
pub type PendingLeave = Arc<Mutex<Option<HashSet<String>>>>;

/// The state of a lost connection.
#[derive(Debug)]
pub struct Parked {
    pub connection_id: String,
    /// The clientId it was identified as: a resume must present the same.
    pub client_id: Option<String>,
    pub answers: Answers,
    /// Channel string → hub channel, of every attachment it had.
    pub attached: HashMap<String, String>,
    /// Hub channels it had presence members on when it was lost.
    pub entered: HashSet<String>,
    /// Those still waiting for their implicit leave.
    pub pending_leave: PendingLeave,
    /// When it was lost.
    pub lost_at: Instant,
    /// Identifies this parking (an older one under the same key may sit
    /// in the expiry order).
    generation: u64,
}

impl Parked {
    pub fn new(
        connection_id: String,
        client_id: Option<String>,
        answers: Answers,
        attached: HashMap<String, String>,
        entered: HashSet<String>,
        pending_leave: PendingLeave,
    ) -> Parked {
        Parked {
            connection_id,
            client_id,
            answers,
            attached,
            entered,
            pending_leave,
            lost_at: Instant::now(),
            generation: 0,
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// connectionKey → the link of the live connection holding it.
    live: HashMap<String, Arc<ConnLink>>,
    /// connectionKey → parked state.
    parked: HashMap<String, Parked>,
    /// (parked at, key, generation), oldest first: expiry and eviction.
    order: VecDeque<(Instant, String, u64)>,
    generations: u64,
}

/// Every live connection's key and every parked state.
#[derive(Debug)]
pub struct Resumes {
    inner: Mutex<Inner>,
    ttl: Duration,
    max: usize,
}

/// What a `resume` key leads to.
enum Found {
    Parked(Box<Parked>),
    Live(Arc<ConnLink>),
    Nothing,
}

impl Resumes {
    pub fn new(ttl: Duration, max: usize) -> Resumes {
        Resumes {
            inner: Mutex::new(Inner::default()),
            ttl,
            max,
        }
    }

    /// Number of parked states.
    pub fn parked(&self) -> usize {
        self.inner.lock().parked.len()
    }

    /// A live connection now holds `key`.
    pub fn register(&self, key: &str, link: Arc<ConnLink>) {
        self.inner.lock().live.insert(key.to_owned(), link);
    }

    /// The connection holding `key` (through `link`) ended for good.
    pub fn forget(&self, key: &str, link: &ConnLink) {
        let mut g = self.inner.lock();
        if g.live.get(key).is_some_and(|l| l.id == link.id) {
            g.live.remove(key);
        }
    }

    /// The connection holding `key` (through `link`) was lost: keeps its
    /// state for the TTL. Nothing is kept with a zero TTL or bound.
    pub fn park(&self, key: &str, link: &ConnLink, mut p: Parked) {
        let now = Instant::now();
        let mut g = self.inner.lock();
        if g.live.get(key).is_some_and(|l| l.id == link.id) {
            g.live.remove(key);
        }
        if self.ttl.is_zero() || self.max == 0 {
            return;
        }
        Self::expire(&mut g, now, self.ttl);
        while g.parked.len() >= self.max {
            let Some((_, k, gen_)) = g.order.pop_front() else {
                break;
            };
            if g.parked.get(&k).is_some_and(|p| p.generation == gen_) {
                g.parked.remove(&k);
            }
        }
        g.generations += 1;
        p.generation = g.generations;
        g.order.push_back((now, key.to_owned(), p.generation));
        g.parked.insert(key.to_owned(), p);
        if g.order.len() > 2 * self.max.max(16) {
            // Entries of states taken back since.
            let Inner { order, parked, .. } = &mut *g;
            order.retain(|(_, k, gen_)| parked.get(k).is_some_and(|p| p.generation == *gen_));
        }
    }

    fn expire(g: &mut Inner, now: Instant, ttl: Duration) {
        while let Some((at, _, _)) = g.order.front() {
            if now.saturating_duration_since(*at) < ttl {
                break;
            }
            if let Some((_, k, gen_)) = g.order.pop_front()
                && g.parked.get(&k).is_some_and(|p| p.generation == gen_)
            {
                g.parked.remove(&k);
            }
        }
    }

    fn find(&self, key: &str) -> Found {
        let mut g = self.inner.lock();
        Self::expire(&mut g, Instant::now(), self.ttl);
        if let Some(p) = g.parked.remove(key) {
            return Found::Parked(Box::new(p));
        }
        match g.live.get(key) {
            Some(l) => Found::Live(l.clone()),
            None => Found::Nothing,
        }
    }

    /// Takes the state parked under `key`. When a connection still holds
    /// it (the client reconnected before the server saw the old socket
    /// go), that connection is ended and its state taken once parked
    /// (within a bounded wait).
    pub async fn claim(&self, key: &str) -> Option<Parked> {
        let deadline = Instant::now() + TAKEOVER_WAIT;
        let mut kicked = false;
        loop {
            match self.find(key) {
                Found::Parked(p) => return Some(*p),
                Found::Nothing => return None,
                Found::Live(link) => {
                    if !kicked {
                        link.kick(KickReason::TakenOver);
                        kicked = true;
                    }
                    if Instant::now() >= deadline {
                        return None;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parked(id: &str) -> Parked {
        Parked::new(
            id.into(),
            None,
            Answers::default(),
            HashMap::new(),
            HashSet::new(),
            Arc::new(Mutex::new(None)),
        )
    }

    #[tokio::test]
    async fn park_claim_bound_and_expiry() {
        let r = Resumes::new(Duration::from_secs(60), 2);
        let link = Arc::new(ConnLink::new(1));
        r.register("k1", link.clone());
        r.park("k1", &link, parked("c1"));
        r.park("k2", &link, parked("c2"));
        r.park("k3", &link, parked("c3"));
        assert_eq!(r.parked(), 2, "the oldest is forgotten");
        assert!(r.claim("k1").await.is_none());
        assert_eq!(
            r.claim("k3").await.map(|p| p.connection_id),
            Some("c3".into())
        );
        assert!(r.claim("k3").await.is_none(), "taken once");

        let r = Resumes::new(Duration::from_millis(1), 10);
        r.park("k", &link, parked("c"));
        std::thread::sleep(Duration::from_millis(5));
        assert!(r.claim("k").await.is_none(), "expired");
    }

    #[tokio::test]
    async fn a_live_holder_is_kicked_and_its_state_taken() {
        let r = Arc::new(Resumes::new(Duration::from_secs(60), 10));
        let link = Arc::new(ConnLink::new(7));
        r.register("k", link.clone());
        let (r2, l2) = (r.clone(), link.clone());
        tokio::spawn(async move {
            l2.woken().await;
            assert_eq!(l2.kicked(), KickReason::TakenOver);
            r2.park("k", &l2, parked("c"));
        });
        assert_eq!(
            r.claim("k").await.map(|p| p.connection_id),
            Some("c".into())
        );
    }

    #[test]
    fn answers_are_bounded() {
        let mut a = Answers::default();
        for s in 0..(RECENT_ANSWERS_MAX as i64 + 10) {
            a.record(s, Answer::Ack(None));
        }
        assert_eq!(a.high, RECENT_ANSWERS_MAX as i64 + 9);
        assert!(a.get(0).is_none());
        assert!(a.get(a.high).is_some());
    }
}
