//! Limits on the request's HTTP before any token is looked at: the request target,
//! each header line, the whole head, the number of header fields, the body, and the
//! framing (`Content-Length` beside `Transfer-Encoding`). The settings come from the
//! `http:` config section; the checks are pure, so the Pingora glue only feeds them
//! lengths and raw bytes.

use crate::error::EdgeError;
use crate::forwarded::TrustedProxies;
use crate::header::InboundPolicy;
use std::time::Duration;

/// Size limits of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// One header line, `name: value` (431 `header_too_large`).
    pub max_header_line_bytes: usize,
    /// The whole head: request line and every header line (431 `header_too_large`).
    pub max_header_bytes: usize,
    /// Header fields (431 `too_many_headers`).
    pub max_headers: usize,
    /// The request target, path and query (414 `uri_too_long`).
    pub max_uri_bytes: usize,
    /// Body bytes, unless the route says otherwise (413 `body_too_large`).
    pub max_body_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_header_line_bytes: 16 << 10,
            max_header_bytes: 64 << 10,
            max_headers: 100,
            max_uri_bytes: 8 << 10,
            max_body_bytes: 1 << 20,
        }
    }
}

/// The validated `http:` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    /// Size limits.
    pub limits: Limits,
    /// Inbound header-name screen.
    pub inbound: InboundPolicy,
    /// Proxies whose forwarding headers are believed.
    pub trusted: TrustedProxies,
    /// Longest wait for each read of a new connection's first request head.
    pub header_read_timeout: Duration,
    /// Longest wait for the next request on a kept-alive connection (and for each
    /// read of its head).
    pub idle_timeout: Duration,
    /// Longest wait for each read of a request body.
    pub body_read_timeout: Duration,
}

/// Pingora 0.9.1's own ceilings, past which it answers a bodiless 400 itself before any
/// gateway code runs: header fields (`MAX_HEADERS`) and head bytes (`MAX_HEADER_SIZE`).
pub const PINGORA_MAX_HEADERS: usize = 256;
/// See [`PINGORA_MAX_HEADERS`].
pub const PINGORA_MAX_HEAD_BYTES: usize = 1_048_575;

/// Checks the request head: `uri_len` bytes of request target, `head_len` bytes of raw
/// head, `field_count` header fields, and one `(name_len, value_len)` per field.
pub fn check_head(
    limits: &Limits,
    uri_len: usize,
    head_len: usize,
    field_count: usize,
    fields: impl IntoIterator<Item = (usize, usize)>,
) -> Result<(), EdgeError> {
    if uri_len > limits.max_uri_bytes {
        return Err(EdgeError::UriTooLong);
    }
    if field_count > limits.max_headers {
        return Err(EdgeError::TooManyHeaders);
    }
    if head_len > limits.max_header_bytes {
        return Err(EdgeError::HeaderTooLarge);
    }
    for (name, value) in fields {
        // `name: value` as sent.
        if name + 2 + value > limits.max_header_line_bytes {
            return Err(EdgeError::HeaderTooLarge);
        }
    }
    Ok(())
}

/// Whether the raw request head (request line, header lines, as parsed by an HTTP/1
/// parser) has a field named `name` (lower case).
pub fn head_has_field(raw_head: &[u8], name: &str) -> bool {
    raw_head.split(|&b| b == b'\n').skip(1).any(|line| {
        line.len() > name.len()
            && line[..name.len()].eq_ignore_ascii_case(name.as_bytes())
            && line[name.len()..].iter().find(|b| !matches!(b, b' ' | b'\t')) == Some(&b':')
    })
}

/// Framing a request must not have: `Content-Length` beside `Transfer-Encoding`
/// (RFC 9112 §6.1: a smuggling vector, refused rather than reconciled).
pub fn check_framing(raw_head: &[u8], has_transfer_encoding: bool) -> Result<(), EdgeError> {
    if has_transfer_encoding && head_has_field(raw_head, "content-length") {
        return Err(EdgeError::Malformed("both Content-Length and Transfer-Encoding"));
    }
    Ok(())
}

/// A running count of body bytes against a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyBudget {
    /// The limit.
    pub limit: u64,
    /// Bytes seen so far.
    pub seen: u64,
}

impl BodyBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64) -> Self {
        Self { limit, seen: 0 }
    }

    /// Counts `n` more bytes; `Err` once past the limit.
    pub fn take(&mut self, n: usize) -> Result<(), EdgeError> {
        self.seen = self.seen.saturating_add(n as u64);
        if self.seen > self.limit {
            Err(EdgeError::BodyTooLarge)
        } else {
            Ok(())
        }
    }

    /// Checks a declared `Content-Length`.
    pub fn declared(&self, content_length: u64) -> Result<(), EdgeError> {
        if content_length > self.limit {
            Err(EdgeError::BodyTooLarge)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_header_line_bytes: 100,
            max_header_bytes: 300,
            max_headers: 3,
            max_uri_bytes: 50,
            max_body_bytes: 10,
        }
    }

    #[test]
    fn head_limits() {
        let l = limits();
        let ok = [(4usize, 10usize), (6, 20)];
        assert_eq!(check_head(&l, 50, 300, 2, ok), Ok(()));
        assert_eq!(check_head(&l, 51, 100, 2, ok), Err(EdgeError::UriTooLong));
        assert_eq!(check_head(&l, 10, 301, 2, ok), Err(EdgeError::HeaderTooLarge));
        assert_eq!(check_head(&l, 10, 100, 4, [(1, 1); 4]), Err(EdgeError::TooManyHeaders));
        assert_eq!(check_head(&l, 10, 100, 1, [(4, 94)]), Ok(()));
        assert_eq!(check_head(&l, 10, 100, 1, [(4, 95)]), Err(EdgeError::HeaderTooLarge));
    }

    #[test]
    fn framing() {
        let both = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(head_has_field(both, "content-length"));
        assert_eq!(check_framing(both, true), Err(EdgeError::Malformed("both Content-Length and Transfer-Encoding")));
        let te = b"POST / HTTP/1.1\r\nHost: a\r\nX-Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(!head_has_field(te, "content-length"));
        assert_eq!(check_framing(te, true), Ok(()));
        // The request line is not a field, nor a longer name.
        assert!(!head_has_field(b"content-length: / HTTP/1.1\r\n\r\n", "content-length"));
        assert!(!head_has_field(b"GET / HTTP/1.1\r\ncontent-lengthy: 1\r\n\r\n", "content-length"));
        assert!(head_has_field(b"GET / HTTP/1.1\nCONTENT-LENGTH:1\n\n", "content-length"));
    }

    #[test]
    fn body_budget() {
        let mut b = BodyBudget::new(10);
        assert_eq!(b.declared(10), Ok(()));
        assert_eq!(b.declared(11), Err(EdgeError::BodyTooLarge));
        assert_eq!(b.take(6), Ok(()));
        assert_eq!(b.take(4), Ok(()));
        assert_eq!(b.take(1), Err(EdgeError::BodyTooLarge));
    }
}
