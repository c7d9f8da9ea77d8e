//! `tern serve` settings: defaults, then the TOML file (`--config`), then
//! environment variables (`TERN_*`), then flags — each layer overriding the
//! one before. Every flag has a config key of the same name with `_` for `-`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;
use tern_hub::{HubConfig, QueueFullPolicy, TopicLimits};
use tern_mqtt::MqttConfig;

/// Every setting of `tern serve`. All optional so that layers can be merged;
/// [`Settings::resolve`] applies the defaults shown in `--help`.
#[derive(Debug, Default, Clone, clap::Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeOptions {
    /// TOML file with any of these settings (keys use `_` for `-`).
    #[arg(long, env = "TERN_CONFIG", value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// MQTT over TCP listener; port 0 picks a free one [default: 127.0.0.1:1883].
    #[arg(long, env = "TERN_MQTT", value_name = "HOST:PORT")]
    pub mqtt: Option<String>,

    /// HTTP listener: MQTT over WebSocket at /mqtt, POST
    /// /keys/{keyName}/requestToken, GET /time [default: 127.0.0.1:8080].
    #[arg(long, env = "TERN_HTTP", value_name = "HOST:PORT")]
    pub http: Option<String>,

    /// MQTT over TLS listener (needs --tls-cert and --tls-key) [default: none].
    #[arg(long, env = "TERN_MQTTS", value_name = "HOST:PORT")]
    pub mqtts: Option<String>,

    /// HTTPS listener: the HTTP API and MQTT over secure WebSocket
    /// (wss://HOST:PORT/mqtt); needs --tls-cert and --tls-key [default: none].
    #[arg(long, env = "TERN_HTTPS", value_name = "HOST:PORT")]
    pub https: Option<String>,

    /// TLS certificate chain, PEM; reloaded when the file changes.
    #[arg(long, env = "TERN_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,

    /// TLS private key, PEM (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "TERN_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,

    /// CA (PEM) whose client certificates are accepted on the TLS listeners;
    /// a verified certificate's subject common name is the API key name the
    /// client logs in as, when CONNECT carries no credentials [default: none].
    #[arg(long, env = "TERN_TLS_CLIENT_CA", value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,

    /// How often the certificate files are checked for changes, seconds [default: 10].
    #[arg(long, env = "TERN_TLS_RELOAD_SECS", value_name = "SECS")]
    pub tls_reload_secs: Option<u64>,

    /// Directory of the durable store: persistent sessions, their queued
    /// and in-flight messages, retained messages [default: ./tern-data].
    #[arg(long, env = "TERN_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Keep state in the durable store; `false` keeps everything in memory
    /// only (lost at exit) [default: true].
    #[arg(long, env = "TERN_PERSIST", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub persist: Option<bool>,

    /// 0: every group commit is synced to disk before what it holds is
    /// acknowledged (survives power loss). N > 0: commits reach the
    /// operating system before the acknowledgement (surviving a crash of
    /// the process) and are synced at most N ms later [default: 0].
    #[arg(long, env = "TERN_FSYNC_INTERVAL_MS", value_name = "MS")]
    pub fsync_interval_ms: Option<u64>,

    /// Accept clients without credentials [default: true on a loopback
    /// listener with no keys configured, false otherwise].
    #[arg(long, env = "TERN_ALLOW_ANONYMOUS", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub allow_anonymous: Option<bool>,

    /// Add an API key `appId.keyId:secret` with every capability
    /// (repeatable; env: comma-separated). Keys with narrower capabilities
    /// go in the config file as `[[keys]]` entries.
    #[arg(
        long = "key",
        env = "TERN_KEYS",
        value_delimiter = ',',
        value_name = "APPID.KEYID:SECRET"
    )]
    #[serde(skip)]
    pub cli_keys: Vec<String>,

    /// `[[keys]]` entries of the config file: `key = "appId.keyId:secret"`,
    /// optional `capability = '{"chat:*":["publish","subscribe"]}'`.
    #[arg(skip)]
    pub keys: Option<Vec<tern_auth::KeyConfig>>,

    /// `[[deny]]` entries of the config file: `who` (`anyone`, `anonymous`,
    /// `key:NAME`, `client:ID`), `ops` (default `["*"]`), `filter`.
    #[arg(skip)]
    pub deny: Option<Vec<tern_auth::DenyConfig>>,

    /// Keep channel history: `CHANNELS=MESSAGES/AGE_SECS`, repeatable
    /// (env: comma-separated), first match wins. CHANNELS is `*`, an
    /// Ably-style namespace `chat:*`, or an MQTT filter (`sensors/#`).
    /// Example: `--history 'chat:*=1000/86400'` [default: none].
    #[arg(
        long = "history",
        env = "TERN_HISTORY",
        value_delimiter = ',',
        value_name = "CHANNELS=MESSAGES/AGE_SECS"
    )]
    #[serde(skip)]
    pub cli_history: Vec<String>,

    /// `[[history]]` entries of the config file: `channels`, `messages`,
    /// `age_secs`.
    #[arg(skip)]
    pub history: Option<Vec<HistoryConfig>>,

    /// Capability of anonymous clients, as capability JSON [default: {"*":["*"]}].
    #[arg(long, env = "TERN_ANONYMOUS_CAPABILITY", value_name = "JSON")]
    pub anonymous_capability: Option<String>,

    /// Accept MQTT login with key name and secret over plain (non-TLS)
    /// connections [default: true on a loopback listener, false otherwise].
    #[arg(long, env = "TERN_KEY_LOGIN_PLAIN", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub key_login_plain: Option<bool>,

    /// Failed logins allowed per source address per minute before its
    /// connections are refused (0x9F) for the rest of the minute [default: 10].
    #[arg(long, env = "TERN_LOGIN_FAILURES_MAX", value_name = "N")]
    pub login_failures_max: Option<u32>,

    /// Largest MQTT packet accepted, bytes (advertised to v5 clients) [default: 1048576].
    #[arg(long, env = "TERN_PACKET_BYTES_MAX", value_name = "BYTES")]
    pub packet_bytes_max: Option<usize>,

    /// Inbound QoS 1/2 window per client (v5 Receive Maximum) [default: 128].
    #[arg(long, env = "TERN_RECEIVE_MAXIMUM", value_name = "N")]
    pub receive_maximum: Option<u16>,

    /// Outbound QoS 1/2 messages in flight per client, also capped by the
    /// client's Receive Maximum [default: 512].
    #[arg(long, env = "TERN_INFLIGHT_MAX", value_name = "N")]
    pub inflight_max: Option<u16>,

    /// Messages queued per session (offline, or waiting for the window)
    /// [default: 1000].
    #[arg(long, env = "TERN_SESSION_QUEUE_MAX", value_name = "N")]
    pub session_queue_max: Option<usize>,

    /// What a full session queue does with one more QoS 1/2 message:
    /// drop-oldest, drop-new or disconnect (QoS 0 is always dropped)
    /// [default: drop-oldest].
    #[arg(long, env = "TERN_QUEUE_FULL_POLICY", value_name = "POLICY")]
    pub queue_full_policy: Option<String>,

    /// Subscriptions per session [default: 1000].
    #[arg(long, env = "TERN_SUBSCRIPTIONS_MAX", value_name = "N")]
    pub subscriptions_max: Option<usize>,

    /// Longest topic name or filter, bytes [default: 65535].
    #[arg(long, env = "TERN_TOPIC_BYTES_MAX", value_name = "BYTES")]
    pub topic_bytes_max: Option<usize>,

    /// Most levels in a topic name or filter [default: 128].
    #[arg(long, env = "TERN_TOPIC_LEVELS_MAX", value_name = "N")]
    pub topic_levels_max: Option<usize>,

    /// Longest client identifier, bytes [default: 256].
    #[arg(long, env = "TERN_CLIENT_ID_BYTES_MAX", value_name = "BYTES")]
    pub client_id_bytes_max: Option<usize>,

    /// Connections held at once; more are closed at accept [default: 100000].
    #[arg(long, env = "TERN_CONNECTIONS_MAX", value_name = "N")]
    pub connections_max: Option<usize>,

    /// Sessions held at once, connected or persistent [default: 1000000].
    #[arg(long, env = "TERN_SESSIONS_MAX", value_name = "N")]
    pub sessions_max: Option<usize>,

    /// Time allowed from TCP accept to a complete CONNECT, seconds [default: 10].
    #[arg(long, env = "TERN_CONNECT_TIMEOUT_SECS", value_name = "SECS")]
    pub connect_timeout_secs: Option<u64>,

    /// Largest keep alive granted, seconds: v5 clients asking more (or 0)
    /// get this as Server Keep Alive; 3.1.x clients asking more are refused
    /// [default: 65535].
    #[arg(long, env = "TERN_KEEPALIVE_MAX_SECS", value_name = "SECS")]
    pub keepalive_max_secs: Option<u16>,

    /// Largest session expiry granted, seconds [default: 4294967295 = never expires].
    #[arg(long, env = "TERN_SESSION_EXPIRY_MAX_SECS", value_name = "SECS")]
    pub session_expiry_max_secs: Option<u32>,

    /// Topic aliases per connection, each way (v5 Topic Alias Maximum) [default: 64].
    #[arg(long, env = "TERN_TOPIC_ALIAS_MAX", value_name = "N")]
    pub topic_alias_max: Option<u16>,

    /// Retained messages held in all [default: 1000000].
    #[arg(long, env = "TERN_RETAINED_MAX", value_name = "N")]
    pub retained_max: Option<usize>,

    /// Interval of the $SYS/broker statistics topics, seconds; 0 turns them off [default: 10].
    #[arg(long, env = "TERN_SYS_INTERVAL_SECS", value_name = "SECS")]
    pub sys_interval_secs: Option<u64>,

    /// Deliver one copy per matching subscription, instead of one copy per
    /// client at the highest QoS with every subscription identifier [default: false].
    #[arg(long, env = "TERN_OVERLAP_DELIVER_EACH", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub overlap_deliver_each: Option<bool>,

    /// Back-pressure: when a QoS 1/2 message leaves a connected subscriber
    /// with this many queued messages, its publisher is not read until the
    /// queue drains to half of it (or the pause maximum passes); 0 turns
    /// back-pressure off [default: half of session_queue_max].
    #[arg(long, env = "TERN_BACKPRESSURE_QUEUE_MESSAGES", value_name = "N")]
    pub backpressure_queue_messages: Option<usize>,

    /// Longest back-pressure pause of a publisher, milliseconds; then the
    /// subscriber's queue policy applies [default: 1000].
    #[arg(long, env = "TERN_BACKPRESSURE_PAUSE_MAX_MS", value_name = "MS")]
    pub backpressure_pause_max_ms: Option<u64>,

    /// How long a published message id is remembered per channel: a repeat
    /// within this window is accepted and not published again (idempotent
    /// REST publishing), seconds [default: 120].
    #[arg(long, env = "TERN_DEDUP_WINDOW_SECS", value_name = "SECS")]
    pub dedup_window_secs: Option<u64>,

    /// Most message ids remembered for idempotent publishing (the oldest
    /// are forgotten first) [default: 100000].
    #[arg(long, env = "TERN_DEDUP_IDS_MAX", value_name = "N")]
    pub dedup_ids_max: Option<usize>,

    /// Output bytes buffered per connection before it stops taking from its
    /// session queue [default: 65536].
    #[arg(long, env = "TERN_WRITE_BUFFER_BYTES_HIGH", value_name = "BYTES")]
    pub write_buffer_bytes_high: Option<usize>,

    /// Realtime (Ably protocol): largest payload of one MESSAGE or PRESENCE
    /// (maxMessageSize; more is NACKed 40009); frames may be 16 KiB larger
    /// [default: 65536].
    #[arg(long, env = "TERN_REALTIME_MESSAGE_BYTES_MAX", value_name = "BYTES")]
    pub realtime_message_bytes_max: Option<usize>,

    /// Realtime: channels attached at once per connection (90021 beyond)
    /// [default: 1000].
    #[arg(
        long,
        env = "TERN_REALTIME_CHANNELS_PER_CONNECTION_MAX",
        value_name = "N"
    )]
    pub realtime_channels_per_connection_max: Option<usize>,

    /// Realtime: presence members per channel (91003 beyond) [default: 10000].
    #[arg(long, env = "TERN_REALTIME_PRESENCE_MEMBERS_MAX", value_name = "N")]
    pub realtime_presence_members_max: Option<usize>,

    /// Realtime: how long the state of a connection lost without CLOSE is
    /// kept for `resume` (connectionStateTtl), seconds; 0 turns resume off
    /// [default: 120].
    #[arg(
        long,
        env = "TERN_REALTIME_CONNECTION_STATE_TTL_SECS",
        value_name = "SECS"
    )]
    pub realtime_connection_state_ttl_secs: Option<u64>,

    /// Realtime: lost connections whose state is kept for `resume` at once
    /// (the oldest is forgotten first) [default: 10000].
    #[arg(long, env = "TERN_REALTIME_RESUME_STATES_MAX", value_name = "N")]
    pub realtime_resume_states_max: Option<usize>,

    /// Realtime: how long the presence members of a connection lost without
    /// CLOSE stay before their implicit LEAVE (a resume within it keeps
    /// them), seconds [default: 15].
    #[arg(
        long,
        env = "TERN_REALTIME_PRESENCE_LEAVE_GRACE_SECS",
        value_name = "SECS"
    )]
    pub realtime_presence_leave_grace_secs: Option<u64>,

    /// Realtime: most messages a `rewind` replays on attach (larger counts
    /// are reduced to it) [default: 100].
    #[arg(long, env = "TERN_REALTIME_REWIND_MAX", value_name = "N")]
    pub realtime_rewind_max: Option<usize>,
}

