//! Property tests of the pattern relations and capability algebra: every
//! "yes" that grants access must be right for every channel name.
//!
//! Patterns are built from a few segments (`a b $a * + # a*`, empty) joined
//! by `:` or `/`, and names from a small alphabet (`a b $ * : /`), so that
//! random strings hit the interesting cases (wildcards, separators of
//! both syntaxes, `$` topics). Each property is checked against every name of
//! up to four characters plus random longer ones.

use std::sync::OnceLock;

use proptest::prelude::*;

use crate::capability::{Capability, Op};
use crate::resource::Pattern;
use crate::token::{issue_token, verify_token};
use crate::{ApiKey, AuthLimits, Authenticator, DenyRule, OpSet, Who};

const NAME_ALPHABET: [char; 6] = ['a', 'b', '$', '*', ':', '/'];

/// Every name of 1 to 4 characters over `NAME_ALPHABET` (1554 names).
fn short_names() -> &'static [String] {
    static NAMES: OnceLock<Vec<String>> = OnceLock::new();
    NAMES.get_or_init(|| {
        let mut all = Vec::new();
        let mut layer = vec![String::new()];
        for _ in 0..4 {
            let mut next = Vec::new();
            for prefix in &layer {
                for c in NAME_ALPHABET {
                    let mut name = prefix.clone();
                    name.push(c);
                    next.push(name);
                }
            }
            all.extend(next.iter().cloned());
            layer = next;
        }
        all
    })
}

fn long_name() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(NAME_ALPHABET.to_vec()), 5..10)
        .prop_map(|cs| cs.into_iter().collect())
}

fn names_plus(extra: &[String]) -> impl Iterator<Item = &String> {
    short_names().iter().chain(extra.iter())
}

/// Segments joined by `:` or `/`, sometimes with a qualifier prefix.
fn text() -> impl Strategy<Value = String> {
    let segment =
        prop::sample::select(vec!["a", "b", "$a", "*", "*", "+", "+", "#", "#", "", "a*"]);
    let separator = prop::sample::select(vec![":", "/"]);
    let qualifier = prop::sample::select(vec!["", "", "", "", "", "", "[*]", "[meta]"]);
    (
        qualifier,
        segment.clone(),
        prop::collection::vec((separator, segment), 0..4),
    )
        .prop_map(|(qualifier, first, rest)| {
            let mut text = format!("{qualifier}{first}");
            for (sep, seg) in rest {
                text.push_str(sep);
                text.push_str(seg);
            }
            text
        })
}

fn resource() -> impl Strategy<Value = (String, Pattern)> {
    text().prop_filter_map("valid resource", |t| {
        Pattern::resource(&t).ok().map(|p| (t, p))
    })
}

fn filter() -> impl Strategy<Value = (String, Pattern)> {
    text().prop_filter_map("valid filter", |t| Pattern::filter(&t).ok().map(|p| (t, p)))
}

fn op_names() -> impl Strategy<Value = Vec<&'static str>> {
    prop::sample::subsequence(
        vec!["*", "history", "presence", "publish", "subscribe", "stats"],
        1..4,
    )
}

fn capability() -> impl Strategy<Value = Capability> {
    prop::collection::vec((resource(), op_names()), 0..4).prop_filter_map("parses", |entries| {
        let mut object = serde_json::Map::new();
        for ((text, _), ops) in entries {
            object.insert(text, ops.into());
        }
        Capability::parse(&serde_json::Value::Object(object).to_string()).ok()
    })
}

