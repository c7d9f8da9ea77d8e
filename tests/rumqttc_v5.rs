//! MQTT 5.0 behaviour of `tern` driven by the `rumqttc` client (v5 API).
//!
//! Every wait is bounded by `tokio::time::timeout`. Test names carry the
//! MQTT 5.0 statement they check as `mqtt_X_Y_Z_N` = [MQTT-X.Y.Z-N].

mod common;

use common::Tern;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{
    ConnAck, ConnectReturnCode, DisconnectReasonCode, Filter, Packet, Publish, SubscribeProperties,
    SubscribeReasonCode,
};
use rumqttc::v5::{AsyncClient, ConnectionError, Event, MqttOptions, StateError};
use std::collections::{HashSet, VecDeque};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout, timeout_at};

const WAIT: Duration = Duration::from_secs(10);
const QUIET: Duration = Duration::from_millis(700);

struct Client {
    c: AsyncClient,
    rx: mpsc::UnboundedReceiver<Result<Packet, ConnectionError>>,
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
                        let _ = tx.send(Err(e));
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

    /// Waits for the event loop to report a connection error (skipping packets).
    async fn expect_error(&mut self) -> ConnectionError {
        let deadline = Instant::now() + WAIT;
        loop {
            match timeout_at(deadline, self.rx.recv()).await {
                Err(_) => panic!(
                    "timed out waiting for the connection to end; buffered: {:?}",
                    self.buf
                ),
                Ok(None) => panic!("event loop ended without an error"),
                Ok(Some(Err(e))) => return e,
                Ok(Some(Ok(p))) => self.buf.push_back(p),
            }
        }
    }

    async fn suback(&mut self) -> Vec<SubscribeReasonCode> {
        match self
            .expect("SUBACK", |p| matches!(p, Packet::SubAck(_)))
            .await
        {
            Packet::SubAck(a) => a.return_codes,
            _ => unreachable!(),
        }
    }

    async fn subscribe(&mut self, topic: &str, qos: QoS) -> Vec<SubscribeReasonCode> {
        self.c.subscribe(topic, qos).await.unwrap();
        self.suback().await
    }

