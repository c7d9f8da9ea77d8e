//! The memory of TokenRequest nonces that stops a signed request from being
//! exchanged twice.
//!
//! A request with timestamp `t` is accepted only while the server clock is
//! within `t ± window`, so its nonce need only be remembered until
//! `t + window`; after that a replay is refused by the timestamp check. The
//! cache holds at most `entries_max` nonces and, when full of unexpired ones,
//! refuses new requests ([`AuthError::NonceCacheFull`]) rather than grow or
//! forget a nonce that could still be replayed.
//!
//! Only requests whose `mac` verified are recorded, so only key holders can
//! fill it. Each entry is a SHA-256 of the key name and nonce (fixed size,
//! whatever the nonce's length). Single-node: another cluster node keeps its
//! own memory, so a request replayed to a different node within the window is
//! not caught (TODO: share through the cluster backplane; risk: a captured
//! TokenRequest can be exchanged once per node within 2 minutes).

use std::collections::{BTreeSet, HashMap};

use crate::crypto;
use crate::error::AuthError;

/// Bounded, time-evicted set of (key name, nonce) pairs.
#[derive(Debug)]
pub struct NonceCache {
    /// The most entries held at once.
    entries_max: usize,
    /// Digest of (key name, nonce) → the time after which it is forgotten.
    seen: HashMap<[u8; 32], u64>,
    /// The same entries ordered by that time, to evict the oldest first.
    by_forget_time: BTreeSet<(u64, [u8; 32])>,
}

impl NonceCache {
    /// An empty cache holding at most `entries_max` nonces.
    pub fn new(entries_max: usize) -> NonceCache {
        NonceCache {
            entries_max,
            seen: HashMap::new(),
            by_forget_time: BTreeSet::new(),
        }
    }

    /// How many nonces are remembered now.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether no nonce is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Records that `key_name` used `nonce`, to be remembered until
    /// `forget_at_ms`. Refuses a nonce already recorded for this key
    /// ([`AuthError::NonceReused`]) and, when the cache is full after
    /// forgetting everything past its time, any new nonce
    /// ([`AuthError::NonceCacheFull`]).
    pub fn insert(
        &mut self,
        key_name: &str,
        nonce: &str,
        forget_at_ms: u64,
        now_ms: u64,
    ) -> Result<(), AuthError> {
        self.evict(now_ms);
        let digest = crypto::sha256(&[key_name.as_bytes(), b"\n", nonce.as_bytes()]);
        if self.seen.contains_key(&digest) {
            return Err(AuthError::NonceReused);
        }
        if self.seen.len() >= self.entries_max {
            return Err(AuthError::NonceCacheFull {
                entries_max: self.entries_max,
            });
        }
        self.seen.insert(digest, forget_at_ms);
        self.by_forget_time.insert((forget_at_ms, digest));
        Ok(())
    }

    /// Forgets every nonce whose time has passed.
    fn evict(&mut self, now_ms: u64) {
        while let Some(&(forget_at, digest)) = self.by_forget_time.first() {
            if forget_at >= now_ms {
                break;
            }
            self.by_forget_time.pop_first();
            self.seen.remove(&digest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_reuse_for_the_same_key_only() {
        let mut cache = NonceCache::new(10);
        assert_eq!(cache.insert("a.k", "nonce-0123456789", 100, 0), Ok(()));
        assert_eq!(
            cache.insert("a.k", "nonce-0123456789", 100, 1),
            Err(AuthError::NonceReused)
        );
        assert_eq!(cache.insert("a.other", "nonce-0123456789", 100, 1), Ok(()));
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn forgets_after_the_window() {
        let mut cache = NonceCache::new(10);
        assert_eq!(cache.insert("a.k", "n", 100, 0), Ok(()));
        // Still remembered at its forget time...
        assert_eq!(
            cache.insert("a.k", "n", 200, 100),
            Err(AuthError::NonceReused)
        );
        // ...and forgotten after it.
        assert_eq!(cache.insert("a.k", "n", 201, 101), Ok(()));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn full_cache_refuses_rather_than_grows() {
        let mut cache = NonceCache::new(3);
        for (i, forget_at) in [50, 100, 150].into_iter().enumerate() {
            assert_eq!(cache.insert("a.k", &format!("n{i}"), forget_at, 0), Ok(()));
        }
        assert_eq!(
            cache.insert("a.k", "n3", 200, 10),
            Err(AuthError::NonceCacheFull { entries_max: 3 })
        );
        assert_eq!(cache.len(), 3);
        // Once the earliest is past its time, there is room again.
        assert_eq!(cache.insert("a.k", "n3", 200, 51), Ok(()));
        assert_eq!(cache.len(), 3);
        // A full cache still reports reuse as reuse.
        assert_eq!(
            cache.insert("a.k", "n3", 200, 52),
            Err(AuthError::NonceReused)
        );
    }
}
