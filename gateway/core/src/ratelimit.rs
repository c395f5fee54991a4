//! Rate limits: what a limit is, which request key it counts, and the pure decision
//! over counters the caller keeps (the Pingora glue keeps them in `pingora-limits`
//! estimators, one per limit, that outlive config reloads).
//!
//! ```
//! use gateway_core::ratelimit::{check, Counters, KeyKind, LimitKey, Phase, RateLimit, Who};
//! use std::time::Duration;
//! struct One(std::cell::Cell<u64>);
//! impl Counters for One {
//!     fn observe(&self, _limit: usize, _key: &LimitKey<'_>, events: u64) -> u64 {
//!         self.0.set(self.0.get() + events);
//!         self.0.get()
//!     }
//!     fn elapsed(&self, _limit: usize, _key: &LimitKey<'_>) -> Duration { Duration::from_secs(15) }
//! }
//! let limits = [RateLimit::new(KeyKind::Subject, 2, 60)];
//! let who = Who { tenant: Some("t1"), subject: Some("p-1"), client: None };
//! let c = One(Default::default());
//! assert!(check(&limits, &c, &who, Phase::Token).is_ok());
//! assert!(check(&limits, &c, &who, Phase::Token).is_ok());
//! let refused = check(&limits, &c, &who, Phase::Token).unwrap_err();
//! assert_eq!(refused.retry_after, 45);
//! assert_eq!(refused.ratelimit, r#""subject-60s";r=0;t=45"#);
//! assert_eq!(refused.policy, r#""subject-60s";q=2;w=60"#);
//! ```
//!
//! A limit allows `requests` per fixed window of `window_secs`: every request counts
//! in the window it arrives in (refused ones too, so hammering does not help), and the
//! count starts again when the window ends. A refusal says honestly when that is:
//! `Retry-After` and the `RateLimit` field's `t` are the seconds left in the window,
//! rounded up; `RateLimit-Policy` gives the quota and window
//! (draft-ietf-httpapi-ratelimit-headers, structured-field syntax).

use std::net::IpAddr;
use std::time::Duration;

/// What a limit counts requests by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// The token's tenant.
    Tenant,
    /// The token's tenant and subject (`sub`).
    Subject,
    /// The client address (by `gateway_core::forwarded`'s trusted-proxy rule).
    Client,
}

impl KeyKind {
    /// The config spelling and metric label: `tenant`, `subject` or `client`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Tenant => "tenant",
            KeyKind::Subject => "subject",
            KeyKind::Client => "client",
        }
    }

    /// Parses the config spelling.
    pub fn parse(s: &str) -> Option<KeyKind> {
        match s {
            "tenant" => Some(KeyKind::Tenant),
            "subject" => Some(KeyKind::Subject),
            "client" => Some(KeyKind::Client),
            _ => None,
        }
    }

    /// Whether the key comes from the verified token (else it is known before any
    /// token work).
    pub fn needs_token(self) -> bool {
        !matches!(self, KeyKind::Client)
    }
}

/// One validated limit: `requests` per `window_secs`, counted by `key`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RateLimit {
    /// What is counted.
    pub key: KeyKind,
    /// Requests allowed per window.
    pub requests: u64,
    /// The window, in whole seconds.
    pub window_secs: u64,
    /// The policy name in the `RateLimit` fields: `<key>-<window>s`.
    pub name: String,
}

impl RateLimit {
    /// A limit with its policy name.
    pub fn new(key: KeyKind, requests: u64, window_secs: u64) -> Self {
        Self { key, requests, window_secs, name: format!("{}-{window_secs}s", key.as_str()) }
    }

    /// The window as a duration.
    pub fn window(&self) -> Duration {
        Duration::from_secs(self.window_secs)
    }

