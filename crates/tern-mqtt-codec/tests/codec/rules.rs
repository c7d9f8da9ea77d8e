//! Each decoder rule, with real malformed bytes and the exact error.
//! Test names carry the spec statement ([MQTT-x.y.z-n]) or section.

use bytes::BytesMut;
use tern_mqtt_codec::{
    Auth, ConnAck, DecodeError, Disconnect, Limits, Packet, ProtocolVersion, PubResp, QoS,
    RetainHandling, decode, peek_packet_len, reason,
};

use super::*;

use DecodeError as E;

/// CONNECT for `name`/`level` with `flags`, keep alive 60, then `rest`.
fn connect(name: &str, level: u8, flags: u8, rest: &[u8]) -> Vec<u8> {
    let mut body = s(name);
    body.extend([level, flags, 0, 60]);
    body.extend_from_slice(rest);
    pkt(0x10, &body)
}

/// 3.1.1 CONNECT with client id "c" and then `rest`.
fn connect311(flags: u8, rest: &[u8]) -> Vec<u8> {
    connect("MQTT", 4, flags, &[s("c"), rest.to_vec()].concat())
}

/// v5 CONNECT with the given CONNECT property bytes and client id "c".
fn connect5_props(p: &[u8]) -> Vec<u8> {
    connect("MQTT", 5, 0x02, &[props(p), s("c")].concat())
}

/// v5 PUBLISH QoS 0 to "t" with the given property bytes.
fn publish5_props(p: &[u8]) -> Vec<u8> {
    pkt(0x30, &[s("t"), props(p), b"x".to_vec()].concat())
}

/// v5 CONNACK, success, with the given property bytes.
fn connack5_props(p: &[u8]) -> Vec<u8> {
    pkt(0x20, &[vec![0, 0], props(p)].concat())
}

// ---------------------------------------------------- fixed header, §2.1

#[test]
fn mqtt_1_5_5_1_remaining_length_fifth_byte_is_malformed() {
    assert_eq!(
        dec_err(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01], V3_1_1),
        E::MalformedRemainingLength
    );
    // Known malformed as soon as the fourth byte has a continuation bit.
    assert_eq!(
        dec_err(&[0xC0, 0x80, 0x80, 0x80, 0x80], V5),
        E::MalformedRemainingLength
    );
    assert_eq!(
        peek_packet_len(&[0xC0, 0x80, 0x80, 0x80, 0x80], &Limits::default()),
        Err(E::MalformedRemainingLength)
    );
}

#[test]
fn remaining_length_non_minimal_encoding_is_accepted() {
    // PINGREQ with remaining length 0 written in two bytes.
    assert_eq!(dec_ok(&[0xC0, 0x80, 0x00], V3_1_1), Packet::PingReq);
    // PUBACK with remaining length 2 written in four bytes.
    assert_eq!(
        dec_ok(&[0x40, 0x82, 0x80, 0x80, 0x00, 0x00, 0x07], V3_1_1),
        Packet::PubAck(PubResp {
            packet_id: 7,
            ..Default::default()
        })
    );
}

#[test]
fn incomplete_fixed_header_and_body_need_more_bytes() {
    assert_eq!(dec(&[], V5), Ok(None));
    assert_eq!(dec(&[0x30], V5), Ok(None));
    assert_eq!(dec(&[0x30, 0x80], V5), Ok(None));
    assert_eq!(dec(&[0x30, 0x05, 0x00, 0x01], V5), Ok(None));
    assert_eq!(peek_packet_len(&[0x30, 0x80], &Limits::default()), Ok(None));
    assert_eq!(
        peek_packet_len(&[0x30, 0x80, 0x01], &Limits::default()),
        Ok(Some(131))
    );
}

#[test]
fn packet_size_is_checked_before_the_body_arrives() {
    let limits = Limits {
        packet_bytes_max: 100,
    };
    // Only the fixed header of a 2003-byte PUBLISH is there.
    let mut buf = BytesMut::from(&[0x30, 0xD0, 0x0F][..]);
    assert_eq!(
        decode(&mut buf, V3_1_1, &limits),
        Err(E::PacketTooLarge {
            size: 2003,
            max: 100
        })
    );
    assert_eq!(
        peek_packet_len(&[0x30, 0xD0, 0x0F], &limits),
        Err(E::PacketTooLarge {
            size: 2003,
            max: 100
        })
    );
    // The limit counts the fixed header: 98 + 2 = 100 is fine, 101 is not.
    assert_eq!(peek_packet_len(&[0x30, 98], &limits), Ok(Some(100)));
    assert!(matches!(
        peek_packet_len(&[0x30, 99], &limits),
        Err(E::PacketTooLarge { size: 101, .. })
    ));
    // The largest remaining length the protocol allows.
    assert_eq!(
        dec_err(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F], V5),
        E::PacketTooLarge {
            size: 268_435_460,
            max: Limits::default().packet_bytes_max
        }
    );
}

#[test]
fn mqtt_2_1_2_packet_type_0_is_reserved() {
    assert_eq!(dec_err(&[0x00, 0x00], V3_1_1), E::InvalidPacketType(0));
    assert_eq!(dec_err(&[0x00, 0x00], V5), E::InvalidPacketType(0));
}

