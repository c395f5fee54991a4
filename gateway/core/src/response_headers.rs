//! Headers the gateway puts on every answer, its own (refusals, errors, preflights)
//! and the upstream's alike, and upstream headers it removes because they leak
//! internals (`Server`, `X-Powered-By`). Set headers replace an upstream's value.
//!
//! ```
//! use gateway_core::response_headers::ResponseHeaders;
//! let h = ResponseHeaders::default_secure();
//! assert!(h.set.iter().any(|(n, v)| n == "X-Content-Type-Options" && v == "nosniff"));
//! assert!(h.remove.iter().any(|n| n == "server"));
//! ```

/// The validated response header settings of a route (the global ones merged with
/// the route's own).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResponseHeaders {
    /// `(name as configured, value)`, set on every answer.
    pub set: Vec<(String, String)>,
    /// Lower-case names removed from upstream answers.
    pub remove: Vec<String>,
}

/// Headers set when `response_headers.set` is not configured.
pub const DEFAULT_SET: [(&str, &str); 3] =
    [("X-Content-Type-Options", "nosniff"), ("X-Frame-Options", "DENY"), ("Referrer-Policy", "no-referrer")];

/// Upstream headers removed when `response_headers.remove` is not configured.
pub const DEFAULT_REMOVE: [&str; 2] = ["Server", "X-Powered-By"];

impl ResponseHeaders {
    /// The defaults: [`DEFAULT_SET`] and [`DEFAULT_REMOVE`].
    pub fn default_secure() -> Self {
        Self {
            set: DEFAULT_SET.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
            remove: DEFAULT_REMOVE.iter().map(|n| n.to_ascii_lowercase()).collect(),
        }
    }

    /// `self` with `more` on top: a header `more` sets replaces the one of the same
    /// name, and its removals are added.
    pub fn merged(&self, more: &ResponseHeaders) -> ResponseHeaders {
        let mut set: Vec<(String, String)> = self
            .set
            .iter()
            .filter(|(n, _)| !more.set.iter().any(|(m, _)| m.eq_ignore_ascii_case(n)))
            .cloned()
            .collect();
        set.extend(more.set.iter().cloned());
        let mut remove = self.remove.clone();
        remove.extend(more.remove.iter().filter(|n| !self.remove.contains(n)).cloned());
        ResponseHeaders { set, remove }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_headers_replace_and_add() {
        let global = ResponseHeaders::default_secure();
        let route = ResponseHeaders {
            set: vec![
                ("x-frame-options".into(), "SAMEORIGIN".into()),
                ("Content-Security-Policy".into(), "default-src 'self'".into()),
            ],
            remove: vec!["x-runtime".into(), "server".into()],
        };
        let m = global.merged(&route);
        let names: Vec<&str> = m.set.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["X-Content-Type-Options", "Referrer-Policy", "x-frame-options", "Content-Security-Policy"]);
        assert_eq!(m.remove, ["server", "x-powered-by", "x-runtime"]);
    }
}
