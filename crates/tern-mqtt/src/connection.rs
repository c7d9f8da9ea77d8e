//! One MQTT connection: CONNECT handshake, then a single task that reads
//! packets, writes the session's deliveries and enforces keep alive.
//!
//! The task owns no message state beyond the bytes in flight: the session
//! (queue, QoS windows) lives in the hub. Reads decode every complete packet
//! in the buffer before waiting again; writes go out as one buffer holding
//! everything ready, so a busy connection costs few syscalls.

use std::collections::HashMap;
use std::future::Future;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use tern_hub::{
    ConnLink, Delivery, EXPIRY_NEVER, Hub, KickReason, Message, MessageProps, NextOutgoing,
    Outgoing, PublishError, SessionHandle, Stats, SubOptions, SubscribeError, Will,
};
use tern_mqtt_codec::{
    self as codec, Auth, ConnAck, ConnAckProperties, Connect, DecodeError, Disconnect, Limits,
    Packet, ProtocolVersion, PubResp, Publish, PublishProperties, QoS, RetainHandling, SubAck,
    Subscribe, UnsubAck, Unsubscribe, reason,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf, ReadHalf, WriteHalf};

use crate::MqttContext;
use crate::auth::{TOKEN_AUTH_METHOD, Transport};
use crate::close::CloseReason;
use tern_auth::{Op, Principal};

/// The topic a client subscribes to for token events (Ably's convention).
pub const TOKEN_EVENTS_TOPIC: &str = "[mqtt]tokenevents";
/// How long before expiry the `expirywarning` is sent.
const EXPIRY_WARNING: Duration = Duration::from_secs(30);

/// Read buffer capacity reserved before each read.
const READ_CHUNK_BYTES: usize = 4096;
/// Room given to an empty output buffer when something is written to it.
const OUT_INITIAL_BYTES: usize = 256;
/// Time allowed to flush a final DISCONNECT before the socket is dropped.
const CLOSE_FLUSH: Duration = Duration::from_secs(1);

/// Serves one accepted stream until it closes.
pub fn serve<S>(
    stream: S,
    transport: Transport,
    ctx: Arc<MqttContext>,
) -> impl Future<Output = ()> + Send + 'static
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    serve_holding(stream, transport, ctx, ())
}

/// [`serve`], keeping `held` until the connection ends (the accept loop's
/// count of active connections), without a wrapper future around it.
///
/// The connection's future stays small because an idle connection keeps it
/// for its whole life: the stream is split and the transport boxed before
/// the future exists (its state then holds pointers, not a TLS stream), and
/// the handshake and the close run boxed, so only the main loop's state is
/// kept while the client is quiet.
pub(crate) fn serve_holding<S, H>(
    stream: S,
    transport: Transport,
    ctx: Arc<MqttContext>,
    held: H,
) -> impl Future<Output = ()> + Send + 'static
where
    S: AsyncRead + AsyncWrite + Send + 'static,
    H: Send + 'static,
{
    let (rd, wr) = tokio::io::split(stream);
    serve_split(rd, wr, Box::new(transport), ctx, held)
}

async fn serve_split<S, H>(
    mut rd: ReadHalf<S>,
    mut wr: WriteHalf<S>,
    transport: Box<Transport>,
    ctx: Arc<MqttContext>,
    _held: H,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
    H: Send + 'static,
{
    let limits = Limits {
        packet_bytes_max: ctx.cfg.packet_bytes_max,
    };
    let mut inbuf = BytesMut::new();
    let handshake = handshake(&mut rd, &mut wr, &mut inbuf, &limits, transport, &ctx);
    let Some(mut conn) = Box::pin(handshake).await else {
        return;
    };
    let why = conn.run(&mut rd, &mut wr, inbuf, limits).await;
    Box::pin(conn.close(why, &mut wr)).await;
}

/// Reads CONNECT (within the CONNECT timeout, which counts from the TCP
/// accept, TLS handshake included) and accepts or refuses it.
async fn handshake<R, W>(
    rd: &mut R,
    wr: &mut W,
    inbuf: &mut BytesMut,
    limits: &Limits,
    transport: Box<Transport>,
    ctx: &Arc<MqttContext>,
) -> Option<Conn>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let peer = transport.peer;
    let hub = &ctx.hub;
    let connect = match tokio::time::timeout_at(
        (transport.accepted_at + ctx.cfg.connect_timeout).into(),
        read_connect(rd, inbuf, limits, hub),
    )
    .await
    {
        // Moved out of its box, which is freed here rather than when the
        // connection ends (400 B per connection).
        Ok(Ok(c)) => *c,
        Ok(Err(refusal)) => {
            Stats::add(&hub.stats.connects_refused, 1);
            if let Some(bytes) = refusal.connack {
                let _ = tokio::time::timeout(CLOSE_FLUSH, wr.write_all(&bytes)).await;
            }
            tracing::info!(%peer, reason = %refusal.why, "connection refused");
            return None;
        }
        Err(_) => {
            Stats::add(&hub.stats.connects_refused, 1);
            tracing::info!(%peer, "no CONNECT within the connect timeout");
            return None;
        }
    };
    Conn::accept(connect, &transport, ctx, wr).await
}

/// A CONNECT that could not be accepted: what to answer, and why.
struct Refusal {
    connack: Option<Vec<u8>>,
    why: String,
}

fn refusal(why: impl Into<String>) -> Refusal {
    Refusal {
        connack: None,
        why: why.into(),
    }
}

/// Reads until a whole CONNECT is decoded.
async fn read_connect<R: AsyncRead + Unpin>(
    rd: &mut R,
    inbuf: &mut BytesMut,
    limits: &Limits,
    hub: &Hub,
) -> Result<Box<Connect>, Refusal> {
    loop {
        if let Some(&first) = inbuf.first()
            && first >> 4 != 1
        {
            // [MQTT-3.1.0-1]: the first packet must be CONNECT.
            Stats::add(&hub.stats.protocol_errors, 1);
            return Err(refusal("first packet is not CONNECT"));
        }
        match codec::decode(inbuf, ProtocolVersion::V3_1_1, limits) {
            Ok(Some(Packet::Connect(c))) => return Ok(c),
            Ok(Some(_)) => return Err(refusal("first packet is not CONNECT")),
            Ok(None) => {}
            Err(e) => {
                Stats::add(&hub.stats.protocol_errors, 1);
                return Err(connect_decode_refusal(inbuf, e));
            }
        }
        match read_into(rd, inbuf).await {
            Ok(0) => return Err(refusal("closed before CONNECT")),
            Ok(n) => Stats::add(&hub.stats.bytes_received, n as u64),
            Err(e) => return Err(refusal(format!("read error before CONNECT: {e}"))),
        }
    }
}

/// The protocol level byte of a (possibly malformed) CONNECT, if present.
fn sniff_protocol_level(buf: &[u8]) -> Option<u8> {
    let mut i = 1;
    loop {
        let b = *buf.get(i)?;
        i += 1;
        if b & 0x80 == 0 || i > 4 {
            break;
        }
    }
    let name_len = u16::from_be_bytes([*buf.get(i)?, *buf.get(i + 1)?]) as usize;
    buf.get(i + 2 + name_len).copied()
}

