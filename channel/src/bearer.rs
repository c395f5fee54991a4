//! The one parser of `Authorization: Bearer <credential>` (RFC 6750 §2.1), used by
//! the gateway for tokens, by its admin listener and by the sidecar for their
//! credentials. The scheme is matched in any case (RFC 7235 §2.1), one or more
//! spaces may follow it, and the credential is visible ASCII.
//!
//! ```
//! use medgate_channel::bearer;
//! assert_eq!(bearer::token([&b"Bearer abc"[..]]), Ok("abc"));
//! assert!(bearer::matches([&b"bearer s3cret"[..]], "s3cret"));
//! ```

use subtle::ConstantTimeEq;

/// Why no bearer credential could be taken from the `Authorization` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BearerError {
    /// No header, another scheme, or an empty credential.
    Missing,
    /// A credential is there but unusable (what is wrong; never the value).
    Malformed(&'static str),
}

/// The credential of the `Authorization` header values: exactly one header, scheme
/// `Bearer` in any case, one or more spaces, a non-empty credential of visible ASCII
/// (trailing white space dropped).
pub fn token<'a, I>(values: I) -> Result<&'a str, BearerError>
where
    I: IntoIterator<Item = &'a [u8]>,
{
    let mut values = values.into_iter();
    let value = values.next().ok_or(BearerError::Missing)?;
    if values.next().is_some() {
        return Err(BearerError::Malformed("several Authorization headers"));
    }
    let value = std::str::from_utf8(value).map_err(|_| BearerError::Malformed("non-ASCII header"))?;
    let (scheme, rest) = value.split_once(' ').ok_or(BearerError::Missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(BearerError::Missing);
    }
    let token = rest.trim_start_matches(' ').trim_end();
    if token.is_empty() {
        return Err(BearerError::Missing);
    }
    if !visible_ascii(token.as_bytes()) {
        return Err(BearerError::Malformed("token characters"));
    }
    Ok(token)
}

/// Whether every byte is visible ASCII (`!` to `~`). Without an early exit inside a
/// run, the check compiles to a vector's width of bytes per step: a token is hundreds
/// of bytes, checked on every request (a byte-at-a-time `all` was most of a cached
/// token's cost).
fn visible_ascii(s: &[u8]) -> bool {
    s.chunks(256).all(|run| run.iter().fold(0u8, |bad, &b| bad | u8::from(b.wrapping_sub(b'!') > b'~' - b'!')) == 0)
}

/// Whether the `Authorization` values carry exactly the credential `want`, compared
/// in constant time (a missing or malformed header never matches).
pub fn matches<'a, I>(values: I, want: &str) -> bool
where
    I: IntoIterator<Item = &'a [u8]>,
{
    let got = token(values).unwrap_or("");
    !want.is_empty() && bool::from(got.as_bytes().ct_eq(want.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(v: &[u8]) -> Result<&str, BearerError> {
        token([v])
    }

    #[test]
    fn visible_ascii_is_exactly_the_graphic_bytes() {
        for b in 0..=255u8 {
            for at in [0, 1, 255, 256, 700] {
                let mut s = vec![b'a'; 701];
                s[at] = b;
                assert_eq!(visible_ascii(&s), b.is_ascii_graphic(), "byte {b:#04x} at {at}");
            }
        }
        assert!(visible_ascii(b""));
    }

    #[test]
    fn bearer_extraction() {
        assert_eq!(one(b"Bearer abc.def.ghi"), Ok("abc.def.ghi"));
        assert_eq!(one(b"bearer   abc"), Ok("abc"));
        assert_eq!(one(b"BEARER abc"), Ok("abc"));
        assert_eq!(one(b"Bearer abc \t"), Ok("abc"));
        assert_eq!(token(std::iter::empty()), Err(BearerError::Missing));
        assert_eq!(one(b"Basic dXNlcjpwYXNz"), Err(BearerError::Missing));
        assert_eq!(one(b"Bearer "), Err(BearerError::Missing));
        assert_eq!(one(b"Bearer"), Err(BearerError::Missing));
        assert_eq!(
            token([&b"Bearer a"[..], b"Bearer b"]),
            Err(BearerError::Malformed("several Authorization headers"))
        );
        assert_eq!(one(b"Bearer a\x01b"), Err(BearerError::Malformed("token characters")));
        assert_eq!(one(b"Bearer a b"), Err(BearerError::Malformed("token characters")));
        assert_eq!(one(b"Bearer \xff"), Err(BearerError::Malformed("non-ASCII header")));
    }

    #[test]
    fn credentials_match_exactly() {
        let want = "0123456789abcdef";
        assert!(matches([&b"Bearer 0123456789abcdef"[..]], want));
        assert!(matches([&b"bearer  0123456789abcdef"[..]], want), "scheme in any case (RFC 7235)");
        for wrong in [&b"Bearer 0123456789abcde"[..], b"Bearer 0123456789abcdefg", b"Basic 0123456789abcdef", b""] {
            assert!(!matches([wrong], want), "{wrong:?}");
        }
        assert!(!matches(std::iter::empty(), want));
        assert!(!matches([&b"Bearer x"[..], b"Bearer 0123456789abcdef"], want), "two headers never match");
        assert!(!matches([&b"Bearer "[..]], ""), "an empty credential never matches");
    }
}
