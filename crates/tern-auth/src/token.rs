//! Tern tokens: self-contained, stateless bearer tokens any node holding the
//! key can verify, and the TokenDetails that carries them.
//!
//! # Format
//! `base64url(payload) "." base64url(tag)` — exactly one `.` (a JWT has two,
//! so the two are told apart by counting dots), URL-safe base64 without
//! padding, so the token can sit in a URL, an MQTT username or a header
//! unchanged.
//! - `payload` is compact JSON:
//!   `{"keyName":…,"issued":ms,"expires":ms,"capability":"<canonical JSON>","clientId":…}`
//!   (`clientId` omitted when none). Unknown fields are refused.
//! - `tag` is HMAC-SHA-256 over the payload's base64url text, keyed not with
//!   the secret itself but with `HMAC-SHA-256(secret, "tern token v1")`, so
//!   that no tag made for a token can pass for a TokenRequest mac or a JWT
//!   signature made by a key holder, and the label can version the format.
//!
//! The payload is readable by whoever holds the token (like a JWT's); it
//! carries nothing secret. A token is valid from `issued` (minus the allowed
//! clock skew between nodes) until `expires`, and only while its key is
//! configured; its capability is intersected with the key's current one when
//! it is verified, so narrowing a key narrows its outstanding tokens.

use serde::{Deserialize, Serialize};

use crate::capability::Capability;
use crate::crypto;
use crate::error::{AuthError, TokenFormat};
use crate::key::ApiKey;

/// Longest bearer token accepted (Tern token or JWT), in bytes; enough for a
/// capability of [`crate::CAPABILITY_JSON_BYTES_MAX`] escaped and encoded.
pub const TOKEN_BYTES_MAX: usize = 64 * 1024;

/// A token and what it grants, with Ably's field names: what
/// `POST /keys/{keyName}/requestToken` returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenDetails {
    /// The token string to present.
    pub token: String,
    /// The key that issued it.
    pub key_name: String,
    /// When it was issued, ms since the Unix epoch.
    pub issued: u64,
    /// When it expires, ms since the Unix epoch (SDKs renew from this).
    pub expires: u64,
    /// Its capability, canonical JSON text.
    pub capability: String,
    /// The client id it binds, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

/// The signed content of a Tern token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Payload {
    key_name: String,
    issued: u64,
    expires: u64,
    capability: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_id: Option<String>,
}

/// What a verified Tern token says (its capability not yet intersected with
/// the key's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// The issuing key.
    pub key_name: String,
    /// Issue time, ms.
    pub issued_ms: u64,
    /// Expiry time, ms.
    pub expires_ms: u64,
    /// The capability written in the token.
    pub capability: Capability,
    /// The client id written in the token.
    pub client_id: Option<String>,
}

/// Issues a token for `key` valid `ttl_ms` from `now_ms`. No limit is
/// checked here: [`crate::Authenticator`] checks ttl and capability before
/// calling it.
pub fn issue_token(
    key: &ApiKey,
    ttl_ms: u64,
    capability: &Capability,
    client_id: Option<&str>,
    now_ms: u64,
) -> TokenDetails {
    let payload = Payload {
        key_name: key.name().to_owned(),
        issued: now_ms,
        expires: now_ms.saturating_add(ttl_ms),
        capability: capability.canonical().to_owned(),
        client_id: client_id.map(str::to_owned),
    };
    let json = serde_json::to_vec(&payload).expect("strings and integers always serialize");
    let body = crypto::b64_url(&json);
    let tag = crypto::hmac_sha256(key.token_mac_key(), &[body.as_bytes()]);
    TokenDetails {
        token: format!("{body}.{}", crypto::b64_url(&tag)),
        key_name: payload.key_name,
        issued: payload.issued,
        expires: payload.expires,
        capability: payload.capability,
        client_id: payload.client_id,
    }
}

