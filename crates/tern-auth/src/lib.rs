//! Tern's authentication: API keys, Ably TokenRequests, Tern tokens, Ably
//! JWTs, capabilities and deny rules.
//!
//! It follows Ably's conventions (PRODUCT.md §3, ABLY-PROTOCOL.md §5.10) so
//! that Ably SDKs authenticate unchanged, and adds what an MQTT broker needs:
//! MQTT filters as capability resources, a coverage check for wildcard
//! subscriptions, and operator deny rules. It knows nothing of MQTT packets
//! or HTTP: adapters hand it strings (key names, secrets, tokens, channel
//! names, filters) and a clock reading, and get back a [`Principal`], a
//! [`TokenDetails`], a yes/no, or an [`AuthError`] carrying its Ably code and
//! HTTP status.
//!
//! ```
//! use tern_auth::{ApiKey, Authenticator, AuthLimits, Op, TokenParams, TokenRequest};
//!
//! let key = ApiKey::parse("app.key:secret")?;
//! let auth = Authenticator::new(AuthLimits::default())?.with_keys([key.clone()])?;
//! let now = 1_700_000_000_000;
//! let params = TokenParams {
//!     capability: Some(r#"{"chat:*":["publish","subscribe"]}"#.into()),
//!     client_id: Some("alice".into()),
//!     ..TokenParams::default()
//! };
//! let request = TokenRequest::sign(&key, &params, now, "a-nonce-of-16-chars")?;
//! let details = auth.request_token(&request, now)?;
//! let alice = auth.authenticate_token(&details.token, now)?;
//! assert!(auth.check(&alice, &Op::Publish, "chat:lobby"));
//! assert!(!auth.check(&alice, &Op::Publish, "admin"));
//! assert!(auth.check_subscribe_filter(&alice, "chat:lobby"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Layout
//! - `key`: [`ApiKey`] — `appId.keyId:secret`, its capability.
//! - `resource`: [`Resource`] — the resource syntaxes (Ably `:`-segment
//!   wildcards, MQTT `+`/`#` filters, exact names), compiled; matching,
//!   coverage, overlap and meet of patterns.
//! - `capability`: [`Capability`], [`Op`], [`OpSet`] — Ably capability JSON,
//!   canonical form, checks, subscription-filter coverage, intersection.
//! - `token_request`: [`TokenRequest`], [`TokenParams`] — Ably's signed
//!   token requests and their mac.
//! - `nonce`: [`NonceCache`] — bounded, time-evicted memory of used nonces.
//! - `token`: [`TokenDetails`], [`issue_token`], [`verify_token`] — Tern's
//!   stateless token format.
//! - `jwt`: [`encode_hs256`], [`verify_jwt`] — Ably JWTs, HS256 only.
//! - `principal`: [`Principal`] — who is connected and what it may do.
//! - `deny`: [`DenyRule`], [`Who`] — operator exceptions over capabilities.
//! - `config`: [`AuthConfig`], [`KeyConfig`], [`DenyConfig`], [`AuthLimits`]
//!   — what the server reads from TOML.
//! - `authenticator`: [`Authenticator`] — the keys, limits, nonces and deny
//!   rules together; every decision.
//! - `error`: [`AuthError`] — one enum naming the broken rule, with Ably
//!   codes.
//! - `crypto` (private): HMAC-SHA-256, constant-time comparison, base64.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod authenticator;
pub mod capability;
pub mod config;
mod crypto;
pub mod deny;
pub mod error;
pub mod jwt;
pub mod key;
pub mod nonce;
pub mod principal;
pub mod resource;
pub mod token;
pub mod token_request;

#[cfg(test)]
mod proptests;

pub use authenticator::{Authenticator, now_ms};
pub use capability::{
    ABLY_OTHER_OPERATIONS, CAPABILITY_JSON_BYTES_MAX, CAPABILITY_RESOURCES_MAX, Capability,
    CapabilityError, Op, OpSet,
};
pub use config::{AuthConfig, AuthLimits, KeyConfig};
pub use deny::{DenyConfig, DenyRule, Who};
pub use error::{AuthError, TokenFormat};
pub use jwt::{VerifiedJwt, encode_hs256, verify_jwt};
pub use key::{ApiKey, KeyFormatError};
pub use nonce::NonceCache;
pub use principal::{Principal, PrincipalKind};
pub use resource::{Resource, ResourceRule};
pub use token::{TOKEN_BYTES_MAX, TokenDetails, VerifiedToken, issue_token, verify_token};
pub use token_request::{
    NONCE_CHARS_MIN, TokenParams, TokenRequest, VerifiedTokenRequest, mac_of, random_nonce,
};