#[test]
fn mqtt_2_1_2_auth_is_only_a_packet_in_v5() {
    assert_eq!(dec_err(&[0xF0, 0x00], V3_1_1), E::InvalidPacketType(15));
    assert_eq!(dec_err(&[0xF0, 0x00], V3_1), E::InvalidPacketType(15));
    assert_eq!(dec_ok(&[0xF0, 0x00], V5), Packet::Auth(Auth::default()));
}

#[test]
fn mqtt_2_2_2_2_pubrel_subscribe_unsubscribe_flags_must_be_0010() {
    let cases: [(u8, &str, Vec<u8>); 3] = [
        (0x60, "PUBREL", vec![0, 1]),
        (0x80, "SUBSCRIBE", [vec![0, 1], s("a"), vec![0]].concat()),
        (0xA0, "UNSUBSCRIBE", [vec![0, 1], s("a")].concat()),
    ];
    for (byte1, packet, body) in cases {
        for flags in [0b0000, 0b0011, 0b0100, 0b1000, 0b1010] {
            assert_eq!(
                dec_err(&pkt(byte1 | flags, &body), V3_1_1),
                E::InvalidFlags { packet, flags },
                "{packet} flags {flags:#06b}"
            );
        }
        assert!(dec(&pkt(byte1 | 0b0010, &body), V3_1_1).is_ok());
    }
}

#[test]
fn mqtt_2_2_2_2_other_packets_must_have_flags_0() {
    let cases: [(u8, &str, Vec<u8>); 10] = [
        (0x10, "CONNECT", connect311(0x02, &[])[2..].to_vec()),
        (0x20, "CONNACK", vec![0, 0]),
        (0x40, "PUBACK", vec![0, 1]),
        (0x50, "PUBREC", vec![0, 1]),
        (0x70, "PUBCOMP", vec![0, 1]),
        (0x90, "SUBACK", vec![0, 1, 0]),
        (0xB0, "UNSUBACK", vec![0, 1]),
        (0xC0, "PINGREQ", vec![]),
        (0xD0, "PINGRESP", vec![]),
        (0xE0, "DISCONNECT", vec![]),
    ];
    for (byte1, packet, body) in cases {
        assert!(dec(&pkt(byte1, &body), V3_1_1).is_ok(), "{packet}");
        for flags in [0b0001, 0b0010, 0b1000] {
            assert_eq!(
                dec_err(&pkt(byte1 | flags, &body), V3_1_1),
                E::InvalidFlags { packet, flags },
                "{packet}"
            );
        }
    }
    assert_eq!(
        dec_err(&[0xF1, 0x00], V5),
        E::InvalidFlags {
            packet: "AUTH",
            flags: 1
        }
    );
}

#[test]
fn mqtt_3_1_tolerates_dup_on_subscribe_retries() {
    let body = [vec![0, 1], s("a"), vec![1]].concat();
    assert!(matches!(
        dec_ok(&pkt(0x8A, &body), V3_1),
        Packet::Subscribe(_)
    ));
    assert_eq!(
        dec_err(&pkt(0x8A, &body), V3_1_1),
        E::InvalidFlags {
            packet: "SUBSCRIBE",
            flags: 0x0A
        }
    );
    // The QoS 1 bits stay mandatory in 3.1.
    assert_eq!(
        dec_err(&pkt(0x88, &body), V3_1),
        E::InvalidFlags {
            packet: "SUBSCRIBE",
            flags: 0x08
        }
    );
}

#[test]
fn mqtt_3_3_1_4_publish_qos3_is_malformed() {
    let body = [s("t"), vec![0, 1]].concat();
    assert_eq!(dec_err(&pkt(0x36, &body), V3_1_1), E::InvalidQoS);
    assert_eq!(dec_err(&pkt(0x3F, &body), V5), E::InvalidQoS);
    assert_eq!(E::InvalidQoS.reason_code(), reason::MALFORMED_PACKET);
}

#[test]
fn mqtt_3_3_1_2_publish_qos0_with_dup_is_malformed() {
    assert_eq!(
        dec_err(&pkt(0x38, &s("t")), V3_1_1),
        E::InvalidFlags {
            packet: "PUBLISH",
            flags: 0x08
        }
    );
    // DUP with QoS 1 is fine.
    assert!(matches!(
        dec_ok(&pkt(0x3A, &[s("t"), vec![0, 1]].concat()), V3_1_1),
        Packet::Publish(p) if p.dup && p.qos == QoS::AtLeastOnce
    ));
}

// ------------------------------------------------------------- CONNECT

#[test]
fn mqtt_3_1_2_1_unknown_protocol_name_is_rejected() {
    for name in ["MQTX", "mqtt", "", "MQIsdpX"] {
        assert_eq!(
            dec_err(&connect(name, 4, 0x02, &s("c")), V3_1_1),
            E::InvalidProtocolName,
            "{name:?}"
        );
    }
    assert_eq!(
        E::InvalidProtocolName.reason_code(),
        reason::UNSUPPORTED_PROTOCOL_VERSION
    );
}

#[test]
fn mqtt_3_1_2_2_unsupported_protocol_level_is_rejected() {
    for (name, level) in [("MQTT", 3), ("MQTT", 6), ("MQTT", 0), ("MQIsdp", 4)] {
        assert_eq!(
            dec_err(&connect(name, level, 0x02, &s("c")), V3_1_1),
            E::UnsupportedProtocolVersion(level)
        );
    }
    assert_eq!(
        E::UnsupportedProtocolVersion(6).reason_code(),
        reason::UNSUPPORTED_PROTOCOL_VERSION
    );
}

