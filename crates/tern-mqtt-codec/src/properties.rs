//! MQTT 5 properties (§2.2.2): identifiers, which packet may carry which
//! (§2.2.2.2 table), value checks, and one decoder and one encoder per
//! property set.

use bytes::Bytes;

use crate::wire::{Counter, Reader, Sink, VAR_INT_MAX};
use crate::{
    ConnAckProperties, ConnectProperties, DecodeError, Disconnect, EncodeError, PublishProperties,
    UserProperty, WillProperties,
};

pub(crate) const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
pub(crate) const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
pub(crate) const CONTENT_TYPE: u8 = 0x03;
pub(crate) const RESPONSE_TOPIC: u8 = 0x08;
pub(crate) const CORRELATION_DATA: u8 = 0x09;
pub(crate) const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
pub(crate) const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
pub(crate) const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
pub(crate) const SERVER_KEEP_ALIVE: u8 = 0x13;
pub(crate) const AUTHENTICATION_METHOD: u8 = 0x15;
pub(crate) const AUTHENTICATION_DATA: u8 = 0x16;
pub(crate) const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
pub(crate) const WILL_DELAY_INTERVAL: u8 = 0x18;
pub(crate) const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
pub(crate) const RESPONSE_INFORMATION: u8 = 0x1A;
pub(crate) const SERVER_REFERENCE: u8 = 0x1C;
pub(crate) const REASON_STRING: u8 = 0x1F;
pub(crate) const RECEIVE_MAXIMUM: u8 = 0x21;
pub(crate) const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
pub(crate) const TOPIC_ALIAS: u8 = 0x23;
pub(crate) const MAXIMUM_QOS: u8 = 0x24;
pub(crate) const RETAIN_AVAILABLE: u8 = 0x25;
pub(crate) const USER_PROPERTY: u8 = 0x26;
pub(crate) const MAXIMUM_PACKET_SIZE: u8 = 0x27;
pub(crate) const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
pub(crate) const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
pub(crate) const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;

const fn mask(ids: &[u8]) -> u64 {
    let mut m = 0u64;
    let mut i = 0;
    while i < ids.len() {
        m |= 1 << ids[i];
        i += 1;
    }
    m
}

/// Which properties one packet (or the will) may carry, and which of them
/// may repeat.
pub(crate) struct Ctx {
    name: &'static str,
    allowed: u64,
    repeatable: u64,
}

const USER_ONLY: u64 = mask(&[USER_PROPERTY]);
const REASON_AND_USER: u64 = mask(&[REASON_STRING, USER_PROPERTY]);

