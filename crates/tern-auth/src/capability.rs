//! Capabilities: which operations a key or token may perform on which
//! channels, in Ably's JSON form `{"resource": ["publish", "subscribe"]}`.
//!
//! A [`Capability`] is parsed and compiled once; [`Capability::allows`] then
//! only walks compiled resources. Resource syntax (Ably `:`-segment
//! wildcards, MQTT `+`/`#` filters, exact names) is described in
//! [`crate::resource`].
//!
//! # Canonical form
//! [`Capability::canonical`] is the JSON the TokenRequest `mac` and Tern
//! tokens carry: no whitespace; resources sorted; each resource's operations
//! sorted and de-duplicated; strings escaped as `JSON.stringify` escapes them
//! (`"`, `\`, `\b\f\n\r\t`, other control characters as `\u00xx`, everything
//! else — non-ASCII included — as is). Sorting is by byte (code point) order,
//! like Python's `sort_keys`. ably-js sorts by UTF-16 unit and lets
//! `JSON.stringify` put integer-like keys (`"2"`, `"10"`) first, so for
//! resources with characters above U+FFFF or integer-like names its text can
//! differ from ours; a TokenRequest's `mac` is therefore checked against the
//! capability text as received first (see [`crate::token_request`]).
//!
//! # Intersection
//! [`Capability::intersect`] gives what both capabilities allow. For each
//! pair of a resource `r` from `self` and `k` from `other` whose operations
//! intersect (`*` ∩ X = X):
//! - if `k` covers `r` (every channel `r` matches, `k` matches; or the two
//!   resources are the same text), `r` is kept;
//! - else if `r` covers `k`, `k` is kept (so a request for `*` on a key
//!   limited to `chat:*` yields `chat:*`);
//! - else, for two MQTT filters or two Ably patterns, their exact meet is
//!   kept (`+/x` ∩ `a/+` = `a/x`, `a:*:c` ∩ `a:b:*` = `a:b:c`);
//! - else the pair grants nothing (patterns of different syntaxes that only
//!   partly overlap, such as `a/+` and `a/b:*`, whose common channels no
//!   single resource expresses).
//!
//! Entries with the same resource text are merged (union of operations).
//! The result never allows an operation on a channel that one of the two
//! refuses (a property test checks this on generated names).

use std::collections::BTreeSet;
use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::resource::{Pattern, Resource, ResourceRule, strip_shared};

/// Longest capability JSON accepted, in bytes. A capability travels inside
/// every token, so it is kept small.
pub const CAPABILITY_JSON_BYTES_MAX: usize = 16 * 1024;

/// Most resources one capability may name (each check walks them all).
pub const CAPABILITY_RESOURCES_MAX: usize = 256;

/// Ably operations Tern accepts in a capability but does not check yet:
/// they are kept (and intersected, and written back) as [`Op::Other`].
pub const ABLY_OTHER_OPERATIONS: &[&str] = &[
    "annotation-publish",
    "annotation-subscribe",
    "channel-metadata",
    "message-delete-any",
    "message-delete-own",
    "message-update-any",
    "message-update-own",
    "object-publish",
    "object-subscribe",
    "privileged-headers",
    "push-admin",
    "push-subscribe",
    "stats",
];

/// Why a capability (or a resource in it) is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapabilityError {
    /// The JSON text is longer than [`CAPABILITY_JSON_BYTES_MAX`].
    #[error("capability is {bytes} bytes, more than the {max} allowed")]
    TooLarge {
        /// Length of the text received.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// Not a JSON object mapping resources to arrays of operation strings.
    #[error("capability must be a JSON object of resource to array of operations: {0}")]
    Malformed(String),
    /// More resources than [`CAPABILITY_RESOURCES_MAX`].
    #[error("capability names {count} resources, more than the {max} allowed")]
    TooManyResources {
        /// Resources named.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// The same resource appears twice in the object.
    #[error("capability names resource {0:?} twice")]
    DuplicateResource(String),
    /// A resource breaks a syntax rule.
    #[error("capability resource {resource:?} is invalid: {rule}")]
    InvalidResource {
        /// The resource as written.
        resource: String,
        /// The rule it breaks.
        rule: ResourceRule,
    },
    /// A resource with an empty operation list.
    #[error("capability resource {0:?} lists no operations")]
    NoOperations(String),
    /// An operation string that is neither Tern's nor a known Ably one.
    #[error("unknown capability operation {0:?}")]
    UnknownOperation(String),
}

/// An operation a capability can grant.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// Publish messages to a channel.
    Publish,
    /// Subscribe to a channel (or an MQTT filter covering channels).
    Subscribe,
    /// Read a channel's history.
    History,
    /// Enter, update and leave presence.
    Presence,
    /// Another Ably operation from [`ABLY_OTHER_OPERATIONS`]: accepted and
    /// carried through tokens, but Tern checks it nowhere yet.
    Other(String),
}

