//! MQTT 3.1.1 behaviour of `tern` driven by the `rumqttc` client (v4 API).
//!
//! Every wait is bounded by `tokio::time::timeout`. Test names carry the
//! MQTT 3.1.1 statement they check as `mqtt_v3_X_Y_Z_N` = [MQTT-X.Y.Z-N].

mod common;

use common::Tern;
use rumqttc::{
    AsyncClient, ConnAck, ConnectReturnCode, Event, MqttOptions, Packet, Publish, QoS,
    SubscribeFilter, SubscribeReasonCode,
};
use std::collections::{HashSet, VecDeque};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout, timeout_at};

const WAIT: Duration = Duration::from_secs(10);
const QUIET: Duration = Duration::from_millis(700);

struct Client {
    c: AsyncClient,
    rx: mpsc::UnboundedReceiver<Result<Packet, String>>,
    buf: VecDeque<Packet>,
    task: tokio::task::JoinHandle<()>,
}

fn opts(t: &Tern, id: &str) -> MqttOptions {
    let mut o = MqttOptions::new(id, t.mqtt.ip().to_string(), t.mqtt.port());
    o.set_keep_alive(Duration::from_secs(30));
    o
}

impl Client {
    /// Connects and waits for a successful CONNACK. The event loop never reconnects.
    async fn connect(o: MqttOptions) -> (Client, ConnAck) {
        let (c, mut el) = AsyncClient::new(o, 64);
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(p)) => {
                        if tx.send(Ok(p)).is_err() {
                            break;
                        }
                    }
                    Ok(Event::Outgoing(_)) => {}
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        break;
                    }
                }
            }
        });
        let mut cl = Client {
            c,
            rx,
            buf: VecDeque::new(),
            task,
        };
        let Packet::ConnAck(ack) = cl
            .expect("CONNACK", |p| matches!(p, Packet::ConnAck(_)))
            .await
        else {
            unreachable!()
        };
        assert_eq!(ack.code, ConnectReturnCode::Success);
        (cl, ack)
    }

    /// Next packet matching `f`; other packets are kept for later.
    async fn expect(&mut self, what: &str, f: impl Fn(&Packet) -> bool) -> Packet {
        if let Some(i) = self.buf.iter().position(&f) {
            return self.buf.remove(i).unwrap();
        }
        let deadline = Instant::now() + WAIT;
        loop {
            match timeout_at(deadline, self.rx.recv()).await {
                Err(_) => panic!("timed out waiting for {what}; buffered: {:?}", self.buf),
                Ok(None) => panic!("event loop ended while waiting for {what}"),
                Ok(Some(Err(e))) => panic!("connection error while waiting for {what}: {e}"),
                Ok(Some(Ok(p))) => {
                    if f(&p) {
                        return p;
                    }
                    self.buf.push_back(p);
                }
            }
        }
    }

    async fn next_publish(&mut self) -> Publish {
        match self
            .expect("PUBLISH", |p| matches!(p, Packet::Publish(_)))
            .await
        {
            Packet::Publish(p) => p,
            _ => unreachable!(),
        }
    }

    /// Asserts no PUBLISH arrives within `d` (and none is buffered).
    async fn no_publish(&mut self, d: Duration) {
        if let Some(p) = self.buf.iter().find(|p| matches!(p, Packet::Publish(_))) {
            panic!("unexpected PUBLISH {p:?}");
        }
        let deadline = Instant::now() + d;
        loop {
            match timeout_at(deadline, self.rx.recv()).await {
                Err(_) => return,
                Ok(None) => panic!("event loop ended"),
                Ok(Some(Err(e))) => panic!("connection error: {e}"),
                Ok(Some(Ok(Packet::Publish(p)))) => panic!("unexpected PUBLISH {p:?}"),
                Ok(Some(Ok(p))) => self.buf.push_back(p),
            }
        }
    }

    async fn subscribe(&mut self, topic: &str, qos: QoS) -> Vec<SubscribeReasonCode> {
        self.c.subscribe(topic, qos).await.unwrap();
        match self
            .expect("SUBACK", |p| matches!(p, Packet::SubAck(_)))
            .await
        {
            Packet::SubAck(a) => a.return_codes,
            _ => unreachable!(),
        }
    }

    /// Publishes and, for QoS 1/2, waits for the PUBACK/PUBCOMP.
    async fn publish(&mut self, topic: &str, qos: QoS, retain: bool, payload: impl Into<Vec<u8>>) {
        self.c
            .publish(topic, qos, retain, payload.into())
            .await
            .unwrap();
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => {
                self.expect("PUBACK", |p| matches!(p, Packet::PubAck(_)))
                    .await;
            }
            QoS::ExactlyOnce => {
                self.expect("PUBCOMP", |p| matches!(p, Packet::PubComp(_)))
                    .await;
            }
        }
    }

    /// Clean MQTT DISCONNECT, then waits for the event loop to end.
    async fn disconnect(self) {
        self.c.disconnect().await.unwrap();
        let mut task = self.task;
        if timeout(Duration::from_secs(3), &mut task).await.is_err() {
            task.abort();
            let _ = timeout(Duration::from_secs(3), task).await;
        }
    }

    /// Drops the network connection without DISCONNECT.
    async fn kill(self) {
        self.task.abort();
        let _ = timeout(Duration::from_secs(3), self.task).await;
    }
}

