//! The subscription index: a trie over filter levels.
//!
//! Each node is one level of a filter; `+` and `#` are ordinary keys that
//! lookups try besides the exact level. A node holds the plain
//! subscriptions of the sessions whose filter ends there, and the shared
//! groups (`$share/group/...`) whose filter ends there.
//!
//! Lookups walk the name level by level with no allocation besides the
//! output vector; the index sits behind the hub's `RwLock`, so publishers
//! share it and only (rare) subscription changes take it exclusively.

use crate::topic::{TrieMap as HashMap, split_level as split};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::session::{SessionHandle, SubOptions};

/// One session's subscription at a node.
#[derive(Debug, Clone)]
pub struct Subscriber {
    pub session: Arc<SessionHandle>,
    pub opts: SubOptions,
}

/// Members of one shared subscription group on one filter.
#[derive(Debug, Default)]
struct SharedGroup {
    members: Vec<Subscriber>,
    /// Round-robin cursor.
    next: AtomicUsize,
}

impl SharedGroup {
    /// Picks the next member round-robin, preferring connected sessions;
    /// if none is connected, the next one in turn (its queue keeps it).
    fn pick(&self) -> Option<&Subscriber> {
        let n = self.members.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..n {
            let m = &self.members[(start + i) % n];
            if m.session.is_connected() {
                if i > 0 {
                    self.next.fetch_add(i, Ordering::Relaxed);
                }
                return Some(m);
            }
        }
        self.members.get(start % n)
    }
}

#[derive(Debug, Default)]
struct Node {
    children: HashMap<Box<str>, Node>,
    subs: HashMap<u64, Subscriber>,
    shared: HashMap<Box<str>, SharedGroup>,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.children.is_empty() && self.subs.is_empty() && self.shared.is_empty()
    }

    fn add_all(&self, out: &mut Vec<Subscriber>) {
        out.extend(self.subs.values().cloned());
        for g in self.shared.values() {
            if let Some(m) = g.pick() {
                out.push(m.clone());
            }
        }
    }
}

/// The subscription index.
#[derive(Debug, Default)]
pub struct SubscriptionIndex {
    root: Node,
    count: usize,
}

impl SubscriptionIndex {
    /// Number of subscriptions (each shared-group membership counts one).
    pub fn len(&self) -> usize {
        self.count
    }

    /// True if there are no subscriptions.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Filters that have subscribers, with how many (shared-group members
    /// included), depth first; at most `limit`, only those starting with
    /// `prefix`.
    pub fn filters(&self, prefix: &str, limit: usize) -> Vec<(String, usize)> {
        fn walk(
            node: &Node,
            depth: usize,
            path: &mut String,
            prefix: &str,
            limit: usize,
            out: &mut Vec<(String, usize)>,
        ) {
            for (level, child) in node.children.iter() {
                if out.len() >= limit {
                    return;
                }
                let len = path.len();
                if depth > 0 {
                    path.push('/');
                }
                path.push_str(level);
                // Prune branches that cannot lead to the prefix.
                let comparable = path.len().min(prefix.len());
                if path.as_bytes()[..comparable] == prefix.as_bytes()[..comparable] {
                    let n = child.subs.len()
                        + child
                            .shared
                            .values()
                            .map(|g| g.members.len())
                            .sum::<usize>();
                    if n > 0 && path.starts_with(prefix) {
                        out.push((path.clone(), n));
                    }
                    walk(child, depth + 1, path, prefix, limit, out);
                }
                path.truncate(len);
            }
        }
        let mut out = Vec::new();
        let mut path = String::new();
        walk(&self.root, 0, &mut path, prefix, limit, &mut out);
        out.truncate(limit);
        out
    }

    /// Adds or replaces `session`'s subscription to `filter` (in `group`
    /// if shared). Returns true if it replaced an existing one.
    pub fn insert(&mut self, filter: &str, group: Option<&str>, sub: Subscriber) -> bool {
        let mut node = &mut self.root;
        let mut rest = Some(filter);
        while let Some(r) = rest {
            let (level, next) = split(r);
            node = node.children.entry(level.into()).or_default();
            rest = next;
        }
        let existed = match group {
            None => node.subs.insert(sub.session.id, sub).is_some(),
            Some(g) => {
                let grp = node.shared.entry(g.into()).or_default();
                if let Some(m) = grp
                    .members
                    .iter_mut()
                    .find(|m| m.session.id == sub.session.id)
                {
                    *m = sub;
                    true
                } else {
                    grp.members.push(sub);
                    false
                }
            }
        };
        if !existed {
            self.count += 1;
        }
        existed
    }

    /// Removes `session_id`'s subscription to `filter`. Returns true if
    /// there was one.
    pub fn remove(&mut self, filter: &str, group: Option<&str>, session_id: u64) -> bool {
        let removed = Self::remove_in(&mut self.root, Some(filter), group, session_id);
        if removed {
            self.count -= 1;
        }
        removed
    }

    fn remove_in(node: &mut Node, rest: Option<&str>, group: Option<&str>, sid: u64) -> bool {
        match rest {
            None => match group {
                None => node.subs.remove(&sid).is_some(),
                Some(g) => {
                    let Some(grp) = node.shared.get_mut(g) else {
                        return false;
                    };
                    let before = grp.members.len();
                    grp.members.retain(|m| m.session.id != sid);
                    let removed = grp.members.len() != before;
                    if grp.members.is_empty() {
                        node.shared.remove(g);
                    }
                    removed
                }
            },
            Some(r) => {
                let (level, next) = split(r);
                let Some(child) = node.children.get_mut(level) else {
                    return false;
                };
                let removed = Self::remove_in(child, next, group, sid);
                if child.is_empty() {
                    node.children.remove(level);
                }
                removed
            }
        }
    }

