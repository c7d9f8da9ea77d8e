//! Channel history: which channels keep it and within which bounds, and
//! the read interface a store implements for adapters (REST history,
//! rewind, resume).
//!
//! The hub writes a message to its channel's history (through the
//! journal) when a rule matches the channel; the store keeps at most the
//! rule's message count and drops messages older than its age.

use std::sync::Arc;
use std::time::Duration;

use crate::message::Message;
use crate::topic;

/// One history rule: the channels it covers and the bounds it keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRule {
    /// `*` (every channel), `ns:*` (every channel whose name starts with
    /// `ns:`, an Ably-style namespace) or an MQTT filter (`sensors/#`,
    /// `room/+/chat`, or an exact name).
    pub channels: String,
    /// Most messages kept per channel (oldest dropped first).
    pub messages: u32,
    /// Oldest message kept.
    pub age: Duration,
}

impl HistoryRule {
    /// Whether the rule covers `channel`.
    pub fn covers(&self, channel: &str) -> bool {
        let p = self.channels.as_str();
        if p == "*" {
            return true;
        }
        if let Some(ns) = p.strip_suffix(":*")
            && !ns.contains(['+', '#'])
        {
            return channel.len() > ns.len()
                && channel.starts_with(ns)
                && channel.as_bytes()[ns.len()] == b':';
        }
        topic::matches(p, channel)
    }
}

/// Rules in order; the first that covers a channel applies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryRules {
    pub rules: Vec<HistoryRule>,
}

impl HistoryRules {
    /// The rule for `channel`, if it keeps history.
    pub fn for_channel(&self, channel: &str) -> Option<&HistoryRule> {
        self.rules
            .iter()
            .find(|r| r.covers(channel))
            .filter(|r| r.messages > 0 && !r.age.is_zero())
    }

    /// True when no channel keeps history.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// A history read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryQuery {
    pub channel: String,
    /// Earliest receive time, ms since the Unix epoch (inclusive).
    pub start_ms: Option<u64>,
    /// Latest receive time (inclusive).
    pub end_ms: Option<u64>,
    /// Most messages returned.
    pub limit: usize,
    /// Oldest first (`true`) or newest first (`false`, the default).
    pub forwards: bool,
    /// Continue after this publish sequence number (exclusive), in the
    /// query's direction: the cursor of the previous page.
    pub after_seq: Option<u64>,
}

/// One page of history.
#[derive(Debug, Default)]
pub struct HistoryPage {
    pub messages: Vec<Arc<Message>>,
    /// Cursor for the next page (`HistoryQuery::after_seq`), when more
    /// messages may follow.
    pub next: Option<u64>,
}

/// Read access to channel history (implemented by the durable store).
pub trait HistoryStore: Send + Sync + std::fmt::Debug {
    /// Reads one page.
    fn query(&self, q: &HistoryQuery) -> Result<HistoryPage, String>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(c: &str) -> HistoryRule {
        HistoryRule {
            channels: c.into(),
            messages: 10,
            age: Duration::from_secs(60),
        }
    }

    #[test]
    fn rules_cover_namespaces_filters_and_everything() {
        assert!(rule("*").covers("anything/at:all"));
        assert!(rule("chat:*").covers("chat:lobby"));
        assert!(!rule("chat:*").covers("chatter:lobby"));
        assert!(!rule("chat:*").covers("chat"));
        assert!(rule("sensors/#").covers("sensors/1/temp"));
        assert!(rule("room/+/chat").covers("room/1/chat"));
        assert!(!rule("room/+/chat").covers("room/1/2/chat"));
        assert!(rule("exact").covers("exact"));
        assert!(!rule("exact").covers("exactly"));
    }

    #[test]
    fn first_matching_rule_wins_and_zero_bounds_mean_none() {
        let rules = HistoryRules {
            rules: vec![
                HistoryRule {
                    messages: 0,
                    ..rule("private:*")
                },
                rule("*"),
            ],
        };
        assert!(rules.for_channel("private:x").is_none());
        assert!(rules.for_channel("public").is_some());
    }
}