fn connect_decode_refusal(buf: &[u8], e: DecodeError) -> Refusal {
    let why = format!("malformed CONNECT: {e}");
    match e {
        // [MQTT-3.1.2-2]: answer an unknown level with return code 1, the
        // one form every version understands, then close.
        DecodeError::UnsupportedProtocolVersion(_) | DecodeError::InvalidProtocolName => Refusal {
            connack: Some(vec![0x20, 0x02, 0x00, 0x01]),
            why,
        },
        _ if sniff_protocol_level(buf) == Some(5) => {
            let ack = ConnAck {
                session_present: false,
                reason_code: e.reason_code(),
                properties: ConnAckProperties::default(),
            };
            Refusal {
                connack: encode_one(&Packet::ConnAck(ack), ProtocolVersion::V5),
                why,
            }
        }
        _ => refusal(why),
    }
}

fn encode_one(p: &Packet, v: ProtocolVersion) -> Option<Vec<u8>> {
    let mut b = BytesMut::new();
    codec::encode(p, v, &mut b).ok()?;
    Some(b.to_vec())
}

/// Maps a v5 CONNACK reason code to the v3.1.x return code.
fn v3_return_code(v5: u8) -> u8 {
    match v5 {
        reason::SUCCESS => 0,
        reason::UNSUPPORTED_PROTOCOL_VERSION => 1,
        reason::CLIENT_IDENTIFIER_NOT_VALID => 2,
        reason::BAD_USER_NAME_OR_PASSWORD => 4,
        reason::NOT_AUTHORIZED | reason::BAD_AUTHENTICATION_METHOD | reason::BANNED => 5,
        reason::CONNECTION_RATE_EXCEEDED => 3,
        _ => 3,
    }
}

/// A connection after a successful CONNECT.
///
/// An idle connection keeps this for its whole life, so what only some
/// clients use (a will, topic aliases) is boxed on demand.
struct Conn {
    peer: SocketAddr,
    version: ProtocolVersion,
    v5: bool,
    session: Arc<SessionHandle>,
    link: Arc<ConnLink>,
    /// The will to publish unless the client disconnects normally.
    will: Option<Box<Will>>,
    /// Session expiry in force, seconds.
    expiry_secs: u32,
    /// Keep alive in force; zero disables the check.
    keep_alive: Duration,
    /// Bytes waiting to be written.
    out: BytesMut,
    /// Outbound QoS 1/2 window: min(our inflight max, client's receive maximum).
    window: usize,
    /// Largest packet the client accepts (v5 Maximum Packet Size).
    client_packet_max: usize,
    /// Topic aliases both ways, once the first one is defined.
    aliases: Option<Box<Aliases>>,
    /// Most aliases we may define (client's Topic Alias Maximum, capped).
    out_alias_max: u16,
    /// The hub, the settings, the authentication policy.
    ctx: Arc<MqttContext>,
    /// Who the client is and what it may do.
    principal: Principal,
    /// Every operation is allowed: skip the per-operation checks.
    unrestricted: bool,
    /// The credentials bound a client id: it travels with the client's
    /// messages as their clientId.
    identified: bool,
    /// The connection authenticated with MQTT 5 enhanced authentication,
    /// so it may re-authenticate with AUTH.
    enhanced_auth: bool,
    /// Subscribed to `[mqtt]tokenevents`: warn before the token expires.
    token_events: bool,
    /// The expiry warning was sent for the current credentials.
    expiry_warned: bool,
    /// When the current read batch arrived: the receive time of every
    /// message in it (one clock read per batch, not per message).
    batch_now: Instant,
    /// The channel name of the last PUBLISH, shared by the next one to the
    /// same topic (the common case for a device) instead of a new allocation.
    last_topic: Option<Arc<str>>,
    /// A connected subscriber this client's QoS 1/2 messages congested, and
    /// since when: reading from this client pauses until it drains
    /// (back-pressure), for at most `backpressure_pause_max`.
    congested: Option<(Arc<SessionHandle>, Instant)>,
    /// Journal sequence number that must be durable before `out` is
    /// written (acknowledgements of QoS 1/2 messages, QoS 2 packet ids and
    /// releases, deliveries of stored messages); 0 when nothing waits.
    durable_needed: u64,
}

/// Topic aliases of one connection (MQTT 5).
#[derive(Default)]
struct Aliases {
    /// Topic aliases the client defined.
    incoming: HashMap<u16, Arc<str>>,
    /// Topic aliases we defined towards the client.
    outgoing: HashMap<Arc<str>, u16>,
}

