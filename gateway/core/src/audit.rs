//! The audit record: one structured line per decision, allowed or refused, with
//! exactly these fields and never a token, key or any other claim; the two trails
//! records go to (decisions about a verified token, and anonymous ones, kept and
//! rate-limited apart so the second can never displace the first); the recorded
//! path (capped, tokens redacted); and the query filter the admin endpoint applies
//! to retained records.

mod limit;

pub use limit::AnonymousLimit;

use crate::verify::VerifiedToken;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// Who made a request, as far as the audit trail records it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// Tenant id.
    pub tenant: String,
    /// `sub`.
    pub subject: Option<String>,
    /// Role claim, joined by `,`.
    pub role: Option<String>,
    /// `jti`.
    pub jti: Option<String>,
    /// Verifying key id.
    pub kid: Option<String>,
    /// `JWS` or `JWE`.
    pub token_kind: &'static str,
}

impl Identity {
    /// The audited fields of a verified token; nothing else of it.
    pub fn of(token: &VerifiedToken, role_claim: &str) -> Identity {
        let c = token.claims();
        let role = c.roles(role_claim).map(|roles| roles.collect::<Vec<_>>().join(","));
        Identity {
            tenant: token.tenant().id.clone(),
            subject: c.str("sub").map(str::to_owned),
            role,
            jti: c.str("jti").map(str::to_owned),
            kid: token.kid().map(str::to_owned),
            token_kind: token.kind(),
        }
    }
}

/// One decision, as written to the audit trail. Fields missing from older lines read
/// as their defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AuditRecord {
    /// Milliseconds since the epoch.
    pub time_ms: i64,
    /// The gateway's own request id, unique per request (forwarded upstream as `X-Request-Id`).
    pub request_id: String,
    /// The client's `X-Request-Id`, when short and plain (not unique: clients choose it).
    pub client_request_id: Option<String>,
    /// The client's address.
    pub client_ip: Option<IpAddr>,
    /// Tenant id, when a token was verified.
    pub tenant: Option<String>,
    /// `sub`, when a token was verified.
    pub subject: Option<String>,
    /// Role claim (joined by `,` when several).
    pub role: Option<String>,
    /// `jti`, when present.
    pub jti: Option<String>,
    /// `kid` of the verifying key.
    pub kid: Option<String>,
    /// `JWS` or `JWE`, when a token was verified.
    pub token_kind: Option<String>,
    /// Route name, when one matched.
    pub route: Option<String>,
    /// HTTP method.
    pub method: String,
    /// Path without the query string, token-shaped segments redacted, capped (see
    /// [`recorded_path`]).
    pub path: String,
    /// Whether `path` was cut at the cap.
    pub path_truncated: bool,
    /// `allow` or `deny`.
    pub decision: String,
    /// Refusal reason code, when refused or failed upstream.
    pub reason: Option<String>,
    /// Response status.
    pub status: u16,
    /// Upstream pool, when forwarded.
    pub upstream: Option<String>,
    /// Total latency in microseconds.
    pub latency_us: u64,
    /// Anonymous trail only: records the rate limit left out just before this one.
    pub sampled_out: Option<u64>,
}

/// What the proxy knows of a finished request: the facts its audit record is made of.
#[derive(Debug, Clone, Copy)]
pub struct Finished<'a> {
    /// Milliseconds since the epoch.
    pub time_ms: i64,
    /// The gateway's own request id.
    pub request_id: &'a str,
    /// The client's `X-Request-Id`, when short and plain.
    pub client_request_id: Option<&'a str>,
    /// The client's address.
    pub client_ip: Option<IpAddr>,
    /// The verified token, if the request got that far.
    pub token: Option<&'a VerifiedToken>,
    /// The role claim's name (`auth.role_claim`).
    pub role_claim: &'a str,
    /// The matched route's name.
    pub route: Option<&'a str>,
    /// HTTP method.
    pub method: &'a str,
    /// The request path (recorded through [`recorded_path`]).
    pub path: &'a str,
    /// The recorded path's cap in bytes.
    pub max_path: usize,
    /// Whether the gateway refused the request.
    pub denied: bool,
    /// The refusal or upstream failure reason.
    pub reason: Option<&'a str>,
    /// Response status (0 when none was written).
    pub status: u16,
    /// Upstream pool, when forwarded.
    pub upstream: Option<&'a str>,
    /// Total latency in microseconds.
    pub latency_us: u64,
}

