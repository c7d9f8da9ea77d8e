//! Messages as the hub sees them: a channel, bytes and optional metadata,
//! shared by every subscriber through one `Arc`.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;

/// Quality of service, protocol-neutral: 0 at most once, 1 at least once,
/// 2 exactly once.
pub type Qos = u8;

/// Metadata a message may carry besides its payload. Boxed inside
/// [`Message`] so that plain messages stay small.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageProps {
    /// 1 if the payload is declared UTF-8 text, 0 if unspecified bytes.
    pub payload_format: Option<u8>,
    /// MIME type of the payload.
    pub content_type: Option<String>,
    /// Channel a responder should publish its answer to.
    pub response_topic: Option<String>,
    /// Opaque bytes tying a response to its request.
    pub correlation_data: Option<Bytes>,
    /// Ordered name/value headers (MQTT 5 user properties; `extras.headers`
    /// of a realtime message).
    pub user_properties: Vec<(String, String)>,
    /// Event name of a realtime message.
    pub name: Option<String>,
    /// Transforms still applied to the payload, as a realtime publisher
    /// declared them (`json`, `utf-8/cipher+aes-128-cbc`, ...); the server
    /// never undoes them. `base64` is undone on receipt (the payload is
    /// then bytes, `payload_format` 0).
    pub encoding: Option<String>,
    /// Message id given by the publisher (idempotent publishing).
    pub id: Option<String>,
    /// The realtime `extras` object without `headers`, as JSON text.
    pub extras: Option<String>,
    /// The publisher's identified client id (a realtime clientId, or an
    /// MQTT client id bound by its token).
    pub client_id: Option<String>,
    /// The publisher's realtime connection id.
    pub connection_id: Option<String>,
}

impl MessageProps {
    /// True when no metadata is set.
    pub fn is_empty(&self) -> bool {
        self == &MessageProps::default()
    }
}

/// One published message.
#[derive(Debug, Clone)]
pub struct Message {
    /// Channel (MQTT topic name) it was published to.
    pub topic: Arc<str>,
    /// The bytes, shared zero-copy with every delivery.
    pub payload: Bytes,
    /// QoS it was published with; deliveries use the minimum of this and
    /// the subscription's.
    pub qos: Qos,
    /// Published with the retain flag.
    pub retain: bool,
    /// Client id of the publisher, for no-local and for attribution.
    pub origin: Option<Arc<str>>,
    /// Metadata; `None` for the common case of none.
    pub props: Option<Box<MessageProps>>,
    /// When the hub received it; expiry counts from here.
    pub received_at: Instant,
    /// Lifetime from `received_at`, if the publisher set one.
    pub expiry: Option<Duration>,
    /// Its record in the durable store, once a persistent session queued
    /// it; the record is deleted when the last reference goes.
    pub stored: OnceLock<crate::journal::Stored>,
    /// Position in the hub's publish order, assigned by
    /// [`Hub::publish`](crate::Hub::publish) (0 before): unique and
    /// increasing across the server's life and restarts; the basis of
    /// channel serials and history order.
    pub seq: u64,
}

impl Message {
    /// A message with no metadata, received now.
    pub fn new(topic: impl Into<Arc<str>>, payload: impl Into<Bytes>, qos: Qos) -> Message {
        Message {
            topic: topic.into(),
            payload: payload.into(),
            qos,
            retain: false,
            origin: None,
            props: None,
            received_at: Instant::now(),
            expiry: None,
            stored: OnceLock::new(),
            seq: 0,
        }
    }

    /// True once the message's lifetime has passed at `now`.
    pub fn is_expired(&self, now: Instant) -> bool {
        match self.expiry {
            Some(e) => now.saturating_duration_since(self.received_at) >= e,
            None => false,
        }
    }

    /// Whole seconds of lifetime left at `now`, rounded up, for forwarding
    /// a decremented expiry interval; `None` if it never expires.
    pub fn remaining_expiry_secs(&self, now: Instant) -> Option<u32> {
        let e = self.expiry?;
        let left = e.saturating_sub(now.saturating_duration_since(self.received_at));
        let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
        Some(u32::try_from(secs).unwrap_or(u32::MAX))
    }
}

/// A message on its way to one session: the shared message plus what this
/// subscriber's subscription(s) decided.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub msg: Arc<Message>,
    /// Effective QoS: min(published, granted).
    pub qos: Qos,
    /// The retain flag to send: set for retained messages sent on
    /// subscribe, or kept as published when the subscription asks for it.
    pub retain: bool,
    /// Identifiers of every subscription of this session that matched.
    pub sub_ids: Vec<u32>,
    /// Key of its stored queue entry; 0 if not stored.
    pub qkey: u64,
}
