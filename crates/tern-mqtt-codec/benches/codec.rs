//! Codec throughput: decode and encode of PUBLISH packets (the hot path),
//! reported in bytes per second.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tern_mqtt_codec::{Limits, Packet, ProtocolVersion, Publish, QoS, decode, encode};

fn publish(size: usize, qos: QoS) -> Packet {
    Packet::Publish(Publish {
        qos,
        topic: "site/3/dev/42/temperature".into(),
        packet_id: (qos != QoS::AtMostOnce).then_some(7),
        payload: Bytes::from(vec![0xa5; size]),
        ..Publish::default()
    })
}

fn codec(c: &mut Criterion) {
    let mut g = c.benchmark_group("codec");
    for (v, vname) in [
        (ProtocolVersion::V3_1_1, "v311"),
        (ProtocolVersion::V5, "v5"),
    ] {
        for size in [64usize, 1024] {
            let p = publish(size, QoS::AtLeastOnce);
            let mut one = BytesMut::new();
            encode(&p, v, &mut one).unwrap();
            // 1000 packets back to back, as a read buffer would hold them.
            let mut stream = BytesMut::new();
            for _ in 0..1000 {
                stream.extend_from_slice(&one);
            }
            let limits = Limits::default();
            g.throughput(Throughput::Bytes(stream.len() as u64));
            g.bench_function(format!("decode_publish_{vname}_{size}B_x1000"), |b| {
                b.iter(|| {
                    let mut buf = stream.clone();
                    let mut n = 0;
                    while let Some(p) = decode(&mut buf, v, &limits).unwrap() {
                        black_box(&p);
                        n += 1;
                    }
                    assert_eq!(n, 1000);
                })
            });
            g.bench_function(format!("encode_publish_{vname}_{size}B_x1000"), |b| {
                let mut out = BytesMut::with_capacity(stream.len());
                b.iter(|| {
                    out.clear();
                    for _ in 0..1000 {
                        encode(black_box(&p), v, &mut out).unwrap();
                    }
                    black_box(out.len());
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
