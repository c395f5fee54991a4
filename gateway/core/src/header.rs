//! Claims to request headers. Every header a mapping can set is removed from the
//! client's request whether or not the claim is present, so identity can't be
//! spoofed; values are encoded by one documented rule:
//! strings as-is, numbers and booleans as JSON text, arrays joined by `,` (`csv`) or
//! as compact JSON (`json`), objects as compact JSON. A value that could not be a
//! safe header value (control characters, or a `,` inside a `csv` element) refuses
//! the token rather than forwarding something ambiguous.

use crate::error::AuthError;
use crate::verify::VerifiedToken;
use serde_json::Value;

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

/// What to do to the upstream request's headers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderPlan {
    /// Header names to remove (lower case).
    pub remove: Vec<String>,
    /// Headers to set after removal.
    pub set: Vec<(String, String)>,
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

/// Builds the header plan: strip every mapped header (and `Authorization` unless
/// forwarded), then set the mapped claims of `token` (none on a public route).
pub fn plan(
    mappings: &[HeaderMapping],
    token: Option<&VerifiedToken>,
    forward_authorization: bool,
) -> Result<HeaderPlan, AuthError> {
    let mut out = HeaderPlan { remove: mappings.iter().map(|m| m.header.clone()).collect(), set: Vec::new() };
    if !forward_authorization {
        out.remove.push("authorization".into());
    }
    if let Some(token) = token {
        for m in mappings {
            if let Some(v) = token.claims().get(&m.claim) {
                let value = encode(v, m.array).map_err(|_| AuthError::ClaimInvalid(m.claim.clone()))?;
                if let Some(value) = value {
                    out.set.push((m.header.clone(), value));
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
