//! Claims to request headers. Every header a mapping can set is removed from the
//! client's request whether or not the claim is present, so identity can't be
//! spoofed; values are encoded by one documented rule:
//! strings as-is, numbers and booleans as JSON text, arrays joined by `,` (`csv`) or
//! as compact JSON (`json`), objects as compact JSON. A value that could not be a
//! safe header value (control characters, or a `,` inside a `csv` element) refuses
//! the token rather than forwarding something ambiguous.
//!
//! Inbound header names are screened by [`InboundPolicy`]: CGI, WSGI, Rack and PHP
//! upstreams read `X-User-Id` and `X_User_Id` alike as `HTTP_X_USER_ID`, so a client
//! header whose name, lower-cased with `_` read as `-`, equals a header the gateway
//! owns (a mapped identity header, `x-request-id`, `x-real-ip`, `forwarded`,
//! `x-forwarded-*`) or one of `http.strip_headers`, is removed whatever
//! `http.underscore_headers` says; other names with `_` are dropped, refused or
//! allowed by that setting.

use crate::error::AuthError;
pub use crate::verify::Identity;
use crate::verify::VerifiedToken;
use bytes::Bytes;
use serde_json::Value;
use std::sync::Arc;

/// How array claims become one header value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArrayEncoding {
    /// `a,b,c`.
    Csv,
    /// `["a","b","c"]`.
    Json,
}

/// One claim-to-header mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderMapping {
    /// Claim name.
    pub claim: String,
    /// Header name, lower case.
    pub header: String,
    /// Array encoding.
    pub array: ArrayEncoding,
}

/// What to do to the upstream request's headers. Both lists are shared, not built
/// per request: the removals are the config's, the identity the token's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderPlan {
    /// Header names to remove (lower case).
    pub remove: Arc<[String]>,
    /// Headers to set after removal.
    pub set: Identity,
}

fn clean(s: &str) -> Result<&str, ()> {
    if s.chars().any(|c| c.is_control()) {
        Err(())
    } else {
        Ok(s)
    }
}

fn encode(v: &Value, array: ArrayEncoding) -> Result<Option<String>, ()> {
    Ok(Some(match v {
        Value::Null => return Ok(None),
        Value::String(s) => clean(s)?.to_owned(),
        Value::Bool(_) | Value::Number(_) => v.to_string(),
        Value::Array(items) if array == ArrayEncoding::Csv => {
            let mut parts = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::String(s) if !s.contains(',') => parts.push(clean(s)?.to_owned()),
                    Value::Bool(_) | Value::Number(_) => parts.push(item.to_string()),
                    _ => return Err(()),
                }
            }
            parts.join(",")
        }
        Value::Array(_) | Value::Object(_) => clean(&v.to_string())?.to_owned(),
    }))
}

/// The headers removed from every upstream request: every mapped header (and
/// `Authorization` unless forwarded). Made once per config.
pub fn removals(mappings: &[HeaderMapping], forward_authorization: bool) -> Arc<[String]> {
    let mut remove: Vec<String> = mappings.iter().map(|m| m.header.clone()).collect();
    if !forward_authorization {
        remove.push("authorization".into());
    }
    remove.into()
}

/// The mapped claims of `token` as headers (a claim that is absent or `null` sets
/// nothing); an unencodable value refuses the token (`claim_invalid`).
pub fn identity(mappings: &[HeaderMapping], token: &VerifiedToken) -> Result<Identity, AuthError> {
    let mut set = Vec::with_capacity(mappings.len());
    for m in mappings {
        if let Some(v) = token.claims().get(&m.claim) {
            let invalid = || AuthError::ClaimInvalid(m.claim.clone());
            if let Some(value) = encode(v, m.array).map_err(|_| invalid())? {
                // The name was validated with the config; the value has no control
                // character (`encode`), so neither fails.
                let name = http::HeaderName::from_bytes(m.header.as_bytes()).map_err(|_| invalid())?;
                let value = http::HeaderValue::from_maybe_shared(Bytes::from(value)).map_err(|_| invalid())?;
                set.push((name, value));
            }
        }
    }
    Ok(set.into())
}

/// Builds the header plan: strip every mapped header (and `Authorization` unless
/// forwarded), then set the mapped claims of `token` (none on a public route). The
/// engine keeps the removals per config and the identity per token instead of
/// calling this per request.
pub fn plan(
    mappings: &[HeaderMapping],
    token: Option<&VerifiedToken>,
    forward_authorization: bool,
) -> Result<HeaderPlan, AuthError> {
    let set = match token {
        Some(token) => identity(mappings, token)?,
        None => Arc::new([]),
    };
    Ok(HeaderPlan { remove: removals(mappings, forward_authorization), set })
}

/// What to do with inbound header names containing `_`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnderscoreAction {
    /// Remove them (default, like nginx's `underscores_in_headers off`).
    Drop,
    /// Refuse the request: 400 `header_invalid`.
    Reject,
    /// Forward them, except spellings of a header the gateway owns.
    Allow,
}

/// The screen applied to every inbound header name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundPolicy {
    /// Names with `_`.
    pub underscore: UnderscoreAction,
    /// Gateway-owned names (lower case, `-`): mapped identity headers, and the ones the
    /// gateway sets itself.
    pub owned: Vec<String>,
    /// Names always removed (lower case, `-`), `http.strip_headers`.
    pub strip: Vec<String>,
}