impl Conn {
    /// Validates CONNECT, attaches the session and writes CONNACK.
    async fn accept<W: AsyncWrite + Unpin>(
        c: Connect,
        transport: &Transport,
        ctx: &Arc<MqttContext>,
        wr: &mut W,
    ) -> Option<Conn> {
        let peer = transport.peer;
        let hub = ctx.hub.clone();
        let cfg = ctx.cfg.clone();
        let version = c.protocol;
        let v5 = version.is_v5();
        let refuse = |code: u8, why: &str| {
            Stats::add(&hub.stats.connects_refused, 1);
            tracing::info!(%peer, client_id = %c.client_id, code, why, "CONNECT refused");
            let ack = ConnAck {
                session_present: false,
                reason_code: if v5 { code } else { v3_return_code(code) },
                properties: ConnAckProperties {
                    reason_string: v5.then(|| why.to_owned()),
                    ..ConnAckProperties::default()
                },
            };
            encode_one(&Packet::ConnAck(ack), version)
        };
        let mut props = ConnAckProperties::default();

        if c.client_id.len() > cfg.client_id_bytes_max {
            let b = refuse(
                reason::CLIENT_IDENTIFIER_NOT_VALID,
                "client identifier too long",
            );
            write_and_close(wr, b).await;
            return None;
        }
        let auth = &ctx.auth;
        if auth.is_blocked(peer.ip()) {
            Stats::add(&hub.stats.logins_rate_limited, 1);
            let b = refuse(
                reason::CONNECTION_RATE_EXCEEDED,
                "too many failed logins from this address; try again later",
            );
            write_and_close(wr, b).await;
            return None;
        }
        let mut principal = match auth.authenticate(&c, transport) {
            Ok(p) => p,
            Err(e) => {
                Stats::add(&hub.stats.logins_failed, 1);
                let b = refuse(e.code, &e.why);
                write_and_close(wr, b).await;
                return None;
            }
        };
        // A client id bound by the token is the only one allowed; an empty
        // CONNECT client id takes it.
        let bound = principal.client_id.clone().filter(|id| id != "*");
        // [MQTT-3.1.3-8]: 3.1.1 needs clean session for an empty id; 3.1
        // needs an id — whatever the token binds.
        if c.client_id.is_empty()
            && (version == ProtocolVersion::V3_1
                || (version == ProtocolVersion::V3_1_1 && !c.clean_start))
        {
            let b = refuse(
                reason::CLIENT_IDENTIFIER_NOT_VALID,
                "empty client identifier",
            );
            write_and_close(wr, b).await;
            return None;
        }
        let client_id: String = if let Some(id) = bound {
            if !c.client_id.is_empty() && c.client_id != id {
                let b = refuse(
                    reason::CLIENT_IDENTIFIER_NOT_VALID,
                    "the client identifier differs from the one the token binds",
                );
                write_and_close(wr, b).await;
                return None;
            }
            if c.client_id.is_empty() && v5 {
                // [MQTT-3.1.3-7]: an empty id is answered with the one used.
                props.assigned_client_identifier = Some(id.clone());
            }
            id
        } else if c.client_id.is_empty() {
            let id = assigned_client_id(&hub);
            if v5 {
                props.assigned_client_identifier = Some(id.clone());
            }
            id
        } else {
            c.client_id.clone()
        };
        // Identified: its token bound a client id (or let it pick one).
        let identified = principal.client_id.is_some();
        principal.client_id = Some(client_id.clone());
        if let Some(w) = &c.will
            && !auth.authenticator.check(&principal, &Op::Publish, &w.topic)
        {
            let b = refuse(reason::NOT_AUTHORIZED, "the will topic is not allowed");
            write_and_close(wr, b).await;
            return None;
        }
        let unrestricted = auth.authenticator.deny_rules().is_empty()
            && principal.capability.canonical() == tern_auth::Capability::all().canonical();
        let enhanced_auth = c.properties.authentication_method.is_some();
        if enhanced_auth {
            props.authentication_method = Some(TOKEN_AUTH_METHOD.to_owned());
        }

        // Keep alive.
        let mut keep_alive = c.keep_alive;
        if keep_alive > cfg.keepalive_max_secs
            || (keep_alive == 0 && cfg.keepalive_max_secs < u16::MAX)
        {
            if v5 {
                keep_alive = cfg.keepalive_max_secs;
                props.server_keep_alive = Some(keep_alive);
            } else if keep_alive != 0 {
                // 3.1.x cannot be told a different keep alive; refusing is
                // clearer than disconnecting a client that follows its own.
                let b = refuse(
                    reason::CLIENT_IDENTIFIER_NOT_VALID,
                    "keep alive above the server maximum",
                );
                write_and_close(wr, b).await;
                return None;
            }
        }

        // Session expiry.
        let requested = if v5 {
            c.properties.session_expiry_interval.unwrap_or(0)
        } else if c.clean_start {
            0
        } else {
            EXPIRY_NEVER
        };
        let expiry_secs = requested.min(cfg.session_expiry_max_secs);
        if v5 && expiry_secs != requested {
            props.session_expiry_interval = Some(expiry_secs);
        }

        // Will.
        let will = match c.will.as_ref().map(|w| build_will(w, &client_id, &hub)) {
            Some(Err(code)) => {
                let b = refuse(code, "invalid will message");
                write_and_close(wr, b).await;
                return None;
            }
            Some(Ok(w)) => Some(Box::new(w)),
            None => None,
        };

        let attached = match hub.connect(&client_id, c.clean_start, expiry_secs, Instant::now()) {
            Ok(a) => a,
            Err(e) => {
                let b = refuse(reason::SERVER_BUSY, &e.to_string());
                write_and_close(wr, b).await;
                return None;
            }
        };
        if let Some(w) = &will {
            // Stored with a persistent session: a restart publishes it.
            hub.set_will(&attached.session, Some(w));
        }

        let client_rm = c.properties.receive_maximum.unwrap_or(u16::MAX);
        let window = usize::from(cfg.inflight_max.min(client_rm)).max(1);
        let client_packet_max = c
            .properties
            .maximum_packet_size
            .map_or(usize::MAX, |m| m as usize);
        let out_alias_max = if v5 {
            c.properties
                .topic_alias_maximum
                .unwrap_or(0)
                .min(cfg.topic_alias_max)
        } else {
            0
        };
        if v5 {
            props.receive_maximum = Some(cfg.receive_maximum);
            props.maximum_packet_size = u32::try_from(cfg.packet_bytes_max).ok();
            props.topic_alias_maximum = Some(cfg.topic_alias_max);
        }
        let mut conn = Conn {
            peer,
            version,
            v5,
            session: attached.session,
            link: attached.link,
            will,
            expiry_secs,
            keep_alive: Duration::from_secs(u64::from(keep_alive)),
            out: BytesMut::new(),
            window,
            client_packet_max,
            aliases: None,
            out_alias_max,
            ctx: ctx.clone(),
            principal,
            unrestricted,
            identified,
            enhanced_auth,
            token_events: false,
            expiry_warned: false,
            batch_now: Instant::now(),
            last_topic: None,
            congested: None,
            durable_needed: 0,
        };
        if attached.session_present && !conn.unrestricted {
            // A resumed session may hold subscriptions made under other
            // credentials: keep only what this client may subscribe to.
            conn.prune_subscriptions();
        }
        conn.write(&Packet::ConnAck(ConnAck {
            session_present: attached.session_present,
            reason_code: reason::SUCCESS,
            properties: props,
        }));
        Stats::add(&hub.stats.clients_connected, 1);
        Stats::add(&hub.stats.connections_total, 1);
        tracing::debug!(
            %peer,
            client_id = %conn.session.client_id,
            ?version,
            session_present = attached.session_present,
            "client connected"
        );
        Some(conn)
    }

