//! Encoding: [`Packet`] → bytes.
//!
//! One generic body writer serves both [`encode`] and [`encoded_len`]: run
//! against a counting sink it sizes the packet, run against the output
//! buffer it writes it, so the two always agree. Every error is found by
//! the sizing pass, before anything is written to the output.

use bytes::BytesMut;

use crate::properties::{AckProps, SubscribeProps, UserProps, put_props};
use crate::wire::{Counter, Sink, VAR_INT_MAX, var_int_len};
use crate::{
    Connect, Disconnect, EncodeError, Packet, ProtocolVersion, PubResp, QoS, RetainHandling,
    SubscriptionOptions,
};

/// Appends the wire form of `packet` for `version` to `out`. Fields that do
/// not exist in 3.1.x (properties, v5 reason codes) are omitted there.
///
/// CONNECT is written for its own [`Connect::protocol`] (`MQIsdp`/3 for
/// 3.1, `MQTT`/4, `MQTT`/5), whatever `version` says, as [`crate::decode`]
/// reads it. In v5, acks whose reason code is 0 and that have no properties
/// use the short forms (PUBACK..PUBCOMP: 2 bytes; DISCONNECT, AUTH: empty).
/// A QoS 0 PUBLISH is written without DUP flag and packet id, whatever the
/// struct holds. On error nothing is written.
pub fn encode(
    packet: &Packet,
    version: ProtocolVersion,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    let (byte1, remaining) = header(packet, version)?;
    out.reserve(1 + var_int_len(remaining) + remaining as usize);
    Sink::put_u8(out, byte1);
    out.put_var_int(remaining);
    write_body(packet, version, out)
}

/// The number of bytes [`encode`] would write for `packet`.
pub fn encoded_len(packet: &Packet, version: ProtocolVersion) -> Result<usize, EncodeError> {
    let (_, remaining) = header(packet, version)?;
    Ok(1 + var_int_len(remaining) + remaining as usize)
}

/// The parts of an outgoing PUBLISH, borrowed: lets a server encode a
/// delivery straight from its stored message without building a
/// [`crate::Publish`] (no topic or payload copy into an owned struct).
#[derive(Debug, Clone, Copy)]
pub struct PublishRef<'a> {
    /// Redelivery flag (never written for QoS 0).
    pub dup: bool,
    /// Quality of service.
    pub qos: QoS,
    /// Retain flag.
    pub retain: bool,
    /// Empty when a topic alias carries the name (v5).
    pub topic: &'a str,
    /// Required for QoS 1 and 2.
    pub packet_id: Option<u16>,
    /// Written only for v5.
    pub properties: &'a crate::PublishProperties,
    /// The application message.
    pub payload: &'a [u8],
}

/// Appends a PUBLISH built from borrowed parts; the same bytes as
/// [`encode`] of the equivalent [`crate::Publish`]. Returns the number of
/// bytes written. On error nothing is written.
pub fn encode_publish(
    p: &PublishRef<'_>,
    version: ProtocolVersion,
    out: &mut BytesMut,
) -> Result<usize, EncodeError> {
    let v5 = version.is_v5();
    let mut count = Counter::default();
    write_publish_body(p, v5, &mut count)?;
    if count.0 > VAR_INT_MAX as usize {
        return Err(EncodeError::PacketTooLarge);
    }
    let remaining = count.0 as u32;
    let dup = p.dup && p.qos != QoS::AtMostOnce;
    let byte1 = 0x30 | (u8::from(dup) << 3) | ((p.qos as u8) << 1) | u8::from(p.retain);
    let total = 1 + var_int_len(remaining) + remaining as usize;
    out.reserve(total);
    Sink::put_u8(out, byte1);
    out.put_var_int(remaining);
    write_publish_body(p, v5, out)?;
    Ok(total)
}

/// The size [`encode_publish`] would write.
pub fn encoded_publish_len(
    p: &PublishRef<'_>,
    version: ProtocolVersion,
) -> Result<usize, EncodeError> {
    let mut count = Counter::default();
    write_publish_body(p, version.is_v5(), &mut count)?;
    if count.0 > VAR_INT_MAX as usize {
        return Err(EncodeError::PacketTooLarge);
    }
    Ok(1 + var_int_len(count.0 as u32) + count.0)
}

