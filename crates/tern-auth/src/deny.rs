//! Deny rules: operator-written exceptions that take precedence over every
//! capability, in the manner of Mosquitto and EMQX ACLs.
//!
//! A rule names who it applies to, which operations, and a filter (any
//! resource syntax: MQTT filter, Ably pattern or exact name). An operation
//! on a channel is refused when a rule applies to the principal, lists the
//! operation, and its filter matches the channel.
//!
//! # Subscriptions and overlap
//! An MQTT subscription filter is refused when a rule that applies and lists
//! `subscribe` has a filter that *overlaps* it: some topic could match both.
//! So with `admin/#` denied, a subscription to `#`, `+/x` or `admin` is
//! refused (each could receive an admin message), while `user/#` is allowed.
//! A `$share/group/filter` subscription is judged by its inner filter.
//! Between an MQTT filter and an Ably pattern, overlap is judged from their
//! literal prefixes and may refuse a subscription that could in fact never
//! receive a denied message (see [`crate::resource`]); it never allows one
//! that could.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::capability::{CapabilityError, Op, OpSet};
use crate::error::AuthError;
use crate::principal::{Principal, PrincipalKind};
use crate::resource::{Pattern, Resource};

/// Whom a deny rule applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Who {
    /// Every principal.
    Anyone,
    /// Principals without credentials.
    Anonymous,
    /// Principals using this key, directly or through a token or JWT it
    /// signed.
    Key(String),
    /// Principals with this client id.
    ClientId(String),
}

impl FromStr for Who {
    type Err = AuthError;

    /// `anyone`, `anonymous`, `key:<appId.keyId>` or `client:<clientId>`.
    fn from_str(text: &str) -> Result<Who, AuthError> {
        match text {
            "anyone" => Ok(Who::Anyone),
            "anonymous" => Ok(Who::Anonymous),
            _ => match text.split_once(':') {
                Some(("key", name)) if !name.is_empty() => Ok(Who::Key(name.to_owned())),
                Some(("client", id)) if !id.is_empty() => Ok(Who::ClientId(id.to_owned())),
                _ => Err(AuthError::InvalidDenySubject(text.to_owned())),
            },
        }
    }
}

/// One deny rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DenyRule {
    /// Whom it applies to.
    pub who: Who,
    /// Which operations it refuses (`*`: all).
    pub ops: OpSet,
    /// Which channels (and, for subscriptions, which overlapping filters).
    pub filter: Resource,
}

/// A `[[deny]]` entry of the config file:
///
/// ```toml
/// [[deny]]
/// who = "anonymous"          # or "anyone", "key:app.key", "client:sensor-7"
/// ops = ["subscribe"]        # Ably operation names or "*"; default ["*"]
/// filter = "admin/#"         # MQTT filter, Ably pattern or channel name
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DenyConfig {
    /// See [`Who::from_str`].
    pub who: String,
    /// Operation names; `*` for all.
    #[serde(default = "all_ops")]
    pub ops: Vec<String>,
    /// The filter.
    pub filter: String,
}

fn all_ops() -> Vec<String> {
    vec!["*".to_owned()]
}

impl DenyRule {
    /// A rule refusing `ops` on `filter` to `who`.
    pub fn new(who: Who, ops: OpSet, filter: &str) -> Result<DenyRule, CapabilityError> {
        Ok(DenyRule {
            who,
            ops,
            filter: Resource::parse(filter)?,
        })
    }

    /// Builds a rule from its config entry.
    pub fn from_config(config: &DenyConfig) -> Result<DenyRule, AuthError> {
        if config.ops.is_empty() {
            return Err(CapabilityError::NoOperations(config.filter.clone()).into());
        }
        let ops = OpSet::parse(config.ops.iter().map(String::as_str))?;
        Ok(DenyRule::new(config.who.parse()?, ops, &config.filter)?)
    }

    /// Whether the rule applies to `principal`.
    pub fn applies_to(&self, principal: &Principal) -> bool {
        match &self.who {
            Who::Anyone => true,
            Who::Anonymous => principal.kind == PrincipalKind::Anonymous,
            Who::Key(name) => principal.key_name.as_deref() == Some(name.as_str()),
            Who::ClientId(id) => principal.client_id.as_deref() == Some(id.as_str()),
        }
    }

    /// Whether the rule refuses `op` on `channel` to `principal`.
    pub fn denies(&self, principal: &Principal, op: &Op, channel: &str) -> bool {
        self.ops.contains(op) && self.applies_to(principal) && self.filter.matches(channel)
    }

    /// Whether the rule refuses a subscription to the (inner) filter `filter`.
    pub(crate) fn denies_subscription(&self, principal: &Principal, filter: &Pattern) -> bool {
        self.ops.contains(&Op::Subscribe)
            && self.applies_to(principal)
            && self.filter.pattern.overlaps(filter)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::capability::Capability;

    fn principal(kind: PrincipalKind, key: Option<&str>, client: Option<&str>) -> Principal {
        Principal {
            kind,
            key_name: key.map(str::to_owned),
            client_id: client.map(str::to_owned),
            capability: Arc::new(Capability::all()),
            expires_at_ms: None,
        }
    }

    #[test]
    fn who_parses_and_applies() {
        assert_eq!("anyone".parse::<Who>().ok(), Some(Who::Anyone));
        assert_eq!("anonymous".parse::<Who>().ok(), Some(Who::Anonymous));
        assert_eq!("key:a.k".parse::<Who>().ok(), Some(Who::Key("a.k".into())));
        assert_eq!(
            "client:c:1".parse::<Who>().ok(),
            Some(Who::ClientId("c:1".into()))
        );
        for bad in ["", "everyone", "key:", "client:", "user:x"] {
            assert!(
                matches!(bad.parse::<Who>(), Err(AuthError::InvalidDenySubject(_))),
                "{bad}"
            );
        }
        let anon = principal(PrincipalKind::Anonymous, None, None);
        let tok = principal(PrincipalKind::Token, Some("a.k"), Some("c1"));
        let rule = |who| DenyRule::new(who, OpSet::all(), "x").expect("valid");
        assert!(rule(Who::Anyone).applies_to(&anon) && rule(Who::Anyone).applies_to(&tok));
        assert!(rule(Who::Anonymous).applies_to(&anon) && !rule(Who::Anonymous).applies_to(&tok));
        assert!(rule(Who::Key("a.k".into())).applies_to(&tok));
        assert!(!rule(Who::Key("a.k".into())).applies_to(&anon));
        assert!(rule(Who::ClientId("c1".into())).applies_to(&tok));
        assert!(!rule(Who::ClientId("c2".into())).applies_to(&tok));
    }

    #[test]
    fn config_entries() {
        let config: DenyConfig =
            serde_json::from_str(r#"{"who":"anyone","filter":"admin/#"}"#).expect("decodes");
        let rule = DenyRule::from_config(&config).expect("valid");
        assert!(rule.ops.is_all());
        let bad_ops = DenyConfig {
            ops: vec!["eat".into()],
            ..config.clone()
        };
        assert!(DenyRule::from_config(&bad_ops).is_err());
        let no_ops = DenyConfig {
            ops: vec![],
            ..config.clone()
        };
        assert!(DenyRule::from_config(&no_ops).is_err());
        let bad_filter = DenyConfig {
            filter: "#/x".into(),
            ..config
        };
        assert!(DenyRule::from_config(&bad_filter).is_err());
    }
}