    /// The main loop: returns why the connection ends.
    async fn run<R, W>(
        &mut self,
        rd: &mut R,
        wr: &mut W,
        mut inbuf: BytesMut,
        limits: Limits,
    ) -> CloseReason
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        // Anything the CONNECT read already buffered (pipelined packets).
        if let Err(why) = self.decode_all(&mut inbuf, &limits) {
            return why;
        }
        if inbuf.is_empty() {
            inbuf = BytesMut::new();
        }
        self.drain();
        let link = self.link.clone();
        let mut last_rx = Instant::now();
        let read_stop_bytes = self.ctx.cfg.write_buffer_bytes_high * 4;
        // One timer for the connection's life: when it fires, it is moved to
        // 1.5 × keep alive after the last packet if one came since, so
        // reads never touch the timer wheel [MQTT-3.1.2-22].
        let ka_period = self.keep_alive * 3 / 2;
        let ka_timer = tokio::time::sleep(if ka_period.is_zero() {
            Duration::from_secs(86_400 * 365)
        } else {
            ka_period
        });
        tokio::pin!(ka_timer);
        let far = || Instant::now() + Duration::from_secs(86_400 * 365);
        let journal = self.ctx.hub.journal().cloned();
        // Timers and waits that only some connections need are boxed when
        // they are first needed, so the state every idle connection keeps
        // does not hold them: the credentials timer (expiring tokens), the
        // back-pressure wait (a paused publisher) and the durability wait
        // (acknowledgements of stored messages).
        let mut cred_timer: Option<Pin<Box<tokio::time::Sleep>>> = None;
        let mut drain_wait: Option<Pin<Box<dyn Future<Output = bool> + Send>>> = None;
        let mut durable_wait: Option<DurableWait> = None;
        loop {
            if self.principal.expires_at_ms.is_some() {
                let want = self.credentials_deadline().unwrap_or_else(far);
                match &mut cred_timer {
                    None => cred_timer = Some(Box::pin(tokio::time::sleep_until(want.into()))),
                    Some(t) => {
                        let have: Instant = t.deadline().into_std();
                        // Re-arm only when the deadline moved (re-auth,
                        // subscribing to token events), not on every wake-up.
                        if want.saturating_duration_since(have) > Duration::from_millis(100)
                            || have.saturating_duration_since(want) > Duration::from_millis(100)
                        {
                            t.as_mut().reset(want.into());
                        }
                    }
                }
            }
            if drain_wait.is_none()
                && let Some(congested) = &self.congested
            {
                drain_wait = Some(Box::pin(wait_drained(
                    congested.clone(),
                    self.ctx.hub.config().backpressure_queue_messages / 2,
                    self.ctx.cfg.backpressure_pause_max,
                )));
            }
            // Stop reading while the client does not take what we write:
            // its requests would only grow our output further.
            let can_read = self.out.len() < read_stop_bytes && self.congested.is_none();
            // Nothing goes out before what it acknowledges is durable.
            let durable = self.durable_needed == 0
                || journal
                    .as_ref()
                    .is_none_or(|j| j.durable() >= self.durable_needed);
            if durable {
                self.durable_needed = 0;
                durable_wait = None;
            } else if durable_wait
                .as_ref()
                .is_none_or(|w| w.seq < self.durable_needed)
                && let Some(j) = &journal
            {
                let (j, seq) = (j.clone(), self.durable_needed);
                durable_wait = Some(DurableWait {
                    seq,
                    wait: Box::pin(async move { j.wait_durable(seq).await }),
                });
            }
            if !inbuf.is_empty() && inbuf.capacity() - inbuf.len() < READ_CHUNK_BYTES / 4 {
                // The rest of a packet is awaited: read it in place.
                inbuf.reserve(READ_CHUNK_BYTES);
            }
            tokio::select! {
                r = read_into(rd, &mut inbuf), if can_read => match r {
                    Ok(0) => return CloseReason::PeerClosed,
                    Ok(n) => {
                        Stats::add(&self.ctx.hub.stats.bytes_received, n as u64);
                        last_rx = Instant::now();
                        let handled = match self.decode_all(&mut inbuf, &limits) {
                            Ok(n) => n,
                            Err(why) => return why,
                        };
                        // Fairness: each packet costs a unit of the task's
                        // scheduling budget, so a flooding publisher yields
                        // to the subscribers it fills after ~128 packets
                        // instead of after 128 whole reads.
                        for _ in 0..handled {
                            tokio::task::consume_budget().await;
                        }
                        if inbuf.is_empty() && inbuf.capacity() <= READ_CHUNK_BYTES {
                            // Nothing pending: hold no read buffer while the
                            // client is quiet (see `read_into`). A buffer
                            // grown by a busy client is kept (no allocation
                            // per read) until the keep-alive check finds the
                            // connection quiet.
                            inbuf = BytesMut::new();
                        }
                        self.drain();
                    }
                    Err(e) => return CloseReason::Io(e.to_string()),
                },
                r = poll_durable(&mut durable_wait), if durable_wait.is_some() => {
                    durable_wait = None;
                    if let Err(e) = r {
                        return if e.disk_full {
                            CloseReason::StoreFull
                        } else {
                            CloseReason::StoreFailed
                        };
                    }
                }
                r = wr.write_buf(&mut self.out), if durable && !self.out.is_empty() => match r {
                    Ok(0) => return CloseReason::PeerClosed,
                    Ok(n) => {
                        Stats::add(&self.ctx.hub.stats.bytes_sent, n as u64);
                        if self.out.is_empty() {
                            // Framed transports (WebSocket) send on flush;
                            // for TCP this is free.
                            if let Err(e) = wr.flush().await {
                                return CloseReason::Io(e.to_string());
                            }
                        }
                        self.drain();
                        if self.out.is_empty() && self.out.capacity() <= OUT_INITIAL_BYTES * 4 {
                            // All sent and nothing more queued: hold no
                            // output buffer while the connection is quiet.
                            // A buffer grown by a busy subscriber is kept
                            // (no reallocation per write) until the
                            // keep-alive check finds the connection quiet.
                            self.out = BytesMut::new();
                        }
                    }
                    Err(e) => return CloseReason::Io(e.to_string()),
                },
                drained = poll_slot(&mut drain_wait), if drain_wait.is_some() => {
                    drain_wait = None;
                    self.end_congestion(drained);
                }
                _ = link.woken() => {
                    match link.kicked() {
                        KickReason::None => self.drain(),
                        KickReason::TakenOver => return CloseReason::TakenOver,
                        KickReason::QueueFull => return CloseReason::QueueFull,
                        KickReason::ShuttingDown => return CloseReason::ShuttingDown,
                    }
                }
                _ = poll_slot(&mut cred_timer), if cred_timer.is_some() && self.principal.expires_at_ms.is_some() => {
                    if let Err(why) = self.on_credentials_timer() {
                        return why;
                    }
                    let next = self.credentials_deadline().unwrap_or_else(far);
                    if let Some(t) = &mut cred_timer {
                        t.as_mut().reset(next.into());
                    }
                }
                _ = &mut ka_timer, if !ka_period.is_zero() => {
                    let deadline = last_rx + ka_period;
                    if Instant::now() >= deadline {
                        Stats::add(&self.ctx.hub.stats.keepalive_timeouts, 1);
                        return CloseReason::KeepAliveTimeout;
                    }
                    // Buffers a busy period grew are released once quiet.
                    if inbuf.is_empty() {
                        inbuf = BytesMut::new();
                    }
                    if self.out.is_empty() {
                        self.out = BytesMut::new();
                    }
                    ka_timer.as_mut().reset(deadline.into());
                }
            }
        }
    }

    /// Handles every complete packet in `inbuf`; returns how many.
    fn decode_all(&mut self, inbuf: &mut BytesMut, limits: &Limits) -> Result<usize, CloseReason> {
        let mut n = 0;
        self.batch_now = Instant::now();
        loop {
            match codec::decode(inbuf, self.version, limits) {
                Ok(Some(p)) => {
                    n += 1;
                    self.on_packet(p)?
                }
                Ok(None) => return Ok(n),
                Err(e) => return Err(CloseReason::Malformed(e)),
            }
        }
    }

    /// Ends the connection: tells a v5 client why, flushes, detaches the
    /// session and publishes the will when the reason calls for it.
    async fn close<W: AsyncWrite + Unpin>(&mut self, why: CloseReason, wr: &mut W) {
        if why.is_violation() {
            Stats::add(&self.ctx.hub.stats.protocol_errors, 1);
        }
        if self.durable_needed > 0 {
            // Acknowledgements go out only once durable; if that does not
            // come in time, the client resends them after reconnecting.
            let ok = matches!(
                tokio::time::timeout(
                    CLOSE_FLUSH,
                    wait_durable(self.ctx.hub.journal().map(|j| &**j), self.durable_needed)
                )
                .await,
                Ok(Ok(()))
            );
            if !ok {
                self.out.clear();
            }
        }
        if self.v5
            && let Some(code) = why.reason_code()
        {
            self.write(&Packet::Disconnect(Disconnect {
                reason_code: code,
                reason_string: Some(why.to_string()),
                ..Disconnect::default()
            }));
        }
        if !matches!(why, CloseReason::Io(_)) {
            // Flush what is pending and close our side properly (for a
            // WebSocket this also answers the client's Close frame).
            let _ = tokio::time::timeout(CLOSE_FLUSH, async {
                if !self.out.is_empty() {
                    wr.write_all(&self.out).await?;
                }
                wr.shutdown().await
            })
            .await;
        }
        let will = if why.publishes_will() {
            self.will.take().map(|w| *w)
        } else {
            None
        };
        self.ctx.hub.disconnect(
            &self.session,
            &self.link,
            will,
            self.expiry_secs,
            Instant::now(),
        );
        Stats::add_neg(&self.ctx.hub.stats.clients_connected);
        if why.is_violation() {
            tracing::info!(peer = %self.peer, client_id = %self.session.client_id, reason = %why, "client disconnected");
        } else {
            tracing::debug!(peer = %self.peer, client_id = %self.session.client_id, reason = %why, "client disconnected");
        }
    }

    /// Gives a released output buffer its initial room before encoding.
    fn out_room(&mut self) {
        if self.out.capacity() == 0 {
            self.out.reserve(OUT_INITIAL_BYTES);
        }
    }

    fn write(&mut self, p: &Packet) {
        self.out_room();
        if let Err(e) = codec::encode(p, self.version, &mut self.out) {
            tracing::warn!(error = %e, packet = p.name(), "could not encode a packet");
        }
    }

    fn on_packet(&mut self, p: Packet) -> Result<(), CloseReason> {
        match p {
            Packet::Publish(p) => self.on_publish(p),
            Packet::PubAck(r) => {
                self.session.state.lock().on_ack(r.packet_id);
                Ok(())
            }
            Packet::PubRec(r) => {
                let known = {
                    let mut st = self.session.state.lock();
                    let known = st.on_rec(r.packet_id, r.reason_code < 0x80);
                    self.durable_needed = self.durable_needed.max(st.last_op);
                    known
                };
                if r.reason_code < 0x80 {
                    self.write(&Packet::PubRel(PubResp {
                        packet_id: r.packet_id,
                        reason_code: if known {
                            reason::SUCCESS
                        } else {
                            reason::PACKET_IDENTIFIER_NOT_FOUND
                        },
                        ..PubResp::default()
                    }));
                }
                Ok(())
            }
            Packet::PubRel(r) => {
                let known = {
                    let mut st = self.session.state.lock();
                    let known = st.remove_incoming(r.packet_id);
                    // The id is free only once that is durable, or a
                    // restart would take its next use for a resend.
                    self.durable_needed = self.durable_needed.max(st.last_op);
                    known
                };
                self.write(&Packet::PubComp(PubResp {
                    packet_id: r.packet_id,
                    reason_code: if known {
                        reason::SUCCESS
                    } else {
                        reason::PACKET_IDENTIFIER_NOT_FOUND
                    },
                    ..PubResp::default()
                }));
                Ok(())
            }
            Packet::PubComp(r) => {
                self.session.state.lock().on_comp(r.packet_id);
                Ok(())
            }
            Packet::Subscribe(s) => self.on_subscribe(s),
            Packet::Unsubscribe(u) => {
                self.on_unsubscribe(u);
                Ok(())
            }
            Packet::PingReq => {
                self.write(&Packet::PingResp);
                Ok(())
            }
            Packet::Disconnect(d) => self.on_disconnect(d),
            Packet::Auth(a) => self.on_auth(a),
            Packet::Connect(_) => Err(CloseReason::ProtocolError("second CONNECT")),
            Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp => {
                Err(CloseReason::ProtocolError("server-only packet from client"))
            }
        }
    }

    fn on_publish(&mut self, mut p: Publish) -> Result<(), CloseReason> {
        if let Some(alias) = p.properties.topic_alias {
            if alias == 0 || alias > self.ctx.cfg.topic_alias_max {
                return Err(CloseReason::TopicAliasInvalid);
            }
            if p.topic.is_empty() {
                match self.aliases.as_ref().and_then(|a| a.incoming.get(&alias)) {
                    Some(t) => p.topic = t.to_string(),
                    None => return Err(CloseReason::ProtocolError("unknown topic alias")),
                }
            } else {
                self.aliases
                    .get_or_insert_default()
                    .incoming
                    .insert(alias, Arc::from(p.topic.as_str()));
            }
        }
        let pid = p.packet_id.unwrap_or(0);
        if self.v5
            && p.properties.payload_format_indicator == Some(1)
            && std::str::from_utf8(&p.payload).is_err()
        {
            // [MQTT-3.3.2-4] allows refusing it; keep the connection when
            // there is an ack to carry the reason.
            return match p.qos {
                QoS::AtMostOnce => Err(CloseReason::PayloadFormatInvalid),
                QoS::AtLeastOnce => {
                    self.ack(pid, QoS::AtLeastOnce, reason::PAYLOAD_FORMAT_INVALID);
                    Ok(())
                }
                QoS::ExactlyOnce => {
                    self.ack(pid, QoS::ExactlyOnce, reason::PAYLOAD_FORMAT_INVALID);
                    Ok(())
                }
            };
        }
        if !self.unrestricted
            && !self
                .ctx
                .auth
                .authenticator
                .check(&self.principal, &Op::Publish, &p.topic)
        {
            Stats::add(&self.ctx.hub.stats.publishes_denied, 1);
            tracing::debug!(client_id = %self.session.client_id, topic = %p.topic, "publish not allowed");
            // v5 says why; 3.1.x cannot, so the message is acknowledged
            // and dropped (as Mosquitto does for an ACL denial).
            if self.v5 {
                self.ack(pid, p.qos, reason::NOT_AUTHORIZED);
            } else {
                if p.qos == QoS::ExactlyOnce {
                    let mut st = self.session.state.lock();
                    st.add_incoming(pid);
                    self.durable_needed = self.durable_needed.max(st.last_op);
                }
                self.ack(pid, p.qos, reason::SUCCESS);
            }
            return Ok(());
        }
        if p.qos == QoS::ExactlyOnce {
            let mut st = self.session.state.lock();
            if st.incoming_qos2.contains(&pid) {
                // A resend of a message already taken: acknowledge again,
                // do not deliver twice [MQTT-4.3.3-10].
                drop(st);
                self.ack(pid, QoS::ExactlyOnce, reason::SUCCESS);
                return Ok(());
            }
            if st.incoming_qos2.len() >= usize::from(self.ctx.cfg.receive_maximum) && self.v5 {
                return Err(CloseReason::ReceiveMaximumExceeded);
            }
            st.add_incoming(pid);
            self.durable_needed = self.durable_needed.max(st.last_op);
        }
        let qos = p.qos;
        let msg = self.message_from(p);
        let code = match self.ctx.hub.publish(msg) {
            Ok(r) => {
                if qos != QoS::AtMostOnce {
                    self.durable_needed = self.durable_needed.max(r.durable_seq);
                }
                if let Some(s) = r.congested
                    && self.congested.is_none()
                {
                    Stats::add(&self.ctx.hub.stats.backpressure_pauses, 1);
                    self.congested = Some((s, Instant::now()));
                }
                if r.retained_refused {
                    reason::QUOTA_EXCEEDED
                } else {
                    reason::SUCCESS
                }
            }
            Err(PublishError::InvalidTopic(_)) => {
                if qos == QoS::ExactlyOnce {
                    self.session.state.lock().remove_incoming(pid);
                }
                return Err(CloseReason::TopicNameInvalid);
            }
        };
        if qos == QoS::ExactlyOnce && code >= 0x80 && self.v5 {
            // A PUBREC with an error code ends the exchange: no PUBREL follows.
            let mut st = self.session.state.lock();
            st.remove_incoming(pid);
            self.durable_needed = self.durable_needed.max(st.last_op);
        }
        // 3.1.x has no reason codes: the message was routed, so ack it.
        self.ack(pid, qos, if self.v5 { code } else { reason::SUCCESS });
        Ok(())
    }

    fn ack(&mut self, pid: u16, qos: QoS, code: u8) {
        let r = PubResp {
            packet_id: pid,
            reason_code: code,
            ..PubResp::default()
        };
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.write(&Packet::PubAck(r)),
            QoS::ExactlyOnce => self.write(&Packet::PubRec(r)),
        }
    }

    fn message_from(&mut self, p: Publish) -> Message {
        let pp = p.properties;
        let props = MessageProps {
            payload_format: pp.payload_format_indicator,
            content_type: pp.content_type,
            response_topic: pp.response_topic,
            correlation_data: pp.correlation_data,
            user_properties: pp.user_properties,
            // The identity a token bound is the message's clientId for
            // realtime subscribers (an unidentified client has none).
            client_id: self.identified.then(|| self.session.client_id.to_string()),
            ..MessageProps::default()
        };
        let topic = match &self.last_topic {
            Some(t) if **t == *p.topic => t.clone(),
            _ => {
                let t: Arc<str> = Arc::from(p.topic);
                self.last_topic = Some(t.clone());
                t
            }
        };
        Message {
            topic,
            payload: p.payload,
            qos: p.qos as u8,
            retain: p.retain,
            origin: Some(self.session.client_id.clone()),
            props: (!props.is_empty()).then(|| Box::new(props)),
            received_at: self.batch_now,
            expiry: pp
                .message_expiry_interval
                .map(|s| Duration::from_secs(u64::from(s))),
            stored: Default::default(),
            seq: 0,
        }
    }

    fn on_subscribe(&mut self, mut s: Subscribe) -> Result<(), CloseReason> {
        let mut codes = Vec::with_capacity(s.filters.len());
        let mut retained = Vec::new();
        let mut backlogs = Vec::new();
        for f in &mut s.filters {
            // `[?rewind=N]name`: the channel's last N messages from history
            // first (docs/protocol-mapping.md).
            let rewind = match rewind_qualifier(&f.filter) {
                None => None,
                Some(Ok((n, name))) => {
                    f.filter = name;
                    Some(n)
                }
                Some(Err(())) => {
                    codes.push(if self.v5 {
                        reason::TOPIC_FILTER_INVALID
                    } else {
                        0x80
                    });
                    continue;
                }
            };
            let shared = f.filter.starts_with("$share/");
            if shared && f.options.no_local && self.v5 {
                // [MQTT-3.8.3-4]
                return Err(CloseReason::ProtocolError(
                    "no local on a shared subscription",
                ));
            }
            if f.filter == TOKEN_EVENTS_TOPIC {
                self.token_events = true;
                codes.push(0);
                continue;
            }
            if !self.unrestricted
                && !self
                    .ctx
                    .auth
                    .authenticator
                    .check_subscribe_filter(&self.principal, &f.filter)
            {
                Stats::add(&self.ctx.hub.stats.subscribes_denied, 1);
                codes.push(if self.v5 {
                    reason::NOT_AUTHORIZED
                } else {
                    0x80
                });
                continue;
            }
            let opts = SubOptions {
                qos: f.options.qos as u8,
                no_local: self.v5 && f.options.no_local,
                retain_as_published: self.v5 && f.options.retain_as_published,
                sub_id: s.subscription_identifier,
            };
            match self.ctx.hub.subscribe(&self.session, &f.filter, opts) {
                Ok(r) => {
                    codes.push(opts.qos);
                    let send = match f.options.retain_handling {
                        RetainHandling::SendAtSubscribe => true,
                        RetainHandling::SendIfNew => !r.existed,
                        RetainHandling::DoNotSend => false,
                    };
                    if send && !r.shared {
                        retained.push((f.filter.clone(), opts));
                    }
                    if let Some(n) = rewind {
                        backlogs.push((f.filter.clone(), n, opts, self.ctx.hub.last_seq()));
                    }
                }
                Err(e) => {
                    tracing::debug!(client_id = %self.session.client_id, filter = %f.filter, error = %e, "subscription refused");
                    codes.push(match (self.v5, e) {
                        (false, _) => 0x80,
                        (true, SubscribeError::InvalidFilter(_)) => reason::TOPIC_FILTER_INVALID,
                        (true, SubscribeError::TooManySubscriptions) => reason::QUOTA_EXCEEDED,
                    });
                }
            }
        }
        self.write(&Packet::SubAck(SubAck {
            packet_id: s.packet_id,
            reason_codes: codes,
            ..SubAck::default()
        }));
        for (filter, opts) in retained {
            self.ctx.hub.deliver_retained(&self.session, &filter, opts);
        }
        for (channel, n, opts, upto) in backlogs {
            let Some(h) = self.ctx.hub.history() else {
                continue;
            };
            let q = tern_hub::HistoryQuery {
                channel,
                start_ms: None,
                end_ms: None,
                limit: n,
                forwards: false,
                // Later messages reach the new subscription live.
                after_seq: Some(upto.saturating_add(1)),
            };
            match h.query(&q) {
                Ok(page) => {
                    let mut msgs = page.messages;
                    msgs.reverse();
                    self.ctx.hub.deliver_backlog(&self.session, &msgs, opts);
                }
                Err(e) => {
                    tracing::warn!(channel = %q.channel, error = %e, "history unreadable for a rewind")
                }
            }
        }
        Ok(())
    }

    fn on_unsubscribe(&mut self, u: Unsubscribe) {
        let codes = u
            .filters
            .iter()
            .map(|f| {
                if f == TOKEN_EVENTS_TOPIC {
                    let was = self.token_events;
                    self.token_events = false;
                    return if was {
                        reason::SUCCESS
                    } else {
                        reason::NO_SUBSCRIPTION_EXISTED
                    };
                }
                // The filter as subscribed, without a rewind qualifier.
                let f = match rewind_qualifier(f) {
                    Some(Ok((_, name))) => name,
                    _ => f.clone(),
                };
                if self.ctx.hub.unsubscribe(&self.session, &f) {
                    reason::SUCCESS
                } else {
                    reason::NO_SUBSCRIPTION_EXISTED
                }
            })
            .collect();
        self.write(&Packet::UnsubAck(UnsubAck {
            packet_id: u.packet_id,
            reason_codes: if self.v5 { codes } else { Vec::new() },
            ..UnsubAck::default()
        }));
    }

    fn on_disconnect(&mut self, d: Disconnect) -> Result<(), CloseReason> {
        if let Some(e) = d.session_expiry_interval {
            if self.expiry_secs == 0 && e != 0 {
                // [MQTT-3.14.2-2]
                return Err(CloseReason::ProtocolError(
                    "session expiry set at DISCONNECT after 0 at CONNECT",
                ));
            }
            self.expiry_secs = e.min(self.ctx.cfg.session_expiry_max_secs);
        }
        Err(match d.reason_code {
            reason::NORMAL_DISCONNECTION => CloseReason::ClientDisconnect,
            reason::DISCONNECT_WITH_WILL => CloseReason::ClientDisconnectWithWill,
            c => CloseReason::ClientError(c),
        })
    }

    /// MQTT 5 re-authentication [MQTT-4.12.1]: only for connections that
    /// authenticated with the token method; the new token replaces the
    /// credentials (and their expiry) without reconnecting.
    fn on_auth(&mut self, a: Auth) -> Result<(), CloseReason> {
        if !self.enhanced_auth {
            // [MQTT-4.12.0-7]: no method at CONNECT, so no AUTH allowed.
            return Err(CloseReason::ProtocolError(
                "AUTH on a connection that did not use enhanced authentication",
            ));
        }
        if a.authentication_method.as_deref() != Some(TOKEN_AUTH_METHOD) {
            // [MQTT-4.12.1-1]: the method must not change.
            return Err(CloseReason::ProtocolError("AUTH with a different method"));
        }
        if a.reason_code != reason::REAUTHENTICATE {
            return Err(CloseReason::ProtocolError("unexpected AUTH reason code"));
        }
        let data = a.authentication_data.as_deref().unwrap_or(&[]);
        let token = std::str::from_utf8(data).map_err(|_| CloseReason::ReauthFailed)?;
        let mut p = self.ctx.auth.token(token).map_err(|e| {
            tracing::info!(client_id = %self.session.client_id, why = %e.why, "re-authentication failed");
            Stats::add(&self.ctx.hub.stats.logins_failed, 1);
            CloseReason::ReauthFailed
        })?;
        let id = &*self.session.client_id;
        if p.client_id.as_deref().is_some_and(|b| b != "*" && b != id) {
            return Err(CloseReason::ReauthFailed);
        }
        self.identified = p.client_id.is_some();
        p.client_id = Some(id.to_owned());
        self.unrestricted = self.ctx.auth.authenticator.deny_rules().is_empty()
            && p.capability.canonical() == tern_auth::Capability::all().canonical();
        self.principal = p;
        self.expiry_warned = false;
        if !self.unrestricted {
            self.prune_subscriptions();
        }
        self.write(&Packet::Auth(Auth {
            reason_code: reason::SUCCESS,
            authentication_method: Some(TOKEN_AUTH_METHOD.to_owned()),
            ..Auth::default()
        }));
        Ok(())
    }

    /// Ends a back-pressure pause: the subscriber drained, or it did not
    /// catch up in time and no longer slows its publishers (its own queue
    /// policy applies until it drains).
    fn end_congestion(&mut self, drained: bool) {
        if let Some((s, _)) = self.congested.take()
            && !drained
        {
            Stats::add(&self.ctx.hub.stats.backpressure_timeouts, 1);
            s.state.lock().slow_consumer = true;
        }
    }

    /// Drops the session's subscriptions the current credentials do not
    /// allow (after a resume or a re-authentication with a narrower token).
    fn prune_subscriptions(&mut self) {
        let filters: Vec<String> = self
            .session
            .state
            .lock()
            .subscriptions
            .keys()
            .cloned()
            .collect();
        for f in filters {
            if !self
                .ctx
                .auth
                .authenticator
                .check_subscribe_filter(&self.principal, &f)
            {
                self.ctx.hub.unsubscribe(&self.session, &f);
                tracing::info!(client_id = %self.session.client_id, filter = %f, "subscription dropped: not allowed by the current credentials");
            }
        }
    }

    /// Whether a message on `topic` may be delivered to this client now;
    /// catches messages queued before the credentials narrowed.
    fn may_receive(&self, topic: &str) -> bool {
        self.unrestricted
            || self
                .ctx
                .auth
                .authenticator
                .check(&self.principal, &Op::Subscribe, topic)
    }

    /// When the credentials' next event is due: the expiry warning (30 s
    /// before, if asked for) or the expiry itself.
    fn credentials_deadline(&self) -> Option<Instant> {
        let at = self.principal.expires_at_ms?;
        let left = Duration::from_millis(at.saturating_sub(tern_auth::now_ms()));
        let now = Instant::now();
        if self.token_events && !self.expiry_warned && left > EXPIRY_WARNING {
            Some(now + (left - EXPIRY_WARNING))
        } else {
            Some(now + left)
        }
    }

    /// Sends the expiry warning, or ends an expired connection.
    fn on_credentials_timer(&mut self) -> Result<(), CloseReason> {
        let Some(at) = self.principal.expires_at_ms else {
            return Ok(());
        };
        let left = at.saturating_sub(tern_auth::now_ms());
        if left == 0 {
            return Err(CloseReason::TokenExpired);
        }
        if self.token_events && !self.expiry_warned && left <= EXPIRY_WARNING.as_millis() as u64 {
            self.expiry_warned = true;
            let mut p = Publish {
                topic: TOKEN_EVENTS_TOPIC.to_owned(),
                payload: bytes::Bytes::from_static(b"expirywarning"),
                ..Publish::default()
            };
            if self.v5 {
                p.properties
                    .user_properties
                    .push(("expires".to_owned(), at.to_string()));
            }
            self.write(&Packet::Publish(p));
        }
        Ok(())
    }

    /// Moves queued deliveries into the output buffer while it is below
    /// its high-water mark and the window allows.
    fn drain(&mut self) {
        let high = self.ctx.cfg.write_buffer_bytes_high;
        if self.out.len() >= high {
            return;
        }
        let now = Instant::now();
        let session = self.session.clone();
        let mut st = session.state.lock();
        let queued_before = st.queue.len();
        if !st
            .owner
            .as_ref()
            .is_some_and(|o| Arc::ptr_eq(o, &self.link))
        {
            // Taken over: the new connection sends from here on.
            return;
        }
        while self.out.len() < high {
            match st.next_outgoing(self.window, now) {
                NextOutgoing::Send(Outgoing::Publish {
                    delivery,
                    packet_id,
                    dup,
                }) => {
                    if !self.may_receive(&delivery.msg.topic) {
                        Stats::add(&self.ctx.hub.stats.subscribes_denied, 1);
                        if let Some(pid) = packet_id {
                            st.abandon(pid);
                        }
                        continue;
                    }
                    if !self.write_publish(&delivery, packet_id, dup, now)
                        && let Some(pid) = packet_id
                    {
                        // Too large for the client: behave as if it were
                        // delivered [MQTT-3.1.2-25].
                        st.abandon(pid);
                    }
                }
                NextOutgoing::Send(Outgoing::Release { packet_id }) => {
                    self.write(&Packet::PubRel(PubResp {
                        packet_id,
                        ..PubResp::default()
                    }));
                }
                NextOutgoing::Expired => Stats::add(&self.ctx.hub.stats.dropped_expired, 1),
                NextOutgoing::WindowFull | NextOutgoing::Idle => break,
            }
        }
        if st.journal.is_some() {
            // A QoS 2 delivery's packet id and a release go out once
            // durable, so a restart resends with the same id or only the
            // release. QoS 0/1 deliveries go at once: should a crash take
            // a message back, its publisher was not acknowledged and sends
            // it again (at least once allows the repeat).
            self.durable_needed = self.durable_needed.max(st.last_state_op);
        }
        let low = self.ctx.hub.config().backpressure_queue_messages / 2;
        if queued_before >= low && st.queue.len() < low {
            // Publishers paused on this session may go on.
            session.drained.notify_waiters();
        }
    }

    /// Encodes one delivery; false if it exceeds the client's maximum
    /// packet size and was not written.
    fn write_publish(
        &mut self,
        d: &Delivery,
        packet_id: Option<u16>,
        dup: bool,
        now: Instant,
    ) -> bool {
        let msg = &d.msg;
        let mut props = PublishProperties::default();
        if self.v5 {
            if let Some(mp) = &msg.props {
                props.payload_format_indicator = mp.payload_format;
                props.content_type = mp.content_type.clone();
                props.response_topic = mp.response_topic.clone();
                props.correlation_data = mp.correlation_data.clone();
                props.user_properties = mp.user_properties.clone();
                if let Some(name) = &mp.name {
                    // A realtime message's event name travels as a user
                    // property (docs/protocol-mapping.md).
                    props
                        .user_properties
                        .push(("name".to_owned(), name.clone()));
                }
            }
            // [MQTT-3.3.2-6]: forward the lifetime that is left.
            props.message_expiry_interval = msg.remaining_expiry_secs(now);
            props.subscription_identifiers.extend_from_slice(&d.sub_ids);
        }
        let qos = QoS::from_u8(d.qos).unwrap_or(QoS::AtMostOnce);
        if self.client_packet_max != usize::MAX {
            // Measured with the full topic: an alias only makes it smaller.
            let full = codec::PublishRef {
                dup,
                qos,
                retain: d.retain,
                topic: &msg.topic,
                packet_id,
                properties: &props,
                payload: &msg.payload,
            };
            match codec::encoded_publish_len(&full, self.version) {
                Ok(n) if n <= self.client_packet_max => {}
                _ => {
                    Stats::add(&self.ctx.hub.stats.dropped_too_large, 1);
                    return false;
                }
            }
        }
        let mut topic: &str = &msg.topic;
        if self.out_alias_max > 0 {
            let out = &mut self.aliases.get_or_insert_default().outgoing;
            if let Some(&a) = out.get(&msg.topic) {
                props.topic_alias = Some(a);
                topic = "";
            } else if out.len() < usize::from(self.out_alias_max) {
                let a = out.len() as u16 + 1;
                out.insert(msg.topic.clone(), a);
                props.topic_alias = Some(a);
            }
        }
        let p = codec::PublishRef {
            dup,
            qos,
            retain: d.retain,
            topic,
            packet_id,
            properties: &props,
            payload: &msg.payload,
        };
        self.out_room();
        if let Err(e) = codec::encode_publish(&p, self.version, &mut self.out) {
            tracing::warn!(error = %e, "could not encode a PUBLISH");
            return false;
        }
        Stats::add(&self.ctx.hub.stats.messages_sent, 1);
        true
    }
}

