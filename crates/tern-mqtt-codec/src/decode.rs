//! Decoding: bytes → [`Packet`].
//!
//! [`decode`] first reads the fixed header straight from the buffer (type,
//! flags, remaining length), checks it and the packet size, and only when
//! the whole packet is there splits it off the buffer as one frozen
//! [`bytes::Bytes`]; every field is then read from that frame, and binary
//! fields (payloads, correlation data, passwords) are zero-copy slices of it.

use bytes::{Buf, BytesMut};

use crate::properties::{self as props, Ctx};
use crate::wire::{Reader, VarInt, scan_var_int};
use crate::{
    Auth, ConnAck, Connect, DecodeError, Disconnect, LastWill, Limits, Packet, ProtocolVersion,
    PubResp, Publish, QoS, RetainHandling, SubAck, Subscribe, SubscribeFilter, SubscriptionOptions,
    UnsubAck, Unsubscribe, WillProperties,
};

/// Decodes one packet from the front of `buf`, consuming its bytes.
///
/// Returns `Ok(None)` when `buf` does not hold a whole packet yet (nothing is
/// consumed). `version` is the connection's protocol version, used for every
/// packet but CONNECT, which carries its own. The packet size is checked
/// against `limits` as soon as the fixed header is complete, before the body
/// is awaited or allocated.
///
/// On success exactly the packet's bytes are consumed. On error the
/// connection is unusable (the stream cannot be resynchronised) and how much
/// of `buf` was consumed is unspecified.
///
/// Version notes: AUTH (type 15) is only a packet in v5. For MQTT 3.1 the
/// DUP bit is tolerated on PUBREL, SUBSCRIBE and UNSUBSCRIBE, which 3.1
/// clients set on retries (3.1 defined those packets as QoS 1 messages).
pub fn decode(
    buf: &mut BytesMut,
    version: ProtocolVersion,
    limits: &Limits,
) -> Result<Option<Packet>, DecodeError> {
    let Some(header) = fixed_header(buf)? else {
        return Ok(None);
    };
    let kind = header.byte1 >> 4;
    let flags = header.byte1 & 0x0F;
    check_type_and_flags(kind, flags, version)?;
    let total = header.check_size(limits)?;
    if buf.len() < total {
        return Ok(None);
    }
    let mut frame = buf.split_to(total);
    frame.advance(header.len);
    let mut r = Reader::new(frame.freeze());
    let v5 = version.is_v5();

    let packet = match kind {
        1 => Packet::Connect(Box::new(decode_connect(&mut r)?)),
        2 => Packet::ConnAck(decode_connack(&mut r, v5)?),
        3 => Packet::Publish(decode_publish(&mut r, flags, v5)?),
        4 => Packet::PubAck(decode_pub_resp(&mut r, v5, &props::PUBACK, is_puback_code)?),
        5 => Packet::PubRec(decode_pub_resp(&mut r, v5, &props::PUBREC, is_puback_code)?),
        6 => Packet::PubRel(decode_pub_resp(&mut r, v5, &props::PUBREL, is_pubrel_code)?),
        7 => Packet::PubComp(decode_pub_resp(
            &mut r,
            v5,
            &props::PUBCOMP,
            is_pubrel_code,
        )?),
        8 => Packet::Subscribe(decode_subscribe(&mut r, v5)?),
        9 => Packet::SubAck(decode_suback(&mut r, v5)?),
        10 => Packet::Unsubscribe(decode_unsubscribe(&mut r, v5)?),
        11 => Packet::UnsubAck(decode_unsuback(&mut r, v5)?),
        12 => {
            r.expect_end()?;
            Packet::PingReq
        }
        13 => {
            r.expect_end()?;
            Packet::PingResp
        }
        14 => Packet::Disconnect(decode_disconnect(&mut r, v5)?),
        // check_type_and_flags let 15 through only for v5.
        _ => Packet::Auth(decode_auth(&mut r)?),
    };
    Ok(Some(packet))
}

/// Size in bytes of the first packet in `buf` (fixed header included), once
/// its fixed header is complete; `Ok(None)` before that.
///
/// Checks the remaining length encoding and the size against `limits`, not
/// the packet type or flags (which depend on the protocol version).
pub fn peek_packet_len(buf: &[u8], limits: &Limits) -> Result<Option<usize>, DecodeError> {
    match fixed_header(buf)? {
        Some(header) => header.check_size(limits).map(Some),
        None => Ok(None),
    }
}