impl Op {
    /// Parses an operation name; `*` is not an operation (see [`OpSet`]).
    pub fn parse(name: &str) -> Result<Op, CapabilityError> {
        Ok(match name {
            "publish" => Op::Publish,
            "subscribe" => Op::Subscribe,
            "history" => Op::History,
            "presence" => Op::Presence,
            other if ABLY_OTHER_OPERATIONS.contains(&other) => Op::Other(other.to_owned()),
            other => return Err(CapabilityError::UnknownOperation(other.to_owned())),
        })
    }

    /// The Ably name of the operation.
    pub fn as_str(&self) -> &str {
        match self {
            Op::Publish => "publish",
            Op::Subscribe => "subscribe",
            Op::History => "history",
            Op::Presence => "presence",
            Op::Other(name) => name,
        }
    }

    /// The bit of a core operation in [`OpSet::core`].
    fn bit(&self) -> Option<u8> {
        match self {
            Op::Publish => Some(1),
            Op::Subscribe => Some(2),
            Op::History => Some(4),
            Op::Presence => Some(8),
            Op::Other(_) => None,
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of operations, `*` (all, including ones Ably adds later) included.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpSet {
    /// `*` was granted.
    all: bool,
    /// The core operations named, one bit each (see `Op::bit`).
    core: u8,
    /// The other Ably operations named.
    other: BTreeSet<String>,
}

impl OpSet {
    /// `*`: every operation.
    pub fn all() -> OpSet {
        OpSet {
            all: true,
            ..OpSet::default()
        }
    }

    /// No operation.
    pub fn empty() -> OpSet {
        OpSet::default()
    }

    /// The set of the given operations.
    pub fn from_ops<I: IntoIterator<Item = Op>>(ops: I) -> OpSet {
        let mut set = OpSet::empty();
        for op in ops {
            set.insert(op);
        }
        set
    }

    /// Parses Ably operation names, `*` included.
    pub fn parse<'a, I: IntoIterator<Item = &'a str>>(names: I) -> Result<OpSet, CapabilityError> {
        let mut set = OpSet::empty();
        for name in names {
            if name == "*" {
                set.all = true;
            } else {
                set.insert(Op::parse(name)?);
            }
        }
        Ok(set)
    }

    fn insert(&mut self, op: Op) {
        match (op.bit(), op) {
            (Some(bit), _) => self.core |= bit,
            (None, Op::Other(name)) => {
                self.other.insert(name);
            }
            (None, _) => {}
        }
    }

    /// Whether `op` is in the set (always, for `*`).
    pub fn contains(&self, op: &Op) -> bool {
        self.all
            || match op.bit() {
                Some(bit) => self.core & bit != 0,
                None => self.other.contains(op.as_str()),
            }
    }

    /// Whether the set is `*`.
    pub fn is_all(&self) -> bool {
        self.all
    }

    /// Whether the set grants nothing.
    pub fn is_empty(&self) -> bool {
        !self.all && self.core == 0 && self.other.is_empty()
    }

    /// The operations both sets grant.
    pub fn intersect(&self, other: &OpSet) -> OpSet {
        match (self.all, other.all) {
            (true, true) => OpSet::all(),
            (true, false) => other.clone(),
            (false, true) => self.clone(),
            (false, false) => OpSet {
                all: false,
                core: self.core & other.core,
                other: self.other.intersection(&other.other).cloned().collect(),
            },
        }
    }

    /// The operations either set grants.
    pub fn union(&self, other: &OpSet) -> OpSet {
        if self.all || other.all {
            return OpSet::all();
        }
        OpSet {
            all: false,
            core: self.core | other.core,
            other: self.other.union(&other.other).cloned().collect(),
        }
    }

    /// The names in canonical order: sorted by byte, each once.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::with_capacity(5 + self.other.len());
        if self.all {
            names.push("*");
        }
        for (bit, name) in [
            (1, "publish"),
            (2, "subscribe"),
            (4, "history"),
            (8, "presence"),
        ] {
            if self.core & bit != 0 {
                names.push(name);
            }
        }
        names.extend(self.other.iter().map(String::as_str));
        names.sort_unstable();
        names
    }
}

/// One resource of a capability and what it grants.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    /// Which channels.
    resource: Resource,
    /// Which operations on them.
    ops: OpSet,
}

/// A compiled capability. Compare, print and serialize it through its
/// canonical JSON.
#[derive(Clone)]
pub struct Capability {
    /// Sorted by resource text, one entry per text, none with no operation.
    entries: Vec<Entry>,
    /// The canonical JSON, computed once.
    canonical: String,
}

impl Capability {
    /// `{"*":["*"]}`: every operation on every channel (the default for a key).
    pub fn all() -> Capability {
        Capability::from_entries(vec![Entry {
            resource: Resource::parse("*").expect("`*` is a valid resource"),
            ops: OpSet::all(),
        }])
    }