/// Waits until the congested session's queue is below `low` (or it went
/// offline): true; or until the pause that began at `since` has lasted
/// `pause_max`: false.
async fn wait_drained(
    (s, since): (Arc<SessionHandle>, Instant),
    low: usize,
    pause_max: Duration,
) -> bool {
    let until = tokio::time::Instant::from_std(since + pause_max);
    loop {
        let notified = s.drained.notified();
        tokio::pin!(notified);
        // Registered before the check, so a drain between the check and
        // the wait is not missed.
        notified.as_mut().enable();
        if !s.is_connected() || Hub::queue_len(&s) < low {
            return true;
        }
        tokio::select! {
            _ = &mut notified => {}
            _ = tokio::time::sleep_until(until) => return false,
        }
    }
}

/// Waits until journal sequence number `seq` is durable (at once without
/// a journal).
async fn wait_durable(
    journal: Option<&tern_hub::Journal>,
    seq: u64,
) -> Result<(), tern_hub::StoreFailed> {
    match journal {
        Some(j) => j.wait_durable(seq).await,
        None => Ok(()),
    }
}

/// A boxed wait for the durability of journal op `seq`.
struct DurableWait {
    seq: u64,
    wait: Pin<Box<dyn Future<Output = Result<(), tern_hub::StoreFailed>> + Send>>,
}

