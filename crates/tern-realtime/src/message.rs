//! Ably wire types — [`ProtocolMessage`], [`Message`], [`PresenceMessage`],
//! [`ErrorInfo`] — their JSON and MessagePack encodings, and the mapping
//! between a wire [`Message`] and the hub's [`tern_hub::Message`].
//!
//! Shared by the realtime WebSocket, the REST API and SSE, so it holds no
//! connection state: everything here is a pure function of its inputs.
//!
//! Decoding is tolerant: unknown fields are ignored (ably-js adds `size`),
//! `null` is read as absent (ably-python sends `"params": null`). Encoding
//! omits absent fields. Field names follow ABLY-PROTOCOL.md §4.
//!
//! # Data and encodings
//! [`Data`] keeps a payload as the client gave it: text, bytes (msgpack
//! `bin`) or, from a REST JSON body, a JSON value. JSON has no bytes, so
//! [`ProtocolMessage::encode`] turns bytes into base64 text and appends
//! `base64` to the message's `encoding` for a JSON receiver; a msgpack
//! receiver gets `bin`.
//!
//! # The hub mapping (the project's protocol mapping)
//! [`Message::into_hub`] and [`Message::from_hub`] implement it; their docs
//! state each rule. [`serial_of`] and [`id_of`] derive a message's serial
//! and default id from its hub publish sequence number, so every front end
//! (realtime, REST history) returns the same values.

use std::fmt;
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

/// ProtocolMessage actions (TR2).
pub mod action {
    pub const HEARTBEAT: u8 = 0;
    pub const ACK: u8 = 1;
    pub const NACK: u8 = 2;
    pub const CONNECT: u8 = 3;
    pub const CONNECTED: u8 = 4;
    pub const DISCONNECT: u8 = 5;
    pub const DISCONNECTED: u8 = 6;
    pub const CLOSE: u8 = 7;
    pub const CLOSED: u8 = 8;
    pub const ERROR: u8 = 9;
    pub const ATTACH: u8 = 10;
    pub const ATTACHED: u8 = 11;
    pub const DETACH: u8 = 12;
    pub const DETACHED: u8 = 13;
    pub const PRESENCE: u8 = 14;
    pub const MESSAGE: u8 = 15;
    pub const SYNC: u8 = 16;
    pub const AUTH: u8 = 17;
    pub const ACTIVATE: u8 = 18;
}

/// ProtocolMessage flags (TR3): bit values.
pub mod flags {
    pub const HAS_PRESENCE: u64 = 1;
    pub const HAS_BACKLOG: u64 = 1 << 1;
    pub const RESUMED: u64 = 1 << 2;
    pub const PRESENCE: u64 = 1 << 16;
    pub const PUBLISH: u64 = 1 << 17;
    pub const SUBSCRIBE: u64 = 1 << 18;
    pub const PRESENCE_SUBSCRIBE: u64 = 1 << 19;
    /// The four core channel modes.
    pub const MODES: u64 = PRESENCE | PUBLISH | SUBSCRIBE | PRESENCE_SUBSCRIBE;
}

/// PresenceMessage actions (TP2).
pub mod presence_action {
    pub const ABSENT: u8 = 0;
    pub const PRESENT: u8 = 1;
    pub const ENTER: u8 = 2;
    pub const LEAVE: u8 = 3;
    pub const UPDATE: u8 = 4;
}

/// The encoding of frames and bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// JSON text (WebSocket text frames, `application/json`).
    #[default]
    Json,
    /// MessagePack maps with string keys (binary frames,
    /// `application/x-msgpack`).
    Msgpack,
}

impl Format {
    /// The `format` connect parameter: `msgpack`, else JSON (absent means
    /// JSON for ably-python).
    pub fn from_param(v: Option<&str>) -> Option<Format> {
        match v {
            None | Some("json") => Some(Format::Json),
            Some("msgpack") => Some(Format::Msgpack),
            Some(_) => None,
        }
    }

    /// The HTTP content type.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Msgpack => "application/x-msgpack",
        }
    }
}

/// Why bytes could not be decoded into a wire type.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("malformed JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("malformed msgpack: {0}")]
    Msgpack(#[from] rmp_serde::decode::Error),
}

