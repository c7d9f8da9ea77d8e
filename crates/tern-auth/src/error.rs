//! The one error type of this crate, and its mapping to Ably error codes.

use crate::capability::CapabilityError;
use crate::key::KeyFormatError;

/// Which kind of bearer token an error is about (they map to different Ably
/// codes: 40144 is "invalid JWT").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenFormat {
    /// A Tern token (`payload.tag`, one dot).
    Tern,
    /// A JWT (`header.claims.signature`, two dots).
    Jwt,
}

impl std::fmt::Display for TokenFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TokenFormat::Tern => "token",
            TokenFormat::Jwt => "JWT",
        })
    }
}

/// Why a credential, request or configuration is refused. Each variant names
/// the broken rule; [`ably_code`](AuthError::ably_code) and
/// [`http_status`](AuthError::http_status) give what a client is told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    // ---- keys ------------------------------------------------------------
    /// No key with this name is configured.
    #[error("no API key named {0:?}")]
    UnknownKey(String),
    /// The secret given is not the key's.
    #[error("wrong secret for the API key")]
    BadSecret,

    // ---- TokenRequest ----------------------------------------------------
    /// A TokenRequest lacks a field it must have.
    #[error("the token request has no {0}")]
    MissingField(&'static str),
    /// The TokenRequest's `mac` is not the HMAC of its fields under the key.
    #[error("the token request's mac does not match its fields")]
    BadMac,
    /// The TokenRequest's timestamp is too far from the server clock.
    #[error(
        "the token request's timestamp {timestamp_ms} ms is more than {window_ms} ms from the server time {now_ms} ms"
    )]
    TimestampOutOfWindow {
        /// The request's timestamp.
        timestamp_ms: u64,
        /// The server clock.
        now_ms: u64,
        /// The tolerance either way.
        window_ms: u64,
    },
    /// The nonce is shorter than Ably's minimum.
    #[error("the token request's nonce has {chars} characters; at least {min} are needed")]
    NonceTooShort {
        /// Characters in the nonce.
        chars: usize,
        /// The minimum.
        min: usize,
    },
    /// This key already used this nonce within the timestamp window (a replay).
    #[error("the token request's nonce was already used")]
    NonceReused,
    /// Too many nonces are remembered to accept a new one safely.
    #[error(
        "too many token requests in the last minutes ({entries_max} remembered); try again later"
    )]
    NonceCacheFull {
        /// The configured bound.
        entries_max: usize,
    },
    /// The ttl asked for is longer than allowed.
    #[error("a token ttl of {ttl_ms} ms is longer than the {max_ms} ms allowed")]
    TtlTooLong {
        /// The ttl asked for.
        ttl_ms: u64,
        /// The configured maximum.
        max_ms: u64,
    },
    /// A ttl of zero.
    #[error("a token ttl must be positive")]
    TtlZero,

    // ---- capabilities ----------------------------------------------------
    /// The capability text cannot be parsed.
    #[error(transparent)]
    InvalidCapability(#[from] CapabilityError),
    /// The capability asked for shares nothing with the key's.
    #[error("the capability asked for is not within the key's capability")]
    CapabilityNotAllowed,

    // ---- bearer tokens ---------------------------------------------------
    /// Not a token of the claimed format (bad base64, JSON, fields, size).
    #[error("malformed {format}: {reason}")]
    MalformedToken {
        /// Tern token or JWT.
        format: TokenFormat,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The token or JWT names a key that is not configured (any more).
    #[error("the {format} was issued by unknown key {key_name:?}")]
    TokenKeyUnknown {
        /// Tern token or JWT.
        format: TokenFormat,
        /// The key it names.
        key_name: String,
    },
    /// The signature is not the key's over the token's content.
    #[error("the {format}'s signature does not match")]
    BadSignature {
        /// Tern token or JWT.
        format: TokenFormat,
    },
    /// A JWT `alg` other than HS256 (`none` included).
    #[error("JWT algorithm {0:?} is not supported; only HS256 is")]
    UnsupportedAlgorithm(String),
    /// A JWT lacks a header field or claim it must have.
    #[error("the JWT has no {0}")]
    MissingClaim(&'static str),
    /// The token's expiry time has passed.
    #[error("the token expired at {expired_at_ms} ms")]
    Expired {
        /// When it expired.
        expired_at_ms: u64,
    },
    /// The token was issued (or its `nbf` is) further in the future than the
    /// allowed clock skew.
    #[error("the token is not valid before {valid_from_ms} ms")]
    NotYetValid {
        /// When it becomes valid.
        valid_from_ms: u64,
    },

    // ---- configuration ---------------------------------------------------
    /// A configured key is malformed.
    #[error("invalid API key: {0}")]
    InvalidKey(#[from] KeyFormatError),
    /// Two configured keys have the same name.
    #[error("API key {0:?} is configured twice")]
    DuplicateKey(String),
    /// A setting breaks a rule about its value or its relation to another.
    #[error("invalid auth setting: {0}")]
    InvalidSetting(&'static str),
    /// A deny rule's `who` is not one of the accepted forms.
    #[error(
        "invalid deny rule subject {0:?}: use \"anyone\", \"anonymous\", \"key:<appId.keyId>\" or \"client:<clientId>\""
    )]
    InvalidDenySubject(String),
    /// The system random source failed (only [`crate::random_nonce`] uses it).
    #[error("the system random source failed")]
    RandomUnavailable,
}

impl AuthError {
    /// The Ably error code to send. From the ABLY-PROTOCOL.md table:
    /// 40101 invalid credentials, 40104 timestamp not current, 40105 nonce
    /// replayed, 40142 token expired, 40143 token unrecognised, 40144
    /// invalid JWT, 40145 invalid token format, 40160 not permitted by
    /// capability.
    ///
    /// Chosen here because the table has no entry for them: 40003 (invalid
    /// parameter value) for a short nonce, a bad ttl and a missing field;
    /// 40000 (bad request) for an unparseable capability; 40140 (token error,
    /// unspecified) for a not-yet-valid Tern token; 42910 (rate limited) for
    /// a full nonce cache; 50000 for configuration errors, which are never a
    /// client's fault.
    ///
    /// Token errors stay in 40140–40149 so that ably-js renews the token and
    /// retries; an unknown key, a bad secret or a bad mac are 40101, which
    /// ably-js treats as final.
    pub fn ably_code(&self) -> u32 {
        match self {
            AuthError::UnknownKey(_) | AuthError::BadSecret | AuthError::BadMac => 40101,
            AuthError::TimestampOutOfWindow { .. } => 40104,
            AuthError::NonceReused => 40105,
            AuthError::MissingField(_)
            | AuthError::NonceTooShort { .. }
            | AuthError::TtlTooLong { .. }
            | AuthError::TtlZero => 40003,
            AuthError::NonceCacheFull { .. } => 42910,
            AuthError::InvalidCapability(_) => 40000,
            AuthError::CapabilityNotAllowed => 40160,
            AuthError::MalformedToken {
                format: TokenFormat::Tern,
                ..
            } => 40145,
            AuthError::TokenKeyUnknown { .. } => 40143,
            AuthError::BadSignature {
                format: TokenFormat::Tern,
            } => 40143,
            AuthError::MalformedToken {
                format: TokenFormat::Jwt,
                ..
            }
            | AuthError::BadSignature {
                format: TokenFormat::Jwt,
            }
            | AuthError::UnsupportedAlgorithm(_)
            | AuthError::MissingClaim(_) => 40144,
            AuthError::Expired { .. } => 40142,
            AuthError::NotYetValid { .. } => 40140,
            AuthError::InvalidKey(_)
            | AuthError::DuplicateKey(_)
            | AuthError::InvalidSetting(_)
            | AuthError::InvalidDenySubject(_)
            | AuthError::RandomUnavailable => 50000,
        }
    }

    /// The HTTP status (and Ably `statusCode`) to send with
    /// [`ably_code`](AuthError::ably_code): 401 for credentials, tokens and
    /// capability denials (as ABLY-PROTOCOL.md asks for 40160 and 4014x),
    /// 400 for malformed requests, 429 for a full nonce cache, 500 for
    /// configuration errors.
    pub fn http_status(&self) -> u16 {
        match self.ably_code() {
            40000 | 40003 => 400,
            42910 => 429,
            50000 => 500,
            _ => 401,
        }
    }

    /// Whether this is a token error (40140–40149) after which an Ably SDK
    /// renews its token and tries again.
    pub fn is_token_error(&self) -> bool {
        (40140..=40149).contains(&self.ably_code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_ably_table() {
        assert_eq!(AuthError::UnknownKey("a.b".into()).ably_code(), 40101);
        assert_eq!(AuthError::BadSecret.ably_code(), 40101);
        assert_eq!(AuthError::BadMac.http_status(), 401);
        let ts = AuthError::TimestampOutOfWindow {
            timestamp_ms: 0,
            now_ms: 1,
            window_ms: 1,
        };
        assert_eq!((ts.ably_code(), ts.http_status()), (40104, 401));
        assert_eq!(AuthError::NonceReused.ably_code(), 40105);
        let expired = AuthError::Expired { expired_at_ms: 0 };
        assert_eq!((expired.ably_code(), expired.http_status()), (40142, 401));
        assert!(expired.is_token_error());
        assert_eq!(
            AuthError::UnsupportedAlgorithm("none".into()).ably_code(),
            40144
        );
        assert_eq!(
            AuthError::BadSignature {
                format: TokenFormat::Jwt
            }
            .ably_code(),
            40144
        );
        assert_eq!(
            AuthError::BadSignature {
                format: TokenFormat::Tern
            }
            .ably_code(),
            40143
        );
        let malformed = AuthError::MalformedToken {
            format: TokenFormat::Tern,
            reason: "x",
        };
        assert_eq!(malformed.ably_code(), 40145);
        assert_eq!(AuthError::CapabilityNotAllowed.ably_code(), 40160);
        assert_eq!(AuthError::CapabilityNotAllowed.http_status(), 401);
        assert!(!AuthError::BadSecret.is_token_error());
    }

    #[test]
    fn codes_chosen_here() {
        let short = AuthError::NonceTooShort { chars: 1, min: 16 };
        assert_eq!((short.ably_code(), short.http_status()), (40003, 400));
        let full = AuthError::NonceCacheFull { entries_max: 1 };
        assert_eq!((full.ably_code(), full.http_status()), (42910, 429));
        let long = AuthError::TtlTooLong {
            ttl_ms: 2,
            max_ms: 1,
        };
        assert_eq!(long.http_status(), 400);
        assert_eq!(AuthError::DuplicateKey("a.b".into()).http_status(), 500);
    }
}
