//! Unit round trips: every packet type in 3.1.1 and v5 (CONNECT also in
//! 3.1), with every property set; exact bytes for a few short forms; and
//! the encoder's errors.

use bytes::{Bytes, BytesMut};
use tern_mqtt_codec::{
    Auth, ConnAck, ConnAckProperties, Connect, ConnectProperties, Disconnect, EncodeError,
    LastWill, Packet, ProtocolVersion, PubResp, Publish, PublishProperties, QoS, RetainHandling,
    SubAck, Subscribe, SubscribeFilter, SubscriptionOptions, UnsubAck, Unsubscribe, WillProperties,
    encode, encoded_len,
};

use super::*;

fn user() -> Vec<(String, String)> {
    vec![
        ("k".into(), "v".into()),
        ("k".into(), "v2".into()),
        ("é".into(), "".into()),
    ]
}

fn b(v: &'static [u8]) -> Bytes {
    Bytes::from_static(v)
}

fn full_connect(protocol: ProtocolVersion) -> Connect {
    let v5 = protocol.is_v5();
    Connect {
        protocol,
        clean_start: true,
        keep_alive: 30,
        client_id: "client-1".into(),
        will: Some(LastWill {
            topic: "will/topic".into(),
            payload: b(b"gone"),
            qos: QoS::ExactlyOnce,
            retain: true,
            properties: if v5 {
                WillProperties {
                    will_delay_interval: Some(5),
                    payload_format_indicator: Some(1),
                    message_expiry_interval: Some(60),
                    content_type: Some("text/plain".into()),
                    response_topic: Some("resp".into()),
                    correlation_data: Some(b(b"\x00\x01")),
                    user_properties: user(),
                }
            } else {
                Default::default()
            },
        }),
        username: Some("user".into()),
        password: Some(b(b"\xFFsecret\x00")),
        properties: if v5 {
            ConnectProperties {
                session_expiry_interval: Some(3600),
                receive_maximum: Some(100),
                maximum_packet_size: Some(1 << 20),
                topic_alias_maximum: Some(10),
                request_response_information: Some(1),
                request_problem_information: Some(0),
                user_properties: user(),
                authentication_method: Some("SCRAM-SHA-1".into()),
                authentication_data: Some(b(b"data")),
            }
        } else {
            Default::default()
        },
    }
}

fn full_connack() -> ConnAckProperties {
    ConnAckProperties {
        session_expiry_interval: Some(0),
        receive_maximum: Some(65535),
        maximum_qos: Some(1),
        retain_available: Some(0),
        maximum_packet_size: Some(4096),
        assigned_client_identifier: Some("auto-1".into()),
        topic_alias_maximum: Some(0),
        reason_string: Some("ok".into()),
        user_properties: user(),
        wildcard_subscription_available: Some(1),
        subscription_identifiers_available: Some(0),
        shared_subscription_available: Some(1),
        server_keep_alive: Some(120),
        response_information: Some("resp/".into()),
        server_reference: Some("other:1883".into()),
        authentication_method: Some("m".into()),
        authentication_data: Some(b(b"d")),
    }
}

fn full_publish_props() -> PublishProperties {
    PublishProperties {
        payload_format_indicator: Some(0),
        message_expiry_interval: Some(10),
        topic_alias: Some(3),
        response_topic: Some("r/t".into()),
        correlation_data: Some(b(b"cd")),
        user_properties: user(),
        subscription_identifiers: vec![1, 127, 128, 268_435_455],
        content_type: Some("application/json".into()),
    }
}

fn resp(packet_id: u16, reason_code: u8, props: bool) -> PubResp {
    PubResp {
        packet_id,
        reason_code,
        reason_string: props.then(|| "why".into()),
        user_properties: if props { user() } else { vec![] },
    }
}

