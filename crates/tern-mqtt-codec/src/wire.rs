//! Wire primitives shared by the decoder and the encoder: a bounds-checked
//! reader over a frozen packet body, the byte sink the encoder writes to (or
//! only counts), variable byte integers, strings and binary data (§1.5).

use bytes::{BufMut, Bytes, BytesMut};

use crate::{DecodeError, EncodeError};

/// Largest value a variable byte integer can hold (four bytes, §1.5.5).
pub(crate) const VAR_INT_MAX: u32 = 268_435_455;

/// Largest string or binary field (two-byte length prefix, §1.5.4, §1.5.6).
const FIELD_MAX: usize = u16::MAX as usize;

/// Result of scanning the variable byte integer of a fixed header.
pub(crate) enum VarInt {
    /// Value and number of bytes it took.
    Done(u32, usize),
    /// The input ended before the last byte.
    Incomplete,
}

/// Reads a variable byte integer from the front of `buf` without consuming
/// it: at most four bytes, the fourth without continuation bit.
/// Non-minimal encodings (e.g. `0x80 0x00` for 0) are accepted.
pub(crate) fn scan_var_int(buf: &[u8]) -> Result<VarInt, ()> {
    let mut value: u32 = 0;
    for (i, &byte) in buf.iter().take(4).enumerate() {
        value |= u32::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(VarInt::Done(value, i + 1));
        }
        if i == 3 {
            return Err(());
        }
    }
    Ok(VarInt::Incomplete)
}

/// Bytes a variable byte integer of `value` takes (minimal encoding).
pub(crate) fn var_int_len(value: u32) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// A cursor over one packet body. Every read checks the bytes left first,
/// so an announced length is never trusted before it is known to fit.
pub(crate) struct Reader {
    buf: Bytes,
    pos: usize,
}

impl Reader {
    pub(crate) fn new(buf: Bytes) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Bytes not read yet.
    #[inline]
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// Fails with [`DecodeError::TrailingBytes`] unless everything was read.
    pub(crate) fn expect_end(&self) -> Result<(), DecodeError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes)
        }
    }

    #[inline]
    fn take(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        if n > self.remaining() {
            return Err(DecodeError::UnexpectedEof);
        }
        let start = self.pos;
        self.pos += n;
        Ok(&self.buf[start..start + n])
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A variable byte integer inside the body (property length,
    /// subscription identifier).
    pub(crate) fn var_int(&mut self) -> Result<u32, DecodeError> {
        match scan_var_int(&self.buf[self.pos..]) {
            Ok(VarInt::Done(value, len)) => {
                self.pos += len;
                Ok(value)
            }
            Ok(VarInt::Incomplete) => Err(DecodeError::UnexpectedEof),
            Err(()) => Err(DecodeError::MalformedVariableInteger),
        }
    }

    /// Raw bytes of a two-byte-length-prefixed field, borrowed.
    pub(crate) fn prefixed_slice(&mut self) -> Result<&[u8], DecodeError> {
        let len = usize::from(self.u16()?);
        self.take(len)
    }

    /// A UTF-8 string (§1.5.4): valid UTF-8 (which excludes surrogates) and
    /// no U+0000 [MQTT-1.5.4-1], [MQTT-1.5.4-2].
    pub(crate) fn string(&mut self) -> Result<String, DecodeError> {
        let raw = self.prefixed_slice()?;
        if raw.contains(&0) {
            return Err(DecodeError::InvalidUtf8);
        }
        match std::str::from_utf8(raw) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => Err(DecodeError::InvalidUtf8),
        }
    }

    /// Binary data (§1.5.6) as a zero-copy slice of the packet.
    pub(crate) fn binary(&mut self) -> Result<Bytes, DecodeError> {
        let len = usize::from(self.u16()?);
        if len > self.remaining() {
            return Err(DecodeError::UnexpectedEof);
        }
        let out = self.buf.slice(self.pos..self.pos + len);
        self.pos += len;
        Ok(out)
    }

    /// The next `len` bytes as a reader of their own.
    pub(crate) fn sub_reader(&mut self, len: usize) -> Result<Reader, DecodeError> {
        if len > self.remaining() {
            return Err(DecodeError::UnexpectedEof);
        }
        let sub = Reader::new(self.buf.slice(self.pos..self.pos + len));
        self.pos += len;
        Ok(sub)
    }

    /// Everything left, zero-copy; the reader is then empty.
    pub(crate) fn rest(&mut self) -> Bytes {
        let out = self.buf.slice(self.pos..);
        self.pos = self.buf.len();
        out
    }
}

/// Where the encoder writes. [`Counter`] only adds up lengths, so the same
/// code sizes a packet ([`crate::encoded_len`], property lengths, remaining
/// length) and writes it, and the two can never disagree.
pub(crate) trait Sink {
    fn put_u8(&mut self, v: u8);
    fn put_u16(&mut self, v: u16);
    fn put_u32(&mut self, v: u32);
    fn put_slice(&mut self, v: &[u8]);

    /// A variable byte integer; the caller keeps `v <= VAR_INT_MAX`.
    fn put_var_int(&mut self, mut v: u32) {
        loop {
            let mut byte = (v & 0x7F) as u8;
            v >>= 7;
            if v > 0 {
                byte |= 0x80;
            }
            self.put_u8(byte);
            if v == 0 {
                break;
            }
        }
    }