#[test]
fn mqtt_3_1_2_protocol_names_and_levels_are_decoded() {
    let c = |bytes: &[u8]| match dec_ok(bytes, V3_1_1) {
        Packet::Connect(c) => c.protocol,
        p => panic!("{p:?}"),
    };
    assert_eq!(c(&connect("MQIsdp", 3, 0x02, &s("c"))), V3_1);
    assert_eq!(c(&connect("MQTT", 4, 0x02, &s("c"))), V3_1_1);
    assert_eq!(c(&connect("MQTT", 5, 0x02, &[0, 0, 1, b'c'])), V5);
}

#[test]
fn connect_is_decoded_by_its_own_version() {
    // A v5 CONNECT with a property, decoded on a connection whose version
    // is still the 3.1.1 default, and a 3.1.1 CONNECT decoded with V5.
    let v5 = connect5_props(&[0x11, 0, 0, 0, 10]);
    for conn_version in [V3_1, V3_1_1, V5] {
        match dec_ok(&v5, conn_version) {
            Packet::Connect(c) => {
                assert_eq!(c.protocol, V5);
                assert_eq!(c.properties.session_expiry_interval, Some(10));
            }
            p => panic!("{p:?}"),
        }
        assert!(matches!(
            dec_ok(&connect311(0x02, &[]), conn_version),
            Packet::Connect(c) if c.protocol == V3_1_1
        ));
    }
}

#[test]
fn mqtt_3_1_2_3_connect_reserved_flag_must_be_0() {
    assert_eq!(
        dec_err(&connect311(0x03, &[]), V3_1_1),
        E::InvalidConnectFlags(0x03)
    );
    assert_eq!(
        dec_err(&connect("MQTT", 5, 0x01, &[0, 0, 1, b'c']), V5),
        E::InvalidConnectFlags(0x01)
    );
}

#[test]
fn mqtt_3_1_2_14_will_qos_3_is_rejected() {
    let will = [s("w"), s("m")].concat();
    assert_eq!(
        dec_err(&connect311(0x1E, &will), V3_1_1),
        E::InvalidConnectFlags(0x1E)
    );
}

#[test]
fn mqtt_3_1_2_13_will_qos_without_will_flag_is_rejected() {
    assert_eq!(
        dec_err(&connect311(0x0A, &[]), V3_1_1),
        E::InvalidConnectFlags(0x0A)
    );
    assert_eq!(
        dec_err(&connect311(0x12, &[]), V3_1_1),
        E::InvalidConnectFlags(0x12)
    );
}

#[test]
fn mqtt_3_1_2_15_will_retain_without_will_flag_is_rejected() {
    assert_eq!(
        dec_err(&connect311(0x22, &[]), V3_1_1),
        E::InvalidConnectFlags(0x22)
    );
}

#[test]
fn mqtt_3_1_2_22_password_without_username_only_in_v5() {
    assert_eq!(
        dec_err(&connect311(0x42, &s("pw")), V3_1_1),
        E::InvalidConnectFlags(0x42)
    );
    assert_eq!(
        dec_err(
            &connect("MQIsdp", 3, 0x42, &[s("c"), s("pw")].concat()),
            V3_1
        ),
        E::InvalidConnectFlags(0x42)
    );
    // Allowed in v5 [MQTT-3.1.2-18 ff.].
    match dec_ok(
        &connect("MQTT", 5, 0x42, &[vec![0], s("c"), s("pw")].concat()),
        V5,
    ) {
        Packet::Connect(c) => {
            assert_eq!(c.username, None);
            assert_eq!(c.password.as_deref(), Some(&b"pw"[..]));
        }
        p => panic!("{p:?}"),
    }
}

#[test]
fn mqtt_3_1_3_empty_client_id_is_decoded() {
    match dec_ok(&connect("MQTT", 4, 0x02, &s("")), V3_1_1) {
        Packet::Connect(c) => assert_eq!(c.client_id, ""),
        p => panic!("{p:?}"),
    }
}

#[test]
fn mqtt_3_1_3_will_topic_must_be_a_topic_name() {
    for topic in ["a/+", "#", ""] {
        assert_eq!(
            dec_err(&connect311(0x06, &[s(topic), s("m")].concat()), V3_1_1),
            E::InvalidTopicName,
            "{topic:?}"
        );
    }
}

#[test]
fn connect_fields_announced_by_flags_must_be_present() {
    // Username flag without the username.
    assert_eq!(dec_err(&connect311(0x82, &[]), V3_1_1), E::UnexpectedEof);
    // Will flag, will topic, no will payload.
    assert_eq!(
        dec_err(&connect311(0x06, &s("w")), V3_1_1),
        E::UnexpectedEof
    );
}

#[test]
fn connect_trailing_bytes_are_rejected() {
    assert_eq!(dec_err(&connect311(0x02, &[0]), V3_1_1), E::TrailingBytes);
}

// ------------------------------------------------------------- strings

#[test]
fn mqtt_1_5_4_2_string_with_null_character_is_rejected() {
    assert_eq!(
        dec_err(&connect("MQTT", 4, 0x02, &s("a\0b")), V3_1_1),
        E::InvalidUtf8
    );
    assert_eq!(dec_err(&pkt(0x30, &s("a\0")), V3_1_1), E::InvalidUtf8);
}