    /// `{}`: nothing.
    pub fn none() -> Capability {
        Capability::from_entries(Vec::new())
    }

    /// Parses Ably capability JSON and compiles its resources.
    pub fn parse(json: &str) -> Result<Capability, CapabilityError> {
        if json.len() > CAPABILITY_JSON_BYTES_MAX {
            return Err(CapabilityError::TooLarge {
                bytes: json.len(),
                max: CAPABILITY_JSON_BYTES_MAX,
            });
        }
        let raw: RawCapability =
            serde_json::from_str(json).map_err(|e| CapabilityError::Malformed(e.to_string()))?;
        if raw.0.len() > CAPABILITY_RESOURCES_MAX {
            return Err(CapabilityError::TooManyResources {
                count: raw.0.len(),
                max: CAPABILITY_RESOURCES_MAX,
            });
        }
        let mut seen = BTreeSet::new();
        let mut entries = Vec::with_capacity(raw.0.len());
        for (resource, ops) in raw.0 {
            if ops.is_empty() {
                return Err(CapabilityError::NoOperations(resource));
            }
            let ops = OpSet::parse(ops.iter().map(String::as_str))?;
            let resource = Resource::parse(&resource)?;
            if !seen.insert(resource.as_str().to_owned()) {
                return Err(CapabilityError::DuplicateResource(
                    resource.as_str().to_owned(),
                ));
            }
            entries.push(Entry { resource, ops });
        }
        Ok(Capability::from_entries(entries))
    }

    /// Sorts, merges same-text entries, drops empty ones, and computes the
    /// canonical JSON.
    fn from_entries(mut entries: Vec<Entry>) -> Capability {
        entries.retain(|e| !e.ops.is_empty());
        entries.sort_by(|a, b| a.resource.as_str().cmp(b.resource.as_str()));
        let mut merged: Vec<Entry> = Vec::with_capacity(entries.len());
        for entry in entries {
            match merged.last_mut() {
                Some(last) if last.resource.as_str() == entry.resource.as_str() => {
                    last.ops = last.ops.union(&entry.ops);
                }
                _ => merged.push(entry),
            }
        }
        let mut canonical = String::from("{");
        for (i, entry) in merged.iter().enumerate() {
            if i > 0 {
                canonical.push(',');
            }
            push_json_string(&mut canonical, entry.resource.as_str());
            canonical.push_str(":[");
            for (j, name) in entry.ops.names().into_iter().enumerate() {
                if j > 0 {
                    canonical.push(',');
                }
                push_json_string(&mut canonical, name);
            }
            canonical.push(']');
        }
        canonical.push('}');
        Capability {
            entries: merged,
            canonical,
        }
    }

    /// The canonical JSON (see the [module docs](self)).
    pub fn canonical(&self) -> &str {
        &self.canonical
    }

    /// Whether the capability grants nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many resources it names.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The resources and their operations, in canonical order.
    pub fn resources(&self) -> impl Iterator<Item = (&Resource, &OpSet)> {
        self.entries.iter().map(|e| (&e.resource, &e.ops))
    }

