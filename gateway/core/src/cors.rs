//! CORS for browser clients: which origins may call a route, and the headers of a
//! preflight answer and of an actual response. The gateway answers a preflight
//! (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) itself, without a
//! token; an origin not allowed gets no CORS header at all, and every answer of a
//! route with CORS carries `Vary: Origin` (it depends on the origin).
//!
//! ```
//! use gateway_core::cors::{Cors, OriginRule};
//! let cors = Cors {
//!     origins: vec![OriginRule::parse("https://app.example.com").unwrap(),
//!                   OriginRule::parse("https://*.example.org").unwrap()],
//!     methods: vec!["GET".into(), "POST".into()],
//!     headers: vec!["authorization".into(), "content-type".into()],
//!     expose: vec!["x-request-id".into()],
//!     credentials: true,
//!     max_age: Some(600),
//! };
//! assert!(cors.allows(b"https://app.example.com"));
//! assert!(cors.allows(b"https://eu.example.org"));
//! assert!(!cors.allows(b"https://example.org"));
//! let ok = cors.preflight(b"https://app.example.com", b"POST", Some(b"Content-Type")).unwrap();
//! assert!(ok.iter().any(|(n, v)| *n == "access-control-allow-methods" && v == "GET, POST"));
//! assert!(cors.preflight(b"https://app.example.com", b"DELETE", None).is_none());
//! ```

/// One allowed origin: exact (`https://app.example.com`), a pattern whose host starts
/// with `*.` (`https://*.example.org`: any subdomain, not the domain itself), or `*`
/// (any origin; not with credentials).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginRule {
    /// Any origin.
    Any,
    /// This origin exactly (compared case-insensitively).
    Exact(String),
    /// `scheme://` + one or more labels + `.suffix[:port]`.
    Subdomains {
        /// `https://`.
        scheme: String,
        /// `.example.org` or `.example.org:8443`, lower case.
        suffix: String,
    },
}

impl OriginRule {
    /// Parses one configured origin; `Err` says what is wrong.
    pub fn parse(s: &str) -> Result<OriginRule, String> {
        if s == "*" {
            return Ok(OriginRule::Any);
        }
        let lower = s.to_ascii_lowercase();
        let (scheme, rest) =
            lower.split_once("://").filter(|(scheme, _)| *scheme == "http" || *scheme == "https").ok_or_else(|| {
                format!("{s:?} is not an origin: expected http(s)://host[:port], e.g. https://app.example.com")
            })?;
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || rest.starts_with('[') => {
                if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || p.parse::<u16>().is_err() {
                    return Err(format!("{s:?} has an invalid port"));
                }
                (h, Some(p))
            }
            _ => (rest, None),
        };
        let plain = |h: &str| !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.[]:".contains(&b));
        if let Some(domain) = host.strip_prefix("*.") {
            if !plain(domain) || domain.starts_with('.') || domain.ends_with('.') || !domain.contains('.') {
                return Err(format!("{s:?}: a pattern is *. followed by a domain of at least two labels"));
            }
            let suffix = match port {
                Some(p) => format!(".{domain}:{p}"),
                None => format!(".{domain}"),
            };
            return Ok(OriginRule::Subdomains { scheme: format!("{scheme}://"), suffix });
        }
        if !plain(host) {
            return Err(format!("{s:?} is not an origin: no path, query, wildcard or user part"));
        }
        Ok(OriginRule::Exact(lower))
    }

    fn matches(&self, origin: &str) -> bool {
        match self {
            OriginRule::Any => true,
            OriginRule::Exact(o) => o.eq_ignore_ascii_case(origin),
            OriginRule::Subdomains { scheme, suffix } => {
                let lower = origin.to_ascii_lowercase();
                let Some(host) = lower.strip_prefix(scheme.as_str()).and_then(|r| r.strip_suffix(suffix.as_str()))
                else {
                    return false;
                };
                !host.is_empty()
                    && host
                        .split('.')
                        .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
            }
        }
    }
}

/// A validated CORS policy.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cors {
    /// Allowed origins.
    pub origins: Vec<OriginRule>,
    /// Allowed methods, upper case.
    pub methods: Vec<String>,
    /// Allowed request headers, lower case (`*`: any, without credentials).
    pub headers: Vec<String>,
    /// Response headers scripts may read, lower case.
    pub expose: Vec<String>,
    /// `Access-Control-Allow-Credentials: true`.
    pub credentials: bool,
    /// `Access-Control-Max-Age` seconds.
    pub max_age: Option<u64>,
}

