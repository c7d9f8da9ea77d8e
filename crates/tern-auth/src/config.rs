//! What the server reads from its TOML file: keys, deny rules, limits.
//!
//! ```toml
//! [[keys]]
//! key = "app.admin:s3cret"                      # appId.keyId:secret
//!
//! [[keys]]
//! key = "app.device:0ther"
//! capability = '{"sensors/#":["publish"],"cmd:*":["subscribe"]}'   # default {"*":["*"]}
//!
//! [[deny]]
//! who = "anyone"
//! ops = ["subscribe"]
//! filter = "admin/#"
//!
//! [limits]
//! ttl_max_ms = 86400000
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::capability::Capability;
use crate::deny::DenyConfig;
use crate::error::AuthError;
use crate::key::ApiKey;

/// A `[[keys]]` entry.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// `appId.keyId:secret`.
    pub key: String,
    /// Capability JSON; absent for `{"*":["*"]}`.
    #[serde(default)]
    pub capability: Option<String>,
}

impl KeyConfig {
    /// The key this entry describes.
    pub fn to_key(&self) -> Result<ApiKey, AuthError> {
        let key = ApiKey::parse(&self.key)?;
        Ok(match &self.capability {
            Some(json) => key.with_capability(Capability::parse(json)?),
            None => key,
        })
    }
}

/// Never prints the secret.
impl fmt::Debug for KeyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self
            .key
            .split_once(':')
            .map_or("<malformed>", |(name, _)| name);
        f.debug_struct("KeyConfig")
            .field("key", &format_args!("{name}:<redacted>"))
            .field("capability", &self.capability)
            .finish()
    }
}

/// Token and TokenRequest limits. Every field has a default (Ably's values);
/// [`AuthLimits::validate`] checks their relations at startup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthLimits {
    /// Token lifetime when the request gives no ttl (Ably: 1 h).
    pub ttl_default_ms: u64,
    /// Longest token lifetime granted, and longest JWT `exp - iat` accepted
    /// (Ably: 24 h).
    pub ttl_max_ms: u64,
    /// How far a TokenRequest's timestamp may be from the server clock,
    /// either way (Ably: 2 min). Also how long its nonce is remembered.
    pub timestamp_window_ms: u64,
    /// Most TokenRequest nonces remembered at once; past it, new requests are
    /// refused until old nonces age out. At the default window this allows
    /// about 830 token requests a second.
    pub nonce_cache_entries_max: usize,
    /// How far in the future a token's or JWT's issue time may be (clocks of
    /// other nodes and of JWT signers drift).
    pub clock_skew_ms: u64,
}

impl Default for AuthLimits {
    fn default() -> AuthLimits {
        AuthLimits {
            ttl_default_ms: 3_600_000,
            ttl_max_ms: 86_400_000,
            timestamp_window_ms: 120_000,
            nonce_cache_entries_max: 100_000,
            clock_skew_ms: 30_000,
        }
    }
}

impl AuthLimits {
    /// Checks each value and the relations between them.
    pub fn validate(&self) -> Result<(), AuthError> {
        if self.ttl_default_ms == 0 {
            return Err(AuthError::InvalidSetting("ttl_default_ms must be positive"));
        }
        if self.ttl_default_ms > self.ttl_max_ms {
            return Err(AuthError::InvalidSetting(
                "ttl_default_ms must not exceed ttl_max_ms",
            ));
        }
        if self.timestamp_window_ms == 0 {
            return Err(AuthError::InvalidSetting(
                "timestamp_window_ms must be positive",
            ));
        }
        if self.nonce_cache_entries_max == 0 {
            return Err(AuthError::InvalidSetting(
                "nonce_cache_entries_max must be positive",
            ));
        }
        if self.clock_skew_ms > self.ttl_max_ms {
            return Err(AuthError::InvalidSetting(
                "clock_skew_ms must not exceed ttl_max_ms",
            ));
        }
        Ok(())
    }
}

/// Everything the [`crate::Authenticator`] is built from, as one
/// deserializable block (the server may embed it or its parts).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthConfig {
    /// `[[keys]]`.
    pub keys: Vec<KeyConfig>,
    /// `[[deny]]`.
    pub deny: Vec<DenyConfig>,
    /// `[limits]`.
    pub limits: AuthLimits,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_config_builds_the_key_and_hides_the_secret() {
        let config = KeyConfig {
            key: "app.k:s3cret".into(),
            capability: Some(r#"{"a":["publish"]}"#.into()),
        };
        let key = config.to_key().expect("valid");
        assert_eq!(key.capability().canonical(), r#"{"a":["publish"]}"#);
        assert!(!format!("{config:?}").contains("s3cret"));
        let bad = KeyConfig {
            key: "app.k:s".into(),
            capability: Some(r#"{"a":["eat"]}"#.into()),
        };
        assert!(matches!(bad.to_key(), Err(AuthError::InvalidCapability(_))));
        let bad = KeyConfig {
            key: "appk:s".into(),
            capability: None,
        };
        assert!(matches!(bad.to_key(), Err(AuthError::InvalidKey(_))));
    }

    #[test]
    fn limits_relations() {
        assert_eq!(AuthLimits::default().validate(), Ok(()));
        let bad = [
            AuthLimits {
                ttl_default_ms: 0,
                ..AuthLimits::default()
            },
            AuthLimits {
                ttl_default_ms: 2,
                ttl_max_ms: 1,
                clock_skew_ms: 0,
                ..AuthLimits::default()
            },
            AuthLimits {
                timestamp_window_ms: 0,
                ..AuthLimits::default()
            },
            AuthLimits {
                nonce_cache_entries_max: 0,
                ..AuthLimits::default()
            },
            AuthLimits {
                clock_skew_ms: 86_400_001,
                ..AuthLimits::default()
            },
        ];
        for limits in bad {
            assert!(
                matches!(limits.validate(), Err(AuthError::InvalidSetting(_))),
                "{limits:?}"
            );
        }
    }

    #[test]
    fn reads_toml() {
        let text = r#"
            [[keys]]
            key = "app.admin:s3cret"

            [[keys]]
            key = "app.device:0ther"
            capability = '{"sensors/#":["publish"],"cmd:*":["subscribe"]}'

            [[deny]]
            who = "anyone"
            ops = ["subscribe"]
            filter = "admin/#"

            [limits]
            ttl_max_ms = 7200000
        "#;
        let config: AuthConfig = toml::from_str(text).expect("parses");
        assert_eq!(config.keys.len(), 2);
        assert_eq!(
            config.keys[1]
                .to_key()
                .map(|k| k.name().to_owned())
                .ok()
                .as_deref(),
            Some("app.device")
        );
        assert_eq!(config.deny[0].ops, vec!["subscribe".to_owned()]);
        assert_eq!(config.limits.ttl_max_ms, 7_200_000);
        assert_eq!(config.limits.ttl_default_ms, 3_600_000);
        let empty: AuthConfig = toml::from_str("").expect("parses");
        assert_eq!(empty, AuthConfig::default());
        assert!(toml::from_str::<AuthConfig>("[[keys]]\nkey = \"a.b:c\"\nsecret = 1").is_err());
        assert!(toml::from_str::<AuthConfig>("[limits]\nttl_max = 1").is_err());
    }
}