fn write_publish_body<S: Sink>(p: &PublishRef<'_>, v5: bool, s: &mut S) -> Result<(), EncodeError> {
    s.put_str(p.topic)?;
    if p.qos != QoS::AtMostOnce {
        match p.packet_id {
            Some(id) if id != 0 => s.put_u16(id),
            _ => return Err(EncodeError::MissingPacketId),
        }
    }
    if v5 {
        put_props(s, p.properties)?;
    }
    s.put_slice(p.payload);
    Ok(())
}

/// First byte of the fixed header and remaining length.
fn header(packet: &Packet, version: ProtocolVersion) -> Result<(u8, u32), EncodeError> {
    let byte1 = match packet {
        Packet::Connect(_) => 0x10,
        Packet::ConnAck(_) => 0x20,
        Packet::Publish(p) => {
            // DUP is never set on QoS 0 [MQTT-3.3.1-2], e.g. after a downgrade.
            let dup = p.dup && p.qos != QoS::AtMostOnce;
            0x30 | (u8::from(dup) << 3) | ((p.qos as u8) << 1) | u8::from(p.retain)
        }
        Packet::PubAck(_) => 0x40,
        Packet::PubRec(_) => 0x50,
        Packet::PubRel(_) => 0x62,
        Packet::PubComp(_) => 0x70,
        Packet::Subscribe(_) => 0x82,
        Packet::SubAck(_) => 0x90,
        Packet::Unsubscribe(_) => 0xA2,
        Packet::UnsubAck(_) => 0xB0,
        Packet::PingReq => 0xC0,
        Packet::PingResp => 0xD0,
        Packet::Disconnect(_) => 0xE0,
        Packet::Auth(_) if version.is_v5() => 0xF0,
        Packet::Auth(_) => return Err(EncodeError::NotInVersion),
    };
    let mut count = Counter::default();
    write_body(packet, version, &mut count)?;
    if count.0 > VAR_INT_MAX as usize {
        return Err(EncodeError::PacketTooLarge);
    }
    Ok((byte1, count.0 as u32))
}

/// Everything after the fixed header.
fn write_body<S: Sink>(
    packet: &Packet,
    version: ProtocolVersion,
    s: &mut S,
) -> Result<(), EncodeError> {
    let v5 = version.is_v5();
    match packet {
        Packet::Connect(c) => write_connect(c, s)?,
        Packet::ConnAck(c) => {
            s.put_u8(u8::from(c.session_present));
            s.put_u8(c.reason_code);
            if v5 {
                put_props(s, &c.properties)?;
            }
        }
        Packet::Publish(p) => write_publish_body(
            &PublishRef {
                dup: p.dup,
                qos: p.qos,
                retain: p.retain,
                topic: &p.topic,
                packet_id: p.packet_id,
                properties: &p.properties,
                payload: &p.payload,
            },
            v5,
            s,
        )?,
        Packet::PubAck(p) | Packet::PubRec(p) | Packet::PubRel(p) | Packet::PubComp(p) => {
            write_pub_resp(p, v5, s)?
        }
        Packet::Subscribe(sub) => {
            s.put_u16(sub.packet_id);
            if v5 {
                put_props(
                    s,
                    &SubscribeProps {
                        subscription_identifier: sub.subscription_identifier,
                        user_properties: &sub.user_properties,
                    },
                )?;
            }
            for f in &sub.filters {
                s.put_str(&f.filter)?;
                s.put_u8(options_byte(&f.options, v5));
            }
        }
        Packet::SubAck(a) => {
            s.put_u16(a.packet_id);
            if v5 {
                put_props(
                    s,
                    &AckProps {
                        reason_string: &a.reason_string,
                        user_properties: &a.user_properties,
                    },
                )?;
            }
            s.put_slice(&a.reason_codes);
        }
        Packet::Unsubscribe(u) => {
            s.put_u16(u.packet_id);
            if v5 {
                put_props(s, &UserProps(&u.user_properties))?;
            }
            for f in &u.filters {
                s.put_str(f)?;
            }
        }
        Packet::UnsubAck(a) => {
            s.put_u16(a.packet_id);
            if v5 {
                put_props(
                    s,
                    &AckProps {
                        reason_string: &a.reason_string,
                        user_properties: &a.user_properties,
                    },
                )?;
                s.put_slice(&a.reason_codes);
            }
        }
        Packet::PingReq | Packet::PingResp => {}
        Packet::Disconnect(d) => {
            if v5 && (d.reason_code != 0 || !disconnect_props_empty(d)) {
                s.put_u8(d.reason_code);
                if !disconnect_props_empty(d) {
                    put_props(s, d)?;
                }
            }
        }
        Packet::Auth(a) => {
            let no_props = a.authentication_method.is_none()
                && a.authentication_data.is_none()
                && a.reason_string.is_none()
                && a.user_properties.is_empty();
            if a.reason_code != 0 || !no_props {
                s.put_u8(a.reason_code);
                put_props(s, a)?;
            }
        }
    }
    Ok(())
}