/// The first byte and the remaining length of a fixed header (§2.1).
struct FixedHeader {
    byte1: u8,
    /// Bytes of the fixed header itself: 2..=5.
    len: usize,
    remaining: usize,
}

impl FixedHeader {
    /// Whole packet size, if within `limits`.
    fn check_size(&self, limits: &Limits) -> Result<usize, DecodeError> {
        let total = self.len + self.remaining;
        if total > limits.packet_bytes_max {
            return Err(DecodeError::PacketTooLarge {
                size: total,
                max: limits.packet_bytes_max,
            });
        }
        Ok(total)
    }
}

fn fixed_header(buf: &[u8]) -> Result<Option<FixedHeader>, DecodeError> {
    let Some((&byte1, rest)) = buf.split_first() else {
        return Ok(None);
    };
    match scan_var_int(rest) {
        Ok(VarInt::Done(remaining, n)) => Ok(Some(FixedHeader {
            byte1,
            len: 1 + n,
            remaining: remaining as usize,
        })),
        Ok(VarInt::Incomplete) => Ok(None),
        Err(()) => Err(DecodeError::MalformedRemainingLength),
    }
}

/// Packet type (§2.1.2) and the fixed flags (§2.1.3, [MQTT-2.2.2-2]).
fn check_type_and_flags(kind: u8, flags: u8, version: ProtocolVersion) -> Result<(), DecodeError> {
    let (packet, required) = match kind {
        1 => ("CONNECT", 0),
        2 => ("CONNACK", 0),
        3 => {
            let qos = (flags >> 1) & 0b11;
            if qos == 3 {
                // [MQTT-3.3.1-4]
                return Err(DecodeError::InvalidQoS);
            }
            if qos == 0 && flags & 0b1000 != 0 {
                // [MQTT-3.3.1-2]: DUP must be 0 for QoS 0.
                return Err(DecodeError::InvalidFlags {
                    packet: "PUBLISH",
                    flags,
                });
            }
            return Ok(());
        }
        4 => ("PUBACK", 0),
        5 => ("PUBREC", 0),
        6 => ("PUBREL", 0b0010),
        7 => ("PUBCOMP", 0),
        8 => ("SUBSCRIBE", 0b0010),
        9 => ("SUBACK", 0),
        10 => ("UNSUBSCRIBE", 0b0010),
        11 => ("UNSUBACK", 0),
        12 => ("PINGREQ", 0),
        13 => ("PINGRESP", 0),
        14 => ("DISCONNECT", 0),
        15 if version.is_v5() => ("AUTH", 0),
        _ => return Err(DecodeError::InvalidPacketType(kind)),
    };
    let checked = if version == ProtocolVersion::V3_1 && required != 0 {
        flags & 0b0111 // 3.1 retries set DUP on these.
    } else {
        flags
    };
    if checked != required {
        return Err(DecodeError::InvalidFlags { packet, flags });
    }
    Ok(())
}

fn nonzero_packet_id(r: &mut Reader) -> Result<u16, DecodeError> {
    match r.u16()? {
        0 => Err(DecodeError::ZeroPacketId), // [MQTT-2.2.1-3]
        id => Ok(id),
    }
}

// ------------------------------------------------------------------ CONNECT

const CONNECT_USERNAME: u8 = 0b1000_0000;
const CONNECT_PASSWORD: u8 = 0b0100_0000;
const CONNECT_WILL_RETAIN: u8 = 0b0010_0000;
const CONNECT_WILL_QOS: u8 = 0b0001_1000;
const CONNECT_WILL: u8 = 0b0000_0100;
const CONNECT_CLEAN: u8 = 0b0000_0010;
const CONNECT_RESERVED: u8 = 0b0000_0001;