#[test]
fn mqtt_1_5_4_1_ill_formed_utf8_is_rejected() {
    for bad in [&[0xC3, 0x28][..], &[0xFF], &[0xE2, 0x82], &[0xC0, 0x80]] {
        assert_eq!(dec_err(&pkt(0x30, &s(bad)), V3_1_1), E::InvalidUtf8);
    }
    // UTF-16 surrogate halves encoded as UTF-8 (U+D800).
    assert_eq!(
        dec_err(&pkt(0x30, &s([0xED, 0xA0, 0x80])), V3_1_1),
        E::InvalidUtf8
    );
    // In a user property value.
    assert_eq!(
        dec_err(
            &publish5_props(&[&[0x26][..], &s("k"), &s([0xED, 0xBF, 0xBF])].concat()),
            V5
        ),
        E::InvalidUtf8
    );
}

#[test]
fn mqtt_1_5_4_3_bom_and_non_characters_are_accepted() {
    let topic = "\u{FEFF}a/\u{FFFF}/é/日本";
    match dec_ok(&pkt(0x30, &s(topic)), V3_1_1) {
        Packet::Publish(p) => assert_eq!(p.topic, topic),
        p => panic!("{p:?}"),
    }
}

// ------------------------------------------------------------- PUBLISH

#[test]
fn mqtt_3_3_2_2_topic_name_with_wildcard_is_rejected() {
    for topic in ["a/+", "+", "a/#", "#", "a+b", "a#"] {
        assert_eq!(
            dec_err(&pkt(0x30, &s(topic)), V3_1_1),
            E::InvalidTopicName,
            "{topic}"
        );
        assert_eq!(
            dec_err(&pkt(0x30, &[s(topic), vec![0]].concat()), V5),
            E::InvalidTopicName
        );
    }
    assert_eq!(
        E::InvalidTopicName.reason_code(),
        reason::TOPIC_NAME_INVALID
    );
}

#[test]
fn mqtt_4_7_3_1_empty_topic_name_is_rejected_in_3_1_x() {
    assert_eq!(dec_err(&pkt(0x30, &s("")), V3_1_1), E::InvalidTopicName);
    assert_eq!(dec_err(&pkt(0x30, &s("")), V3_1), E::InvalidTopicName);
}

#[test]
fn mqtt_3_3_2_3_4_v5_empty_topic_needs_a_topic_alias() {
    assert_eq!(
        dec_err(&pkt(0x30, &[s(""), vec![0]].concat()), V5),
        E::InvalidTopicName
    );
    let with_alias = pkt(0x30, &[s(""), props(&[0x23, 0, 5])].concat());
    match dec_ok(&with_alias, V5) {
        Packet::Publish(p) => {
            assert_eq!(p.topic, "");
            assert_eq!(p.properties.topic_alias, Some(5));
        }
        p => panic!("{p:?}"),
    }
}

#[test]
fn mqtt_2_2_1_3_publish_qos1_2_packet_id_0_is_rejected() {
    for byte1 in [0x32, 0x34] {
        assert_eq!(
            dec_err(&pkt(byte1, &[s("t"), vec![0, 0]].concat()), V3_1_1),
            E::ZeroPacketId
        );
    }
}

#[test]
fn mqtt_2_2_1_3_acks_and_subscriptions_with_packet_id_0_are_rejected() {
    let cases: [(u8, Vec<u8>); 8] = [
        (0x40, vec![0, 0]),
        (0x50, vec![0, 0]),
        (0x62, vec![0, 0]),
        (0x70, vec![0, 0]),
        (0x82, [vec![0, 0], s("a"), vec![0]].concat()),
        (0x90, vec![0, 0, 0]),
        (0xA2, [vec![0, 0], s("a")].concat()),
        (0xB0, vec![0, 0]),
    ];
    for (byte1, body) in cases {
        assert_eq!(
            dec_err(&pkt(byte1, &body), V3_1_1),
            E::ZeroPacketId,
            "{byte1:#04x}"
        );
    }
}

#[test]
fn publish_payload_is_a_zero_copy_slice_of_the_buffer() {
    let bytes = pkt(0x32, &[s("t"), vec![0, 9], b"payload".to_vec()].concat());
    let mut buf = BytesMut::from(&bytes[..]);
    let start = buf.as_ptr() as usize;
    let end = start + buf.len();
    let Ok(Some(Packet::Publish(p))) = decode(&mut buf, V3_1_1, &Limits::default()) else {
        panic!("no publish");
    };
    assert_eq!(&p.payload[..], b"payload");
    let at = p.payload.as_ptr() as usize;
    assert!(at >= start && at + p.payload.len() <= end, "payload copied");
}

#[test]
fn decode_consumes_exactly_one_packet() {
    let mut bytes = pkt(0x30, &[s("t"), b"1".to_vec()].concat());
    bytes.extend(pkt(0xC0, &[]));
    bytes.extend([0x30]); // the start of a third one
    let mut buf = BytesMut::from(&bytes[..]);
    let l = Limits::default();
    assert!(matches!(
        decode(&mut buf, V3_1_1, &l),
        Ok(Some(Packet::Publish(_)))
    ));
    assert_eq!(decode(&mut buf, V3_1_1, &l), Ok(Some(Packet::PingReq)));
    assert_eq!(decode(&mut buf, V3_1_1, &l), Ok(None));
    assert_eq!(&buf[..], &[0x30]);
}

