//! A subscriber that never reads must not make the broker grow without
//! bound, nor slow or starve the other subscribers: its queue is capped
//! (`--session-queue-max`), the overflow is dropped and counted.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tern_mqtt_codec::{
    Connect, ConnectProperties, Limits, Packet, ProtocolVersion, Publish, QoS, Subscribe,
    SubscribeFilter, SubscriptionOptions, decode, encode,
};

const V: ProtocolVersion = ProtocolVersion::V3_1_1;

fn send(s: &mut TcpStream, p: &Packet) {
    let mut b = BytesMut::new();
    encode(p, V, &mut b).expect("encode");
    s.write_all(&b).expect("write");
}

/// Reads until `want` packets of interest are decoded or the deadline passes.
struct Reader {
    s: TcpStream,
    buf: BytesMut,
}

impl Reader {
    fn next(&mut self, deadline: Instant) -> Option<Packet> {
        loop {
            let limits = Limits {
                packet_bytes_max: 1 << 20,
            };
            if let Some(p) = decode(&mut self.buf, V, &limits).expect("valid packet from broker") {
                return Some(p);
            }
            if Instant::now() >= deadline {
                return None;
            }
            let mut chunk = [0u8; 65536];
            match self.s.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(e) => panic!("read: {e}"),
            }
        }
    }
}

fn connect(addr: std::net::SocketAddr, id: &str) -> Reader {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(200))).ok();
    send(
        &mut s,
        &Packet::Connect(Box::new(Connect {
            protocol: V,
            clean_start: true,
            keep_alive: 0,
            client_id: id.into(),
            will: None,
            username: None,
            password: None,
            properties: ConnectProperties::default(),
        })),
    );
    let mut r = Reader {
        s,
        buf: BytesMut::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    assert!(matches!(r.next(deadline), Some(Packet::ConnAck(a)) if a.reason_code == 0));
    r
}

fn subscribe(r: &mut Reader, filter: &str, qos: QoS) {
    send(
        &mut r.s,
        &Packet::Subscribe(Subscribe {
            packet_id: 1,
            filters: vec![SubscribeFilter {
                filter: filter.into(),
                options: SubscriptionOptions {
                    qos,
                    ..SubscriptionOptions::default()
                },
            }],
            ..Subscribe::default()
        }),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    assert!(matches!(r.next(deadline), Some(Packet::SubAck(_))));
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[test]
fn stalled_subscriber_is_bounded_and_does_not_starve_others() {
    let t = common::Tern::start(&["--session-queue-max", "2000", "--sys-interval-secs", "0"]);
    // Subscribes at QoS 1, then never reads again.
    let mut stalled = connect(t.mqtt, "stalled");
    subscribe(&mut stalled, "load/#", QoS::AtLeastOnce);
    let mut good = connect(t.mqtt, "good");
    subscribe(&mut good, "load/#", QoS::AtMostOnce);
    let mut publisher = connect(t.mqtt, "publisher");

    const BATCH: u32 = 1000;
    const BATCHES: u32 = 100;
    let payload = bytes::Bytes::from(vec![0x5a; 1024]);
    let rss_before = rss_kib(t.pid());
    let mut received = 0u32;
    let mut next_seq = 0u32;
    for batch in 0..BATCHES {
        let mut out = BytesMut::new();
        for i in 0..BATCH {
            let seq = batch * BATCH + i;
            let mut p = payload.to_vec();
            p[..4].copy_from_slice(&seq.to_be_bytes());
            encode(
                &Packet::Publish(Publish {
                    qos: QoS::AtLeastOnce,
                    topic: format!("load/{}", seq % 10),
                    packet_id: Some((i % 60_000 + 1) as u16),
                    payload: p.into(),
                    ..Publish::default()
                }),
                V,
                &mut out,
            )
            .expect("encode");
        }
        publisher.s.write_all(&out).expect("publish batch");
        // Every PUBACK, so the publisher is never the bottleneck.
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut acks = 0;
        while acks < BATCH {
            match publisher.next(deadline) {
                Some(Packet::PubAck(_)) => acks += 1,
                Some(other) => panic!("publisher got {}", other.name()),
                None => panic!("publisher: only {acks} of {BATCH} PUBACKs in batch {batch}"),
            }
        }
        // The reading subscriber gets the whole batch, in order.
        while received < (batch + 1) * BATCH {
            match good.next(deadline) {
                Some(Packet::Publish(p)) => {
                    let seq = u32::from_be_bytes([
                        p.payload[0],
                        p.payload[1],
                        p.payload[2],
                        p.payload[3],
                    ]);
                    assert_eq!(
                        seq, next_seq,
                        "the reading subscriber lost or reordered a message"
                    );
                    next_seq += 1;
                    received += 1;
                }
                Some(other) => panic!("subscriber got {}", other.name()),
                None => panic!(
                    "reading subscriber stalled at {received} of {} (batch {batch})",
                    (batch + 1) * BATCH
                ),
            }
        }
    }
    assert_eq!(received, BATCH * BATCHES);
    // 100 MiB went through; the stalled session may hold at most 2000
    // messages (~2 MiB) plus its output buffer and socket buffers.
    let rss_after = rss_kib(t.pid());
    let grown = rss_after.saturating_sub(rss_before);
    assert!(
        grown < 48 * 1024,
        "broker RSS grew by {grown} KiB ({rss_before} → {rss_after}) with a stalled subscriber"
    );
    drop(stalled);
}