macro_rules! layer {
    ($hi:expr, $lo:expr, $($f:ident),*) => {
        ServeOptions {
            config: $hi.config.clone(),
            cli_keys: $hi.cli_keys.clone(),
            cli_history: $hi.cli_history.clone(),
            $($f: $hi.$f.clone().or($lo.$f.clone())),*
        }
    };
}

impl ServeOptions {
    /// `self` where set, else `lower`.
    fn over(&self, lower: &ServeOptions) -> ServeOptions {
        layer!(
            self,
            lower,
            mqtt,
            http,
            mqtts,
            https,
            tls_cert,
            tls_key,
            tls_client_ca,
            tls_reload_secs,
            data_dir,
            persist,
            fsync_interval_ms,
            allow_anonymous,
            keys,
            deny,
            history,
            anonymous_capability,
            key_login_plain,
            login_failures_max,
            packet_bytes_max,
            receive_maximum,
            inflight_max,
            session_queue_max,
            queue_full_policy,
            subscriptions_max,
            topic_bytes_max,
            topic_levels_max,
            client_id_bytes_max,
            connections_max,
            sessions_max,
            connect_timeout_secs,
            keepalive_max_secs,
            session_expiry_max_secs,
            topic_alias_max,
            retained_max,
            sys_interval_secs,
            overlap_deliver_each,
            backpressure_queue_messages,
            backpressure_pause_max_ms,
            dedup_window_secs,
            dedup_ids_max,
            write_buffer_bytes_high,
            realtime_message_bytes_max,
            realtime_channels_per_connection_max,
            realtime_presence_members_max,
            realtime_connection_state_ttl_secs,
            realtime_resume_states_max,
            realtime_presence_leave_grace_secs,
            realtime_rewind_max
        )
    }
}