// ------------------------------------------------------ v5 properties

#[test]
fn mqtt_2_2_2_2_property_not_allowed_in_packet_is_rejected() {
    // Session expiry interval in PUBLISH.
    assert_eq!(
        dec_err(&publish5_props(&[0x11, 0, 0, 0, 1]), V5),
        E::InvalidProperty {
            packet: "PUBLISH",
            id: 0x11
        }
    );
    // Topic alias in CONNECT.
    assert_eq!(
        dec_err(&connect5_props(&[0x23, 0, 1]), V5),
        E::InvalidProperty {
            packet: "CONNECT",
            id: 0x23
        }
    );
    // Will delay interval in CONNECT (it belongs to the will).
    assert_eq!(
        dec_err(&connect5_props(&[0x18, 0, 0, 0, 1]), V5),
        E::InvalidProperty {
            packet: "CONNECT",
            id: 0x18
        }
    );
    // Subscription identifier in the will properties.
    let will = [props(&[0x0B, 1]), s("w"), s("m")].concat();
    assert_eq!(
        dec_err(
            &connect("MQTT", 5, 0x06, &[vec![0], s("c"), will].concat()),
            V5
        ),
        E::InvalidProperty {
            packet: "WILL",
            id: 0x0B
        }
    );
    // Reason string in UNSUBSCRIBE.
    assert_eq!(
        dec_err(
            &pkt(
                0xA2,
                &[vec![0, 1], props(&[&[0x1F][..], &s("r")].concat()), s("a")].concat()
            ),
            V5
        ),
        E::InvalidProperty {
            packet: "UNSUBSCRIBE",
            id: 0x1F
        }
    );
    // Subscription identifier in PUBACK.
    assert_eq!(
        dec_err(&pkt(0x40, &[vec![0, 1, 0], props(&[0x0B, 1])].concat()), V5),
        E::InvalidProperty {
            packet: "PUBACK",
            id: 0x0B
        }
    );
}

#[test]
fn mqtt_2_2_2_2_unknown_property_id_is_rejected() {
    for id in [0x00, 0x04, 0x2B, 0x7F, 0x80, 0xFF] {
        assert_eq!(
            dec_err(&publish5_props(&[id, 0]), V5),
            E::InvalidProperty {
                packet: "PUBLISH",
                id
            }
        );
    }
}

#[test]
fn mqtt_2_2_2_2_property_appearing_twice_is_a_protocol_error() {
    assert_eq!(
        dec_err(&publish5_props(&[0x02, 0, 0, 0, 1, 0x02, 0, 0, 0, 2]), V5),
        E::DuplicateProperty(0x02)
    );
    assert_eq!(
        dec_err(&connect5_props(&[0x21, 0, 1, 0x21, 0, 1]), V5),
        E::DuplicateProperty(0x21)
    );
    assert_eq!(
        E::DuplicateProperty(2).reason_code(),
        reason::PROTOCOL_ERROR
    );
}

#[test]
fn mqtt_3_3_2_3_user_properties_and_publish_subscription_ids_may_repeat() {
    let user = [&[0x26][..], &s("k"), &s("v")].concat();
    let p = [user.clone(), user, vec![0x0B, 1, 0x0B, 0x80, 0x01]].concat();
    match dec_ok(&publish5_props(&p), V5) {
        Packet::Publish(p) => {
            assert_eq!(p.properties.user_properties.len(), 2);
            assert_eq!(p.properties.subscription_identifiers, vec![1, 128]);
        }
        p => panic!("{p:?}"),
    }
}

#[test]
fn mqtt_3_8_2_1_2_subscribe_with_two_subscription_ids_is_a_protocol_error() {
    let bytes = pkt(
        0x82,
        &[vec![0, 1], props(&[0x0B, 1, 0x0B, 2]), s("a"), vec![0]].concat(),
    );
    assert_eq!(dec_err(&bytes, V5), E::DuplicateProperty(0x0B));
}

#[test]
fn mqtt_3_8_2_1_2_subscription_identifier_0_is_a_protocol_error() {
    let bytes = pkt(
        0x82,
        &[vec![0, 1], props(&[0x0B, 0]), s("a"), vec![0]].concat(),
    );
    assert_eq!(dec_err(&bytes, V5), E::InvalidPropertyValue(0x0B));
    assert_eq!(
        dec_err(&publish5_props(&[0x0B, 0]), V5),
        E::InvalidPropertyValue(0x0B)
    );
}

#[test]
fn mqtt_3_3_2_3_4_topic_alias_0_is_a_protocol_error() {
    assert_eq!(
        dec_err(&publish5_props(&[0x23, 0, 0]), V5),
        E::InvalidPropertyValue(0x23)
    );
    // [MQTT-3.3.2-8]: answered with DISCONNECT 0x94 (Topic Alias invalid).
    assert_eq!(
        E::InvalidPropertyValue(0x23).reason_code(),
        reason::TOPIC_ALIAS_INVALID
    );
    assert_eq!(
        E::InvalidPropertyValue(0x21).reason_code(),
        reason::PROTOCOL_ERROR
    );
}

