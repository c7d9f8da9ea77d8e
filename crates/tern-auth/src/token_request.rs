//! TokenRequests (signed by a key holder, exchanged for a token without
//! sending the secret) and TokenParams (what a key-authenticated caller asks
//! for directly).
//!
//! # The mac
//! `mac` = base64(HMAC-SHA-256(secret, text)) where `text` is
//! `keyName\nttl\ncapability\nclientId\ntimestamp\nnonce\n`: every field
//! followed by a newline, an absent field as the empty string, numbers in
//! decimal, and `capability` the JSON text exactly as carried in the request
//! (ably-js puts the canonical form there). [`TokenRequest::verify`] checks
//! the mac over the capability text as received and, if that fails, over its
//! canonical form, so a signer that canonicalises differently from the sender
//! still verifies; both texts mean the same capability.
//!
//! # Lenient decoding
//! Ably SDKs differ in small ways, so decoding accepts: `ttl`/`timestamp` as
//! a number or a decimal string; `capability` as a JSON string or an object;
//! `null` or `""` for an absent field. Every field may be missing when
//! decoding, so that [`verify`](TokenRequest::verify) can name what is
//! missing instead of a generic parse error.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::capability::{Capability, CapabilityError};
use crate::crypto;
use crate::error::AuthError;
use crate::key::ApiKey;

/// Ably's minimum nonce length, in characters.
pub const NONCE_CHARS_MIN: usize = 16;

/// What a token is asked for with: Ably's TokenParams (`ttl` in ms,
/// `capability` JSON text, `clientId`). Other TokenParams fields
/// (`timestamp`, `nonce`) are accepted and ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenParams {
    /// Lifetime in ms; `None` for the configured default.
    #[serde(
        default,
        deserialize_with = "de_opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub ttl: Option<u64>,
    /// Capability JSON; `None` for the key's whole capability.
    #[serde(
        default,
        deserialize_with = "de_opt_capability",
        skip_serializing_if = "Option::is_none"
    )]
    pub capability: Option<String>,
    /// The client id the token binds; `None` for an anonymous token, `*` for
    /// a token whose holder may claim any client id.
    #[serde(
        default,
        deserialize_with = "de_opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub client_id: Option<String>,
}

/// A signed TokenRequest, with Ably's field names.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenRequest {
    /// The name of the signing key, `appId.keyId`.
    #[serde(default)]
    pub key_name: String,
    /// Lifetime in ms; `None` for the default.
    #[serde(
        default,
        deserialize_with = "de_opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub ttl: Option<u64>,
    /// Capability JSON text (canonical when Tern or ably-js signs);
    /// `None` for the key's whole capability.
    #[serde(
        default,
        deserialize_with = "de_opt_capability",
        skip_serializing_if = "Option::is_none"
    )]
    pub capability: Option<String>,
    /// The client id to bind.
    #[serde(
        default,
        deserialize_with = "de_opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub client_id: Option<String>,
    /// When it was signed, ms since the Unix epoch (required).
    #[serde(
        default,
        deserialize_with = "de_opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub timestamp: Option<u64>,
    /// A string used once (required, at least [`NONCE_CHARS_MIN`] characters).
    #[serde(
        default,
        deserialize_with = "de_opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub nonce: Option<String>,
    /// Base64 HMAC-SHA-256 of the fields (required; see the module docs).
    #[serde(
        default,
        deserialize_with = "de_opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub mac: Option<String>,
}

/// What a TokenRequest that passed [`TokenRequest::verify`] asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedTokenRequest {
    /// The parameters, capability as received.
    pub params: TokenParams,
    /// The request's timestamp, ms.
    pub timestamp_ms: u64,
    /// The request's nonce (length checked, not yet recorded).
    pub nonce: String,
}

impl TokenRequest {
    /// Builds and signs a TokenRequest for `params` with `key`, as an Ably
    /// SDK's `createTokenRequest` does: the capability is put in canonical
    /// form first. For tests and for `tern token`; `nonce` can come from
    /// [`random_nonce`].
    pub fn sign(
        key: &ApiKey,
        params: &TokenParams,
        timestamp_ms: u64,
        nonce: &str,
    ) -> Result<TokenRequest, CapabilityError> {
        let capability = match params.capability.as_deref() {
            Some(text) => Some(Capability::parse(text)?.canonical().to_owned()),
            None => None,
        };
        let mut request = TokenRequest {
            key_name: key.name().to_owned(),
            ttl: params.ttl,
            capability,
            client_id: params.client_id.clone(),
            timestamp: Some(timestamp_ms),
            nonce: Some(nonce.to_owned()),
            mac: None,
        };
        let text = request.mac_text(request.capability.as_deref().unwrap_or(""));
        request.mac = Some(mac_of(key, &text));
        Ok(request)
    }