async fn client(t: &Tern, id: &str) -> Client {
    Client::connect(opts(t, id)).await.0
}

fn payload_str(p: &Publish) -> String {
    String::from_utf8(p.payload.to_vec()).unwrap()
}

async fn round_trip(qos: QoS) {
    let t = Tern::start(&[]);
    let mut s = client(&t, "sub").await;
    assert_eq!(
        s.subscribe("rt/+", qos).await,
        [SubscribeReasonCode::Success(qos)]
    );
    let mut p = client(&t, "pub").await;
    p.publish("rt/a", qos, false, "hello").await;
    let m = s.next_publish().await;
    assert_eq!(m.topic, "rt/a");
    assert_eq!(m.qos, qos);
    assert!(!m.retain);
    assert!(!m.dup);
    assert_eq!(payload_str(&m), "hello");
    s.no_publish(QUIET).await;
    p.disconnect().await;
    s.disconnect().await;
}

#[tokio::test]
async fn pub_sub_round_trip_qos0() {
    round_trip(QoS::AtMostOnce).await;
}

#[tokio::test]
async fn pub_sub_round_trip_qos1() {
    round_trip(QoS::AtLeastOnce).await;
}

#[tokio::test]
async fn pub_sub_round_trip_qos2() {
    round_trip(QoS::ExactlyOnce).await;
}

/// 1,000 QoS 1 messages arrive in order, none lost or duplicated [MQTT-4.6.0-2], [MQTT-4.6.0-6].
#[tokio::test]
async fn mqtt_v3_4_6_0_6_thousand_qos1_messages_in_order_no_loss_no_dup() {
    const N: usize = 1000;
    let t = Tern::start(&[]);
    let mut s = client(&t, "sub").await;
    s.subscribe("many/t", QoS::AtLeastOnce).await;
    let mut p = client(&t, "pub").await;
    let publisher = tokio::spawn(async move {
        for i in 0..N {
            p.c.publish("many/t", QoS::AtLeastOnce, false, i.to_string())
                .await
                .unwrap();
        }
        for _ in 0..N {
            p.expect("PUBACK", |x| matches!(x, Packet::PubAck(_))).await;
        }
        p
    });
    let got = timeout(Duration::from_secs(60), async {
        let mut got = Vec::with_capacity(N);
        while got.len() < N {
            let m = s.next_publish().await;
            assert_eq!(m.qos, QoS::AtLeastOnce);
            got.push(payload_str(&m).parse::<usize>().unwrap());
        }
        got
    })
    .await
    .expect("1000 messages within 60 s");
    let expected: Vec<usize> = (0..N).collect();
    assert_eq!(got, expected);
    s.no_publish(QUIET).await;
    let p = timeout(Duration::from_secs(60), publisher)
        .await
        .expect("publisher done")
        .unwrap();
    p.disconnect().await;
}