#[test]
fn mqtt_3_1_2_11_receive_maximum_0_is_a_protocol_error() {
    assert_eq!(
        dec_err(&connect5_props(&[0x21, 0, 0]), V5),
        E::InvalidPropertyValue(0x21)
    );
    assert_eq!(
        dec_err(&connack5_props(&[0x21, 0, 0]), V5),
        E::InvalidPropertyValue(0x21)
    );
}

#[test]
fn mqtt_3_1_2_11_maximum_packet_size_0_is_a_protocol_error() {
    assert_eq!(
        dec_err(&connect5_props(&[0x27, 0, 0, 0, 0]), V5),
        E::InvalidPropertyValue(0x27)
    );
    assert_eq!(
        dec_err(&connack5_props(&[0x27, 0, 0, 0, 0]), V5),
        E::InvalidPropertyValue(0x27)
    );
}

#[test]
fn mqtt_3_3_2_3_2_payload_format_indicator_must_be_0_or_1() {
    assert_eq!(
        dec_err(&publish5_props(&[0x01, 2]), V5),
        E::InvalidPropertyValue(0x01)
    );
    let will = [props(&[0x01, 0xFF]), s("w"), s("m")].concat();
    assert_eq!(
        dec_err(
            &connect("MQTT", 5, 0x06, &[vec![0], s("c"), will].concat()),
            V5
        ),
        E::InvalidPropertyValue(0x01)
    );
}

#[test]
fn mqtt_3_1_2_11_request_problem_and_response_information_must_be_0_or_1() {
    assert_eq!(
        dec_err(&connect5_props(&[0x17, 2]), V5),
        E::InvalidPropertyValue(0x17)
    );
    assert_eq!(
        dec_err(&connect5_props(&[0x19, 2]), V5),
        E::InvalidPropertyValue(0x19)
    );
}

#[test]
fn mqtt_3_2_2_3_connack_byte_properties_must_be_0_or_1() {
    for id in [0x24, 0x25, 0x28, 0x29, 0x2A] {
        assert_eq!(
            dec_err(&connack5_props(&[id, 2]), V5),
            E::InvalidPropertyValue(id)
        );
        assert!(dec(&connack5_props(&[id, 1]), V5).is_ok());
    }
}

#[test]
fn mqtt_2_2_2_1_property_length_beyond_the_packet_is_malformed() {
    // Property length 10, 1 byte follows.
    assert_eq!(
        dec_err(&pkt(0x30, &[s("t"), vec![10, 0x01]].concat()), V5),
        E::UnexpectedEof
    );
    // A value running past the end of the property block: message expiry
    // interval needs 4 bytes, the block has 2 after the id, and 2 more
    // bytes of payload follow.
    assert_eq!(
        dec_err(
            &pkt(
                0x30,
                &[s("t"), vec![3, 0x02, 0, 0], b"xy".to_vec()].concat()
            ),
            V5
        ),
        E::UnexpectedEof
    );
    // No property length at all.
    assert_eq!(dec_err(&pkt(0x30, &s("t")), V5), E::UnexpectedEof);
}

#[test]
fn mqtt_1_5_5_property_length_of_five_bytes_is_malformed() {
    assert_eq!(
        dec_err(
            &pkt(0x30, &[s("t"), vec![0x80, 0x80, 0x80, 0x80, 0x01]].concat()),
            V5
        ),
        E::MalformedVariableInteger
    );
    assert_eq!(
        E::MalformedVariableInteger.reason_code(),
        reason::MALFORMED_PACKET
    );
}

#[test]
fn announced_lengths_are_checked_before_allocation() {
    // A string announcing 65535 bytes in a 4-byte body.
    assert_eq!(
        dec_err(&pkt(0x30, &[0xFF, 0xFF, b'a', b'b']), V3_1_1),
        E::UnexpectedEof
    );
    // A property length announcing 268 MB.
    assert_eq!(
        dec_err(
            &pkt(0x30, &[s("t"), vec![0xFF, 0xFF, 0xFF, 0x7F]].concat()),
            V5
        ),
        E::UnexpectedEof
    );
}

// ------------------------------------------- v5 acks and reason codes

#[test]
fn mqtt_3_4_2_1_v5_puback_short_forms() {
    let ack = |reason_code| {
        Packet::PubAck(PubResp {
            packet_id: 1,
            reason_code,
            ..Default::default()
        })
    };
    assert_eq!(dec_ok(&pkt(0x40, &[0, 1]), V5), ack(0));
    assert_eq!(dec_ok(&pkt(0x40, &[0, 1, 0x10]), V5), ack(0x10));
    assert_eq!(dec_ok(&pkt(0x40, &[0, 1, 0x10, 0]), V5), ack(0x10));
    assert_eq!(
        dec_ok(
            &pkt(
                0x40,
                &[&[0, 1, 0x80][..], &props(&[&[0x1F][..], &s("r")].concat())].concat()
            ),
            V5
        ),
        Packet::PubAck(PubResp {
            packet_id: 1,
            reason_code: 0x80,
            reason_string: Some("r".into()),
            user_properties: vec![],
        })
    );
}

#[test]
fn mqtt_3_4_2_1_puback_pubrec_reason_codes() {
    for byte1 in [0x40, 0x50] {
        for code in [0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99] {
            assert!(dec(&pkt(byte1, &[0, 1, code]), V5).is_ok());
        }
        for code in [0x01, 0x11, 0x81, 0x92, 0xFF] {
            assert_eq!(
                dec_err(&pkt(byte1, &[0, 1, code]), V5),
                E::InvalidReasonCode(code)
            );
        }
    }
}

