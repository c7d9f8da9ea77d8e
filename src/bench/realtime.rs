//! Realtime-protocol clients (the Ably-compatible protocol Tern serves on
//! its HTTP listener at `/`), in JSON: subscribers that attach to a channel
//! and feed the MESSAGE frames they receive to the same accounting as the
//! MQTT subscribers, and publishers that send MESSAGE frames (one message
//! each, `msgSerial` = the sequence number) and count the ACKs.
//!
//! Payloads are the tool's binary payloads: a publisher sends them as
//! base64 (`encoding: "base64"`), so an MQTT subscriber receives the exact
//! bytes; a subscriber takes `data` as base64 when the `encoding` ends in
//! `base64` (MQTT payloads that are not valid UTF-8), else as the text's
//! bytes.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use serde::Deserialize;
use tokio_tungstenite::tungstenite::Message;

use super::payload::{self, Stamp};
use super::publisher::{PubStats, Timeline};
use super::subscriber::{SubCfg, SubStats};
use super::ws::{WsRead, WsStream};

/// The connection URL's path and query: JSON, protocol version 6, no
/// idle HEARTBEATs from the server.
const PATH: &str = "/?format=json&v=6&heartbeats=false";
/// Most frames handled per wake-up before yielding.
const FRAMES_PER_WAKE: usize = 1024;
/// Most NACKed messages tolerated before the run is abandoned.
const REFUSED_MAX: usize = 10_000;

mod action {
    pub const HEARTBEAT: u8 = 0;
    pub const ACK: u8 = 1;
    pub const NACK: u8 = 2;
    pub const CONNECTED: u8 = 4;
    pub const DISCONNECTED: u8 = 6;
    pub const CLOSED: u8 = 8;
    pub const ERROR: u8 = 9;
    pub const ATTACH: u8 = 10;
    pub const ATTACHED: u8 = 11;
    pub const DETACHED: u8 = 13;
    pub const MESSAGE: u8 = 15;
}

/// The fields of a ProtocolMessage the tool looks at.
#[derive(Debug, Deserialize)]
struct Frame<'a> {
    action: u8,
    #[serde(default, rename = "msgSerial")]
    msg_serial: Option<u64>,
    #[serde(default)]
    count: Option<u64>,
    #[serde(default, borrow)]
    channel: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    messages: Vec<Msg<'a>>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

/// The fields of a Message the tool looks at.
#[derive(Debug, Deserialize)]
struct Msg<'a> {
    #[serde(default, borrow)]
    data: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    encoding: Option<Cow<'a, str>>,
}

fn parse(text: &str) -> anyhow::Result<Frame<'_>> {
    serde_json::from_str(text).map_err(|e| {
        let head: String = text.chars().take(200).collect();
        anyhow!("the broker sent a realtime frame the tool cannot read ({e}): {head}")
    })
}

fn describe(f: &Frame) -> String {
    match &f.error {
        Some(e) => format!(
            "action {} with error {} {}",
            f.action,
            e.get("code").unwrap_or(&serde_json::Value::Null),
            e.get("message").and_then(|m| m.as_str()).unwrap_or("")
        ),
        None => format!("action {}", f.action),
    }
}

/// Waits for a frame of `want` (by `deadline`), skipping HEARTBEATs;
/// anything else fails the connection.
async fn expect(ws: &mut WsStream, want: u8, what: &str, deadline: Instant) -> anyhow::Result<()> {
    loop {
        ws.flush_all(deadline).await?;
        match ws.try_recv()? {
            WsRead::Msg(Message::Text(t)) => {
                let f = parse(&t)?;
                match f.action {
                    a if a == want => return Ok(()),
                    action::HEARTBEAT => {}
                    _ => bail!("expected {what}, the broker sent {}", describe(&f)),
                }
            }
            WsRead::Msg(_) => bail!("expected {what}, the broker sent a binary frame"),
            WsRead::Closed => bail!("the broker closed the connection before sending {what}"),
            WsRead::Empty => {
                if Instant::now() >= deadline {
                    bail!("timed out waiting for {what} from the broker");
                }
                ws.wait(deadline, false).await?;
            }
        }
    }
}