/// The verdict on one inbound header name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inbound {
    /// Forward it.
    Keep,
    /// Remove it before anything reads it.
    Remove,
    /// Refuse the request (400 `header_invalid`).
    Reject,
}

/// Headers the gateway always sets or owns, besides the mapped identity headers.
pub const GATEWAY_OWNED: [&str; 3] = ["x-request-id", "x-real-ip", "forwarded"];

impl InboundPolicy {
    fn owned_or_stripped(&self, normalised: &str) -> bool {
        normalised.starts_with("x-forwarded-")
            || GATEWAY_OWNED.contains(&normalised)
            || self.owned.iter().any(|o| o == normalised)
            || self.strip.iter().any(|o| o == normalised)
    }

    /// The verdict on `name` (as parsed: lower case, since HTTP/1 names are case-insensitive).
    /// Exact gateway-owned names are `Remove`d too: the gateway reads the ones it
    /// uses (`X-Forwarded-For`, `X-Request-Id`) before screening and sets its own.
    pub fn inbound(&self, name: &str) -> Inbound {
        if !name.contains('_') {
            return if self.owned_or_stripped(name) { Inbound::Remove } else { Inbound::Keep };
        }
        match self.underscore {
            UnderscoreAction::Reject => Inbound::Reject,
            UnderscoreAction::Drop => Inbound::Remove,
            UnderscoreAction::Allow if self.owned_or_stripped(&normalise(name)) => Inbound::Remove,
            UnderscoreAction::Allow => Inbound::Keep,
        }
    }
}

/// A header name as CGI-style upstreams see it: lower case, `_` read as `-`.
pub fn normalise(name: &str) -> String {
    name.bytes().map(|b| if b == b'_' { '-' } else { b.to_ascii_lowercase() as char }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(underscore: UnderscoreAction) -> InboundPolicy {
        InboundPolicy {
            underscore,
            owned: vec!["x-user-id".into(), "x-user-role".into(), "x-auth-sub".into()],
            strip: vec!["x-http-method-override".into(), "x-http-method".into(), "x-method-override".into()],
        }
    }

    #[test]
    fn normalisation() {
        assert_eq!(normalise("X_User_Id"), "x-user-id");
        assert_eq!(normalise("x-user_role"), "x-user-role");
        assert_eq!(normalise("X_AUTH_SUB"), "x-auth-sub");
        assert_eq!(normalise("plain"), "plain");
    }

    #[test]
    fn inbound_names() {
        use Inbound::*;
        // (name, drop, reject, allow)
        let table = [
            ("x_user_id", Remove, Reject, Remove),
            ("x-user_role", Remove, Reject, Remove),
            ("x_auth_sub", Remove, Reject, Remove),
            ("x_forwarded_for", Remove, Reject, Remove),
            ("x_forwarded_anything", Remove, Reject, Remove),
            ("x_request_id", Remove, Reject, Remove),
            ("x_real_ip", Remove, Reject, Remove),
            ("x_http_method_override", Remove, Reject, Remove),
            ("x_custom_thing", Remove, Reject, Keep),
            // Exact owned or stripped names are removed whatever the action.
            ("x-user-id", Remove, Remove, Remove),
            ("x-forwarded-for", Remove, Remove, Remove),
            ("x-forwarded-proto", Remove, Remove, Remove),
            ("forwarded", Remove, Remove, Remove),
            ("x-http-method-override", Remove, Remove, Remove),
            ("x-method-override", Remove, Remove, Remove),
            // Everything else passes.
            ("x-user-idx", Keep, Keep, Keep),
            ("content-type", Keep, Keep, Keep),
            ("authorization", Keep, Keep, Keep),
        ];
        for (name, drop, reject, allow) in table {
            assert_eq!(policy(UnderscoreAction::Drop).inbound(name), drop, "drop {name}");
            assert_eq!(policy(UnderscoreAction::Reject).inbound(name), reject, "reject {name}");
            assert_eq!(policy(UnderscoreAction::Allow).inbound(name), allow, "allow {name}");
        }
    }

    #[test]
    fn encoding_rule() {
        let csv = ArrayEncoding::Csv;
        assert_eq!(encode(&json!("p-1"), csv), Ok(Some("p-1".into())));
        assert_eq!(encode(&json!(42), csv), Ok(Some("42".into())));
        assert_eq!(encode(&json!(true), csv), Ok(Some("true".into())));
        assert_eq!(encode(&json!(["doctor", "patient"]), csv), Ok(Some("doctor,patient".into())));
        assert_eq!(encode(&json!(["a", "b"]), ArrayEncoding::Json), Ok(Some(r#"["a","b"]"#.into())));
        assert_eq!(encode(&json!({"k": 1}), csv), Ok(Some(r#"{"k":1}"#.into())));
        assert_eq!(encode(&json!(null), csv), Ok(None));
        assert_eq!(encode(&json!("a\r\nX-Admin: 1"), csv), Err(()));
        assert_eq!(encode(&json!(["a,b"]), csv), Err(()));
        assert_eq!(encode(&json!([{"x": 1}]), csv), Err(()));
        assert_eq!(encode(&json!("José"), csv), Ok(Some("José".into())));
    }
}
