//! Who an MQTT connection is: credentials from CONNECT (and the TLS
//! client certificate) turned into a [`Principal`] by `tern-auth`, the
//! transport it came over, and the per-address limit on failed logins.
//!
//! Credential forms accepted in CONNECT:
//! - username = key name (`appId.keyId`), password = key secret — only over
//!   TLS, unless `key_login_plain` allows it (on by default for loopback
//!   listeners only);
//! - username = token (a Tern token or an Ably-style JWT), empty or absent
//!   password;
//! - MQTT 5: no username, password = token;
//! - MQTT 5 enhanced authentication with method [`TOKEN_AUTH_METHOD`] and
//!   the token as authentication data (this also allows re-authentication
//!   with AUTH during the connection);
//! - a TLS client certificate that the listener mapped to a key;
//! - none: anonymous, when allowed.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tern_auth::{Authenticator, Capability, Principal};
use tern_mqtt_codec::{Connect, reason};

/// The enhanced-authentication method name for tokens (MQTT 5 AUTH).
pub const TOKEN_AUTH_METHOD: &str = "tern-token";

/// How the bytes of a connection arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    Tcp,
    Tls,
    WebSocket,
    SecureWebSocket,
}

impl TransportKind {
    /// True when the transport is encrypted.
    pub fn is_secure(self) -> bool {
        matches!(self, TransportKind::Tls | TransportKind::SecureWebSocket)
    }
}

/// What the listener knows about a connection before its first packet.
#[derive(Debug, Clone)]
pub struct Transport {
    pub kind: TransportKind,
    pub peer: SocketAddr,
    /// The key a verified TLS client certificate maps to, if any.
    pub cert_key: Option<String>,
    /// The listener is on a loopback address.
    pub loopback_listener: bool,
    /// When the TCP connection was accepted: the CONNECT timeout counts
    /// from here.
    pub accepted_at: Instant,
}

impl Transport {
    /// A plain TCP connection from `peer` to a listener.
    pub fn tcp(peer: SocketAddr, loopback_listener: bool) -> Transport {
        Transport {
            kind: TransportKind::Tcp,
            peer,
            cert_key: None,
            loopback_listener,
            accepted_at: Instant::now(),
        }
    }
}

/// Bounds of the failed-login limiter.
#[derive(Debug, Clone, Copy)]
pub struct LoginLimits {
    /// Failed logins allowed per source address per window.
    pub failures_max: u32,
    /// The window.
    pub window: Duration,
    /// Source addresses tracked at once; when full, expired entries are
    /// dropped, and if none has expired, untracked addresses are limited as
    /// a group (the map never grows past this).
    pub addresses_max: usize,
}

impl Default for LoginLimits {
    fn default() -> Self {
        LoginLimits {
            failures_max: 10,
            window: Duration::from_secs(60),
            addresses_max: 100_000,
        }
    }
}

/// Counts failed logins per source address.
#[derive(Debug)]
struct LoginLimiter {
    limits: LoginLimits,
    failures: Mutex<Failures>,
}

/// Failure counts and the start of their window.
#[derive(Debug, Default)]
struct Failures {
    by_addr: HashMap<IpAddr, (u32, Instant)>,
    /// Shared by every address that found the map full.
    overflow: Option<(u32, Instant)>,
}

impl LoginLimiter {
    fn over(&self, e: Option<&(u32, Instant)>, now: Instant) -> bool {
        e.is_some_and(|&(n, start)| {
            now.duration_since(start) < self.limits.window && n >= self.limits.failures_max
        })
    }

    fn blocked(&self, ip: IpAddr, now: Instant) -> bool {
        let f = self.failures.lock();
        match f.by_addr.get(&ip) {
            Some(e) => self.over(Some(e), now),
            None if f.by_addr.len() >= self.limits.addresses_max => {
                self.over(f.overflow.as_ref(), now)
            }
            None => false,
        }
    }

    fn record_failure(&self, ip: IpAddr, now: Instant) {
        let window = self.limits.window;
        let mut f = self.failures.lock();
        if !f.by_addr.contains_key(&ip) && f.by_addr.len() >= self.limits.addresses_max {
            f.by_addr
                .retain(|_, (_, start)| now.duration_since(*start) < window);
        }
        let e = if f.by_addr.contains_key(&ip) || f.by_addr.len() < self.limits.addresses_max {
            f.by_addr.entry(ip).or_insert((0, now))
        } else {
            f.overflow.get_or_insert((0, now))
        };
        if now.duration_since(e.1) >= window {
            *e = (0, now);
        }
        e.0 = e.0.saturating_add(1);
    }
}

/// The server's authentication settings and state, shared by every
/// MQTT connection.
#[derive(Debug)]
pub struct AuthPolicy {
    pub authenticator: Authenticator,
    /// Clients without credentials are accepted.
    pub allow_anonymous: bool,
    /// What anonymous clients may do.
    pub anonymous_capability: Arc<Capability>,
    /// Key name + secret accepted over unencrypted transports; `None`:
    /// only on loopback listeners.
    pub key_login_plain: Option<bool>,
    limiter: LoginLimiter,
}

/// Why a CONNECT's credentials were refused: the v5 CONNACK reason code
/// (mapped to 4 or 5 for 3.1.x) and a message for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthRefusal {
    pub code: u8,
    pub why: String,
}

fn refuse(code: u8, why: impl Into<String>) -> AuthRefusal {
    AuthRefusal {
        code,
        why: why.into(),
    }
}

