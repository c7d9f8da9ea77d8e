//! Property tests: arbitrary valid packets per version round-trip; fed one
//! byte at a time they decode only at the last byte; arbitrary and mutated
//! bytes never panic the decoder.

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;
use tern_mqtt_codec::{
    Auth, ConnAck, ConnAckProperties, Connect, ConnectProperties, Disconnect, LastWill, Limits,
    Packet, ProtocolVersion, PubResp, Publish, PublishProperties, QoS, RetainHandling, SubAck,
    Subscribe, SubscribeFilter, SubscriptionOptions, UnsubAck, Unsubscribe, WillProperties, decode,
    encode, encoded_len,
};

use super::*;

const VAR_INT_MAX: u32 = 268_435_455;

fn version() -> impl Strategy<Value = ProtocolVersion> {
    prop_oneof![Just(V3_1), Just(V3_1_1), Just(V5)]
}

/// Any string MQTT allows: no U+0000 (surrogates cannot be in a `String`).
fn text() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z0-9/ ]{0,12}", "[^\u{0}]{0,8}",]
}

/// A topic name: non-empty, no wildcards.
fn topic() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z0-9/$]{1,12}", "[^\u{0}+#]{1,8}"]
}

/// Filters are not validated by the codec: anything but U+0000.
fn filter() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z0-9/+#$]{0,12}", "[^\u{0}]{0,8}"]
}

fn binary() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..24).prop_map(Bytes::from)
}

fn user() -> impl Strategy<Value = Vec<(String, String)>> {
    vec((text(), text()), 0..3)
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

fn packet_id() -> impl Strategy<Value = u16> {
    1..=u16::MAX
}

fn flag() -> impl Strategy<Value = Option<u8>> {
    option::of(0..=1u8)
}

/// Only v5 has properties; other versions get the default.
fn v5_only<T: Default + std::fmt::Debug + Clone + 'static>(
    v5: bool,
    s: impl Strategy<Value = T> + 'static,
) -> BoxedStrategy<T> {
    if v5 {
        s.boxed()
    } else {
        Just(T::default()).boxed()
    }
}

fn will_props() -> impl Strategy<Value = WillProperties> {
    (
        option::of(any::<u32>()),
        flag(),
        option::of(any::<u32>()),
        option::of(text()),
        option::of(topic()),
        option::of(binary()),
        user(),
    )
        .prop_map(|(d, f, e, ct, rt, cd, up)| WillProperties {
            will_delay_interval: d,
            payload_format_indicator: f,
            message_expiry_interval: e,
            content_type: ct,
            response_topic: rt,
            correlation_data: cd,
            user_properties: up,
        })
}

fn connect_props() -> impl Strategy<Value = ConnectProperties> {
    (
        option::of(any::<u32>()),
        option::of(1..=u16::MAX),
        option::of(1..=u32::MAX),
        option::of(any::<u16>()),
        flag(),
        flag(),
        user(),
        option::of(text()),
        option::of(binary()),
    )
        .prop_map(
            |(se, rm, mp, tam, rri, rpi, up, am, ad)| ConnectProperties {
                session_expiry_interval: se,
                receive_maximum: rm,
                maximum_packet_size: mp,
                topic_alias_maximum: tam,
                request_response_information: rri,
                request_problem_information: rpi,
                user_properties: up,
                authentication_method: am,
                authentication_data: ad,
            },
        )
}

fn connect(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let v5 = v.is_v5();
    let will = (
        topic(),
        binary(),
        qos(),
        any::<bool>(),
        v5_only(v5, will_props()),
    )
        .prop_map(|(topic, payload, qos, retain, properties)| LastWill {
            topic,
            payload,
            qos,
            retain,
            properties,
        });
    (
        any::<bool>(),
        any::<u16>(),
        text(),
        option::of(will),
        option::of(text()),
        option::of(binary()),
        v5_only(v5, connect_props()),
    )
        .prop_map(
            move |(clean_start, keep_alive, client_id, will, username, password, properties)| {
                // 3.1.x: no password without a user name.
                let password = if !v5 && username.is_none() {
                    None
                } else {
                    password
                };
                Packet::Connect(Box::new(Connect {
                    protocol: v,
                    clean_start,
                    keep_alive,
                    client_id,
                    will,
                    username,
                    password,
                    properties,
                }))
            },
        )
}

