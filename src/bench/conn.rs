//! One MQTT client connection over raw TCP with our codec: the handshake,
//! a write buffer that batches many packets per `write` call, and a read
//! buffer from which every complete packet is decoded per wake-up.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use bytes::{Buf, BytesMut};
use tern_mqtt_codec::{
    Connect, ConnectProperties, Disconnect, Limits, Packet, ProtocolVersion, PubResp, QoS,
    Subscribe, SubscribeFilter, SubscriptionOptions, decode, encode,
};
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use super::ws::{WsRead, WsStream};

/// Stop producing once this many bytes wait to be written.
pub const WBUF_HIGH: usize = 64 * 1024;
/// Free space offered to each `read` call by busy connections.
const READ_CHUNK: usize = 64 * 1024;

/// What [`Conn::try_read`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadState {
    /// `n` bytes were read (0: none available now).
    Bytes(usize),
    /// The broker closed the connection.
    Closed,
}

/// How MQTT bytes travel.
#[derive(Debug)]
enum Io {
    /// Raw TCP.
    Tcp(TcpStream),
    /// Binary WebSocket frames on `/mqtt` (subprotocol `mqtt`).
    Ws(Box<WsStream>),
}

/// The transport of MQTT clients (`--transport`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    /// Raw TCP to `--port`.
    Tcp,
    /// MQTT over WebSocket: `ws://HOST:WS_PORT/mqtt`, subprotocol `mqtt`,
    /// one binary frame per write.
    Ws,
}

/// Most bytes one `try_read` takes out of a WebSocket before returning.
const WS_READ_MAX: usize = 256 * 1024;

/// A connected, accepted MQTT client.
#[derive(Debug)]
pub struct Conn {
    io: Io,
    /// Received bytes not decoded yet.
    pub rbuf: BytesMut,
    /// Encoded packets not written yet.
    pub wbuf: BytesMut,
    /// Protocol version of the connection.
    pub version: ProtocolVersion,
    limits: Limits,
    /// The broker's Receive Maximum (v5), or 65535.
    pub server_receive_max: u16,
    /// Keep alive in force; PINGREQ goes out at half of it.
    pub keep_alive: Duration,
    /// When the last bytes were written.
    pub last_write: Instant,
    /// Free space offered to each `read` call.
    read_chunk: usize,
}

/// Settings every client of a run shares.
#[derive(Debug, Clone)]
pub struct ClientCfg {
    /// Broker address (the MQTT port for TCP, the HTTP port for WebSocket).
    pub addr: SocketAddr,
    /// TCP or WebSocket.
    pub transport: Transport,
    /// MQTT version spoken.
    pub version: ProtocolVersion,
    /// Keep alive asked for, seconds.
    pub keep_alive: u16,
    /// Largest packet accepted from the broker.
    pub packet_bytes_max: usize,
    /// Time allowed for TCP connect + CONNECT/CONNACK (and SUBACK).
    pub timeout: Duration,
}

/// The session a CONNECT asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionMode {
    /// Clean start 1, no session expiry: the session ends with the
    /// connection (the tool's default for every client).
    Clean,
    /// Clean start 0 and (v5) a Session Expiry Interval of this many
    /// seconds (3.1.1: clean session 0): the broker keeps the session,
    /// its subscriptions and its queued messages across disconnections.
    Persistent(u32),
}

/// Explains an I/O error from `connect` in the user's terms.
pub fn explain(e: &std::io::Error, addr: SocketAddr) -> String {
    match (e.kind(), e.raw_os_error()) {
        (ErrorKind::ConnectionRefused, _) => {
            format!("cannot connect to {addr}: connection refused (is the broker running there?)")
        }
        (_, Some(24)) => format!(
            "cannot connect to {addr}: too many open files (raise the limit with `ulimit -n`)"
        ),
        (_, Some(99)) => format!(
            "cannot connect to {addr}: no free local port (ephemeral ports exhausted; \
             see net.ipv4.ip_local_port_range)"
        ),
        _ => format!("cannot connect to {addr}: {e}"),
    }
}