    /// The text the mac covers, with `capability` as the capability text.
    pub fn mac_text(&self, capability: &str) -> String {
        fn num(n: Option<u64>) -> String {
            n.map(|n| n.to_string()).unwrap_or_default()
        }
        format!(
            "{}\n{}\n{}\n{}\n{}\n{}\n",
            self.key_name,
            num(self.ttl),
            capability,
            self.client_id.as_deref().unwrap_or(""),
            num(self.timestamp),
            self.nonce.as_deref().unwrap_or(""),
        )
    }

    /// Checks everything about the request that needs no memory of earlier
    /// ones: required fields, the mac under `key`, the timestamp within
    /// `window_ms` of `now_ms`, the nonce's length. The caller must still
    /// record the nonce (see [`crate::NonceCache`]) and check ttl and
    /// capability against its limits ([`crate::Authenticator::request_token`]
    /// does all of it).
    pub fn verify(
        &self,
        key: &ApiKey,
        now_ms: u64,
        window_ms: u64,
    ) -> Result<VerifiedTokenRequest, AuthError> {
        let timestamp_ms = self.timestamp.ok_or(AuthError::MissingField("timestamp"))?;
        let nonce = self
            .nonce
            .as_deref()
            .ok_or(AuthError::MissingField("nonce"))?;
        let mac = self.mac.as_deref().ok_or(AuthError::MissingField("mac"))?;
        if !self.mac_matches(key, mac) {
            return Err(AuthError::BadMac);
        }
        if timestamp_ms.abs_diff(now_ms) > window_ms {
            return Err(AuthError::TimestampOutOfWindow {
                timestamp_ms,
                now_ms,
                window_ms,
            });
        }
        let chars = nonce.chars().count();
        if chars < NONCE_CHARS_MIN {
            return Err(AuthError::NonceTooShort {
                chars,
                min: NONCE_CHARS_MIN,
            });
        }
        Ok(VerifiedTokenRequest {
            params: TokenParams {
                ttl: self.ttl,
                capability: self.capability.clone(),
                client_id: self.client_id.clone(),
            },
            timestamp_ms,
            nonce: nonce.to_owned(),
        })
    }

    /// Whether `mac` is the key's mac of the fields, with the capability as
    /// received or in canonical form.
    fn mac_matches(&self, key: &ApiKey, mac: &str) -> bool {
        let Some(tag) = crypto::b64_std_decode(mac) else {
            return false;
        };
        let as_received = self.capability.as_deref().unwrap_or("");
        let check = |capability: &str| {
            let text = self.mac_text(capability);
            crypto::hmac_sha256_verify(key.secret().as_bytes(), &[text.as_bytes()], &tag)
        };
        if check(as_received) {
            return true;
        }
        match Capability::parse(as_received) {
            Ok(c) if c.canonical() != as_received => check(c.canonical()),
            _ => false,
        }
    }
}

/// Never prints the mac (it is a credential until its nonce is used).
impl fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenRequest")
            .field("key_name", &self.key_name)
            .field("ttl", &self.ttl)
            .field("capability", &self.capability)
            .field("client_id", &self.client_id)
            .field("timestamp", &self.timestamp)
            .field("nonce", &self.nonce)
            .field("mac", &self.mac.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The base64 mac of `text` under the key's secret.
pub fn mac_of(key: &ApiKey, text: &str) -> String {
    crypto::b64_std(&crypto::hmac_sha256(
        key.secret().as_bytes(),
        &[text.as_bytes()],
    ))
}

/// A fresh random nonce: 24 URL-safe base64 characters (144 bits).
pub fn random_nonce() -> Result<String, AuthError> {
    let mut bytes = [0u8; 18];
    getrandom::fill(&mut bytes).map_err(|_| AuthError::RandomUnavailable)?;
    Ok(crypto::b64_url(&bytes))
}

// ---- lenient field decoding --------------------------------------------------

/// `u64` from a number, a decimal string, `null` or `""`.
fn de_opt_u64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<u64>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a non-negative integer, a decimal string, or null")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Option<u64>, E> {
            Ok(Some(v))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Option<u64>, E> {
            u64::try_from(v)
                .map(Some)
                .map_err(|_| E::custom("must not be negative"))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Option<u64>, E> {
            // JavaScript numbers: accept integral values within 2^53.
            if v.fract() == 0.0 && (0.0..=9_007_199_254_740_992.0).contains(&v) {
                Ok(Some(v as u64))
            } else {
                Err(E::custom("must be a non-negative integer"))
            }
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<u64>, E> {
            if v.is_empty() {
                return Ok(None);
            }
            if !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(E::custom("must be a decimal integer"));
            }
            v.parse()
                .map(Some)
                .map_err(|_| E::custom("integer too large"))
        }
        fn visit_none<E: de::Error>(self) -> Result<Option<u64>, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Option<u64>, E> {
            Ok(None)
        }
        fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Option<u64>, D2::Error> {
            d.deserialize_any(V)
        }
    }
    deserializer.deserialize_any(V)
}