fn connack_props() -> impl Strategy<Value = ConnAckProperties> {
    (
        (
            option::of(any::<u32>()),
            option::of(1..=u16::MAX),
            flag(),
            flag(),
            option::of(1..=u32::MAX),
            option::of(text()),
            option::of(any::<u16>()),
            option::of(text()),
            user(),
        ),
        (
            flag(),
            flag(),
            flag(),
            option::of(any::<u16>()),
            option::of(text()),
            option::of(text()),
            option::of(text()),
            option::of(binary()),
        ),
    )
        .prop_map(
            |((se, rm, mq, ra, mp, aci, tam, rs, up), (w, si, ss, ska, ri, sr, am, ad))| {
                ConnAckProperties {
                    session_expiry_interval: se,
                    receive_maximum: rm,
                    maximum_qos: mq,
                    retain_available: ra,
                    maximum_packet_size: mp,
                    assigned_client_identifier: aci,
                    topic_alias_maximum: tam,
                    reason_string: rs,
                    user_properties: up,
                    wildcard_subscription_available: w,
                    subscription_identifiers_available: si,
                    shared_subscription_available: ss,
                    server_keep_alive: ska,
                    response_information: ri,
                    server_reference: sr,
                    authentication_method: am,
                    authentication_data: ad,
                }
            },
        )
}

const CONNACK_V5: &[u8] = &[
    0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97,
    0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F,
];
const PUBACK_V5: &[u8] = &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99];
const PUBREL_V5: &[u8] = &[0x00, 0x92];
const SUBACK_V3: &[u8] = &[0x00, 0x01, 0x02, 0x80];
const SUBACK_V5: &[u8] = &[
    0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2,
];
const UNSUBACK_V5: &[u8] = &[0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91];
const DISCONNECT_V5: &[u8] = &[
    0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95,
    0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2,
];
const AUTH_V5: &[u8] = &[0x00, 0x18, 0x19];

fn connack(v: ProtocolVersion) -> BoxedStrategy<Packet> {
    let code = if v.is_v5() {
        select(CONNACK_V5).boxed()
    } else {
        (0..=5u8).boxed()
    };
    (any::<bool>(), code, v5_only(v.is_v5(), connack_props()))
        .prop_map(|(session_present, reason_code, properties)| {
            Packet::ConnAck(ConnAck {
                session_present,
                reason_code,
                properties,
            })
        })
        .boxed()
}

fn publish(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let v5 = v.is_v5();
    let props = (
        flag(),
        option::of(any::<u32>()),
        option::of(1..=u16::MAX),
        option::of(topic()),
        option::of(binary()),
        user(),
        vec(1..=VAR_INT_MAX, 0..3),
        option::of(text()),
    )
        .prop_map(|(f, e, ta, rt, cd, up, si, ct)| PublishProperties {
            payload_format_indicator: f,
            message_expiry_interval: e,
            topic_alias: ta,
            response_topic: rt,
            correlation_data: cd,
            user_properties: up,
            subscription_identifiers: si,
            content_type: ct,
        });
    (
        qos(),
        any::<bool>(),
        any::<bool>(),
        topic(),
        packet_id(),
        vec(any::<u8>(), 0..64),
        v5_only(v5, props),
        any::<bool>(),
    )
        .prop_map(
            |(qos, dup, retain, topic, id, payload, properties, empty_topic)| {
                let qos0 = qos == QoS::AtMostOnce;
                // v5: the topic may be empty when an alias carries it.
                let topic = if empty_topic && properties.topic_alias.is_some() {
                    String::new()
                } else {
                    topic
                };
                Packet::Publish(Publish {
                    dup: dup && !qos0,
                    qos,
                    retain,
                    topic,
                    packet_id: (!qos0).then_some(id),
                    payload: Bytes::from(payload),
                    properties,
                })
            },
        )
}