fn decode_connect(r: &mut Reader) -> Result<Connect, DecodeError> {
    let name_is_mqtt = match r.prefixed_slice()? {
        b"MQTT" => true,
        b"MQIsdp" => false,
        _ => return Err(DecodeError::InvalidProtocolName), // [MQTT-3.1.2-1]
    };
    let protocol = match (name_is_mqtt, r.u8()?) {
        (true, 4) => ProtocolVersion::V3_1_1,
        (true, 5) => ProtocolVersion::V5,
        (false, 3) => ProtocolVersion::V3_1,
        (_, level) => return Err(DecodeError::UnsupportedProtocolVersion(level)), // [MQTT-3.1.2-2]
    };
    let v5 = protocol.is_v5();

    let flags = r.u8()?;
    let will_flag = flags & CONNECT_WILL != 0;
    let will_qos = (flags & CONNECT_WILL_QOS) >> 3;
    let will_retain = flags & CONNECT_WILL_RETAIN != 0;
    let has_username = flags & CONNECT_USERNAME != 0;
    let has_password = flags & CONNECT_PASSWORD != 0;
    let bad_flags = flags & CONNECT_RESERVED != 0 // [MQTT-3.1.2-3]
        || will_qos == 3 // [MQTT-3.1.2-14]
        || (!will_flag && (will_qos != 0 || will_retain)) // [MQTT-3.1.2-13], [MQTT-3.1.2-15]
        || (!v5 && has_password && !has_username); // [MQTT-3.1.2-22]
    if bad_flags {
        return Err(DecodeError::InvalidConnectFlags(flags));
    }

    let keep_alive = r.u16()?;
    let properties = if v5 {
        props::decode_connect(r)?
    } else {
        Default::default()
    };
    let client_id = r.string()?;

    let will = if will_flag {
        let properties = if v5 {
            props::decode_will(r)?
        } else {
            WillProperties::default()
        };
        let topic = r.string()?;
        check_topic_name(&topic)?;
        if topic.is_empty() {
            return Err(DecodeError::InvalidTopicName);
        }
        let payload = r.binary()?;
        Some(LastWill {
            topic,
            payload,
            qos: QoS::from_u8(will_qos).unwrap_or_default(),
            retain: will_retain,
            properties,
        })
    } else {
        None
    };
    let username = if has_username {
        Some(r.string()?)
    } else {
        None
    };
    let password = if has_password {
        Some(r.binary()?)
    } else {
        None
    };
    r.expect_end()?;

    Ok(Connect {
        protocol,
        clean_start: flags & CONNECT_CLEAN != 0,
        keep_alive,
        client_id,
        will,
        username,
        password,
        properties,
    })
}

// ------------------------------------------------------------------ CONNACK

fn decode_connack(r: &mut Reader, v5: bool) -> Result<ConnAck, DecodeError> {
    let ack_flags = r.u8()?;
    if ack_flags & 0xFE != 0 {
        return Err(DecodeError::InvalidConnAckFlags(ack_flags)); // [MQTT-3.2.2-1]
    }
    let reason_code = r.u8()?;
    let properties = if v5 {
        if !is_connack_code(reason_code) {
            return Err(DecodeError::InvalidReasonCode(reason_code));
        }
        // Lenient: a v5 CONNACK without the property length is read as
        // having no properties.
        if r.is_empty() {
            Default::default()
        } else {
            props::decode_connack(r)?
        }
    } else {
        if reason_code > 5 {
            return Err(DecodeError::InvalidReasonCode(reason_code));
        }
        Default::default()
    };
    r.expect_end()?;
    Ok(ConnAck {
        session_present: ack_flags & 1 != 0,
        reason_code,
        properties,
    })
}

// ------------------------------------------------------------------ PUBLISH

/// A topic name never holds wildcards [MQTT-3.3.2-2].
fn check_topic_name(topic: &str) -> Result<(), DecodeError> {
    if topic.bytes().any(|b| b == b'+' || b == b'#') {
        return Err(DecodeError::InvalidTopicName);
    }
    Ok(())
}

fn decode_publish(r: &mut Reader, flags: u8, v5: bool) -> Result<Publish, DecodeError> {
    // check_type_and_flags rejected QoS 3.
    let qos = QoS::from_u8((flags >> 1) & 0b11).unwrap_or_default();
    let topic = r.string()?;
    check_topic_name(&topic)?;
    let packet_id = if qos == QoS::AtMostOnce {
        None
    } else {
        Some(nonzero_packet_id(r)?)
    };
    let properties = if v5 {
        props::decode_publish(r)?
    } else {
        Default::default()
    };
    // [MQTT-4.7.3-1]; v5 allows an empty name when a topic alias is given.
    if topic.is_empty() && properties.topic_alias.is_none() {
        return Err(DecodeError::InvalidTopicName);
    }
    Ok(Publish {
        dup: flags & 0b1000 != 0,
        qos,
        retain: flags & 0b0001 != 0,
        topic,
        packet_id,
        payload: r.rest(),
        properties,
    })
}

// ------------------------------------------ PUBACK, PUBREC, PUBREL, PUBCOMP

/// §3.4.2.1 (PUBACK) and §3.5.2.1 (PUBREC).
fn is_puback_code(code: u8) -> bool {
    matches!(
        code,
        0x00 | 0x10 | 0x80 | 0x83 | 0x87 | 0x90 | 0x91 | 0x97 | 0x99
    )
}

