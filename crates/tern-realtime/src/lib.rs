//! Tern's Ably-compatible realtime protocol (ABLY-PROTOCOL.md): the wire
//! types shared with the REST API and SSE, and (in later modules) the
//! WebSocket connection and presence.
//!
//! # Layout
//! - `message`: [`ProtocolMessage`], [`Message`], [`PresenceMessage`],
//!   [`ErrorInfo`]; JSON and msgpack; the mapping to and from
//!   `tern_hub::Message`.

#![forbid(unsafe_code)]

pub mod message;

pub use message::{
    Data, DecodeError, ErrorInfo, Extras, Format, Message, PresenceMessage, ProtocolMessage,
    channel_name, id_of, serial_of,
};
