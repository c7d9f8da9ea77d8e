//! Resource patterns: the left-hand side of a capability and the filter of a
//! deny rule, compiled once so that a check never re-parses text.
//!
//! # The three syntaxes
//! A resource string is classified when it is parsed, in this order:
//! 1. **Qualified** — starts with `[`. `[*]rest` means `rest` (the caller
//!    strips channel qualifiers before asking, so `[*]` adds nothing). Any
//!    other qualifier (`[meta]…`, `[queue]…`) names something Tern does not
//!    route and matches no channel.
//! 2. **MQTT filter** — some `/`-separated level is exactly `+` or `#`
//!    (`sensors/+/temp`, `sensors/#`, `#`). `+` matches one level, `#` the
//!    parent level and any number of levels below it; a `#` anywhere but last,
//!    or a `+`/`#` sharing a level with other characters, is an error. As in
//!    MQTT [MQTT-4.7.2-1], a filter starting with `+` or `#` does not match
//!    names starting with `$` (so `#` does not grant `$SYS/…`).
//! 3. **Ably pattern** — some `:`-separated segment is exactly `*`. A `*`
//!    before the last segment matches exactly one segment (`foo:*:baz` matches
//!    `foo:bar:baz`, not `foo:bar:bam:baz`); a `*` as the last segment matches
//!    one or more segments (`chat:*` matches `chat:a` and `chat:a:b`); `*`
//!    alone matches every channel, `$`-names included.
//! 4. Otherwise the resource is an **exact** channel name (`foo*` is the
//!    channel literally called `foo*`).
//!
//! A subscription filter sent by an MQTT client is parsed with MQTT rules
//! only (`Pattern::filter`): there `chat:*` is the literal topic `chat:*`.
//!
//! # Relations between patterns
//! Three questions are asked of two patterns, and each answer errs on the
//! safe side when the exact answer is not computed:
//! - `covers(p, q)`: does `p` match every name `q` matches? A
//!   `false` can be a false negative (refusing something that was allowed),
//!   never a false positive.
//! - `overlaps(p, q)`: is there a name both match? A `true` can
//!   be a false positive (refusing), never a false negative.
//! - `meet(p, q)`: a pattern matching exactly the names both
//!   match, computed for two MQTT filters or two Ably patterns; the caller
//!   still checks the result with `covers` before trusting it.
//!
//! Within a syntax (MQTT with MQTT, Ably with Ably) and against exact names
//! the answers are exact. Across syntaxes they use the *literal prefix* every
//! matched name starts with: for an MQTT filter, the levels before its first
//! wildcard, with the `/` before a `+` but not the `/` before a `#` (`a/#`
//! also matches `a`); for an Ably pattern, the segments before its first `*`,
//! each with its `:`. Precisely:
//! - An Ably `*` covers every filter. An Ably pattern of literal segments and
//!   a final `*` (`ns:*`, `a:b:*`) covers an MQTT filter whose literal prefix
//!   starts with its own (`ns:*` covers `ns:chat`, `ns:chat/#`, `ns:a/+/b`;
//!   not `ns/#`, `#`, `+/x`). An Ably pattern with a `*` before its end
//!   covers only exact topics it matches.
//! - An MQTT `lits/#` covers an Ably pattern whose literal prefix starts with
//!   `lits/`; `#` alone covers one whose literal prefix is non-empty and does
//!   not start with `$`. No other MQTT filter covers an Ably pattern.
//! - An MQTT filter and an Ably pattern do not overlap when their literal
//!   prefixes differ before either ends, or when the filter starts with a
//!   wildcard and the Ably prefix with `$`; otherwise they are taken to
//!   overlap.
//!
//! Property tests check on generated names that no `covers` or `overlaps`
//! answer is wrong in the unsafe direction.

use std::fmt;

use crate::capability::CapabilityError;

/// One level of an MQTT filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Level {
    /// A level that must equal this text.
    Lit(String),
    /// `+`: any one level.
    Plus,
    /// `#`: the parent level and everything below (always last).
    Hash,
}

/// One `:`-separated segment of an Ably pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    /// A segment that must equal this text.
    Lit(String),
    /// `*` before the last segment: exactly one segment.
    One,
    /// `*` as the last segment: one or more segments.
    Rest,
}

