//! Ably JWTs: HS256 only, signed with a key's secret, the key named by the
//! header's `kid`.
//!
//! Implemented directly on HMAC-SHA-256 and base64url (no JWT library), so
//! that what is accepted is exactly what is written here:
//! - header: `alg` must be `HS256` (anything else — `none`, `HS512`, `RS256`
//!   — is refused before the signature is looked at); `kid` is required; `typ`,
//!   if present, must be `JWT` (any case); a `crit` header is refused (no
//!   extensions are understood);
//! - signature: HMAC-SHA-256 with the key secret over `header.claims` (the
//!   base64url texts as received), compared in constant time;
//! - claims (read only after the signature verified): `iat`, `exp` (seconds,
//!   integer or fractional) and `x-ably-capability` (capability JSON as a
//!   string) are required; `x-ably-clientId` and `nbf` are optional;
//! - time: expired when `exp <= now`; not yet valid when `iat` or `nbf` is
//!   later than now plus the allowed clock skew; refused when `exp - iat`
//!   exceeds the maximum token ttl (Tern's rule: a JWT may not outlive a
//!   token Tern would issue).

use serde::{Deserialize, Serialize};

use crate::capability::Capability;
use crate::crypto;
use crate::error::{AuthError, TokenFormat};
use crate::key::ApiKey;
use crate::token::TOKEN_BYTES_MAX;

/// What a verified JWT says (its capability not yet intersected with the
/// key's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedJwt {
    /// The signing key (`kid`).
    pub key_name: String,
    /// `iat`, in ms.
    pub issued_ms: u64,
    /// `exp`, in ms.
    pub expires_ms: u64,
    /// `x-ably-capability`.
    pub capability: Capability,
    /// `x-ably-clientId`.
    pub client_id: Option<String>,
}

#[derive(Serialize)]
struct HeaderOut<'a> {
    alg: &'a str,
    typ: &'a str,
    kid: &'a str,
}

#[derive(Serialize)]
struct ClaimsOut<'a> {
    iat: u64,
    exp: u64,
    #[serde(rename = "x-ably-capability")]
    capability: &'a str,
    #[serde(rename = "x-ably-clientId", skip_serializing_if = "Option::is_none")]
    client_id: Option<&'a str>,
}