    /// Whether `op` is allowed on the channel `channel` (its `[qualifier]`
    /// already stripped by the caller).
    pub fn allows(&self, op: &Op, channel: &str) -> bool {
        self.entries
            .iter()
            .any(|e| e.ops.contains(op) && e.resource.matches(channel))
    }

    /// Whether an MQTT subscription to `filter` is allowed: one resource
    /// granting `subscribe` must cover every topic the filter can match
    /// (see [`crate::resource`] for the coverage rule). A shared subscription
    /// `$share/group/filter` is judged by its inner filter. An invalid filter
    /// is refused.
    pub fn allows_subscribe_filter(&self, filter: &str) -> bool {
        let Some(inner) = strip_shared(filter) else {
            return false;
        };
        let Ok(pattern) = Pattern::filter(inner) else {
            return false;
        };
        self.entries
            .iter()
            .any(|e| e.ops.contains(&Op::Subscribe) && e.resource.pattern.covers(&pattern))
    }

    /// What both `self` and `other` allow (the rules are in the
    /// [module docs](self)). For a token: `requested.intersect(&key)`.
    pub fn intersect(&self, other: &Capability) -> Capability {
        let mut out = Vec::new();
        for r in &self.entries {
            for k in &other.entries {
                let ops = r.ops.intersect(&k.ops);
                if ops.is_empty() {
                    continue;
                }
                if let Some(resource) = meet(&r.resource, &k.resource) {
                    out.push(Entry { resource, ops });
                }
            }
        }
        Capability::from_entries(out)
    }
}

/// The resource matching the channels both `r` and `k` match, when one
/// resource can say it (see the module docs).
fn meet(r: &Resource, k: &Resource) -> Option<Resource> {
    if r.as_str() == k.as_str() || k.pattern.covers(&r.pattern) {
        return Some(r.clone());
    }
    if r.pattern.covers(&k.pattern) {
        return Some(k.clone());
    }
    let text = r.pattern.meet(&k.pattern)?.text()?;
    let m = Resource::parse(&text).ok()?;
    // The text of a meet may read as another syntax (an MQTT literal level
    // `x:*` becomes an Ably pattern): keep it only if its meaning is inside
    // both.
    (r.pattern.covers(&m.pattern) && k.pattern.covers(&m.pattern)).then_some(m)
}

/// Appends `text` as a JSON string, escaped as `JSON.stringify` does.
fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

impl PartialEq for Capability {
    fn eq(&self, other: &Capability) -> bool {
        self.canonical == other.canonical
    }
}

impl Eq for Capability {}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical)
    }
}

impl fmt::Debug for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Capability({})", self.canonical)
    }
}

impl std::str::FromStr for Capability {
    type Err = CapabilityError;

    fn from_str(json: &str) -> Result<Capability, CapabilityError> {
        Capability::parse(json)
    }
}

/// Serialized as its canonical JSON text (a string), as Ably carries it.
impl Serialize for Capability {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.canonical)
    }
}

/// Deserialized from a string of capability JSON (so a config file's
/// `capability = '{"chat:*":["publish"]}'` is checked when it is read).
impl<'de> Deserialize<'de> for Capability {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Capability, D::Error> {
        let text = String::deserialize(deserializer)?;
        Capability::parse(&text).map_err(de::Error::custom)
    }
}

/// The capability object as written, duplicates kept so that they can be
/// refused (serde_json's own maps keep only the last).
struct RawCapability(Vec<(String, Vec<String>)>);

impl<'de> Deserialize<'de> for RawCapability {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<RawCapability, D::Error> {
        struct RawVisitor;