/// Reason string and user properties of an ack.
type AckFields = (Option<String>, Vec<(String, String)>);

fn ack_props(v5: bool) -> BoxedStrategy<AckFields> {
    v5_only(v5, (option::of(text()), user()))
}

fn pub_resp(v: ProtocolVersion, codes: &'static [u8]) -> BoxedStrategy<PubResp> {
    let v5 = v.is_v5();
    let code = if v5 {
        select(codes).boxed()
    } else {
        Just(0).boxed()
    };
    (packet_id(), code, ack_props(v5))
        .prop_map(
            |(packet_id, reason_code, (reason_string, user_properties))| PubResp {
                packet_id,
                reason_code,
                reason_string,
                user_properties,
            },
        )
        .boxed()
}

fn subscribe(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let v5 = v.is_v5();
    let options = if v5 {
        (
            qos(),
            any::<bool>(),
            any::<bool>(),
            prop_oneof![
                Just(RetainHandling::SendAtSubscribe),
                Just(RetainHandling::SendIfNew),
                Just(RetainHandling::DoNotSend)
            ],
        )
            .prop_map(
                |(qos, no_local, retain_as_published, retain_handling)| SubscriptionOptions {
                    qos,
                    no_local,
                    retain_as_published,
                    retain_handling,
                },
            )
            .boxed()
    } else {
        qos()
            .prop_map(|qos| SubscriptionOptions {
                qos,
                ..Default::default()
            })
            .boxed()
    };
    (
        packet_id(),
        vec(
            (filter(), options).prop_map(|(filter, options)| SubscribeFilter { filter, options }),
            1..4,
        ),
        v5_only(v5, option::of(1..=VAR_INT_MAX)),
        v5_only(v5, user()),
    )
        .prop_map(
            |(packet_id, filters, subscription_identifier, user_properties)| {
                Packet::Subscribe(Subscribe {
                    packet_id,
                    filters,
                    subscription_identifier,
                    user_properties,
                })
            },
        )
}

fn suback(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let codes = if v.is_v5() { SUBACK_V5 } else { SUBACK_V3 };
    (packet_id(), vec(select(codes), 1..5), ack_props(v.is_v5())).prop_map(
        |(packet_id, reason_codes, (reason_string, user_properties))| {
            Packet::SubAck(SubAck {
                packet_id,
                reason_codes,
                reason_string,
                user_properties,
            })
        },
    )
}

fn unsubscribe(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (packet_id(), vec(filter(), 1..4), v5_only(v.is_v5(), user())).prop_map(
        |(packet_id, filters, user_properties)| {
            Packet::Unsubscribe(Unsubscribe {
                packet_id,
                filters,
                user_properties,
            })
        },
    )
}

fn unsuback(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let v5 = v.is_v5();
    (
        packet_id(),
        v5_only(v5, vec(select(UNSUBACK_V5), 1..5)),
        ack_props(v5),
    )
        .prop_map(
            |(packet_id, reason_codes, (reason_string, user_properties))| {
                Packet::UnsubAck(UnsubAck {
                    packet_id,
                    reason_codes,
                    reason_string,
                    user_properties,
                })
            },
        )
}

fn disconnect(v: ProtocolVersion) -> BoxedStrategy<Packet> {
    if !v.is_v5() {
        return Just(Packet::Disconnect(Disconnect::default())).boxed();
    }
    (
        select(DISCONNECT_V5),
        option::of(any::<u32>()),
        option::of(text()),
        user(),
        option::of(text()),
    )
        .prop_map(|(reason_code, se, rs, up, sr)| {
            Packet::Disconnect(Disconnect {
                reason_code,
                session_expiry_interval: se,
                reason_string: rs,
                user_properties: up,
                server_reference: sr,
            })
        })
        .boxed()
}

fn auth() -> impl Strategy<Value = Packet> {
    (
        select(AUTH_V5),
        option::of(text()),
        option::of(binary()),
        option::of(text()),
        user(),
    )
        .prop_map(|(reason_code, am, ad, rs, up)| {
            Packet::Auth(Auth {
                reason_code,
                authentication_method: am,
                authentication_data: ad,
                reason_string: rs,
                user_properties: up,
            })
        })
}

