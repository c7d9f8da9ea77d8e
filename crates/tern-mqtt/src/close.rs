//! Why a connection ended: one closed enum that feeds the log line, the
//! metrics and the MQTT 5 DISCONNECT reason code.

use tern_mqtt_codec::{DecodeError, reason};

/// Every way an MQTT connection can end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The client sent DISCONNECT (normal, reason 0x00): no will.
    ClientDisconnect,
    /// The client sent DISCONNECT 0x04: publish the will.
    ClientDisconnectWithWill,
    /// The client sent DISCONNECT with an error reason code.
    ClientError(u8),
    /// The socket closed without DISCONNECT.
    PeerClosed,
    /// Reading or writing the socket failed.
    Io(String),
    /// No packet within 1.5 × keep alive [MQTT-3.1.2-24].
    KeepAliveTimeout,
    /// Bytes that are not a valid packet.
    Malformed(DecodeError),
    /// A valid packet at the wrong time or with a forbidden value.
    ProtocolError(&'static str),
    /// More unacknowledged QoS 2 PUBLISHes than the Receive Maximum.
    ReceiveMaximumExceeded,
    /// Topic alias 0, above the maximum, or unknown.
    TopicAliasInvalid,
    /// A topic name the hub refused (too long, too deep).
    TopicNameInvalid,
    /// Payload format indicator 1 with a payload that is not UTF-8, at QoS 0.
    PayloadFormatInvalid,
    /// Another connection took over the session.
    TakenOver,
    /// The session queue overflowed under the `disconnect` policy.
    QueueFull,
    /// The server is shutting down.
    ShuttingDown,
    /// The token or JWT the client authenticated with expired.
    TokenExpired,
    /// An AUTH re-authentication presented credentials that were refused.
    ReauthFailed,
    /// The durable store failed: what the client sent cannot be
    /// acknowledged (it resends after reconnecting; nothing acknowledged
    /// is lost).
    StoreFailed,
    /// The durable store's disk is full (same consequence).
    StoreFull,
}

impl CloseReason {
    /// The DISCONNECT reason code a v5 client is sent, if the server sends one.
    pub fn reason_code(&self) -> Option<u8> {
        Some(match self {
            CloseReason::ClientDisconnect
            | CloseReason::ClientDisconnectWithWill
            | CloseReason::ClientError(_)
            | CloseReason::PeerClosed
            | CloseReason::Io(_) => return None,
            CloseReason::KeepAliveTimeout => reason::KEEP_ALIVE_TIMEOUT,
            CloseReason::Malformed(e) => e.reason_code(),
            CloseReason::ProtocolError(_) => reason::PROTOCOL_ERROR,
            CloseReason::ReceiveMaximumExceeded => reason::RECEIVE_MAXIMUM_EXCEEDED,
            CloseReason::TopicAliasInvalid => reason::TOPIC_ALIAS_INVALID,
            CloseReason::TopicNameInvalid => reason::TOPIC_NAME_INVALID,
            CloseReason::PayloadFormatInvalid => reason::PAYLOAD_FORMAT_INVALID,
            CloseReason::TakenOver => reason::SESSION_TAKEN_OVER,
            CloseReason::QueueFull => reason::QUOTA_EXCEEDED,
            CloseReason::ShuttingDown => reason::SERVER_SHUTTING_DOWN,
            // "Maximum connect time": the credentials' lifetime is over.
            CloseReason::TokenExpired => reason::MAXIMUM_CONNECT_TIME,
            CloseReason::ReauthFailed => reason::NOT_AUTHORIZED,
            CloseReason::StoreFailed => reason::IMPLEMENTATION_SPECIFIC_ERROR,
            CloseReason::StoreFull => reason::QUOTA_EXCEEDED,
        })
    }

    /// False only for a normal DISCONNECT: every other end publishes the
    /// will [MQTT-3.1.2-8], [MQTT-3.14.4-3].
    pub fn publishes_will(&self) -> bool {
        !matches!(self, CloseReason::ClientDisconnect)
    }

    /// True if the client broke the protocol (counted as a protocol error).
    pub fn is_violation(&self) -> bool {
        matches!(
            self,
            CloseReason::Malformed(_)
                | CloseReason::ProtocolError(_)
                | CloseReason::ReceiveMaximumExceeded
                | CloseReason::TopicAliasInvalid
                | CloseReason::TopicNameInvalid
                | CloseReason::PayloadFormatInvalid
        )
    }
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CloseReason::ClientDisconnect => f.write_str("client disconnected"),
            CloseReason::ClientDisconnectWithWill => f.write_str("client disconnected with will"),
            CloseReason::ClientError(c) => write!(f, "client disconnected with reason {c:#04x}"),
            CloseReason::PeerClosed => f.write_str("connection closed by peer"),
            CloseReason::Io(e) => write!(f, "socket error: {e}"),
            CloseReason::KeepAliveTimeout => f.write_str("keep alive timeout"),
            CloseReason::Malformed(e) => write!(f, "malformed packet: {e}"),
            CloseReason::ProtocolError(what) => write!(f, "protocol error: {what}"),
            CloseReason::ReceiveMaximumExceeded => f.write_str("receive maximum exceeded"),
            CloseReason::TopicAliasInvalid => f.write_str("topic alias invalid"),
            CloseReason::TopicNameInvalid => f.write_str("topic name invalid"),
            CloseReason::PayloadFormatInvalid => f.write_str("payload is not valid UTF-8"),
            CloseReason::TakenOver => f.write_str("session taken over"),
            CloseReason::QueueFull => f.write_str("session queue full"),
            CloseReason::ShuttingDown => f.write_str("server shutting down"),
            CloseReason::TokenExpired => f.write_str("token expired"),
            CloseReason::ReauthFailed => f.write_str("re-authentication failed"),
            CloseReason::StoreFailed => f.write_str("the durable store failed"),
            CloseReason::StoreFull => f.write_str("the durable store's disk is full"),
        }
    }
}
