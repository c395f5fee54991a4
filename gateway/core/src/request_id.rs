//! Request ids. The gateway makes its own for every request, unique per process
//! (a counter) and across processes (the process's start time in nanoseconds):
//! `<start nanos, 16 hex>-<counter, 16 hex>`, rendered into an inline buffer with no
//! allocation. A client's own `X-Request-Id` is never used in its place (clients
//! can repeat one); [`client_request_id`] keeps it, when short and plain, beside it.
//!
//! ```
//! use gateway_core::request_id::RequestIds;
//! let ids = RequestIds::new(0x1234);
//! assert_eq!(ids.next().as_str(), "0000000000001234-0000000000000000");
//! assert_ne!(ids.next().as_str(), ids.next().as_str());
//! ```

use std::sync::atomic::{AtomicU64, Ordering};

const LEN: usize = 33;

/// One gateway-made request id, `<instance>-<counter>` in lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RequestId([u8; LEN]);

impl RequestId {
    /// The id of request number `n` of the process identified by `instance`.
    pub fn new(instance: u64, n: u64) -> RequestId {
        let mut buf = [b'-'; LEN];
        hex(&mut buf[..16], instance);
        hex(&mut buf[17..], n);
        RequestId(buf)
    }

    /// The id as bytes (33 ASCII characters: a header value as it is).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The id as text (always 33 ASCII characters).
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("hex digits and '-' are ASCII")
    }
}

impl Default for RequestId {
    fn default() -> Self {
        RequestId::new(0, 0)
    }
}

impl std::fmt::Debug for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn hex(out: &mut [u8], v: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in out.iter_mut().enumerate() {
        *b = DIGITS[((v >> ((15 - i) * 4)) & 0xf) as usize];
    }
}

/// The request id source of one process: its instance number and a counter.
#[derive(Debug)]
pub struct RequestIds {
    instance: u64,
    next: AtomicU64,
}

impl RequestIds {
    /// A source for the process identified by `instance` (its start time in nanoseconds).
    pub const fn new(instance: u64) -> RequestIds {
        RequestIds { instance, next: AtomicU64::new(0) }
    }

    /// A fresh id, never returned before by this source.
    pub fn next(&self) -> RequestId {
        RequestId::new(self.instance, self.next.fetch_add(1, Ordering::Relaxed))
    }
}

/// The longest client request id kept.
pub const CLIENT_ID_MAX: usize = 64;

/// A client's `X-Request-Id` value when it is kept: 1 to 64 bytes of ASCII letters,
/// digits and `-_.:`; anything else (long, spaces, control or non-ASCII bytes) is not.
pub fn client_request_id(value: &[u8]) -> Option<&str> {
    let plain = |b: &u8| b.is_ascii_alphanumeric() || b"-_.:".contains(b);
    if value.is_empty() || value.len() > CLIENT_ID_MAX || !value.iter().all(plain) {
        return None;
    }
    std::str::from_utf8(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_fixed_width_hex_and_distinct() {
        let id = RequestId::new(u64::MAX, 0xabc);
        assert_eq!(id.as_str(), "ffffffffffffffff-0000000000000abc");
        let ids = RequestIds::new(7);
        let seen: std::collections::HashSet<String> = (0..1000).map(|_| ids.next().as_str().to_owned()).collect();
        assert_eq!(seen.len(), 1000);
        assert_ne!(RequestIds::new(8).next(), RequestIds::new(7).next());
    }

    #[test]
    fn client_ids() {
        for (given, kept) in [
            (&b"abc-123_x.y:z"[..], Some("abc-123_x.y:z")),
            (b"", None),
            (b"has space", None),
            (b"a\x01", None),
            ("é".as_bytes(), None),
            (&[b'a'; 64][..], Some(&"a".repeat(64)[..])),
            (&[b'a'; 65][..], None),
        ] {
            assert_eq!(client_request_id(given), kept, "{given:?}");
        }
    }
}