impl Conn {
    /// Opens TCP, sends CONNECT asking for the session `mode` and waits for
    /// a successful CONNACK. Returns the connection and the CONNACK's
    /// Session Present flag.
    pub async fn connect_session(
        cfg: &ClientCfg,
        client_id: &str,
        mode: SessionMode,
    ) -> anyhow::Result<(Conn, bool)> {
        let deadline = Instant::now() + cfg.timeout;
        let io = match cfg.transport {
            Transport::Tcp => {
                let stream = tokio::time::timeout_at(deadline.into(), TcpStream::connect(cfg.addr))
                    .await
                    .map_err(|_| {
                        anyhow!(
                            "cannot connect to {}: TCP connect timed out after {:?}",
                            cfg.addr,
                            cfg.timeout
                        )
                    })?
                    .map_err(|e| anyhow!(explain(&e, cfg.addr)))?;
                stream.set_nodelay(true).context("setting TCP_NODELAY")?;
                Io::Tcp(stream)
            }
            Transport::Ws => Io::Ws(Box::new(
                WsStream::connect(cfg.addr, "/mqtt", Some("mqtt"), deadline).await?,
            )),
        };
        let mut conn = Conn {
            io,
            rbuf: BytesMut::with_capacity(4096),
            wbuf: BytesMut::with_capacity(4096),
            version: cfg.version,
            limits: Limits {
                packet_bytes_max: cfg.packet_bytes_max,
            },
            server_receive_max: u16::MAX,
            keep_alive: Duration::from_secs(u64::from(cfg.keep_alive)),
            last_write: Instant::now(),
            read_chunk: READ_CHUNK,
        };
        let (clean_start, session_expiry_interval) = match mode {
            SessionMode::Clean => (true, None),
            SessionMode::Persistent(secs) => (false, cfg.version.is_v5().then_some(secs)),
        };
        conn.queue(&Packet::Connect(Box::new(Connect {
            protocol: cfg.version,
            clean_start,
            keep_alive: cfg.keep_alive,
            client_id: client_id.to_owned(),
            will: None,
            username: None,
            password: None,
            properties: ConnectProperties {
                maximum_packet_size: u32::try_from(cfg.packet_bytes_max).ok(),
                session_expiry_interval,
                ..Default::default()
            },
        })))?;
        conn.flush_all(deadline).await?;
        match conn.next_packet(deadline, "CONNACK").await? {
            Packet::ConnAck(ack) if ack.reason_code == 0 => {
                if let Some(rm) = ack.properties.receive_maximum {
                    conn.server_receive_max = rm;
                }
                if let Some(ka) = ack.properties.server_keep_alive {
                    conn.keep_alive = Duration::from_secs(u64::from(ka));
                }
                if let (SessionMode::Persistent(_), Some(0)) =
                    (mode, ack.properties.session_expiry_interval)
                {
                    bail!(
                        "the broker set the session expiry of {client_id} to 0: \
                         it will not keep the session"
                    );
                }
                Ok((conn, ack.session_present))
            }
            Packet::ConnAck(ack) => bail!(
                "broker refused the connection of {client_id}: CONNACK code {:#04x}{}",
                ack.reason_code,
                ack.properties
                    .reason_string
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            ),
            other => bail!("expected CONNACK, broker sent {}", other.name()),
        }
    }

    /// Subscribes to `filter` at `qos` and waits for a SUBACK granting it.
    pub async fn subscribe(
        &mut self,
        filter: &str,
        qos: QoS,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        self.queue(&Packet::Subscribe(Subscribe {
            packet_id: 1,
            filters: vec![SubscribeFilter {
                filter: filter.to_owned(),
                options: SubscriptionOptions {
                    qos,
                    ..Default::default()
                },
            }],
            ..Default::default()
        }))?;
        self.flush_all(deadline).await?;
        match self.next_packet(deadline, "SUBACK").await? {
            Packet::SubAck(ack) if ack.packet_id == 1 => match ack.reason_codes.first() {
                Some(&code) if code == qos as u8 => Ok(()),
                Some(&code) if code < 0x80 => bail!(
                    "broker granted QoS {code} on {filter:?} where {} was asked",
                    qos as u8
                ),
                Some(&code) => {
                    bail!("broker refused the subscription to {filter:?}: code {code:#04x}")
                }
                None => bail!("SUBACK without a reason code"),
            },
            other => bail!("expected SUBACK, broker sent {}", other.name()),
        }
    }