/// Where the TLS certificate and key are.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
    pub reload_every: Duration,
}

/// The resolved settings the server runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub mqtt: SocketAddr,
    pub http: SocketAddr,
    pub mqtts: Option<SocketAddr>,
    pub https: Option<SocketAddr>,
    pub tls: Option<TlsFiles>,
    pub data_dir: PathBuf,
    /// Keep state in the durable store.
    pub persist: bool,
    /// Sync policy of the store: `None` syncs every commit.
    pub fsync_interval: Option<Duration>,
    pub allow_anonymous: bool,
    /// Keys, deny rules and token limits.
    pub auth: tern_auth::AuthConfig,
    /// What anonymous clients may do.
    pub anonymous_capability: tern_auth::Capability,
    /// Key name + secret accepted over unencrypted connections; `None`:
    /// only on loopback listeners.
    pub key_login_plain: Option<bool>,
    pub login_failures_max: u32,
    pub sys_interval: Option<Duration>,
    pub hub: HubConfig,
    pub mqtt_cfg: MqttConfig,
    /// Bounds of realtime (Ably protocol) connections.
    pub realtime: tern_realtime::RealtimeConfig,
}

/// One `[[history]]` entry of the config file.
#[derive(Debug, Clone, serde::Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HistoryConfig {
    /// `*`, `ns:*` or an MQTT filter.
    pub channels: String,
    /// Most messages kept per channel.
    pub messages: u32,
    /// Oldest message kept, seconds.
    pub age_secs: u64,
}

