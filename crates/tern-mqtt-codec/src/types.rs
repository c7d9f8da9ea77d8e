//! Packet types shared by every MQTT version Tern speaks.
//!
//! One set of structs covers 3.1, 3.1.1 and 5.0: fields that only exist in
//! version 5 (properties, reason codes) are simply left at their defaults
//! when a 3.1.x packet is decoded, and ignored when one is encoded.

use bytes::Bytes;

/// The protocol level byte of CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProtocolVersion {
    /// MQTT 3.1, protocol name `MQIsdp`, level 3.
    V3_1,
    /// MQTT 3.1.1, protocol name `MQTT`, level 4.
    V3_1_1,
    /// MQTT 5.0, protocol name `MQTT`, level 5.
    V5,
}

impl ProtocolVersion {
    /// True for 5.0, the only version with properties and reason codes.
    pub fn is_v5(self) -> bool {
        matches!(self, ProtocolVersion::V5)
    }
}

/// Quality of service of a message or a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum QoS {
    #[default]
    /// QoS 0: fire and forget.
    AtMostOnce = 0,
    /// QoS 1: acknowledged by PUBACK.
    AtLeastOnce = 1,
    /// QoS 2: PUBREC/PUBREL/PUBCOMP handshake.
    ExactlyOnce = 2,
}

impl QoS {
    /// Parses the two QoS bits; 3 is malformed and yields `None`.
    pub fn from_u8(v: u8) -> Option<QoS> {
        match v {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }
}

/// A user property (MQTT 5): an ordered, repeatable name/value pair.
pub type UserProperty = (String, String);

/// Last will carried in CONNECT.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LastWill {
    /// Topic the will is published to; a topic name (no wildcards).
    pub topic: String,
    /// Will message payload.
    pub payload: Bytes,
    /// QoS the will is published with.
    pub qos: QoS,
    /// Whether the will is published retained.
    pub retain: bool,
    /// Will properties (v5 only).
    pub properties: WillProperties,
}

/// Will properties (MQTT 5 §3.1.3.2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WillProperties {
    /// Seconds to wait before publishing the will (0x18).
    pub will_delay_interval: Option<u32>,
    /// 0 = unspecified bytes, 1 = UTF-8 (0x01).
    pub payload_format_indicator: Option<u8>,
    /// Lifetime of the will message in seconds (0x02).
    pub message_expiry_interval: Option<u32>,
    /// MIME-like content type (0x03).
    pub content_type: Option<String>,
    /// Topic name for a response (0x08).
    pub response_topic: Option<String>,
    /// Correlation data for request/response (0x09).
    pub correlation_data: Option<Bytes>,
    /// User properties (0x26), in order.
    pub user_properties: Vec<UserProperty>,
}

/// CONNECT (§3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// Protocol version named by the CONNECT itself.
    pub protocol: ProtocolVersion,
    /// Clean session (3.1.x) or clean start (5.0).
    pub clean_start: bool,
    /// Keep alive in seconds; 0 disables it.
    pub keep_alive: u16,
    /// Client identifier; may be empty (the broker decides).
    pub client_id: String,
    /// Last will, if the will flag is set.
    pub will: Option<LastWill>,
    /// User name, if the user name flag is set.
    pub username: Option<String>,
    /// Password (binary data), if the password flag is set.
    pub password: Option<Bytes>,
    /// CONNECT properties (v5 only).
    pub properties: ConnectProperties,
}

/// CONNECT properties (MQTT 5 §3.1.2.11).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectProperties {
    /// Session expiry in seconds (0x11).
    pub session_expiry_interval: Option<u32>,
    /// Client receive maximum, never 0 (0x21).
    pub receive_maximum: Option<u16>,
    /// Largest packet the client accepts, never 0 (0x27).
    pub maximum_packet_size: Option<u32>,
    /// Highest topic alias the client accepts (0x22).
    pub topic_alias_maximum: Option<u16>,
    /// 0 or 1 (0x19).
    pub request_response_information: Option<u8>,
    /// 0 or 1 (0x17).
    pub request_problem_information: Option<u8>,
    /// User properties (0x26), in order.
    pub user_properties: Vec<UserProperty>,
    /// Extended authentication method (0x15).
    pub authentication_method: Option<String>,
    /// Extended authentication data (0x16).
    pub authentication_data: Option<Bytes>,
}

/// CONNACK (§3.2). For 3.1.x, `reason_code` holds the v3 return code
/// (0..=5) and properties are not encoded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnAck {
    /// Session present flag.
    pub session_present: bool,
    /// v5 reason code, or the v3 return code.
    pub reason_code: u8,
    /// CONNACK properties (v5 only).
    pub properties: ConnAckProperties,
}