/// Delivery QoS = min(publish QoS, granted QoS) [MQTT-3.8.4-6] (3.1.1 numbering).
#[tokio::test]
async fn mqtt_v3_3_8_4_6_delivery_qos_is_min_of_publish_and_subscription() {
    let t = Tern::start(&[]);
    let mut s = client(&t, "sub").await;
    s.subscribe("dg/0", QoS::AtMostOnce).await;
    s.subscribe("dg/1", QoS::AtLeastOnce).await;
    s.subscribe("dg/2", QoS::ExactlyOnce).await;
    let mut p = client(&t, "pub").await;
    let cases = [
        ("dg/0", QoS::ExactlyOnce, QoS::AtMostOnce),
        ("dg/1", QoS::ExactlyOnce, QoS::AtLeastOnce),
        ("dg/2", QoS::AtLeastOnce, QoS::AtLeastOnce),
        ("dg/2", QoS::AtMostOnce, QoS::AtMostOnce),
        ("dg/1", QoS::AtMostOnce, QoS::AtMostOnce),
    ];
    for (topic, pub_qos, want) in cases {
        p.publish(topic, pub_qos, false, "x").await;
        let m = s.next_publish().await;
        assert_eq!(m.topic, topic);
        assert_eq!(m.qos, want, "published {pub_qos:?} on {topic}");
    }
    s.no_publish(QUIET).await;
}

/// A retained message goes to new subscribers with RETAIN=1 [MQTT-3.3.1-6], [MQTT-3.3.1-8];
/// live deliveries carry RETAIN=0 [MQTT-3.3.1-9]; an empty retained payload clears it
/// [MQTT-3.3.1-10], [MQTT-3.3.1-11].
#[tokio::test]
async fn mqtt_v3_3_3_1_6_retained_message_delivered_to_new_subscriber_and_cleared() {
    let t = Tern::start(&[]);
    let mut live = client(&t, "live").await;
    live.subscribe("ret/#", QoS::AtLeastOnce).await;
    let mut p = client(&t, "pub").await;
    p.publish("ret/a", QoS::AtLeastOnce, true, "kept").await;
    let m = live.next_publish().await;
    assert_eq!(payload_str(&m), "kept");
    assert!(!m.retain, "live delivery must have RETAIN=0");

    let mut s = client(&t, "new").await;
    s.subscribe("ret/+", QoS::AtLeastOnce).await;
    let m = s.next_publish().await;
    assert_eq!(m.topic, "ret/a");
    assert_eq!(payload_str(&m), "kept");
    assert!(m.retain, "retained delivery must have RETAIN=1");
    assert_eq!(m.qos, QoS::AtLeastOnce);
    s.no_publish(QUIET).await;

    // Replaced by a newer retained message.
    p.publish("ret/a", QoS::AtMostOnce, true, "newer").await;
    let mut s2 = client(&t, "new2").await;
    s2.subscribe("ret/a", QoS::AtLeastOnce).await;
    let m = s2.next_publish().await;
    assert_eq!(payload_str(&m), "newer");
    assert_eq!(m.qos, QoS::AtMostOnce);

    // Cleared with an empty payload.
    p.publish("ret/a", QoS::AtLeastOnce, true, "").await;
    let mut s3 = client(&t, "new3").await;
    s3.subscribe("ret/#", QoS::AtLeastOnce).await;
    s3.no_publish(QUIET).await;
}

/// After UNSUBSCRIBE no more messages are delivered [MQTT-3.10.4-1..6].
#[tokio::test]
async fn mqtt_v3_3_10_4_unsubscribe_stops_delivery() {
    let t = Tern::start(&[]);
    let mut s = client(&t, "sub").await;
    s.subscribe("un/t", QoS::AtLeastOnce).await;
    s.subscribe("un/keep", QoS::AtLeastOnce).await;
    let mut p = client(&t, "pub").await;
    p.publish("un/t", QoS::AtLeastOnce, false, "1").await;
    assert_eq!(payload_str(&s.next_publish().await), "1");
    s.c.unsubscribe("un/t").await.unwrap();
    s.expect("UNSUBACK", |p| matches!(p, Packet::UnsubAck(_)))
        .await;
    p.publish("un/t", QoS::AtLeastOnce, false, "2").await;
    p.publish("un/keep", QoS::AtLeastOnce, false, "3").await;
    let m = s.next_publish().await;
    assert_eq!(
        (m.topic.as_str(), payload_str(&m).as_str()),
        ("un/keep", "3")
    );
    s.no_publish(QUIET).await;
}