        impl<'de> Visitor<'de> for RawVisitor {
            type Value = RawCapability;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of resource to array of operation strings")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawCapability, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<String, Vec<String>>()? {
                    // Bounded: past the limit the caller refuses it anyway.
                    if entries.len() > CAPABILITY_RESOURCES_MAX {
                        return Err(de::Error::custom(format!(
                            "more than {CAPABILITY_RESOURCES_MAX} resources"
                        )));
                    }
                    entries.push(entry);
                }
                Ok(RawCapability(entries))
            }
        }

        deserializer.deserialize_map(RawVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(json: &str) -> Capability {
        Capability::parse(json).unwrap_or_else(|e| panic!("{json}: {e}"))
    }

    #[test]
    fn canonical_sorts_dedups_and_strips_whitespace() {
        let c =
            cap(r#"{ "b": ["subscribe", "publish", "publish"], "a:*" : ["presence","history"] }"#);
        assert_eq!(
            c.canonical(),
            r#"{"a:*":["history","presence"],"b":["publish","subscribe"]}"#
        );
        assert_eq!(cap(r#"{"*":["*"]}"#).canonical(), r#"{"*":["*"]}"#);
        assert_eq!(Capability::all().canonical(), r#"{"*":["*"]}"#);
        assert_eq!(Capability::none().canonical(), "{}");
        // `*` sorts before names and is kept beside them, as ably-js does.
        assert_eq!(
            cap(r#"{"x":["subscribe","*"]}"#).canonical(),
            r#"{"x":["*","subscribe"]}"#
        );
        assert_eq!(
            cap(r#"{"x":["stats","channel-metadata","publish"]}"#).canonical(),
            r#"{"x":["channel-metadata","publish","stats"]}"#
        );
    }

    #[test]
    fn canonical_escapes_like_json_stringify() {
        let c = cap("{\"q\\\"\\\\\\n\\u0001é\":[\"publish\"]}");
        assert_eq!(c.canonical(), "{\"q\\\"\\\\\\n\\u0001é\":[\"publish\"]}");
        assert_eq!(
            c.canonical(),
            Capability::parse(c.canonical())
                .map(|c| c.canonical)
                .unwrap_or_default()
        );
    }

    #[test]
    fn parse_errors_name_the_rule() {
        let err = |json: &str| Capability::parse(json).err();
        assert!(matches!(err("[]"), Some(CapabilityError::Malformed(_))));
        assert!(matches!(
            err("{\"a\":\"publish\"}"),
            Some(CapabilityError::Malformed(_))
        ));
        assert!(matches!(
            err("{\"a\":[1]}"),
            Some(CapabilityError::Malformed(_))
        ));
        assert!(matches!(
            err("not json"),
            Some(CapabilityError::Malformed(_))
        ));
        assert_eq!(
            err(r#"{"a":["publish"],"a":["subscribe"]}"#),
            Some(CapabilityError::DuplicateResource("a".into()))
        );
        assert_eq!(
            err(r#"{"a":[]}"#),
            Some(CapabilityError::NoOperations("a".into()))
        );
        assert_eq!(
            err(r#"{"a":["eat"]}"#),
            Some(CapabilityError::UnknownOperation("eat".into()))
        );
        assert!(matches!(
            err(r##"{"#/a":["publish"]}"##),
            Some(CapabilityError::InvalidResource {
                rule: ResourceRule::HashNotLast,
                ..
            })
        ));
        assert!(matches!(
            err(r#"{"":["publish"]}"#),
            Some(CapabilityError::InvalidResource {
                rule: ResourceRule::Empty,
                ..
            })
        ));
        let big = format!(
            "{{\"{}\":[\"publish\"]}}",
            "a".repeat(CAPABILITY_JSON_BYTES_MAX)
        );
        assert!(matches!(err(&big), Some(CapabilityError::TooLarge { .. })));
        let many: Vec<String> = (0..=CAPABILITY_RESOURCES_MAX)
            .map(|i| format!("\"r{i}\":[\"publish\"]"))
            .collect();
        assert!(matches!(
            err(&format!("{{{}}}", many.join(","))),
            Some(CapabilityError::Malformed(_) | CapabilityError::TooManyResources { .. })
        ));
        let at_limit: Vec<String> = (0..CAPABILITY_RESOURCES_MAX)
            .map(|i| format!("\"r{i}\":[\"publish\"]"))
            .collect();
        assert_eq!(
            cap(&format!("{{{}}}", at_limit.join(","))).len(),
            CAPABILITY_RESOURCES_MAX
        );
    }

    #[test]
    fn other_ably_operations_are_kept_but_grant_nothing_core() {
        let c = cap(r#"{"*":["channel-metadata","push-subscribe"]}"#);
        assert!(!c.allows(&Op::Publish, "x"));
        assert!(!c.allows(&Op::Subscribe, "x"));
        assert!(c.allows(&Op::Other("channel-metadata".into()), "x"));
        assert!(!c.allows(&Op::Other("stats".into()), "x"));
        assert_eq!(
            c.canonical(),
            r#"{"*":["channel-metadata","push-subscribe"]}"#
        );
    }

    #[test]
    fn allows_by_operation_and_resource() {
        let c = cap(
            r#"{"chat:*":["publish","subscribe"],"news":["subscribe"],"sensors/+/temp":["publish"],"logs/#":["history"]}"#,
        );
        assert!(c.allows(&Op::Publish, "chat:lobby"));
        assert!(c.allows(&Op::Subscribe, "chat:lobby:x"));
        assert!(!c.allows(&Op::Presence, "chat:lobby"));
        assert!(!c.allows(&Op::Publish, "news"));
        assert!(c.allows(&Op::Subscribe, "news"));
        assert!(!c.allows(&Op::Subscribe, "news:x"));
        assert!(c.allows(&Op::Publish, "sensors/1/temp"));
        assert!(!c.allows(&Op::Publish, "sensors/1/hum"));
        assert!(c.allows(&Op::History, "logs"));
        assert!(c.allows(&Op::History, "logs/a/b"));
        assert!(!c.allows(&Op::History, "chat:lobby"));
        let all = Capability::all();
        for op in [Op::Publish, Op::Subscribe, Op::History, Op::Presence] {
            assert!(all.allows(&op, "anything/at:all"));
        }
        assert!(!Capability::none().allows(&Op::Subscribe, "x"));
    }

    #[test]
    fn subscribe_filter_coverage() {
        let c = cap(r#"{"sensors/#":["subscribe"],"ns:*":["subscribe"],"pub/#":["publish"]}"#);
        assert!(c.allows_subscribe_filter("sensors/+/temp"));
        assert!(c.allows_subscribe_filter("sensors/1/#"));
        assert!(c.allows_subscribe_filter("sensors"));
        assert!(c.allows_subscribe_filter("ns:chat"));
        assert!(c.allows_subscribe_filter("ns:chat/#"));
        assert!(!c.allows_subscribe_filter("#"));
        assert!(!c.allows_subscribe_filter("+/temp"));
        assert!(!c.allows_subscribe_filter("pub/#"), "publish only");
        assert!(!c.allows_subscribe_filter("sensors/#/x"), "invalid filter");
        let narrow = cap(r#"{"sensors/+/temp":["subscribe"]}"#);
        assert!(!narrow.allows_subscribe_filter("sensors/#"));
        assert!(narrow.allows_subscribe_filter("sensors/1/temp"));
        assert!(Capability::all().allows_subscribe_filter("#"));
        assert!(Capability::all().allows_subscribe_filter("$SYS/#"));
    }

    #[test]
    fn shared_subscriptions_are_judged_by_their_inner_filter() {
        let c = cap(r#"{"sensors/#":["subscribe"]}"#);
        assert!(c.allows_subscribe_filter("$share/g1/sensors/+/temp"));
        assert!(!c.allows_subscribe_filter("$share/g1/#"));
        assert!(!c.allows_subscribe_filter("$share/g1"));
        assert!(!c.allows_subscribe_filter("$share//sensors/#"));
        assert!(!c.allows_subscribe_filter("$share/g+/sensors/#"));
    }

    #[test]
    fn intersect_ops() {
        let i = |a: &str, b: &str| cap(a).intersect(&cap(b)).canonical().to_owned();
        assert_eq!(
            i(r#"{"x":["*"]}"#, r#"{"x":["publish"]}"#),
            r#"{"x":["publish"]}"#
        );
        assert_eq!(
            i(r#"{"x":["publish"]}"#, r#"{"x":["*"]}"#),
            r#"{"x":["publish"]}"#
        );
        assert_eq!(i(r#"{"x":["*"]}"#, r#"{"x":["*"]}"#), r#"{"x":["*"]}"#);
        assert_eq!(
            i(
                r#"{"x":["publish","subscribe"]}"#,
                r#"{"x":["subscribe","history"]}"#
            ),
            r#"{"x":["subscribe"]}"#
        );
        assert_eq!(i(r#"{"x":["publish"]}"#, r#"{"x":["subscribe"]}"#), "{}");
        assert_eq!(
            i(r#"{"x":["stats"]}"#, r#"{"*":["*"]}"#),
            r#"{"x":["stats"]}"#
        );
    }

    #[test]
    fn intersect_patterns() {
        let i = |a: &str, b: &str| cap(a).intersect(&cap(b)).canonical().to_owned();
        // `*` requested on a narrower key yields the key's.
        assert_eq!(
            i(
                r#"{"*":["*"]}"#,
                r#"{"chat:*":["publish"],"news":["subscribe"]}"#
            ),
            r#"{"chat:*":["publish"],"news":["subscribe"]}"#
        );
        // A narrower request within the key is kept as asked.
        assert_eq!(
            i(r#"{"chat:a":["publish"]}"#, r#"{"chat:*":["*"]}"#),
            r#"{"chat:a":["publish"]}"#
        );
        assert_eq!(
            i(r#"{"chat:a:*":["publish"]}"#, r#"{"chat:*":["*"]}"#),
            r#"{"chat:a:*":["publish"]}"#
        );
        // Outside the key: dropped.
        assert_eq!(i(r#"{"admin":["publish"]}"#, r#"{"chat:*":["*"]}"#), "{}");
        assert_eq!(
            i(r#"{"chat:*":["publish"]}"#, r#"{"chat:a":["*"]}"#),
            r#"{"chat:a":["publish"]}"#
        );
        // Partial overlaps within one syntax: the exact meet.
        assert_eq!(
            i(r#"{"a:*:c":["publish"]}"#, r#"{"a:b:*":["*"]}"#),
            r#"{"a:b:c":["publish"]}"#
        );
        assert_eq!(
            i(r#"{"+/x":["subscribe"]}"#, r#"{"a/+":["*"]}"#),
            r#"{"a/x":["subscribe"]}"#
        );
        assert_eq!(
            i(r#"{"sensors/#":["subscribe"]}"#, r#"{"+/+/temp":["*"]}"#),
            r#"{"sensors/+/temp":["subscribe"]}"#
        );
        // MQTT and Ably: kept when one covers the other.
        assert_eq!(
            i(r#"{"sensors/#":["*"]}"#, r#"{"*":["subscribe"]}"#),
            r#"{"sensors/#":["subscribe"]}"#
        );
        assert_eq!(
            i(r##"{"#":["*"]}"##, r#"{"chat:*":["subscribe"]}"#),
            r#"{"chat:*":["subscribe"]}"#
        );
        assert_eq!(
            i(r#"{"ns:*":["*"]}"#, r#"{"ns:x/#":["publish"]}"#),
            r#"{"ns:x/#":["publish"]}"#
        );
        // ... and dropped when they only partly overlap.
        assert_eq!(i(r#"{"a/+":["*"]}"#, r#"{"a/b:*":["*"]}"#), "{}");
        // `#` does not include `$` topics, `*` does.
        assert_eq!(i(r#"{"$SYS/#":["subscribe"]}"#, r##"{"#":["*"]}"##), "{}");
        assert_eq!(
            i(r#"{"$SYS/#":["subscribe"]}"#, r#"{"*":["*"]}"#),
            r#"{"$SYS/#":["subscribe"]}"#
        );
        // A meet whose text would read as another syntax is dropped.
        assert_eq!(i(r#"{"+/x:*":["*"]}"#, r#"{"a/#":["*"]}"#), "{}");
        // Results for one resource are merged.
        assert_eq!(
            i(
                r#"{"chat:a":["publish","subscribe"]}"#,
                r#"{"chat:*":["publish"],"*":["subscribe"]}"#
            ),
            r#"{"chat:a":["publish","subscribe"]}"#
        );
        // Qualified resources meet only themselves.
        assert_eq!(i(r#"{"[meta]x":["*"]}"#, r#"{"*":["*"]}"#), "{}");
        assert_eq!(
            i(r#"{"[meta]x":["*"]}"#, r#"{"[meta]x":["subscribe"]}"#),
            r#"{"[meta]x":["subscribe"]}"#
        );
    }

    #[test]
    fn serde_uses_the_canonical_string() {
        let c = cap(r#"{"b":["publish"],"a":["subscribe"]}"#);
        let json = serde_json::to_string(&c).unwrap_or_default();
        assert_eq!(json, r#""{\"a\":[\"subscribe\"],\"b\":[\"publish\"]}""#);
        let back: Result<Capability, _> = serde_json::from_str(&json);
        assert_eq!(back.ok(), Some(c));
        let bad: Result<Capability, _> = serde_json::from_str(r#""{\"a\":[\"eat\"]}""#);
        assert!(bad.is_err());
    }
}
