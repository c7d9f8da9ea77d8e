//! Decode and encode errors. Each decode variant names the rule the bytes
//! broke, and maps to the reason code a v5 server sends before closing.

use crate::types::reason;

/// Why bytes could not be decoded into a packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The remaining length uses more than four bytes or is otherwise bad.
    #[error("malformed remaining length")]
    MalformedRemainingLength,
    /// A variable byte integer inside the packet (property length,
    /// subscription identifier) uses more than four bytes [MQTT-1.5.5-1].
    #[error("malformed variable byte integer")]
    MalformedVariableInteger,
    /// The whole packet would exceed the configured maximum.
    #[error("packet of {size} bytes exceeds the maximum of {max}")]
    PacketTooLarge {
        /// Size of the whole packet as announced by its fixed header.
        size: usize,
        /// The configured [`crate::Limits::packet_bytes_max`].
        max: usize,
    },
    /// Packet type 0 (reserved) or 15 before v5.
    #[error("reserved or unknown packet type {0}")]
    InvalidPacketType(u8),
    /// Fixed header flags that the spec fixes were different [MQTT-2.2.2-2].
    #[error("invalid fixed header flags {flags:#06b} for {packet}")]
    InvalidFlags {
        /// Name of the packet type.
        packet: &'static str,
        /// The low four bits of the first byte.
        flags: u8,
    },
    /// A PUBLISH with both QoS bits set [MQTT-3.3.1-4].
    #[error("invalid QoS 3")]
    InvalidQoS,
    /// The packet ended before a field it announced.
    #[error("packet body is shorter than its fields")]
    UnexpectedEof,
    /// Bytes remained after the last field.
    #[error("packet body is longer than its fields")]
    TrailingBytes,
    /// A string was not valid UTF-8 or contained U+0000 [MQTT-1.5.4-1/2].
    #[error("invalid UTF-8 string")]
    InvalidUtf8,
    /// Protocol name was not `MQTT`/`MQIsdp` [MQTT-3.1.2-1].
    #[error("invalid protocol name")]
    InvalidProtocolName,
    /// Protocol level other than 3, 4 or 5 [MQTT-3.1.2-2].
    #[error("unsupported protocol level {0}")]
    UnsupportedProtocolVersion(u8),
    /// CONNECT reserved flag set [MQTT-3.1.2-3] or inconsistent will/password flags.
    #[error("invalid CONNECT flags {0:#010b}")]
    InvalidConnectFlags(u8),
    /// CONNACK acknowledge flags with a reserved bit set [MQTT-3.2.2-1].
    #[error("invalid CONNACK flags {0:#010b}")]
    InvalidConnAckFlags(u8),
    /// A property identifier unknown or not allowed in this packet.
    #[error("property {id:#04x} not allowed in {packet}")]
    InvalidProperty {
        /// Name of the packet (or `"WILL"` for will properties).
        packet: &'static str,
        /// The property identifier.
        id: u8,
    },
    /// A property that may appear once appeared twice.
    #[error("duplicate property {0:#04x}")]
    DuplicateProperty(u8),
    /// A property carried a value outside its range (e.g. receive maximum 0).
    #[error("property {0:#04x} has an invalid value")]
    InvalidPropertyValue(u8),
    /// Packet identifier 0 where a non-zero one is required [MQTT-2.2.1-3].
    #[error("packet identifier 0")]
    ZeroPacketId,
    /// Topic name empty (without alias), or with `+`/`#` [MQTT-3.3.2-2].
    #[error("invalid topic name")]
    InvalidTopicName,
    /// SUBSCRIBE/UNSUBSCRIBE with no filters [MQTT-3.8.3-3], [MQTT-3.10.3-2].
    #[error("no topic filters")]
    NoTopicFilters,
    /// Subscription options with reserved bits or retain handling 3.
    #[error("invalid subscription options {0:#010b}")]
    InvalidSubscriptionOptions(u8),
    /// A reason code not defined for this packet.
    #[error("invalid reason code {0:#04x}")]
    InvalidReasonCode(u8),
}

impl DecodeError {
    /// The MQTT 5 reason code a server sends (in CONNACK or DISCONNECT)
    /// before closing the connection for this error.
    pub fn reason_code(&self) -> u8 {
        match self {
            DecodeError::PacketTooLarge { .. } => reason::PACKET_TOO_LARGE,
            DecodeError::UnsupportedProtocolVersion(_) => reason::UNSUPPORTED_PROTOCOL_VERSION,
            DecodeError::InvalidProtocolName => reason::UNSUPPORTED_PROTOCOL_VERSION,
            DecodeError::InvalidTopicName => reason::TOPIC_NAME_INVALID,
            // Topic alias 0 [MQTT-3.3.2-8] is answered with Topic Alias invalid.
            DecodeError::InvalidPropertyValue(0x23) => reason::TOPIC_ALIAS_INVALID,
            DecodeError::DuplicateProperty(_) | DecodeError::InvalidPropertyValue(_) => {
                reason::PROTOCOL_ERROR
            }
            _ => reason::MALFORMED_PACKET,
        }
    }
}

/// Why a packet could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The encoded packet would exceed 268_435_455 bytes of remaining length.
    #[error("packet too large to encode")]
    PacketTooLarge,
    /// A string longer than 65_535 bytes.
    #[error("string field too long")]
    StringTooLong,
    /// A PUBLISH with QoS > 0 but no packet id, or with packet id 0.
    #[error("missing or zero packet identifier")]
    MissingPacketId,
    /// A packet that only exists in MQTT 5 (AUTH) asked for 3.1.x.
    #[error("packet not available in this protocol version")]
    NotInVersion,
}