/// CONNACK properties (MQTT 5 §3.2.2.3).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnAckProperties {
    /// Session expiry the server uses (0x11).
    pub session_expiry_interval: Option<u32>,
    /// Server receive maximum, never 0 (0x21).
    pub receive_maximum: Option<u16>,
    /// Highest QoS the server supports: 0 or 1 (0x24).
    pub maximum_qos: Option<u8>,
    /// 0 or 1 (0x25).
    pub retain_available: Option<u8>,
    /// Largest packet the server accepts, never 0 (0x27).
    pub maximum_packet_size: Option<u32>,
    /// Client id assigned by the server (0x12).
    pub assigned_client_identifier: Option<String>,
    /// Highest topic alias the server accepts (0x22).
    pub topic_alias_maximum: Option<u16>,
    /// Human-readable reason (0x1F).
    pub reason_string: Option<String>,
    /// User properties (0x26), in order.
    pub user_properties: Vec<UserProperty>,
    /// 0 or 1 (0x28).
    pub wildcard_subscription_available: Option<u8>,
    /// 0 or 1 (0x29).
    pub subscription_identifiers_available: Option<u8>,
    /// 0 or 1 (0x2A).
    pub shared_subscription_available: Option<u8>,
    /// Keep alive the server imposes, in seconds (0x13).
    pub server_keep_alive: Option<u16>,
    /// Basis for response topics (0x1A).
    pub response_information: Option<String>,
    /// Another server to use (0x1C).
    pub server_reference: Option<String>,
    /// Extended authentication method (0x15).
    pub authentication_method: Option<String>,
    /// Extended authentication data (0x16).
    pub authentication_data: Option<Bytes>,
}

/// PUBLISH (§3.3).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Publish {
    /// DUP flag: this may be a re-delivery (never set for QoS 0).
    pub dup: bool,
    /// QoS of this delivery.
    pub qos: QoS,
    /// RETAIN flag.
    pub retain: bool,
    /// May be empty in v5 when a topic alias carries the name.
    pub topic: String,
    /// Present iff `qos > AtMostOnce`; never 0 on the wire.
    pub packet_id: Option<u16>,
    /// Application message, a zero-copy slice of the read buffer.
    pub payload: Bytes,
    /// PUBLISH properties (v5 only).
    pub properties: PublishProperties,
}

/// PUBLISH properties (MQTT 5 §3.3.2.3).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PublishProperties {
    /// 0 = unspecified bytes, 1 = UTF-8 (0x01).
    pub payload_format_indicator: Option<u8>,
    /// Lifetime of the message in seconds (0x02).
    pub message_expiry_interval: Option<u32>,
    /// Topic alias, never 0 (0x23).
    pub topic_alias: Option<u16>,
    /// Topic name for a response (0x08).
    pub response_topic: Option<String>,
    /// Correlation data for request/response (0x09).
    pub correlation_data: Option<Bytes>,
    /// User properties (0x26), in order.
    pub user_properties: Vec<UserProperty>,
    /// Repeatable; only sent server → client.
    pub subscription_identifiers: Vec<u32>,
    /// MIME-like content type (0x03).
    pub content_type: Option<String>,
}

/// PUBACK, PUBREC, PUBREL and PUBCOMP share one shape (§3.4–3.7).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PubResp {
    /// Packet identifier of the PUBLISH (or PUBREL) acknowledged; never 0.
    pub packet_id: u16,
    /// 0 = success; omitted on the wire when 0 and no properties (v5).
    pub reason_code: u8,
    /// Human-readable reason (0x1F, v5 only).
    pub reason_string: Option<String>,
    /// User properties (0x26, v5 only).
    pub user_properties: Vec<UserProperty>,
}

/// Retain handling option of a subscription (MQTT 5 §3.8.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RetainHandling {
    /// 0: send retained messages at the time of the subscribe.
    #[default]
    SendAtSubscribe,
    /// 1: send retained messages only if the subscription did not exist.
    SendIfNew,
    /// 2: do not send retained messages.
    DoNotSend,
}

/// Options byte of one subscription (§3.8.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SubscriptionOptions {
    /// Maximum QoS granted to messages of this subscription.
    pub qos: QoS,
    /// v5: do not send the client its own messages.
    pub no_local: bool,
    /// v5: keep the RETAIN flag of forwarded messages.
    pub retain_as_published: bool,
    /// v5: when to send retained messages.
    pub retain_handling: RetainHandling,
}

/// One topic filter of a SUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubscribeFilter {
    /// Topic filter, not validated by the codec (the broker answers 0x8F).
    pub filter: String,
    /// Subscription options.
    pub options: SubscriptionOptions,
}

