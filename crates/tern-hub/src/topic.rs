//! Channel names and subscription filters: validation and matching.
//!
//! A channel name is a `/`-separated topic name; a filter may use `+` (one
//! level) and `#` (this level and every one below, last only). Names whose
//! first level starts with `$` are not matched by a filter whose first level
//! is a wildcard [MQTT-4.7.2-1].

use thiserror::Error;

/// Why a channel name or filter was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum TopicError {
    #[error("topic is empty")]
    Empty,
    #[error("topic of {bytes} bytes exceeds the maximum of {max}")]
    TooLong { bytes: usize, max: usize },
    #[error("topic of {levels} levels exceeds the maximum of {max}")]
    TooDeep { levels: usize, max: usize },
    #[error("wildcard in a topic name")]
    WildcardInName,
    #[error("'#' must be the last level and alone in it")]
    MisplacedMultiLevelWildcard,
    #[error("'+' must be alone in its level")]
    MisplacedSingleLevelWildcard,
    #[error("NUL character in topic")]
    Nul,
    #[error("malformed shared subscription")]
    MalformedShare,
}

/// Bounds on names and filters.
#[derive(Debug, Clone, Copy)]
pub struct TopicLimits {
    /// Longest name or filter accepted, in bytes.
    pub topic_bytes_max: usize,
    /// Most `/`-separated levels accepted.
    pub topic_levels_max: usize,
}

impl Default for TopicLimits {
    fn default() -> Self {
        TopicLimits {
            topic_bytes_max: 65_535,
            topic_levels_max: 128,
        }
    }
}

fn check_common(s: &str, limits: &TopicLimits) -> Result<(), TopicError> {
    if s.is_empty() {
        return Err(TopicError::Empty);
    }
    if s.len() > limits.topic_bytes_max {
        return Err(TopicError::TooLong {
            bytes: s.len(),
            max: limits.topic_bytes_max,
        });
    }
    if s.contains('\0') {
        return Err(TopicError::Nul);
    }
    let levels = s.bytes().filter(|&b| b == b'/').count() + 1;
    if levels > limits.topic_levels_max {
        return Err(TopicError::TooDeep {
            levels,
            max: limits.topic_levels_max,
        });
    }
    Ok(())
}

/// Validates a channel (topic) name that a message is published to.
pub fn validate_name(name: &str, limits: &TopicLimits) -> Result<(), TopicError> {
    check_common(name, limits)?;
    if name.bytes().any(|b| b == b'+' || b == b'#') {
        return Err(TopicError::WildcardInName);
    }
    Ok(())
}

/// Validates a subscription filter (without a `$share/` prefix).
pub fn validate_filter(filter: &str, limits: &TopicLimits) -> Result<(), TopicError> {
    check_common(filter, limits)?;
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        if level.contains('#') && (level != "#" || levels.peek().is_some()) {
            return Err(TopicError::MisplacedMultiLevelWildcard);
        }
        if level.contains('+') && level != "+" {
            return Err(TopicError::MisplacedSingleLevelWildcard);
        }
    }
    Ok(())
}

/// Maps keyed by client-chosen strings (trie levels): a fast hash,
/// randomly seeded per process so topic names cannot be chosen to collide.
pub(crate) type TrieMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// The first level of a name or filter and the rest, if any.
pub(crate) fn split_level(s: &str) -> (&str, Option<&str>) {
    match s.split_once('/') {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    }
}

/// True if the filter contains `+` or `#`.
pub fn has_wildcard(filter: &str) -> bool {
    filter.bytes().any(|b| b == b'+' || b == b'#')
}

/// A subscription filter split from its optional shared-subscription group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedFilter<'a> {
    /// `Some(group)` for `$share/group/filter`.
    pub share_group: Option<&'a str>,
    /// The filter that is matched against names.
    pub filter: &'a str,
}

