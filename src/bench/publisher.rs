//! A publisher: one task, one connection. Closed loop (as fast as the
//! window and the socket allow) or open loop (`--rate`), PUBLISHes batched
//! into the write buffer, acknowledgements freeing window slots.

use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use bytes::{Bytes, BytesMut};
use tern_mqtt_codec::{Limits, Packet, ProtocolVersion, Publish, QoS, decode, encode};

use super::conn::{Conn, ReadState, WBUF_HIGH, describe_disconnect};
use super::payload::{self, HEADER_LEN, Stamp};
use super::tracker::{Ack, Window};

/// A PUBLISH encoded once by the codec; each message copies it and patches
/// the packet identifier and the payload header in place.
#[derive(Debug, Clone)]
pub struct Template {
    bytes: Vec<u8>,
    payload_at: usize,
    /// Offset of the two packet identifier bytes (QoS > 0).
    id_at: Option<usize>,
}

impl Template {
    /// Encodes the PUBLISH of `size` payload bytes and checks, by decoding
    /// a patched copy, that the offsets are right.
    pub fn new(
        topic: &str,
        qos: QoS,
        size: usize,
        version: ProtocolVersion,
    ) -> anyhow::Result<Template> {
        let size = size.max(HEADER_LEN);
        let zero = Stamp {
            sent_ns: 0,
            publisher: 0,
            seq: 0,
        };
        let publish = Publish {
            qos,
            topic: topic.to_owned(),
            packet_id: (qos != QoS::AtMostOnce).then_some(1),
            payload: Bytes::from(payload::build(zero, size)),
            ..Default::default()
        };
        let mut buf = BytesMut::new();
        encode(&Packet::Publish(publish), version, &mut buf).context("encoding PUBLISH")?;
        let bytes = buf.to_vec();
        let payload_at = bytes.len() - size;
        // Packet id, then (v5) the property length 0, then the payload.
        let id_at = (qos != QoS::AtMostOnce).then(|| payload_at - 2 - usize::from(version.is_v5()));
        let t = Template {
            bytes,
            payload_at,
            id_at,
        };
        // Check the layout with the decoder.
        let probe = Stamp {
            sent_ns: 0x0102_0304_0506_0708,
            publisher: 0x0A0B_0C0D,
            seq: 0x1112_1314_1516_1718,
        };
        let mut out = BytesMut::new();
        t.append(&mut out, Some(0x1234), probe);
        let limits = Limits {
            packet_bytes_max: out.len().max(1024),
        };
        match decode(&mut out, version, &limits) {
            Ok(Some(Packet::Publish(p)))
                if p.topic == topic
                    && p.qos == qos
                    && p.packet_id == t.id_at.map(|_| 0x1234)
                    && p.payload.len() == size
                    && Stamp::read(&p.payload) == Some(probe)
                    && out.is_empty() =>
            {
                Ok(t)
            }
            other => bail!("internal error: PUBLISH template does not decode back: {other:?}"),
        }
    }

    /// Bytes of one encoded PUBLISH.
    pub fn encoded_len(&self) -> usize {
        self.bytes.len()
    }

    /// Appends one PUBLISH with packet id `id` (ignored for QoS 0) and
    /// payload header `stamp`.
    pub fn append(&self, out: &mut BytesMut, id: Option<u16>, stamp: Stamp) {
        let start = out.len();
        out.extend_from_slice(&self.bytes);
        let pkt = &mut out[start..];
        if let (Some(at), Some(id)) = (self.id_at, id) {
            pkt[at..at + 2].copy_from_slice(&id.to_be_bytes());
        }
        stamp.write(&mut pkt[self.payload_at..]);
    }
}

/// Timeline of a run, shared by every task.
#[derive(Debug, Clone, Copy)]
pub struct Timeline {
    /// Origin of every payload timestamp.
    pub origin: Instant,
    /// Publishing starts.
    pub t0: Instant,
    /// End of warm-up: messages stamped from here on are measured.
    pub measure_from: Instant,
    /// Publishing stops.
    pub stop: Instant,
    /// Last moment to wait for acknowledgements and deliveries.
    pub drain_until: Instant,
}

impl Timeline {
    /// `t` in payload time (ns since `origin`).
    pub fn ns(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX)
    }
}