/// A compiled resource or filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pattern {
    /// A qualified resource (`[meta]…`) naming nothing Tern routes.
    Never,
    /// One channel name, compared byte for byte.
    Exact(String),
    /// An MQTT filter with at least one wildcard level.
    Mqtt(Vec<Level>),
    /// An Ably pattern with at least one `*` segment.
    Ably(Vec<Seg>),
}

/// Why a resource or filter string is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceRule {
    /// The string is empty.
    Empty,
    /// A `[qualifier]` prefix has no closing `]`, or nothing follows it.
    UnclosedQualifier,
    /// `#` must be the last level of an MQTT filter.
    HashNotLast,
    /// `+` and `#` must be a whole level (`a/+/b`, not `a/b+`).
    WildcardNotWholeLevel,
    /// Channel names and filters may not contain NUL.
    ContainsNul,
}

impl fmt::Display for ResourceRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ResourceRule::Empty => "a resource may not be empty",
            ResourceRule::UnclosedQualifier => {
                "a [qualifier] needs a closing ] and a name after it"
            }
            ResourceRule::HashNotLast => "# must be the last level of a filter",
            ResourceRule::WildcardNotWholeLevel => "+ and # must occupy a whole level",
            ResourceRule::ContainsNul => "a resource may not contain NUL",
        })
    }
}

impl Pattern {
    /// Parses a capability resource or deny-rule filter (module docs give the
    /// classification).
    pub(crate) fn resource(text: &str) -> Result<Pattern, ResourceRule> {
        if text.is_empty() {
            return Err(ResourceRule::Empty);
        }
        if text.contains('\0') {
            return Err(ResourceRule::ContainsNul);
        }
        if let Some(after) = text.strip_prefix('[') {
            let Some(end) = after.find(']') else {
                return Err(ResourceRule::UnclosedQualifier);
            };
            let (qualifier, rest) = (&after[..end], &after[end + 1..]);
            if rest.is_empty() || rest.starts_with('[') {
                return Err(ResourceRule::UnclosedQualifier);
            }
            return if qualifier == "*" {
                Pattern::resource(rest)
            } else {
                Ok(Pattern::Never)
            };
        }
        if text.split('/').any(|level| level == "+" || level == "#") {
            return Pattern::mqtt_levels(text);
        }
        let segments: Vec<&str> = text.split(':').collect();
        if segments.contains(&"*") {
            let last = segments.len() - 1;
            let segs = segments
                .iter()
                .enumerate()
                .map(|(i, s)| match (*s, i == last) {
                    ("*", true) => Seg::Rest,
                    ("*", false) => Seg::One,
                    (lit, _) => Seg::Lit(lit.to_owned()),
                })
                .collect();
            return Ok(Pattern::Ably(segs));
        }
        Ok(Pattern::Exact(text.to_owned()))
    }

    /// Parses an MQTT subscription filter: `+`/`#` are the only wildcards,
    /// and a filter without them is an exact topic name.
    pub(crate) fn filter(text: &str) -> Result<Pattern, ResourceRule> {
        if text.is_empty() {
            return Err(ResourceRule::Empty);
        }
        if text.contains('\0') {
            return Err(ResourceRule::ContainsNul);
        }
        if text.contains(['+', '#']) {
            Pattern::mqtt_levels(text)
        } else {
            Ok(Pattern::Exact(text.to_owned()))
        }
    }

    /// Compiles the levels of a filter known to contain a wildcard.
    fn mqtt_levels(text: &str) -> Result<Pattern, ResourceRule> {
        let count = text.split('/').count();
        let mut levels = Vec::with_capacity(count);
        for (i, level) in text.split('/').enumerate() {
            levels.push(match level {
                "+" => Level::Plus,
                "#" if i + 1 == count => Level::Hash,
                "#" => return Err(ResourceRule::HashNotLast),
                lit if lit.contains(['+', '#']) => {
                    return Err(ResourceRule::WildcardNotWholeLevel);
                }
                lit => Level::Lit(lit.to_owned()),
            });
        }
        if levels.iter().all(|l| matches!(l, Level::Lit(_))) {
            return Ok(Pattern::Exact(text.to_owned()));
        }
        Ok(Pattern::Mqtt(levels))
    }

