//! The WebSocket connect query (ABLY-PROTOCOL.md §2) and channel params
//! (`rewind`).

use std::time::Duration;

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

/// A `rewind` channel param: replay the last N messages, or those of the
/// last period, on attach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rewind {
    /// The last N messages.
    Count(usize),
    /// The messages received within this period before the attach.
    Since(Duration),
}

impl Rewind {
    /// Parses `N` (messages, reduced to `max`) or `Ns` / `Nm` / `Nh` (a
    /// period, up to a day). `None` for anything else.
    pub fn parse(v: &str, max: usize) -> Option<Rewind> {
        let v = v.trim();
        if let Ok(n) = v.parse::<u64>() {
            return Some(Rewind::Count(
                usize::try_from(n).unwrap_or(usize::MAX).min(max),
            ));
        }
        let unit = match v.chars().last()? {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            _ => return None,
        };
        let n: u64 = v[..v.len() - 1].parse().ok()?;
        let secs = n.checked_mul(unit)?;
        (secs <= 86_400).then(|| Rewind::Since(Duration::from_secs(secs)))
    }

    /// The rewind asked for by an ATTACH: `params.rewind` (a string or a
    /// number), else a `[?rewind=...]` qualifier of the channel string.
    /// `Ok(None)` when neither is there; `Err` with the offending text for
    /// a value that does not parse.
    pub fn of_attach(
        channel: &str,
        params: Option<&serde_json::Value>,
        max: usize,
    ) -> Result<Option<Rewind>, String> {
        let from_params = params.and_then(|p| p.get("rewind")).and_then(|v| match v {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        });
        let given = from_params.or_else(|| {
            let q = channel.strip_prefix("[?")?.split_once(']')?.0;
            q.split('&')
                .find_map(|kv| kv.strip_prefix("rewind="))
                .map(str::to_owned)
        });
        match given {
            None => Ok(None),
            Some(v) => Rewind::parse(&v, max).map(Some).ok_or(v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewind_values() {
        assert_eq!(Rewind::parse("3", 100), Some(Rewind::Count(3)));
        assert_eq!(Rewind::parse("1000", 100), Some(Rewind::Count(100)));
        assert_eq!(
            Rewind::parse("30s", 100),
            Some(Rewind::Since(Duration::from_secs(30)))
        );
        assert_eq!(
            Rewind::parse("2m", 100),
            Some(Rewind::Since(Duration::from_secs(120)))
        );
        for bad in ["", "x", "-1", "3d", "s", "99999h"] {
            assert_eq!(Rewind::parse(bad, 100), None, "{bad}");
        }
        let p = serde_json::json!({"rewind": "2"});
        assert_eq!(
            Rewind::of_attach("ch", Some(&p), 100),
            Ok(Some(Rewind::Count(2)))
        );
        assert_eq!(
            Rewind::of_attach("[?delta=x&rewind=10s]ch", None, 100),
            Ok(Some(Rewind::Since(Duration::from_secs(10))))
        );
        assert_eq!(Rewind::of_attach("[?delta=x]ch", None, 100), Ok(None));
        assert_eq!(
            Rewind::of_attach("ch", Some(&serde_json::Value::Null), 100),
            Ok(None)
        );
        assert_eq!(
            Rewind::of_attach("[?rewind=zz]ch", None, 100),
            Err("zz".to_owned())
        );
    }

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