pub(crate) const CONNECT: Ctx = Ctx {
    name: "CONNECT",
    allowed: mask(&[
        SESSION_EXPIRY_INTERVAL,
        AUTHENTICATION_METHOD,
        AUTHENTICATION_DATA,
        REQUEST_PROBLEM_INFORMATION,
        REQUEST_RESPONSE_INFORMATION,
        RECEIVE_MAXIMUM,
        TOPIC_ALIAS_MAXIMUM,
        USER_PROPERTY,
        MAXIMUM_PACKET_SIZE,
    ]),
    repeatable: USER_ONLY,
};
pub(crate) const WILL: Ctx = Ctx {
    name: "WILL",
    allowed: mask(&[
        PAYLOAD_FORMAT_INDICATOR,
        MESSAGE_EXPIRY_INTERVAL,
        CONTENT_TYPE,
        RESPONSE_TOPIC,
        CORRELATION_DATA,
        WILL_DELAY_INTERVAL,
        USER_PROPERTY,
    ]),
    repeatable: USER_ONLY,
};
pub(crate) const CONNACK: Ctx = Ctx {
    name: "CONNACK",
    allowed: mask(&[
        SESSION_EXPIRY_INTERVAL,
        ASSIGNED_CLIENT_IDENTIFIER,
        SERVER_KEEP_ALIVE,
        AUTHENTICATION_METHOD,
        AUTHENTICATION_DATA,
        RESPONSE_INFORMATION,
        SERVER_REFERENCE,
        REASON_STRING,
        RECEIVE_MAXIMUM,
        TOPIC_ALIAS_MAXIMUM,
        MAXIMUM_QOS,
        RETAIN_AVAILABLE,
        USER_PROPERTY,
        MAXIMUM_PACKET_SIZE,
        WILDCARD_SUBSCRIPTION_AVAILABLE,
        SUBSCRIPTION_IDENTIFIER_AVAILABLE,
        SHARED_SUBSCRIPTION_AVAILABLE,
    ]),
    repeatable: USER_ONLY,
};
pub(crate) const PUBLISH: Ctx = Ctx {
    name: "PUBLISH",
    allowed: mask(&[
        PAYLOAD_FORMAT_INDICATOR,
        MESSAGE_EXPIRY_INTERVAL,
        CONTENT_TYPE,
        RESPONSE_TOPIC,
        CORRELATION_DATA,
        SUBSCRIPTION_IDENTIFIER,
        TOPIC_ALIAS,
        USER_PROPERTY,
    ]),
    repeatable: mask(&[USER_PROPERTY, SUBSCRIPTION_IDENTIFIER]),
};
pub(crate) const PUBACK: Ctx = Ctx {
    name: "PUBACK",
    allowed: REASON_AND_USER,
    repeatable: USER_ONLY,
};
pub(crate) const PUBREC: Ctx = Ctx {
    name: "PUBREC",
    allowed: REASON_AND_USER,
    repeatable: USER_ONLY,
};
pub(crate) const PUBREL: Ctx = Ctx {
    name: "PUBREL",
    allowed: REASON_AND_USER,
    repeatable: USER_ONLY,
};
pub(crate) const PUBCOMP: Ctx = Ctx {
    name: "PUBCOMP",
    allowed: REASON_AND_USER,
    repeatable: USER_ONLY,
};
pub(crate) const SUBSCRIBE: Ctx = Ctx {
    name: "SUBSCRIBE",
    allowed: mask(&[SUBSCRIPTION_IDENTIFIER, USER_PROPERTY]),
    repeatable: USER_ONLY,
};
pub(crate) const SUBACK: Ctx = Ctx {
    name: "SUBACK",
    allowed: REASON_AND_USER,
    repeatable: USER_ONLY,
};
pub(crate) const UNSUBSCRIBE: Ctx = Ctx {
    name: "UNSUBSCRIBE",
    allowed: USER_ONLY,
    repeatable: USER_ONLY,
};
pub(crate) const UNSUBACK: Ctx = Ctx {
    name: "UNSUBACK",
    allowed: REASON_AND_USER,
    repeatable: USER_ONLY,
};
pub(crate) const DISCONNECT: Ctx = Ctx {
    name: "DISCONNECT",
    allowed: mask(&[
        SESSION_EXPIRY_INTERVAL,
        SERVER_REFERENCE,
        REASON_STRING,
        USER_PROPERTY,
    ]),
    repeatable: USER_ONLY,
};
pub(crate) const AUTH: Ctx = Ctx {
    name: "AUTH",
    allowed: mask(&[
        AUTHENTICATION_METHOD,
        AUTHENTICATION_DATA,
        REASON_STRING,
        USER_PROPERTY,
    ]),
    repeatable: USER_ONLY,
};

// ---------------------------------------------------------------- decoding

/// Iterates the properties of one block, enforcing the allowed table and
/// the at-most-once rule; the caller reads each value with the typed
/// methods below.
pub(crate) struct Props {
    r: Reader,
    ctx: &'static Ctx,
    seen: u64,
}

impl Props {
    /// Reads the property length (§2.2.2.1) and takes that many bytes.
    pub(crate) fn open(r: &mut Reader, ctx: &'static Ctx) -> Result<Props, DecodeError> {
        let len = r.var_int()? as usize;
        Ok(Props {
            r: r.sub_reader(len)?,
            ctx,
            seen: 0,
        })
    }

    /// The next property identifier, or `None` at the end of the block.
    pub(crate) fn next_id(&mut self) -> Result<Option<u8>, DecodeError> {
        if self.r.is_empty() {
            return Ok(None);
        }
        // Identifiers are variable byte integers, but every defined one is
        // below 0x80: a first byte with the top bit set is unknown anyway.
        let id = self.r.u8()?;
        let bit = if id < 64 { 1u64 << id } else { 0 };
        if self.ctx.allowed & bit == 0 {
            return Err(DecodeError::InvalidProperty {
                packet: self.ctx.name,
                id,
            });
        }
        if self.seen & bit != 0 && self.ctx.repeatable & bit == 0 {
            return Err(DecodeError::DuplicateProperty(id));
        }
        self.seen |= bit;
        Ok(Some(id))
    }

    /// A byte that may only be 0 or 1.
    fn flag(&mut self, id: u8) -> Result<u8, DecodeError> {
        match self.r.u8()? {
            v @ (0 | 1) => Ok(v),
            _ => Err(DecodeError::InvalidPropertyValue(id)),
        }
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        self.r.u16()
    }

