//! One realtime WebSocket connection: authentication and CONNECTED, then a
//! single task that reads ProtocolMessages, drains the hub session's
//! deliveries and the presence mailbox into batched frames, and sends idle
//! HEARTBEATs.
//!
//! The connection is a clean hub session `"\0rt:" + connectionId` (NUL
//! cannot appear in an MQTT client id, so no clash) subscribed with QoS 0
//! to the hub channel of each channel attached with SUBSCRIBE mode.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{Message as Frame, Utf8Bytes, WebSocket};
use base64::Engine;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tern_auth::{Op, Principal, PrincipalKind};
use tern_hub::{
    ConnLink, HistoryQuery, Hub, KickReason, NextOutgoing, Outgoing, PublishOnce, SessionHandle,
    Stats, SubOptions, SubscribeError,
};

use crate::message::{
    self as wire, ConnectionDetails, ErrorInfo, Format, PresenceMessage, ProtocolMessage,
    PublishResult, action, channel_name, flags, presence_action, serial_of,
};
use crate::presence::Mailbox;
use crate::resume::{Answer, Answers, Parked, PendingLeave};
use crate::{ConnectParams, Origin, Realtime, Rewind};

type Sink = SplitSink<WebSocket, Frame>;

/// Time allowed to send the last frames when a connection ends.
const CLOSE_FLUSH: Duration = Duration::from_secs(1);
/// Messages merged into one MESSAGE frame for a subscriber at most.
const MESSAGES_PER_FRAME_MAX: usize = 100;
/// Payload bytes replayed from history on one attach at most (rewind or
/// resume); a resume replay cut short is not RESUMED.
const REPLAY_BYTES_MAX: usize = 8 << 20;

/// How a connection ends; decides the last frame and what happens to its
/// presence members.
#[derive(Debug)]
enum End {
    /// CLOSE: CLOSED, members leave now.
    Closed,
    /// The socket went, DISCONNECT, or the client fell silent: the state
    /// is kept for `resume`; members leave after the grace period unless
    /// the connection is resumed first.
    Lost,
    /// ERROR without a channel, then close: members leave now.
    Fatal(ErrorInfo),
    /// DISCONNECTED (the client reconnects and resumes): as `Lost`.
    Disconnected(ErrorInfo),
}

/// Serves one upgraded WebSocket until it closes.
pub async fn serve(socket: WebSocket, params: ConnectParams, origin: Origin, rt: Arc<Realtime>) {
    let (mut sink, stream) = socket.split();
    let format = Format::from_param(params.format.as_deref());
    let hub = rt.ctx.hub.clone();
    let refused = match format {
        None => Some(ProtocolMessage::with_error(
            action::ERROR,
            ErrorInfo::new(40003, 400, "format must be json or msgpack"),
        )),
        Some(_) if !params.version_supported() => Some(ProtocolMessage::with_error(
            action::ERROR,
            ErrorInfo::new(40017, 400, "unsupported protocol version"),
        )),
        Some(_)
            if Stats::get(&hub.stats.clients_connected) as usize >= rt.ctx.cfg.connections_max =>
        {
            Some(ProtocolMessage::with_error(
                action::DISCONNECTED,
                ErrorInfo::new(80003, 503, "the server's connection limit is reached"),
            ))
        }
        Some(_) => None,
    };
    let format = format.unwrap_or_default();
    if let Some(pm) = refused {
        Stats::add(&hub.stats.connects_refused, 1);
        send_and_close(&mut sink, &pm, format).await;
        return;
    }
    let conn = match Conn::open(&rt, &params, &origin, format).await {
        Ok(c) => c,
        Err(e) => {
            Stats::add(&hub.stats.connects_refused, 1);
            tracing::info!(peer = %origin.peer, code = e.code, why = %e.message, "realtime connection refused");
            let pm = ProtocolMessage::with_error(action::ERROR, e);
            send_and_close(&mut sink, &pm, format).await;
            return;
        }
    };
    conn.run(sink, stream).await;
}

async fn send_and_close(sink: &mut Sink, pm: &ProtocolMessage, format: Format) {
    let _ = tokio::time::timeout(CLOSE_FLUSH, async {
        sink.send(frame(pm, format)).await?;
        sink.close().await
    })
    .await;
}

fn frame(pm: &ProtocolMessage, format: Format) -> Frame {
    let bytes = pm.encode(format);
    match format {
        // serde_json writes UTF-8.
        Format::Json => Frame::Text(Utf8Bytes::from(
            String::from_utf8(bytes).unwrap_or_default(),
        )),
        Format::Msgpack => Frame::Binary(bytes.into()),
    }
}