impl AuthPolicy {
    /// A policy around `authenticator`.
    pub fn new(
        authenticator: Authenticator,
        allow_anonymous: bool,
        anonymous_capability: Arc<Capability>,
        key_login_plain: Option<bool>,
        login_limits: LoginLimits,
    ) -> AuthPolicy {
        AuthPolicy {
            authenticator,
            allow_anonymous,
            anonymous_capability,
            key_login_plain,
            limiter: LoginLimiter {
                limits: login_limits,
                failures: Mutex::new(Failures::default()),
            },
        }
    }

    /// Anonymous access to everything: the default for a loopback-only
    /// server with no keys.
    pub fn open() -> AuthPolicy {
        AuthPolicy::new(
            Authenticator::new(Default::default()).unwrap_or_else(|_| unreachable!()),
            true,
            Arc::new(Capability::all()),
            Some(true),
            LoginLimits::default(),
        )
    }

    /// True if `ip` has failed too many logins recently.
    pub fn is_blocked(&self, ip: IpAddr) -> bool {
        self.limiter.blocked(ip, Instant::now())
    }

    /// Counts a failed login from `ip` (e.g. a wrong secret on the HTTP
    /// token endpoint).
    pub fn record_failure(&self, ip: IpAddr) {
        self.limiter.record_failure(ip, Instant::now());
    }

    /// Authenticates a token (username, password, or AUTH data).
    pub fn token(&self, token: &str) -> Result<Principal, AuthRefusal> {
        self.authenticator
            .authenticate_token(token, tern_auth::now_ms())
            .map_err(|e| refuse(reason::BAD_USER_NAME_OR_PASSWORD, e.to_string()))
    }

    /// Decides who a CONNECT is. Failures are counted against the source
    /// address.
    pub fn authenticate(&self, c: &Connect, t: &Transport) -> Result<Principal, AuthRefusal> {
        let r = self.authenticate_inner(c, t);
        if let Err(e) = &r
            && e.code == reason::BAD_USER_NAME_OR_PASSWORD
        {
            self.limiter.record_failure(t.peer.ip(), Instant::now());
        }
        r
    }

    fn authenticate_inner(&self, c: &Connect, t: &Transport) -> Result<Principal, AuthRefusal> {
        let password = c
            .password
            .as_ref()
            .filter(|p| !p.is_empty())
            .map(|p| std::str::from_utf8(p).map_err(|_| ()))
            .transpose()
            .map_err(|()| refuse(reason::BAD_USER_NAME_OR_PASSWORD, "password is not UTF-8"))?;
        if let Some(method) = &c.properties.authentication_method {
            if method != TOKEN_AUTH_METHOD {
                return Err(refuse(
                    reason::BAD_AUTHENTICATION_METHOD,
                    format!(
                        "authentication method {method:?} is not offered; use {TOKEN_AUTH_METHOD:?}"
                    ),
                ));
            }
            let data = c.properties.authentication_data.as_deref().unwrap_or(&[]);
            let token = std::str::from_utf8(data).map_err(|_| {
                refuse(
                    reason::BAD_USER_NAME_OR_PASSWORD,
                    "authentication data is not UTF-8",
                )
            })?;
            return self.token(token);
        }
        match (c.username.as_deref().filter(|u| !u.is_empty()), password) {
            (Some(user), Some(secret)) => {
                let plain_ok = self.key_login_plain.unwrap_or(t.loopback_listener);
                if !t.kind.is_secure() && !plain_ok {
                    return Err(refuse(
                        reason::NOT_AUTHORIZED,
                        "key name and secret are accepted over TLS only on this listener; use a token",
                    ));
                }
                self.authenticator
                    .authenticate_key(user, secret)
                    .map_err(|e| refuse(reason::BAD_USER_NAME_OR_PASSWORD, e.to_string()))
            }
            (Some(token), None) => self.token(token),
            (None, Some(token)) if c.protocol.is_v5() => self.token(token),
            (None, Some(_)) => Err(refuse(
                reason::BAD_USER_NAME_OR_PASSWORD,
                "a password without a username",
            )),
            (None, None) => {
                if let Some(key) = &t.cert_key {
                    return match self.authenticator.key(key) {
                        Some(k) => Ok(Principal {
                            kind: tern_auth::PrincipalKind::Key,
                            key_name: Some(k.name().to_owned()),
                            client_id: None,
                            capability: Arc::clone(k.capability()),
                            expires_at_ms: None,
                        }),
                        None => Err(refuse(
                            reason::NOT_AUTHORIZED,
                            format!("client certificate maps to unknown key {key}"),
                        )),
                    };
                }
                if self.allow_anonymous {
                    Ok(self
                        .authenticator
                        .anonymous(Arc::clone(&self.anonymous_capability)))
                } else {
                    Err(refuse(
                        reason::NOT_AUTHORIZED,
                        "credentials required: a token as username, or key name and secret",
                    ))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_blocks_after_failures_and_forgets_after_window() {
        let l = LoginLimiter {
            limits: LoginLimits {
                failures_max: 3,
                window: Duration::from_secs(10),
                addresses_max: 2,
            },
            failures: Mutex::new(Failures::default()),
        };
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(!l.blocked(ip, t0));
            l.record_failure(ip, t0);
        }
        assert!(l.blocked(ip, t0));
        assert!(!l.blocked(ip, t0 + Duration::from_secs(11)));
        // The map never grows past its bound.
        for i in 0..10u8 {
            l.record_failure(IpAddr::from([10, 0, 1, i]), t0);
        }
        assert!(l.failures.lock().by_addr.len() <= 2);
    }
}
