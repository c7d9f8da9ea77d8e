//! The end-of-run report: a human table and, with `--json`, one JSON line.

use hdrhistogram::Histogram;
use serde::Serialize;

/// Every figure of a run. Message figures are absent for `conns`, and
/// connection-holding figures for the message scenarios.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub scenario: &'static str,
    pub mqtt_version: &'static str,
    pub qos: u8,
    pub size: usize,
    pub publishers: usize,
    pub subscribers: usize,
    pub duration_secs: f64,
    pub warmup_secs: f64,
    /// Target total rate, msgs/s; 0 = closed loop.
    pub rate: f64,
    /// Open-loop batching interval, ms.
    pub tick_ms: u64,
    pub inflight: u16,
    pub threads: usize,
    /// MQTT clients' transport: `tcp` or `ws` (empty: tcp, older reports).
    pub transport: &'static str,
    /// Protocol of the subscribers: `mqtt` or `realtime`.
    pub sub_protocol: &'static str,
    /// Protocol of the publishers: `mqtt` or `realtime`.
    pub pub_protocol: &'static str,
    /// `--persistent`: subscribers had persistent sessions.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub persistent: bool,
    /// `--offline`: subscribers were disconnected while publishing and
    /// drained their queued messages afterwards.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub offline: bool,

    pub connections: usize,
    pub connect_secs: f64,
    pub connect_per_sec: f64,
    pub connect_p50_us: u64,
    pub connect_p99_us: u64,
    pub connect_max_us: u64,

    /// Messages stamped within the measured window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sent: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sent_per_sec: Option<f64>,
    /// QoS 1/2 publishes accepted by the broker over the whole run
    /// (`--persistent` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acked: Option<u64>,
    /// Acceptances that arrived within the measured window, per second
    /// (`--persistent` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acked_per_sec: Option<f64>,
    /// Arrivals of measured messages, summed over subscribers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered_per_sec: Option<f64>,
    /// Deliveries owed over the whole run (warm-up included).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<u64>,
    /// Distinct deliveries over the whole run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub received: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lost: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dup: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub out_of_order: Option<u64>,
    /// QoS 1/2 publishes never acknowledged (not counted as owed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unacked: Option<u64>,
    /// QoS 1/2 publishes refused by the broker (not counted as owed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<u64>,
    /// Arrivals that were not this run's messages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub foreign: Option<u64>,
    /// Arrivals at another QoS than the one used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wrong_qos: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p50_us: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99_us: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p999_us: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_us: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean_us: Option<f64>,

    /// `--persistent` (online): arrivals after the 2 s drain, not counted
    /// in `delivered` nor in the latency.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub late: Option<u64>,
    /// `--persistent` (online): last arrival, seconds after publishing
    /// stopped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag_secs: Option<f64>,
    /// `--offline`: the subscribers' reconnection (all of them), seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reconnect_secs: Option<f64>,
    /// `--offline`: sessions the broker still had (Session Present) on
    /// reconnection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sessions_resumed: Option<u64>,
    /// `--offline`: from the start of the reconnection to the last arrival.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drain_secs: Option<f64>,
    /// `--offline`: distinct messages received per second of `drain_secs`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drain_per_sec: Option<f64>,
    /// `--offline`: the longest the drain was allowed to take.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drain_timeout_secs: Option<f64>,
    /// `--offline`: every owed message arrived before the drain ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drained: Option<bool>,
    /// `--offline`: this tool's CPU while draining, % of one core.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drain_tool_cpu_pct: Option<f64>,
    /// `--offline`: the broker's CPU while draining, % of one core.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drain_broker_cpu_pct: Option<f64>,

    /// Connections still open at the end of the hold (`conns`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held: Option<u64>,
    /// Connections the broker closed during the hold (`conns`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dropped: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_rss_kib_before: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_rss_kib_after: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_rss_bytes_per_conn: Option<u64>,

    /// CPU of this tool over the measured window, % of one core.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_cpu_pct: Option<f64>,
    /// CPU of `--broker-pid` over the measured window, % of one core.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_cpu_pct: Option<f64>,
}

/// Tool CPU (% of one core) from which the table warns that the tool
/// itself may be the bottleneck.
const TOOL_BUSY_PCT: f64 = 90.0;

