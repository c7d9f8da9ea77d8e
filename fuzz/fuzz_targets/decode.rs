//! Decodes arbitrary bytes as a stream of packets for every protocol
//! version, until more bytes are needed or an error. Every packet decoded
//! must encode again, to `encoded_len` bytes, and decode back to itself.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tern_mqtt_codec::{
    Limits, Packet, ProtocolVersion, decode, encode, encoded_len, peek_packet_len,
};

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        packet_bytes_max: 64 * 1024,
    };
    let unlimited = Limits {
        packet_bytes_max: usize::MAX,
    };
    for version in [
        ProtocolVersion::V3_1,
        ProtocolVersion::V3_1_1,
        ProtocolVersion::V5,
    ] {
        let mut buf = BytesMut::from(data);
        loop {
            let before = buf.len();
            let peeked = peek_packet_len(&buf, &limits);
            match decode(&mut buf, version, &limits) {
                Ok(Some(packet)) => {
                    let consumed = before - buf.len();
                    assert_eq!(peeked, Ok(Some(consumed)), "peek_packet_len");
                    // CONNECT is written for the version it names.
                    let v = match &packet {
                        Packet::Connect(c) => c.protocol,
                        _ => version,
                    };
                    let mut out = BytesMut::new();
                    encode(&packet, v, &mut out).expect("a decoded packet encodes");
                    assert_eq!(encoded_len(&packet, v), Ok(out.len()), "encoded_len");
                    let again = decode(&mut out, v, &unlimited);
                    assert_eq!(again, Ok(Some(packet)), "re-decode");
                    assert!(out.is_empty(), "re-decode left bytes");
                }
                Ok(None) => {
                    assert_eq!(buf.len(), before, "Ok(None) consumed bytes");
                    break;
                }
                Err(_) => break,
            }
        }
    }
});
