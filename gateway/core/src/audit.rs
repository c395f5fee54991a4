//! The audit record: one structured line per decision, allowed or refused, with
//! exactly these fields and never a token, key or any other claim; and the query
//! filter the admin endpoint applies to retained records.

use crate::verify::VerifiedToken;
use serde::{Deserialize, Serialize};
use serde_json::Value;

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
        let role = match c.get(role_claim) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Array(a)) => Some(a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(",")),
            _ => None,
        };
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

/// One decision, as written to the audit trail.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Milliseconds since the epoch.
    pub time_ms: i64,
    /// Request id (also forwarded upstream as `X-Request-Id`).
    pub request_id: String,
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
    /// Path without the query string.
    pub path: String,
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
    }
}