fn write_connect<S: Sink>(c: &Connect, s: &mut S) -> Result<(), EncodeError> {
    let (name, level) = match c.protocol {
        ProtocolVersion::V3_1 => ("MQIsdp", 3),
        ProtocolVersion::V3_1_1 => ("MQTT", 4),
        ProtocolVersion::V5 => ("MQTT", 5),
    };
    let v5 = c.protocol.is_v5();
    s.put_str(name)?;
    s.put_u8(level);

    let mut flags = 0u8;
    if c.username.is_some() {
        flags |= 0b1000_0000;
    }
    if c.password.is_some() {
        flags |= 0b0100_0000;
    }
    if let Some(w) = &c.will {
        flags |= 0b0000_0100 | ((w.qos as u8) << 3);
        if w.retain {
            flags |= 0b0010_0000;
        }
    }
    if c.clean_start {
        flags |= 0b0000_0010;
    }
    s.put_u8(flags);
    s.put_u16(c.keep_alive);
    if v5 {
        put_props(s, &c.properties)?;
    }
    s.put_str(&c.client_id)?;
    if let Some(w) = &c.will {
        if v5 {
            put_props(s, &w.properties)?;
        }
        s.put_str(&w.topic)?;
        s.put_prefixed(&w.payload)?;
    }
    if let Some(u) = &c.username {
        s.put_str(u)?;
    }
    if let Some(p) = &c.password {
        s.put_prefixed(p)?;
    }
    Ok(())
}

fn write_pub_resp<S: Sink>(p: &PubResp, v5: bool, s: &mut S) -> Result<(), EncodeError> {
    s.put_u16(p.packet_id);
    if !v5 {
        return Ok(());
    }
    let props = AckProps {
        reason_string: &p.reason_string,
        user_properties: &p.user_properties,
    };
    if p.reason_code == 0 && props.is_empty() {
        return Ok(()); // remaining length 2
    }
    s.put_u8(p.reason_code);
    if !props.is_empty() {
        put_props(s, &props)?;
    }
    Ok(())
}

fn disconnect_props_empty(d: &Disconnect) -> bool {
    d.session_expiry_interval.is_none()
        && d.reason_string.is_none()
        && d.user_properties.is_empty()
        && d.server_reference.is_none()
}

/// §3.8.3.1; only the QoS bits exist before v5.
fn options_byte(o: &SubscriptionOptions, v5: bool) -> u8 {
    let mut b = o.qos as u8;
    if v5 {
        if o.no_local {
            b |= 0b0100;
        }
        if o.retain_as_published {
            b |= 0b1000;
        }
        b |= match o.retain_handling {
            RetainHandling::SendAtSubscribe => 0,
            RetainHandling::SendIfNew => 1,
            RetainHandling::DoNotSend => 2,
        } << 4;
    }
    b
}
