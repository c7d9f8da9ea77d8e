//! A subscriber: one task, one connection. Decodes every complete packet
//! per wake-up, acknowledges QoS 1/2 deliveries, and accounts for each
//! publisher's sequence and the delivery latency.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use hdrhistogram::Histogram;
use tern_mqtt_codec::{Packet, QoS};
use tokio::sync::watch;

use super::conn::{Conn, ReadState, describe_disconnect};
use super::payload::Stamp;
use super::publisher::Timeline;
use super::tracker::SeqTracker;

/// Queued acknowledgement bytes written without waiting for the read side
/// to go quiet: 64 short PUBACKs, half of a typical broker window, so the
/// broker's outbound window never waits on this batching.
const ACK_FLUSH_BYTES: usize = 256;

/// Messages sent by each publisher (by index), once all have stopped.
pub type Finals = watch::Receiver<Option<Arc<Vec<u64>>>>;

/// Everything a subscriber needs.
#[derive(Debug, Clone)]
pub struct SubCfg {
    /// QoS subscribed with.
    pub qos: QoS,
    /// The publishers it hears from: indexes `first..first + count`.
    pub first: u32,
    /// How many publishers it hears from.
    pub count: u32,
    /// Timeline of the run.
    pub time: Timeline,
    /// Set when every publisher has stopped (may be set from the start).
    pub finals: Finals,
    /// Keep receiving past the timeline's drain deadline until this moment
    /// (persistent sessions: every acknowledged message must come).
    /// Arrivals after the drain deadline count as `late` only: not in the
    /// delivered count nor the latency. `None`: stop at the drain deadline.
    pub late_until: Option<Instant>,
    /// Stop once nothing has arrived for this long, counted from the last
    /// arrival or from `idle_from`, whichever is later (and only after a
    /// first arrival when `idle_from` is `None`).
    pub idle_stop: Option<Duration>,
    /// See `idle_stop`.
    pub idle_from: Option<Instant>,
}

/// What a subscriber reports when done.
#[derive(Debug)]
pub struct SubStats {
    /// Index of the first publisher tracked.
    pub first: u32,
    /// One tracker per publisher heard from, from `first` on.
    pub streams: Vec<SeqTracker>,
    /// PUBLISH arrivals stamped within the measured window.
    pub delivered_measured: u64,
    /// Every PUBLISH arrival.
    pub arrivals: u64,
    /// Latency of measured arrivals, µs.
    pub latency: Histogram<u64>,
    /// Arrivals that were not ours (short payload, unknown publisher).
    pub foreign: u64,
    /// Arrivals at a QoS other than the one subscribed and published with.
    pub wrong_qos: u64,
    /// When the last PUBLISH arrived.
    pub last_arrival: Option<Instant>,
    /// Arrivals after the timeline's drain deadline (see `late_until`).
    pub late: u64,
}

impl SubStats {
    /// Nothing received yet, for the publishers `cfg` names.
    pub fn new(cfg: &SubCfg) -> SubStats {
        SubStats {
            first: cfg.first,
            streams: vec![SeqTracker::default(); cfg.count as usize],
            delivered_measured: 0,
            arrivals: 0,
            latency: new_histogram(),
            foreign: 0,
            wrong_qos: 0,
            last_arrival: None,
            late: 0,
        }
    }

    /// Accounts for one delivered `payload` read at `read_at` (`now_ns` in
    /// payload time): its publisher's sequence, and the delivery count and
    /// latency if it was stamped from `measure_from` on.
    pub fn account(
        &mut self,
        cfg: &SubCfg,
        payload: &[u8],
        read_at: Instant,
        now_ns: u64,
        measure_from: u64,
    ) {
        let Some(stamp) = Stamp::read(payload) else {
            self.foreign += 1;
            return;
        };
        let Some(tracker) = stamp
            .publisher
            .checked_sub(cfg.first)
            .and_then(|i| self.streams.get_mut(i as usize))
        else {
            self.foreign += 1;
            return;
        };
        tracker.record(stamp.seq);
        if cfg.late_until.is_some() && read_at > cfg.time.drain_until {
            self.late += 1;
        } else if stamp.sent_ns >= measure_from {
            self.delivered_measured += 1;
            record(
                &mut self.latency,
                now_ns.saturating_sub(stamp.sent_ns) / 1000,
            );
        }
    }

    /// Every message of every publisher heard from has arrived, given how
    /// many each one sent (`finals`, by publisher index).
    pub fn complete(&self, finals: &[u64]) -> bool {
        self.streams.iter().enumerate().all(|(i, t)| {
            let sent = finals.get(self.first as usize + i).copied().unwrap_or(0);
            t.complete(sent)
        })
    }
}

/// A new latency histogram in µs (3 significant digits, grows as needed).
pub fn new_histogram() -> Histogram<u64> {
    let mut h = Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant digits is valid"));
    h.auto(true);
    h
}

/// Records `v` in `h`, growing it as needed (clamping only if it cannot).
pub fn record(h: &mut Histogram<u64>, v: u64) {
    if h.record(v).is_err() {
        h.saturating_record(v);
    }
}

/// Packet identifiers of QoS 2 deliveries waiting for PUBREL.
struct Pending(Vec<u64>);