/// Opens a realtime connection (anonymous, JSON) and waits for CONNECTED;
/// with `channel`, also attaches and waits for ATTACHED.
pub async fn connect(
    addr: SocketAddr,
    channel: Option<&str>,
    timeout: Duration,
) -> anyhow::Result<WsStream> {
    let deadline = Instant::now() + timeout;
    let mut ws = WsStream::connect(addr, PATH, None, deadline).await?;
    expect(&mut ws, action::CONNECTED, "CONNECTED", deadline).await?;
    if let Some(ch) = channel {
        let attach = serde_json::json!({"action": action::ATTACH, "channel": ch});
        ws.send(Message::text(attach.to_string()))?;
        expect(&mut ws, action::ATTACHED, "ATTACHED", deadline)
            .await
            .with_context(|| format!("attaching to {ch:?}"))?;
    }
    Ok(ws)
}

/// Runs a realtime subscriber: like the MQTT one (same accounting, same
/// end), on MESSAGE frames.
pub async fn run_sub(mut ws: WsStream, mut cfg: SubCfg) -> anyhow::Result<SubStats> {
    let measure_from = cfg.time.ns(cfg.time.measure_from);
    let mut st = SubStats::new(&cfg);
    let hard_stop = cfg.late_until.unwrap_or(cfg.time.drain_until);
    let mut finals = cfg.finals.borrow_and_update().clone();
    let mut raw = Vec::new();
    loop {
        let mut frames = 0usize;
        while frames < FRAMES_PER_WAKE {
            let text = match ws.try_recv()? {
                WsRead::Msg(Message::Text(t)) => t,
                WsRead::Msg(_) => bail!("the broker sent a binary frame to a JSON connection"),
                WsRead::Empty => break,
                WsRead::Closed => bail!("the broker closed the connection"),
            };
            frames += 1;
            let f = parse(&text)?;
            match f.action {
                action::MESSAGE => {
                    let read_at = Instant::now();
                    let now_ns = cfg.time.ns(read_at);
                    for m in &f.messages {
                        st.last_arrival = Some(read_at);
                        st.arrivals += 1;
                        let data = m.data.as_deref().unwrap_or("");
                        let bytes: &[u8] =
                            if m.encoding.as_deref().is_some_and(|e| e.ends_with("base64")) {
                                raw.clear();
                                if !b64_decode(data, &mut raw) {
                                    st.foreign += 1;
                                    continue;
                                }
                                &raw
                            } else {
                                data.as_bytes()
                            };
                        st.account(&cfg, bytes, read_at, now_ns, measure_from);
                    }
                }
                action::HEARTBEAT | action::ATTACHED | action::ACK => {}
                action::ERROR | action::DISCONNECTED | action::CLOSED | action::DETACHED => {
                    bail!(
                        "the broker sent {} (channel {:?})",
                        describe(&f),
                        f.channel.as_deref().unwrap_or("")
                    )
                }
                _ => {}
            }
        }
        // Pongs to WebSocket pings.
        ws.try_flush()?;
        let now = Instant::now();
        if finals.is_none() && cfg.finals.has_changed().unwrap_or(false) {
            finals = cfg.finals.borrow_and_update().clone();
        }
        if finals.as_deref().is_some_and(|f| st.complete(f)) || now >= hard_stop {
            break;
        }
        if frames > 0 {
            tokio::task::yield_now().await;
            continue;
        }
        if finals.is_none() {
            tokio::select! {
                r = ws.wait(hard_stop, false) => r?,
                r = cfg.finals.changed() => {
                    if r.is_err() {
                        ws.wait(hard_stop, false).await?;
                    } else {
                        finals = cfg.finals.borrow_and_update().clone();
                    }
                }
            }
        } else {
            ws.wait(hard_stop, false).await?;
        }
    }
    ws.close().await;
    Ok(st)
}