/// CleanSession 0: subscriptions survive, QoS 1 messages published while offline are
/// delivered on reconnect, CONNACK session present = 1 [MQTT-3.1.2-4], [MQTT-3.1.2-5], [MQTT-3.2.2-2].
#[tokio::test]
async fn mqtt_v3_3_1_2_4_persistent_session_queues_messages_while_offline() {
    let t = Tern::start(&[]);
    let mut o = opts(&t, "persist");
    o.set_clean_session(false);
    let (mut s, ack) = Client::connect(o.clone()).await;
    assert!(!ack.session_present);
    s.subscribe("ps/t", QoS::AtLeastOnce).await;
    s.disconnect().await;

    let mut p = client(&t, "pub").await;
    for i in 0..5 {
        p.publish("ps/t", QoS::AtLeastOnce, false, format!("m{i}"))
            .await;
    }
    p.publish("ps/t", QoS::ExactlyOnce, false, "m5").await;

    let (mut s, ack) = Client::connect(o.clone()).await;
    assert!(ack.session_present, "session present expected on resume");
    for i in 0..6 {
        let m = s.next_publish().await;
        assert_eq!(payload_str(&m), format!("m{i}"));
        assert_eq!(m.qos, QoS::AtLeastOnce);
    }
    s.no_publish(QUIET).await;
    // The subscription is still active without re-subscribing.
    p.publish("ps/t", QoS::AtLeastOnce, false, "live").await;
    assert_eq!(payload_str(&s.next_publish().await), "live");
    s.disconnect().await;

    // CleanSession 1 discards the session [MQTT-3.1.2-6], [MQTT-3.2.2-1].
    let mut o2 = o.clone();
    o2.set_clean_session(true);
    let (s, ack) = Client::connect(o2).await;
    assert!(!ack.session_present);
    s.disconnect().await;
    p.publish("ps/t", QoS::AtLeastOnce, false, "gone").await;
    let (mut s, ack) = Client::connect(o).await;
    assert!(!ack.session_present);
    s.no_publish(QUIET).await;
}

/// A session whose connection dropped without DISCONNECT is also kept.
#[tokio::test]
async fn mqtt_v3_3_1_2_4_persistent_session_survives_abrupt_disconnect() {
    let t = Tern::start(&[]);
    let mut o = opts(&t, "abrupt");
    o.set_clean_session(false);
    let (mut s, _) = Client::connect(o.clone()).await;
    s.subscribe("ab/t", QoS::AtLeastOnce).await;
    s.kill().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut p = client(&t, "pub").await;
    p.publish("ab/t", QoS::AtLeastOnce, false, "queued").await;
    let (mut s, ack) = Client::connect(o).await;
    assert!(ack.session_present);
    assert_eq!(payload_str(&s.next_publish().await), "queued");
}

/// Overlapping subscriptions: one copy at the highest QoS [MQTT-3.3.5-1] (default).
#[tokio::test]
async fn mqtt_v3_3_3_5_1_overlapping_subscriptions_one_copy_at_highest_qos() {
    let t = Tern::start(&[]);
    let mut s = client(&t, "sub").await;
    s.subscribe("ov/#", QoS::AtLeastOnce).await;
    s.subscribe("ov/+", QoS::ExactlyOnce).await;
    let mut p = client(&t, "pub").await;
    p.publish("ov/a", QoS::ExactlyOnce, false, "x").await;
    let m = s.next_publish().await;
    assert_eq!(m.qos, QoS::ExactlyOnce);
    s.no_publish(QUIET).await;
    // Subscribing both in one SUBSCRIBE gives the same result.
    let mut s2 = client(&t, "sub2").await;
    s2.c.subscribe_many([
        SubscribeFilter::new("ov2/+".into(), QoS::ExactlyOnce),
        SubscribeFilter::new("ov2/#".into(), QoS::AtMostOnce),
    ])
    .await
    .unwrap();
    s2.expect("SUBACK", |p| matches!(p, Packet::SubAck(_)))
        .await;
    p.publish("ov2/a", QoS::AtLeastOnce, false, "y").await;
    let m = s2.next_publish().await;
    assert_eq!(m.qos, QoS::AtLeastOnce);
    s2.no_publish(QUIET).await;
}