impl DecodeError {
    /// What a client is told: 40000 bad request.
    pub fn to_error_info(&self) -> ErrorInfo {
        ErrorInfo::new(40000, 400, self.to_string())
    }
}

/// Decodes one value of a wire type from `bytes` in `format`.
pub fn decode<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    format: Format,
) -> Result<T, DecodeError> {
    Ok(match format {
        Format::Json => serde_json::from_slice(bytes)?,
        Format::Msgpack => rmp_serde::from_slice(bytes)?,
    })
}

/// Encodes `value` in `format` as it is: bytes in [`Data::Binary`] are
/// written as msgpack `bin`, and as an array of numbers in JSON, so for
/// JSON receivers go through [`Message::json_ready`] first (or use
/// [`ProtocolMessage::encode`], which does).
pub fn encode<T: Serialize>(value: &T, format: Format) -> Vec<u8> {
    let r = match format {
        Format::Json => serde_json::to_vec(value).map_err(|e| e.to_string()),
        Format::Msgpack => rmp_serde::to_vec_named(value).map_err(|e| e.to_string()),
    };
    // Our types hold only strings, numbers, bytes and JSON values, which
    // both encoders always accept.
    r.unwrap_or_else(|e| {
        tracing::error!(error = %e, "could not encode a wire value");
        Vec::new()
    })
}

// ---------------------------------------------------------------------------
// ErrorInfo
// ---------------------------------------------------------------------------

/// An Ably ErrorInfo (TI1). `message`, `code` and `statusCode` are always
/// sent: ably-js drops a ProtocolMessage whose error lacks one of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorInfo {
    /// Human-readable text.
    #[serde(default)]
    pub message: String,
    /// Ably error code (40000, 40160, ...).
    #[serde(default)]
    pub code: u32,
    /// The HTTP status that goes with `code`.
    #[serde(default)]
    pub status_code: u16,
    /// Link to the code's help page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub href: Option<String>,
}

impl ErrorInfo {
    /// An error with `code`, `status_code` and `message`; `href` points at
    /// Ably's page for the code (never fetched by the SDKs).
    pub fn new(code: u32, status_code: u16, message: impl Into<String>) -> ErrorInfo {
        ErrorInfo {
            message: message.into(),
            code,
            status_code,
            href: Some(format!("https://help.ably.io/error/{code}")),
        }
    }

    /// 40010: the channel name is not a valid MQTT topic name.
    pub fn invalid_channel(why: impl fmt::Display) -> ErrorInfo {
        ErrorInfo::new(40010, 400, format!("invalid channel name: {why}"))
    }

    /// From an authentication error, with its Ably code and status.
    pub fn from_auth(e: &tern_auth::AuthError) -> ErrorInfo {
        ErrorInfo::new(e.ably_code(), e.http_status(), e.to_string())
    }
}

impl fmt::Display for ErrorInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

// ---------------------------------------------------------------------------
// ProtocolMessage and its parts
// ---------------------------------------------------------------------------

/// One realtime frame (TR4). Every field but `action` is optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProtocolMessage {
    /// See [`action`].
    pub action: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The exact channel string the client used (qualifier included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_serial: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_details: Option<ConnectionDetails>,
    /// ACK/NACK: how many msgSerials from `msg_serial` on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
    /// See [`flags`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flags: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msg_serial: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<Message>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence: Option<Vec<PresenceMessage>>,
    /// Milliseconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthDetails>,
    /// Channel or publish params; kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<serde_json::Value>,
    /// ACK: one entry per acknowledged ProtocolMessage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub res: Option<Vec<PublishResult>>,
}

impl ProtocolMessage {
    /// A message with `action` and nothing else.
    pub fn new(action: u8) -> ProtocolMessage {
        ProtocolMessage {
            action,
            ..ProtocolMessage::default()
        }
    }

    /// `action` about `channel`.
    pub fn for_channel(action: u8, channel: &str) -> ProtocolMessage {
        ProtocolMessage {
            action,
            channel: Some(channel.to_owned()),
            ..ProtocolMessage::default()
        }
    }