impl HistoryConfig {
    fn rule(&self) -> anyhow::Result<tern_hub::HistoryRule> {
        if self.channels != "*"
            && !self.channels.ends_with(":*")
            && tern_hub::topic::validate_filter(&self.channels, &TopicLimits::default()).is_err()
        {
            bail!(
                "history channels {:?}: expected *, ns:* or an MQTT filter",
                self.channels
            );
        }
        if self.messages == 0 || self.age_secs == 0 {
            bail!(
                "history for {:?}: messages and age_secs must be above 0",
                self.channels
            );
        }
        Ok(tern_hub::HistoryRule {
            channels: self.channels.clone(),
            messages: self.messages,
            age: Duration::from_secs(self.age_secs),
        })
    }

    /// Parses `CHANNELS=MESSAGES/AGE_SECS`.
    fn parse(s: &str) -> anyhow::Result<HistoryConfig> {
        let parsed = s.rsplit_once('=').and_then(|(c, rest)| {
            let (m, a) = rest.split_once('/')?;
            Some(HistoryConfig {
                channels: c.to_owned(),
                messages: m.trim().parse().ok()?,
                age_secs: a.trim().parse().ok()?,
            })
        });
        parsed.with_context(|| format!("--history {s}: expected CHANNELS=MESSAGES/AGE_SECS"))
    }
}

