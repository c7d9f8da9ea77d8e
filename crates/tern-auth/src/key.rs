//! API keys: `appId.keyId:secret`, as Ably writes them.
//!
//! The part before `:` is the key *name* (`appId.keyId`): it is public, it is
//! the MQTT username, and it is how TokenRequests, tokens and JWTs (`kid`)
//! say which key signed them. The part after `:` is the secret: the MQTT
//! password, and the HMAC key of everything signed with this key.

use std::fmt;
use std::sync::Arc;

use crate::capability::Capability;
use crate::crypto;

/// Why a key string is refused; each variant names the broken rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyFormatError {
    /// No `:` between the name and the secret.
    #[error("an API key is appId.keyId:secret, and this one has no ':'")]
    MissingColon,
    /// Nothing after the `:`.
    #[error("the secret of an API key (after ':') may not be empty")]
    EmptySecret,
    /// The name has no `.` between app id and key id.
    #[error("the name of an API key is appId.keyId, and this one has no '.'")]
    MissingDot,
    /// The name has more than one `.`.
    #[error("the name of an API key is appId.keyId, with exactly one '.'")]
    ExtraDot,
    /// Nothing before the `.`.
    #[error("the app id of an API key (before '.') may not be empty")]
    EmptyAppId,
    /// Nothing between the `.` and the `:`.
    #[error("the key id of an API key (between '.' and ':') may not be empty")]
    EmptyKeyId,
    /// Whitespace or a control character in the key (usually a paste error).
    #[error("an API key may not contain whitespace or control characters")]
    BadCharacter,
}

/// An API key: its name, its secret, and what it may do.
#[derive(Clone)]
pub struct ApiKey {
    /// `appId.keyId`.
    name: String,
    /// Where the `.` is in `name`, to give `app_id`/`key_id` without parsing.
    dot: usize,
    /// The secret, the HMAC key for TokenRequests and JWTs.
    secret: String,
    /// HMAC key for Tern tokens, derived from the secret so that a Tern
    /// token's tag can never be mistaken for a MAC made by a key holder.
    token_mac_key: [u8; 32],
    /// What the key, and every token it issues, may do at most.
    capability: Arc<Capability>,
}

impl ApiKey {
    /// Parses `appId.keyId:secret`, with the capability `{"*":["*"]}`.
    pub fn parse(text: &str) -> Result<ApiKey, KeyFormatError> {
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(KeyFormatError::BadCharacter);
        }
        let (name, secret) = text.split_once(':').ok_or(KeyFormatError::MissingColon)?;
        if secret.is_empty() {
            return Err(KeyFormatError::EmptySecret);
        }
        let dot = name.find('.').ok_or(KeyFormatError::MissingDot)?;
        let (app_id, key_id) = (&name[..dot], &name[dot + 1..]);
        if key_id.contains('.') {
            return Err(KeyFormatError::ExtraDot);
        }
        if app_id.is_empty() {
            return Err(KeyFormatError::EmptyAppId);
        }
        if key_id.is_empty() {
            return Err(KeyFormatError::EmptyKeyId);
        }
        Ok(ApiKey {
            name: name.to_owned(),
            dot,
            secret: secret.to_owned(),
            token_mac_key: crypto::hmac_sha256(secret.as_bytes(), &[b"tern token v1"]),
            capability: Arc::new(Capability::all()),
        })
    }

    /// The same key limited to `capability`.
    pub fn with_capability(mut self, capability: Capability) -> ApiKey {
        self.capability = Arc::new(capability);
        self
    }

    /// `appId.keyId`: the public name (MQTT username, `keyName`, JWT `kid`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The app id (before the `.`).
    pub fn app_id(&self) -> &str {
        &self.name[..self.dot]
    }

    /// The key id (after the `.`).
    pub fn key_id(&self) -> &str {
        &self.name[self.dot + 1..]
    }

    /// The secret. Handle with care: it signs everything for this key.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The most this key, and any token it issues, may do.
    pub fn capability(&self) -> &Arc<Capability> {
        &self.capability
    }

    /// The HMAC key of Tern tokens issued by this key.
    pub(crate) fn token_mac_key(&self) -> &[u8; 32] {
        &self.token_mac_key
    }

    /// Whether `secret` is this key's secret, compared in constant time.
    pub fn secret_matches(&self, secret: &str) -> bool {
        crypto::secrets_equal(self.secret.as_bytes(), secret.as_bytes())
    }
}

/// Never prints the secret.
impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey")
            .field("name", &self.name)
            .field("secret", &"<redacted>")
            .field("capability", &self.capability)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_name_secret_and_default_capability() {
        let key = ApiKey::parse("app1.key1:s3cr:et").expect("valid key");
        assert_eq!(key.name(), "app1.key1");
        assert_eq!(key.app_id(), "app1");
        assert_eq!(key.key_id(), "key1");
        assert_eq!(
            key.secret(),
            "s3cr:et",
            "the secret is everything after the first ':'"
        );
        assert_eq!(key.capability().canonical(), r#"{"*":["*"]}"#);
        assert!(key.secret_matches("s3cr:et"));
        assert!(!key.secret_matches("s3cr"));
    }

    #[test]
    fn errors_name_the_rule() {
        let err = |t: &str| ApiKey::parse(t).err();
        assert_eq!(err("app.key"), Some(KeyFormatError::MissingColon));
        assert_eq!(err("app.key:"), Some(KeyFormatError::EmptySecret));
        assert_eq!(err("appkey:s"), Some(KeyFormatError::MissingDot));
        assert_eq!(err("a.b.c:s"), Some(KeyFormatError::ExtraDot));
        assert_eq!(err(".key:s"), Some(KeyFormatError::EmptyAppId));
        assert_eq!(err("app.:s"), Some(KeyFormatError::EmptyKeyId));
        assert_eq!(err("app.key:s s"), Some(KeyFormatError::BadCharacter));
        assert_eq!(err("app.key:s\n"), Some(KeyFormatError::BadCharacter));
    }

    #[test]
    fn debug_hides_the_secret() {
        let key = ApiKey::parse("app.key:topsecret").expect("valid key");
        let shown = format!("{key:?}");
        assert!(!shown.contains("topsecret"), "{shown}");
        assert!(shown.contains("app.key"));
    }

    #[test]
    fn capability_can_be_narrowed() {
        let cap = Capability::parse(r#"{"chat:*":["publish"]}"#).expect("valid capability");
        let key = ApiKey::parse("app.key:s")
            .expect("valid key")
            .with_capability(cap.clone());
        assert_eq!(**key.capability(), cap);
    }
}