/// Polls the durability wait in `slot`; pending while there is none.
fn poll_durable(
    slot: &mut Option<DurableWait>,
) -> impl Future<Output = Result<(), tern_hub::StoreFailed>> + '_ {
    std::future::poll_fn(move |cx| match slot {
        Some(w) => w.wait.as_mut().poll(cx),
        None => Poll::Pending,
    })
}

/// Polls the future in `slot`; pending while there is none (a `select!`
/// branch guarded by `slot.is_some()`).
fn poll_slot<F: Future + Unpin>(slot: &mut Option<F>) -> impl Future<Output = F::Output> + '_ {
    std::future::poll_fn(move |cx| match slot {
        Some(f) => Pin::new(f).poll(cx),
        None => Poll::Pending,
    })
}

/// Bytes read at most into the stack scratch array when no read buffer is
/// held.
const SCRATCH_READ_BYTES: usize = 4096;

/// Reads what the client sent into `buf`.
///
/// A connection between packets holds no read buffer (4 KiB per idle
/// connection otherwise): when `buf` has no room, the read goes to a scratch
/// array on the stack, which lives only during this poll, and the bytes that
/// arrived are copied into a buffer sized for them. When the scratch array
/// came back full, more is likely waiting, so the buffer gets room for the
/// next read to land in place. With room in `buf` (the rest of a packet is
/// awaited) the read goes there directly.
fn read_into<'a, R: AsyncRead + Unpin>(
    rd: &'a mut R,
    buf: &'a mut BytesMut,
) -> impl Future<Output = std::io::Result<usize>> + 'a {
    std::future::poll_fn(move |cx| {
        if buf.capacity() > buf.len() {
            let read = rd.read_buf(&mut *buf);
            tokio::pin!(read);
            return read.poll(cx);
        }
        let mut scratch = [MaybeUninit::<u8>::uninit(); SCRATCH_READ_BYTES];
        let mut rb = ReadBuf::uninit(&mut scratch);
        std::task::ready!(Pin::new(&mut *rd).poll_read(cx, &mut rb))?;
        let got = rb.filled();
        let room = if got.len() == SCRATCH_READ_BYTES {
            got.len() + READ_CHUNK_BYTES
        } else {
            got.len()
        };
        buf.reserve(room);
        buf.extend_from_slice(got);
        Poll::Ready(Ok(got.len()))
    })
}