    /// Encodes `p` at the end of the write buffer.
    pub fn queue(&mut self, p: &Packet) -> anyhow::Result<()> {
        encode(p, self.version, &mut self.wbuf).with_context(|| format!("encoding {}", p.name()))
    }

    /// Makes the buffers small, for connections that stay idle.
    pub fn make_idle(&mut self) {
        self.read_chunk = 1024;
        if self.rbuf.is_empty() {
            self.rbuf = BytesMut::new();
        }
        if self.wbuf.is_empty() {
            self.wbuf = BytesMut::new();
        }
    }

    /// Queues an acknowledgement (PUBACK, PUBREC, PUBREL or PUBCOMP).
    pub fn queue_ack(&mut self, make: fn(PubResp) -> Packet, packet_id: u16) -> anyhow::Result<()> {
        self.queue(&make(PubResp {
            packet_id,
            ..Default::default()
        }))
    }

    /// Queues a PINGREQ if the keep alive asks for one by now.
    pub fn ping_if_due(&mut self, now: Instant) -> anyhow::Result<()> {
        if !self.keep_alive.is_zero() && now >= self.next_ping() {
            self.queue(&Packet::PingReq)?;
            self.last_write = now;
        }
        Ok(())
    }

    /// When the next PINGREQ is due (far future without keep alive).
    pub fn next_ping(&self) -> Instant {
        if self.keep_alive.is_zero() {
            self.last_write + Duration::from_secs(86_400)
        } else {
            self.last_write + self.keep_alive / 2
        }
    }