/// What a publisher reports when done.
#[derive(Debug, Clone, Default)]
pub struct PubStats {
    /// Publisher index.
    pub id: u32,
    /// Messages sent, warm-up included (sequence numbers `0..sent`).
    pub sent: u64,
    /// Messages stamped within the measured window.
    pub sent_measured: u64,
    /// Accepted by the broker (PUBACK/PUBREC with success), QoS > 0.
    pub accepted: u64,
    /// Of those, the acknowledgements that arrived within the measured
    /// window (between the end of the warm-up and the stop).
    pub accepted_measured: u64,
    /// Sent but never acknowledged by the end of the drain, QoS > 0.
    pub unacked: Vec<u64>,
    /// Refused by the broker (error reason code), QoS > 0.
    pub refused: Vec<u64>,
    /// Acknowledgements for unknown packet identifiers.
    pub unknown_acks: u64,
    /// Bytes were still waiting to be written at the end of the drain.
    pub undrained: bool,
}

/// Most refusals tolerated before the run is abandoned.
const REFUSED_MAX: usize = 10_000;

/// Everything a publisher needs.
#[derive(Debug, Clone)]
pub struct PubCfg {
    /// Index, written into every payload.
    pub id: u32,
    /// Encoded PUBLISH to copy.
    pub template: Template,
    /// QoS of the messages.
    pub qos: QoS,
    /// Messages per second for this publisher; 0 = closed loop.
    pub rate: f64,
    /// Open loop: the messages due are sent once per tick, in one batch.
    pub tick: Duration,
    /// Window of QoS 1/2 messages in flight; batch size for QoS 0.
    pub inflight: usize,
    /// Timeline of the run.
    pub time: Timeline,
}

/// Runs a publisher on `conn` until the timeline's stop, then drains.
pub async fn run(mut conn: Conn, cfg: PubCfg) -> anyhow::Result<PubStats> {
    let qos1plus = cfg.qos != QoS::AtMostOnce;
    let window_cap = cfg
        .inflight
        .min(usize::from(conn.server_receive_max))
        .max(1);
    let mut window = Window::new(window_cap);
    let batch = cfg.inflight.clamp(1, 1024);
    let measure_from = cfg.time.ns(cfg.time.measure_from);
    let mut st = PubStats {
        id: cfg.id,
        ..Default::default()
    };

    tokio::time::sleep_until(cfg.time.t0.into()).await;
    loop {
        let now = Instant::now();
        if now >= cfg.time.stop {
            break;
        }
        let measuring = now >= cfg.time.measure_from;
        let mut progress = read_acks(&mut conn, &mut window, &mut st, measuring)?;

        // Produce: up to one batch, within the window, the schedule and the
        // write buffer's high-water mark.
        let due = if cfg.rate > 0.0 {
            // Whole ticks only: messages leave in one batch per tick, not
            // one or two per wake-up by an acknowledgement.
            let elapsed = now.saturating_duration_since(cfg.time.t0);
            let ticks = elapsed.as_nanos() / cfg.tick.as_nanos();
            let elapsed = (ticks * cfg.tick.as_nanos()) as f64 / 1e9;
            ((elapsed * cfg.rate) as u64 + 1).saturating_sub(st.sent)
        } else {
            u64::MAX
        };
        let sent_ns = cfg.time.ns(now);
        let mut n = 0u64;
        while n < due && n < batch as u64 && conn.wbuf.len() < WBUF_HIGH {
            let id = if qos1plus {
                match window.alloc(st.sent) {
                    Some(id) => Some(id),
                    None => break,
                }
            } else {
                None
            };
            let stamp = Stamp {
                sent_ns,
                publisher: cfg.id,
                seq: st.sent,
            };
            cfg.template.append(&mut conn.wbuf, id, stamp);
            if sent_ns >= measure_from {
                st.sent_measured += 1;
            }
            st.sent += 1;
            n += 1;
        }
        progress |= n > 0;
        conn.ping_if_due(now)?;
        progress |= conn.try_flush()? > 0;

        if progress {
            tokio::task::yield_now().await;
            continue;
        }
        // Nothing to do until the socket, the schedule or the clock says so.
        let mut wake = cfg.time.stop.min(conn.next_ping());
        if cfg.rate > 0.0 && (!qos1plus || window.has_room()) && conn.wbuf.len() < WBUF_HIGH {
            // The first tick at which message `sent` is due.
            let at = Duration::from_secs_f64(st.sent as f64 / cfg.rate);
            let ticks = at.as_nanos().div_ceil(cfg.tick.as_nanos());
            let next = cfg.time.t0 + cfg.tick * u32::try_from(ticks).unwrap_or(u32::MAX);
            wake = wake.min(next);
        }
        conn.wait(wake).await?;
    }

    // Stopped: flush what is buffered and wait for the outstanding
    // acknowledgements, both bounded by the drain deadline.
    while (!conn.wbuf.is_empty() || window.in_use() > 0) && Instant::now() < cfg.time.drain_until {
        let mut progress = read_acks(&mut conn, &mut window, &mut st, false)?;
        progress |= conn.try_flush()? > 0;
        if progress {
            tokio::task::yield_now().await;
        } else {
            conn.wait(cfg.time.drain_until).await?;
        }
    }
    st.unacked = window.unacked();
    if !conn.wbuf.is_empty() {
        st.undrained = true;
        if !qos1plus {
            // Never written, so never sent: the tail of the sequence.
            // (QoS 1/2 messages left there stay in the window: unacked.)
            let unwritten = (conn.wbuf.len() / cfg.template.encoded_len()) as u64;
            st.sent -= unwritten.min(st.sent);
            st.sent_measured -= unwritten.min(st.sent_measured);
        }
    }
    conn.disconnect().await;
    Ok(st)
}