fn filters(v5: bool) -> Vec<SubscribeFilter> {
    let opts = |qos, no_local, retain_as_published, retain_handling| SubscriptionOptions {
        qos,
        no_local,
        retain_as_published,
        retain_handling,
    };
    if v5 {
        vec![
            SubscribeFilter {
                filter: "a/+/c".into(),
                options: opts(
                    QoS::AtMostOnce,
                    false,
                    false,
                    RetainHandling::SendAtSubscribe,
                ),
            },
            SubscribeFilter {
                filter: "$share/g/x/#".into(),
                options: opts(QoS::AtLeastOnce, true, false, RetainHandling::SendIfNew),
            },
            SubscribeFilter {
                filter: "#".into(),
                options: opts(QoS::ExactlyOnce, false, true, RetainHandling::DoNotSend),
            },
        ]
    } else {
        [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
            .into_iter()
            .enumerate()
            .map(|(i, qos)| SubscribeFilter {
                filter: format!("t/{i}/#"),
                options: SubscriptionOptions {
                    qos,
                    ..Default::default()
                },
            })
            .collect()
    }
}

/// Every packet type, as valid for `v`, with every field of that version.
pub fn all_packets(v: ProtocolVersion) -> Vec<Packet> {
    let v5 = v.is_v5();
    let mut out = vec![
        Packet::Connect(Box::new(full_connect(v))),
        Packet::Connect(Box::new(Connect {
            protocol: v,
            clean_start: false,
            keep_alive: 0,
            client_id: String::new(),
            will: None,
            username: None,
            password: None,
            properties: Default::default(),
        })),
        Packet::ConnAck(ConnAck {
            session_present: true,
            reason_code: 0,
            properties: if v5 {
                full_connack()
            } else {
                Default::default()
            },
        }),
        Packet::ConnAck(ConnAck {
            session_present: false,
            reason_code: if v5 { 0x86 } else { 4 },
            properties: Default::default(),
        }),
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: true,
            topic: "a/b".into(),
            packet_id: None,
            payload: b(b"hello"),
            properties: if v5 {
                full_publish_props()
            } else {
                Default::default()
            },
        }),
        Packet::Publish(Publish {
            dup: true,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: "a/b/ü".into(),
            packet_id: Some(1),
            payload: Bytes::new(),
            properties: Default::default(),
        }),
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::ExactlyOnce,
            retain: false,
            topic: "big".into(),
            packet_id: Some(65535),
            payload: Bytes::from(vec![7u8; 70_000]),
            properties: Default::default(),
        }),
        Packet::PubAck(resp(1, 0, false)),
        Packet::PubRec(resp(2, 0, false)),
        Packet::PubRel(resp(3, 0, false)),
        Packet::PubComp(resp(4, 0, false)),
        Packet::Subscribe(Subscribe {
            packet_id: 10,
            filters: filters(v5),
            subscription_identifier: v5.then_some(268_435_455),
            user_properties: if v5 { user() } else { vec![] },
        }),
        Packet::SubAck(SubAck {
            packet_id: 10,
            reason_codes: if v5 {
                vec![
                    0, 1, 2, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2,
                ]
            } else {
                vec![0, 1, 2, 0x80]
            },
            reason_string: v5.then(|| "granted".into()),
            user_properties: if v5 { user() } else { vec![] },
        }),
        Packet::Unsubscribe(Unsubscribe {
            packet_id: 11,
            filters: vec!["a/+".into(), "#".into(), "".into()],
            user_properties: if v5 { user() } else { vec![] },
        }),
        Packet::UnsubAck(UnsubAck {
            packet_id: 11,
            reason_codes: if v5 {
                vec![0, 0x11, 0x80, 0x8F]
            } else {
                vec![]
            },
            reason_string: v5.then(|| "done".into()),
            user_properties: if v5 { user() } else { vec![] },
        }),
        Packet::PingReq,
        Packet::PingResp,
        Packet::Disconnect(Disconnect::default()),
    ];
    if v5 {
        out.extend([
            Packet::Publish(Publish {
                topic: String::new(),
                properties: PublishProperties {
                    topic_alias: Some(9),
                    ..Default::default()
                },
                ..Default::default()
            }),
            Packet::PubAck(resp(5, 0x10, true)),
            Packet::PubAck(resp(5, 0x99, false)),
            Packet::PubAck(resp(5, 0, true)),
            Packet::PubRec(resp(6, 0x80, true)),
            Packet::PubRel(resp(7, 0x92, true)),
            Packet::PubComp(resp(8, 0x92, false)),
            Packet::Disconnect(Disconnect {
                reason_code: 0x04,
                ..Default::default()
            }),
            Packet::Disconnect(Disconnect {
                reason_code: 0x8E,
                session_expiry_interval: Some(0),
                reason_string: Some("taken over".into()),
                user_properties: user(),
                server_reference: Some("elsewhere".into()),
            }),
            Packet::Disconnect(Disconnect {
                reason_code: 0,
                session_expiry_interval: Some(7),
                ..Default::default()
            }),
            Packet::Auth(Auth::default()),
            Packet::Auth(Auth {
                reason_code: 0x18,
                ..Default::default()
            }),
            Packet::Auth(Auth {
                reason_code: 0x19,
                authentication_method: Some("SCRAM".into()),
                authentication_data: Some(b(b"\x00\x01\x02")),
                reason_string: Some("again".into()),
                user_properties: user(),
            }),
        ]);
    }
    out
}