#[test]
fn mqtt_3_6_2_1_pubrel_pubcomp_reason_codes() {
    for byte1 in [0x62, 0x70] {
        assert!(dec(&pkt(byte1, &[0, 1, 0x92]), V5).is_ok());
        for code in [0x10, 0x80, 0x91] {
            assert_eq!(
                dec_err(&pkt(byte1, &[0, 1, code]), V5),
                E::InvalidReasonCode(code)
            );
        }
    }
}

#[test]
fn mqtt_3_14_2_1_v5_disconnect_short_forms_and_reason_codes() {
    assert_eq!(
        dec_ok(&[0xE0, 0x00], V5),
        Packet::Disconnect(Disconnect::default())
    );
    assert_eq!(
        dec_ok(&[0xE0, 0x01, 0x04], V5),
        Packet::Disconnect(Disconnect {
            reason_code: 0x04,
            ..Default::default()
        })
    );
    for code in [0x01, 0x10, 0x84, 0x8C, 0x91] {
        assert_eq!(dec_err(&[0xE0, 0x01, code], V5), E::InvalidReasonCode(code));
    }
}

#[test]
fn mqtt_3_15_2_1_v5_auth_short_form_and_reason_codes() {
    assert_eq!(dec_ok(&[0xF0, 0x00], V5), Packet::Auth(Auth::default()));
    assert_eq!(
        dec_ok(&[0xF0, 0x02, 0x18, 0x00], V5),
        Packet::Auth(Auth {
            reason_code: 0x18,
            ..Default::default()
        })
    );
    assert_eq!(
        dec_err(&[0xF0, 0x02, 0x01, 0x00], V5),
        E::InvalidReasonCode(0x01)
    );
}

#[test]
fn mqtt_3_9_3_suback_reason_codes() {
    assert_eq!(
        dec_err(&pkt(0x90, &[0, 1, 0, 3]), V3_1_1),
        E::InvalidReasonCode(3)
    );
    // 0x8F is a v5 code only.
    assert_eq!(
        dec_err(&pkt(0x90, &[0, 1, 0x8F]), V3_1_1),
        E::InvalidReasonCode(0x8F)
    );
    assert!(dec(&pkt(0x90, &[0, 1, 0, 0x8F, 0xA2]), V5).is_ok());
    assert_eq!(
        dec_err(&pkt(0x90, &[0, 1, 0, 0, 0x11]), V5),
        E::InvalidReasonCode(0x11)
    );
    // No code at all.
    assert_eq!(dec_err(&pkt(0x90, &[0, 1]), V3_1_1), E::UnexpectedEof);
}

#[test]
fn mqtt_3_11_3_unsuback_reason_codes() {
    assert!(dec(&pkt(0xB0, &[0, 1, 0, 0x00, 0x11, 0x8F]), V5).is_ok());
    assert_eq!(
        dec_err(&pkt(0xB0, &[0, 1, 0, 0x02]), V5),
        E::InvalidReasonCode(0x02)
    );
    assert_eq!(dec_err(&pkt(0xB0, &[0, 1, 0]), V5), E::UnexpectedEof);
}

#[test]
fn mqtt_3_2_2_connack_return_and_reason_codes() {
    assert_eq!(
        dec_ok(&pkt(0x20, &[1, 5]), V3_1_1),
        Packet::ConnAck(ConnAck {
            session_present: true,
            reason_code: 5,
            ..Default::default()
        })
    );
    assert_eq!(
        dec_err(&pkt(0x20, &[0, 6]), V3_1_1),
        E::InvalidReasonCode(6)
    );
    assert_eq!(
        dec_err(&pkt(0x20, &[0, 0x01, 0]), V5),
        E::InvalidReasonCode(0x01)
    );
    assert!(dec(&pkt(0x20, &[0, 0x9F, 0]), V5).is_ok());
}

#[test]
fn mqtt_3_2_2_1_connack_reserved_flags_must_be_0() {
    assert_eq!(
        dec_err(&pkt(0x20, &[0x02, 0]), V3_1_1),
        E::InvalidConnAckFlags(0x02)
    );
    assert_eq!(
        dec_err(&pkt(0x20, &[0x80, 0, 0]), V5),
        E::InvalidConnAckFlags(0x80)
    );
}

// ----------------------------------------- SUBSCRIBE and UNSUBSCRIBE

#[test]
fn mqtt_3_8_3_3_subscribe_without_filters_is_malformed() {
    assert_eq!(dec_err(&pkt(0x82, &[0, 1]), V3_1_1), E::NoTopicFilters);
    assert_eq!(dec_err(&pkt(0x82, &[0, 1, 0]), V5), E::NoTopicFilters);
}

#[test]
fn mqtt_3_10_3_2_unsubscribe_without_filters_is_malformed() {
    assert_eq!(dec_err(&pkt(0xA2, &[0, 1]), V3_1_1), E::NoTopicFilters);
    assert_eq!(dec_err(&pkt(0xA2, &[0, 1, 0]), V5), E::NoTopicFilters);
}