/// Most messages a `[?rewind=N]` subscription replays.
const REWIND_MAX: usize = 100;

/// `[?rewind=N]name` → `(N, name)`; `None` without a qualifier; `Err` for
/// a qualifier other than a message count up to [`REWIND_MAX`], or a
/// filter with wildcards (history is per channel).
fn rewind_qualifier(filter: &str) -> Option<Result<(usize, String), ()>> {
    let rest = filter.strip_prefix("[?")?;
    let parsed = (|| {
        let (q, name) = rest.split_once(']')?;
        let n: usize = q.strip_prefix("rewind=")?.parse().ok()?;
        (n <= REWIND_MAX && !name.is_empty() && !tern_hub::topic::has_wildcard(name))
            .then(|| (n, name.to_owned()))
    })();
    Some(parsed.ok_or(()))
}

async fn write_and_close<W: AsyncWrite + Unpin>(wr: &mut W, bytes: Option<Vec<u8>>) {
    if let Some(b) = bytes {
        let _ = tokio::time::timeout(CLOSE_FLUSH, async {
            wr.write_all(&b).await?;
            wr.shutdown().await
        })
        .await;
    }
}

/// A client identifier for a client that sent none: unique across
/// restarts (time-based prefix) and within the process (counter).
fn assigned_client_id(hub: &Hub) -> String {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    format!("tern-{t:x}-{}", hub.next_id())
}

