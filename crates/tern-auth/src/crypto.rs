//! The few primitives every credential check is built from: HMAC-SHA-256,
//! constant-time comparison, base64 in the two alphabets Ably and JWT use.
//!
//! Kept in one place so that an audit of "what touches a secret" is one file.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Starts an HMAC-SHA-256 over `key`.
fn mac_for(key: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length (longer ones are hashed), so this
    // cannot fail whatever the key is.
    <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC-SHA-256 takes keys of any length")
}

/// HMAC-SHA-256 of the concatenation of `parts`, keyed with `key`.
pub(crate) fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = mac_for(key);
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// Whether `tag` is the HMAC-SHA-256 of `parts` under `key`, compared in
/// constant time (the comparison does not stop at the first differing byte).
pub(crate) fn hmac_sha256_verify(key: &[u8], parts: &[&[u8]], tag: &[u8]) -> bool {
    let mut mac = mac_for(key);
    for part in parts {
        mac.update(part);
    }
    mac.verify_slice(tag).is_ok()
}

/// Compares two secrets without leaking, through timing, where they differ
/// or how long the expected one is: both are hashed first, and the digests
/// (always 32 bytes) are compared in constant time.
pub(crate) fn secrets_equal(a: &[u8], b: &[u8]) -> bool {
    let da = Sha256::digest(a);
    let db = Sha256::digest(b);
    bool::from(da.as_slice().ct_eq(db.as_slice()))
}

/// SHA-256 of the concatenation of `parts`.
pub(crate) fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// Standard base64 with padding: the alphabet of the TokenRequest `mac`.
pub(crate) fn b64_std(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Decodes standard padded base64; `None` when it is not.
pub(crate) fn b64_std_decode(text: &str) -> Option<Vec<u8>> {
    STANDARD.decode(text).ok()
}

/// URL-safe base64 without padding: the alphabet of JWTs and Tern tokens.
pub(crate) fn b64_url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes URL-safe unpadded base64; `None` when it is not.
pub(crate) fn b64_url_decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let tag = hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert!(hmac_sha256_verify(
            b"Jefe",
            &[b"what do ya want for nothing?"],
            &tag
        ));
        let mut bad = tag;
        bad[31] ^= 1;
        assert!(!hmac_sha256_verify(
            b"Jefe",
            &[b"what do ya want for nothing?"],
            &bad
        ));
        assert!(!hmac_sha256_verify(
            b"Jefe",
            &[b"what do ya want for nothing?"],
            &tag[..31]
        ));
    }

    #[test]
    fn secrets_compare_by_content() {
        assert!(secrets_equal(b"abc", b"abc"));
        assert!(!secrets_equal(b"abc", b"abd"));
        assert!(!secrets_equal(b"abc", b"abcd"));
        assert!(!secrets_equal(b"", b"a"));
    }

    #[test]
    fn base64_round_trips_and_rejects_the_other_alphabet() {
        let bytes = [0xfb, 0xff, 0x00, 0x10];
        assert_eq!(b64_std(&bytes), "+/8AEA==");
        assert_eq!(b64_url(&bytes), "-_8AEA");
        assert_eq!(b64_std_decode("+/8AEA==").as_deref(), Some(&bytes[..]));
        assert_eq!(b64_url_decode("-_8AEA").as_deref(), Some(&bytes[..]));
        assert_eq!(b64_url_decode("+/8AEA"), None);
        assert_eq!(b64_url_decode("-_8AEA=="), None);
    }
}