    fn u16_nonzero(&mut self, id: u8) -> Result<u16, DecodeError> {
        match self.r.u16()? {
            0 => Err(DecodeError::InvalidPropertyValue(id)),
            v => Ok(v),
        }
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        self.r.u32()
    }

    fn u32_nonzero(&mut self, id: u8) -> Result<u32, DecodeError> {
        match self.r.u32()? {
            0 => Err(DecodeError::InvalidPropertyValue(id)),
            v => Ok(v),
        }
    }

    fn subscription_identifier(&mut self) -> Result<u32, DecodeError> {
        match self.r.var_int()? {
            0 => Err(DecodeError::InvalidPropertyValue(SUBSCRIPTION_IDENTIFIER)),
            v => Ok(v),
        }
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        self.r.string()
    }

    fn binary(&mut self) -> Result<Bytes, DecodeError> {
        self.r.binary()
    }

    fn user_property(&mut self) -> Result<UserProperty, DecodeError> {
        Ok((self.r.string()?, self.r.string()?))
    }

    /// Called for an id `next_id` allowed but the set's decoder has no
    /// field for; cannot happen while the tables agree.
    fn unexpected(&self, id: u8) -> DecodeError {
        DecodeError::InvalidProperty {
            packet: self.ctx.name,
            id,
        }
    }
}

pub(crate) fn decode_connect(r: &mut Reader) -> Result<ConnectProperties, DecodeError> {
    let mut out = ConnectProperties::default();
    let mut p = Props::open(r, &CONNECT)?;
    while let Some(id) = p.next_id()? {
        match id {
            SESSION_EXPIRY_INTERVAL => out.session_expiry_interval = Some(p.u32()?),
            RECEIVE_MAXIMUM => out.receive_maximum = Some(p.u16_nonzero(id)?),
            MAXIMUM_PACKET_SIZE => out.maximum_packet_size = Some(p.u32_nonzero(id)?),
            TOPIC_ALIAS_MAXIMUM => out.topic_alias_maximum = Some(p.u16()?),
            REQUEST_RESPONSE_INFORMATION => out.request_response_information = Some(p.flag(id)?),
            REQUEST_PROBLEM_INFORMATION => out.request_problem_information = Some(p.flag(id)?),
            USER_PROPERTY => out.user_properties.push(p.user_property()?),
            AUTHENTICATION_METHOD => out.authentication_method = Some(p.string()?),
            AUTHENTICATION_DATA => out.authentication_data = Some(p.binary()?),
            _ => return Err(p.unexpected(id)),
        }
    }
    Ok(out)
}

pub(crate) fn decode_will(r: &mut Reader) -> Result<WillProperties, DecodeError> {
    let mut out = WillProperties::default();
    let mut p = Props::open(r, &WILL)?;
    while let Some(id) = p.next_id()? {
        match id {
            WILL_DELAY_INTERVAL => out.will_delay_interval = Some(p.u32()?),
            PAYLOAD_FORMAT_INDICATOR => out.payload_format_indicator = Some(p.flag(id)?),
            MESSAGE_EXPIRY_INTERVAL => out.message_expiry_interval = Some(p.u32()?),
            CONTENT_TYPE => out.content_type = Some(p.string()?),
            RESPONSE_TOPIC => out.response_topic = Some(p.string()?),
            CORRELATION_DATA => out.correlation_data = Some(p.binary()?),
            USER_PROPERTY => out.user_properties.push(p.user_property()?),
            _ => return Err(p.unexpected(id)),
        }
    }
    Ok(out)
}