/// `--overlap-deliver-each`: one copy per matching subscription, each at its own QoS.
#[tokio::test]
async fn overlapping_subscriptions_deliver_each_flag_one_copy_per_subscription() {
    let t = Tern::start(&["--overlap-deliver-each"]);
    let mut s = client(&t, "sub").await;
    s.subscribe("ov/#", QoS::AtLeastOnce).await;
    s.subscribe("ov/+", QoS::ExactlyOnce).await;
    let mut p = client(&t, "pub").await;
    p.publish("ov/a", QoS::ExactlyOnce, false, "x").await;
    let a = s.next_publish().await;
    let b = s.next_publish().await;
    let mut qos = [a.qos as u8, b.qos as u8];
    qos.sort();
    assert_eq!(qos, [1, 2]);
    s.no_publish(QUIET).await;
}

/// `$share/group/filter` distributes round-robin among the group's members.
#[tokio::test]
async fn shared_subscription_round_robin() {
    let t = Tern::start(&[]);
    let mut a = client(&t, "a").await;
    let mut b = client(&t, "b").await;
    let mut other = client(&t, "other").await;
    a.subscribe("$share/g/sh/t", QoS::AtLeastOnce).await;
    b.subscribe("$share/g/sh/t", QoS::AtLeastOnce).await;
    other.subscribe("sh/t", QoS::AtLeastOnce).await;
    let mut p = client(&t, "pub").await;
    for i in 0..10 {
        p.publish("sh/t", QoS::AtLeastOnce, false, i.to_string())
            .await;
    }
    let mut got_a = Vec::new();
    let mut got_b = Vec::new();
    let deadline = Instant::now() + WAIT;
    while got_a.len() + got_b.len() < 10 {
        tokio::select! {
            m = a.next_publish() => got_a.push(payload_str(&m)),
            m = b.next_publish() => got_b.push(payload_str(&m)),
            _ = tokio::time::sleep_until(deadline) => panic!("shared messages missing: a={got_a:?} b={got_b:?}"),
        }
    }
    a.no_publish(QUIET).await;
    b.no_publish(Duration::from_millis(100)).await;
    let all: HashSet<String> = got_a.iter().chain(got_b.iter()).cloned().collect();
    assert_eq!(all.len(), 10, "duplicates: a={got_a:?} b={got_b:?}");
    assert_eq!(
        (got_a.len(), got_b.len()),
        (5, 5),
        "round-robin: a={got_a:?} b={got_b:?}"
    );
    // A non-shared subscriber still gets every message.
    for i in 0..10 {
        assert_eq!(payload_str(&other.next_publish().await), i.to_string());
    }
}

/// Messages from one publisher on one topic keep their order for each QoS
/// [MQTT-4.6.0-6] ("for the same Topic and QoS"); mixed QoS may interleave.
#[tokio::test]
async fn mqtt_v3_4_6_0_6_order_preserved_per_qos_with_mixed_traffic() {
    let t = Tern::start(&[]);
    let mut s = client(&t, "sub").await;
    s.subscribe("ord/t", QoS::ExactlyOnce).await;
    let p = client(&t, "pub").await;
    let qos = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce];
    for i in 0..60usize {
        p.c.publish("ord/t", qos[i % 3], false, i.to_string())
            .await
            .unwrap();
    }
    let mut per_qos: [Vec<usize>; 3] = Default::default();
    for _ in 0..60usize {
        let m = s.next_publish().await;
        let i: usize = payload_str(&m).parse().unwrap();
        assert_eq!(m.qos, qos[i % 3]);
        per_qos[i % 3].push(i);
    }
    for (q, got) in per_qos.iter().enumerate() {
        let want: Vec<usize> = (0..60).filter(|i| i % 3 == q).collect();
        assert_eq!(got, &want, "order for QoS {q}");
    }
    s.no_publish(QUIET).await;
}