/// SUBSCRIBE (§3.8).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subscribe {
    /// Packet identifier; never 0.
    pub packet_id: u16,
    /// At least one filter.
    pub filters: Vec<SubscribeFilter>,
    /// v5: at most one subscription identifier, 1..=268_435_455.
    pub subscription_identifier: Option<u32>,
    /// User properties (0x26, v5 only).
    pub user_properties: Vec<UserProperty>,
}

/// SUBACK (§3.9). For 3.1.x the codes are 0, 1, 2 or 0x80.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubAck {
    /// Packet identifier of the SUBSCRIBE; never 0.
    pub packet_id: u16,
    /// One code per filter of the SUBSCRIBE.
    pub reason_codes: Vec<u8>,
    /// Human-readable reason (0x1F, v5 only).
    pub reason_string: Option<String>,
    /// User properties (0x26, v5 only).
    pub user_properties: Vec<UserProperty>,
}

/// UNSUBSCRIBE (§3.10).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Unsubscribe {
    /// Packet identifier; never 0.
    pub packet_id: u16,
    /// At least one topic filter.
    pub filters: Vec<String>,
    /// User properties (0x26, v5 only).
    pub user_properties: Vec<UserProperty>,
}

/// UNSUBACK (§3.11). `reason_codes` is empty for 3.1.x.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UnsubAck {
    /// Packet identifier of the UNSUBSCRIBE; never 0.
    pub packet_id: u16,
    /// v5: one code per filter of the UNSUBSCRIBE.
    pub reason_codes: Vec<u8>,
    /// Human-readable reason (0x1F, v5 only).
    pub reason_string: Option<String>,
    /// User properties (0x26, v5 only).
    pub user_properties: Vec<UserProperty>,
}

/// DISCONNECT (§3.14). 3.1.x has no body: reason 0, no properties.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Disconnect {
    /// v5 reason code; 0 = normal disconnection.
    pub reason_code: u8,
    /// New session expiry in seconds (0x11).
    pub session_expiry_interval: Option<u32>,
    /// Human-readable reason (0x1F).
    pub reason_string: Option<String>,
    /// User properties (0x26), in order.
    pub user_properties: Vec<UserProperty>,
    /// Another server to use (0x1C).
    pub server_reference: Option<String>,
}

/// AUTH (MQTT 5 §3.15).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Auth {
    /// 0 = success, 0x18 = continue, 0x19 = re-authenticate.
    pub reason_code: u8,
    /// Authentication method (0x15).
    pub authentication_method: Option<String>,
    /// Authentication data (0x16).
    pub authentication_data: Option<Bytes>,
    /// Human-readable reason (0x1F).
    pub reason_string: Option<String>,
    /// User properties (0x26), in order.
    pub user_properties: Vec<UserProperty>,
}

/// Every MQTT control packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// CONNECT (§3.1).
    Connect(Box<Connect>),
    /// CONNACK (§3.2).
    ConnAck(ConnAck),
    /// PUBLISH (§3.3).
    Publish(Publish),
    /// PUBACK (§3.4).
    PubAck(PubResp),
    /// PUBREC (§3.5).
    PubRec(PubResp),
    /// PUBREL (§3.6).
    PubRel(PubResp),
    /// PUBCOMP (§3.7).
    PubComp(PubResp),
    /// SUBSCRIBE (§3.8).
    Subscribe(Subscribe),
    /// SUBACK (§3.9).
    SubAck(SubAck),
    /// UNSUBSCRIBE (§3.10).
    Unsubscribe(Unsubscribe),
    /// UNSUBACK (§3.11).
    UnsubAck(UnsubAck),
    /// PINGREQ (§3.12).
    PingReq,
    /// PINGRESP (§3.13).
    PingResp,
    /// DISCONNECT (§3.14).
    Disconnect(Disconnect),
    /// AUTH (§3.15, v5 only).
    Auth(Auth),
}

impl Packet {
    /// Short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Packet::Connect(_) => "CONNECT",
            Packet::ConnAck(_) => "CONNACK",
            Packet::Publish(_) => "PUBLISH",
            Packet::PubAck(_) => "PUBACK",
            Packet::PubRec(_) => "PUBREC",
            Packet::PubRel(_) => "PUBREL",
            Packet::PubComp(_) => "PUBCOMP",
            Packet::Subscribe(_) => "SUBSCRIBE",
            Packet::SubAck(_) => "SUBACK",
            Packet::Unsubscribe(_) => "UNSUBSCRIBE",
            Packet::UnsubAck(_) => "UNSUBACK",
            Packet::PingReq => "PINGREQ",
            Packet::PingResp => "PINGRESP",
            Packet::Disconnect(_) => "DISCONNECT",
            Packet::Auth(_) => "AUTH",
        }
    }
}

