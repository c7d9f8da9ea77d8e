//! The WebSocket connect query (ABLY-PROTOCOL.md §2).

/// Connect parameters as the SDKs send them. Unknown parameters (`agent`,
/// `rnd`, `transportParams` extras) are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectParams {
    /// `key`: `appId.keyId:secret` (Basic auth).
    pub key: Option<String>,
    /// `access_token` (ably-js) or `accessToken` (ably-python, RTN2e).
    pub access_token: Option<String>,
    /// `clientId`.
    pub client_id: Option<String>,
    /// `format`: `json`, `msgpack`, absent (JSON).
    pub format: Option<String>,
    /// `heartbeats`: `true` asks for HEARTBEAT messages rather than pings.
    pub heartbeats: Option<String>,
    /// `v`: protocol version.
    pub version: Option<String>,
    /// `echo=false`: do not deliver the connection's own messages to it.
    pub echo: bool,
    /// `resume`: the connectionKey of a connection being resumed.
    pub resume: Option<String>,
    /// `recover`: the connectionKey of a connection being recovered.
    pub recover: Option<String>,
}

impl ConnectParams {
    /// From decoded query pairs; a repeated parameter keeps its last value.
    pub fn parse(query: &[(String, String)]) -> ConnectParams {
        let mut p = ConnectParams {
            echo: true,
            ..ConnectParams::default()
        };
        for (k, v) in query {
            let v = Some(v.clone());
            match k.as_str() {
                "key" => p.key = v,
                "access_token" | "accessToken" => p.access_token = v,
                "clientId" => p.client_id = v,
                "format" => p.format = v,
                "heartbeats" => p.heartbeats = v,
                "v" => p.version = v,
                "echo" => p.echo = v.as_deref() != Some("false"),
                "resume" => p.resume = v,
                "recover" => p.recover = v,
                _ => {}
            }
        }
        p
    }

    /// Whether protocol version `v` is served: absent, or 1 to 6 (v5 and
    /// v6 differ only in LiveObjects, which is not served).
    pub fn version_supported(&self) -> bool {
        match &self.version {
            None => true,
            Some(v) => v
                .parse::<f64>()
                .is_ok_and(|n| (1.0..=6.0).contains(&n) || n == 0.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn both_token_spellings_and_echo() {
        let p = ConnectParams::parse(&q(&[("accessToken", "t1"), ("echo", "false")]));
        assert_eq!(p.access_token.as_deref(), Some("t1"));
        assert!(!p.echo);
        let p = ConnectParams::parse(&q(&[("access_token", "t2"), ("agent", "x")]));
        assert_eq!(p.access_token.as_deref(), Some("t2"));
        assert!(p.echo);
    }

    #[test]
    fn versions() {
        for (v, ok) in [
            ("6", true),
            ("5", true),
            ("1.2", true),
            ("7", false),
            ("x", false),
        ] {
            let p = ConnectParams::parse(&q(&[("v", v)]));
            assert_eq!(p.version_supported(), ok, "{v}");
        }
    }
}