    /// Whether this pattern matches the channel `name`.
    pub(crate) fn matches(&self, name: &str) -> bool {
        match self {
            Pattern::Never => false,
            Pattern::Exact(exact) => exact == name,
            Pattern::Mqtt(levels) => mqtt_matches(levels, name),
            Pattern::Ably(segs) => ably_matches(segs, name),
        }
    }

    /// Whether every name `inner` matches is matched by `self` (module docs:
    /// a `false` may be a false negative, a `true` is always right).
    pub(crate) fn covers(&self, inner: &Pattern) -> bool {
        match (self, inner) {
            (Pattern::Never, _) | (_, Pattern::Never) => false,
            (outer, Pattern::Exact(name)) => outer.matches(name),
            (Pattern::Exact(_), _) => false,
            (Pattern::Mqtt(outer), Pattern::Mqtt(inner)) => mqtt_covers(outer, inner),
            (Pattern::Ably(outer), Pattern::Ably(inner)) => ably_covers(outer, inner),
            (Pattern::Ably(outer), Pattern::Mqtt(inner)) => {
                // `*` matches everything; `a:b:*` is a prefix test that holds
                // if every name of the filter starts with that prefix.
                match ably_prefix_only(outer) {
                    Some(prefix) => mqtt_literal_prefix(inner).starts_with(&prefix),
                    None => false,
                }
            }
            (Pattern::Mqtt(outer), Pattern::Ably(inner)) => {
                // Only `lits/#` is handled: it matches every name starting
                // with `lits/` (every non-`$` name when there are no lits).
                let Some(lits) = mqtt_hash_tail_only(outer) else {
                    return false;
                };
                let prefix = ably_literal_prefix(inner);
                match lits {
                    None => !prefix.is_empty() && !prefix.starts_with('$'),
                    Some(lits) => prefix.starts_with(&format!("{lits}/")),
                }
            }
        }
    }

    /// Whether some name is matched by both patterns (module docs: a `true`
    /// may be a false positive, a `false` is always right).
    pub(crate) fn overlaps(&self, other: &Pattern) -> bool {
        match (self, other) {
            (Pattern::Never, _) | (_, Pattern::Never) => false,
            (Pattern::Exact(name), p) | (p, Pattern::Exact(name)) => p.matches(name),
            (Pattern::Mqtt(a), Pattern::Mqtt(b)) => mqtt_meet(a, b).is_some(),
            (Pattern::Ably(a), Pattern::Ably(b)) => ably_meet(a, b).is_some(),
            (Pattern::Mqtt(m), Pattern::Ably(a)) | (Pattern::Ably(a), Pattern::Mqtt(m)) => {
                // Every name of each starts with its literal prefix: if the
                // two prefixes disagree before either ends, nothing matches
                // both.
                let (pm, pa) = (mqtt_literal_prefix(m), ably_literal_prefix(a));
                if !(pm.starts_with(&pa) || pa.starts_with(&pm)) {
                    return false;
                }
                // A filter starting with a wildcard never matches `$` names.
                let mqtt_wild_first = !matches!(m.first(), Some(Level::Lit(_)));
                !(mqtt_wild_first && pa.starts_with('$'))
            }
        }
    }

    /// The pattern matching exactly the names both match, when both are
    /// MQTT filters or both Ably patterns and they share some name; `None`
    /// otherwise. Its [`text`](Pattern::text) must be re-parsed (and the
    /// result checked with [`covers`](Pattern::covers)) before it is used as
    /// a resource, because that text can read as another syntax (an MQTT
    /// literal level `x:*` is an Ably pattern when written alone).
    pub(crate) fn meet(&self, other: &Pattern) -> Option<Pattern> {
        match (self, other) {
            (Pattern::Mqtt(a), Pattern::Mqtt(b)) => mqtt_meet(a, b).map(Pattern::Mqtt),
            (Pattern::Ably(a), Pattern::Ably(b)) => ably_meet(a, b).map(Pattern::Ably),
            _ => None,
        }
    }