#[test]
fn every_packet_round_trips_in_3_1_1() {
    for p in all_packets(V3_1_1) {
        round_trip(&p, V3_1_1);
    }
}

#[test]
fn every_packet_round_trips_in_3_1() {
    for p in all_packets(V3_1) {
        round_trip(&p, V3_1);
    }
}

#[test]
fn every_packet_round_trips_in_v5_with_every_property() {
    for p in all_packets(V5) {
        round_trip(&p, V5);
    }
}

#[test]
fn connect_3_1_uses_mqisdp_level_3() {
    // The variable header starts after the remaining length.
    let body = |bytes: Vec<u8>| {
        let header = 2 + bytes[1..].iter().take_while(|&&b| b & 0x80 != 0).count();
        bytes[header..].to_vec()
    };
    let bytes = round_trip(&Packet::Connect(Box::new(full_connect(V3_1))), V3_1);
    assert_eq!(body(bytes)[..9], *b"\x00\x06MQIsdp\x03");
    let bytes = enc(&Packet::Connect(Box::new(full_connect(V3_1_1))), V3_1_1);
    assert_eq!(body(bytes)[..7], *b"\x00\x04MQTT\x04");
    let bytes = enc(&Packet::Connect(Box::new(full_connect(V5))), V5);
    assert_eq!(body(bytes)[..7], *b"\x00\x04MQTT\x05");
    // CONNECT is written for its own protocol, whatever the argument says.
    assert_eq!(
        enc(&Packet::Connect(Box::new(full_connect(V3_1))), V5),
        enc(&Packet::Connect(Box::new(full_connect(V3_1))), V3_1)
    );
}

#[test]
fn exact_bytes_of_short_forms() {
    assert_eq!(enc(&Packet::PingReq, V3_1_1), [0xC0, 0x00]);
    assert_eq!(enc(&Packet::PingResp, V5), [0xD0, 0x00]);
    assert_eq!(
        enc(&Packet::Disconnect(Disconnect::default()), V5),
        [0xE0, 0x00]
    );
    assert_eq!(enc(&Packet::Auth(Auth::default()), V5), [0xF0, 0x00]);
    assert_eq!(
        enc(&Packet::PubAck(resp(0x0102, 0, false)), V5),
        [0x40, 0x02, 0x01, 0x02]
    );
    assert_eq!(
        enc(&Packet::PubRel(resp(1, 0, false)), V5),
        [0x62, 0x02, 0x00, 0x01]
    );
    assert_eq!(
        enc(&Packet::PubRec(resp(1, 0x10, false)), V5),
        [0x50, 0x03, 0x00, 0x01, 0x10]
    );
    assert_eq!(
        enc(
            &Packet::Disconnect(Disconnect {
                reason_code: 0x8B,
                ..Default::default()
            }),
            V5
        ),
        [0xE0, 0x01, 0x8B]
    );
    assert_eq!(
        enc(
            &Packet::ConnAck(ConnAck {
                session_present: true,
                reason_code: 0,
                properties: Default::default()
            }),
            V5
        ),
        [0x20, 0x03, 0x01, 0x00, 0x00]
    );
}