fn subscribe_options(options: u8, v: ProtocolVersion) -> Result<Option<Packet>, DecodeError> {
    let pre = if v.is_v5() { vec![0, 1, 0] } else { vec![0, 1] };
    dec(&pkt(0x82, &[pre, s("a/b"), vec![options]].concat()), v)
}

#[test]
fn mqtt_3_8_3_5_v5_subscription_options_reserved_bits_must_be_0() {
    for options in [0x40, 0x80, 0xC1] {
        assert_eq!(
            subscribe_options(options, V5),
            Err(E::InvalidSubscriptionOptions(options))
        );
    }
}

#[test]
fn mqtt_3_8_3_1_v5_retain_handling_3_is_malformed() {
    assert_eq!(
        subscribe_options(0x30, V5),
        Err(E::InvalidSubscriptionOptions(0x30))
    );
    match subscribe_options(0x2E, V5) {
        Ok(Some(Packet::Subscribe(s))) => {
            let o = s.filters[0].options;
            assert_eq!(o.qos, QoS::ExactlyOnce);
            assert!(o.no_local && o.retain_as_published);
            assert_eq!(o.retain_handling, RetainHandling::DoNotSend);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn mqtt_3_8_3_4_subscription_qos_3_is_malformed() {
    for v in [V3_1_1, V5] {
        assert_eq!(
            subscribe_options(0x03, v),
            Err(E::InvalidSubscriptionOptions(0x03))
        );
    }
}

#[test]
fn mqtt_3_8_3_4_v3_subscription_options_upper_6_bits_must_be_0() {
    for options in [0x04, 0x08, 0x10, 0x80] {
        assert_eq!(
            subscribe_options(options, V3_1_1),
            Err(E::InvalidSubscriptionOptions(options))
        );
    }
}

#[test]
fn subscribe_filter_syntax_is_left_to_the_broker() {
    for filter in ["", "a/#/b", "a+", "#/a", "sport+"] {
        let bytes = pkt(0x82, &[vec![0, 1], s(filter), vec![1]].concat());
        match dec_ok(&bytes, V3_1_1) {
            Packet::Subscribe(s) => assert_eq!(s.filters[0].filter, filter),
            p => panic!("{p:?}"),
        }
    }
}

#[test]
fn subscribe_filter_without_options_byte_is_malformed() {
    assert_eq!(
        dec_err(&pkt(0x82, &[vec![0, 1], s("a")].concat()), V3_1_1),
        E::UnexpectedEof
    );
}

// ---------------------------------------------------- trailing bytes

#[test]
fn fixed_shape_packets_with_trailing_bytes_are_rejected() {
    let cases: [(&[u8], ProtocolVersion); 12] = [
        (&[0xC0, 0x01, 0x00], V3_1_1),
        (&[0xC0, 0x01, 0x00], V5),
        (&[0xD0, 0x01, 0x00], V3_1_1),
        (&[0xE0, 0x01, 0x00], V3_1_1),
        (&[0x40, 0x03, 0x00, 0x01, 0x00], V3_1_1),
        (&[0x50, 0x03, 0x00, 0x01, 0x00], V3_1_1),
        (&[0x62, 0x03, 0x00, 0x01, 0x00], V3_1_1),
        (&[0x70, 0x03, 0x00, 0x01, 0x00], V3_1_1),
        (&[0xB0, 0x03, 0x00, 0x01, 0x00], V3_1_1),
        (&[0x20, 0x03, 0x00, 0x00, 0x00], V3_1_1),
        // v5: bytes after the property block.
        (&[0x40, 0x05, 0x00, 0x01, 0x00, 0x00, 0xFF], V5),
        (&[0xE0, 0x03, 0x00, 0x00, 0xFF], V5),
    ];
    for (bytes, v) in cases {
        assert_eq!(dec_err(bytes, v), E::TrailingBytes, "{bytes:02x?}");
    }
    assert_eq!(
        dec_err(&[0xF0, 0x03, 0x00, 0x00, 0xFF], V5),
        E::TrailingBytes
    );
}

#[test]
fn truncated_fixed_shape_packets_are_rejected() {
    assert_eq!(dec_err(&[0x40, 0x01, 0x00], V3_1_1), E::UnexpectedEof);
    assert_eq!(dec_err(&[0x40, 0x00], V5), E::UnexpectedEof);
    assert_eq!(dec_err(&[0x20, 0x01, 0x00], V3_1_1), E::UnexpectedEof);
}

#[test]
fn reason_code_mapping() {
    assert_eq!(
        E::PacketTooLarge { size: 2, max: 1 }.reason_code(),
        reason::PACKET_TOO_LARGE
    );
    for e in [
        E::MalformedRemainingLength,
        E::InvalidPacketType(0),
        E::InvalidFlags {
            packet: "PUBREL",
            flags: 0,
        },
        E::UnexpectedEof,
        E::TrailingBytes,
        E::InvalidUtf8,
        E::InvalidConnectFlags(1),
        E::InvalidConnAckFlags(2),
        E::InvalidProperty {
            packet: "PUBLISH",
            id: 0x11,
        },
        E::ZeroPacketId,
        E::NoTopicFilters,
        E::InvalidSubscriptionOptions(0xC0),
        E::InvalidReasonCode(1),
    ] {
        assert_eq!(e.reason_code(), reason::MALFORMED_PACKET, "{e:?}");
    }
    // Every error has a message.
    assert!(!E::ZeroPacketId.to_string().is_empty());
}