    /// The refusal for a request over this limit, `elapsed` into the current window.
    pub fn refusal(&self, elapsed: Duration, what: &'static str) -> Limited {
        let left = self.window().saturating_sub(elapsed);
        // Whole seconds, rounded up, and at least 1: a client waiting this long finds
        // the window over.
        let reset = left.as_secs() + u64::from(left.subsec_nanos() > 0);
        let reset = reset.clamp(1, self.window_secs.max(1));
        Limited {
            retry_after: reset,
            ratelimit: format!("\"{}\";r=0;t={reset}", self.name),
            policy: format!("\"{}\";q={};w={}", self.name, self.requests, self.window_secs),
            kind: what,
        }
    }
}

/// A request over a limit: the 429's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limited {
    /// `Retry-After` seconds (the rest of the window, rounded up).
    pub retry_after: u64,
    /// The `RateLimit` field: `"<policy>";r=0;t=<seconds>`.
    pub ratelimit: String,
    /// The `RateLimit-Policy` field: `"<policy>";q=<requests>;w=<window>`.
    pub policy: String,
    /// The metric label of what refused: `tenant`, `subject`, `client` or `auth_failures`.
    pub kind: &'static str,
}

/// The key one request is counted under for one limit; hashing it is all the
/// counters do with it (no allocation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitKey<'a> {
    /// A tenant id.
    Tenant(&'a str),
    /// A tenant id and subject.
    Subject(&'a str, &'a str),
    /// A client address.
    Client(IpAddr),
}

/// Who a request is, as far as it is known.
#[derive(Debug, Clone, Copy, Default)]
pub struct Who<'a> {
    /// The verified token's tenant.
    pub tenant: Option<&'a str>,
    /// The verified token's subject.
    pub subject: Option<&'a str>,
    /// The client address.
    pub client: Option<IpAddr>,
}

impl<'a> Who<'a> {
    /// The key `kind` counts this request under; `None` when it is not known (a
    /// token without `sub`, a request off TCP).
    pub fn key(&self, kind: KeyKind) -> Option<LimitKey<'a>> {
        match kind {
            KeyKind::Tenant => self.tenant.map(LimitKey::Tenant),
            KeyKind::Subject => Some(LimitKey::Subject(self.tenant?, self.subject?)),
            KeyKind::Client => self.client.map(LimitKey::Client),
        }
    }
}

