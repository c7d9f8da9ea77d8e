//! A client WebSocket on a tokio `TcpStream`, driven without blocking in
//! the same style as the raw TCP connections: `try_recv` / `try_flush`
//! never wait, `wait` waits for readiness (or a deadline).
//!
//! tungstenite's synchronous `WebSocket` runs over an adapter whose `Read`
//! and `Write` are the stream's `try_read` / `try_write` (WouldBlock when
//! not ready), so framing, masking and the automatic pongs are tungstenite's
//! while the scheduling stays ours. Used for MQTT over WebSocket
//! (`--transport ws`, binary frames on `/mqtt`) and for the realtime
//! protocol clients (JSON text frames on `/`).

use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{
    self, HandshakeError, Message, WebSocket, client::IntoClientRequest, http::HeaderValue,
    protocol::WebSocketConfig,
};

/// Longest pause between handshake attempts that stopped on a write (the
/// handshake otherwise waits for the socket to become readable).
const HANDSHAKE_POLL: Duration = Duration::from_millis(10);

/// `Read` / `Write` on a tokio `TcpStream` that never block.
#[derive(Debug)]
pub struct TcpIo(TcpStream);

impl Read for TcpIo {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl Write for TcpIo {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.try_write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What [`WsStream::try_recv`] found.
#[derive(Debug)]
pub enum WsRead {
    /// A data message (text or binary).
    Msg(Message),
    /// Nothing complete to read now.
    Empty,
    /// The server closed the connection (close frame or end of stream).
    Closed,
}

/// A connected client WebSocket.
#[derive(Debug)]
pub struct WsStream {
    ws: WebSocket<TcpIo>,
    /// tungstenite holds bytes the socket did not take yet.
    backlog: bool,
}

fn would_block(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Io(io) if io.kind() == ErrorKind::WouldBlock)
}

/// `ws://host:port` for `addr` (IPv6 bracketed).
pub fn base_url(addr: SocketAddr) -> String {
    format!("ws://{addr}")
}

impl WsStream {
    /// Opens TCP to `addr` and upgrades `GET path` (with `protocol` as the
    /// subprotocol, if any), by `deadline`.
    pub async fn connect(
        addr: SocketAddr,
        path: &str,
        protocol: Option<&str>,
        deadline: Instant,
    ) -> anyhow::Result<WsStream> {
        let stream = tokio::time::timeout_at(deadline.into(), TcpStream::connect(addr))
            .await
            .map_err(|_| anyhow!("cannot connect to {addr}: TCP connect timed out"))?
            .map_err(|e| anyhow!(super::conn::explain(&e, addr)))?;
        stream.set_nodelay(true).context("setting TCP_NODELAY")?;
        let url = format!("{}{path}", base_url(addr));
        let mut req = url
            .as_str()
            .into_client_request()
            .with_context(|| format!("building the WebSocket request for {url}"))?;
        if let Some(p) = protocol {
            req.headers_mut().insert(
                "Sec-WebSocket-Protocol",
                HeaderValue::from_str(p).context("subprotocol")?,
            );
        }
        // A small read buffer: tungstenite zeroes it before every read.
        let config = WebSocketConfig::default()
            .write_buffer_size(64 * 1024)
            .read_buffer_size(8 * 1024);
        let mut attempt = tungstenite::client::client_with_config(req, TcpIo(stream), Some(config));
        loop {
            match attempt {
                Ok((ws, _resp)) => {
                    return Ok(WsStream { ws, backlog: false });
                }
                Err(HandshakeError::Failure(e)) => {
                    bail!("WebSocket upgrade of {url} failed: {e}")
                }
                Err(HandshakeError::Interrupted(mid)) => {
                    if Instant::now() >= deadline {
                        bail!("timed out upgrading {url} to a WebSocket");
                    }
                    let until = (Instant::now() + HANDSHAKE_POLL).min(deadline);
                    let sock = &mid.get_ref().get_ref().0;
                    tokio::select! {
                        r = sock.ready(Interest::READABLE) => { r.context("waiting on the socket")?; }
                        _ = tokio::time::sleep_until(until.into()) => {}
                    }
                    attempt = mid.handshake();
                }
            }
        }
    }

    /// The next data message, if one is complete; pings are answered by
    /// tungstenite (the pong goes out with the next flush).
    pub fn try_recv(&mut self) -> anyhow::Result<WsRead> {
        loop {
            match self.ws.read() {
                Ok(m @ (Message::Text(_) | Message::Binary(_))) => return Ok(WsRead::Msg(m)),
                Ok(Message::Close(_)) => return Ok(WsRead::Closed),
                Ok(_) => {
                    // Ping (pong queued), pong, raw frame: nothing for us.
                    self.backlog = true;
                }
                Err(e) if would_block(&e) => return Ok(WsRead::Empty),
                Err(
                    tungstenite::Error::ConnectionClosed
                    | tungstenite::Error::AlreadyClosed
                    | tungstenite::Error::Protocol(
                        tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
                    ),
                ) => return Ok(WsRead::Closed),
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        ErrorKind::ConnectionReset | ErrorKind::UnexpectedEof
                    ) =>
                {
                    return Ok(WsRead::Closed);
                }
                Err(e) => return Err(anyhow!("reading from the WebSocket: {e}")),
            }
        }
    }

    /// Queues `msg` (tungstenite may write it out at once if its buffer is
    /// full); a socket that does not take it leaves a backlog.
    pub fn send(&mut self, msg: Message) -> anyhow::Result<()> {
        match self.ws.write(msg) {
            Ok(()) => {
                self.backlog = true;
                Ok(())
            }
            Err(e) if would_block(&e) => {
                self.backlog = true;
                Ok(())
            }
            Err(e) => Err(anyhow!("writing to the WebSocket: {e}")),
        }
    }

    /// Writes out what tungstenite holds; true when nothing is left.
    pub fn try_flush(&mut self) -> anyhow::Result<bool> {
        if !self.backlog {
            return Ok(true);
        }
        match self.ws.flush() {
            Ok(()) => {
                self.backlog = false;
                Ok(true)
            }
            Err(e) if would_block(&e) => Ok(false),
            Err(e) => Err(anyhow!("writing to the WebSocket: {e}")),
        }
    }

    /// Bytes may be waiting in tungstenite's write buffer.
    pub fn backlog(&self) -> bool {
        self.backlog
    }

    /// Waits until the socket is readable, writable (only if `write` or
    /// there is a backlog), or `until` passes.
    pub async fn wait(&self, until: Instant, write: bool) -> anyhow::Result<()> {
        let interest = if write || self.backlog {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        tokio::select! {
            r = self.ws.get_ref().0.ready(interest) => { r.context("waiting on the socket")?; }
            _ = tokio::time::sleep_until(until.into()) => {}
        }
        Ok(())
    }

    /// Writes everything queued, by `deadline`.
    pub async fn flush_all(&mut self, deadline: Instant) -> anyhow::Result<()> {
        loop {
            if self.try_flush()? {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("timed out writing to the broker");
            }
            self.wait(deadline, true).await?;
        }
    }

    /// Sends a close frame and shuts the socket down (best effort, bounded).
    pub async fn close(mut self) {
        let deadline = Instant::now() + Duration::from_millis(500);
        // Queued even when the socket does not take it now.
        let _ = self.ws.close(None);
        self.backlog = true;
        let _ = self.flush_all(deadline).await;
    }
}