    /// `action` carrying `error`.
    pub fn with_error(action: u8, error: ErrorInfo) -> ProtocolMessage {
        ProtocolMessage {
            action,
            error: Some(error),
            ..ProtocolMessage::default()
        }
    }

    /// Decodes one frame.
    pub fn decode(bytes: &[u8], format: Format) -> Result<ProtocolMessage, DecodeError> {
        decode(bytes, format)
    }

    /// Encodes for a receiver in `format`: for JSON, bytes payloads become
    /// base64 text with `base64` appended to their encoding.
    pub fn encode(&self, format: Format) -> Vec<u8> {
        match format {
            Format::Msgpack => encode(self, format),
            Format::Json if self.has_binary() => {
                let mut copy = self.clone();
                for m in copy.messages.iter_mut().flatten() {
                    m.make_json_ready();
                }
                for p in copy.presence.iter_mut().flatten() {
                    p.make_json_ready();
                }
                encode(&copy, format)
            }
            Format::Json => encode(self, format),
        }
    }

    fn has_binary(&self) -> bool {
        self.messages
            .iter()
            .flatten()
            .any(|m| matches!(m.data, Some(Data::Binary(_))))
            || self
                .presence
                .iter()
                .flatten()
                .any(|p| matches!(p.data, Some(Data::Binary(_))))
    }
}

/// CONNECTED's connection details (CD2).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionDetails {
    /// Secret; the client sends it back as `resume`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_key: Option<String>,
    /// The identity, or `*` for a wildcard token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_idle_interval: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_state_ttl: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_message_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_frame_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_id: Option<String>,
}

/// AUTH's credentials.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
}

/// The serials of one acknowledged ProtocolMessage's messages, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishResult {
    #[serde(default)]
    pub serials: Vec<Option<String>>,
}

/// A channel message (TM2).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Event name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Data>,
    /// Transforms applied to `data`, `/`-separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_id: Option<String>,
    /// Publishing on behalf of another connection; never sent out.
    #[serde(default, skip_serializing)]
    pub connection_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extras: Option<Extras>,
    /// 0 `message.create` (what publishers send).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
}

/// A presence event or member (TP2).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PresenceMessage {
    /// See [`presence_action`].
    pub action: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Data>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extras: Option<Extras>,
}

// ---------------------------------------------------------------------------
// Data
// ---------------------------------------------------------------------------

/// A payload as it travels: text, bytes, or a JSON value given directly
/// (REST JSON bodies may do that; [`normalize_data`] turns it into text).
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    Text(String),
    Binary(Bytes),
    Json(serde_json::Value),
}