pub(crate) fn decode_connack(r: &mut Reader) -> Result<ConnAckProperties, DecodeError> {
    let mut out = ConnAckProperties::default();
    let mut p = Props::open(r, &CONNACK)?;
    while let Some(id) = p.next_id()? {
        match id {
            SESSION_EXPIRY_INTERVAL => out.session_expiry_interval = Some(p.u32()?),
            RECEIVE_MAXIMUM => out.receive_maximum = Some(p.u16_nonzero(id)?),
            MAXIMUM_QOS => out.maximum_qos = Some(p.flag(id)?),
            RETAIN_AVAILABLE => out.retain_available = Some(p.flag(id)?),
            MAXIMUM_PACKET_SIZE => out.maximum_packet_size = Some(p.u32_nonzero(id)?),
            ASSIGNED_CLIENT_IDENTIFIER => out.assigned_client_identifier = Some(p.string()?),
            TOPIC_ALIAS_MAXIMUM => out.topic_alias_maximum = Some(p.u16()?),
            REASON_STRING => out.reason_string = Some(p.string()?),
            USER_PROPERTY => out.user_properties.push(p.user_property()?),
            WILDCARD_SUBSCRIPTION_AVAILABLE => {
                out.wildcard_subscription_available = Some(p.flag(id)?)
            }
            SUBSCRIPTION_IDENTIFIER_AVAILABLE => {
                out.subscription_identifiers_available = Some(p.flag(id)?)
            }
            SHARED_SUBSCRIPTION_AVAILABLE => out.shared_subscription_available = Some(p.flag(id)?),
            SERVER_KEEP_ALIVE => out.server_keep_alive = Some(p.u16()?),
            RESPONSE_INFORMATION => out.response_information = Some(p.string()?),
            SERVER_REFERENCE => out.server_reference = Some(p.string()?),
            AUTHENTICATION_METHOD => out.authentication_method = Some(p.string()?),
            AUTHENTICATION_DATA => out.authentication_data = Some(p.binary()?),
            _ => return Err(p.unexpected(id)),
        }
    }
    Ok(out)
}

pub(crate) fn decode_publish(r: &mut Reader) -> Result<PublishProperties, DecodeError> {
    let mut out = PublishProperties::default();
    let mut p = Props::open(r, &PUBLISH)?;
    while let Some(id) = p.next_id()? {
        match id {
            PAYLOAD_FORMAT_INDICATOR => out.payload_format_indicator = Some(p.flag(id)?),
            MESSAGE_EXPIRY_INTERVAL => out.message_expiry_interval = Some(p.u32()?),
            TOPIC_ALIAS => out.topic_alias = Some(p.u16_nonzero(id)?),
            RESPONSE_TOPIC => out.response_topic = Some(p.string()?),
            CORRELATION_DATA => out.correlation_data = Some(p.binary()?),
            USER_PROPERTY => out.user_properties.push(p.user_property()?),
            SUBSCRIPTION_IDENTIFIER => out
                .subscription_identifiers
                .push(p.subscription_identifier()?),
            CONTENT_TYPE => out.content_type = Some(p.string()?),
            _ => return Err(p.unexpected(id)),
        }
    }
    Ok(out)
}

/// Reason string and user properties: the whole set of PUBACK, PUBREC,
/// PUBREL, PUBCOMP, SUBACK and UNSUBACK.
pub(crate) fn decode_ack(
    r: &mut Reader,
    ctx: &'static Ctx,
) -> Result<(Option<String>, Vec<UserProperty>), DecodeError> {
    let mut reason_string = None;
    let mut user = Vec::new();
    let mut p = Props::open(r, ctx)?;
    while let Some(id) = p.next_id()? {
        match id {
            REASON_STRING => reason_string = Some(p.string()?),
            USER_PROPERTY => user.push(p.user_property()?),
            _ => return Err(p.unexpected(id)),
        }
    }
    Ok((reason_string, user))
}

/// SUBSCRIBE: one subscription identifier at most [MQTT-3.8.2.1.2] (a
/// second is [`DecodeError::DuplicateProperty`]), and user properties.
pub(crate) fn decode_subscribe(
    r: &mut Reader,
) -> Result<(Option<u32>, Vec<UserProperty>), DecodeError> {
    let mut sub_id = None;
    let mut user = Vec::new();
    let mut p = Props::open(r, &SUBSCRIBE)?;
    while let Some(id) = p.next_id()? {
        match id {
            SUBSCRIPTION_IDENTIFIER => sub_id = Some(p.subscription_identifier()?),
            USER_PROPERTY => user.push(p.user_property()?),
            _ => return Err(p.unexpected(id)),
        }
    }
    Ok((sub_id, user))
}

pub(crate) fn decode_unsubscribe(r: &mut Reader) -> Result<Vec<UserProperty>, DecodeError> {
    let mut user = Vec::new();
    let mut p = Props::open(r, &UNSUBSCRIBE)?;
    while let Some(id) = p.next_id()? {
        match id {
            USER_PROPERTY => user.push(p.user_property()?),
            _ => return Err(p.unexpected(id)),
        }
    }
    Ok(user)
}