impl Pending {
    fn new() -> Pending {
        Pending(vec![0; 1024])
    }
    fn insert(&mut self, id: u16) -> bool {
        let (w, b) = (usize::from(id) / 64, 1u64 << (id % 64));
        let was = self.0[w] & b != 0;
        self.0[w] |= b;
        !was
    }
    fn remove(&mut self, id: u16) {
        let (w, b) = (usize::from(id) / 64, 1u64 << (id % 64));
        self.0[w] &= !b;
    }
}

/// Runs a subscriber on `conn` until every message it is owed has come or
/// the drain deadline passes.
pub async fn run(mut conn: Conn, mut cfg: SubCfg) -> anyhow::Result<SubStats> {
    let measure_from = cfg.time.ns(cfg.time.measure_from);
    let mut st = SubStats::new(&cfg);
    let hard_stop = cfg.late_until.unwrap_or(cfg.time.drain_until);
    let mut pending = Pending::new();
    // Known from the start when the publishers ran before (offline runs).
    let mut finals: Option<Arc<Vec<u64>>> = cfg.finals.borrow_and_update().clone();

    loop {
        let n = match conn.try_read()? {
            ReadState::Bytes(n) => n,
            ReadState::Closed => {
                while let Some(p) = conn.decode_next()? {
                    if let Packet::Disconnect(d) = p {
                        bail!("{}", describe_disconnect(&d));
                    }
                }
                bail!("the broker closed the connection");
            }
        };
        // Bytes may also wait in the buffer from the handshake: a resumed
        // session's queued messages can follow the CONNACK in one read.
        if n > 0 || !conn.rbuf.is_empty() {
            let read_at = Instant::now();
            let now_ns = cfg.time.ns(read_at);
            while let Some(p) = conn.decode_next()? {
                match p {
                    Packet::Publish(p) => {
                        st.last_arrival = Some(read_at);
                        if p.qos != cfg.qos {
                            st.wrong_qos += 1;
                        }
                        match (p.qos, p.packet_id) {
                            (QoS::AtMostOnce, _) => {}
                            (QoS::AtLeastOnce, Some(id)) => conn.queue_ack(Packet::PubAck, id)?,
                            (QoS::ExactlyOnce, Some(id)) => {
                                conn.queue_ack(Packet::PubRec, id)?;
                                if !pending.insert(id) {
                                    // Re-sent before our PUBREL came: not a new delivery.
                                    continue;
                                }
                            }
                            (_, None) => bail!("QoS {} PUBLISH without packet id", p.qos as u8),
                        }
                        st.arrivals += 1;
                        st.account(&cfg, &p.payload, read_at, now_ns, measure_from);
                    }
                    Packet::PubRel(r) => {
                        pending.remove(r.packet_id);
                        conn.queue_ack(Packet::PubComp, r.packet_id)?;
                    }
                    Packet::PingResp => {}
                    Packet::Disconnect(d) => bail!("{}", describe_disconnect(&d)),
                    other => {
                        return Err(anyhow!("unexpected {} sent to a subscriber", other.name()));
                    }
                }
            }
        }
        let now = Instant::now();
        conn.ping_if_due(now)?;
        // Acknowledgements go out once the socket has nothing more to read
        // right now (or many are waiting): one write per burst of
        // deliveries rather than one per read.
        let wrote = if n == 0 || conn.wbuf.len() >= ACK_FLUSH_BYTES {
            conn.try_flush()?
        } else {
            0
        };

        if finals.is_none() && cfg.finals.has_changed().unwrap_or(false) {
            finals = cfg.finals.borrow_and_update().clone();
        }
        if finals.as_deref().is_some_and(|f| st.complete(f)) {
            break;
        }
        if now >= hard_stop {
            break;
        }
        let idle_base = match (st.last_arrival, cfg.idle_from) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        let idle_until = cfg.idle_stop.zip(idle_base).map(|(d, t)| t + d);
        if idle_until.is_some_and(|t| now >= t) && conn.wbuf.is_empty() {
            break;
        }
        if n > 0 || wrote > 0 {
            tokio::task::yield_now().await;
            continue;
        }
        let mut wake = hard_stop.min(conn.next_ping());
        if let Some(t) = idle_until {
            wake = wake.min(t);
        }
        if finals.is_none() {
            tokio::select! {
                r = conn.wait(wake) => r?,
                r = cfg.finals.changed() => {
                    if r.is_err() {
                        // Coordinator gone: no finals will come; just wait.
                        conn.wait(wake).await?;
                    } else {
                        // `changed` marked the value seen: take it now, or
                        // `has_changed` above would never report it.
                        finals = cfg.finals.borrow_and_update().clone();
                    }
                }
            }
        } else {
            conn.wait(wake).await?;
        }
    }
    conn.disconnect().await;
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_grows_to_large_values() {
        let mut h = new_histogram();
        for v in [0, 1, 500, 70_000, 3_000_000] {
            record(&mut h, v);
        }
        assert_eq!(h.len(), 5);
        assert!(h.max() >= 2_990_000, "max {}", h.max());
        assert!(h.value_at_quantile(0.5) >= 499);
    }

    #[test]
    fn pending_qos2_ids() {
        let mut p = Pending::new();
        assert!(p.insert(1));
        assert!(!p.insert(1));
        assert!(p.insert(65_535));
        p.remove(1);
        assert!(p.insert(1));
    }
}