impl Serialize for Data {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Data::Text(t) => s.serialize_str(t),
            Data::Binary(b) => s.serialize_bytes(b),
            Data::Json(v) => v.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Data {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Data, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Data;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, bytes or a JSON value")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Data, E> {
                Ok(Data::Text(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Data, E> {
                Ok(Data::Text(v))
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Data, E> {
                Ok(Data::Binary(Bytes::copy_from_slice(v)))
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Data, E> {
                Ok(Data::Binary(Bytes::from(v)))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Data, E> {
                Ok(Data::Json(v.into()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Data, E> {
                Ok(Data::Json(v.into()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Data, E> {
                Ok(Data::Json(v.into()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Data, E> {
                Ok(Data::Json(v.into()))
            }
            fn visit_map<A: MapAccess<'de>>(self, m: A) -> Result<Data, A::Error> {
                let v = serde_json::Value::deserialize(de::value::MapAccessDeserializer::new(m))?;
                Ok(Data::Json(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, s: A) -> Result<Data, A::Error> {
                let v = serde_json::Value::deserialize(de::value::SeqAccessDeserializer::new(s))?;
                Ok(Data::Json(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// True if the last token of `encoding` is `base64`.
fn ends_in_base64(encoding: &str) -> bool {
    encoding.rsplit('/').next() == Some("base64")
}

/// `encoding` without its last token (`None` if nothing is left).
fn drop_last_token(encoding: &str) -> Option<String> {
    encoding
        .rsplit_once('/')
        .map(|(rest, _)| rest.to_owned())
        .filter(|r| !r.is_empty())
}

/// Turns a payload and its encoding into what the hub stores: base64 text
/// is decoded (the `base64` token dropped), a JSON value given directly
/// becomes its text with `json` appended. Returns the payload bytes, the
/// remaining encoding and whether the payload is UTF-8 text (`Some(1)`)
/// or bytes (`Some(0)`). Bad base64 is 40013.
pub fn normalize_data(
    data: Option<Data>,
    encoding: Option<String>,
) -> Result<(Bytes, Option<String>, u8), ErrorInfo> {
    let encoding = encoding.filter(|e| !e.is_empty());
    Ok(match data {
        None => (Bytes::new(), encoding, 1),
        Some(Data::Text(t)) => match &encoding {
            Some(e) if ends_in_base64(e) => {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(t.trim())
                    .map_err(|err| {
                        ErrorInfo::new(40013, 400, format!("invalid base64 data: {err}"))
                    })?;
                (Bytes::from(raw), drop_last_token(e), 0)
            }
            _ => (Bytes::from(t), encoding, 1),
        },
        Some(Data::Binary(b)) => (b, encoding, 0),
        Some(Data::Json(v)) => {
            let text = v.to_string();
            let enc = match encoding {
                Some(e) => format!("{e}/json"),
                None => "json".to_owned(),
            };
            (Bytes::from(text), Some(enc), 1)
        }
    })
}

/// For a JSON receiver: bytes as base64 text, `base64` appended to the
/// encoding.
fn json_ready(data: &mut Option<Data>, encoding: &mut Option<String>) {
    if let Some(Data::Binary(b)) = data {
        let text = base64::engine::general_purpose::STANDARD.encode(b);
        *data = Some(Data::Text(text));
        *encoding = Some(match encoding.take() {
            Some(e) if !e.is_empty() => format!("{e}/base64"),
            _ => "base64".to_owned(),
        });
    }
}

// ---------------------------------------------------------------------------
// Extras
// ---------------------------------------------------------------------------

/// A message's `extras` object, with `headers` pulled out in their order
/// (serde_json's map would sort them). Header values that are not strings
/// are kept as their JSON text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Extras {
    /// `extras.headers`, in order.
    pub headers: Vec<(String, String)>,
    /// Every other member of `extras`, in order.
    pub other: Vec<(String, serde_json::Value)>,
}

impl Extras {
    /// True when there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.headers.is_empty() && self.other.is_empty()
    }

    /// `other` as compact JSON object text (`None` if empty).
    pub fn other_json(&self) -> Option<String> {
        if self.other.is_empty() {
            return None;
        }
        let only = Extras {
            headers: Vec::new(),
            other: self.other.clone(),
        };
        serde_json::to_string(&only).ok()
    }
}

impl Serialize for Extras {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Headers<'a>(&'a [(String, String)]);
        impl Serialize for Headers<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(Some(self.0.len()))?;
                for (k, v) in self.0 {
                    m.serialize_entry(k, v)?;
                }
                m.end()
            }
        }
        let n = self.other.len() + usize::from(!self.headers.is_empty());
        let mut m = s.serialize_map(Some(n))?;
        for (k, v) in &self.other {
            m.serialize_entry(k, v)?;
        }
        if !self.headers.is_empty() {
            m.serialize_entry("headers", &Headers(&self.headers))?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for Extras {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Extras, D::Error> {
        struct Headers(Vec<(String, String)>);
        impl<'de> Deserialize<'de> for Headers {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Headers, D::Error> {
                struct HV;
                impl<'de> Visitor<'de> for HV {
                    type Value = Headers;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        f.write_str("an object of headers")
                    }
                    fn visit_unit<E: de::Error>(self) -> Result<Headers, E> {
                        Ok(Headers(Vec::new()))
                    }
                    fn visit_none<E: de::Error>(self) -> Result<Headers, E> {
                        Ok(Headers(Vec::new()))
                    }
                    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Headers, A::Error> {
                        let mut out = Vec::new();
                        while let Some((k, v)) = m.next_entry::<String, serde_json::Value>()? {
                            let v = match v {
                                serde_json::Value::String(s) => s,
                                other => other.to_string(),
                            };
                            out.push((k, v));
                        }
                        Ok(Headers(out))
                    }
                }
                d.deserialize_any(HV)
            }
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Extras;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an extras object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Extras, A::Error> {
                let mut e = Extras::default();
                while let Some(k) = m.next_key::<String>()? {
                    if k == "headers" {
                        e.headers = m.next_value::<Headers>()?.0;
                    } else {
                        let v = m.next_value::<serde_json::Value>()?;
                        e.other.push((k, v));
                    }
                }
                Ok(e)
            }
        }
        d.deserialize_map(V)
    }
}

// ---------------------------------------------------------------------------
// Channel names, serials, ids
// ---------------------------------------------------------------------------

/// The hub channel of a channel string: any `[?...]` qualifier prefix
/// removed; refused (40010) unless it is a valid MQTT topic name (no `+`,
/// `#`, NUL, not empty) and does not start with `$share/`. Length and depth limits are checked by
/// `Hub::publish`/`Hub::subscribe`.
pub fn channel_name(raw: &str) -> Result<&str, ErrorInfo> {
    let name = match raw.strip_prefix("[?") {
        Some(rest) => match rest.find(']') {
            Some(i) => &rest[i + 1..],
            None => return Err(ErrorInfo::invalid_channel("unterminated qualifier")),
        },
        None => raw,
    };
    if name.is_empty() {
        return Err(ErrorInfo::invalid_channel("empty"));
    }
    if name.contains(['+', '#', '\0']) {
        return Err(ErrorInfo::invalid_channel(
            "it must not contain '+', '#' or NUL",
        ));
    }
    if name.starts_with("$share/") {
        // The hub would take it for an MQTT shared subscription.
        return Err(ErrorInfo::invalid_channel("it must not start with $share/"));
    }
    Ok(name)
}

/// A message's serial from its hub publish sequence number: 16 hex digits,
/// so lexical order is publish order.
pub fn serial_of(seq: u64) -> String {
    format!("{seq:016x}")
}

/// A message's id when its publisher gave none: `<serial>:0`.
pub fn id_of(seq: u64) -> String {
    format!("{seq:016x}:0")
}

// ---------------------------------------------------------------------------
// The hub mapping
// ---------------------------------------------------------------------------

impl Message {
    /// The hub message for a publish of `self` on hub channel `channel`
    /// (already through [`channel_name`]) by the hub session `origin`.
    ///
    /// - data: text (encoding absent or not ending in `base64`) → UTF-8
    ///   bytes, `payload_format` 1; bytes → `payload_format` 0; text with
    ///   an encoding ending in `base64` → decoded, the token dropped,
    ///   `payload_format` 0 (bad base64: 40013); a JSON value → its text
    ///   with `json` appended.
    /// - the remaining encoding → `props.encoding`; exactly `json` also sets
    ///   `content_type` `application/json`.
    /// - name, id, clientId, connectionId → the props of the same name;
    ///   `extras.headers` → `user_properties` in order; the rest of extras
    ///   → `props.extras` as compact JSON.
    ///
    /// QoS is 1 (a realtime publish is acknowledged), not retained.
    pub fn into_hub(
        self,
        channel: &str,
        origin: Option<Arc<str>>,
    ) -> Result<tern_hub::Message, ErrorInfo> {
        let (payload, encoding, format) = normalize_data(self.data, self.encoding)?;
        let content_type = (encoding.as_deref() == Some("json")).then(|| "application/json".into());
        let (user_properties, extras) = match self.extras {
            Some(e) => {
                let other = e.other_json();
                (e.headers, other)
            }
            None => (Vec::new(), None),
        };
        let props = tern_hub::MessageProps {
            payload_format: Some(format),
            content_type,
            user_properties,
            name: self.name,
            encoding,
            id: self.id,
            extras,
            client_id: self.client_id,
            connection_id: self.connection_id,
            ..tern_hub::MessageProps::default()
        };
        let mut m = tern_hub::Message::new(channel, payload, 1);
        m.origin = origin;
        m.props = Some(Box::new(props));
        Ok(m)
    }

    /// The wire message for a hub message, received at `timestamp_ms`
    /// (`Hub::wall_ms(msg.received_at)`).
    ///
    /// - data: `payload_format` 0 → bytes, 1 → text, absent → text if valid
    ///   UTF-8 else bytes ([`ProtocolMessage::encode`] turns bytes into
    ///   base64 for JSON receivers).
    /// - encoding: `props.encoding`, else `json` when `content_type` is
    ///   `application/json` and the text parses as JSON.
    /// - extras: `props.extras` merged with `headers` from
    ///   `user_properties` (absent when both are empty).
    /// - id: `props.id`, else [`id_of`]`(msg.seq)`; serial:
    ///   [`serial_of`]`(msg.seq)`.
    pub fn from_hub(msg: &tern_hub::Message, timestamp_ms: u64) -> Message {
        let p = msg.props.as_deref();
        let format = p.and_then(|p| p.payload_format);
        let data = match format {
            Some(0) => Data::Binary(msg.payload.clone()),
            _ => match std::str::from_utf8(&msg.payload) {
                Ok(t) => Data::Text(t.to_owned()),
                Err(_) => Data::Binary(msg.payload.clone()),
            },
        };
        let encoding = p.and_then(|p| p.encoding.clone()).or_else(|| {
            let is_json = p.is_some_and(|p| p.content_type.as_deref() == Some("application/json"));
            match &data {
                Data::Text(t)
                    if is_json && serde_json::from_str::<serde_json::Value>(t).is_ok() =>
                {
                    Some("json".to_owned())
                }
                _ => None,
            }
        });
        let mut extras = p
            .and_then(|p| p.extras.as_deref())
            .and_then(|e| serde_json::from_str::<Extras>(e).ok())
            .unwrap_or_default();
        if let Some(p) = p {
            extras.headers = p.user_properties.clone();
        }
        Message {
            id: Some(
                p.and_then(|p| p.id.clone())
                    .unwrap_or_else(|| id_of(msg.seq)),
            ),
            name: p.and_then(|p| p.name.clone()),
            data: Some(data),
            encoding,
            client_id: p.and_then(|p| p.client_id.clone()),
            connection_id: p.and_then(|p| p.connection_id.clone()),
            connection_key: None,
            timestamp: Some(timestamp_ms),
            extras: (!extras.is_empty()).then_some(extras),
            action: None,
            serial: Some(serial_of(msg.seq)),
        }
    }

    /// Bytes as base64 text for a JSON receiver (`base64` appended to the
    /// encoding); anything else unchanged.
    pub fn make_json_ready(&mut self) {
        json_ready(&mut self.data, &mut self.encoding);
    }

    /// Bytes of `data` as sent (text bytes, raw bytes, or JSON text), for
    /// size checks.
    pub fn data_len(&self) -> usize {
        data_len(&self.data)
    }
}

impl PresenceMessage {
    /// Bytes as base64 text for a JSON receiver.
    pub fn make_json_ready(&mut self) {
        json_ready(&mut self.data, &mut self.encoding);
    }

    /// Text for base64 (JSON mode) decoded and JSON values made text, as
    /// for messages ([`normalize_data`]), so the stored member is the same
    /// whichever format its connection used.
    pub fn normalize(&mut self) -> Result<(), ErrorInfo> {
        if self.data.is_none() {
            return Ok(());
        }
        let (payload, encoding, format) = normalize_data(self.data.take(), self.encoding.take())?;
        self.data = Some(if format == 0 {
            Data::Binary(payload)
        } else {
            // normalize_data made it from a String or JSON text.
            Data::Text(String::from_utf8_lossy(&payload).into_owned())
        });
        self.encoding = encoding;
        Ok(())
    }

    /// Bytes of `data`, for size checks.
    pub fn data_len(&self) -> usize {
        data_len(&self.data)
    }
}

fn data_len(d: &Option<Data>) -> usize {
    match d {
        None => 0,
        Some(Data::Text(t)) => t.len(),
        Some(Data::Binary(b)) => b.len(),
        Some(Data::Json(v)) => v.to_string().len(),
    }
}

#[cfg(test)]
mod tests;
