//! The [`Authenticator`]: the keys, the limits, the nonce memory and the
//! deny rules, and every decision made with them.
//!
//! It is `Send + Sync` and shared by every adapter; only TokenRequest
//! exchange takes a lock (the nonce cache). Time is passed in (`now_ms`,
//! milliseconds since the Unix epoch; [`now_ms`] reads the system clock) so
//! that every rule can be tested without waiting.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use crate::capability::{
    CAPABILITY_JSON_BYTES_MAX, CAPABILITY_RESOURCES_MAX, Capability, CapabilityError, Op,
};
use crate::config::{AuthConfig, AuthLimits};
use crate::deny::DenyRule;
use crate::error::{AuthError, TokenFormat};
use crate::jwt::verify_jwt;
use crate::key::ApiKey;
use crate::nonce::NonceCache;
use crate::principal::{Principal, PrincipalKind};
use crate::resource::{Pattern, strip_shared};
use crate::token::{TokenDetails, issue_token, verify_token};
use crate::token_request::{TokenParams, TokenRequest};

/// The system clock in ms since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Authenticates credentials, issues tokens and answers access checks.
#[derive(Debug)]
pub struct Authenticator {
    /// Configured keys by name (`appId.keyId`).
    keys: HashMap<String, ApiKey>,
    /// Token ttl bounds, TokenRequest window, clock skew, nonce bound.
    limits: AuthLimits,
    /// Nonces of exchanged TokenRequests, to refuse replays.
    nonces: Mutex<NonceCache>,
    /// Operator exceptions applied after capabilities.
    deny: Vec<DenyRule>,
}

impl Authenticator {
    /// An authenticator with `limits` (validated), no keys and no deny rules.
    pub fn new(limits: AuthLimits) -> Result<Authenticator, AuthError> {
        limits.validate()?;
        Ok(Authenticator {
            keys: HashMap::new(),
            nonces: Mutex::new(NonceCache::new(limits.nonce_cache_entries_max)),
            limits,
            deny: Vec::new(),
        })
    }

    /// Adds `keys`; two keys with one name are refused.
    pub fn with_keys<I: IntoIterator<Item = ApiKey>>(
        mut self,
        keys: I,
    ) -> Result<Authenticator, AuthError> {
        for key in keys {
            if self.keys.contains_key(key.name()) {
                return Err(AuthError::DuplicateKey(key.name().to_owned()));
            }
            self.keys.insert(key.name().to_owned(), key);
        }
        Ok(self)
    }

    /// Adds deny rules.
    pub fn with_deny_rules<I: IntoIterator<Item = DenyRule>>(mut self, rules: I) -> Authenticator {
        self.deny.extend(rules);
        self
    }