/// Everything a realtime publisher needs.
#[derive(Debug, Clone)]
pub struct RtPubCfg {
    /// Index, written into every payload.
    pub id: u32,
    /// Channel published to.
    pub channel: String,
    /// Payload bytes (before base64).
    pub size: usize,
    /// Messages per second; 0 = closed loop.
    pub rate: f64,
    /// Open loop: the messages due are sent once per tick.
    pub tick: Duration,
    /// Most messages not yet ACKed (closed-loop window and open-loop cap).
    pub inflight: usize,
    /// Timeline of the run.
    pub time: Timeline,
}

/// Stop producing once this many frames wait in tungstenite's buffer
/// without the socket taking them.
const BACKLOG_FRAMES: u64 = 256;

/// Runs a realtime publisher until the timeline's stop, then waits for the
/// outstanding ACKs (bounded by the drain deadline).
pub async fn run_pub(mut ws: WsStream, cfg: RtPubCfg) -> anyhow::Result<PubStats> {
    let mut st = PubStats {
        id: cfg.id,
        ..Default::default()
    };
    let measure_from = cfg.time.ns(cfg.time.measure_from);
    let channel = serde_json::to_string(&cfg.channel).context("channel name")?;
    let prefix = format!("{{\"action\":15,\"channel\":{channel},\"msgSerial\":");
    let mut body = payload::build(
        Stamp {
            sent_ns: 0,
            publisher: cfg.id,
            seq: 0,
        },
        cfg.size,
    );
    let window = cfg.inflight.max(1) as u64;
    let batch = cfg.inflight.clamp(1, 1024) as u64;
    // Messages answered (ACK or NACK): serials 0..answered.
    let mut answered = 0u64;
    // Frames queued since the socket last took everything.
    let mut queued = 0u64;

    tokio::time::sleep_until(cfg.time.t0.into()).await;
    loop {
        let now = Instant::now();
        let stopping = now >= cfg.time.stop;
        if stopping && (answered >= st.sent || now >= cfg.time.drain_until) {
            break;
        }
        let measuring = now >= cfg.time.measure_from && !stopping;
        let mut progress = read_acks(&mut ws, &mut st, &mut answered, measuring)?;
        if ws.try_flush()? {
            queued = 0;
        }
        if !stopping {
            let due = if cfg.rate > 0.0 {
                let elapsed = now.saturating_duration_since(cfg.time.t0);
                let ticks = elapsed.as_nanos() / cfg.tick.as_nanos();
                let elapsed = (ticks * cfg.tick.as_nanos()) as f64 / 1e9;
                ((elapsed * cfg.rate) as u64 + 1).saturating_sub(st.sent)
            } else {
                u64::MAX
            };
            let sent_ns = cfg.time.ns(now);
            let mut n = 0u64;
            while n < due && n < batch && st.sent - answered < window && queued < BACKLOG_FRAMES {
                let stamp = Stamp {
                    sent_ns,
                    publisher: cfg.id,
                    seq: st.sent,
                };
                stamp.write(&mut body);
                let mut frame = String::with_capacity(prefix.len() + 64 + body.len() * 4 / 3);
                frame.push_str(&prefix);
                frame.push_str(&st.sent.to_string());
                frame.push_str(",\"messages\":[{\"encoding\":\"base64\",\"data\":\"");
                b64_encode(&body, &mut frame);
                frame.push_str("\"}]}");
                ws.send(Message::text(frame))?;
                if sent_ns >= measure_from {
                    st.sent_measured += 1;
                }
                st.sent += 1;
                queued += 1;
                n += 1;
            }
            if n > 0 {
                progress = true;
                if ws.try_flush()? {
                    queued = 0;
                }
            }
        }
        if progress {
            tokio::task::yield_now().await;
            continue;
        }
        let mut wake = if stopping {
            cfg.time.drain_until
        } else {
            cfg.time.stop
        };
        if !stopping && cfg.rate > 0.0 && st.sent - answered < window && queued < BACKLOG_FRAMES {
            let at = Duration::from_secs_f64(st.sent as f64 / cfg.rate);
            let ticks = at.as_nanos().div_ceil(cfg.tick.as_nanos());
            let next = cfg.time.t0 + cfg.tick * u32::try_from(ticks).unwrap_or(u32::MAX);
            wake = wake.min(next);
        }
        ws.wait(wake, false).await?;
    }
    st.unacked = (answered..st.sent).collect();
    st.undrained = ws.backlog() && !ws.try_flush()?;
    ws.close().await;
    Ok(st)
}