/// §3.6.2.1 (PUBREL) and §3.7.2.1 (PUBCOMP).
fn is_pubrel_code(code: u8) -> bool {
    matches!(code, 0x00 | 0x92)
}

fn decode_pub_resp(
    r: &mut Reader,
    v5: bool,
    ctx: &'static Ctx,
    valid_code: fn(u8) -> bool,
) -> Result<PubResp, DecodeError> {
    let packet_id = nonzero_packet_id(r)?;
    let mut out = PubResp {
        packet_id,
        ..Default::default()
    };
    // v5 short forms: remaining length 2 (reason 0, no properties) and 3
    // (no property length) [§3.4.2.1].
    if v5 && !r.is_empty() {
        out.reason_code = r.u8()?;
        if !valid_code(out.reason_code) {
            return Err(DecodeError::InvalidReasonCode(out.reason_code));
        }
        if !r.is_empty() {
            (out.reason_string, out.user_properties) = props::decode_ack(r, ctx)?;
        }
    }
    r.expect_end()?;
    Ok(out)
}

// ---------------------------------------------------------------- SUBSCRIBE

fn subscription_options(byte: u8, v5: bool) -> Result<SubscriptionOptions, DecodeError> {
    let invalid = Err(DecodeError::InvalidSubscriptionOptions(byte));
    let Some(qos) = QoS::from_u8(byte & 0b11) else {
        return invalid; // [MQTT-3.8.3-4] (v3.1.1), QoS 3 is malformed
    };
    if !v5 {
        if byte & 0b1111_1100 != 0 {
            return invalid; // [MQTT-3-8.3-4] (v3.1.1)
        }
        return Ok(SubscriptionOptions {
            qos,
            ..Default::default()
        });
    }
    if byte & 0b1100_0000 != 0 {
        return invalid; // [MQTT-3.8.3-5]
    }
    let retain_handling = match (byte >> 4) & 0b11 {
        0 => RetainHandling::SendAtSubscribe,
        1 => RetainHandling::SendIfNew,
        2 => RetainHandling::DoNotSend,
        _ => return invalid,
    };
    Ok(SubscriptionOptions {
        qos,
        no_local: byte & 0b0100 != 0,
        retain_as_published: byte & 0b1000 != 0,
        retain_handling,
    })
}

fn decode_subscribe(r: &mut Reader, v5: bool) -> Result<Subscribe, DecodeError> {
    let packet_id = nonzero_packet_id(r)?;
    let (subscription_identifier, user_properties) = if v5 {
        props::decode_subscribe(r)?
    } else {
        Default::default()
    };
    // Filter syntax is left to the broker, which answers a bad one with
    // SUBACK 0x8F instead of closing the connection.
    let mut filters = Vec::new();
    while !r.is_empty() {
        let filter = r.string()?;
        let options = subscription_options(r.u8()?, v5)?;
        filters.push(SubscribeFilter { filter, options });
    }
    if filters.is_empty() {
        return Err(DecodeError::NoTopicFilters); // [MQTT-3.8.3-3]
    }
    Ok(Subscribe {
        packet_id,
        filters,
        subscription_identifier,
        user_properties,
    })
}

// ------------------------------------------------------------------- SUBACK

/// §3.9.3: the v3.1.1 return codes are a subset of these.
fn is_suback_code(code: u8, v5: bool) -> bool {
    if v5 {
        matches!(
            code,
            0x00 | 0x01 | 0x02 | 0x80 | 0x83 | 0x87 | 0x8F | 0x91 | 0x97 | 0x9E | 0xA1 | 0xA2
        )
    } else {
        matches!(code, 0x00 | 0x01 | 0x02 | 0x80)
    }
}

fn decode_suback(r: &mut Reader, v5: bool) -> Result<SubAck, DecodeError> {
    let packet_id = nonzero_packet_id(r)?;
    let (reason_string, user_properties) = if v5 {
        props::decode_ack(r, &props::SUBACK)?
    } else {
        Default::default()
    };
    let codes = r.rest();
    if codes.is_empty() {
        return Err(DecodeError::UnexpectedEof); // one code per filter, ≥ 1
    }
    if let Some(&bad) = codes.iter().find(|&&c| !is_suback_code(c, v5)) {
        return Err(DecodeError::InvalidReasonCode(bad));
    }
    Ok(SubAck {
        packet_id,
        reason_codes: codes.to_vec(),
        reason_string,
        user_properties,
    })
}