/// Fills the property fields of `out`.
pub(crate) fn decode_disconnect(r: &mut Reader, out: &mut Disconnect) -> Result<(), DecodeError> {
    let mut p = Props::open(r, &DISCONNECT)?;
    while let Some(id) = p.next_id()? {
        match id {
            SESSION_EXPIRY_INTERVAL => out.session_expiry_interval = Some(p.u32()?),
            REASON_STRING => out.reason_string = Some(p.string()?),
            USER_PROPERTY => out.user_properties.push(p.user_property()?),
            SERVER_REFERENCE => out.server_reference = Some(p.string()?),
            _ => return Err(p.unexpected(id)),
        }
    }
    Ok(())
}

/// Fills the property fields of `out`.
pub(crate) fn decode_auth(r: &mut Reader, out: &mut crate::Auth) -> Result<(), DecodeError> {
    let mut p = Props::open(r, &AUTH)?;
    while let Some(id) = p.next_id()? {
        match id {
            AUTHENTICATION_METHOD => out.authentication_method = Some(p.string()?),
            AUTHENTICATION_DATA => out.authentication_data = Some(p.binary()?),
            REASON_STRING => out.reason_string = Some(p.string()?),
            USER_PROPERTY => out.user_properties.push(p.user_property()?),
            _ => return Err(p.unexpected(id)),
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- encoding

/// A property set the encoder can write (without its length prefix).
pub(crate) trait PropSet {
    fn write<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError>;
}

/// Writes the property length, then the properties.
pub(crate) fn put_props<S: Sink, P: PropSet>(s: &mut S, props: &P) -> Result<(), EncodeError> {
    let mut c = Counter::default();
    props.write(&mut c)?;
    if c.0 > VAR_INT_MAX as usize {
        return Err(EncodeError::PacketTooLarge);
    }
    s.put_var_int(c.0 as u32);
    props.write(s)
}

fn put_u8<S: Sink>(s: &mut S, id: u8, v: Option<u8>) {
    if let Some(v) = v {
        s.put_u8(id);
        s.put_u8(v);
    }
}

fn put_u16<S: Sink>(s: &mut S, id: u8, v: Option<u16>) {
    if let Some(v) = v {
        s.put_u8(id);
        s.put_u16(v);
    }
}

fn put_u32<S: Sink>(s: &mut S, id: u8, v: Option<u32>) {
    if let Some(v) = v {
        s.put_u8(id);
        s.put_u32(v);
    }
}

fn put_string<S: Sink>(s: &mut S, id: u8, v: &Option<String>) -> Result<(), EncodeError> {
    if let Some(v) = v {
        s.put_u8(id);
        s.put_str(v)?;
    }
    Ok(())
}

fn put_binary<S: Sink>(s: &mut S, id: u8, v: &Option<Bytes>) -> Result<(), EncodeError> {
    if let Some(v) = v {
        s.put_u8(id);
        s.put_prefixed(v)?;
    }
    Ok(())
}

fn put_user<S: Sink>(s: &mut S, user: &[UserProperty]) -> Result<(), EncodeError> {
    for (k, v) in user {
        s.put_u8(USER_PROPERTY);
        s.put_str(k)?;
        s.put_str(v)?;
    }
    Ok(())
}

fn put_sub_id<S: Sink>(s: &mut S, v: u32) -> Result<(), EncodeError> {
    if v > VAR_INT_MAX {
        return Err(EncodeError::PacketTooLarge);
    }
    s.put_u8(SUBSCRIPTION_IDENTIFIER);
    s.put_var_int(v);
    Ok(())
}

impl PropSet for ConnectProperties {
    fn write<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError> {
        put_u32(s, SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        put_u16(s, RECEIVE_MAXIMUM, self.receive_maximum);
        put_u32(s, MAXIMUM_PACKET_SIZE, self.maximum_packet_size);
        put_u16(s, TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum);
        put_u8(
            s,
            REQUEST_RESPONSE_INFORMATION,
            self.request_response_information,
        );
        put_u8(
            s,
            REQUEST_PROBLEM_INFORMATION,
            self.request_problem_information,
        );
        put_string(s, AUTHENTICATION_METHOD, &self.authentication_method)?;
        put_binary(s, AUTHENTICATION_DATA, &self.authentication_data)?;
        put_user(s, &self.user_properties)
    }
}

impl PropSet for WillProperties {
    fn write<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError> {
        put_u32(s, WILL_DELAY_INTERVAL, self.will_delay_interval);
        put_u8(s, PAYLOAD_FORMAT_INDICATOR, self.payload_format_indicator);
        put_u32(s, MESSAGE_EXPIRY_INTERVAL, self.message_expiry_interval);
        put_string(s, CONTENT_TYPE, &self.content_type)?;
        put_string(s, RESPONSE_TOPIC, &self.response_topic)?;
        put_binary(s, CORRELATION_DATA, &self.correlation_data)?;
        put_user(s, &self.user_properties)
    }
}

impl PropSet for ConnAckProperties {
    fn write<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError> {
        put_u32(s, SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        put_u16(s, RECEIVE_MAXIMUM, self.receive_maximum);
        put_u8(s, MAXIMUM_QOS, self.maximum_qos);
        put_u8(s, RETAIN_AVAILABLE, self.retain_available);
        put_u32(s, MAXIMUM_PACKET_SIZE, self.maximum_packet_size);
        put_string(
            s,
            ASSIGNED_CLIENT_IDENTIFIER,
            &self.assigned_client_identifier,
        )?;
        put_u16(s, TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum);
        put_string(s, REASON_STRING, &self.reason_string)?;
        put_u8(
            s,
            WILDCARD_SUBSCRIPTION_AVAILABLE,
            self.wildcard_subscription_available,
        );
        put_u8(
            s,
            SUBSCRIPTION_IDENTIFIER_AVAILABLE,
            self.subscription_identifiers_available,
        );
        put_u8(
            s,
            SHARED_SUBSCRIPTION_AVAILABLE,
            self.shared_subscription_available,
        );
        put_u16(s, SERVER_KEEP_ALIVE, self.server_keep_alive);
        put_string(s, RESPONSE_INFORMATION, &self.response_information)?;
        put_string(s, SERVER_REFERENCE, &self.server_reference)?;
        put_string(s, AUTHENTICATION_METHOD, &self.authentication_method)?;
        put_binary(s, AUTHENTICATION_DATA, &self.authentication_data)?;
        put_user(s, &self.user_properties)
    }
}

impl PropSet for PublishProperties {
    fn write<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError> {
        put_u8(s, PAYLOAD_FORMAT_INDICATOR, self.payload_format_indicator);
        put_u32(s, MESSAGE_EXPIRY_INTERVAL, self.message_expiry_interval);
        put_u16(s, TOPIC_ALIAS, self.topic_alias);
        put_string(s, RESPONSE_TOPIC, &self.response_topic)?;
        put_binary(s, CORRELATION_DATA, &self.correlation_data)?;
        for &id in &self.subscription_identifiers {
            put_sub_id(s, id)?;
        }
        put_string(s, CONTENT_TYPE, &self.content_type)?;
        put_user(s, &self.user_properties)
    }
}

/// Reason string and user properties, borrowed from an ack packet.
pub(crate) struct AckProps<'a> {
    pub(crate) reason_string: &'a Option<String>,
    pub(crate) user_properties: &'a [UserProperty],
}

impl AckProps<'_> {
    pub(crate) fn is_empty(&self) -> bool {
        self.reason_string.is_none() && self.user_properties.is_empty()
    }
}

impl PropSet for AckProps<'_> {
    fn write<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError> {
        put_string(s, REASON_STRING, self.reason_string)?;
        put_user(s, self.user_properties)
    }
}

/// SUBSCRIBE properties, borrowed.
pub(crate) struct SubscribeProps<'a> {
    pub(crate) subscription_identifier: Option<u32>,
    pub(crate) user_properties: &'a [UserProperty],
}

impl PropSet for SubscribeProps<'_> {
    fn write<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError> {
        if let Some(id) = self.subscription_identifier {
            put_sub_id(s, id)?;
        }
        put_user(s, self.user_properties)
    }
}

/// User properties only (UNSUBSCRIBE).
pub(crate) struct UserProps<'a>(pub(crate) &'a [UserProperty]);

impl PropSet for UserProps<'_> {
    fn write<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError> {
        put_user(s, self.0)
    }
}

impl PropSet for Disconnect {
    fn write<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError> {
        put_u32(s, SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        put_string(s, REASON_STRING, &self.reason_string)?;
        put_string(s, SERVER_REFERENCE, &self.server_reference)?;
        put_user(s, &self.user_properties)
    }
}

impl PropSet for crate::Auth {
    fn write<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError> {
        put_string(s, AUTHENTICATION_METHOD, &self.authentication_method)?;
        put_binary(s, AUTHENTICATION_DATA, &self.authentication_data)?;
        put_string(s, REASON_STRING, &self.reason_string)?;
        put_user(s, &self.user_properties)
    }
}