/// A string, with `null` and `""` meaning absent.
fn de_opt_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(deserializer)?.filter(|s| !s.is_empty()))
}

/// Capability JSON text, given as a string or as the object itself.
fn de_opt_capability<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::String(s) if s.is_empty() => Ok(None),
        serde_json::Value::String(s) => Ok(Some(s)),
        object @ serde_json::Value::Object(_) => Ok(Some(object.to_string())),
        _ => Err(de::Error::custom(
            "capability must be a JSON string or object",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ApiKey {
        ApiKey::parse("app.key:secret").expect("valid key")
    }

    const NONCE: &str = "0123456789abcdef";

    #[test]
    fn mac_text_has_every_field_and_empty_ones() {
        let request = TokenRequest {
            key_name: "app.key".into(),
            timestamp: Some(5),
            nonce: Some(NONCE.into()),
            ..TokenRequest::default()
        };
        assert_eq!(request.mac_text(""), "app.key\n\n\n\n5\n0123456789abcdef\n");
    }

    #[test]
    fn sign_then_verify() {
        let params = TokenParams {
            ttl: Some(60_000),
            capability: Some(r#"{ "b":["subscribe"], "a":["publish","publish"] }"#.into()),
            client_id: Some("alice".into()),
        };
        let request = TokenRequest::sign(&key(), &params, 1_000, NONCE).expect("signs");
        assert_eq!(
            request.capability.as_deref(),
            Some(r#"{"a":["publish"],"b":["subscribe"]}"#)
        );
        let verified = request.verify(&key(), 1_000, 120_000).expect("verifies");
        assert_eq!(verified.params.client_id.as_deref(), Some("alice"));
        assert_eq!(verified.timestamp_ms, 1_000);
        let json = serde_json::to_string(&request).unwrap_or_default();
        let back: TokenRequest = serde_json::from_str(&json).expect("decodes");
        assert_eq!(back, request);
    }

    #[test]
    fn every_field_is_covered_by_the_mac() {
        let params = TokenParams {
            ttl: Some(60_000),
            capability: Some(r#"{"a":["publish"]}"#.into()),
            client_id: Some("alice".into()),
        };
        let good = TokenRequest::sign(&key(), &params, 1_000, NONCE).expect("signs");
        let tampered = [
            TokenRequest {
                ttl: Some(60_001),
                ..good.clone()
            },
            TokenRequest {
                ttl: None,
                ..good.clone()
            },
            TokenRequest {
                capability: Some(r#"{"*":["*"]}"#.into()),
                ..good.clone()
            },
            TokenRequest {
                client_id: Some("bob".into()),
                ..good.clone()
            },
            TokenRequest {
                client_id: None,
                ..good.clone()
            },
            TokenRequest {
                timestamp: Some(1_001),
                ..good.clone()
            },
            TokenRequest {
                nonce: Some("0123456789abcdeX".into()),
                ..good.clone()
            },
            TokenRequest {
                key_name: "app.key2".into(),
                ..good.clone()
            },
            TokenRequest {
                mac: Some("not base64!".into()),
                ..good.clone()
            },
        ];
        for request in tampered {
            assert_eq!(
                request.verify(&key(), 1_000, 120_000).err(),
                Some(AuthError::BadMac),
                "{request:?}"
            );
        }
        let other = ApiKey::parse("app.key:other").expect("valid key");
        assert_eq!(
            good.verify(&other, 1_000, 120_000).err(),
            Some(AuthError::BadMac)
        );
    }

    #[test]
    fn mac_over_a_non_canonical_capability_verifies_either_way() {
        let raw = r#"{"b":["subscribe"],"a":["publish"]}"#;
        // Signed over the text as sent (a naive signer).
        let mut request = TokenRequest {
            key_name: "app.key".into(),
            capability: Some(raw.into()),
            timestamp: Some(1_000),
            nonce: Some(NONCE.into()),
            ..TokenRequest::default()
        };
        request.mac = Some(mac_of(&key(), &request.mac_text(raw)));
        assert!(request.verify(&key(), 1_000, 120_000).is_ok());
        // Signed over the canonical text but sent as written.
        request.mac = Some(mac_of(
            &key(),
            &request.mac_text(r#"{"a":["publish"],"b":["subscribe"]}"#),
        ));
        assert!(request.verify(&key(), 1_000, 120_000).is_ok());
    }

    #[test]
    fn timestamp_window_both_ways() {
        let request =
            TokenRequest::sign(&key(), &TokenParams::default(), 200_000, NONCE).expect("signs");
        assert!(request.verify(&key(), 320_000, 120_000).is_ok());
        assert!(request.verify(&key(), 80_000, 120_000).is_ok());
        assert!(matches!(
            request.verify(&key(), 320_001, 120_000),
            Err(AuthError::TimestampOutOfWindow { .. })
        ));
        assert!(matches!(
            request.verify(&key(), 79_999, 120_000),
            Err(AuthError::TimestampOutOfWindow { .. })
        ));
    }

    #[test]
    fn short_nonce_and_missing_fields() {
        let short = TokenRequest::sign(&key(), &TokenParams::default(), 0, "0123456789abcde")
            .expect("signs");
        assert_eq!(
            short.verify(&key(), 0, 120_000).err(),
            Some(AuthError::NonceTooShort { chars: 15, min: 16 })
        );
        // Characters, not bytes.
        let wide = TokenRequest::sign(&key(), &TokenParams::default(), 0, "ééééééééééééééé")
            .expect("signs");
        assert!(matches!(
            wide.verify(&key(), 0, 120_000),
            Err(AuthError::NonceTooShort { chars: 15, .. })
        ));
        let good = TokenRequest::sign(&key(), &TokenParams::default(), 0, NONCE).expect("signs");
        for (request, field) in [
            (
                TokenRequest {
                    timestamp: None,
                    ..good.clone()
                },
                "timestamp",
            ),
            (
                TokenRequest {
                    nonce: None,
                    ..good.clone()
                },
                "nonce",
            ),
            (
                TokenRequest {
                    mac: None,
                    ..good.clone()
                },
                "mac",
            ),
        ] {
            assert_eq!(
                request.verify(&key(), 0, 120_000).err(),
                Some(AuthError::MissingField(field))
            );
        }
    }

    #[test]
    fn lenient_decoding() {
        let request: TokenRequest = serde_json::from_str(
            r#"{"keyName":"app.key","ttl":"3600000","capability":{"a":["publish"]},"clientId":"","timestamp":1.7e12,"nonce":"n","mac":null,"extra":1}"#,
        )
        .expect("decodes");
        assert_eq!(request.ttl, Some(3_600_000));
        assert_eq!(request.capability.as_deref(), Some(r#"{"a":["publish"]}"#));
        assert_eq!(request.client_id, None);
        assert_eq!(request.timestamp, Some(1_700_000_000_000));
        assert_eq!(request.mac, None);
        let empty: TokenRequest = serde_json::from_str("{}").expect("decodes");
        assert_eq!(empty, TokenRequest::default());
        assert!(serde_json::from_str::<TokenRequest>(r#"{"ttl":-1}"#).is_err());
        assert!(serde_json::from_str::<TokenRequest>(r#"{"ttl":"1h"}"#).is_err());
        assert!(serde_json::from_str::<TokenRequest>(r#"{"ttl":1.5}"#).is_err());
        assert!(serde_json::from_str::<TokenRequest>(r#"{"capability":[1]}"#).is_err());
        let params: TokenParams =
            serde_json::from_str(r#"{"ttl":1000,"clientId":"c","timestamp":5,"nonce":"x"}"#)
                .expect("decodes");
        assert_eq!(params.ttl, Some(1000));
        assert_eq!(params.client_id.as_deref(), Some("c"));
    }

    #[test]
    fn debug_hides_the_mac() {
        let request = TokenRequest::sign(&key(), &TokenParams::default(), 0, NONCE).expect("signs");
        let mac = request.mac.clone().unwrap_or_default();
        assert!(!format!("{request:?}").contains(&mac));
    }

    #[test]
    fn random_nonces_are_long_and_distinct() {
        let a = random_nonce().expect("random");
        let b = random_nonce().expect("random");
        assert!(a.len() >= NONCE_CHARS_MIN);
        assert_ne!(a, b);
    }
}