/// MQTT 5 reason codes Tern sends (§2.4). 3.1.x return codes are mapped
/// from these by the adapter.
pub mod reason {
    /// Success.
    pub const SUCCESS: u8 = 0x00;
    /// Normal disconnection.
    pub const NORMAL_DISCONNECTION: u8 = 0x00;
    /// Granted QoS 0.
    pub const GRANTED_QOS_0: u8 = 0x00;
    /// Granted QoS 1.
    pub const GRANTED_QOS_1: u8 = 0x01;
    /// Granted QoS 2.
    pub const GRANTED_QOS_2: u8 = 0x02;
    /// Disconnect with will.
    pub const DISCONNECT_WITH_WILL: u8 = 0x04;
    /// No matching subscribers.
    pub const NO_MATCHING_SUBSCRIBERS: u8 = 0x10;
    /// No subscription existed.
    pub const NO_SUBSCRIPTION_EXISTED: u8 = 0x11;
    /// Continue authentication.
    pub const CONTINUE_AUTHENTICATION: u8 = 0x18;
    /// Reauthenticate.
    pub const REAUTHENTICATE: u8 = 0x19;
    /// Unspecified error.
    pub const UNSPECIFIED_ERROR: u8 = 0x80;
    /// Malformed packet.
    pub const MALFORMED_PACKET: u8 = 0x81;
    /// Protocol error.
    pub const PROTOCOL_ERROR: u8 = 0x82;
    /// Implementation specific error.
    pub const IMPLEMENTATION_SPECIFIC_ERROR: u8 = 0x83;
    /// Unsupported protocol version.
    pub const UNSUPPORTED_PROTOCOL_VERSION: u8 = 0x84;
    /// Client identifier not valid.
    pub const CLIENT_IDENTIFIER_NOT_VALID: u8 = 0x85;
    /// Bad user name or password.
    pub const BAD_USER_NAME_OR_PASSWORD: u8 = 0x86;
    /// Not authorized.
    pub const NOT_AUTHORIZED: u8 = 0x87;
    /// Server unavailable.
    pub const SERVER_UNAVAILABLE: u8 = 0x88;
    /// Server busy.
    pub const SERVER_BUSY: u8 = 0x89;
    /// Banned.
    pub const BANNED: u8 = 0x8A;
    /// Server shutting down.
    pub const SERVER_SHUTTING_DOWN: u8 = 0x8B;
    /// Bad authentication method.
    pub const BAD_AUTHENTICATION_METHOD: u8 = 0x8C;
    /// Keep alive timeout.
    pub const KEEP_ALIVE_TIMEOUT: u8 = 0x8D;
    /// Session taken over.
    pub const SESSION_TAKEN_OVER: u8 = 0x8E;
    /// Topic filter invalid.
    pub const TOPIC_FILTER_INVALID: u8 = 0x8F;
    /// Topic name invalid.
    pub const TOPIC_NAME_INVALID: u8 = 0x90;
    /// Packet identifier in use.
    pub const PACKET_IDENTIFIER_IN_USE: u8 = 0x91;
    /// Packet identifier not found.
    pub const PACKET_IDENTIFIER_NOT_FOUND: u8 = 0x92;
    /// Receive maximum exceeded.
    pub const RECEIVE_MAXIMUM_EXCEEDED: u8 = 0x93;
    /// Topic alias invalid.
    pub const TOPIC_ALIAS_INVALID: u8 = 0x94;
    /// Packet too large.
    pub const PACKET_TOO_LARGE: u8 = 0x95;
    /// Message rate too high.
    pub const MESSAGE_RATE_TOO_HIGH: u8 = 0x96;
    /// Quota exceeded.
    pub const QUOTA_EXCEEDED: u8 = 0x97;
    /// Administrative action.
    pub const ADMINISTRATIVE_ACTION: u8 = 0x98;
    /// Payload format invalid.
    pub const PAYLOAD_FORMAT_INVALID: u8 = 0x99;
    /// Retain not supported.
    pub const RETAIN_NOT_SUPPORTED: u8 = 0x9A;
    /// QoS not supported.
    pub const QOS_NOT_SUPPORTED: u8 = 0x9B;
    /// Use another server.
    pub const USE_ANOTHER_SERVER: u8 = 0x9C;
    /// Server moved.
    pub const SERVER_MOVED: u8 = 0x9D;
    /// Shared subscriptions not supported.
    pub const SHARED_SUBSCRIPTIONS_NOT_SUPPORTED: u8 = 0x9E;
    /// Connection rate exceeded.
    pub const CONNECTION_RATE_EXCEEDED: u8 = 0x9F;
    /// Maximum connect time.
    pub const MAXIMUM_CONNECT_TIME: u8 = 0xA0;
    /// Subscription identifiers not supported.
    pub const SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED: u8 = 0xA1;
    /// Wildcard subscriptions not supported.
    pub const WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED: u8 = 0xA2;
}
