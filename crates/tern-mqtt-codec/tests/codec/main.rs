//! Tests of the public codec API, in one binary:
//! - `rules`: every decoder rule, with hand-written malformed bytes and
//!   the exact `DecodeError` expected, named after the spec statement;
//! - `roundtrip`: every packet type, every property, per version;
//! - `props`: proptest round trips, incremental feeding, arbitrary bytes;
//! - `interop`: cross-checks against rumqttc's independent codec, and the
//!   (ignored) writer of the fuzz seed corpus.

mod interop;
mod props;
mod roundtrip;
mod rules;

use bytes::BytesMut;
use tern_mqtt_codec::{
    DecodeError, Limits, Packet, ProtocolVersion, decode, encode, encoded_len, peek_packet_len,
};

pub use ProtocolVersion::{V3_1, V3_1_1, V5};

/// A variable byte integer.
pub fn vbi(mut v: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let mut b = (v % 128) as u8;
        v /= 128;
        if v > 0 {
            b |= 0x80;
        }
        out.push(b);
        if v == 0 {
            return out;
        }
    }
}

/// A whole packet: first byte, remaining length, body.
pub fn pkt(byte1: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![byte1];
    out.extend(vbi(body.len()));
    out.extend_from_slice(body);
    out
}

/// A two-byte-length-prefixed string or binary field.
pub fn s(v: impl AsRef<[u8]>) -> Vec<u8> {
    let v = v.as_ref();
    let mut out = (v.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(v);
    out
}

/// A v5 property block: length, then the properties.
pub fn props(p: &[u8]) -> Vec<u8> {
    let mut out = vbi(p.len());
    out.extend_from_slice(p);
    out
}

/// Decodes `bytes` (default limits). On success the whole input must have
/// been consumed; on `Ok(None)` none of it.
pub fn dec(bytes: &[u8], v: ProtocolVersion) -> Result<Option<Packet>, DecodeError> {
    let mut buf = BytesMut::from(bytes);
    let out = decode(&mut buf, v, &Limits::default());
    match &out {
        Ok(Some(_)) => assert!(buf.is_empty(), "{} bytes left", buf.len()),
        Ok(None) => assert_eq!(&buf[..], bytes, "Ok(None) consumed bytes"),
        Err(_) => {}
    }
    out
}

/// Decodes `bytes`, which must be exactly one valid packet.
pub fn dec_ok(bytes: &[u8], v: ProtocolVersion) -> Packet {
    match dec(bytes, v) {
        Ok(Some(p)) => p,
        other => panic!("expected a packet from {bytes:02x?}, got {other:?}"),
    }
}

/// The error decoding `bytes` gives.
pub fn dec_err(bytes: &[u8], v: ProtocolVersion) -> DecodeError {
    match dec(bytes, v) {
        Err(e) => e,
        other => panic!("expected an error from {bytes:02x?}, got {other:?}"),
    }
}

/// Encodes `p`, checking `encoded_len` against what was written.
pub fn enc(p: &Packet, v: ProtocolVersion) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode(p, v, &mut out).expect("encode");
    assert_eq!(encoded_len(p, v), Ok(out.len()), "encoded_len of {p:?}");
    assert_eq!(
        peek_packet_len(&out, &Limits::default()),
        Ok(Some(out.len()))
    );
    out.to_vec()
}

/// encode → decode gives `p` back.
pub fn round_trip(p: &Packet, v: ProtocolVersion) -> Vec<u8> {
    let bytes = enc(p, v);
    assert_eq!(&dec_ok(&bytes, v), p, "round trip in {v:?}");
    bytes
}
