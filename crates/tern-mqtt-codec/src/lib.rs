//! MQTT 3.1, 3.1.1 and 5.0 packet codec for Tern.
//!
//! Pure and incremental: [`decode`] takes bytes from a `BytesMut` and returns
//! `Ok(None)` until a whole packet is there; it checks every length against
//! [`Limits`] before allocating, and every malformed input becomes a
//! [`DecodeError`] whose variant names the broken rule and maps to the MQTT 5
//! reason code the server must send ([`DecodeError::reason_code`]).
//! Payloads are zero-copy `Bytes` slices of the read buffer.
//!
//! # Layout
//! - `types`: the packet structs, shared by every version.
//! - `error`: [`DecodeError`] and [`EncodeError`].
//! - `wire`: the bounds-checked body reader, the byte sink the encoder
//!   writes to or only counts, variable byte integers and strings.
//! - `properties`: MQTT 5 property identifiers, the table of which packet
//!   may carry which, and a decoder and encoder per property set.
//! - `decode`: fixed header and one function per packet type.
//! - `encode`: the reverse; [`encoded_len`] sizes a packet without writing it.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod decode;
mod encode;
mod error;
mod properties;
mod types;
mod wire;

pub use decode::{decode, peek_packet_len};
pub use encode::{PublishRef, encode, encode_publish, encoded_len, encoded_publish_len};
pub use error::{DecodeError, EncodeError};
pub use types::*;

/// Bounds the decoder enforces. Every length is checked against these
/// before any allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest whole packet (fixed header included) accepted, in bytes.
    /// The MQTT maximum is 268_435_460 (remaining length 268_435_455 + 5).
    pub packet_bytes_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            packet_bytes_max: 1024 * 1024,
        }
    }
}