/// Reads and handles every complete packet available; true if any bytes
/// were read. `measuring`: acceptances also count as within the measured
/// window.
fn read_acks(
    conn: &mut Conn,
    window: &mut Window,
    st: &mut PubStats,
    measuring: bool,
) -> anyhow::Result<bool> {
    let n = match conn.try_read()? {
        ReadState::Bytes(n) => n,
        ReadState::Closed => {
            // A DISCONNECT may explain why.
            while let Some(p) = conn.decode_next()? {
                if let Packet::Disconnect(d) = p {
                    bail!("{}", describe_disconnect(&d));
                }
            }
            bail!("the broker closed the connection");
        }
    };
    while let Some(p) = conn.decode_next()? {
        let ack = match p {
            Packet::PubAck(r) => window.puback(r.packet_id, r.reason_code),
            Packet::PubRec(r) => {
                let a = window.pubrec(r.packet_id, r.reason_code);
                if matches!(a, Ack::Accepted(_) | Ack::Completed) {
                    conn.queue_ack(Packet::PubRel, r.packet_id)?;
                }
                a
            }
            Packet::PubComp(r) => window.pubcomp(r.packet_id),
            Packet::PingResp => continue,
            Packet::Disconnect(d) => bail!("{}", describe_disconnect(&d)),
            other => {
                return Err(anyhow!("unexpected {} sent to a publisher", other.name()));
            }
        };
        match ack {
            Ack::Accepted(_) => {
                st.accepted += 1;
                if measuring {
                    st.accepted_measured += 1;
                }
            }
            Ack::Refused(seq) => {
                st.refused.push(seq);
                if st.refused.len() > REFUSED_MAX {
                    bail!("the broker refused more than {REFUSED_MAX} PUBLISHes");
                }
            }
            Ack::Unknown => st.unknown_acks += 1,
            Ack::Completed => {}
        }
    }
    Ok(n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_patches_every_version_and_qos() {
        for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
            for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
                for size in [HEADER_LEN, 64, 300] {
                    let t = Template::new("bench/x/fanin/7", qos, size, version).expect("template");
                    let mut out = BytesMut::new();
                    for seq in 0..3u64 {
                        let id = u16::try_from(seq + 40_000).expect("id");
                        t.append(
                            &mut out,
                            Some(id),
                            Stamp {
                                sent_ns: seq * 1000,
                                publisher: 7,
                                seq,
                            },
                        );
                    }
                    let limits = Limits::default();
                    for seq in 0..3u64 {
                        let Ok(Some(Packet::Publish(p))) = decode(&mut out, version, &limits)
                        else {
                            panic!("no PUBLISH for {version:?} {qos:?} {size}");
                        };
                        let want_id = u16::try_from(seq + 40_000).expect("id");
                        assert_eq!(p.packet_id, (qos != QoS::AtMostOnce).then_some(want_id));
                        let s = Stamp::read(&p.payload).expect("stamp");
                        assert_eq!((s.seq, s.publisher, s.sent_ns), (seq, 7, seq * 1000));
                        assert_eq!(p.payload.len(), size);
                    }
                    assert!(out.is_empty());
                }
            }
        }
    }
}