const OPS: [Op; 4] = [Op::Publish, Op::Subscribe, Op::History, Op::Presence];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// `covers` never says yes wrongly, whatever the two syntaxes.
    #[test]
    fn covers_is_sound((_, outer) in resource(), (_, inner) in prop_oneof![filter(), resource()],
                       extra in prop::collection::vec(long_name(), 8)) {
        if outer.covers(&inner) {
            for name in names_plus(&extra) {
                prop_assert!(!inner.matches(name) || outer.matches(name),
                    "{outer:?} covers {inner:?} but rejects {name:?}");
            }
        }
    }

    /// `overlaps` never says no wrongly.
    #[test]
    fn overlaps_is_sound((_, a) in resource(), (_, b) in prop_oneof![filter(), resource()],
                         extra in prop::collection::vec(long_name(), 8)) {
        if !a.overlaps(&b) {
            for name in names_plus(&extra) {
                prop_assert!(!(a.matches(name) && b.matches(name)),
                    "{a:?} and {b:?} both match {name:?}");
            }
        }
    }

    /// Within one syntax the meet is exact: it matches a name iff both do.
    #[test]
    fn meet_is_exact_within_a_syntax((_, a) in resource(), (_, b) in resource(),
                                     extra in prop::collection::vec(long_name(), 8)) {
        let same_syntax = matches!((&a, &b), (Pattern::Mqtt(_), Pattern::Mqtt(_)) | (Pattern::Ably(_), Pattern::Ably(_)));
        if same_syntax {
            let meet = a.meet(&b);
            for name in names_plus(&extra) {
                let both = a.matches(name) && b.matches(name);
                let m = meet.as_ref().is_some_and(|m| m.matches(name));
                prop_assert_eq!(both, m, "{:?} meet {:?} = {:?} on {:?}", a, b, meet, name);
            }
        }
    }

    /// A filter a capability allows never matches a channel it refuses.
    #[test]
    fn allowed_filters_only_reach_allowed_channels(cap in capability(), (f, pattern) in filter(),
                                                   extra in prop::collection::vec(long_name(), 8)) {
        if cap.allows_subscribe_filter(&f) {
            for name in names_plus(&extra) {
                prop_assert!(!pattern.matches(name) || cap.allows(&Op::Subscribe, name),
                    "{cap} allows filter {f:?} but not channel {name:?}");
            }
        }
    }

    /// An intersection allows nothing either side refuses.
    #[test]
    fn intersection_is_within_both(a in capability(), b in capability(),
                                   extra in prop::collection::vec(long_name(), 4)) {
        let both = a.intersect(&b);
        for name in names_plus(&extra) {
            for op in &OPS {
                if both.allows(op, name) {
                    prop_assert!(a.allows(op, name) && b.allows(op, name),
                        "{a} ∩ {b} = {both} allows {op} on {name:?}");
                }
            }
        }
    }

    /// Intersecting with `{"*":["*"]}` or with itself changes nothing a
    /// capability allows.
    #[test]
    fn intersection_identities(cap in capability()) {
        let all = Capability::all();
        let with_all = cap.intersect(&all);
        let with_self = cap.intersect(&cap);
        for name in short_names() {
            for op in &OPS {
                prop_assert_eq!(with_all.allows(op, name), cap.allows(op, name));
                prop_assert_eq!(with_self.allows(op, name), cap.allows(op, name));
            }
        }
    }

    /// The canonical form re-parses to itself.
    #[test]
    fn canonical_is_a_fixed_point(cap in capability()) {
        let again = Capability::parse(cap.canonical());
        prop_assert!(again.is_ok());
        let again = again.unwrap_or_else(|_| Capability::none());
        prop_assert_eq!(again.canonical(), cap.canonical());
        for name in short_names().iter().take(300) {
            for op in &OPS {
                prop_assert_eq!(again.allows(op, name), cap.allows(op, name));
            }
        }
    }

    /// A token carries its capability and client id unchanged.
    #[test]
    fn tokens_round_trip(cap in capability(), client in proptest::option::of("[a-z0-9é:*]{1,12}"),
                         ttl in 1u64..86_400_000, now in 0u64..4_000_000_000_000) {
        let key = ApiKey::parse("app.key:secret").map_err(|e| TestCaseError::fail(e.to_string()))?;
        let details = issue_token(&key, ttl, &cap, client.as_deref(), now);
        let verified = verify_token(&details.token, |_| Some(&key), now, 0)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(verified.capability, cap);
        prop_assert_eq!(verified.client_id, client);
        prop_assert_eq!(verified.expires_ms, now + ttl);
    }

    /// With a deny rule, no allowed subscription can receive a denied channel.
    #[test]
    fn deny_rules_are_never_bypassed_by_wildcards((d, deny_pattern) in resource(), (f, pattern) in filter()) {
        let auth = Authenticator::new(AuthLimits::default())
            .map_err(|e| TestCaseError::fail(e.to_string()))?
            .with_deny_rules([DenyRule::new(Who::Anyone, OpSet::from_ops([Op::Subscribe]), &d)
                .map_err(|e| TestCaseError::fail(e.to_string()))?]);
        let anyone = auth.anonymous(std::sync::Arc::new(Capability::all()));
        if auth.check_subscribe_filter(&anyone, &f) {
            for name in short_names() {
                prop_assert!(!(pattern.matches(name) && deny_pattern.matches(name)),
                    "subscription {f:?} allowed despite deny {d:?}, reaching {name:?}");
            }
        }
    }
}