/// Response headers to add: `(lower-case name, value)`.
pub type Headers = Vec<(&'static str, String)>;

impl Cors {
    /// Whether `origin` (the request's `Origin` value) is allowed.
    pub fn allows(&self, origin: &[u8]) -> bool {
        let Ok(origin) = std::str::from_utf8(origin) else {
            return false;
        };
        origin != "null" && self.origins.iter().any(|r| r.matches(origin))
    }

    /// `Access-Control-Allow-Origin`: `*` for any origin without credentials, else the origin itself.
    fn allow_origin(&self, origin: &[u8]) -> String {
        if !self.credentials && self.origins.contains(&OriginRule::Any) {
            "*".into()
        } else {
            String::from_utf8_lossy(origin).into_owned()
        }
    }

    /// The headers of an actual (non-preflight) response to `origin`: empty when the
    /// origin is not allowed. `Vary: Origin` is the caller's to add in every case.
    pub fn actual(&self, origin: &[u8]) -> Headers {
        if !self.allows(origin) {
            return Vec::new();
        }
        let mut h = vec![("access-control-allow-origin", self.allow_origin(origin))];
        if self.credentials {
            h.push(("access-control-allow-credentials", "true".into()));
        }
        if !self.expose.is_empty() {
            h.push(("access-control-expose-headers", self.expose.join(", ")));
        }
        h
    }

    /// The headers of a preflight answer, or `None` when the origin, the method or
    /// one of the requested headers is not allowed.
    pub fn preflight(&self, origin: &[u8], method: &[u8], request_headers: Option<&[u8]>) -> Option<Headers> {
        if !self.allows(origin) || !self.methods.iter().any(|m| m.as_bytes() == method) {
            return None;
        }
        let any_header = self.headers.iter().any(|h| h == "*");
        let requested = std::str::from_utf8(request_headers.unwrap_or_default()).ok()?;
        let mut names = Vec::new();
        for name in requested.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let lower = name.to_ascii_lowercase();
            if !any_header && !self.headers.contains(&lower) {
                return None;
            }
            names.push(lower);
        }
        let mut h = vec![
            ("access-control-allow-origin", self.allow_origin(origin)),
            ("access-control-allow-methods", self.methods.join(", ")),
        ];
        if !names.is_empty() {
            h.push(("access-control-allow-headers", names.join(", ")));
        }
        if self.credentials {
            h.push(("access-control-allow-credentials", "true".into()));
        }
        if let Some(age) = self.max_age {
            h.push(("access-control-max-age", age.to_string()));
        }
        Some(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_rules() {
        let table: &[(&str, &[&str], &[&str])] = &[
            (
                "https://app.example.com",
                &["https://app.example.com", "HTTPS://APP.example.com"],
                &["http://app.example.com", "https://app.example.com:8443", "https://evil.app.example.com"],
            ),
            (
                "https://*.example.org",
                &["https://a.example.org", "https://a-b.c.example.org"],
                &[
                    "https://example.org",
                    "https://.example.org",
                    "https://a.example.org.evil.com",
                    "https://evilexample.org",
                    "http://a.example.org",
                ],
            ),
            ("http://localhost:3000", &["http://localhost:3000"], &["http://localhost:3001", "http://localhost"]),
            ("*", &["https://anything.test", "http://x:1"], &["null"]),
        ];
        for (rule, good, bad) in table {
            let cors = Cors { origins: vec![OriginRule::parse(rule).unwrap()], ..Default::default() };
            for o in *good {
                assert!(cors.allows(o.as_bytes()), "{rule} should allow {o}");
            }
            for o in *bad {
                assert!(!cors.allows(o.as_bytes()), "{rule} should refuse {o}");
            }
        }
        for bad in [
            "app.example.com",
            "https://app.example.com/",
            "ftp://x.y",
            "https://*.com",
            "https://a.*.b.c",
            "https://x:99999",
        ] {
            assert!(OriginRule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn preflight_and_actual() {
        let cors = Cors {
            origins: vec![OriginRule::parse("https://app.example.com").unwrap()],
            methods: vec!["GET".into(), "PUT".into()],
            headers: vec!["authorization".into(), "content-type".into()],
            expose: vec!["x-request-id".into()],
            credentials: true,
            max_age: Some(600),
        };
        let o = b"https://app.example.com";
        let h = cors.preflight(o, b"PUT", Some(b"Authorization, content-type")).unwrap();
        let get = |n: &str| h.iter().find(|(k, _)| *k == n).map(|(_, v)| v.as_str());
        assert_eq!(get("access-control-allow-origin"), Some("https://app.example.com"));
        assert_eq!(get("access-control-allow-headers"), Some("authorization, content-type"));
        assert_eq!(get("access-control-allow-credentials"), Some("true"));
        assert_eq!(get("access-control-max-age"), Some("600"));
        assert!(cors.preflight(o, b"PUT", Some(b"x-other")).is_none());
        assert!(cors.preflight(o, b"DELETE", None).is_none());
        assert!(cors.preflight(b"https://evil.test", b"GET", None).is_none());
        assert_eq!(cors.actual(o).len(), 3);
        assert!(cors.actual(b"https://evil.test").is_empty());
        // Any origin without credentials: `*`.
        let any = Cors { origins: vec![OriginRule::Any], methods: vec!["GET".into()], ..Default::default() };
        assert_eq!(any.actual(b"https://x.test")[0].1, "*");
    }
}