// -------------------------------------------------------------- UNSUBSCRIBE

fn decode_unsubscribe(r: &mut Reader, v5: bool) -> Result<Unsubscribe, DecodeError> {
    let packet_id = nonzero_packet_id(r)?;
    let user_properties = if v5 {
        props::decode_unsubscribe(r)?
    } else {
        Vec::new()
    };
    let mut filters = Vec::new();
    while !r.is_empty() {
        filters.push(r.string()?);
    }
    if filters.is_empty() {
        return Err(DecodeError::NoTopicFilters); // [MQTT-3.10.3-2]
    }
    Ok(Unsubscribe {
        packet_id,
        filters,
        user_properties,
    })
}

// ----------------------------------------------------------------- UNSUBACK

/// §3.11.3.
fn is_unsuback_code(code: u8) -> bool {
    matches!(code, 0x00 | 0x11 | 0x80 | 0x83 | 0x87 | 0x8F | 0x91)
}

fn decode_unsuback(r: &mut Reader, v5: bool) -> Result<UnsubAck, DecodeError> {
    let packet_id = nonzero_packet_id(r)?;
    if !v5 {
        r.expect_end()?;
        return Ok(UnsubAck {
            packet_id,
            ..Default::default()
        });
    }
    let (reason_string, user_properties) = props::decode_ack(r, &props::UNSUBACK)?;
    let codes = r.rest();
    if codes.is_empty() {
        return Err(DecodeError::UnexpectedEof); // one code per filter, ≥ 1
    }
    if let Some(&bad) = codes.iter().find(|&&c| !is_unsuback_code(c)) {
        return Err(DecodeError::InvalidReasonCode(bad));
    }
    Ok(UnsubAck {
        packet_id,
        reason_codes: codes.to_vec(),
        reason_string,
        user_properties,
    })
}

// --------------------------------------------------------------- DISCONNECT

/// §3.14.2.1.
fn is_disconnect_code(code: u8) -> bool {
    matches!(
        code,
        0x00 | 0x04
            | 0x80
            | 0x81
            | 0x82
            | 0x83
            | 0x87
            | 0x89
            | 0x8B
            | 0x8D
            | 0x8E
            | 0x8F
            | 0x90
            | 0x93
            | 0x94
            | 0x95
            | 0x96
            | 0x97
            | 0x98
            | 0x99
            | 0x9A
            | 0x9B
            | 0x9C
            | 0x9D
            | 0x9E
            | 0x9F
            | 0xA0
            | 0xA1
            | 0xA2
    )
}

fn decode_disconnect(r: &mut Reader, v5: bool) -> Result<Disconnect, DecodeError> {
    let mut out = Disconnect::default();
    // v5: remaining length 0 means reason 0; 1 means no properties
    // [§3.14.2.1], [§3.14.2.2.1].
    if v5 && !r.is_empty() {
        out.reason_code = r.u8()?;
        if !is_disconnect_code(out.reason_code) {
            return Err(DecodeError::InvalidReasonCode(out.reason_code));
        }
        if !r.is_empty() {
            props::decode_disconnect(r, &mut out)?;
        }
    }
    r.expect_end()?;
    Ok(out)
}

// --------------------------------------------------------------------- AUTH

/// §3.15.2.1.
fn is_auth_code(code: u8) -> bool {
    matches!(code, 0x00 | 0x18 | 0x19)
}

fn decode_auth(r: &mut Reader) -> Result<Auth, DecodeError> {
    let mut out = Auth::default();
    // Remaining length 0: success, no properties [§3.15.2.1]. A lone reason
    // code (remaining length 1) is read as having no properties.
    if !r.is_empty() {
        out.reason_code = r.u8()?;
        if !is_auth_code(out.reason_code) {
            return Err(DecodeError::InvalidReasonCode(out.reason_code));
        }
        if !r.is_empty() {
            props::decode_auth(r, &mut out)?;
        }
    }
    r.expect_end()?;
    Ok(out)
}

// ------------------------------------------------------------------ CONNACK

/// §3.2.2.2.
fn is_connack_code(code: u8) -> bool {
    matches!(
        code,
        0x00 | 0x80
            | 0x81
            | 0x82
            | 0x83
            | 0x84
            | 0x85
            | 0x86
            | 0x87
            | 0x88
            | 0x89
            | 0x8A
            | 0x8C
            | 0x90
            | 0x95
            | 0x97
            | 0x99
            | 0x9A
            | 0x9B
            | 0x9C
            | 0x9D
            | 0x9F
    )
}
