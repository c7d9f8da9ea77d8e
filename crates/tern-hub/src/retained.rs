//! Retained messages, indexed by channel-name level so that a wildcard
//! subscription visits only the branches its filter can match instead of
//! every retained message.

use crate::topic::{TrieMap as HashMap, split_level as split};
use std::sync::Arc;

use crate::message::Message;

#[derive(Debug, Default)]
struct Node {
    children: HashMap<Box<str>, Node>,
    msg: Option<Arc<Message>>,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.msg.is_none() && self.children.is_empty()
    }

    fn collect_all(&self, out: &mut Vec<Arc<Message>>) {
        if let Some(m) = &self.msg {
            out.push(m.clone());
        }
        for c in self.children.values() {
            c.collect_all(out);
        }
    }
}

/// The retained store: at most one message per channel name.
#[derive(Debug, Default)]
pub struct RetainedStore {
    root: Node,
    count: usize,
}

impl RetainedStore {
    /// Number of retained messages.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True if nothing is retained.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// True if `name` has a retained message.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// The retained message of `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Message>> {
        let mut node = &self.root;
        let mut rest = Some(name);
        while let Some(r) = rest {
            let (level, next) = split(r);
            node = node.children.get(level)?;
            rest = next;
        }
        node.msg.as_ref()
    }

    /// Sets the retained message of its channel, replacing any earlier one.
    pub fn insert(&mut self, msg: Arc<Message>) {
        let mut node = &mut self.root;
        let mut rest = Some(&*msg.topic);
        while let Some(r) = rest {
            let (level, next) = split(r);
            node = node.children.entry(level.into()).or_default();
            rest = next;
        }
        if node.msg.replace(msg).is_none() {
            self.count += 1;
        }
    }

    /// Clears the retained message of `name`; true if there was one.
    pub fn remove(&mut self, name: &str) -> bool {
        let removed = Self::remove_in(&mut self.root, Some(name));
        if removed {
            self.count -= 1;
        }
        removed
    }

    fn remove_in(node: &mut Node, rest: Option<&str>) -> bool {
        match rest {
            None => node.msg.take().is_some(),
            Some(r) => {
                let (level, next) = split(r);
                let Some(child) = node.children.get_mut(level) else {
                    return false;
                };
                let removed = Self::remove_in(child, next);
                if child.is_empty() {
                    node.children.remove(level);
                }
                removed
            }
        }
    }

    /// Appends every retained message whose name `filter` matches.
    pub fn matching(&self, filter: &str, out: &mut Vec<Arc<Message>>) {
        Self::match_in(&self.root, Some(filter), true, out);
    }

    fn match_in(node: &Node, rest: Option<&str>, at_root: bool, out: &mut Vec<Arc<Message>>) {
        let Some(r) = rest else {
            if let Some(m) = &node.msg {
                out.push(m.clone());
            }
            return;
        };
        let (level, next) = split(r);
        match level {
            "#" => {
                // `#` matches the parent level too [MQTT-4.7.1-2].
                if let Some(m) = &node.msg
                    && !at_root
                {
                    out.push(m.clone());
                }
                for (name, c) in &node.children {
                    // [MQTT-4.7.2-1]: no `$` names under a leading wildcard.
                    if !(at_root && name.starts_with('$')) {
                        c.collect_all(out);
                    }
                }
            }
            "+" => {
                for (name, c) in &node.children {
                    if !(at_root && name.starts_with('$')) {
                        Self::match_in(c, next, false, out);
                    }
                }
            }
            exact => {
                if let Some(c) = node.children.get(exact) {
                    Self::match_in(c, next, false, out);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topic::matches;

    fn m(topic: &str) -> Arc<Message> {
        Arc::new(Message::new(topic, "x", 0))
    }

    fn names(s: &RetainedStore, filter: &str) -> Vec<String> {
        let mut out = vec![];
        s.matching(filter, &mut out);
        let mut v: Vec<String> = out.iter().map(|m| m.topic.to_string()).collect();
        v.sort();
        v
    }

    #[test]
    fn wildcards_and_dollar_rule() {
        let mut s = RetainedStore::default();
        for t in ["a", "a/b", "a/b/c", "$SYS/x", "b", "/a"] {
            s.insert(m(t));
        }
        assert_eq!(names(&s, "a/#"), vec!["a", "a/b", "a/b/c"]);
        assert_eq!(names(&s, "#"), vec!["/a", "a", "a/b", "a/b/c", "b"]);
        assert_eq!(names(&s, "+"), vec!["a", "b"]);
        assert_eq!(names(&s, "$SYS/#"), vec!["$SYS/x"]);
        assert_eq!(names(&s, "+/+"), vec!["/a", "a/b"]);
        assert!(s.remove("a/b"));
        assert!(!s.remove("a/b"));
        assert_eq!(names(&s, "a/#"), vec!["a", "a/b/c"]);
        assert_eq!(s.len(), 5);
    }

    proptest::proptest! {
        /// The index returns exactly what the reference matcher selects.
        #[test]
        fn agrees_with_matches(
            topics in proptest::collection::vec("(a|b|\\$s)(/(a|b)){0,3}", 1..10),
            filter in "(a|b|\\+|\\$s)(/(a|b|\\+)){0,2}(/#)?|#",
        ) {
            let mut s = RetainedStore::default();
            for t in &topics {
                s.insert(m(t));
            }
            let mut want: Vec<String> = topics.iter().filter(|t| matches(&filter, t)).cloned().collect();
            want.sort();
            want.dedup();
            proptest::prop_assert_eq!(names(&s, &filter), want);
        }
    }
}