/// Random URL-safe text of `n` bytes of entropy (no `:`, which presence
/// ids use as a separator).
fn random_id(n: usize) -> String {
    let mut b = vec![0u8; n];
    if getrandom::fill(&mut b).is_err() {
        // No system randomness: unique but guessable. A connection key
        // resumes a connection only with the same credentials and clientId.
        let t = tern_hub::unix_ms().to_le_bytes();
        for (i, x) in b.iter_mut().enumerate() {
            *x = t[i % t.len()] ^ (i as u8);
        }
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// Who is connecting: the principal and the clientId it is identified as.
fn authenticate(
    rt: &Realtime,
    params: &ConnectParams,
    origin: &Origin,
) -> Result<(Principal, Option<String>, bool), ErrorInfo> {
    let auth = &rt.ctx.auth;
    let hub = &rt.ctx.hub;
    let ip = origin.peer.ip();
    if auth.is_blocked(ip) {
        Stats::add(&hub.stats.logins_rate_limited, 1);
        return Err(ErrorInfo::new(
            42910,
            429,
            "too many failed logins from this address; try again later",
        ));
    }
    let r = if let Some(key) = &params.key {
        match key.split_once(':') {
            None => Err(ErrorInfo::new(
                40101,
                401,
                "the key must be appId.keyId:secret",
            )),
            Some(_)
                if !origin.secure && !auth.key_login_plain.unwrap_or(origin.loopback_listener) =>
            {
                Err(ErrorInfo::new(
                    40103,
                    401,
                    "a key in clear is accepted over TLS only on this listener; use a token",
                ))
            }
            Some((name, secret)) => auth
                .authenticator
                .authenticate_key(name, secret)
                .map_err(|e| ErrorInfo::from_auth(&e)),
        }
    } else if let Some(token) = &params.access_token {
        auth.authenticator
            .authenticate_token(token, tern_auth::now_ms())
            .map_err(|e| ErrorInfo::from_auth(&e))
    } else if auth.allow_anonymous {
        Ok(auth
            .authenticator
            .anonymous(Arc::clone(&auth.anonymous_capability)))
    } else {
        Err(ErrorInfo::new(
            40101,
            401,
            "credentials required: a key or an access token",
        ))
    };
    let mut principal = r.inspect_err(|e| {
        Stats::add(&hub.stats.logins_failed, 1);
        // A token that expired or is not yet valid is a client renewing,
        // not guessing.
        if !matches!(e.code, 40140 | 40142) {
            auth.record_failure(ip);
        }
    })?;
    if let Some(c) = &params.client_id
        && (c.is_empty() || c == "*" || c.len() > rt.cfg.client_id_bytes_max)
    {
        return Err(ErrorInfo::new(40012, 400, "invalid clientId"));
    }
    let bound = principal.client_id.clone();
    let wildcard = bound.as_deref() == Some("*");
    let identity = match bound.filter(|b| b != "*") {
        Some(b) => {
            if params.client_id.as_deref().is_some_and(|c| c != b) {
                return Err(ErrorInfo::new(
                    40102,
                    401,
                    "the clientId differs from the one the token binds",
                ));
            }
            Some(b)
        }
        None => params.client_id.clone(),
    };
    // Deny rules by client id see the id actually used.
    principal.client_id = identity.clone();
    Ok((principal, identity, wildcard))
}

/// One attachment: a channel string the client attached with.
#[derive(Debug)]
struct Attachment {
    /// Its hub channel.
    hub: String,
    /// Granted mode flags.
    modes: u64,
    /// Last sequence number replayed from history on attach: live
    /// deliveries up to it are duplicates.
    skip_to: u64,
}

/// A connection after CONNECTED.
struct Conn {
    rt: Arc<Realtime>,
    hub: Arc<Hub>,
    format: Format,
    peer: std::net::SocketAddr,
    /// Public id, in every message it publishes.
    connection_id: String,
    /// Private key (`resume` sends it back).
    connection_key: String,
    session: Arc<SessionHandle>,
    link: Arc<ConnLink>,
    /// Presence events for this connection.
    mailbox: Arc<Mailbox>,
    /// Who it is and what it may do.
    principal: Principal,
    /// The clientId it is identified as, if any.
    client_id: Option<String>,
    /// A wildcard token (`*`) without a clientId given.
    wildcard: bool,
    /// Every operation is allowed: skip the per-operation checks.
    unrestricted: bool,
    /// Deliver its own messages back to it.
    echo: bool,
    /// Channel string → attachment (bounded by
    /// `channels_per_connection_max`).
    attached: HashMap<String, Attachment>,
    /// Hub channels it may have presence members on (for the implicit
    /// leave); bounded like `attached`.
    entered: HashSet<String>,
    /// Frames waiting to be written, in order.
    out: Vec<ProtocolMessage>,
    /// Rough size of `out`, to bound a write batch.
    out_bytes: usize,
    /// Journal sequence number that must be durable before `out` goes (the
    /// ACK of a message routed to a persistent session).
    durable_needed: u64,
    /// Send a WebSocket ping with the next write.
    ping: bool,
    /// Numbers SYNC sequences.
    syncs: u64,
    /// Answers to the msgSerials received (a resent one is answered
    /// again, not processed twice).
    answers: Answers,
    /// After a resume: the channel strings attached before, whose
    /// re-attach may be RESUMED (bounded like `attached`).
    resumable: HashSet<String>,
    /// After a resume: when the previous transport was lost.
    lost_at: Option<Instant>,
}

impl Conn {
    async fn open(
        rt: &Arc<Realtime>,
        params: &ConnectParams,
        origin: &Origin,
        format: Format,
    ) -> Result<Conn, ErrorInfo> {
        let (principal, client_id, wildcard) = authenticate(rt, params, origin)?;
        let hub = rt.ctx.hub.clone();
        let asked = params.resume.as_deref().or(params.recover.as_deref());
        let mut resumed = None;
        if let Some(key) = asked {
            // The same identity only (the credentials were just checked).
            resumed = rt
                .resumes
                .claim(key)
                .await
                .filter(|p| p.client_id == client_id)
                .map(|p| (key.to_owned(), p));
        }
        let (connection_id, connection_key) = match &resumed {
            Some((key, p)) => (p.connection_id.clone(), key.clone()),
            None => {
                let id = random_id(9);
                (id.clone(), format!("{}!{id}", random_id(12)))
            }
        };
        let attached = hub
            .connect(&format!("\0rt:{connection_id}"), true, 0, Instant::now())
            .map_err(|e| ErrorInfo::new(50000, 500, e.to_string()))?;
        let unrestricted = rt.ctx.auth.authenticator.deny_rules().is_empty()
            && principal.capability.canonical() == tern_auth::Capability::all().canonical();
        let mut conn = Conn {
            rt: rt.clone(),
            hub: hub.clone(),
            format,
            peer: origin.peer,
            connection_key,
            connection_id,
            mailbox: Mailbox::new(attached.link.clone(), rt.cfg.presence_events_queued_max),
            session: attached.session,
            link: attached.link,
            principal,
            client_id,
            wildcard,
            unrestricted,
            echo: params.echo,
            attached: HashMap::new(),
            entered: HashSet::new(),
            out: Vec::new(),
            out_bytes: 0,
            durable_needed: 0,
            ping: false,
            syncs: 0,
            answers: Answers::default(),
            resumable: HashSet::new(),
            lost_at: None,
        };
        let mut connected = conn.connected();
        if let Some((_, p)) = resumed {
            // RTN15c6: the same connection, no error. Presence members
            // stay unless their implicit leave already ran; a channel
            // whose members left is not RESUMED (the client re-enters).
            let kept = p.pending_leave.lock().take();
            let left = kept.is_none();
            conn.entered = kept.unwrap_or_default();
            conn.answers = p.answers;
            conn.lost_at = Some(p.lost_at);
            conn.resumable = p
                .attached
                .into_iter()
                .filter(|(_, hub)| !(left && p.entered.contains(hub)))
                .map(|(raw, _)| raw)
                .collect();
            tracing::debug!(connection_id = %conn.connection_id, "realtime connection resumed");
        } else if asked.is_some() {
            // Unknown or expired: a new connection, and the client
            // re-attaches (RTN15c7).
            connected.error = Some(ErrorInfo::new(
                80008,
                400,
                "unable to recover the connection: a new connection was made",
            ));
        }
        rt.resumes.register(&conn.connection_key, conn.link.clone());
        conn.push(connected);
        Stats::add(&hub.stats.clients_connected, 1);
        Stats::add(&hub.stats.connections_total, 1);
        tracing::debug!(peer = %conn.peer, connection_id = %conn.connection_id, client_id = ?conn.client_id, ?format, "realtime connection");
        Ok(conn)
    }

    fn connected(&self) -> ProtocolMessage {
        let cfg = &self.rt.cfg;
        ProtocolMessage {
            action: action::CONNECTED,
            connection_id: Some(self.connection_id.clone()),
            connection_details: Some(ConnectionDetails {
                connection_key: Some(self.connection_key.clone()),
                client_id: self
                    .client_id
                    .clone()
                    .or_else(|| self.wildcard.then(|| "*".to_owned())),
                max_idle_interval: Some(cfg.max_idle_interval.as_millis() as u64),
                connection_state_ttl: Some(cfg.connection_state_ttl.as_millis() as u64),
                max_message_size: Some(cfg.message_bytes_max as u64),
                max_frame_size: Some(cfg.frame_bytes_max as u64),
                server_id: Some(cfg.server_id.clone()),
            }),
            ..ProtocolMessage::default()
        }
    }

    fn push(&mut self, pm: ProtocolMessage) {
        self.out_bytes += 64;
        self.out.push(pm);
    }

    async fn run(mut self, mut sink: Sink, mut stream: SplitStream<WebSocket>) {
        let end = self.main_loop(&mut sink, &mut stream).await;
        self.close(end, &mut sink).await;
    }

    async fn main_loop(&mut self, sink: &mut Sink, stream: &mut SplitStream<WebSocket>) -> End {
        let link = self.link.clone();
        let idle = self.rt.cfg.max_idle_interval;
        let silence = self.rt.cfg.client_silence_max;
        let mut last_tx = Instant::now();
        let mut last_rx = Instant::now();
        loop {
            if !self.out.is_empty() || self.ping {
                if let Err(end) = self.flush(sink).await {
                    return end;
                }
                last_tx = Instant::now();
            }
            let cred_at = self.credentials_deadline();
            tokio::select! {
                f = stream.next() => match f {
                    None | Some(Err(_)) => return End::Lost,
                    Some(Ok(f)) => {
                        last_rx = Instant::now();
                        if let Err(end) = self.on_frame(f).await {
                            return end;
                        }
                        if let Err(end) = self.drain() {
                            return end;
                        }
                    }
                },
                _ = link.woken() => {
                    match link.kicked() {
                        KickReason::None => {}
                        KickReason::ShuttingDown => {
                            return End::Disconnected(ErrorInfo::new(80003, 503, "the server is shutting down"));
                        }
                        KickReason::TakenOver | KickReason::QueueFull => {
                            return End::Disconnected(ErrorInfo::new(80003, 503, "disconnected by the server"));
                        }
                    }
                    if let Err(end) = self.drain() {
                        return end;
                    }
                }
                _ = tokio::time::sleep_until((last_tx + idle).into()) => {
                    // RTN23: something every maxIdleInterval; the ping
                    // also shows whether the client is still there.
                    self.push(ProtocolMessage::new(action::HEARTBEAT));
                    self.ping = true;
                }
                _ = tokio::time::sleep_until((last_rx + silence).into()) => {
                    tracing::debug!(connection_id = %self.connection_id, "realtime client silent; closing");
                    return End::Lost;
                }
                _ = tokio::time::sleep_until(cred_at.unwrap_or(last_rx + silence).into()), if cred_at.is_some() => {
                    return End::Disconnected(ErrorInfo::new(40142, 401, "the token expired"));
                }
            }
        }
    }

    /// Writes every pending frame once what they acknowledge is durable.
    async fn flush(&mut self, sink: &mut Sink) -> Result<(), End> {
        let timeout = self.rt.cfg.write_timeout;
        if self.durable_needed > 0 {
            if let Some(j) = self.hub.journal() {
                match tokio::time::timeout(timeout, j.wait_durable(self.durable_needed)).await {
                    Ok(Ok(())) => {}
                    _ => {
                        // Nothing unacknowledged is lost: the client
                        // publishes again after reconnecting.
                        self.out.clear();
                        return Err(End::Disconnected(ErrorInfo::new(
                            50000,
                            500,
                            "the server could not store the message",
                        )));
                    }
                }
            }
            self.durable_needed = 0;
        }
        let mut frames: Vec<Frame> = self
            .out
            .drain(..)
            .map(|pm| frame(&pm, self.format))
            .collect();
        self.out_bytes = 0;
        if std::mem::take(&mut self.ping) {
            frames.push(Frame::Ping(bytes::Bytes::new()));
        }
        let n: usize = frames
            .iter()
            .map(|f| match f {
                Frame::Text(t) => t.len(),
                Frame::Binary(b) => b.len(),
                _ => 0,
            })
            .sum();
        let r = tokio::time::timeout(timeout, async {
            for f in frames {
                sink.feed(f).await?;
            }
            sink.flush().await
        })
        .await;
        match r {
            Ok(Ok(())) => {
                Stats::add(&self.hub.stats.bytes_sent, n as u64);
                Ok(())
            }
            _ => Err(End::Lost),
        }
    }

    fn credentials_deadline(&self) -> Option<Instant> {
        let at = self.principal.expires_at_ms?;
        let left = at.saturating_sub(tern_auth::now_ms());
        Some(Instant::now() + Duration::from_millis(left))
    }

    async fn on_frame(&mut self, f: Frame) -> Result<(), End> {
        let (bytes, format): (&[u8], Format) = match &f {
            Frame::Text(t) => (t.as_bytes(), Format::Json),
            Frame::Binary(b) => (b, Format::Msgpack),
            Frame::Close(_) => return Err(End::Lost),
            Frame::Ping(_) | Frame::Pong(_) => return Ok(()),
        };
        Stats::add(&self.hub.stats.bytes_received, bytes.len() as u64);
        if bytes.len() > self.rt.cfg.frame_bytes_max {
            Stats::add(&self.hub.stats.protocol_errors, 1);
            return Err(End::Fatal(ErrorInfo::new(
                40009,
                400,
                format!(
                    "a frame of {} bytes is over the {} allowed",
                    bytes.len(),
                    self.rt.cfg.frame_bytes_max
                ),
            )));
        }
        let pm = ProtocolMessage::decode(bytes, format).map_err(|e| {
            Stats::add(&self.hub.stats.protocol_errors, 1);
            End::Fatal(e.to_error_info())
        })?;
        self.on_message(pm).await
    }

    async fn on_message(&mut self, pm: ProtocolMessage) -> Result<(), End> {
        match pm.action {
            action::HEARTBEAT => {
                self.push(ProtocolMessage {
                    action: action::HEARTBEAT,
                    id: pm.id,
                    ..ProtocolMessage::default()
                });
                Ok(())
            }
            action::CONNECT | action::ACTIVATE => Ok(()),
            action::DISCONNECT => Err(End::Lost),
            action::CLOSE => Err(End::Closed),
            action::ATTACH => self.on_attach(pm).await,
            action::DETACH => self.on_detach(pm),
            action::MESSAGE => self.on_publish(pm),
            action::PRESENCE => self.on_presence(pm),
            action::SYNC => self.on_sync_request(pm),
            action::AUTH => self.on_auth(pm),
            other => {
                Stats::add(&self.hub.stats.protocol_errors, 1);
                Err(End::Fatal(ErrorInfo::new(
                    40000,
                    400,
                    format!("unexpected action {other}"),
                )))
            }
        }
    }

    fn allowed(&self, op: &Op, channel: &str) -> bool {
        self.unrestricted
            || self
                .rt
                .ctx
                .auth
                .authenticator
                .check(&self.principal, op, channel)
    }

    fn channel_error(&mut self, channel: &str, e: ErrorInfo) {
        self.push(ProtocolMessage {
            action: action::ERROR,
            channel: Some(channel.to_owned()),
            error: Some(e),
            ..ProtocolMessage::default()
        });
    }

    fn required_channel(pm: &ProtocolMessage) -> Result<String, End> {
        pm.channel.clone().ok_or_else(|| {
            End::Fatal(ErrorInfo::new(
                40000,
                400,
                format!("action {} without a channel", pm.action),
            ))
        })
    }

    async fn on_attach(&mut self, pm: ProtocolMessage) -> Result<(), End> {
        let raw = Conn::required_channel(&pm)?;
        let name = match channel_name(&raw) {
            Ok(n) => n.to_owned(),
            Err(e) => {
                self.channel_error(&raw, e);
                return Ok(());
            }
        };
        let rewind = match Rewind::of_attach(&raw, pm.params.as_ref(), self.rt.cfg.rewind_max) {
            Ok(r) => r,
            Err(v) => {
                self.channel_error(
                    &raw,
                    ErrorInfo::new(
                        40003,
                        400,
                        format!(
                            "rewind {v:?}: expected a number of messages or a period (30s, 2m)"
                        ),
                    ),
                );
                return Ok(());
            }
        };
        let mut modes = 0;
        if self.allowed(&Op::Subscribe, &name) {
            modes |= flags::SUBSCRIBE | flags::PRESENCE_SUBSCRIBE;
        }
        if self.allowed(&Op::Publish, &name) {
            modes |= flags::PUBLISH;
        }
        if self.allowed(&Op::Presence, &name) {
            modes |= flags::PRESENCE;
        }
        let requested = pm.flags.unwrap_or(0) & flags::MODES;
        if requested != 0 {
            modes &= requested;
        }
        if modes == 0 {
            Stats::add(&self.hub.stats.subscribes_denied, 1);
            self.channel_error(
                &raw,
                ErrorInfo::new(
                    40160,
                    401,
                    format!("the capability does not allow attaching to channel {name:?}"),
                ),
            );
            return Ok(());
        }
        if !self.attached.contains_key(&raw)
            && self.attached.len() >= self.rt.cfg.channels_per_connection_max
        {
            self.channel_error(
                &raw,
                ErrorInfo::new(
                    90021,
                    400,
                    format!(
                        "at most {} channels may be attached per connection",
                        self.rt.cfg.channels_per_connection_max
                    ),
                ),
            );
            return Ok(());
        }
        if modes & flags::SUBSCRIBE != 0 {
            let opts = SubOptions {
                qos: 0,
                no_local: !self.echo,
                ..SubOptions::default()
            };
            if let Err(e) = self.hub.subscribe(&self.session, &name, opts) {
                let e = match e {
                    SubscribeError::InvalidFilter(t) => ErrorInfo::invalid_channel(t),
                    SubscribeError::TooManySubscriptions => {
                        ErrorInfo::new(90021, 400, "the connection has reached its channel limit")
                    }
                };
                self.channel_error(&raw, e);
                return Ok(());
            }
        } else if self
            .attached
            .get(&raw)
            .is_some_and(|a| a.modes & flags::SUBSCRIBE != 0)
        {
            self.attached.remove(&raw);
            self.unsubscribe_unused(&name);
        }
        let was_attached = self.attached.contains_key(&raw);
        // Subscribed first, then history read: nothing is lost in between
        // and live copies of replayed messages are skipped.
        let (replay, covered) = if modes & flags::SUBSCRIBE == 0 {
            (Vec::new(), false)
        } else if let Some(after) = pm
            .channel_serial
            .as_deref()
            .filter(|_| !was_attached)
            .and_then(|s| u64::from_str_radix(s, 16).ok())
        {
            // RTL4c1/RTN15c6: what it missed after its last serial.
            self.replay_after(&name, after).await
        } else if let Some(r) = rewind.filter(|_| !was_attached) {
            (self.rewind(&name, r).await, false)
        } else {
            (Vec::new(), false)
        };
        let resumed = self.resumable.remove(&raw) && covered;
        let members = if modes & flags::PRESENCE_SUBSCRIBE != 0 {
            Some(
                self.rt
                    .presence
                    .watch(&name, &self.connection_id, &raw, &self.mailbox),
            )
        } else {
            self.rt.presence.unwatch(&name, &self.connection_id, &raw);
            None
        };
        let skip_to = match replay.last() {
            Some(m) => m.seq,
            // A repeat ATTACH keeps skipping what it replayed.
            None => self.attached.get(&raw).map_or(0, |a| a.skip_to),
        };
        self.attached.insert(
            raw.clone(),
            Attachment {
                hub: name,
                modes,
                skip_to,
            },
        );
        let has_presence = members.as_ref().is_some_and(|m| !m.is_empty());
        let mut f = modes;
        if has_presence {
            f |= flags::HAS_PRESENCE;
        }
        if !replay.is_empty() {
            f |= flags::HAS_BACKLOG;
        }
        if resumed {
            f |= flags::RESUMED;
        }
        // The params in effect: the rewind asked for in `params`.
        let params = pm
            .params
            .as_ref()
            .and_then(|p| p.get("rewind"))
            .filter(|_| rewind.is_some())
            .map(|v| serde_json::json!({ "rewind": v }));
        self.push(ProtocolMessage {
            action: action::ATTACHED,
            channel: Some(raw.clone()),
            flags: Some(f),
            channel_serial: Some(serial_of(self.hub.last_seq())),
            params,
            ..ProtocolMessage::default()
        });
        match members {
            Some(m) if !m.is_empty() => self.push_sync(&raw, m),
            // A resumed channel's member list is refreshed all the same
            // (presence events while it was away are not replayed).
            Some(_) if resumed => self.push(ProtocolMessage {
                action: action::SYNC,
                channel: Some(raw.clone()),
                presence: Some(Vec::new()),
                ..ProtocolMessage::default()
            }),
            _ => {}
        }
        self.push_replay(&raw, &replay);
        Ok(())
    }

    /// Waits (bounded) until every message published so far is readable
    /// from history: history is written by the store's writer, after the
    /// publish.
    async fn history_settled(&self) {
        if let Some(j) = self.hub.journal() {
            let upto = j.last_pushed();
            let _ = tokio::time::timeout(self.rt.cfg.write_timeout, j.wait_durable(upto)).await;
        }
    }

    /// Drops messages this connection may not see again: its own when it
    /// connected with `echo=false`.
    fn replayable(&self, m: &tern_hub::Message) -> bool {
        self.echo || m.origin.as_deref() != Some(&*self.session.client_id)
    }

    /// Messages of `name` after sequence number `after`, oldest first, and
    /// whether they are all of them (history kept everything since).
    async fn replay_after(&self, name: &str, after: u64) -> (Vec<Arc<tern_hub::Message>>, bool) {
        let (Some(h), Some(rule)) = (
            self.hub.history(),
            self.hub.config().history.for_channel(name).cloned(),
        ) else {
            return (Vec::new(), false);
        };
        self.history_settled().await;
        let max = self.rt.cfg.resume_replay_max;
        let q = HistoryQuery {
            channel: name.to_owned(),
            start_ms: None,
            end_ms: None,
            limit: max.saturating_add(1),
            forwards: true,
            after_seq: Some(after),
        };
        let mut msgs = match h.query(&q) {
            Ok(p) => p.messages,
            Err(e) => {
                tracing::warn!(channel = %name, error = %e, "history unreadable for a resume");
                return (Vec::new(), false);
            }
        };
        // Everything since is there when fewer than the rule keeps came
        // back (older ones are dropped first) and none aged out since the
        // connection was lost.
        let mut covered = msgs.len() <= max
            && msgs.len() < rule.messages as usize
            && self.lost_at.is_none_or(|t| t.elapsed() < rule.age);
        msgs.truncate(max);
        let mut bytes = 0;
        let cut = msgs.iter().position(|m| {
            bytes += m.payload.len();
            bytes > REPLAY_BYTES_MAX
        });
        if let Some(i) = cut {
            msgs.truncate(i);
            covered = false;
        }
        msgs.retain(|m| self.replayable(m));
        (msgs, covered)
    }

    /// The messages a `rewind` asks for, oldest first: from history when
    /// the channel keeps it, else its retained MQTT message (the last
    /// message of a channel without history).
    async fn rewind(&self, name: &str, r: Rewind) -> Vec<Arc<tern_hub::Message>> {
        let now_ms = tern_hub::unix_ms();
        let since_ms = |d: std::time::Duration| now_ms.saturating_sub(d.as_millis() as u64);
        let keeps = self.hub.config().history.for_channel(name).is_some();
        let mut msgs = match (self.hub.history(), keeps) {
            (Some(h), true) => {
                self.history_settled().await;
                let (limit, start_ms) = match r {
                    Rewind::Count(0) => return Vec::new(),
                    Rewind::Count(n) => (n, None),
                    Rewind::Since(d) => (self.rt.cfg.rewind_max, Some(since_ms(d))),
                };
                let q = HistoryQuery {
                    channel: name.to_owned(),
                    start_ms,
                    end_ms: None,
                    limit,
                    forwards: false,
                    after_seq: None,
                };
                match h.query(&q) {
                    Ok(p) => {
                        let mut m = p.messages;
                        m.reverse();
                        m
                    }
                    Err(e) => {
                        tracing::warn!(channel = %name, error = %e, "history unreadable for a rewind");
                        Vec::new()
                    }
                }
            }
            _ => {
                let m = self.hub.retained(name).filter(|m| match r {
                    Rewind::Count(n) => n > 0,
                    Rewind::Since(d) => self.hub.wall_ms(m.received_at) >= since_ms(d),
                });
                m.into_iter().collect()
            }
        };
        let mut bytes = 0;
        // Keep the newest within the byte bound.
        let keep_from = msgs
            .iter()
            .rposition(|m| {
                bytes += m.payload.len();
                bytes > REPLAY_BYTES_MAX
            })
            .map_or(0, |i| i + 1);
        msgs.drain(..keep_from);
        msgs.retain(|m| self.replayable(m));
        msgs
    }

    /// Replayed messages as MESSAGE frames on `channel`.
    fn push_replay(&mut self, channel: &str, msgs: &[Arc<tern_hub::Message>]) {
        for chunk in msgs.chunks(MESSAGES_PER_FRAME_MAX) {
            let Some(last) = chunk.last() else { continue };
            let messages: Vec<wire::Message> = chunk
                .iter()
                .map(|m| {
                    self.out_bytes += m.payload.len() + 100;
                    wire::Message::from_hub(m, self.hub.wall_ms(m.received_at))
                })
                .collect();
            Stats::add(&self.hub.stats.messages_sent, messages.len() as u64);
            self.push(ProtocolMessage {
                action: action::MESSAGE,
                channel: Some(channel.to_owned()),
                channel_serial: Some(serial_of(last.seq)),
                messages: Some(messages),
                ..ProtocolMessage::default()
            });
        }
    }

    /// The members as SYNC pages; the last has an empty cursor (RTP18).
    fn push_sync(&mut self, channel: &str, members: Vec<PresenceMessage>) {
        self.syncs += 1;
        let sync_id = format!("s{}", self.syncs);
        let page = self.rt.cfg.sync_page_members.max(1);
        let pages: Vec<Vec<PresenceMessage>> = members.chunks(page).map(<[_]>::to_vec).collect();
        let n = pages.len();
        for (i, p) in pages.into_iter().enumerate() {
            let cursor = if i + 1 == n {
                String::new()
            } else {
                (i + 1).to_string()
            };
            self.out_bytes += p.iter().map(|m| m.data_len() + 100).sum::<usize>();
            self.push(ProtocolMessage {
                action: action::SYNC,
                channel: Some(channel.to_owned()),
                channel_serial: Some(format!("{sync_id}:{cursor}")),
                presence: Some(p),
                ..ProtocolMessage::default()
            });
        }
    }

    fn on_sync_request(&mut self, pm: ProtocolMessage) -> Result<(), End> {
        let raw = Conn::required_channel(&pm)?;
        if let Some(a) = self.attached.get(&raw)
            && a.modes & flags::PRESENCE_SUBSCRIBE != 0
        {
            let members = self.rt.presence.members(&a.hub);
            if members.is_empty() {
                self.push(ProtocolMessage {
                    action: action::SYNC,
                    channel: Some(raw),
                    presence: Some(Vec::new()),
                    ..ProtocolMessage::default()
                });
            } else {
                self.push_sync(&raw, members);
            }
        }
        Ok(())
    }

    /// Drops the hub subscription to `name` unless another attachment
    /// still subscribes to it.
    fn unsubscribe_unused(&mut self, name: &str) {
        let still = self
            .attached
            .values()
            .any(|a| a.hub == name && a.modes & flags::SUBSCRIBE != 0);
        if !still {
            self.hub.unsubscribe(&self.session, name);
        }
    }

    fn on_detach(&mut self, pm: ProtocolMessage) -> Result<(), End> {
        let raw = Conn::required_channel(&pm)?;
        if let Some(a) = self.attached.remove(&raw) {
            self.unsubscribe_unused(&a.hub);
            self.rt.presence.unwatch(&a.hub, &self.connection_id, &raw);
            if !self.attached.values().any(|o| o.hub == a.hub) && self.entered.remove(&a.hub) {
                // Implicit leave on detach.
                self.rt
                    .presence
                    .leave_connection(&a.hub, &self.connection_id, tern_hub::unix_ms());
            }
        }
        self.push(ProtocolMessage::for_channel(action::DETACHED, &raw));
        Ok(())
    }

    fn nack(&mut self, serial: i64, e: ErrorInfo) {
        self.answers.record(serial, Answer::Nack(e.clone()));
        self.push_nack(serial, e);
    }

    fn push_nack(&mut self, serial: i64, e: ErrorInfo) {
        self.push(ProtocolMessage {
            action: action::NACK,
            msg_serial: Some(serial),
            count: Some(1),
            error: Some(e),
            ..ProtocolMessage::default()
        });
    }

    /// Acknowledges `serial`, merged into the previous ACK when it
    /// directly precedes it.
    fn ack(&mut self, serial: i64, res: Option<PublishResult>) {
        self.answers.record(serial, Answer::Ack(res.clone()));
        self.push_ack(serial, res);
    }

    /// A msgSerial already answered, sent again (after a resume, RTN19a):
    /// the same answer again, nothing published twice. Returns false for a
    /// new msgSerial.
    fn answer_again(&mut self, serial: i64) -> bool {
        if serial > self.answers.high {
            return false;
        }
        match self.answers.get(serial).cloned() {
            Some(Answer::Ack(res)) => self.push_ack(serial, res),
            Some(Answer::Nack(e)) => self.push_nack(serial, e),
            // Too old to remember the serials: acknowledged all the same.
            None => self.push_ack(serial, None),
        }
        true
    }

    fn push_ack(&mut self, serial: i64, res: Option<PublishResult>) {
        if let Some(last) = self.out.last_mut()
            && last.action == action::ACK
            && last
                .msg_serial
                .zip(last.count)
                .map(|(s, c)| s + i64::from(c))
                == Some(serial)
            && last.res.is_some() == res.is_some()
        {
            last.count = last.count.map(|c| c + 1);
            if let (Some(all), Some(r)) = (&mut last.res, res) {
                all.push(r);
            }
            return;
        }
        self.push(ProtocolMessage {
            action: action::ACK,
            msg_serial: Some(serial),
            count: Some(1),
            res: res.map(|r| vec![r]),
            ..ProtocolMessage::default()
        });
    }

    fn required_serial(pm: &ProtocolMessage) -> Result<i64, End> {
        pm.msg_serial.ok_or_else(|| {
            End::Fatal(ErrorInfo::new(
                40000,
                400,
                format!("action {} without a msgSerial", pm.action),
            ))
        })
    }

    /// The clientId a message or presence event carries: its own (checked
    /// against the identity) or the connection's.
    fn message_client_id(&self, given: Option<String>) -> Result<Option<String>, ErrorInfo> {
        match (given, &self.client_id) {
            (Some(c), Some(id)) if &c != id => Err(ErrorInfo::new(
                40012,
                400,
                format!("clientId {c:?} differs from the connection's {id:?}"),
            )),
            (Some(c), _) if c.len() > self.rt.cfg.client_id_bytes_max || c == "*" => {
                Err(ErrorInfo::new(40012, 400, "invalid clientId"))
            }
            (Some(c), _) => Ok(Some(c)),
            (None, id) => Ok(id.clone()),
        }
    }

    fn on_publish(&mut self, pm: ProtocolMessage) -> Result<(), End> {
        let serial = Conn::required_serial(&pm)?;
        if self.answer_again(serial) {
            return Ok(());
        }
        let raw = Conn::required_channel(&pm)?;
        match self.publish(&raw, pm.messages.unwrap_or_default()) {
            Ok(serials) => self.ack(serial, Some(PublishResult { serials })),
            Err(e) => self.nack(serial, e),
        }
        Ok(())
    }

    fn publish(
        &mut self,
        raw: &str,
        messages: Vec<wire::Message>,
    ) -> Result<Vec<Option<String>>, ErrorInfo> {
        let name = channel_name(raw)?;
        if !self.allowed(&Op::Publish, name) {
            Stats::add(&self.hub.stats.publishes_denied, 1);
            return Err(ErrorInfo::new(
                40160,
                401,
                format!("the capability does not allow publishing to channel {name:?}"),
            ));
        }
        let size: usize = messages
            .iter()
            .map(|m| m.data_len() + m.name.as_ref().map_or(0, String::len))
            .sum();
        if size > self.rt.cfg.message_bytes_max {
            return Err(ErrorInfo::new(
                40009,
                400,
                format!(
                    "{size} bytes of messages is over the {} allowed",
                    self.rt.cfg.message_bytes_max
                ),
            ));
        }
        // Everything is checked before anything is routed: a NACK means
        // none of the messages went out.
        let now = Instant::now();
        let origin: Arc<str> = self.session.client_id.clone();
        let mut ready = Vec::with_capacity(messages.len());
        for mut m in messages {
            m.client_id = self.message_client_id(m.client_id.take())?;
            m.connection_id = Some(self.connection_id.clone());
            m.connection_key = None;
            m.timestamp = None;
            m.serial = None;
            let mut h = m.into_hub(name, Some(origin.clone()))?;
            h.received_at = now;
            ready.push(h);
        }
        let mut serials = Vec::with_capacity(ready.len());
        for h in ready {
            // A message id already published on the channel within the
            // dedup window is not published again; its serial is the
            // first one's.
            match self
                .hub
                .publish_once(h)
                .map_err(ErrorInfo::invalid_channel)?
            {
                PublishOnce::Published(r, seq) => {
                    self.durable_needed = self.durable_needed.max(r.durable_seq);
                    serials.push(Some(serial_of(seq)));
                }
                PublishOnce::Duplicate(seq) => serials.push(Some(serial_of(seq))),
            }
        }
        Ok(serials)
    }

    fn on_presence(&mut self, pm: ProtocolMessage) -> Result<(), End> {
        let serial = Conn::required_serial(&pm)?;
        if self.answer_again(serial) {
            return Ok(());
        }
        let raw = Conn::required_channel(&pm)?;
        match self.presence(&raw, serial, pm.presence.unwrap_or_default()) {
            Ok(()) => self.ack(serial, None),
            Err(e) => self.nack(serial, e),
        }
        Ok(())
    }

    fn presence(
        &mut self,
        raw: &str,
        serial: i64,
        events: Vec<PresenceMessage>,
    ) -> Result<(), ErrorInfo> {
        let name = channel_name(raw)?.to_owned();
        if !self.allowed(&Op::Presence, &name) {
            return Err(ErrorInfo::new(
                40160,
                401,
                format!("the capability does not allow presence on channel {name:?}"),
            ));
        }
        let size: usize = events.iter().map(PresenceMessage::data_len).sum();
        if size > self.rt.cfg.message_bytes_max {
            return Err(ErrorInfo::new(40009, 400, "presence data too large"));
        }
        if !self.entered.contains(&name)
            && self.entered.len() >= self.rt.cfg.channels_per_connection_max
        {
            return Err(ErrorInfo::new(
                90021,
                400,
                "presence on too many channels for one connection",
            ));
        }
        let now_ms = tern_hub::unix_ms();
        let mut ready = Vec::with_capacity(events.len());
        for (i, mut e) in events.into_iter().enumerate() {
            if !matches!(
                e.action,
                presence_action::ENTER | presence_action::UPDATE | presence_action::LEAVE
            ) {
                return Err(ErrorInfo::new(
                    40000,
                    400,
                    format!("presence action {} cannot be sent by a client", e.action),
                ));
            }
            let Some(client_id) = self.message_client_id(e.client_id.take())? else {
                return Err(ErrorInfo::new(
                    91000,
                    400,
                    "presence needs a clientId: connect with one",
                ));
            };
            e.normalize()?;
            e.client_id = Some(client_id);
            e.connection_id = Some(self.connection_id.clone());
            e.id = Some(format!("{}:{serial}:{i}", self.connection_id));
            e.timestamp = Some(now_ms);
            ready.push(e);
        }
        self.entered.insert(name.clone());
        for e in ready {
            self.rt.presence.apply(&name, e)?;
        }
        Ok(())
    }

    /// In-band re-authentication (RTC8a): a new token replaces the
    /// credentials; CONNECTED again with the same connectionId.
    fn on_auth(&mut self, pm: ProtocolMessage) -> Result<(), End> {
        let Some(token) = pm.auth.and_then(|a| a.access_token) else {
            return Err(End::Fatal(ErrorInfo::new(
                40000,
                400,
                "AUTH without auth.accessToken",
            )));
        };
        let mut p = self
            .rt
            .ctx
            .auth
            .authenticator
            .authenticate_token(&token, tern_auth::now_ms())
            .map_err(|e| {
                Stats::add(&self.hub.stats.logins_failed, 1);
                End::Fatal(ErrorInfo::from_auth(&e))
            })?;
        let bound = p.client_id.clone().filter(|b| b != "*");
        match (&bound, &self.client_id) {
            (Some(b), Some(id)) if b != id => {
                return Err(End::Fatal(ErrorInfo::new(
                    40102,
                    401,
                    "the new token binds a different clientId",
                )));
            }
            (Some(b), None) => self.client_id = Some(b.clone()),
            _ => {}
        }
        self.wildcard =
            p.client_id.as_deref() == Some("*") || (self.wildcard && p.kind == PrincipalKind::Key);
        p.client_id = self.client_id.clone();
        self.unrestricted = self.rt.ctx.auth.authenticator.deny_rules().is_empty()
            && p.capability.canonical() == tern_auth::Capability::all().canonical();
        self.principal = p;
        let c = self.connected();
        self.push(c);
        Ok(())
    }

    /// Moves presence events and queued deliveries into `out`, up to the
    /// write batch bound.
    fn drain(&mut self) -> Result<(), End> {
        if self.mailbox.overflowed() {
            return Err(End::Disconnected(ErrorInfo::new(
                80003,
                503,
                "too many presence events waiting for this connection",
            )));
        }
        for (channel, event) in self.mailbox.take() {
            if !self.attached.contains_key(&*channel) {
                continue;
            }
            self.out_bytes += event.data_len() + 100;
            match self.out.last_mut() {
                Some(last)
                    if last.action == action::PRESENCE
                        && last.channel.as_deref() == Some(&*channel)
                        && last.msg_serial.is_none() =>
                {
                    last.presence.get_or_insert_with(Vec::new).push(event);
                }
                _ => self.push(ProtocolMessage {
                    action: action::PRESENCE,
                    channel: Some(channel.to_string()),
                    presence: Some(vec![event]),
                    ..ProtocolMessage::default()
                }),
            }
        }
        let high = self.rt.cfg.write_batch_bytes_max;
        let now = Instant::now();
        let session = self.session.clone();
        let mut st = session.state.lock();
        if !st
            .owner
            .as_ref()
            .is_some_and(|o| Arc::ptr_eq(o, &self.link))
        {
            return Ok(());
        }
        let before = st.queue.len();
        while self.out_bytes < high {
            match st.next_outgoing(1, now) {
                NextOutgoing::Send(Outgoing::Publish {
                    delivery,
                    packet_id,
                    ..
                }) => {
                    if let Some(pid) = packet_id {
                        // Subscriptions are QoS 0; nothing to hold.
                        st.abandon(pid);
                    }
                    self.deliver(&delivery.msg);
                }
                NextOutgoing::Send(Outgoing::Release { .. }) => {}
                NextOutgoing::Expired => Stats::add(&self.hub.stats.dropped_expired, 1),
                NextOutgoing::WindowFull | NextOutgoing::Idle => break,
            }
        }
        if !st.queue.is_empty() {
            // The rest after this batch is written.
            self.link.wake();
        }
        let low = self.hub.config().backpressure_queue_messages / 2;
        if before >= low && st.queue.len() < low {
            session.drained.notify_waiters();
        }
        Ok(())
    }

    /// One hub message to every attachment of its channel with SUBSCRIBE.
    fn deliver(&mut self, msg: &tern_hub::Message) {
        let targets: Vec<String> = self
            .attached
            .iter()
            .filter(|(_, a)| {
                a.hub == *msg.topic && a.modes & flags::SUBSCRIBE != 0 && msg.seq > a.skip_to
            })
            .map(|(k, _)| k.clone())
            .collect();
        if targets.is_empty() {
            return;
        }
        if !self.allowed(&Op::Subscribe, &msg.topic) {
            // Credentials narrowed since it was queued.
            Stats::add(&self.hub.stats.subscribes_denied, 1);
            return;
        }
        Stats::add(&self.hub.stats.messages_sent, 1);
        let m = wire::Message::from_hub(msg, self.hub.wall_ms(msg.received_at));
        let serial = serial_of(msg.seq);
        for channel in targets {
            self.out_bytes += msg.payload.len() + 100;
            match self.out.last_mut() {
                Some(last)
                    if last.action == action::MESSAGE
                        && last.channel.as_deref() == Some(channel.as_str())
                        && last
                            .messages
                            .as_ref()
                            .is_some_and(|v| v.len() < MESSAGES_PER_FRAME_MAX) =>
                {
                    last.messages.get_or_insert_with(Vec::new).push(m.clone());
                    last.channel_serial = Some(serial.clone());
                }
                _ => self.push(ProtocolMessage {
                    action: action::MESSAGE,
                    channel: Some(channel),
                    channel_serial: Some(serial.clone()),
                    messages: Some(vec![m.clone()]),
                    ..ProtocolMessage::default()
                }),
            }
        }
    }

    /// Ends the connection: the last frame, the hub session, presence.
    async fn close(mut self, end: End, sink: &mut Sink) {
        let last = match &end {
            End::Closed => Some(ProtocolMessage::new(action::CLOSED)),
            End::Lost => None,
            End::Fatal(e) => Some(ProtocolMessage::with_error(action::ERROR, e.clone())),
            End::Disconnected(e) => {
                Some(ProtocolMessage::with_error(action::DISCONNECTED, e.clone()))
            }
        };
        if let Some(pm) = last {
            self.push(pm);
            let _ = tokio::time::timeout(CLOSE_FLUSH, async {
                if self.flush(sink).await.is_ok() {
                    let _ = sink.close().await;
                }
            })
            .await;
        }
        self.hub
            .disconnect(&self.session, &self.link, None, 0, Instant::now());
        let mut attached = HashMap::with_capacity(self.attached.len());
        for (raw, a) in self.attached.drain() {
            self.rt.presence.unwatch(&a.hub, &self.connection_id, &raw);
            attached.insert(raw, a.hub);
        }
        let entered: HashSet<String> = std::mem::take(&mut self.entered);
        let keep = matches!(end, End::Lost | End::Disconnected(_));
        if !keep {
            self.rt.resumes.forget(&self.connection_key, &self.link);
            let now = tern_hub::unix_ms();
            for ch in &entered {
                self.rt
                    .presence
                    .leave_connection(ch, &self.connection_id, now);
            }
        } else {
            // Members leave after the grace period unless a resume takes
            // them back first.
            let pending: PendingLeave = Arc::new(parking_lot::Mutex::new(Some(entered.clone())));
            if !entered.is_empty() {
                let rt = self.rt.clone();
                let id = self.connection_id.clone();
                let grace = self.rt.cfg.presence_leave_grace;
                let pending = pending.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(grace).await;
                    let left = pending.lock().take();
                    let now = tern_hub::unix_ms();
                    for ch in left.iter().flatten() {
                        rt.presence.leave_connection(ch, &id, now);
                    }
                });
            }
            let parked = Parked::new(
                self.connection_id.clone(),
                self.client_id.clone(),
                std::mem::take(&mut self.answers),
                attached,
                entered,
                pending,
            );
            self.rt
                .resumes
                .park(&self.connection_key, &self.link, parked);
        }
        Stats::add_neg(&self.hub.stats.clients_connected);
        tracing::debug!(peer = %self.peer, connection_id = %self.connection_id, reason = ?end, "realtime connection closed");
    }
}