/// Percentiles of a latency histogram, µs: (p50, p99, p99.9, max, mean).
pub fn percentiles(h: &Histogram<u64>) -> (u64, u64, u64, u64, f64) {
    if h.is_empty() {
        return (0, 0, 0, 0, 0.0);
    }
    (
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max(),
        h.mean(),
    )
}

/// `1234567` → `1,234,567`.
fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn rate(r: f64) -> String {
    group(r.round() as u64)
}

impl Report {
    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut o = String::new();
        let mut line = |k: &str, v: String| {
            o.push_str(&format!("{k:<14}{v}\n"));
        };
        if self.sent.is_some() {
            line(
                "scenario",
                format!(
                    "{}  mqtt {}  qos {}  size {} B  threads {}{}",
                    self.scenario,
                    self.mqtt_version,
                    self.qos,
                    self.size,
                    self.threads,
                    self.protocols()
                ),
            );
            line(
                "clients",
                format!(
                    "{} publisher(s), {} subscriber(s)",
                    self.publishers, self.subscribers
                ),
            );
            if self.persistent {
                line(
                    "sessions",
                    if self.offline {
                        "persistent subscribers, offline while publishing, drained after".into()
                    } else {
                        "persistent subscribers (clean start 0)".into()
                    },
                );
            }
            line(
                "load",
                format!(
                    "{}  inflight {}  warm-up {} s  measured {} s",
                    if self.rate > 0.0 {
                        format!(
                            "open loop {} msg/s (tick {} ms)",
                            rate(self.rate),
                            self.tick_ms
                        )
                    } else {
                        "closed loop".to_owned()
                    },
                    self.inflight,
                    self.warmup_secs,
                    self.duration_secs
                ),
            );
        } else {
            line(
                "scenario",
                format!(
                    "{}  mqtt {}  threads {}{}",
                    self.scenario,
                    self.mqtt_version,
                    self.threads,
                    self.protocols()
                ),
            );
        }
        line(
            "connect",
            format!(
                "{} in {:.3} s = {}/s  (p50 {} µs, p99 {} µs, max {} µs)",
                group(self.connections as u64),
                self.connect_secs,
                rate(self.connect_per_sec),
                self.connect_p50_us,
                self.connect_p99_us,
                self.connect_max_us
            ),
        );
        if let (Some(sent), Some(sps)) = (self.sent, self.sent_per_sec) {
            line(
                "sent",
                format!("{:>14} msg/s  ({} msgs)", rate(sps), group(sent)),
            );
        }
        if let Some(aps) = self.acked_per_sec {
            line(
                "acked",
                format!(
                    "{:>14} msg/s  ({} msgs over the whole run)",
                    rate(aps),
                    group(self.acked.unwrap_or(0))
                ),
            );
        }
        match (self.delivered, self.delivered_per_sec) {
            (Some(d), Some(dps)) => line(
                "delivered",
                format!("{:>14} msg/s  ({} msgs)", rate(dps), group(d)),
            ),
            (Some(d), None) => line(
                "delivered",
                format!(
                    "{:>14} msgs of the measured window, after reconnecting",
                    group(d)
                ),
            ),
            _ => {}
        }
        if let Some(late) = self.late {
            line(
                "late",
                format!(
                    "{:>14} msgs after the 2 s drain (last arrival {:.3} s after publishing \
                     stopped); not in delivered nor latency",
                    group(late),
                    self.lag_secs.unwrap_or(0.0)
                ),
            );
        }
        if self.offline {
            let how = match (self.drain_per_sec, self.drain_secs) {
                (Some(dps), Some(secs)) => format!(
                    "{:>14} msg/s  ({} msgs in {secs:.3} s, reconnect to last arrival)",
                    rate(dps),
                    group(self.received.unwrap_or(0))
                ),
                _ => format!("{:>14}", "nothing arrived"),
            };
            line("drain", how);
            line(
                "reconnect",
                format!(
                    "{} of {} sessions resumed in {:.3} s{}",
                    self.sessions_resumed.unwrap_or(0),
                    self.subscribers,
                    self.reconnect_secs.unwrap_or(0.0),
                    if self.drained == Some(false) {
                        format!(
                            "; not fully drained (timeout {} s or idle)",
                            self.drain_timeout_secs.unwrap_or(0.0)
                        )
                    } else {
                        String::new()
                    }
                ),
            );
        }
        if let (Some(e), Some(r), Some(l)) = (self.expected, self.received, self.lost) {
            let pct = if e > 0 {
                l as f64 * 100.0 / e as f64
            } else {
                0.0
            };
            line(
                "whole run",
                format!(
                    "expected {}  received {}  lost {} ({pct:.3}%)",
                    group(e),
                    group(r),
                    group(l)
                ),
            );
        }
        if let (Some(d), Some(oo)) = (self.dup, self.out_of_order) {
            let mut v = format!("dup {}  out of order {}", group(d), group(oo));
            if let Some(u) = self.unacked.filter(|&u| u > 0) {
                v.push_str(&format!("  unacked {}", group(u)));
            }
            if let Some(r) = self.refused.filter(|&r| r > 0) {
                v.push_str(&format!("  refused {}", group(r)));
            }
            if let Some(f) = self.foreign.filter(|&f| f > 0) {
                v.push_str(&format!("  foreign {}", group(f)));
            }
            if let Some(w) = self.wrong_qos.filter(|&w| w > 0) {
                v.push_str(&format!("  wrong qos {}", group(w)));
            }
            line("anomalies", v);
        }
        if let (Some(p50), Some(p99), Some(p999), Some(max), Some(mean)) = (
            self.p50_us,
            self.p99_us,
            self.p999_us,
            self.max_us,
            self.mean_us,
        ) {
            line(
                "latency µs",
                format!("p50 {p50}  p99 {p99}  p99.9 {p999}  max {max}  mean {mean:.0}"),
            );
        } else if self.offline {
            line(
                "latency µs",
                "n/a (offline: delivered after the subscribers reconnected)".into(),
            );
        }
        if let Some(h) = self.held {
            line(
                "held",
                format!(
                    "{} for {} s, {} dropped",
                    group(h),
                    self.duration_secs,
                    self.dropped.unwrap_or(0)
                ),
            );
        }
        if let (Some(b), Some(a)) = (self.broker_rss_kib_before, self.broker_rss_kib_after) {
            line(
                "broker rss",
                format!(
                    "{} KiB before, {} KiB with the connections{}",
                    group(b),
                    group(a),
                    self.broker_rss_bytes_per_conn
                        .map(|p| format!(" = {} B/conn", group(p)))
                        .unwrap_or_default()
                ),
            );
        }
        let cpu = match (self.tool_cpu_pct, self.broker_cpu_pct) {
            (Some(t), Some(b)) => Some(format!("tool {t:.0}%  broker {b:.0}% (of one core)")),
            (Some(t), None) => Some(format!("tool {t:.0}% of one core")),
            _ => None,
        };
        if let Some(c) = cpu {
            line("cpu", c);
        }
        let drain_cpu = match (self.drain_tool_cpu_pct, self.drain_broker_cpu_pct) {
            (Some(t), Some(b)) => Some(format!("tool {t:.0}%  broker {b:.0}% (of one core)")),
            (Some(t), None) => Some(format!("tool {t:.0}% of one core")),
            _ => None,
        };
        if let Some(c) = drain_cpu {
            line("cpu (drain)", c);
        }
        if self.tool_cpu_pct.is_some_and(|t| t >= TOOL_BUSY_PCT) {
            line(
                "warning",
                "the tool used nearly a whole core: it may be what limits these figures".into(),
            );
        }
        o
    }

    /// The JSON line.
    /// `  transport ws  subs realtime  pubs mqtt`, or nothing for the
    /// default (MQTT over TCP on both sides).
    fn protocols(&self) -> String {
        let mut o = String::new();
        if self.transport == "ws" {
            o.push_str("  transport ws");
        }
        if self.sub_protocol == "realtime" || self.pub_protocol == "realtime" {
            o.push_str(&format!(
                "  subs {}  pubs {}",
                self.sub_protocol, self.pub_protocol
            ));
        }
        o
    }

    pub fn json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouping() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(1_234_567), "1,234,567");
    }

    #[test]
    fn json_has_the_headline_keys() {
        let r = Report {
            scenario: "pairs",
            sent: Some(10),
            sent_per_sec: Some(10.0),
            delivered_per_sec: Some(10.0),
            lost: Some(0),
            dup: Some(0),
            p50_us: Some(5),
            ..Default::default()
        };
        let v: serde_json::Value = serde_json::from_str(&r.json()).expect("json");
        assert_eq!(v["scenario"], "pairs");
        assert_eq!(v["sent_per_sec"], 10.0);
        assert_eq!(v["lost"], 0);
        assert_eq!(v["p50_us"], 5);
        assert!(v.get("held").is_none());
        assert!(!r.table().is_empty());
    }
}
