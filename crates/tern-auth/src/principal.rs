//! Who a connection or request is, once authenticated.

use std::sync::Arc;

use crate::capability::Capability;

/// How a principal authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PrincipalKind {
    /// No credentials; granted the operator's anonymous capability.
    Anonymous,
    /// An API key and its secret (Basic auth, MQTT username/password).
    Key,
    /// A Tern token.
    Token,
    /// An Ably JWT.
    Jwt,
}

/// An authenticated identity and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// How it authenticated.
    pub kind: PrincipalKind,
    /// The key used directly or that issued the token; `None` when anonymous.
    pub key_name: Option<String>,
    /// The client id bound by the token (`*`: the holder may pick one; the
    /// server should replace it with the id actually used, so that deny rules
    /// by client id see it). `None` when unidentified.
    pub client_id: Option<String>,
    /// What it may do (for tokens: the token's capability within the key's).
    pub capability: Arc<Capability>,
    /// When its credentials expire, ms since the Unix epoch; `None` for keys
    /// and anonymous principals, which do not expire.
    pub expires_at_ms: Option<u64>,
}

impl Principal {
    /// Whether its credentials have expired at `now_ms`.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_some_and(|at| now_ms >= at)
    }

    /// Milliseconds left before expiry (0 once expired); `None` if it never
    /// expires. The server warns and disconnects from this.
    pub fn ms_until_expiry(&self, now_ms: u64) -> Option<u64> {
        self.expires_at_ms.map(|at| at.saturating_sub(now_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry() {
        let mut p = Principal {
            kind: PrincipalKind::Token,
            key_name: Some("a.k".into()),
            client_id: None,
            capability: Arc::new(Capability::all()),
            expires_at_ms: Some(100),
        };
        assert!(!p.is_expired(99));
        assert!(p.is_expired(100));
        assert_eq!(p.ms_until_expiry(40), Some(60));
        assert_eq!(p.ms_until_expiry(140), Some(0));
        p.expires_at_ms = None;
        assert!(!p.is_expired(u64::MAX));
        assert_eq!(p.ms_until_expiry(0), None);
    }
}