/// The counters behind a list of limits, one per limit (by its index).
pub trait Counters {
    /// Adds `events` to `key`'s count in `limit`'s current window and returns the
    /// count (`events == 0` reads it).
    fn observe(&self, limit: usize, key: &LimitKey<'_>, events: u64) -> u64;
    /// How far into its current window `limit` is.
    fn elapsed(&self, limit: usize, key: &LimitKey<'_>) -> Duration;
}

/// When a limit is checked: before any token work (keys known without a token) or
/// after the token is verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Before the decision: client-keyed limits.
    Edge,
    /// After the token is verified: tenant- and subject-keyed limits.
    Token,
}

/// Counts the request against each of `limits` checked in `phase` and refuses it at
/// the first one it is over.
pub fn check<C: Counters + ?Sized>(
    limits: &[RateLimit],
    counters: &C,
    who: &Who<'_>,
    phase: Phase,
) -> Result<(), Limited> {
    for (i, limit) in limits.iter().enumerate() {
        if limit.key.needs_token() != (phase == Phase::Token) {
            continue;
        }
        let Some(key) = who.key(limit.key) else {
            continue;
        };
        if counters.observe(i, &key, 1) > limit.requests {
            return Err(limit.refusal(counters.elapsed(i, &key), limit.key.as_str()));
        }
    }
    Ok(())
}

/// The label of the per-address limit on refused tokens.
pub const AUTH_FAILURES: &str = "auth_failures";

/// Whether `client` is already over the limit on refused tokens (read only: checked
/// before any token work).
pub fn auth_failures_over<C: Counters + ?Sized>(
    limit: &RateLimit,
    counters: &C,
    client: IpAddr,
) -> Result<(), Limited> {
    let key = LimitKey::Client(client);
    if counters.observe(0, &key, 0) >= limit.requests {
        return Err(limit.refusal(counters.elapsed(0, &key), AUTH_FAILURES));
    }
    Ok(())
}

/// Whether a refusal with this status and reason counts against the per-address
/// limit on refused tokens: every 401 but a missing token (which costs nothing).
pub fn counts_as_auth_failure(status: u16, reason: &str) -> bool {
    status == 401 && reason != "token_missing"
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::HashMap;

    /// Counters with a fixed clock: `now` into every window.
    #[derive(Default)]
    struct Fake {
        counts: RefCell<HashMap<(usize, String), u64>>,
        now: Duration,
    }

    impl Counters for Fake {
        fn observe(&self, limit: usize, key: &LimitKey<'_>, events: u64) -> u64 {
            let mut c = self.counts.borrow_mut();
            let n = c.entry((limit, format!("{key:?}"))).or_default();
            *n += events;
            *n
        }
        fn elapsed(&self, _limit: usize, _key: &LimitKey<'_>) -> Duration {
            self.now
        }
    }

    #[test]
    fn limits_by_key_and_phase() {
        let limits = [
            RateLimit::new(KeyKind::Subject, 2, 10),
            RateLimit::new(KeyKind::Tenant, 3, 60),
            RateLimit::new(KeyKind::Client, 1, 1),
        ];
        let c = Fake { now: Duration::from_millis(2500), ..Default::default() };
        let a1 = Who { tenant: Some("a"), subject: Some("1"), client: Some([10, 0, 0, 1].into()) };
        let a2 = Who { subject: Some("2"), ..a1 };
        let b1 = Who { tenant: Some("b"), ..a1 };
        // The edge phase counts only the client.
        assert!(check(&limits, &c, &a1, Phase::Edge).is_ok());
        let e = check(&limits, &c, &a1, Phase::Edge).unwrap_err();
        assert_eq!((e.kind, e.retry_after), ("client", 1));
        // Subject: 2 per 10 s; the third of a1 is refused, with 7.5 s left -> 8.
        assert!(check(&limits, &c, &a1, Phase::Token).is_ok());
        assert!(check(&limits, &c, &a1, Phase::Token).is_ok());
        let e = check(&limits, &c, &a1, Phase::Token).unwrap_err();
        assert_eq!(e.kind, "subject");
        assert_eq!(e.retry_after, 8);
        assert_eq!(e.ratelimit, "\"subject-10s\";r=0;t=8");
        assert_eq!(e.policy, "\"subject-10s\";q=2;w=10");
        // Another subject of the tenant passes its own limit, then meets the tenant's
        // (a1 used 2 of its 3).
        assert!(check(&limits, &c, &a2, Phase::Token).is_ok());
        let e = check(&limits, &c, &a2, Phase::Token).unwrap_err();
        assert_eq!((e.kind, e.retry_after), ("tenant", 58));
        // Another tenant is unaffected.
        assert!(check(&limits, &c, &b1, Phase::Token).is_ok());
        // A token without `sub` is not counted by subject.
        let no_sub = Who { subject: None, tenant: Some("c"), ..a1 };
        for _ in 0..3 {
            assert!(check(&limits[..1], &c, &no_sub, Phase::Token).is_ok());
        }
    }

    #[test]
    fn auth_failures_are_read_before_and_counted_after() {
        let limit = RateLimit::new(KeyKind::Client, 2, 60);
        let c = Fake { now: Duration::from_secs(60), ..Default::default() };
        let ip: IpAddr = [10, 0, 0, 9].into();
        assert!(auth_failures_over(&limit, &c, ip).is_ok());
        c.observe(0, &LimitKey::Client(ip), 1);
        assert!(auth_failures_over(&limit, &c, ip).is_ok());
        c.observe(0, &LimitKey::Client(ip), 1);
        let e = auth_failures_over(&limit, &c, ip).unwrap_err();
        // At the very end of the window: still at least 1 s.
        assert_eq!((e.kind, e.retry_after), (AUTH_FAILURES, 1));
        assert!(auth_failures_over(&limit, &c, [10, 0, 0, 8].into()).is_ok());
        assert!(counts_as_auth_failure(401, "signature_invalid"));
        assert!(!counts_as_auth_failure(401, "token_missing"));
        assert!(!counts_as_auth_failure(403, "forbidden_role"));
    }
}