fn parse_addr(s: &str, what: &str) -> anyhow::Result<SocketAddr> {
    use std::net::ToSocketAddrs;
    s.to_socket_addrs()
        .with_context(|| format!("--{what} {s}: expected HOST:PORT"))?
        .next()
        .with_context(|| format!("--{what} {s}: the host resolves to no address"))
}

impl Settings {
    /// Merges flags/env with the config file and applies defaults, then
    /// checks the relations between settings.
    pub fn resolve(cli: &ServeOptions) -> anyhow::Result<Settings> {
        let file = match &cli.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config file {}", path.display()))?;
                toml::from_str::<ServeOptions>(&text)
                    .with_context(|| format!("parsing config file {}", path.display()))?
            }
            None => ServeOptions::default(),
        };
        let o = cli.over(&file);
        let hub_d = HubConfig::default();
        let mqtt_d = MqttConfig::default();
        let rt_d = tern_realtime::RealtimeConfig::default();
        let rt_message = o
            .realtime_message_bytes_max
            .unwrap_or(rt_d.message_bytes_max);
        let policy = match o.queue_full_policy.as_deref().unwrap_or("drop-oldest") {
            "drop-oldest" => QueueFullPolicy::DropOldest,
            "drop-new" => QueueFullPolicy::DropNew,
            "disconnect" => QueueFullPolicy::Disconnect,
            other => {
                bail!("queue_full_policy {other:?}: expected drop-oldest, drop-new or disconnect")
            }
        };
        let mqtt = parse_addr(o.mqtt.as_deref().unwrap_or("127.0.0.1:1883"), "mqtt")?;
        // Flags first (they are the most specific), then the file's rules.
        let mut history = Vec::new();
        for h in &o.cli_history {
            history.push(HistoryConfig::parse(h)?.rule()?);
        }
        for h in o.history.iter().flatten() {
            history.push(h.rule()?);
        }
        let history_rules = tern_hub::HistoryRules { rules: history };
        let mut keys = o.keys.clone().unwrap_or_default();
        keys.extend(o.cli_keys.iter().map(|k| tern_auth::KeyConfig {
            key: k.clone(),
            capability: None,
        }));
        let http = parse_addr(o.http.as_deref().unwrap_or("127.0.0.1:8080"), "http")?;
        let mqtts = o
            .mqtts
            .as_deref()
            .map(|a| parse_addr(a, "mqtts"))
            .transpose()?;
        let https = o
            .https
            .as_deref()
            .map(|a| parse_addr(a, "https"))
            .transpose()?;
        let loopback = [Some(mqtt), Some(http), mqtts, https]
            .into_iter()
            .flatten()
            .all(|a| a.ip().is_loopback());
        let auth = tern_auth::AuthConfig {
            keys,
            deny: o.deny.clone().unwrap_or_default(),
            limits: Default::default(),
        };
        // Check the keys and rules now, with the config's own error.
        tern_auth::Authenticator::from_config(&auth).context("invalid [[keys]] or [[deny]]")?;
        let anonymous_capability = match &o.anonymous_capability {
            Some(json) => tern_auth::Capability::parse(json)
                .with_context(|| format!("anonymous_capability {json:?}"))?,
            None => tern_auth::Capability::all(),
        };
        let s = Settings {
            allow_anonymous: o
                .allow_anonymous
                .unwrap_or(loopback && auth.keys.is_empty()),
            key_login_plain: o.key_login_plain,
            login_failures_max: o.login_failures_max.unwrap_or(10),
            auth,
            anonymous_capability,
            mqtt,
            mqtts,
            https,
            tls: match (&o.tls_cert, &o.tls_key) {
                (Some(cert), Some(key)) => Some(TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                    client_ca: o.tls_client_ca.clone(),
                    reload_every: Duration::from_secs(o.tls_reload_secs.unwrap_or(10).max(1)),
                }),
                (None, None) => None,
                _ => bail!("--tls-cert and --tls-key go together"),
            },
            http,
            data_dir: o.data_dir.unwrap_or_else(|| PathBuf::from("./tern-data")),
            persist: o.persist.unwrap_or(true),
            fsync_interval: match o.fsync_interval_ms.unwrap_or(0) {
                0 => None,
                ms => Some(Duration::from_millis(ms)),
            },
            sys_interval: match o.sys_interval_secs.unwrap_or(10) {
                0 => None,
                n => Some(Duration::from_secs(n)),
            },
            hub: HubConfig {
                topic: TopicLimits {
                    topic_bytes_max: o.topic_bytes_max.unwrap_or(hub_d.topic.topic_bytes_max),
                    topic_levels_max: o.topic_levels_max.unwrap_or(hub_d.topic.topic_levels_max),
                },
                session_queue_max: o.session_queue_max.unwrap_or(hub_d.session_queue_max),
                queue_full_policy: policy,
                subscriptions_max: o.subscriptions_max.unwrap_or(hub_d.subscriptions_max),
                retained_max: o.retained_max.unwrap_or(hub_d.retained_max),
                sessions_max: o.sessions_max.unwrap_or(hub_d.sessions_max),
                overlap_deliver_each: o.overlap_deliver_each.unwrap_or(false),
                // Half the queue unless set: room to absorb what a paused
                // publisher had already sent.
                backpressure_queue_messages: o
                    .backpressure_queue_messages
                    .unwrap_or(o.session_queue_max.unwrap_or(hub_d.session_queue_max) / 2),
                history: history_rules,
                dedup_window: o
                    .dedup_window_secs
                    .map_or(hub_d.dedup_window, Duration::from_secs),
                dedup_ids_max: o.dedup_ids_max.unwrap_or(hub_d.dedup_ids_max),
            },
            mqtt_cfg: MqttConfig {
                packet_bytes_max: o.packet_bytes_max.unwrap_or(mqtt_d.packet_bytes_max),
                receive_maximum: o.receive_maximum.unwrap_or(mqtt_d.receive_maximum),
                inflight_max: o.inflight_max.unwrap_or(mqtt_d.inflight_max),
                connect_timeout: o
                    .connect_timeout_secs
                    .map_or(mqtt_d.connect_timeout, Duration::from_secs),
                keepalive_max_secs: o.keepalive_max_secs.unwrap_or(mqtt_d.keepalive_max_secs),
                session_expiry_max_secs: o
                    .session_expiry_max_secs
                    .unwrap_or(mqtt_d.session_expiry_max_secs),
                topic_alias_max: o.topic_alias_max.unwrap_or(mqtt_d.topic_alias_max),
                client_id_bytes_max: o.client_id_bytes_max.unwrap_or(mqtt_d.client_id_bytes_max),
                connections_max: o.connections_max.unwrap_or(mqtt_d.connections_max),
                write_buffer_bytes_high: o
                    .write_buffer_bytes_high
                    .unwrap_or(mqtt_d.write_buffer_bytes_high),
                backpressure_pause_max: o
                    .backpressure_pause_max_ms
                    .map_or(mqtt_d.backpressure_pause_max, Duration::from_millis),
            },
            realtime: tern_realtime::RealtimeConfig {
                message_bytes_max: rt_message,
                frame_bytes_max: rt_message.saturating_add(16_384),
                channels_per_connection_max: o
                    .realtime_channels_per_connection_max
                    .unwrap_or(rt_d.channels_per_connection_max),
                presence_members_per_channel_max: o
                    .realtime_presence_members_max
                    .unwrap_or(rt_d.presence_members_per_channel_max),
                connection_state_ttl: o
                    .realtime_connection_state_ttl_secs
                    .map_or(rt_d.connection_state_ttl, Duration::from_secs),
                resume_states_max: o
                    .realtime_resume_states_max
                    .unwrap_or(rt_d.resume_states_max),
                presence_leave_grace: o
                    .realtime_presence_leave_grace_secs
                    .map_or(rt_d.presence_leave_grace, Duration::from_secs),
                rewind_max: o.realtime_rewind_max.unwrap_or(rt_d.rewind_max),
                ..rt_d
            },
        };
        s.validate()?;
        Ok(s)
    }

    fn validate(&self) -> anyhow::Result<()> {
        let m = &self.mqtt_cfg;
        let h = &self.hub;
        if !(16..=268_435_460).contains(&m.packet_bytes_max) {
            bail!("packet_bytes_max must be between 16 and 268435460");
        }
        if m.receive_maximum == 0 || m.inflight_max == 0 {
            bail!("receive_maximum and inflight_max must be at least 1");
        }
        if h.session_queue_max == 0 {
            bail!("session_queue_max must be at least 1");
        }
        let r = &self.realtime;
        if !(1..=16 << 20).contains(&r.message_bytes_max) {
            bail!("realtime_message_bytes_max must be between 1 and 16777216");
        }
        if r.channels_per_connection_max == 0 || r.presence_members_per_channel_max == 0 {
            bail!(
                "realtime_channels_per_connection_max and realtime_presence_members_max must be at least 1"
            );
        }
        if r.rewind_max > 10_000 {
            bail!("realtime_rewind_max must be at most 10000");
        }
        if h.backpressure_queue_messages > h.session_queue_max {
            bail!("backpressure_queue_messages cannot exceed session_queue_max");
        }
        if h.topic.topic_bytes_max == 0 || h.topic.topic_levels_max == 0 {
            bail!("topic_bytes_max and topic_levels_max must be at least 1");
        }
        if m.connections_max == 0 || h.sessions_max == 0 {
            bail!("connections_max and sessions_max must be at least 1");
        }
        if m.connect_timeout.is_zero() {
            bail!("connect_timeout_secs must be at least 1");
        }
        if m.write_buffer_bytes_high < 1024 {
            bail!("write_buffer_bytes_high must be at least 1024");
        }
        if (self.mqtts.is_some() || self.https.is_some()) && self.tls.is_none() {
            bail!("--mqtts and --https need --tls-cert and --tls-key");
        }
        let exposed = [Some(self.mqtt), Some(self.http), self.mqtts, self.https]
            .into_iter()
            .flatten()
            .find(|a| !a.ip().is_loopback());
        if let Some(addr) = exposed
            && self.auth.keys.is_empty()
            && !self.allow_anonymous
        {
            bail!(
                "refusing to listen on {} with no API key configured: nobody could log in but \
                 anonymous clients, and they are not allowed beyond loopback. Add a key with \
                 --key appId.keyId:secret (or [[keys]] in the config file), or pass \
                 --allow-anonymous to let anyone who can reach this address connect.",
                addr
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_file_and_defaults_apply() {
        let file: ServeOptions =
            toml::from_str("mqtt = \"127.0.0.1:1999\"\nreceive_maximum = 7\nsession_queue_max = 5")
                .unwrap();
        let cli = ServeOptions {
            session_queue_max: Some(9),
            ..ServeOptions::default()
        };
        let o = cli.over(&file);
        assert_eq!(o.mqtt.as_deref(), Some("127.0.0.1:1999"));
        assert_eq!(o.receive_maximum, Some(7));
        assert_eq!(o.session_queue_max, Some(9));
    }

    #[test]
    fn unknown_config_keys_are_errors() {
        assert!(toml::from_str::<ServeOptions>("mqt = \"x\"").is_err());
    }

    #[test]
    fn non_loopback_without_credentials_refuses_to_start() {
        let cli = ServeOptions {
            mqtt: Some("0.0.0.0:0".into()),
            ..ServeOptions::default()
        };
        let e = Settings::resolve(&cli).unwrap_err().to_string();
        assert!(e.contains("--allow-anonymous"), "{e}");
        let cli = ServeOptions {
            allow_anonymous: Some(true),
            ..cli
        };
        assert!(Settings::resolve(&cli).is_ok());
    }

    #[test]
    fn invalid_relations_are_refused() {
        let cli = ServeOptions {
            receive_maximum: Some(0),
            ..ServeOptions::default()
        };
        assert!(Settings::resolve(&cli).is_err());
        let cli = ServeOptions {
            queue_full_policy: Some("sometimes".into()),
            ..ServeOptions::default()
        };
        assert!(Settings::resolve(&cli).is_err());
    }

    #[test]
    fn realtime_bounds_from_flags_and_file() {
        let s = Settings::resolve(&ServeOptions::default()).unwrap();
        assert_eq!(s.realtime.message_bytes_max, 65_536);
        assert_eq!(s.realtime.rewind_max, 100);
        let file: ServeOptions = toml::from_str(
            "realtime_message_bytes_max = 1000\nrealtime_connection_state_ttl_secs = 30\nrealtime_rewind_max = 5\n",
        )
        .unwrap();
        let cli = ServeOptions {
            realtime_rewind_max: Some(7),
            realtime_presence_leave_grace_secs: Some(2),
            realtime_channels_per_connection_max: Some(3),
            realtime_presence_members_max: Some(4),
            realtime_resume_states_max: Some(9),
            ..ServeOptions::default()
        };
        let r = Settings::resolve(&cli.over(&file)).unwrap().realtime;
        assert_eq!(
            (r.message_bytes_max, r.frame_bytes_max, r.rewind_max),
            (1000, 1000 + 16_384, 7)
        );
        assert_eq!(r.connection_state_ttl, Duration::from_secs(30));
        assert_eq!(r.presence_leave_grace, Duration::from_secs(2));
        assert_eq!(
            (
                r.channels_per_connection_max,
                r.presence_members_per_channel_max,
                r.resume_states_max
            ),
            (3, 4, 9)
        );
        let cli = ServeOptions {
            realtime_message_bytes_max: Some(0),
            ..ServeOptions::default()
        };
        assert!(Settings::resolve(&cli).is_err());
    }

    #[test]
    fn history_rules_from_flags_and_file() {
        let file: ServeOptions =
            toml::from_str("[[history]]\nchannels = \"sensors/#\"\nmessages = 10\nage_secs = 60\n")
                .unwrap();
        let cli = ServeOptions {
            cli_history: vec!["chat:*=1000/86400".into()],
            ..ServeOptions::default()
        };
        let o = cli.over(&file);
        let s = Settings::resolve(&o).unwrap();
        let r = &s.hub.history;
        assert_eq!(r.rules.len(), 2);
        assert_eq!(r.for_channel("chat:x").map(|r| r.messages), Some(1000));
        assert_eq!(r.for_channel("sensors/1").map(|r| r.messages), Some(10));
        assert!(r.for_channel("other").is_none());
        for bad in ["chat:*", "chat:*=0/10", "a/#/b=1/1", "x=1"] {
            let cli = ServeOptions {
                cli_history: vec![bad.into()],
                ..ServeOptions::default()
            };
            assert!(Settings::resolve(&cli).is_err(), "{bad}");
        }
    }
}