/// Any packet valid in `v`.
pub fn packet(v: ProtocolVersion) -> BoxedStrategy<Packet> {
    let common = prop_oneof![
        connect(v),
        connack(v),
        publish(v),
        pub_resp(v, PUBACK_V5).prop_map(Packet::PubAck),
        pub_resp(v, PUBACK_V5).prop_map(Packet::PubRec),
        pub_resp(v, PUBREL_V5).prop_map(Packet::PubRel),
        pub_resp(v, PUBREL_V5).prop_map(Packet::PubComp),
        subscribe(v),
        suback(v),
        unsubscribe(v),
        unsuback(v),
        Just(Packet::PingReq),
        Just(Packet::PingResp),
        disconnect(v),
    ];
    if v.is_v5() {
        prop_oneof![10 => common, 1 => auth()].boxed()
    } else {
        common.boxed()
    }
}

fn versioned_packet() -> impl Strategy<Value = (ProtocolVersion, Packet)> {
    version().prop_flat_map(|v| packet(v).prop_map(move |p| (v, p)))
}

/// Decodes packets from `bytes` until `None` or an error; must not panic.
fn decode_all(bytes: &[u8], v: ProtocolVersion, limits: &Limits) {
    let mut buf = BytesMut::from(bytes);
    while let Ok(Some(p)) = decode(&mut buf, v, limits) {
        // Whatever decodes must encode, to the same length it came from
        // modulo non-minimal lengths and short forms: at least re-decode.
        let version = match &p {
            Packet::Connect(c) => c.protocol,
            _ => v,
        };
        let mut out = BytesMut::new();
        encode(&p, version, &mut out).expect("decoded packet must encode");
        let again = decode(&mut out, version, &Limits::default());
        assert_eq!(again, Ok(Some(p)));
        assert!(out.is_empty());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn encode_then_decode_gives_the_packet_back((v, p) in versioned_packet()) {
        let bytes = enc(&p, v);
        prop_assert_eq!(dec(&bytes, v), Ok(Some(p)));
    }

    #[test]
    fn byte_by_byte_decoding_waits_for_the_last_byte((v, p) in versioned_packet()) {
        let bytes = enc(&p, v);
        let whole = dec(&bytes, v);
        let mut buf = BytesMut::new();
        let limits = Limits::default();
        for (i, &byte) in bytes.iter().enumerate() {
            buf.extend_from_slice(&[byte]);
            let got = decode(&mut buf, v, &limits);
            if i + 1 < bytes.len() {
                prop_assert_eq!(got, Ok(None), "at byte {}", i);
                prop_assert_eq!(buf.len(), i + 1);
            } else {
                prop_assert_eq!(&got, &whole);
                prop_assert!(buf.is_empty());
            }
        }
    }

    #[test]
    fn encoded_len_matches_and_packets_concatenate(
        (v, ps) in version().prop_flat_map(|v| vec(packet(v), 1..5).prop_map(move |ps| (v, ps)))
    ) {
        let mut buf = BytesMut::new();
        for p in &ps {
            let before = buf.len();
            encode(p, v, &mut buf).unwrap();
            prop_assert_eq!(encoded_len(p, v), Ok(buf.len() - before));
        }
        let limits = Limits::default();
        for p in ps {
            prop_assert_eq!(decode(&mut buf, v, &limits), Ok(Some(p)));
        }
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..256), v in version()) {
        decode_all(&bytes, v, &Limits::default());
        decode_all(&bytes, v, &Limits { packet_bytes_max: 16 });
    }

    #[test]
    fn mutated_valid_packets_never_panic(
        (v, p) in versioned_packet(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = enc(&p, v);
        for (at, byte) in edits {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        decode_all(&bytes, v, &Limits::default());
        let cut = cut.index(bytes.len() + 1);
        decode_all(&bytes[..cut], v, &Limits::default());
    }
}