    /// The pattern written out (`None` for [`Pattern::Never`], which has no
    /// text of its own).
    pub(crate) fn text(&self) -> Option<String> {
        match self {
            Pattern::Never => None,
            Pattern::Exact(name) => Some(name.clone()),
            Pattern::Mqtt(levels) => Some(mqtt_text(levels)),
            Pattern::Ably(segs) => Some(ably_text(segs)),
        }
    }
}

// ---- MQTT ------------------------------------------------------------------

/// MQTT topic matching, with the `$` rule for a leading wildcard.
fn mqtt_matches(levels: &[Level], name: &str) -> bool {
    if name.starts_with('$') && !matches!(levels.first(), Some(Level::Lit(_))) {
        return false;
    }
    let mut parts = name.split('/');
    for level in levels {
        match level {
            Level::Hash => return true,
            Level::Plus => {
                if parts.next().is_none() {
                    return false;
                }
            }
            Level::Lit(lit) => {
                if parts.next() != Some(lit.as_str()) {
                    return false;
                }
            }
        }
    }
    parts.next().is_none()
}

/// Whether a leading wildcard of one filter meets a leading `$` literal of
/// the other, which MQTT says never match.
fn dollar_excluded(a: &[Level], b: &[Level]) -> bool {
    let wild = |l: &[Level]| !matches!(l.first(), Some(Level::Lit(_)));
    let dollar = |l: &[Level]| matches!(l.first(), Some(Level::Lit(s)) if s.starts_with('$'));
    (wild(a) && dollar(b)) || (wild(b) && dollar(a))
}

/// Filter inclusion, level by level.
fn mqtt_covers(outer: &[Level], inner: &[Level]) -> bool {
    if dollar_excluded(outer, inner) {
        return false;
    }
    let mut i = 0;
    loop {
        match (outer.get(i), inner.get(i)) {
            (Some(Level::Hash), _) | (None, None) => return true,
            (Some(Level::Plus), Some(Level::Plus | Level::Lit(_))) => {}
            (Some(Level::Lit(a)), Some(Level::Lit(b))) if a == b => {}
            _ => return false,
        }
        i += 1;
    }
}

/// The filter matching exactly the topics both filters match, if any.
fn mqtt_meet(a: &[Level], b: &[Level]) -> Option<Vec<Level>> {
    if dollar_excluded(a, b) {
        return None;
    }
    let mut out = Vec::with_capacity(a.len().max(b.len()));
    let mut i = 0;
    loop {
        match (a.get(i), b.get(i)) {
            (Some(Level::Hash), _) => {
                out.extend_from_slice(&b[i..]);
                return Some(out);
            }
            (_, Some(Level::Hash)) => {
                out.extend_from_slice(&a[i..]);
                return Some(out);
            }
            (None, None) => return Some(out),
            (Some(Level::Plus), Some(x)) | (Some(x), Some(Level::Plus)) => out.push(x.clone()),
            (Some(Level::Lit(x)), Some(Level::Lit(y))) if x == y => out.push(Level::Lit(x.clone())),
            _ => return None,
        }
        i += 1;
    }
}

/// The text every topic matched by the filter starts with: the literal
/// levels before the first wildcard, with the `/` after them when that
/// wildcard is `+` (`a/#` also matches `a`, so no `/` there).
fn mqtt_literal_prefix(levels: &[Level]) -> String {
    let mut prefix = String::new();
    for (i, level) in levels.iter().enumerate() {
        match level {
            Level::Lit(lit) => {
                if i > 0 {
                    prefix.push('/');
                }
                prefix.push_str(lit);
            }
            Level::Plus => {
                if i > 0 {
                    prefix.push('/');
                }
                return prefix;
            }
            Level::Hash => return prefix,
        }
    }
    prefix
}

/// For a filter of the form `lit/lit/#`, the literal part (`lit/lit`, empty
/// for `#` alone).
/// For a filter of literal levels then `#`: the literal levels joined, or
/// `Some(None)` for `#` alone (which differs from `/#`, whose one literal
/// level is empty).
fn mqtt_hash_tail_only(levels: &[Level]) -> Option<Option<String>> {
    let (last, init) = levels.split_last()?;
    if *last != Level::Hash {
        return None;
    }
    let lits: Option<Vec<&str>> = init
        .iter()
        .map(|l| match l {
            Level::Lit(s) => Some(s.as_str()),
            _ => None,
        })
        .collect();
    lits.map(|l| (!l.is_empty()).then(|| l.join("/")))
}