    async fn subscribe_id(&mut self, topic: &str, qos: QoS, id: usize) -> Vec<SubscribeReasonCode> {
        let props = SubscribeProperties {
            id: Some(id),
            user_properties: vec![],
        };
        self.c
            .subscribe_with_properties(topic, qos, props)
            .await
            .unwrap();
        self.suback().await
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

fn topic_str(p: &Publish) -> String {
    String::from_utf8(p.topic.to_vec()).unwrap()
}

fn sub_ids(p: &Publish) -> Vec<usize> {
    let mut ids = p
        .properties
        .as_ref()
        .map(|pr| pr.subscription_identifiers.clone())
        .unwrap_or_default();
    ids.sort();
    ids
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
    assert_eq!(topic_str(&m), "rt/a");
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

/// 1,000 QoS 1 messages arrive in order, none lost or duplicated [MQTT-4.6.0-6].
#[tokio::test]
async fn mqtt_4_6_0_6_thousand_qos1_messages_in_order_no_loss_no_dup() {
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

/// Delivery QoS = min(publish QoS, subscription maximum QoS) [MQTT-3.8.4-8].
#[tokio::test]
async fn mqtt_3_8_4_8_delivery_qos_is_min_of_publish_and_subscription() {
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
    ];
    for (topic, pub_qos, want) in cases {
        p.publish(topic, pub_qos, false, "x").await;
        let m = s.next_publish().await;
        assert_eq!(topic_str(&m), topic);
        assert_eq!(m.qos, want, "published {pub_qos:?} on {topic}");
    }
    s.no_publish(QUIET).await;
}

/// Retained messages: sent on subscribe with RETAIN=1 [MQTT-3.3.1-9], live
/// deliveries RETAIN=0 unless Retain As Published [MQTT-3.3.1-12], [MQTT-3.3.1-13];
/// empty payload clears [MQTT-3.3.1-6], [MQTT-3.3.1-7].
#[tokio::test]
async fn mqtt_3_3_1_9_retained_message_delivered_to_new_subscriber_and_cleared() {
    let t = Tern::start(&[]);
    let mut live = client(&t, "live").await;
    live.subscribe("ret/#", QoS::AtLeastOnce).await;
    let mut rap = client(&t, "rap").await;
    let mut f = Filter::new("ret/#", QoS::AtLeastOnce);
    f.preserve_retain = true;
    rap.c.subscribe_many([f]).await.unwrap();
    rap.suback().await;

    let mut p = client(&t, "pub").await;
    p.publish("ret/a", QoS::AtLeastOnce, true, "kept").await;
    let m = live.next_publish().await;
    assert_eq!(payload_str(&m), "kept");
    assert!(
        !m.retain,
        "live delivery without Retain As Published must have RETAIN=0"
    );
    let m = rap.next_publish().await;
    assert!(m.retain, "Retain As Published keeps RETAIN=1");

    let mut s = client(&t, "new").await;
    s.subscribe("ret/+", QoS::AtLeastOnce).await;
    let m = s.next_publish().await;
    assert_eq!(topic_str(&m), "ret/a");
    assert_eq!(payload_str(&m), "kept");
    assert!(m.retain);
    s.no_publish(QUIET).await;

    p.publish("ret/a", QoS::AtLeastOnce, true, "").await;
    let mut s2 = client(&t, "new2").await;
    s2.subscribe("ret/#", QoS::AtLeastOnce).await;
    s2.no_publish(QUIET).await;
}

/// Retain Handling 2: retained messages are not sent on subscribe [MQTT-3.3.1-11].
#[tokio::test]
async fn mqtt_3_3_1_11_retain_handling_never() {
    let t = Tern::start(&[]);
    let mut p = client(&t, "pub").await;
    p.publish("rh/a", QoS::AtLeastOnce, true, "kept").await;
    let mut s = client(&t, "sub").await;
    let mut f = Filter::new("rh/#", QoS::AtLeastOnce);
    f.retain_forward_rule = rumqttc::v5::mqttbytes::v5::RetainForwardRule::Never;
    s.c.subscribe_many([f]).await.unwrap();
    s.suback().await;
    s.no_publish(QUIET).await;
}

/// No Local: own messages are not delivered back [MQTT-3.8.3-3].
#[tokio::test]
async fn mqtt_3_8_3_3_no_local_subscription() {
    let t = Tern::start(&[]);
    let mut c = client(&t, "self").await;
    let mut f = Filter::new("nl/t", QoS::AtLeastOnce);
    f.nolocal = true;
    c.c.subscribe_many([f]).await.unwrap();
    c.suback().await;
    c.publish("nl/t", QoS::AtLeastOnce, false, "mine").await;
    c.no_publish(QUIET).await;
    let mut other = client(&t, "other").await;
    other
        .publish("nl/t", QoS::AtLeastOnce, false, "theirs")
        .await;
    assert_eq!(payload_str(&c.next_publish().await), "theirs");
}

/// After UNSUBSCRIBE no more messages are delivered [MQTT-3.10.4-1].
#[tokio::test]
async fn mqtt_3_10_4_1_unsubscribe_stops_delivery() {
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
        (topic_str(&m).as_str(), payload_str(&m).as_str()),
        ("un/keep", "3")
    );
    s.no_publish(QUIET).await;
}

/// Clean Start 0 + Session Expiry Interval: messages queued while offline are
/// delivered on reconnect with Session Present 1 [MQTT-3.1.2-5], [MQTT-3.2.2-2].
#[tokio::test]
async fn mqtt_3_1_2_5_persistent_session_with_expiry_queues_messages() {
    let t = Tern::start(&[]);
    let mut o = opts(&t, "persist");
    o.set_clean_start(false);
    o.set_session_expiry_interval(Some(300));
    let (mut s, ack) = Client::connect(o.clone()).await;
    assert!(!ack.session_present);
    s.subscribe("ps/t", QoS::AtLeastOnce).await;
    s.disconnect().await;

    let mut p = client(&t, "pub").await;
    for i in 0..5 {
        p.publish("ps/t", QoS::AtLeastOnce, false, format!("m{i}"))
            .await;
    }
    let (mut s, ack) = Client::connect(o.clone()).await;
    assert!(ack.session_present, "session present expected on resume");
    for i in 0..5 {
        let m = s.next_publish().await;
        assert_eq!(payload_str(&m), format!("m{i}"));
    }
    s.no_publish(QUIET).await;
    p.publish("ps/t", QoS::AtLeastOnce, false, "live").await;
    assert_eq!(payload_str(&s.next_publish().await), "live");
    s.disconnect().await;

    // Clean Start 1 discards it [MQTT-3.1.2-4].
    let mut o2 = o.clone();
    o2.set_clean_start(true);
    let (s, ack) = Client::connect(o2).await;
    assert!(!ack.session_present);
    s.disconnect().await;
}

/// Session Expiry Interval absent (0): the session ends with the connection
/// (v5 §3.1.2.11.2), so Clean Start 0 finds no session.
#[tokio::test]
async fn mqtt_3_1_2_11_session_without_expiry_ends_at_disconnect() {
    let t = Tern::start(&[]);
    let mut o = opts(&t, "noexp");
    o.set_clean_start(false);
    let (mut s, _) = Client::connect(o.clone()).await;
    s.subscribe("ne/t", QoS::AtLeastOnce).await;
    s.disconnect().await;
    let mut p = client(&t, "pub").await;
    p.publish("ne/t", QoS::AtLeastOnce, false, "lost").await;
    let (mut s, ack) = Client::connect(o).await;
    assert!(!ack.session_present);
    s.no_publish(QUIET).await;
}

/// A short session expiry really expires.
#[tokio::test]
async fn mqtt_3_1_2_11_session_expires_after_interval() {
    let t = Tern::start(&[]);
    let mut o = opts(&t, "shortexp");
    o.set_clean_start(false);
    o.set_session_expiry_interval(Some(1));
    let (mut s, _) = Client::connect(o.clone()).await;
    s.subscribe("se/t", QoS::AtLeastOnce).await;
    s.disconnect().await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (_s, ack) = Client::connect(o).await;
    assert!(
        !ack.session_present,
        "session should have expired after 1 s"
    );
}

/// Unacknowledged QoS 1 is redelivered with DUP on resume [MQTT-4.4.0-1].
#[tokio::test]
async fn mqtt_4_4_0_1_unacked_qos1_redelivered_on_resume() {
    let t = Tern::start(&[]);
    let mut o = opts(&t, "manual");
    o.set_clean_start(false);
    o.set_session_expiry_interval(Some(300));
    o.set_manual_acks(true);
    let (mut s, _) = Client::connect(o.clone()).await;
    s.subscribe("ma/t", QoS::AtLeastOnce).await;
    let mut p = client(&t, "pub").await;
    p.publish("ma/t", QoS::AtLeastOnce, false, "once").await;
    let first = s.next_publish().await;
    assert!(!first.dup);
    s.kill().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (mut s, ack) = Client::connect(o).await;
    assert!(ack.session_present);
    let again = s.next_publish().await;
    assert!(again.dup, "redelivery must set DUP");
    assert_eq!(again.pkid, first.pkid);
    assert_eq!(payload_str(&again), "once");
    s.c.ack(&again).await.unwrap();
    s.no_publish(QUIET).await;
}

/// Overlapping subscriptions: ONE copy at the highest QoS carrying both
/// Subscription Identifiers [MQTT-3.3.4-3], [MQTT-3.3.4-5].
#[tokio::test]
async fn mqtt_3_3_4_5_overlapping_subscriptions_one_copy_with_both_identifiers() {
    let t = Tern::start(&[]);
    let mut s = client(&t, "sub").await;
    s.subscribe_id("ov/#", QoS::AtLeastOnce, 1).await;
    s.subscribe_id("ov/+", QoS::ExactlyOnce, 2).await;
    let mut p = client(&t, "pub").await;
    p.publish("ov/a", QoS::ExactlyOnce, false, "x").await;
    let m = s.next_publish().await;
    assert_eq!(m.qos, QoS::ExactlyOnce);
    assert_eq!(sub_ids(&m), [1, 2], "{m:?}");
    s.no_publish(QUIET).await;
    // Only one of them matches: only its identifier.
    p.publish("ov/a/b", QoS::ExactlyOnce, false, "y").await;
    let m = s.next_publish().await;
    assert_eq!(m.qos, QoS::AtLeastOnce);
    assert_eq!(sub_ids(&m), [1]);
    s.no_publish(QUIET).await;
}

/// `--overlap-deliver-each`: one copy per subscription, each with its own identifier and QoS.
#[tokio::test]
async fn overlapping_subscriptions_deliver_each_flag_one_copy_per_subscription() {
    let t = Tern::start(&["--overlap-deliver-each"]);
    let mut s = client(&t, "sub").await;
    s.subscribe_id("ov/#", QoS::AtLeastOnce, 1).await;
    s.subscribe_id("ov/+", QoS::ExactlyOnce, 2).await;
    let mut p = client(&t, "pub").await;
    p.publish("ov/a", QoS::ExactlyOnce, false, "x").await;
    let a = s.next_publish().await;
    let b = s.next_publish().await;
    let mut got = vec![(sub_ids(&a), a.qos as u8), (sub_ids(&b), b.qos as u8)];
    got.sort();
    assert_eq!(got, [(vec![1], 1), (vec![2], 2)]);
    s.no_publish(QUIET).await;
}

/// Client Receive Maximum 2: the broker never has more than 2 unacknowledged
/// QoS 1 PUBLISHes outstanding [MQTT-3.3.4-7].
#[tokio::test]
async fn mqtt_3_3_4_7_broker_respects_client_receive_maximum() {
    let t = Tern::start(&[]);
    let mut o = opts(&t, "slow");
    o.set_manual_acks(true);
    o.set_receive_maximum(Some(2));
    let (mut s, _) = Client::connect(o).await;
    s.subscribe("rm/t", QoS::AtLeastOnce).await;
    let mut p = client(&t, "pub").await;
    for i in 0..6 {
        p.publish("rm/t", QoS::AtLeastOnce, false, format!("m{i}"))
            .await;
    }
    let mut outstanding = VecDeque::new();
    let mut got = Vec::new();
    while got.len() < 6 {
        while outstanding.len() < 2 && got.len() < 6 {
            let m = s.next_publish().await;
            got.push(payload_str(&m));
            outstanding.push_back(m);
        }
        if got.len() < 6 {
            s.no_publish(QUIET).await;
        }
        let m = outstanding.pop_front().unwrap();
        s.c.ack(&m).await.unwrap();
    }
    for m in outstanding {
        s.c.ack(&m).await.unwrap();
    }
    assert_eq!(got, ["m0", "m1", "m2", "m3", "m4", "m5"]);
}

/// Client Maximum Packet Size: a message bigger than it is not sent to that client
/// (others still get it) and the client stays connected [MQTT-3.1.2-25].
#[tokio::test]
async fn mqtt_3_1_2_25_message_larger_than_client_maximum_packet_size_skipped() {
    let t = Tern::start(&[]);
    let mut o = opts(&t, "small");
    o.set_max_packet_size(Some(512));
    let (mut small, _) = Client::connect(o).await;
    small.subscribe("mp/t", QoS::AtLeastOnce).await;
    let mut big = client(&t, "big").await;
    big.subscribe("mp/t", QoS::AtLeastOnce).await;
    let mut p = client(&t, "pub").await;
    p.publish("mp/t", QoS::AtLeastOnce, false, vec![b'x'; 2000])
        .await;
    p.publish("mp/t", QoS::AtLeastOnce, false, "small").await;
    assert_eq!(big.next_publish().await.payload.len(), 2000);
    assert_eq!(payload_str(&big.next_publish().await), "small");
    let m = small.next_publish().await;
    assert_eq!(payload_str(&m), "small");
    small.no_publish(QUIET).await;
}

/// Empty client id → Assigned Client Identifier [MQTT-3.1.3-6], [MQTT-3.2.2-16].
#[tokio::test]
async fn mqtt_3_2_2_16_empty_client_id_assigned() {
    let t = Tern::start(&[]);
    let (mut c, ack) = Client::connect(opts(&t, "")).await;
    let id = ack
        .properties
        .as_ref()
        .and_then(|p| p.assigned_client_identifier.clone())
        .expect("Assigned Client Identifier");
    assert!(!id.is_empty());
    c.subscribe("as/t", QoS::AtMostOnce).await;
    c.publish("as/t", QoS::AtMostOnce, false, "x").await;
    assert_eq!(payload_str(&c.next_publish().await), "x");
}

/// Session takeover: the old connection receives DISCONNECT 0x8E [MQTT-3.1.4-3].
#[tokio::test]
async fn mqtt_3_1_4_3_session_takeover_disconnects_old_with_0x8e() {
    let t = Tern::start(&[]);
    let mut old = client(&t, "same").await;
    let mut new = client(&t, "same").await;
    // rumqttc reports an incoming DISCONNECT as StateError::ServerDisconnect.
    match old.expect_error().await {
        ConnectionError::MqttState(StateError::ServerDisconnect { reason_code, .. }) => {
            assert_eq!(reason_code, DisconnectReasonCode::SessionTakenOver)
        }
        e => panic!("expected DISCONNECT 0x8E, got {e:?}"),
    }
    new.subscribe("to/t", QoS::AtMostOnce).await;
    new.publish("to/t", QoS::AtMostOnce, false, "still here")
        .await;
    assert_eq!(payload_str(&new.next_publish().await), "still here");
}

/// `$share/group/filter` distributes round-robin among the group's members.
#[tokio::test]
async fn shared_subscription_round_robin() {
    let t = Tern::start(&[]);
    let mut a = client(&t, "a").await;
    let mut b = client(&t, "b").await;
    a.subscribe("$share/g/sh/t", QoS::AtLeastOnce).await;
    b.subscribe("$share/g/sh/t", QoS::AtLeastOnce).await;
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
}

/// Outbound topic aliases with a client Topic Alias Maximum of 5: every message
/// resolves to the right topic, aliases stay within 1..=5 [MQTT-3.3.2-9], and
/// repeated topics use them. rumqttc reports the PUBLISH before resolving the
/// alias, so the test keeps its own alias map.
#[tokio::test]
async fn mqtt_3_3_2_3_4_outbound_topic_alias_resolves() {
    let t = Tern::start(&[]);
    let mut o = opts(&t, "alias");
    o.set_topic_alias_max(Some(5));
    let (mut s, _) = Client::connect(o).await;
    s.subscribe("al/#", QoS::AtMostOnce).await;
    let mut p = client(&t, "pub").await;
    for i in 0..6 {
        p.publish(
            &format!("al/{}", i % 2),
            QoS::AtLeastOnce,
            false,
            i.to_string(),
        )
        .await;
    }
    let mut aliases = std::collections::HashMap::new();
    let mut used = 0;
    for i in 0..6 {
        let m = s.next_publish().await;
        let alias = m.properties.as_ref().and_then(|p| p.topic_alias);
        if let Some(a) = alias {
            assert!((1..=5).contains(&a), "alias {a} beyond client maximum 5");
        }
        let topic = if m.topic.is_empty() {
            used += 1;
            let a = alias.expect("empty topic without a Topic Alias");
            aliases
                .get(&a)
                .cloned()
                .expect("alias used before being set")
        } else {
            let topic = topic_str(&m);
            if let Some(a) = alias {
                aliases.insert(a, topic.clone());
            }
            topic
        };
        assert_eq!(topic, format!("al/{}", i % 2));
        assert_eq!(payload_str(&m), i.to_string());
    }
    assert!(used > 0, "the broker never used an outbound topic alias");
}

/// Abruptly killed clients do not disturb others (and the broker keeps serving).
#[tokio::test]
async fn killed_client_does_not_affect_others() {
    let t = Tern::start(&[]);
    let mut s = client(&t, "sub").await;
    s.subscribe("k/t", QoS::AtLeastOnce).await;
    for i in 0..5 {
        let mut c = client(&t, &format!("victim{i}")).await;
        c.subscribe("k/t", QoS::AtLeastOnce).await;
        c.kill().await;
    }
    let mut p = client(&t, "pub").await;
    p.publish("k/t", QoS::AtLeastOnce, false, "ok").await;
    assert_eq!(payload_str(&s.next_publish().await), "ok");
}