/// Verifies a Tern token: format, issuing key (found with `key_for`), tag,
/// validity time (`issued - skew_ms <= now_ms < expires`), capability.
pub fn verify_token<'k>(
    token: &str,
    key_for: impl FnOnce(&str) -> Option<&'k ApiKey>,
    now_ms: u64,
    skew_ms: u64,
) -> Result<VerifiedToken, AuthError> {
    let malformed = |reason| AuthError::MalformedToken {
        format: TokenFormat::Tern,
        reason,
    };
    if token.len() > TOKEN_BYTES_MAX {
        return Err(malformed("too long"));
    }
    let (body, tag) = token.split_once('.').ok_or(malformed("no '.'"))?;
    if tag.contains('.') {
        return Err(malformed("more than one '.'"));
    }
    let json = crypto::b64_url_decode(body).ok_or(malformed("payload is not base64url"))?;
    let tag = crypto::b64_url_decode(tag).ok_or(malformed("tag is not base64url"))?;
    let payload: Payload =
        serde_json::from_slice(&json).map_err(|_| malformed("payload is not the expected JSON"))?;
    let key = key_for(&payload.key_name).ok_or_else(|| AuthError::TokenKeyUnknown {
        format: TokenFormat::Tern,
        key_name: payload.key_name.clone(),
    })?;
    if !crypto::hmac_sha256_verify(key.token_mac_key(), &[body.as_bytes()], &tag) {
        return Err(AuthError::BadSignature {
            format: TokenFormat::Tern,
        });
    }
    if now_ms >= payload.expires {
        return Err(AuthError::Expired {
            expired_at_ms: payload.expires,
        });
    }
    if payload.issued > now_ms.saturating_add(skew_ms) {
        return Err(AuthError::NotYetValid {
            valid_from_ms: payload.issued,
        });
    }
    let capability = Capability::parse(&payload.capability)
        .map_err(|_| malformed("capability does not parse"))?;
    Ok(VerifiedToken {
        key_name: payload.key_name,
        issued_ms: payload.issued,
        expires_ms: payload.expires,
        capability,
        client_id: payload.client_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ApiKey {
        ApiKey::parse("app.key:secret").expect("valid key")
    }

    fn verify(token: &str, now_ms: u64) -> Result<VerifiedToken, AuthError> {
        let k = key();
        verify_token(
            token,
            |name| (name == k.name()).then_some(&k),
            now_ms,
            1_000,
        )
    }

    #[test]
    fn issue_then_verify() {
        let cap = Capability::parse(r#"{"chat:*":["publish"]}"#).expect("valid");
        let details = issue_token(&key(), 60_000, &cap, Some("alice"), 1_000_000);
        assert_eq!(details.key_name, "app.key");
        assert_eq!(details.issued, 1_000_000);
        assert_eq!(details.expires, 1_060_000);
        assert_eq!(details.capability, r#"{"chat:*":["publish"]}"#);
        assert_eq!(details.token.matches('.').count(), 1, "one dot: not a JWT");
        let v = verify(&details.token, 1_000_000).expect("valid");
        assert_eq!(v.capability, cap);
        assert_eq!(v.client_id.as_deref(), Some("alice"));
        assert_eq!(v.expires_ms, 1_060_000);
        let json = serde_json::to_value(&details).unwrap_or_default();
        assert_eq!(json["keyName"], "app.key");
        assert_eq!(json["clientId"], "alice");
        let anonymous = issue_token(&key(), 1, &cap, None, 0);
        let json = serde_json::to_value(&anonymous).unwrap_or_default();
        assert!(json.get("clientId").is_none());
    }

    #[test]
    fn expiry_and_skew() {
        let details = issue_token(&key(), 60_000, &Capability::all(), None, 10_000);
        assert!(verify(&details.token, 69_999).is_ok());
        assert_eq!(
            verify(&details.token, 70_000).err(),
            Some(AuthError::Expired {
                expired_at_ms: 70_000
            })
        );
        // Issued up to the skew in the future (another node's clock) is fine.
        assert!(verify(&details.token, 9_000).is_ok());
        assert_eq!(
            verify(&details.token, 8_999).err(),
            Some(AuthError::NotYetValid {
                valid_from_ms: 10_000
            })
        );
    }

    #[test]
    fn tampering_is_detected() {
        let details = issue_token(
            &key(),
            60_000,
            &Capability::parse(r#"{"a":["subscribe"]}"#).expect("valid"),
            None,
            0,
        );
        let (body, tag) = details.token.split_once('.').expect("one dot");
        // A payload granting more, with the old tag.
        let forged = Payload {
            key_name: "app.key".into(),
            issued: 0,
            expires: 60_000,
            capability: r#"{"*":["*"]}"#.into(),
            client_id: None,
        };
        let forged_body = crypto::b64_url(&serde_json::to_vec(&forged).unwrap_or_default());
        assert_eq!(
            verify(&format!("{forged_body}.{tag}"), 0).err(),
            Some(AuthError::BadSignature {
                format: TokenFormat::Tern
            })
        );
        // A flipped tag byte.
        let mut raw_tag = crypto::b64_url_decode(tag).unwrap_or_default();
        raw_tag[0] ^= 1;
        assert_eq!(
            verify(&format!("{body}.{}", crypto::b64_url(&raw_tag)), 0).err(),
            Some(AuthError::BadSignature {
                format: TokenFormat::Tern
            })
        );
        // Signed by another key with the same name.
        let other = ApiKey::parse("app.key:other").expect("valid key");
        let foreign = issue_token(&other, 60_000, &Capability::all(), None, 0);
        assert_eq!(
            verify(&foreign.token, 0).err(),
            Some(AuthError::BadSignature {
                format: TokenFormat::Tern
            })
        );
        // A tag made with the raw secret (as a key holder would for a JWT) is refused.
        let raw = crypto::b64_url(&crypto::hmac_sha256(b"secret", &[body.as_bytes()]));
        assert!(verify(&format!("{body}.{raw}"), 0).is_err());
    }

    #[test]
    fn malformed_and_unknown_key() {
        for bad in ["", "abc", "a.b.c", "!!.abc", "abc.!!", "e30.AAAA"] {
            assert!(
                matches!(
                    verify(bad, 0),
                    Err(AuthError::MalformedToken {
                        format: TokenFormat::Tern,
                        ..
                    })
                ),
                "{bad}"
            );
        }
        let long = "a".repeat(TOKEN_BYTES_MAX + 1);
        assert!(matches!(
            verify(&long, 0),
            Err(AuthError::MalformedToken { .. })
        ));
        let other = ApiKey::parse("app.gone:secret").expect("valid key");
        let orphan = issue_token(&other, 60_000, &Capability::all(), None, 0);
        assert_eq!(
            verify(&orphan.token, 0).err(),
            Some(AuthError::TokenKeyUnknown {
                format: TokenFormat::Tern,
                key_name: "app.gone".into()
            })
        );
    }
}