    /// A two-byte-length-prefixed field (string or binary data).
    fn put_prefixed(&mut self, v: &[u8]) -> Result<(), EncodeError> {
        if v.len() > FIELD_MAX {
            return Err(EncodeError::StringTooLong);
        }
        self.put_u16(v.len() as u16);
        self.put_slice(v);
        Ok(())
    }

    /// A UTF-8 string field.
    fn put_str(&mut self, v: &str) -> Result<(), EncodeError> {
        self.put_prefixed(v.as_bytes())
    }
}

/// A [`Sink`] that counts bytes.
#[derive(Default)]
pub(crate) struct Counter(pub(crate) usize);

impl Sink for Counter {
    #[inline]
    fn put_u8(&mut self, _: u8) {
        self.0 += 1;
    }
    #[inline]
    fn put_u16(&mut self, _: u16) {
        self.0 += 2;
    }
    #[inline]
    fn put_u32(&mut self, _: u32) {
        self.0 += 4;
    }
    #[inline]
    fn put_slice(&mut self, v: &[u8]) {
        self.0 += v.len();
    }
    #[inline]
    fn put_var_int(&mut self, v: u32) {
        self.0 += var_int_len(v);
    }
}

impl Sink for BytesMut {
    #[inline]
    fn put_u8(&mut self, v: u8) {
        BufMut::put_u8(self, v);
    }
    #[inline]
    fn put_u16(&mut self, v: u16) {
        BufMut::put_u16(self, v);
    }
    #[inline]
    fn put_u32(&mut self, v: u32) {
        BufMut::put_u32(self, v);
    }
    #[inline]
    fn put_slice(&mut self, v: &[u8]) {
        self.extend_from_slice(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(v: u32) -> Vec<u8> {
        let mut b = BytesMut::new();
        b.put_var_int(v);
        b.to_vec()
    }

    #[test]
    fn var_int_boundaries_round_trip() {
        for v in [
            0,
            1,
            127,
            128,
            16_383,
            16_384,
            2_097_151,
            2_097_152,
            VAR_INT_MAX,
        ] {
            let bytes = enc(v);
            assert_eq!(bytes.len(), var_int_len(v), "len of {v}");
            match scan_var_int(&bytes) {
                Ok(VarInt::Done(got, n)) => {
                    assert_eq!((got, n), (v, bytes.len()));
                }
                _ => panic!("{v} did not decode"),
            }
        }
    }

    #[test]
    fn var_int_spec_examples() {
        // §1.5.5 table: 127 = 0x7F, 128 = 0x80 0x01, 16383 = 0xFF 0x7F ...
        assert_eq!(enc(127), [0x7F]);
        assert_eq!(enc(128), [0x80, 0x01]);
        assert_eq!(enc(16_383), [0xFF, 0x7F]);
        assert_eq!(enc(16_384), [0x80, 0x80, 0x01]);
        assert_eq!(enc(268_435_455), [0xFF, 0xFF, 0xFF, 0x7F]);
    }

    #[test]
    fn var_int_fifth_byte_is_malformed() {
        assert!(scan_var_int(&[0xFF, 0xFF, 0xFF, 0xFF, 0x01]).is_err());
        assert!(scan_var_int(&[0x80, 0x80, 0x80, 0x80]).is_err());
        assert!(matches!(
            scan_var_int(&[0x80, 0x80, 0x80]),
            Ok(VarInt::Incomplete)
        ));
        assert!(matches!(scan_var_int(&[]), Ok(VarInt::Incomplete)));
    }

    #[test]
    fn var_int_non_minimal_is_accepted() {
        assert!(matches!(
            scan_var_int(&[0x80, 0x00]),
            Ok(VarInt::Done(0, 2))
        ));
        assert!(matches!(
            scan_var_int(&[0x81, 0x80, 0x80, 0x00]),
            Ok(VarInt::Done(1, 4))
        ));
    }

    #[test]
    fn reader_bounds() {
        let mut r = Reader::new(Bytes::from_static(&[0x00, 0x05, b'a']));
        assert_eq!(r.string(), Err(DecodeError::UnexpectedEof));
        let mut r = Reader::new(Bytes::from_static(&[0x00, 0x01, 0x00]));
        assert_eq!(r.string(), Err(DecodeError::InvalidUtf8));
        let mut r = Reader::new(Bytes::from_static(&[0x00, 0x03, 0xED, 0xA0, 0x80]));
        assert_eq!(r.string(), Err(DecodeError::InvalidUtf8), "surrogate");
        let mut r = Reader::new(Bytes::from_static(&[0x00, 0x02, b'h', b'i', 7]));
        assert_eq!(r.string().as_deref(), Ok("hi"));
        assert_eq!(r.expect_end(), Err(DecodeError::TrailingBytes));
        assert_eq!(r.u8(), Ok(7));
        assert_eq!(r.expect_end(), Ok(()));
        assert_eq!(r.u16(), Err(DecodeError::UnexpectedEof));
    }

    #[test]
    fn counter_matches_writer() {
        let mut c = Counter::default();
        let mut b = BytesMut::new();
        for s in [&mut c as &mut dyn SinkDyn, &mut b] {
            s.all();
        }
        assert_eq!(c.0, b.len());
    }

    trait SinkDyn {
        fn all(&mut self);
    }
    impl<S: Sink> SinkDyn for S {
        fn all(&mut self) {
            self.put_u8(1);
            self.put_u16(2);
            self.put_u32(3);
            self.put_var_int(300);
            self.put_str("abc").unwrap();
            self.put_prefixed(&[1, 2]).unwrap();
        }
    }
}
