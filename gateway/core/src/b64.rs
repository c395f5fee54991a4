//! Strict base64url (RFC 7515 §2): no padding, no `+`/`/`, no whitespace, and the
//! unused trailing bits of the last character must be zero, so every byte string has
//! exactly one accepted encoding.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;

const STRICT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(false),
);

/// Decodes canonical unpadded base64url; anything else is `None`.
pub fn decode(input: &[u8]) -> Option<Vec<u8>> {
    STRICT.decode(input).ok()
}

/// Encodes bytes as unpadded base64url.
pub fn encode(input: impl AsRef<[u8]>) -> String {
    STRICT.encode(input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_canonical_forms() {
        assert_eq!(decode(b"YWJj").unwrap(), b"abc");
        assert_eq!(decode(b"YWI").unwrap(), b"ab");
        let cases: &[&[u8]] = &[
            b"YWI=",   // padding
            b"YWJ",    // non-zero trailing bits (canonical is YWI)
            b"+/8",    // standard alphabet
            b"YW I",   // whitespace
            b"Y",      // impossible length
            b"YWJj\n", // trailing newline
        ];
        for c in cases {
            assert!(decode(c).is_none(), "{:?} must be refused", String::from_utf8_lossy(c));
        }
        assert_eq!(encode(b"ab"), "YWI");
    }
}