impl AuditRecord {
    /// The audit record of a finished request: the token's audited fields only
    /// ([`Identity::of`]), the path capped and token-shaped segments redacted.
    pub fn of(f: &Finished<'_>) -> AuditRecord {
        let who = f.token.map(|t| Identity::of(t, f.role_claim)).unwrap_or_default();
        let (path, path_truncated) = recorded_path(f.path, f.max_path);
        AuditRecord {
            time_ms: f.time_ms,
            request_id: f.request_id.to_owned(),
            client_request_id: f.client_request_id.map(str::to_owned),
            client_ip: f.client_ip,
            tenant: (!who.tenant.is_empty()).then_some(who.tenant),
            subject: who.subject,
            role: who.role,
            jti: who.jti,
            kid: who.kid,
            token_kind: (!who.token_kind.is_empty()).then(|| who.token_kind.to_owned()),
            route: f.route.map(str::to_owned),
            method: f.method.to_owned(),
            path,
            path_truncated,
            decision: if f.denied { "deny" } else { "allow" }.to_owned(),
            reason: f.reason.map(str::to_owned),
            status: f.status,
            upstream: f.upstream.map(str::to_owned),
            latency_us: f.latency_us,
            sampled_out: None,
        }
    }
}

/// Which trail a record belongs to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Trail {
    /// A verified token was involved: allowed, or refused after verification
    /// (policy, revocation, lifetime, one-time use). Never sampled.
    #[default]
    Authenticated,
    /// No verified token: public routes and refusals before verification (no or bad
    /// token, unknown route). Kept in its own files and rate-limited.
    Anonymous,
}

impl Trail {
    /// The trail of a decision, by whether a verified token was involved.
    pub fn of(verified: bool) -> Trail {
        if verified {
            Trail::Authenticated
        } else {
            Trail::Anonymous
        }
    }
}

/// What replaces a token-shaped path segment in the recorded path.
pub const REDACTED: &str = "[token]";

/// Whether a path segment looks like a JOSE object or a part of one: base64url JSON
/// (`eyJ...`, at least 16 bytes), with or without (percent-encoded) dots.
fn looks_like_token(seg: &str) -> bool {
    seg.len() >= 16 && seg.starts_with("eyJ") && seg.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.%".contains(&b))
}

/// The path as recorded: token-shaped segments replaced by [`REDACTED`], then cut to at
/// most `cap` bytes (at a character boundary); the flag says whether it was cut.
pub fn recorded_path(path: &str, cap: usize) -> (String, bool) {
    let mut out = String::with_capacity(path.len().min(cap + 1));
    for (i, seg) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        out.push_str(if looks_like_token(seg) { REDACTED } else { seg });
        if out.len() > cap {
            let mut end = cap;
            while !out.is_char_boundary(end) {
                end -= 1;
            }
            out.truncate(end);
            return (out, true);
        }
    }
    (out, false)
}

/// A query over retained records: every given field must match; `limit` caps the answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Exact `jti`.
    pub jti: Option<String>,
    /// Exact subject.
    pub subject: Option<String>,
    /// Exact tenant.
    pub tenant: Option<String>,
    /// Exact gateway request id.
    pub request_id: Option<String>,
    /// Exact client request id.
    pub client_request_id: Option<String>,
    /// The trail searched: `authenticated` (default) or `anonymous`.
    pub trail: Option<Trail>,
    /// Earliest `time_ms`, inclusive.
    pub from_ms: Option<i64>,
    /// Latest `time_ms`, inclusive.
    pub to_ms: Option<i64>,
    /// Maximum records returned (default 100, at most 1000).
    pub limit: Option<usize>,
}

impl AuditQuery {
    /// Whether `r` matches every given field.
    pub fn matches(&self, r: &AuditRecord) -> bool {
        let eq = |want: &Option<String>, got: &Option<String>| want.as_ref().is_none_or(|w| got.as_ref() == Some(w));
        eq(&self.jti, &r.jti)
            && eq(&self.subject, &r.subject)
            && eq(&self.tenant, &r.tenant)
            && self.request_id.as_ref().is_none_or(|w| *w == r.request_id)
            && eq(&self.client_request_id, &r.client_request_id)
            && self.from_ms.is_none_or(|f| r.time_ms >= f)
            && self.to_ms.is_none_or(|t| r.time_ms <= t)
    }