    /// Appends every subscription matching the channel `name` to `out`:
    /// all plain subscribers, and one member per shared group.
    pub fn lookup(&self, name: &str, out: &mut Vec<Subscriber>) {
        let dollar = name.starts_with('$');
        Self::lookup_in(&self.root, Some(name), true, dollar, out);
    }

    fn lookup_in(
        node: &Node,
        rest: Option<&str>,
        at_root: bool,
        dollar: bool,
        out: &mut Vec<Subscriber>,
    ) {
        // [MQTT-4.7.2-1]: wildcards at the first level do not match `$` names.
        let wild_ok = !(at_root && dollar);
        if wild_ok && let Some(h) = node.children.get("#") {
            // `a/#` also matches `a` [MQTT-4.7.1-2].
            h.add_all(out);
        }
        let Some(r) = rest else {
            node.add_all(out);
            return;
        };
        let (level, next) = split(r);
        if let Some(c) = node.children.get(level) {
            Self::lookup_in(c, next, false, dollar, out);
        }
        if wild_ok
            && level != "+"
            && let Some(c) = node.children.get("+")
        {
            Self::lookup_in(c, next, false, dollar, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topic::matches;

    fn sess(id: u64) -> Arc<SessionHandle> {
        Arc::new(SessionHandle::new(id, format!("c{id}").into(), 0))
    }

    fn ids(idx: &SubscriptionIndex, name: &str) -> Vec<u64> {
        let mut out = vec![];
        idx.lookup(name, &mut out);
        let mut v: Vec<u64> = out.iter().map(|s| s.session.id).collect();
        v.sort();
        v
    }

    #[test]
    fn lookup_matches_wildcards_and_parent_of_hash() {
        let mut idx = SubscriptionIndex::default();
        let filters = ["a/b", "a/+", "a/#", "#", "+/b", "$SYS/#", "a/b/c"];
        for (i, f) in filters.iter().enumerate() {
            idx.insert(
                f,
                None,
                Subscriber {
                    session: sess(i as u64),
                    opts: SubOptions::default(),
                },
            );
        }
        assert_eq!(ids(&idx, "a/b"), vec![0, 1, 2, 3, 4]);
        assert_eq!(ids(&idx, "a"), vec![2, 3]);
        assert_eq!(ids(&idx, "$SYS/x"), vec![5]);
        assert_eq!(ids(&idx, "a/b/c"), vec![2, 3, 6]);
        assert!(idx.remove("a/#", None, 2));
        assert!(!idx.remove("a/#", None, 2));
        assert_eq!(ids(&idx, "a"), vec![3]);
        assert_eq!(idx.len(), 6);
    }

    #[test]
    fn filters_lists_subscribed_filters_by_prefix() {
        let mut idx = SubscriptionIndex::default();
        for (i, f) in ["chat:a", "chat:b", "/lead", "s/+/t", "s/1/t"]
            .iter()
            .enumerate()
        {
            idx.insert(
                f,
                None,
                Subscriber {
                    session: sess(i as u64),
                    opts: SubOptions::default(),
                },
            );
        }
        let mut all: Vec<String> = idx.filters("", 100).into_iter().map(|f| f.0).collect();
        all.sort();
        assert_eq!(all, vec!["/lead", "chat:a", "chat:b", "s/+/t", "s/1/t"]);
        let mut chat: Vec<String> = idx.filters("chat:", 100).into_iter().map(|f| f.0).collect();
        chat.sort();
        assert_eq!(chat, vec!["chat:a", "chat:b"]);
        assert_eq!(idx.filters("s/1", 100), vec![("s/1/t".to_owned(), 1)]);
        assert_eq!(idx.filters("", 2).len(), 2);
    }

    #[test]
    fn shared_group_delivers_to_one_member_round_robin() {
        let mut idx = SubscriptionIndex::default();
        for i in 0..2 {
            let s = sess(i);
            s.set_connected(true);
            idx.insert(
                "t/+",
                Some("g"),
                Subscriber {
                    session: s,
                    opts: SubOptions::default(),
                },
            );
        }
        let mut seen = vec![];
        for _ in 0..4 {
            let got = ids(&idx, "t/1");
            assert_eq!(got.len(), 1);
            seen.push(got[0]);
        }
        seen.sort();
        assert_eq!(seen, vec![0, 0, 1, 1]);
        assert!(idx.remove("t/+", Some("g"), 0));
        assert_eq!(ids(&idx, "t/1"), vec![1]);
    }

    proptest::proptest! {
        /// The trie agrees with the reference matcher on every filter/name pair.
        #[test]
        fn index_agrees_with_matches(
            filters in proptest::collection::vec("(a|b|\\+|\\$s)(/(a|b|\\+)){0,2}(/#)?|#", 1..8),
            names in proptest::collection::vec("(a|b|\\$s)(/(a|b)){0,3}", 1..8),
        ) {
            let mut idx = SubscriptionIndex::default();
            for (i, f) in filters.iter().enumerate() {
                idx.insert(f, None, Subscriber { session: sess(i as u64), opts: SubOptions::default() });
            }
            for n in &names {
                let got = ids(&idx, n);
                let mut want: Vec<u64> = filters.iter().enumerate()
                    .filter(|(_, f)| matches(f, n)).map(|(i, _)| i as u64).collect();
                want.sort();
                want.dedup();
                // The same filter twice from different sessions counts twice in both.
                proptest::prop_assert_eq!(got, want);
            }
        }
    }
}
