//! The benchmark payload: who sent a message, when, and its place in the
//! sender's sequence.
//!
//! Layout (big-endian), then padding up to `--size`:
//!
//! | bytes  | field                                                    |
//! |--------|----------------------------------------------------------|
//! | 0..8   | send time, ns since the run's common start `Instant`     |
//! | 8..12  | publisher id                                             |
//! | 12..20 | sequence number, 0 for the publisher's first message     |

/// Bytes the header takes; the smallest `--size` accepted.
pub const HEADER_LEN: usize = 20;

/// The fields a payload carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Send time, ns since the run's start.
    pub sent_ns: u64,
    /// Publisher index within the run.
    pub publisher: u32,
    /// Sequence number within that publisher's stream.
    pub seq: u64,
}

impl Stamp {
    /// Writes the header into the first [`HEADER_LEN`] bytes of `out`.
    /// Returns false (writing nothing) if `out` is too short.
    pub fn write(&self, out: &mut [u8]) -> bool {
        let Some(head) = out.get_mut(..HEADER_LEN) else {
            return false;
        };
        head[0..8].copy_from_slice(&self.sent_ns.to_be_bytes());
        head[8..12].copy_from_slice(&self.publisher.to_be_bytes());
        head[12..20].copy_from_slice(&self.seq.to_be_bytes());
        true
    }

    /// Reads the header of `payload`; `None` if it is shorter than the header.
    pub fn read(payload: &[u8]) -> Option<Stamp> {
        let head = payload.get(..HEADER_LEN)?;
        let sent_ns = u64::from_be_bytes(head[0..8].try_into().ok()?);
        let publisher = u32::from_be_bytes(head[8..12].try_into().ok()?);
        let seq = u64::from_be_bytes(head[12..20].try_into().ok()?);
        Some(Stamp {
            sent_ns,
            publisher,
            seq,
        })
    }
}

/// A payload of `size` bytes (at least [`HEADER_LEN`]) holding `stamp`;
/// the padding is a fixed, non-zero pattern.
pub fn build(stamp: Stamp, size: usize) -> Vec<u8> {
    let mut v: Vec<u8> = (0..size.max(HEADER_LEN))
        .map(|i| b'a' + (i % 26) as u8)
        .collect();
    stamp.write(&mut v);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let s = Stamp {
            sent_ns: 0x0102_0304_0506_0708,
            publisher: 0xDEAD_BEEF,
            seq: u64::MAX - 1,
        };
        for size in [HEADER_LEN, 21, 64, 1000] {
            let p = build(s, size);
            assert_eq!(p.len(), size);
            assert_eq!(Stamp::read(&p), Some(s));
        }
    }

    #[test]
    fn layout_is_big_endian() {
        let p = build(
            Stamp {
                sent_ns: 1,
                publisher: 2,
                seq: 3,
            },
            HEADER_LEN,
        );
        assert_eq!(
            p,
            [0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 3]
        );
    }

    #[test]
    fn short_payloads() {
        assert_eq!(Stamp::read(&[0; HEADER_LEN - 1]), None);
        assert_eq!(Stamp::read(&[]), None);
        let mut short = [0u8; 10];
        let s = Stamp {
            sent_ns: 1,
            publisher: 1,
            seq: 1,
        };
        assert!(!s.write(&mut short));
        assert_eq!(short, [0; 10]);
        // Size below the header is raised to the header.
        assert_eq!(build(s, 4).len(), HEADER_LEN);
    }

    #[test]
    fn padding_is_kept() {
        let p = build(
            Stamp {
                sent_ns: 9,
                publisher: 9,
                seq: 9,
            },
            30,
        );
        assert_eq!(&p[HEADER_LEN..], b"uvwxyzabcd");
    }
}