/// Validates a will and turns it into a hub [`Will`]; the error is the
/// CONNACK reason code.
fn build_will(w: &codec::LastWill, client_id: &str, hub: &Hub) -> Result<Will, u8> {
    if tern_hub::topic::validate_name(&w.topic, &hub.config().topic).is_err() {
        return Err(reason::TOPIC_NAME_INVALID);
    }
    let wp = &w.properties;
    if wp.payload_format_indicator == Some(1) && std::str::from_utf8(&w.payload).is_err() {
        return Err(reason::PAYLOAD_FORMAT_INVALID);
    }
    let props = MessageProps {
        payload_format: wp.payload_format_indicator,
        content_type: wp.content_type.clone(),
        response_topic: wp.response_topic.clone(),
        correlation_data: wp.correlation_data.clone(),
        user_properties: wp.user_properties.clone(),
        ..MessageProps::default()
    };
    Ok(Will {
        msg: Message {
            topic: Arc::from(w.topic.as_str()),
            payload: w.payload.clone(),
            qos: w.qos as u8,
            retain: w.retain,
            origin: Some(Arc::from(client_id)),
            props: (!props.is_empty()).then(|| Box::new(props)),
            received_at: Instant::now(),
            expiry: wp
                .message_expiry_interval
                .map(|s| Duration::from_secs(u64::from(s))),
            stored: Default::default(),
            seq: 0,
        },
        delay_secs: wp.will_delay_interval.unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_the_protocol_level_of_a_connect() {
        // CONNECT, remaining 10, "MQTT", level 5.
        let b = [0x10, 10, 0, 4, b'M', b'Q', b'T', b'T', 5, 0, 0, 60];
        assert_eq!(sniff_protocol_level(&b), Some(5));
        assert_eq!(sniff_protocol_level(&b[..5]), None);
    }

    #[test]
    fn v3_return_codes() {
        assert_eq!(v3_return_code(reason::CLIENT_IDENTIFIER_NOT_VALID), 2);
        assert_eq!(v3_return_code(reason::UNSUPPORTED_PROTOCOL_VERSION), 1);
        assert_eq!(v3_return_code(reason::SERVER_BUSY), 3);
        assert_eq!(v3_return_code(reason::BAD_USER_NAME_OR_PASSWORD), 4);
        assert_eq!(v3_return_code(reason::NOT_AUTHORIZED), 5);
    }
}