    /// Writes as much of the write buffer as the socket takes now.
    pub fn try_flush(&mut self) -> anyhow::Result<usize> {
        let stream = match &mut self.io {
            Io::Tcp(s) => s,
            Io::Ws(ws) => {
                // One binary frame per batch, handed over only once the
                // previous one is out: the write buffer keeps its role as
                // the measure of back-pressure.
                let mut total = 0;
                if ws.try_flush()? && !self.wbuf.is_empty() {
                    let frame = self.wbuf.split().freeze();
                    total = frame.len();
                    ws.send(Message::Binary(frame))?;
                    ws.try_flush()?;
                }
                if total > 0 {
                    self.last_write = Instant::now();
                }
                return Ok(total);
            }
        };
        let mut total = 0;
        while !self.wbuf.is_empty() {
            match stream.try_write(&self.wbuf) {
                Ok(0) => bail!("the connection was closed while writing"),
                Ok(n) => {
                    self.wbuf.advance(n);
                    total += n;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => return Err(anyhow!("writing to the broker: {e}")),
            }
        }
        if total > 0 {
            self.last_write = Instant::now();
        }
        Ok(total)
    }

    /// Reads once into the read buffer, if bytes are available.
    pub fn try_read(&mut self) -> anyhow::Result<ReadState> {
        if self.rbuf.capacity() - self.rbuf.len() < self.read_chunk / 4 {
            self.rbuf.reserve(self.read_chunk);
        }
        let stream = match &mut self.io {
            Io::Tcp(s) => s,
            Io::Ws(ws) => {
                // Until tungstenite has nothing complete left (it may hold
                // whole frames it already took from the socket), bounded.
                let mut n = 0;
                while n < WS_READ_MAX {
                    match ws.try_recv()? {
                        WsRead::Msg(Message::Binary(b)) => {
                            self.rbuf.extend_from_slice(&b);
                            n += b.len();
                        }
                        WsRead::Msg(_) => bail!("the broker sent a text frame on /mqtt"),
                        WsRead::Empty => break,
                        WsRead::Closed if n == 0 => return Ok(ReadState::Closed),
                        // Decode what came first; the close shows next time.
                        WsRead::Closed => break,
                    }
                }
                // Pongs queued by pings read above.
                ws.try_flush()?;
                return Ok(ReadState::Bytes(n));
            }
        };
        match stream.try_read_buf(&mut self.rbuf) {
            Ok(0) => Ok(ReadState::Closed),
            Ok(n) => Ok(ReadState::Bytes(n)),
            Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(ReadState::Bytes(0)),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => Ok(ReadState::Closed),
            Err(e) => Err(anyhow!("reading from the broker: {e}")),
        }
    }

    /// Decodes the next complete packet of the read buffer, if any.
    pub fn decode_next(&mut self) -> anyhow::Result<Option<Packet>> {
        decode(&mut self.rbuf, self.version, &self.limits)
            .map_err(|e| anyhow!("the broker sent a malformed packet: {e}"))
    }

    /// Waits until the socket is readable, writable (only if there is
    /// something to write), or `until` passes.
    pub async fn wait(&self, until: Instant) -> anyhow::Result<()> {
        let stream = match &self.io {
            Io::Tcp(s) => s,
            Io::Ws(ws) => return ws.wait(until, !self.wbuf.is_empty()).await,
        };
        let interest = if self.wbuf.is_empty() {
            Interest::READABLE
        } else {
            Interest::READABLE | Interest::WRITABLE
        };
        tokio::select! {
            r = stream.ready(interest) => { r.context("waiting on the socket")?; }
            _ = tokio::time::sleep_until(until.into()) => {}
        }
        Ok(())
    }

    /// Writes the whole write buffer, by `deadline`.
    pub async fn flush_all(&mut self, deadline: Instant) -> anyhow::Result<()> {
        let stream = match &mut self.io {
            Io::Tcp(s) => s,
            Io::Ws(_) => loop {
                self.try_flush()?;
                let pending = match &self.io {
                    Io::Ws(ws) => ws.backlog(),
                    Io::Tcp(_) => false,
                };
                if self.wbuf.is_empty() && !pending {
                    self.last_write = Instant::now();
                    return Ok(());
                }
                if Instant::now() >= deadline {
                    bail!("timed out writing to the broker");
                }
                self.wait(deadline).await?;
            },
        };
        let r = tokio::time::timeout_at(deadline.into(), stream.write_all(&self.wbuf)).await;
        match r {
            Ok(Ok(())) => {
                self.wbuf.clear();
                self.last_write = Instant::now();
                Ok(())
            }
            Ok(Err(e)) => Err(anyhow!("writing to the broker: {e}")),
            Err(_) => bail!("timed out writing to the broker"),
        }
    }

    /// Reads until a whole packet is there, by `deadline` (handshakes only).
    pub async fn next_packet(&mut self, deadline: Instant, what: &str) -> anyhow::Result<Packet> {
        loop {
            if let Some(p) = self.decode_next()? {
                return Ok(p);
            }
            match tokio::time::timeout_at(deadline.into(), self.wait(deadline)).await {
                Ok(r) => r?,
                Err(_) => bail!("timed out waiting for {what} from the broker"),
            }
            if Instant::now() >= deadline {
                bail!("timed out waiting for {what} from the broker");
            }
            if self.try_read()? == ReadState::Closed {
                bail!("the broker closed the connection before sending {what}");
            }
        }
    }

    /// Sends DISCONNECT (best effort, bounded) and closes.
    pub async fn disconnect(mut self) {
        self.wbuf.clear();
        if self
            .queue(&Packet::Disconnect(Disconnect::default()))
            .is_ok()
        {
            let _ = self
                .flush_all(Instant::now() + Duration::from_millis(500))
                .await;
        }
        match self.io {
            Io::Tcp(mut s) => {
                let _ = tokio::time::timeout(Duration::from_millis(500), s.shutdown()).await;
            }
            Io::Ws(ws) => ws.close().await,
        }
    }

    /// Sends DISCONNECT, then waits (by `deadline`) for the broker to close
    /// the connection, so that by the time this returns the broker has taken
    /// the disconnection in. Bytes the broker sends meanwhile are discarded
    /// (none are expected: nothing is published yet). Returns whether the
    /// broker closed the connection in time.
    pub async fn disconnect_and_wait(mut self, deadline: Instant) -> anyhow::Result<bool> {
        self.wbuf.clear();
        self.queue(&Packet::Disconnect(Disconnect::default()))?;
        self.flush_all(deadline).await?;
        if let Io::Tcp(s) = &mut self.io {
            let _ = tokio::time::timeout_at(deadline.into(), s.shutdown()).await;
        }
        loop {
            self.rbuf.clear();
            if self.try_read()? == ReadState::Closed {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            self.wait(deadline).await?;
        }
    }
}

/// Describes a DISCONNECT from the broker.
pub fn describe_disconnect(d: &Disconnect) -> String {
    format!(
        "the broker sent DISCONNECT with reason {:#04x}{}",
        d.reason_code,
        d.reason_string
            .as_ref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default()
    )
}