fn mqtt_text(levels: &[Level]) -> String {
    let parts: Vec<&str> = levels
        .iter()
        .map(|l| match l {
            Level::Lit(s) => s.as_str(),
            Level::Plus => "+",
            Level::Hash => "#",
        })
        .collect();
    parts.join("/")
}

// ---- Ably ------------------------------------------------------------------

/// Ably whole-segment wildcard matching.
fn ably_matches(segs: &[Seg], name: &str) -> bool {
    let mut parts = name.split(':');
    for seg in segs {
        match seg {
            // One or more segments remain (split yields one per segment).
            Seg::Rest => return parts.next().is_some(),
            Seg::One => {
                if parts.next().is_none() {
                    return false;
                }
            }
            Seg::Lit(lit) => {
                if parts.next() != Some(lit.as_str()) {
                    return false;
                }
            }
        }
    }
    parts.next().is_none()
}

/// Ably pattern inclusion, segment by segment.
fn ably_covers(outer: &[Seg], inner: &[Seg]) -> bool {
    let mut i = 0;
    loop {
        match (outer.get(i), inner.get(i)) {
            (Some(Seg::Rest), Some(_)) | (None, None) => return true,
            (Some(Seg::One), Some(Seg::One | Seg::Lit(_))) => {}
            (Some(Seg::Lit(a)), Some(Seg::Lit(b))) if a == b => {}
            _ => return false,
        }
        i += 1;
    }
}

/// The Ably pattern matching exactly the names both match, if any.
fn ably_meet(a: &[Seg], b: &[Seg]) -> Option<Vec<Seg>> {
    let mut out = Vec::with_capacity(a.len().max(b.len()));
    let mut i = 0;
    loop {
        match (a.get(i), b.get(i)) {
            (Some(Seg::Rest), Some(_)) => {
                out.extend_from_slice(&b[i..]);
                return Some(out);
            }
            (Some(_), Some(Seg::Rest)) => {
                out.extend_from_slice(&a[i..]);
                return Some(out);
            }
            (None, None) => return Some(out),
            (Some(Seg::One), Some(x)) | (Some(x), Some(Seg::One)) => out.push(x.clone()),
            (Some(Seg::Lit(x)), Some(Seg::Lit(y))) if x == y => out.push(Seg::Lit(x.clone())),
            _ => return None,
        }
        i += 1;
    }
}

/// The text every name matched by the pattern starts with: the literal
/// segments before the first `*`, each followed by its `:`.
fn ably_literal_prefix(segs: &[Seg]) -> String {
    let mut prefix = String::new();
    for seg in segs {
        match seg {
            Seg::Lit(lit) => {
                prefix.push_str(lit);
                prefix.push(':');
            }
            Seg::One | Seg::Rest => return prefix,
        }
    }
    prefix
}

/// For `lit:lit:*` (or `*`), the prefix every matching name has and every
/// name with it matches (`lit:lit:`, empty for `*`).
fn ably_prefix_only(segs: &[Seg]) -> Option<String> {
    let (last, init) = segs.split_last()?;
    if *last != Seg::Rest || init.iter().any(|s| !matches!(s, Seg::Lit(_))) {
        return None;
    }
    Some(ably_literal_prefix(init))
}

fn ably_text(segs: &[Seg]) -> String {
    let parts: Vec<&str> = segs
        .iter()
        .map(|s| match s {
            Seg::Lit(lit) => lit.as_str(),
            Seg::One | Seg::Rest => "*",
        })
        .collect();
    parts.join(":")
}

/// The filter a subscription applies to: `filter` itself, or the inner
/// filter of a shared subscription `$share/group/filter`. `None` for a
/// malformed shared subscription (empty or wildcard group, no inner filter).
pub(crate) fn strip_shared(filter: &str) -> Option<&str> {
    let Some(rest) = filter.strip_prefix("$share/") else {
        return Some(filter);
    };
    let (group, inner) = rest.split_once('/')?;
    if group.is_empty() || group.contains(['+', '#']) || inner.is_empty() {
        return None;
    }
    Some(inner)
}

// ---- Public wrapper --------------------------------------------------------