/// Reads every complete frame available and handles ACK / NACK; true if
/// any frame came.
fn read_acks(
    ws: &mut WsStream,
    st: &mut PubStats,
    answered: &mut u64,
    measuring: bool,
) -> anyhow::Result<bool> {
    let mut frames = 0usize;
    while frames < FRAMES_PER_WAKE {
        let text = match ws.try_recv()? {
            WsRead::Msg(Message::Text(t)) => t,
            WsRead::Msg(_) => bail!("the broker sent a binary frame to a JSON connection"),
            WsRead::Empty => break,
            WsRead::Closed => bail!("the broker closed the connection"),
        };
        frames += 1;
        let f = parse(&text)?;
        match f.action {
            action::ACK | action::NACK => {
                let (Some(serial), count) = (f.msg_serial, f.count.unwrap_or(1)) else {
                    bail!("the broker sent {} without msgSerial", describe(&f));
                };
                let end = serial.saturating_add(count).min(st.sent);
                // Serials are answered in order; anything before `answered`
                // was already counted.
                let from = serial.max(*answered);
                if serial > *answered {
                    st.unknown_acks += serial - *answered;
                }
                for seq in from..end {
                    if f.action == action::ACK {
                        st.accepted += 1;
                        if measuring {
                            st.accepted_measured += 1;
                        }
                    } else {
                        st.refused.push(seq);
                    }
                }
                if f.action == action::NACK && st.refused.len() > REFUSED_MAX {
                    bail!(
                        "the broker refused more than {REFUSED_MAX} messages; last: {}",
                        describe(&f)
                    );
                }
                *answered = (*answered).max(end);
            }
            action::HEARTBEAT => {}
            action::ERROR | action::DISCONNECTED | action::CLOSED => {
                bail!("the broker sent {}", describe(&f))
            }
            _ => {}
        }
    }
    Ok(frames > 0)
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Appends standard base64 (with padding) of `bytes` to `out`.
pub fn b64_encode(bytes: &[u8], out: &mut String) {
    for c in bytes.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= c.len() {
                out.push(char::from(B64[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
}

/// Decodes standard base64 (padding optional) into `out`; false if `text`
/// is not base64.
pub fn b64_decode(text: &str, out: &mut Vec<u8>) -> bool {
    let text = text.trim_end_matches('=').as_bytes();
    let mut acc = 0u32;
    let mut bits = 0u32;
    for &c in text {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return false,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    bits < 6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_roundtrip_and_known_values() {
        for (raw, enc) in [
            (&b""[..], ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foobar", "Zm9vYmFy"),
            (&[0xff, 0xfe, 0x00][..], "//4A"),
        ] {
            let mut s = String::new();
            b64_encode(raw, &mut s);
            assert_eq!(s, enc);
            let mut back = Vec::new();
            assert!(b64_decode(enc, &mut back));
            assert_eq!(back, raw);
        }
        let body: Vec<u8> = (0..=255u8).collect();
        let mut s = String::new();
        b64_encode(&body, &mut s);
        let mut back = Vec::new();
        assert!(b64_decode(&s, &mut back));
        assert_eq!(back, body);
        assert!(!b64_decode("a$b", &mut Vec::new()));
    }

    #[test]
    fn frames_parse() {
        let f = parse(
            r#"{"action":15,"channel":"a/b","messages":[{"data":"Zm9v","encoding":"base64","id":"x"},{"data":"hi"}]}"#,
        )
        .expect("parses");
        assert_eq!(f.action, action::MESSAGE);
        assert_eq!(f.messages.len(), 2);
        assert_eq!(f.messages[0].encoding.as_deref(), Some("base64"));
        assert_eq!(f.messages[1].data.as_deref(), Some("hi"));
        let a = parse(r#"{"action":1,"msgSerial":7,"count":2}"#).expect("parses");
        assert_eq!((a.msg_serial, a.count), (Some(7), Some(2)));
    }
}