#[derive(Deserialize)]
struct HeaderIn {
    alg: Option<String>,
    kid: Option<String>,
    typ: Option<String>,
    crit: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct ClaimsIn {
    iat: Option<f64>,
    exp: Option<f64>,
    nbf: Option<f64>,
    #[serde(rename = "x-ably-capability")]
    capability: Option<String>,
    #[serde(rename = "x-ably-clientId")]
    client_id: Option<String>,
}

/// Makes an HS256 JWT for `key` (for tests and `tern token`): `iat_s` and
/// `exp_s` in seconds, the capability in canonical form.
pub fn encode_hs256(
    key: &ApiKey,
    iat_s: u64,
    exp_s: u64,
    capability: &Capability,
    client_id: Option<&str>,
) -> String {
    let header = HeaderOut {
        alg: "HS256",
        typ: "JWT",
        kid: key.name(),
    };
    let claims = ClaimsOut {
        iat: iat_s,
        exp: exp_s,
        capability: capability.canonical(),
        client_id,
    };
    let header = serde_json::to_vec(&header).expect("strings always serialize");
    let claims = serde_json::to_vec(&claims).expect("strings and integers always serialize");
    let signing_input = format!("{}.{}", crypto::b64_url(&header), crypto::b64_url(&claims));
    let signature = crypto::hmac_sha256(key.secret().as_bytes(), &[signing_input.as_bytes()]);
    format!("{signing_input}.{}", crypto::b64_url(&signature))
}

fn malformed(reason: &'static str) -> AuthError {
    AuthError::MalformedToken {
        format: TokenFormat::Jwt,
        reason,
    }
}

/// Seconds (a JSON number) to ms; `None` unless finite and non-negative.
fn seconds_to_ms(seconds: f64) -> Option<u64> {
    let ms = (seconds * 1000.0).floor();
    (ms.is_finite() && ms >= 0.0 && ms < u64::MAX as f64).then_some(ms as u64)
}

/// Verifies a JWT (rules in the module docs), finding its key with `key_for`.
pub fn verify_jwt<'k>(
    jwt: &str,
    key_for: impl FnOnce(&str) -> Option<&'k ApiKey>,
    now_ms: u64,
    skew_ms: u64,
    ttl_max_ms: u64,
) -> Result<VerifiedJwt, AuthError> {
    if jwt.len() > TOKEN_BYTES_MAX {
        return Err(malformed("too long"));
    }
    let mut parts = jwt.split('.');
    let (Some(header_b64), Some(claims_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("not three '.'-separated parts"));
    };
    let header = crypto::b64_url_decode(header_b64).ok_or(malformed("header is not base64url"))?;
    let header: HeaderIn =
        serde_json::from_slice(&header).map_err(|_| malformed("header is not a JSON object"))?;
    let alg = header.alg.ok_or(AuthError::MissingClaim("alg header"))?;
    if alg != "HS256" {
        return Err(AuthError::UnsupportedAlgorithm(alg));
    }
    if header
        .typ
        .is_some_and(|typ| !typ.eq_ignore_ascii_case("JWT"))
    {
        return Err(malformed("typ is not JWT"));
    }
    if header.crit.is_some() {
        return Err(malformed("crit header extensions are not supported"));
    }
    let kid = header.kid.ok_or(AuthError::MissingClaim("kid header"))?;
    let key = key_for(&kid).ok_or_else(|| AuthError::TokenKeyUnknown {
        format: TokenFormat::Jwt,
        key_name: kid.clone(),
    })?;
    let signature =
        crypto::b64_url_decode(signature_b64).ok_or(malformed("signature is not base64url"))?;
    let signing_input = &jwt[..header_b64.len() + 1 + claims_b64.len()];
    if !crypto::hmac_sha256_verify(
        key.secret().as_bytes(),
        &[signing_input.as_bytes()],
        &signature,
    ) {
        return Err(AuthError::BadSignature {
            format: TokenFormat::Jwt,
        });
    }
    let claims = crypto::b64_url_decode(claims_b64).ok_or(malformed("claims are not base64url"))?;
    let claims: ClaimsIn = serde_json::from_slice(&claims)
        .map_err(|_| malformed("claims are not a JSON object of the expected types"))?;
    let exp = claims.exp.ok_or(AuthError::MissingClaim("exp claim"))?;
    let iat = claims.iat.ok_or(AuthError::MissingClaim("iat claim"))?;
    let capability = claims
        .capability
        .ok_or(AuthError::MissingClaim("x-ably-capability claim"))?;
    let expires_ms = seconds_to_ms(exp).ok_or(malformed("exp is not a valid time"))?;
    let issued_ms = seconds_to_ms(iat).ok_or(malformed("iat is not a valid time"))?;
    if now_ms >= expires_ms {
        return Err(AuthError::Expired {
            expired_at_ms: expires_ms,
        });
    }
    let latest_start_ms = now_ms.saturating_add(skew_ms);
    if issued_ms > latest_start_ms {
        return Err(AuthError::NotYetValid {
            valid_from_ms: issued_ms,
        });
    }
    if let Some(nbf) = claims.nbf {
        let nbf_ms = seconds_to_ms(nbf).ok_or(malformed("nbf is not a valid time"))?;
        if nbf_ms > latest_start_ms {
            return Err(AuthError::NotYetValid {
                valid_from_ms: nbf_ms,
            });
        }
    }
    let ttl_ms = expires_ms.saturating_sub(issued_ms);
    if ttl_ms > ttl_max_ms {
        return Err(AuthError::TtlTooLong {
            ttl_ms,
            max_ms: ttl_max_ms,
        });
    }
    let capability = Capability::parse(&capability)
        .map_err(|_| malformed("x-ably-capability does not parse"))?;
    Ok(VerifiedJwt {
        key_name: kid,
        issued_ms,
        expires_ms,
        capability,
        client_id: claims.client_id.filter(|c| !c.is_empty()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY_MS: u64 = 86_400_000;
    const NOW_S: u64 = 1_700_000_000;
    const NOW_MS: u64 = NOW_S * 1000;

    fn key() -> ApiKey {
        ApiKey::parse("app.key:secret").expect("valid key")
    }

    fn verify(jwt: &str, now_ms: u64) -> Result<VerifiedJwt, AuthError> {
        let k = key();
        verify_jwt(
            jwt,
            |name| (name == k.name()).then_some(&k),
            now_ms,
            30_000,
            DAY_MS,
        )
    }

    /// A JWT from raw header and claims JSON, signed with `secret`.
    fn raw_jwt(header: &str, claims: &str, secret: &[u8]) -> String {
        let input = format!(
            "{}.{}",
            crypto::b64_url(header.as_bytes()),
            crypto::b64_url(claims.as_bytes())
        );
        let sig = crypto::hmac_sha256(secret, &[input.as_bytes()]);
        format!("{input}.{}", crypto::b64_url(&sig))
    }

    fn claims(extra: &str) -> String {
        format!(
            r#"{{"iat":{NOW_S},"exp":{},"x-ably-capability":"{{\"*\":[\"subscribe\"]}}"{extra}}}"#,
            NOW_S + 3600
        )
    }

    const HEADER: &str = r#"{"alg":"HS256","typ":"JWT","kid":"app.key"}"#;

    #[test]
    fn good_jwt() {
        let cap = Capability::parse(r#"{"chat:*":["publish"]}"#).expect("valid");
        let jwt = encode_hs256(&key(), NOW_S, NOW_S + 600, &cap, Some("alice"));
        assert_eq!(jwt.matches('.').count(), 2);
        let v = verify(&jwt, NOW_MS).expect("valid");
        assert_eq!(v.key_name, "app.key");
        assert_eq!(v.capability, cap);
        assert_eq!(v.client_id.as_deref(), Some("alice"));
        assert_eq!((v.issued_ms, v.expires_ms), (NOW_MS, NOW_MS + 600_000));
        // Hand-made, with fractional times and no typ.
        let jwt = raw_jwt(
            r#"{"alg":"HS256","kid":"app.key"}"#,
            &format!(
                r#"{{"iat":{NOW_S}.5,"exp":{}.25,"x-ably-capability":"{{\"*\":[\"*\"]}}"}}"#,
                NOW_S + 10
            ),
            b"secret",
        );
        let v = verify(&jwt, NOW_MS + 600).expect("valid");
        assert_eq!((v.issued_ms, v.expires_ms), (NOW_MS + 500, NOW_MS + 10_250));
        assert_eq!(v.client_id, None);
    }

    #[test]
    fn algorithms_other_than_hs256_are_refused() {
        for alg in ["none", "None", "HS512", "RS256", "hs256", ""] {
            let jwt = raw_jwt(
                &format!(r#"{{"alg":"{alg}","kid":"app.key"}}"#),
                &claims(""),
                b"secret",
            );
            assert_eq!(
                verify(&jwt, NOW_MS).err(),
                Some(AuthError::UnsupportedAlgorithm(alg.into()))
            );
        }
        // The classic `none` attack: empty signature.
        let input = format!(
            "{}.{}",
            crypto::b64_url(br#"{"alg":"none","kid":"app.key"}"#),
            crypto::b64_url(claims("").as_bytes())
        );
        assert_eq!(
            verify(&format!("{input}."), NOW_MS).err(),
            Some(AuthError::UnsupportedAlgorithm("none".into()))
        );
        let no_alg = raw_jwt(r#"{"kid":"app.key"}"#, &claims(""), b"secret");
        assert_eq!(
            verify(&no_alg, NOW_MS).err(),
            Some(AuthError::MissingClaim("alg header"))
        );
    }

    #[test]
    fn header_rules() {
        let no_kid = raw_jwt(r#"{"alg":"HS256"}"#, &claims(""), b"secret");
        assert_eq!(
            verify(&no_kid, NOW_MS).err(),
            Some(AuthError::MissingClaim("kid header"))
        );
        let bad_typ = raw_jwt(
            r#"{"alg":"HS256","typ":"at+jwt","kid":"app.key"}"#,
            &claims(""),
            b"secret",
        );
        assert!(matches!(
            verify(&bad_typ, NOW_MS),
            Err(AuthError::MalformedToken { .. })
        ));
        let crit = raw_jwt(
            r#"{"alg":"HS256","crit":["exp"],"kid":"app.key"}"#,
            &claims(""),
            b"secret",
        );
        assert!(matches!(
            verify(&crit, NOW_MS),
            Err(AuthError::MalformedToken { .. })
        ));
        let lower_typ = raw_jwt(
            r#"{"alg":"HS256","typ":"jwt","kid":"app.key"}"#,
            &claims(""),
            b"secret",
        );
        assert!(verify(&lower_typ, NOW_MS).is_ok());
    }

    #[test]
    fn wrong_key_and_tampering() {
        let unknown = raw_jwt(
            r#"{"alg":"HS256","kid":"app.other"}"#,
            &claims(""),
            b"secret",
        );
        assert_eq!(
            verify(&unknown, NOW_MS).err(),
            Some(AuthError::TokenKeyUnknown {
                format: TokenFormat::Jwt,
                key_name: "app.other".into()
            })
        );
        let wrong_secret = raw_jwt(HEADER, &claims(""), b"not the secret");
        assert_eq!(
            verify(&wrong_secret, NOW_MS).err(),
            Some(AuthError::BadSignature {
                format: TokenFormat::Jwt
            })
        );
        let good = raw_jwt(HEADER, &claims(""), b"secret");
        let parts: Vec<&str> = good.split('.').collect();
        let more = crypto::b64_url(
            format!(
                r#"{{"iat":{NOW_S},"exp":{},"x-ably-capability":"{{\"*\":[\"*\"]}}"}}"#,
                NOW_S + 3600
            )
            .as_bytes(),
        );
        let swapped = format!("{}.{more}.{}", parts[0], parts[2]);
        assert_eq!(
            verify(&swapped, NOW_MS).err(),
            Some(AuthError::BadSignature {
                format: TokenFormat::Jwt
            })
        );
        let truncated = format!(
            "{}.{}.{}",
            parts[0],
            parts[1],
            &parts[2][..parts[2].len() - 2]
        );
        assert!(verify(&truncated, NOW_MS).is_err());
    }

    #[test]
    fn time_rules() {
        let jwt = |iat: u64, exp: u64| {
            raw_jwt(
                HEADER,
                &format!(r#"{{"iat":{iat},"exp":{exp},"x-ably-capability":"{{}}"}}"#),
                b"secret",
            )
        };
        assert_eq!(
            verify(&jwt(NOW_S - 100, NOW_S), NOW_MS).err(),
            Some(AuthError::Expired {
                expired_at_ms: NOW_MS
            })
        );
        assert!(
            verify(&jwt(NOW_S + 30, NOW_S + 100), NOW_MS).is_ok(),
            "within the skew"
        );
        assert_eq!(
            verify(&jwt(NOW_S + 31, NOW_S + 100), NOW_MS).err(),
            Some(AuthError::NotYetValid {
                valid_from_ms: NOW_MS + 31_000
            })
        );
        let nbf = raw_jwt(
            HEADER,
            &claims(&format!(r#","nbf":{}"#, NOW_S + 60)),
            b"secret",
        );
        assert!(matches!(
            verify(&nbf, NOW_MS),
            Err(AuthError::NotYetValid { .. })
        ));
        assert!(verify(&jwt(NOW_S, NOW_S + 86_400), NOW_MS).is_ok());
        assert!(matches!(
            verify(&jwt(NOW_S, NOW_S + 86_401), NOW_MS),
            Err(AuthError::TtlTooLong { .. })
        ));
    }

    #[test]
    fn missing_and_malformed_claims() {
        let cases = [
            (
                format!(r#"{{"exp":{},"x-ably-capability":"{{}}"}}"#, NOW_S + 10),
                "iat claim",
            ),
            (
                format!(r#"{{"iat":{NOW_S},"x-ably-capability":"{{}}"}}"#),
                "exp claim",
            ),
            (
                format!(r#"{{"iat":{NOW_S},"exp":{}}}"#, NOW_S + 10),
                "x-ably-capability claim",
            ),
        ];
        for (claims, missing) in cases {
            let jwt = raw_jwt(HEADER, &claims, b"secret");
            assert_eq!(
                verify(&jwt, NOW_MS).err(),
                Some(AuthError::MissingClaim(missing))
            );
        }
        for claims in [
            format!(
                r#"{{"iat":"{NOW_S}","exp":{},"x-ably-capability":"{{}}"}}"#,
                NOW_S + 10
            ),
            format!(
                r#"{{"iat":-1,"exp":{},"x-ably-capability":"{{}}"}}"#,
                NOW_S + 10
            ),
            format!(
                r#"{{"iat":{NOW_S},"exp":{},"x-ably-capability":{{"*":["*"]}}}}"#,
                NOW_S + 10
            ),
            format!(
                r#"{{"iat":{NOW_S},"exp":{},"x-ably-capability":"{{\"*\":[\"eat\"]}}"}}"#,
                NOW_S + 10
            ),
            "[]".to_owned(),
        ] {
            let jwt = raw_jwt(HEADER, &claims, b"secret");
            assert!(
                matches!(
                    verify(&jwt, NOW_MS),
                    Err(AuthError::MalformedToken {
                        format: TokenFormat::Jwt,
                        ..
                    })
                ),
                "{claims}"
            );
        }
        for bad in ["a.b", "a.b.c.d", "!.e30.AA", "e30.e30.AA"] {
            assert!(verify(bad, NOW_MS).is_err(), "{bad}");
        }
    }
}
