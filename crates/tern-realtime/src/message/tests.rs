use super::*;
use proptest::prelude::*;
use serde_json::json;

fn pm_json(v: serde_json::Value) -> ProtocolMessage {
    ProtocolMessage::decode(v.to_string().as_bytes(), Format::Json).expect("decodes")
}

#[test]
fn decode_ignores_unknown_fields_and_nulls() {
    let pm = pm_json(json!({
        "action": 10, "channel": "room", "params": null, "flags": null,
        "size": 12, "whatever": {"x": [1, 2]},
        "messages": [{"name": null, "data": "hi", "size": 2}]
    }));
    assert_eq!(pm.action, action::ATTACH);
    assert_eq!(pm.channel.as_deref(), Some("room"));
    assert_eq!(pm.params, None);
    let m = &pm.messages.as_ref().unwrap()[0];
    assert_eq!(m.name, None);
    assert_eq!(m.data, Some(Data::Text("hi".into())));
}

#[test]
fn decode_requires_an_action() {
    assert!(ProtocolMessage::decode(b"{}", Format::Json).is_err());
    assert!(ProtocolMessage::decode(b"{\"action\":null}", Format::Json).is_err());
    assert!(ProtocolMessage::decode(b"not json", Format::Json).is_err());
    assert!(ProtocolMessage::decode(&[0xc1], Format::Msgpack).is_err());
}

