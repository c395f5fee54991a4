//! Reading secrets out of requests without leaving copies behind: a request body read
//! into one wiped-on-drop buffer, and a JSON string literal unescaped into another
//! (used for PEM imports, whose body holds a private key).

use crate::service::KmsError;
use axum::body::Body;
use zeroize::Zeroizing;

/// Why a body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// Over the listener's `max_body_bytes` (413).
    #[error("request body too large")]
    TooLarge,
    /// The client broke off or sent a malformed body (400).
    #[error("cannot read the request body")]
    Unreadable,
}

/// Reads a request body that holds a secret into one wiped-on-drop buffer, growing
/// it by copy-and-wipe rather than reallocation. Chunks no one else holds are wiped
/// too (hyper's connection buffer, shared, is reused by the next read).
pub async fn body(mut body: Body) -> Result<Zeroizing<Vec<u8>>, BodyError> {
    use axum::body::HttpBody;
    let hint = usize::try_from(body.size_hint().lower()).unwrap_or(0).min(1 << 20);
    let mut out = Zeroizing::new(Vec::with_capacity(hint.max(4096)));
    while let Some(frame) = std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await {
        let frame = frame.map_err(|e| {
            let mut src: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            while let Some(err) = src {
                if err.is::<http_body_util::LengthLimitError>() {
                    return BodyError::TooLarge;
                }
                src = err.source();
            }
            BodyError::Unreadable
        })?;
        let Ok(chunk) = frame.into_data() else { continue };
        if out.len() + chunk.len() > out.capacity() {
            let mut bigger = Zeroizing::new(Vec::with_capacity((out.len() + chunk.len()).max(2 * out.capacity())));
            bigger.extend_from_slice(&out);
            out = bigger;
        }
        out.extend_from_slice(&chunk);
        if let Ok(mut own) = chunk.try_into_mut() {
            zeroize::Zeroize::zeroize(own.as_mut());
        }
    }
    Ok(out)
}

/// The value of a JSON string literal, unescaped into a wiped-on-drop buffer of its
/// final size (serde_json would leave a copy in its scratch buffer).
pub fn json_string(field: &str, raw: &serde_json::value::RawValue) -> Result<Zeroizing<String>, KmsError> {
    let bad = || KmsError::BadRequest(format!("{field}: expected a JSON string"));
    let inner = raw.get().strip_prefix('"').and_then(|r| r.strip_suffix('"')).ok_or_else(bad)?;
    let mut out = Zeroizing::new(String::with_capacity(inner.len()));
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        out.push(match chars.next().ok_or_else(bad)? {
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'b' => '\u{8}',
            'f' => '\u{c}',
            'u' => {
                let mut code = 0u32;
                for _ in 0..4 {
                    code = code * 16 + chars.next().and_then(|h| h.to_digit(16)).ok_or_else(bad)?;
                }
                char::from_u32(code).ok_or_else(bad)?
            }
            other => other,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_unescape_like_serde_json() {
        for v in ["-----BEGIN X-----\nAb/+=\r\n\t\"q\" \\ é \u{1}", "", "plain"] {
            let literal = serde_json::to_string(v).unwrap();
            let raw = serde_json::value::RawValue::from_string(literal).unwrap();
            assert_eq!(json_string("pem", &raw).unwrap().as_str(), v);
        }
        let escaped = serde_json::value::RawValue::from_string(r#""\u0041\/""#.into()).unwrap();
        assert_eq!(json_string("pem", &escaped).unwrap().as_str(), "A/");
        for bad in ["5", "null", r#""\ud800""#] {
            let raw = serde_json::value::RawValue::from_string(bad.into()).unwrap();
            assert!(json_string("pem", &raw).is_err(), "{bad}");
        }
    }
}