    /// Builds everything from the config file's blocks.
    pub fn from_config(config: &AuthConfig) -> Result<Authenticator, AuthError> {
        let keys = config
            .keys
            .iter()
            .map(|k| k.to_key())
            .collect::<Result<Vec<_>, _>>()?;
        let rules = config
            .deny
            .iter()
            .map(DenyRule::from_config)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Authenticator::new(config.limits.clone())?
            .with_keys(keys)?
            .with_deny_rules(rules))
    }

    /// The key named `name`, if configured.
    pub fn key(&self, name: &str) -> Option<&ApiKey> {
        self.keys.get(name)
    }

    /// The limits in force.
    pub fn limits(&self) -> &AuthLimits {
        &self.limits
    }

    /// The deny rules in force.
    pub fn deny_rules(&self) -> &[DenyRule] {
        &self.deny
    }

    /// Nonces currently remembered (for metrics).
    pub fn nonces_remembered(&self) -> usize {
        self.nonces.lock().len()
    }

    /// Basic auth, MQTT username/password: the key named `key_name` with
    /// `secret` (compared in constant time).
    pub fn authenticate_key(&self, key_name: &str, secret: &str) -> Result<Principal, AuthError> {
        let key = self.known_key(key_name)?;
        if !key.secret_matches(secret) {
            return Err(AuthError::BadSecret);
        }
        Ok(Principal {
            kind: PrincipalKind::Key,
            key_name: Some(key.name().to_owned()),
            client_id: None,
            capability: Arc::clone(key.capability()),
            expires_at_ms: None,
        })
    }

    /// A bearer token: a Tern token (one `.`) or a JWT (two). Its capability
    /// is intersected with its key's current one.
    pub fn authenticate_token(&self, token: &str, now_ms: u64) -> Result<Principal, AuthError> {
        let skew = self.limits.clock_skew_ms;
        let (kind, key_name, capability, client_id, expires_ms) = match token.matches('.').count() {
            1 => {
                let t = verify_token(token, |name| self.keys.get(name), now_ms, skew)?;
                (
                    PrincipalKind::Token,
                    t.key_name,
                    t.capability,
                    t.client_id,
                    t.expires_ms,
                )
            }
            2 => {
                let ttl_max = self.limits.ttl_max_ms;
                let j = verify_jwt(token, |name| self.keys.get(name), now_ms, skew, ttl_max)?;
                (
                    PrincipalKind::Jwt,
                    j.key_name,
                    j.capability,
                    j.client_id,
                    j.expires_ms,
                )
            }
            _ => {
                return Err(AuthError::MalformedToken {
                    format: TokenFormat::Tern,
                    reason: "neither a token (one '.') nor a JWT (two)",
                });
            }
        };
        // The key was found by the verifier; absent only if removed since.
        let key = self
            .keys
            .get(&key_name)
            .ok_or_else(|| AuthError::TokenKeyUnknown {
                format: TokenFormat::Tern,
                key_name: key_name.clone(),
            })?;
        let capability = capability.intersect(key.capability());
        if capability.is_empty() {
            return Err(AuthError::CapabilityNotAllowed);
        }
        Ok(Principal {
            kind,
            key_name: Some(key_name),
            client_id,
            capability: Arc::new(capability),
            expires_at_ms: Some(expires_ms),
        })
    }

    /// Exchanges a signed TokenRequest for a token
    /// (`POST /keys/{keyName}/requestToken` without credentials). The caller
    /// checks that the path's key name equals `request.key_name`.
    ///
    /// In order: the key exists; required fields; the mac; the timestamp
    /// window; the nonce length; ttl and capability limits; the nonce was
    /// never used (recorded only now, so a refused request does not use it
    /// up).
    pub fn request_token(
        &self,
        request: &TokenRequest,
        now_ms: u64,
    ) -> Result<TokenDetails, AuthError> {
        let key = self.known_key(&request.key_name)?;
        let window = self.limits.timestamp_window_ms;
        let verified = request.verify(key, now_ms, window)?;
        let (ttl_ms, capability) = self.grant(key, &verified.params)?;
        self.nonces.lock().insert(
            key.name(),
            &verified.nonce,
            verified.timestamp_ms.saturating_add(window),
            now_ms,
        )?;
        Ok(issue_token(
            key,
            ttl_ms,
            &capability,
            verified.params.client_id.as_deref(),
            now_ms,
        ))
    }

    /// Issues a token to a caller authenticating with the key itself (Basic
    /// auth on `requestToken`), from TokenParams without a mac.
    pub fn request_token_with_key(
        &self,
        key_name: &str,
        secret: &str,
        params: &TokenParams,
        now_ms: u64,
    ) -> Result<TokenDetails, AuthError> {
        self.authenticate_key(key_name, secret)?;
        let key = self.known_key(key_name)?;
        let (ttl_ms, capability) = self.grant(key, params)?;
        Ok(issue_token(
            key,
            ttl_ms,
            &capability,
            params.client_id.as_deref(),
            now_ms,
        ))
    }

    /// A principal without credentials, granted `capability` (the server's
    /// configured anonymous capability; there is none by default).
    pub fn anonymous(&self, capability: Arc<Capability>) -> Principal {
        Principal {
            kind: PrincipalKind::Anonymous,
            key_name: None,
            client_id: None,
            capability,
            expires_at_ms: None,
        }
    }

    /// Whether `principal` may perform `op` on `channel` (qualifier
    /// stripped): its capability allows it and no deny rule refuses it.
    pub fn check(&self, principal: &Principal, op: &Op, channel: &str) -> bool {
        principal.capability.allows(op, channel)
            && !self.deny.iter().any(|r| r.denies(principal, op, channel))
    }

    /// Whether `principal` may subscribe to the MQTT `filter` (or
    /// `$share/group/filter`): its capability covers every topic the filter
    /// can match, and no deny rule for `subscribe` overlaps it (see
    /// [`crate::deny`]).
    pub fn check_subscribe_filter(&self, principal: &Principal, filter: &str) -> bool {
        let Some(pattern) = strip_shared(filter).and_then(|f| Pattern::filter(f).ok()) else {
            return false;
        };
        principal.capability.allows_subscribe_filter(filter)
            && !self
                .deny
                .iter()
                .any(|r| r.denies_subscription(principal, &pattern))
    }

    fn known_key(&self, name: &str) -> Result<&ApiKey, AuthError> {
        self.keys
            .get(name)
            .ok_or_else(|| AuthError::UnknownKey(name.to_owned()))
    }

    /// The ttl and capability a token for `params` gets from `key`: ttl
    /// defaulted and bounded; capability the key's when none is asked,
    /// otherwise the request's within the key's, refused if nothing is left.
    fn grant(&self, key: &ApiKey, params: &TokenParams) -> Result<(u64, Capability), AuthError> {
        let ttl_ms = params.ttl.unwrap_or(self.limits.ttl_default_ms);
        if ttl_ms == 0 {
            return Err(AuthError::TtlZero);
        }
        if ttl_ms > self.limits.ttl_max_ms {
            return Err(AuthError::TtlTooLong {
                ttl_ms,
                max_ms: self.limits.ttl_max_ms,
            });
        }
        let capability = match params.capability.as_deref() {
            None => (**key.capability()).clone(),
            Some(text) => {
                let granted = Capability::parse(text)?.intersect(key.capability());
                if granted.is_empty() {
                    return Err(AuthError::CapabilityNotAllowed);
                }
                if granted.len() > CAPABILITY_RESOURCES_MAX {
                    return Err(CapabilityError::TooManyResources {
                        count: granted.len(),
                        max: CAPABILITY_RESOURCES_MAX,
                    }
                    .into());
                }
                if granted.canonical().len() > CAPABILITY_JSON_BYTES_MAX {
                    return Err(CapabilityError::TooLarge {
                        bytes: granted.canonical().len(),
                        max: CAPABILITY_JSON_BYTES_MAX,
                    }
                    .into());
                }
                granted
            }
        };
        Ok((ttl_ms, capability))
    }
}