#[test]
fn encode_omits_absent_fields() {
    let pm = ProtocolMessage::new(action::HEARTBEAT);
    assert_eq!(pm.encode(Format::Json), br#"{"action":0}"#);
    let e = ProtocolMessage::with_error(action::ERROR, ErrorInfo::new(40000, 400, "bad"));
    let v: serde_json::Value = serde_json::from_slice(&e.encode(Format::Json)).unwrap();
    assert_eq!(v["error"]["code"], 40000);
    assert_eq!(v["error"]["statusCode"], 400);
    assert_eq!(v["error"]["message"], "bad");
}

#[test]
fn msgpack_uses_maps_with_string_keys_and_bin() {
    let pm = ProtocolMessage {
        action: action::MESSAGE,
        channel: Some("c".into()),
        messages: Some(vec![Message {
            data: Some(Data::Binary(Bytes::from_static(&[0, 159, 255]))),
            ..Message::default()
        }]),
        ..ProtocolMessage::default()
    };
    let bytes = pm.encode(Format::Msgpack);
    let v: rmpv::Value = rmpv::decode::read_value(&mut &bytes[..]).unwrap();
    let map = v.as_map().expect("a map");
    assert!(map.iter().all(|(k, _)| k.is_str()));
    let back = ProtocolMessage::decode(&bytes, Format::Msgpack).unwrap();
    assert_eq!(back, pm);
}

#[test]
fn json_receiver_gets_base64_with_the_token_appended() {
    let pm = ProtocolMessage {
        action: action::MESSAGE,
        messages: Some(vec![
            Message {
                data: Some(Data::Binary(Bytes::from_static(b"\x00\x01"))),
                ..Message::default()
            },
            Message {
                data: Some(Data::Binary(Bytes::from_static(b"x"))),
                encoding: Some("utf-8/cipher+aes-128-cbc".into()),
                ..Message::default()
            },
        ]),
        ..ProtocolMessage::default()
    };
    let v: serde_json::Value = serde_json::from_slice(&pm.encode(Format::Json)).unwrap();
    assert_eq!(v["messages"][0]["data"], "AAE=");
    assert_eq!(v["messages"][0]["encoding"], "base64");
    assert_eq!(
        v["messages"][1]["encoding"],
        "utf-8/cipher+aes-128-cbc/base64"
    );
}

#[test]
fn to_hub_text_json_binary_base64() {
    let m = Message {
        data: Some(Data::Text("héllo".into())),
        name: Some("greet".into()),
        ..Message::default()
    };
    let h = m.into_hub("room", Some("\0rt:c1".into())).unwrap();
    let p = h.props.as_deref().unwrap();
    assert_eq!(&h.payload[..], "héllo".as_bytes());
    assert_eq!(p.payload_format, Some(1));
    assert_eq!(p.name.as_deref(), Some("greet"));
    assert_eq!(p.encoding, None);
    assert_eq!(h.origin.as_deref(), Some("\0rt:c1"));
    assert_eq!(&*h.topic, "room");

    let m = Message {
        data: Some(Data::Text(r#"{"a":1}"#.into())),
        encoding: Some("json".into()),
        ..Message::default()
    };
    let h = m.into_hub("room", None).unwrap();
    let p = h.props.as_deref().unwrap();
    assert_eq!(p.encoding.as_deref(), Some("json"));
    assert_eq!(p.content_type.as_deref(), Some("application/json"));
    assert_eq!(p.payload_format, Some(1));

    let m = Message {
        data: Some(Data::Text("AAEC".into())),
        encoding: Some("base64".into()),
        ..Message::default()
    };
    let h = m.into_hub("room", None).unwrap();
    let p = h.props.as_deref().unwrap();
    assert_eq!(&h.payload[..], &[0, 1, 2]);
    assert_eq!(p.payload_format, Some(0));
    assert_eq!(p.encoding, None);

    let m = Message {
        data: Some(Data::Text("AAEC".into())),
        encoding: Some("utf-8/cipher+aes-128-cbc/base64".into()),
        ..Message::default()
    };
    let h = m.into_hub("room", None).unwrap();
    let p = h.props.as_deref().unwrap();
    assert_eq!(p.encoding.as_deref(), Some("utf-8/cipher+aes-128-cbc"));
    assert_eq!(p.content_type, None);

    let m = Message {
        data: Some(Data::Binary(Bytes::from_static(&[9, 8]))),
        ..Message::default()
    };
    let h = m.into_hub("room", None).unwrap();
    assert_eq!(h.props.as_deref().unwrap().payload_format, Some(0));

    let m = Message {
        data: Some(Data::Json(json!({"k": [1, true]}))),
        ..Message::default()
    };
    let h = m.into_hub("room", None).unwrap();
    let p = h.props.as_deref().unwrap();
    assert_eq!(&h.payload[..], br#"{"k":[1,true]}"#);
    assert_eq!(p.encoding.as_deref(), Some("json"));
    assert_eq!(p.content_type.as_deref(), Some("application/json"));
}

#[test]
fn bad_base64_is_40013() {
    let m = Message {
        data: Some(Data::Text("!!!".into())),
        encoding: Some("base64".into()),
        ..Message::default()
    };
    let e = m.into_hub("room", None).unwrap_err();
    assert_eq!((e.code, e.status_code), (40013, 400));
}

#[test]
fn extras_headers_become_user_properties_in_order() {
    // Raw text: `json!` would sort the keys.
    let text = r#"{"action": 15, "messages": [{"data": "x",
        "extras": {"push": {"n": 1}, "headers": {"z": "1", "a": "2", "m": 3}, "ref": {"type": "t"}}}]}"#;
    let pm = ProtocolMessage::decode(text.as_bytes(), Format::Json).unwrap();
    let m = pm.messages.unwrap().remove(0);
    let h = m.into_hub("c", None).unwrap();
    let p = h.props.as_deref().unwrap();
    assert_eq!(
        p.user_properties,
        vec![
            ("z".to_owned(), "1".to_owned()),
            ("a".to_owned(), "2".to_owned()),
            ("m".to_owned(), "3".to_owned())
        ]
    );
    assert_eq!(
        p.extras.as_deref(),
        Some(r#"{"push":{"n":1},"ref":{"type":"t"}}"#)
    );
    let back = Message::from_hub(&h, 5);
    let e = back.extras.unwrap();
    assert_eq!(e.headers, p.user_properties);
    assert_eq!(e.other.len(), 2);
}

#[test]
fn from_hub_mqtt_payloads() {
    // MQTT 3.1.1: no props; UTF-8 becomes text, the rest bytes.
    let mut h = tern_hub::Message::new("t", "plain", 0);
    h.seq = 42;
    let m = Message::from_hub(&h, 1000);
    assert_eq!(m.data, Some(Data::Text("plain".into())));
    assert_eq!(m.id.as_deref(), Some("000000000000002a:0"));
    assert_eq!(m.serial.as_deref(), Some("000000000000002a"));
    assert_eq!(m.timestamp, Some(1000));
    assert_eq!(m.extras, None);
    assert_eq!(m.encoding, None);

    let h = tern_hub::Message::new("t", vec![0xff, 0xfe], 0);
    assert!(matches!(
        Message::from_hub(&h, 0).data,
        Some(Data::Binary(_))
    ));

    // MQTT 5 content type JSON: encoding json when the text parses.
    let mut h = tern_hub::Message::new("t", r#"{"a":1}"#, 0);
    h.props = Some(Box::new(tern_hub::MessageProps {
        content_type: Some("application/json".into()),
        user_properties: vec![("k".into(), "v".into())],
        ..Default::default()
    }));
    let m = Message::from_hub(&h, 0);
    assert_eq!(m.encoding.as_deref(), Some("json"));
    assert_eq!(m.extras.unwrap().headers, vec![("k".into(), "v".into())]);
    h.payload = Bytes::from_static(b"not json");
    assert_eq!(Message::from_hub(&h, 0).encoding, None);

    // Declared bytes stay bytes even when they happen to be UTF-8.
    let mut h = tern_hub::Message::new("t", "abc", 0);
    h.props = Some(Box::new(tern_hub::MessageProps {
        payload_format: Some(0),
        ..Default::default()
    }));
    assert_eq!(
        Message::from_hub(&h, 0).data,
        Some(Data::Binary(Bytes::from_static(b"abc")))
    );
}

#[test]
fn channel_names() {
    assert_eq!(channel_name("room:1").unwrap(), "room:1");
    assert_eq!(channel_name("[?rewind=1]room").unwrap(), "room");
    assert_eq!(channel_name("a/b").unwrap(), "a/b");
    for bad in ["", "a/+", "a/#", "a\0b", "[?rewind=1]", "[?x", "$share/g/t"] {
        let e = channel_name(bad).unwrap_err();
        assert_eq!((e.code, e.status_code), (40010, 400), "{bad:?}");
    }
}

#[test]
fn serials_sort_in_publish_order() {
    assert!(serial_of(9) < serial_of(10));
    assert!(serial_of(255) < serial_of(256));
    assert!(serial_of(u64::MAX - 1) < serial_of(u64::MAX));
}

#[test]
fn presence_normalize_decodes_base64() {
    let mut p = PresenceMessage {
        action: presence_action::ENTER,
        data: Some(Data::Text("AQI=".into())),
        encoding: Some("base64".into()),
        ..PresenceMessage::default()
    };
    p.normalize().unwrap();
    assert_eq!(p.data, Some(Data::Binary(Bytes::from_static(&[1, 2]))));
    assert_eq!(p.encoding, None);
}

fn arb_text() -> impl Strategy<Value = String> {
    "\\PC{0,40}"
}

fn arb_data() -> impl Strategy<Value = Option<Data>> {
    prop_oneof![
        Just(None),
        arb_text().prop_map(|t| Some(Data::Text(t))),
        proptest::collection::vec(any::<u8>(), 0..40)
            .prop_map(|b| Some(Data::Binary(Bytes::from(b)))),
    ]
}

fn arb_message() -> impl Strategy<Value = Message> {
    (
        proptest::option::of(arb_text()),
        proptest::option::of(arb_text()),
        arb_data(),
        proptest::option::of(prop_oneof![
            Just("json".to_owned()),
            Just("utf-8/cipher+aes-128-cbc".to_owned())
        ]),
        proptest::option::of(arb_text()),
        proptest::collection::vec(("[a-z]{1,8}", arb_text()), 0..4),
    )
        .prop_map(|(id, name, data, encoding, client_id, headers)| Message {
            id,
            name,
            data,
            encoding,
            client_id,
            extras: (!headers.is_empty()).then(|| Extras {
                headers,
                other: Vec::new(),
            }),
            ..Message::default()
        })
}

proptest! {
    #[test]
    fn codec_round_trips(m in arb_message(), serial in any::<i64>(), msgpack in any::<bool>()) {
        let format = if msgpack { Format::Msgpack } else { Format::Json };
        let pm = ProtocolMessage {
            action: action::MESSAGE,
            channel: Some("c".into()),
            msg_serial: Some(serial),
            messages: Some(vec![m.clone()]),
            ..ProtocolMessage::default()
        };
        let back = ProtocolMessage::decode(&pm.encode(format), format).unwrap();
        let mut expected = pm.clone();
        if format == Format::Json {
            for x in expected.messages.iter_mut().flatten() {
                x.make_json_ready();
            }
        }
        prop_assert_eq!(back, expected);
    }

    /// wire → hub → wire keeps data (as bytes or text), encoding, name,
    /// id, clientId and headers, whatever format carried it.
    #[test]
    fn hub_mapping_round_trips(m in arb_message(), msgpack in any::<bool>()) {
        let format = if msgpack { Format::Msgpack } else { Format::Json };
        // Through the publisher's wire format first.
        let pm = ProtocolMessage { action: action::MESSAGE, messages: Some(vec![m.clone()]), ..ProtocolMessage::default() };
        let received = ProtocolMessage::decode(&pm.encode(format), format).unwrap().messages.unwrap().remove(0);
        let mut h = received.into_hub("c", None).unwrap();
        h.seq = 7;
        let out = Message::from_hub(&h, 0);
        let expected_data = match m.data.clone() {
            None => Some(Data::Text(String::new())),
            other => other,
        };
        prop_assert_eq!(out.data, expected_data);
        prop_assert_eq!(out.encoding, m.encoding.clone());
        prop_assert_eq!(out.name, m.name.clone());
        prop_assert_eq!(out.client_id, m.client_id.clone());
        prop_assert_eq!(out.id, Some(m.id.clone().unwrap_or_else(|| id_of(7))));
        prop_assert_eq!(out.extras.map(|e| e.headers).unwrap_or_default(),
            m.extras.map(|e| e.headers).unwrap_or_default());
    }

    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = ProtocolMessage::decode(&bytes, Format::Json);
        let _ = ProtocolMessage::decode(&bytes, Format::Msgpack);
    }
}