    /// The effective limit.
    pub fn limit(&self) -> usize {
        self.limit.unwrap_or(100).clamp(1, 1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_matching() {
        let r = AuditRecord {
            time_ms: 1000,
            tenant: Some("t1".into()),
            subject: Some("p-1".into()),
            jti: Some("j".into()),
            ..Default::default()
        };
        assert!(AuditQuery::default().matches(&r));
        assert!(AuditQuery { jti: Some("j".into()), tenant: Some("t1".into()), ..Default::default() }.matches(&r));
        assert!(!AuditQuery { subject: Some("p-2".into()), ..Default::default() }.matches(&r));
        assert!(AuditQuery { from_ms: Some(1000), to_ms: Some(1000), ..Default::default() }.matches(&r));
        assert!(!AuditQuery { from_ms: Some(1001), ..Default::default() }.matches(&r));
        assert_eq!(AuditQuery { limit: Some(5000), ..Default::default() }.limit(), 1000);
        let r = AuditRecord { request_id: "g-1".into(), client_request_id: Some("c".into()), ..Default::default() };
        assert!(AuditQuery { request_id: Some("g-1".into()), ..Default::default() }.matches(&r));
        assert!(!AuditQuery { request_id: Some("c".into()), ..Default::default() }.matches(&r));
        assert!(AuditQuery { client_request_id: Some("c".into()), ..Default::default() }.matches(&r));
    }

    #[test]
    fn query_trail_parses() {
        let q: AuditQuery = serde_json::from_str(r#"{"trail":"anonymous"}"#).unwrap();
        assert_eq!(q.trail, Some(Trail::Anonymous));
        assert!(serde_json::from_str::<AuditQuery>(r#"{"trail":"other"}"#).is_err());
        assert_eq!(Trail::of(true), Trail::Authenticated);
        assert_eq!(Trail::of(false), Trail::Anonymous);
    }

    #[test]
    fn recorded_paths() {
        let jws = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJwIn0.c2lnbmF0dXJl";
        let jwe = "eyJhbGciOiJkaXIifQ..aXY.Y2lwaGVy.dGFn";
        for (path, cap, want, cut) in [
            ("/patients/p-1/records", 1024, "/patients/p-1/records", false),
            ("/a/bcdef", 5, "/a/bc", true),
            ("/a/bc", 5, "/a/bc", false),
            ("/é", 2, "/", true),
        ] {
            assert_eq!(recorded_path(path, cap), (want.to_owned(), cut), "{path}");
        }
        assert_eq!(recorded_path(&format!("/x/{jws}/y"), 1024).0, "/x/[token]/y");
        assert_eq!(recorded_path(&format!("/{jwe}"), 1024).0, "/[token]");
        let encoded = jws.replace('.', "%2E");
        assert_eq!(recorded_path(&format!("/{encoded}/a"), 1024).0, "/[token]/a");
        assert_eq!(recorded_path("/eyJzdWIiOiJwLTEwMCJ9", 1024).0, "/[token]", "a bare claims part");
        // Redacted before the cut: no piece of a token survives a cut through it.
        let (p, cut) = recorded_path(&format!("/x/{jws}"), 6);
        assert_eq!((p.as_str(), cut), ("/x/[to", true));
        let long = format!("/{}", "a".repeat(65_000));
        let (p, cut) = recorded_path(&long, 1024);
        assert_eq!((p.len(), cut), (1024, true));
        // Not token-shaped: kept.
        assert_eq!(recorded_path("/eyJ.short", 64).0, "/eyJ.short");
    }

    #[test]
    fn older_lines_still_parse() {
        let line = r#"{"time_ms":1,"request_id":"r","method":"GET","path":"/","decision":"allow","status":200,"latency_us":3}"#;
        let r: AuditRecord = serde_json::from_str(line).unwrap();
        assert_eq!((r.status, r.path_truncated, r.client_ip), (200, false, None));
    }
}