/// A resource as written (kept for the canonical JSON and for messages) with
/// its compiled matcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// The text as written in the capability or rule.
    text: String,
    /// The compiled matcher.
    pub(crate) pattern: Pattern,
}

impl Resource {
    /// Parses a capability resource or deny-rule filter in any of the
    /// syntaxes of the [module docs](self).
    pub fn parse(text: &str) -> Result<Resource, CapabilityError> {
        let pattern = Pattern::resource(text).map_err(|rule| CapabilityError::InvalidResource {
            resource: text.to_owned(),
            rule,
        })?;
        Ok(Resource {
            text: text.to_owned(),
            pattern,
        })
    }

    /// The resource as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the channel `name` (qualifier already stripped) matches.
    pub fn matches(&self, name: &str) -> bool {
        self.pattern.matches(name)
    }

    /// Whether every topic the MQTT subscription `filter` (or
    /// `$share/group/filter`) can match is matched by this resource. An
    /// invalid filter is covered by nothing.
    pub fn covers_filter(&self, filter: &str) -> bool {
        strip_shared(filter)
            .and_then(|f| Pattern::filter(f).ok())
            .is_some_and(|f| self.pattern.covers(&f))
    }

    /// Whether some topic the MQTT subscription `filter` (or
    /// `$share/group/filter`) can match is also matched by this resource. May
    /// answer `true` when unsure; an invalid filter overlaps everything, so
    /// that a deny check refuses it.
    pub fn overlaps_filter(&self, filter: &str) -> bool {
        strip_shared(filter)
            .and_then(|f| Pattern::filter(f).ok())
            .is_none_or(|f| self.pattern.overlaps(&f))
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(text: &str) -> Pattern {
        Pattern::resource(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn filt(text: &str) -> Pattern {
        Pattern::filter(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn classification() {
        assert_eq!(res("foo"), Pattern::Exact("foo".into()));
        // `/#` covers only names starting with `/`, unlike `#`.
        assert!(!res("/#").covers(&res(":*")));
        assert!(res("/#").covers(&res("/a:*")));
        assert_eq!(res("foo*"), Pattern::Exact("foo*".into()));
        assert_eq!(res("a/b#"), Pattern::Exact("a/b#".into()));
        assert_eq!(res("*"), Pattern::Ably(vec![Seg::Rest]));
        assert_eq!(
            res("a:*:c"),
            Pattern::Ably(vec![Seg::Lit("a".into()), Seg::One, Seg::Lit("c".into())])
        );
        assert_eq!(res("#"), Pattern::Mqtt(vec![Level::Hash]));
        assert_eq!(
            res("s/+/t"),
            Pattern::Mqtt(vec![
                Level::Lit("s".into()),
                Level::Plus,
                Level::Lit("t".into())
            ])
        );
        // An MQTT wildcard level wins: the `*` is then a literal.
        assert_eq!(
            res("a:*/#"),
            Pattern::Mqtt(vec![Level::Lit("a:*".into()), Level::Hash])
        );
        assert_eq!(res("[*]chat:*"), res("chat:*"));
        assert_eq!(res("[meta]*"), Pattern::Never);
        assert_eq!(filt("chat:*"), Pattern::Exact("chat:*".into()));
    }

    #[test]
    fn invalid_resources_name_the_rule() {
        assert_eq!(Pattern::resource(""), Err(ResourceRule::Empty));
        assert_eq!(Pattern::resource("#/a"), Err(ResourceRule::HashNotLast));
        assert_eq!(
            Pattern::resource("a/+/b#"),
            Err(ResourceRule::WildcardNotWholeLevel)
        );
        assert_eq!(
            Pattern::resource("[meta"),
            Err(ResourceRule::UnclosedQualifier)
        );
        assert_eq!(
            Pattern::resource("[*]"),
            Err(ResourceRule::UnclosedQualifier)
        );
        assert_eq!(Pattern::resource("a\0"), Err(ResourceRule::ContainsNul));
        assert_eq!(
            Pattern::filter("a/b+"),
            Err(ResourceRule::WildcardNotWholeLevel)
        );
        assert_eq!(Pattern::filter("a/#/"), Err(ResourceRule::HashNotLast));
        assert_eq!(Pattern::filter(""), Err(ResourceRule::Empty));
    }

    #[test]
    fn ably_matching_follows_the_documented_examples() {
        let star = res("*");
        assert!(star.matches("anything"));
        assert!(star.matches("ns:a:b"));
        assert!(star.matches("$SYS/x"));
        let ns = res("namespace:*");
        assert!(ns.matches("namespace:channel"));
        assert!(ns.matches("namespace:channel:other"));
        assert!(!ns.matches("namespace"));
        assert!(!ns.matches("other:channel"));
        assert!(!ns.matches("namespacex:channel"));
        let mid = res("foo:*:baz");
        assert!(mid.matches("foo:bar:baz"));
        assert!(!mid.matches("foo:bar:bam:baz"));
        assert!(!mid.matches("foo:baz"));
        let lit = res("foo*");
        assert!(lit.matches("foo*"));
        assert!(!lit.matches("foobar"));
        assert!(!res("[meta]*").matches("anything"));
    }

    #[test]
    fn mqtt_matching_with_dollar_rule() {
        let f = res("sensors/+/temp");
        assert!(f.matches("sensors/1/temp"));
        assert!(f.matches("sensors//temp"));
        assert!(!f.matches("sensors/1/2/temp"));
        assert!(!f.matches("sensors/1"));
        let h = res("sensors/#");
        assert!(h.matches("sensors"));
        assert!(h.matches("sensors/"));
        assert!(h.matches("sensors/a/b"));
        assert!(!h.matches("sensorsx"));
        let all = res("#");
        assert!(all.matches("a"));
        assert!(all.matches("a/b:c"));
        assert!(!all.matches("$SYS/broker"));
        assert!(!res("+/x").matches("$SYS/x"));
        assert!(res("$SYS/#").matches("$SYS/broker"));
    }

    #[test]
    fn covers_within_mqtt() {
        assert!(res("sensors/#").covers(&filt("sensors/+/temp")));
        assert!(res("sensors/#").covers(&filt("sensors/1/#")));
        assert!(res("sensors/#").covers(&filt("sensors")));
        assert!(res("sensors/#").covers(&filt("sensors/#")));
        assert!(!res("sensors/+/temp").covers(&filt("sensors/#")));
        assert!(
            !res("sensors/+/#").covers(&filt("sensors/#")),
            "sensors/# matches sensors"
        );
        assert!(res("sensors/+/#").covers(&filt("sensors/+")));
        assert!(!res("a/+").covers(&filt("a/#")));
        assert!(res("#").covers(&filt("#")));
        assert!(res("#").covers(&filt("+/+")));
        assert!(!res("#").covers(&filt("$SYS/#")));
        assert!(!res("+/#").covers(&filt("$SYS/+")));
        assert!(res("$SYS/#").covers(&filt("$SYS/+")));
    }

    #[test]
    fn covers_across_syntaxes() {
        // `*` covers every filter, `$` ones included.
        assert!(res("*").covers(&filt("#")));
        assert!(res("*").covers(&filt("$SYS/#")));
        // `ns:*` covers a filter whose every topic starts with `ns:`.
        assert!(res("ns:*").covers(&filt("ns:a")));
        assert!(res("ns:*").covers(&filt("ns:a/#")));
        assert!(res("ns:*").covers(&filt("ns:a/+/b")));
        assert!(
            res("ns:*").covers(&filt("ns:/#")),
            "ns:/# matches ns:, which ns:* matches"
        );
        assert!(!res("ns:*").covers(&filt("ns/#")));
        assert!(!res("ns:*").covers(&filt("#")));
        assert!(!res("ns:*").covers(&filt("+/a")));
        // A middle `*` is only compared against exact topics.
        assert!(res("a:*:c").covers(&filt("a:b:c")));
        assert!(!res("a:*:c").covers(&filt("a:b:c/#")));
        // An MQTT `lits/#` resource covers Ably patterns under it.
        assert!(res("#").covers(&res("chat:*")));
        assert!(!res("#").covers(&res("*")));
        assert!(!res("#").covers(&res("$x:*")));
        assert!(res("a/#").covers(&res("a/b:*")));
        assert!(!res("a/#").covers(&res("a:*")));
        // Exact resources cover only themselves.
        assert!(res("a/b").covers(&filt("a/b")));
        assert!(!res("a/b").covers(&filt("a/+")));
        assert!(!res("[meta]x").covers(&filt("x")));
    }

    #[test]
    fn covers_within_ably() {
        assert!(res("*").covers(&res("a:*")));
        assert!(res("a:*").covers(&res("a:b:*")));
        assert!(res("a:*").covers(&res("a:*:c")));
        assert!(!res("a:*:c").covers(&res("a:*")));
        assert!(!res("a:b:*").covers(&res("a:*")));
        assert!(!res("a:*").covers(&res("*")));
        assert!(res("*:*").covers(&res("a:*")));
        assert!(!res("*:c").covers(&res("*:*")));
    }

    #[test]
    fn overlaps_is_exact_within_a_syntax() {
        assert!(res("admin/#").overlaps(&filt("#")));
        assert!(res("admin/#").overlaps(&filt("+/x")));
        assert!(res("admin/#").overlaps(&filt("admin")));
        assert!(!res("admin/#").overlaps(&filt("user/#")));
        assert!(!res("admin/+").overlaps(&filt("admin/a/b")));
        assert!(!res("#").overlaps(&filt("$SYS/#")));
        assert!(res("$SYS/#").overlaps(&filt("$SYS/+")));
        assert!(res("a:*:c").overlaps(&res("a:b:*")));
        assert!(!res("a:*:c").overlaps(&res("b:*")));
    }

    #[test]
    fn overlaps_across_syntaxes_uses_prefixes() {
        assert!(res("admin:*").overlaps(&filt("#")));
        assert!(res("admin:*").overlaps(&filt("admin:x/#")));
        assert!(!res("admin:*").overlaps(&filt("adm/+")));
        assert!(!res("admin:*").overlaps(&filt("user/#")));
        assert!(res("admin:*").overlaps(&filt("admin:x")));
        assert!(!res("$SYS:*").overlaps(&filt("#")));
        assert!(res("*").overlaps(&filt("$SYS/#")));
        assert!(!res("[meta]*").overlaps(&filt("#")));
    }

    #[test]
    fn public_wrapper() {
        let r = Resource::parse("sensors/#").expect("valid");
        assert_eq!(r.as_str(), "sensors/#");
        assert_eq!(r.to_string(), "sensors/#");
        assert!(r.matches("sensors/1"));
        assert!(r.covers_filter("sensors/+"));
        assert!(r.covers_filter("$share/g/sensors/+"));
        assert!(!r.covers_filter("sensors/#/x"));
        assert!(r.overlaps_filter("#"));
        assert!(!r.overlaps_filter("other/#"));
        assert!(
            r.overlaps_filter("bad/#/filter"),
            "invalid filters overlap, to be refused"
        );
        assert!(matches!(
            Resource::parse("a/#/b"),
            Err(CapabilityError::InvalidResource {
                rule: ResourceRule::HashNotLast,
                ..
            })
        ));
        assert_eq!(strip_shared("a/b"), Some("a/b"));
        assert_eq!(strip_shared("$share/g/a/b"), Some("a/b"));
        assert_eq!(strip_shared("$share/g/"), None);
        assert_eq!(strip_shared("$share/g"), None);
        assert_eq!(strip_shared("$share//a"), None);
    }

    #[test]
    fn meets() {
        let meet = |a: &str, b: &str| res(a).meet(&res(b)).and_then(|m| m.text());
        assert_eq!(
            meet("sensors/#", "+/+/temp").as_deref(),
            Some("sensors/+/temp")
        );
        assert_eq!(meet("+/x", "a/+").as_deref(), Some("a/x"));
        assert_eq!(meet("a/#", "a/+/#").as_deref(), Some("a/+/#"));
        assert_eq!(meet("#", "$SYS/#"), None);
        assert_eq!(meet("a/+", "b/+"), None);
        assert_eq!(meet("a:*:c", "a:b:*").as_deref(), Some("a:b:c"));
        assert_eq!(meet("*", "x:*").as_deref(), Some("x:*"));
        assert_eq!(meet("a:*", "b:*"), None);
        assert_eq!(meet("a:*", "#"), None);
    }
}