#[test]
fn v3_encoding_omits_v5_fields() {
    // Reason codes, properties, UNSUBACK codes and the DISCONNECT body are
    // v5-only.
    assert_eq!(
        enc(&Packet::PubAck(resp(1, 0x80, true)), V3_1_1),
        [0x40, 0x02, 0x00, 0x01]
    );
    assert_eq!(
        enc(
            &Packet::Disconnect(Disconnect {
                reason_code: 0x8E,
                reason_string: Some("x".into()),
                ..Default::default()
            }),
            V3_1_1
        ),
        [0xE0, 0x00]
    );
    assert_eq!(
        enc(
            &Packet::UnsubAck(UnsubAck {
                packet_id: 1,
                reason_codes: vec![0, 0x11],
                reason_string: Some("x".into()),
                user_properties: user(),
            }),
            V3_1_1
        ),
        [0xB0, 0x02, 0x00, 0x01]
    );
    let publish = Packet::Publish(Publish {
        topic: "t".into(),
        payload: b(b"p"),
        properties: full_publish_props(),
        ..Default::default()
    });
    assert_eq!(enc(&publish, V3_1_1), [0x30, 0x04, 0x00, 0x01, b't', b'p']);
    // SUBSCRIBE options keep only the QoS bits.
    let sub = Packet::Subscribe(Subscribe {
        packet_id: 1,
        filters: filters(true),
        subscription_identifier: Some(1),
        user_properties: user(),
    });
    let Packet::Subscribe(decoded) = dec_ok(&enc(&sub, V3_1_1), V3_1_1) else {
        panic!("not a SUBSCRIBE");
    };
    for (got, sent) in decoded.filters.iter().zip(filters(true)) {
        assert_eq!(got.filter, sent.filter);
        assert_eq!(
            got.options,
            SubscriptionOptions {
                qos: sent.options.qos,
                ..Default::default()
            }
        );
    }
    assert_eq!(decoded.subscription_identifier, None);
}

#[test]
fn encoder_errors() {
    let mut out = BytesMut::new();
    assert_eq!(
        encode(&Packet::Auth(Auth::default()), V3_1_1, &mut out),
        Err(EncodeError::NotInVersion)
    );
    assert_eq!(
        encoded_len(&Packet::Auth(Auth::default()), V3_1),
        Err(EncodeError::NotInVersion)
    );
    for packet_id in [None, Some(0)] {
        let p = Packet::Publish(Publish {
            qos: QoS::AtLeastOnce,
            topic: "t".into(),
            packet_id,
            ..Default::default()
        });
        assert_eq!(encode(&p, V5, &mut out), Err(EncodeError::MissingPacketId));
    }
    let long = Packet::Publish(Publish {
        topic: "x".repeat(65_536),
        ..Default::default()
    });
    assert_eq!(encode(&long, V5, &mut out), Err(EncodeError::StringTooLong));
    let long = Packet::PubAck(PubResp {
        packet_id: 1,
        user_properties: vec![("k".into(), "v".repeat(70_000))],
        ..Default::default()
    });
    assert_eq!(encode(&long, V5, &mut out), Err(EncodeError::StringTooLong));
    // Nothing was written by the failed calls.
    assert!(out.is_empty());
    // A packet past 268_435_455 bytes of remaining length.
    let huge = Packet::Publish(Publish {
        topic: "t".into(),
        payload: Bytes::from(vec![0u8; 268_435_455]),
        ..Default::default()
    });
    assert_eq!(encoded_len(&huge, V3_1_1), Err(EncodeError::PacketTooLarge));
    // A QoS 0 PUBLISH drops a stray packet id and DUP flag
    // [MQTT-3.3.1-2] (a QoS 1 message downgraded for a subscriber).
    let p = Packet::Publish(Publish {
        dup: true,
        topic: "t".into(),
        packet_id: Some(5),
        ..Default::default()
    });
    assert_eq!(enc(&p, V3_1_1), [0x30, 0x03, 0x00, 0x01, b't']);
}

#[test]
fn encode_appends_to_existing_bytes() {
    let mut out = BytesMut::from(&b"xy"[..]);
    encode(&Packet::PingReq, V5, &mut out).unwrap();
    assert_eq!(&out[..], &[b'x', b'y', 0xC0, 0x00]);
}
