//! Micro-benchmarks of the hub: the subscription index under a large,
//! wildcard-heavy set of filters, and the whole publish path (match,
//! merge, enqueue) for fan-in and fan-out shapes.

use std::hint::black_box;
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tern_hub::index::{Subscriber, SubscriptionIndex};
use tern_hub::{Hub, HubConfig, Message, NextOutgoing, SubOptions};

/// 100k subscriptions: 60 % exact, 25 % with `+`, 15 % with `#`, spread
/// over 1000 devices × 100 metrics.
fn big_index(hub: &Hub) -> SubscriptionIndex {
    let mut idx = SubscriptionIndex::default();
    for i in 0..100_000u32 {
        let s = hub
            .connect(&format!("c{i}"), true, 0, Instant::now())
            .unwrap()
            .session;
        let dev = i % 1000;
        let metric = (i / 1000) % 100;
        let filter = match i % 20 {
            0..=11 => format!("site/{}/dev/{dev}/m{metric}", dev % 10),
            12..=16 => format!("site/+/dev/{dev}/m{metric}"),
            _ => format!("site/{}/dev/{dev}/#", dev % 10),
        };
        idx.insert(
            &filter,
            None,
            Subscriber {
                session: s,
                opts: SubOptions::default(),
            },
        );
    }
    idx
}

fn index_lookup(c: &mut Criterion) {
    let hub = Hub::new(HubConfig {
        sessions_max: 200_000,
        ..HubConfig::default()
    });
    let idx = big_index(&hub);
    let names: Vec<String> = (0..1000u32)
        .map(|i| {
            format!(
                "site/{}/dev/{}/m{}",
                (i * 7 % 1000) % 10,
                i * 7 % 1000,
                i % 100
            )
        })
        .collect();
    let mut g = c.benchmark_group("index");
    g.throughput(Throughput::Elements(names.len() as u64));
    g.bench_function("lookup_100k_subs_wildcard_heavy", |b| {
        let mut out = Vec::with_capacity(64);
        b.iter(|| {
            for n in &names {
                out.clear();
                idx.lookup(black_box(n), &mut out);
                black_box(out.len());
            }
        })
    });
    g.finish();
}

fn drain(s: &tern_hub::SessionHandle) -> usize {
    let mut st = s.state.lock();
    let mut n = 0;
    while let NextOutgoing::Send(_) = st.next_outgoing(1000, Instant::now()) {
        n += 1;
    }
    n
}

fn publish_path(c: &mut Criterion) {
    let mut g = c.benchmark_group("publish");
    for subscribers in [1usize, 100] {
        let hub = Hub::new(HubConfig {
            session_queue_max: 1_000_000,
            ..HubConfig::default()
        });
        let sessions: Vec<_> = (0..subscribers)
            .map(|i| {
                let a = hub
                    .connect(&format!("s{i}"), true, 0, Instant::now())
                    .unwrap();
                hub.subscribe(&a.session, "bench/topic", SubOptions::default())
                    .unwrap();
                a
            })
            .collect();
        let payload = bytes::Bytes::from(vec![0u8; 64]);
        let topic: std::sync::Arc<str> = "bench/topic".into();
        g.throughput(Throughput::Elements(subscribers as u64));
        g.bench_with_input(
            BenchmarkId::new("qos0_deliveries", subscribers),
            &subscribers,
            |b, _| {
                b.iter(|| {
                    let m = Message::new(topic.clone(), payload.clone(), 0);
                    black_box(hub.publish(m).unwrap());
                    for a in &sessions {
                        drain(&a.session);
                    }
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, index_lookup, publish_path);
criterion_main!(benches);