/// Splits `$share/{group}/{filter}` and validates both parts.
pub fn parse_filter<'a>(
    raw: &'a str,
    limits: &TopicLimits,
) -> Result<ParsedFilter<'a>, TopicError> {
    if let Some(rest) = raw.strip_prefix("$share/") {
        let (group, filter) = rest.split_once('/').ok_or(TopicError::MalformedShare)?;
        if group.is_empty() || group.contains(['+', '#']) || filter.is_empty() {
            return Err(TopicError::MalformedShare);
        }
        validate_filter(filter, limits)?;
        return Ok(ParsedFilter {
            share_group: Some(group),
            filter,
        });
    }
    validate_filter(raw, limits)?;
    Ok(ParsedFilter {
        share_group: None,
        filter: raw,
    })
}

/// True if `name` is matched by `filter` (both already validated).
pub fn matches(filter: &str, name: &str) -> bool {
    if name.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut n = name.split('/');
    loop {
        match (f.next(), n.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(fl), Some(nl)) if fl == nl => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mqtt_4_7_1_wildcard_matching() {
        assert!(matches("a/b", "a/b"));
        assert!(!matches("a/b", "a/c"));
        assert!(matches("a/+", "a/b"));
        assert!(!matches("a/+", "a/b/c"));
        assert!(matches("a/+", "a/"));
        assert!(
            matches("a/#", "a"),
            "[MQTT-4.7.1-2] # matches the parent level"
        );
        assert!(matches("a/#", "a/b/c"));
        assert!(matches("#", "a/b"));
        assert!(matches("+/+", "/a"));
        assert!(matches("+", ""));
        assert!(!matches("+", "/"));
        assert!(matches("/+", "/x"));
        assert!(!matches("a/b/c", "a/b"));
    }

    #[test]
    fn mqtt_4_7_2_1_dollar_topics_not_matched_by_leading_wildcard() {
        assert!(!matches("#", "$SYS/broker/uptime"));
        assert!(!matches("+/broker/uptime", "$SYS/broker/uptime"));
        assert!(matches("$SYS/#", "$SYS/broker/uptime"));
        assert!(matches("$SYS/+/uptime", "$SYS/broker/uptime"));
    }

    #[test]
    fn mqtt_4_7_1_filter_validation() {
        let l = TopicLimits::default();
        assert!(validate_filter("a/#", &l).is_ok());
        assert!(validate_filter("#", &l).is_ok());
        assert!(validate_filter("+/a/+", &l).is_ok());
        assert_eq!(
            validate_filter("a/#/b", &l),
            Err(TopicError::MisplacedMultiLevelWildcard)
        );
        assert_eq!(
            validate_filter("a#", &l),
            Err(TopicError::MisplacedMultiLevelWildcard)
        );
        assert_eq!(
            validate_filter("a/b+", &l),
            Err(TopicError::MisplacedSingleLevelWildcard)
        );
        assert_eq!(validate_filter("", &l), Err(TopicError::Empty));
        assert_eq!(validate_name("a/+", &l), Err(TopicError::WildcardInName));
    }

    #[test]
    fn limits_are_enforced() {
        let l = TopicLimits {
            topic_bytes_max: 5,
            topic_levels_max: 2,
        };
        assert!(matches!(
            validate_name("abcdef", &l),
            Err(TopicError::TooLong { .. })
        ));
        assert!(matches!(
            validate_name("a/b/c", &l),
            Err(TopicError::TooDeep { .. })
        ));
    }

    #[test]
    fn mqtt_4_8_2_shared_subscription_parsing() {
        let l = TopicLimits::default();
        let p = parse_filter("$share/g1/a/+", &l).unwrap();
        assert_eq!(p.share_group, Some("g1"));
        assert_eq!(p.filter, "a/+");
        assert!(parse_filter("$share/g1", &l).is_err());
        assert!(parse_filter("$share//a", &l).is_err());
        assert!(parse_filter("$share/g+/a", &l).is_err());
        assert_eq!(parse_filter("a/b", &l).unwrap().share_group, None);
    }

    proptest::proptest! {
        #[test]
        fn exact_filter_matches_only_itself(a in "[a-c]{0,2}(/[a-c]{0,2}){0,3}", b in "[a-c]{0,2}(/[a-c]{0,2}){0,3}") {
            proptest::prop_assert_eq!(matches(&a, &b), a == b);
        }

        #[test]
        fn hash_matches_every_non_dollar_name(n in "[a-c]{0,2}(/[a-c]{0,2}){0,3}") {
            proptest::prop_assert!(matches("#", &n));
        }
    }
}
