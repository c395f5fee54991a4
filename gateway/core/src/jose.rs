//! Compact JWS parsing with every check the JOSE crates leave to the caller:
//! segment count, canonical base64url, duplicate-free JSON, an allowlisted `alg`,
//! `crit`/`b64` refusal and no key-carrying header members.

use crate::alg::Algorithm;
use crate::b64;
use crate::claims::UncheckedClaims;
use crate::error::AuthError;
use crate::json::{Key, Seen, StrOr, StrOrSeed, StrictIgnore};
use serde::de::{DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;

/// The protected header of a compact JWS, after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwsHeader {
    /// The signature algorithm (never `none` or HMAC).
    pub alg: Algorithm,
    /// The key id, if present.
    pub kid: Option<String>,
}

/// A compact JWS split and decoded, signature not yet checked.
#[derive(Debug)]
pub struct UnverifiedJws<'a> {
    /// Validated header.
    pub header: JwsHeader,
    /// Claims object, read strictly (duplicate-free), not yet checked.
    pub claims: UncheckedClaims,
    /// `BASE64URL(header) '.' BASE64URL(payload)`, the signed bytes.
    pub signing_input: &'a [u8],
    /// Decoded signature bytes.
    pub signature: Vec<u8>,
}

/// Header members that would make us fetch or trust key material named by the token.
const KEY_CARRYING: [&str; 4] = ["jku", "x5u", "jwk", "x5c"];

/// Kind of compact serialization, by counting dots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compact {
    /// Three segments.
    Jws,
    /// Five segments.
    Jwe,
}

/// Classifies a compact token by its number of segments.
pub fn classify(token: &str) -> Result<Compact, AuthError> {
    // Counted in runs of at most 255 bytes into a `u8`, which compiles to 16 bytes per
    // vector step (a `usize` count widened each byte: this was most of a cache hit).
    let dots: usize = token
        .as_bytes()
        .chunks(255)
        .map(|run| usize::from(run.iter().fold(0u8, |n, b| n + u8::from(*b == b'.'))))
        .sum();
    match dots {
        2 => Ok(Compact::Jws),
        4 => Ok(Compact::Jwe),
        _ => Err(AuthError::TokenMalformed("segment count")),
    }
}

/// Parses the header object of a JWS.
pub fn parse_header(map: &Map<String, Value>) -> Result<JwsHeader, AuthError> {
    for name in KEY_CARRYING {
        if map.contains_key(name) {
            return Err(AuthError::HeaderUnsupported(name));
        }
    }
    // RFC 7515 §4.1.11: we implement no extension, so any `crit` (even empty) is refused.
    if map.contains_key("crit") {
        return Err(AuthError::HeaderUnsupported("crit"));
    }
    if map.contains_key("b64") {
        return Err(AuthError::HeaderUnsupported("b64"));
    }
    if map.contains_key("enc") || map.contains_key("zip") {
        return Err(AuthError::HeaderUnsupported("enc"));
    }
    if let Some(typ) = map.get("typ") {
        let ok = typ.as_str().is_some_and(|t| {
            let t = t.strip_prefix("application/").unwrap_or(t);
            t.eq_ignore_ascii_case("JWT") || t.eq_ignore_ascii_case("at+jwt")
        });
        if !ok {
            return Err(AuthError::HeaderUnsupported("typ"));
        }
    }
    let alg = match map.get("alg") {
        Some(Value::String(a)) => a.parse().map_err(|_| AuthError::AlgorithmNotAllowed)?,
        Some(_) => return Err(AuthError::TokenMalformed("alg type")),
        None => return Err(AuthError::TokenMalformed("alg missing")),
    };
    let kid = match map.get("kid") {
        None => None,
        Some(Value::String(k)) if !k.is_empty() && k.len() <= 256 => Some(k.clone()),
        Some(_) => return Err(AuthError::TokenMalformed("kid")),
    };
    Ok(JwsHeader { alg, kid })
}

/// The header members the checks look at, read in one strict pass over the header
/// JSON (duplicate names refused at any depth, as [`crate::json::parse_object`] does) with
/// no map built: refused members are only noted, `alg`/`kid`/`typ` kept borrowed.
#[derive(Default)]
struct HeaderFields<'a> {
    /// Which of [`REFUSED`] are present.
    refused: [bool; REFUSED.len()],
    alg: Option<StrOr<'a>>,
    kid: Option<StrOr<'a>>,
    typ: Option<StrOr<'a>>,
}

/// Members whose presence alone refuses the header, in the order they are checked.
const REFUSED: [&str; 8] = ["jku", "x5u", "jwk", "x5c", "crit", "b64", "enc", "zip"];

impl<'de> DeserializeSeed<'de> for HeaderFields<'de> {
    type Value = HeaderFields<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for HeaderFields<'de> {
    type Value = HeaderFields<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = Seen::default();
        while let Some(key) = map.next_key_seed(Key)? {
            let slot = match &*key {
                "alg" => Some(&mut self.alg),
                "kid" => Some(&mut self.kid),
                "typ" => Some(&mut self.typ),
                other => {
                    if let Some(i) = REFUSED.iter().position(|r| *r == other) {
                        self.refused[i] = true;
                    }
                    None
                }
            };
            match slot {
                Some(slot) => *slot = Some(map.next_value_seed(StrOrSeed)?),
                None => map.next_value_seed(StrictIgnore)?,
            }
            seen.add(key)?;
        }
        Ok(self)
    }
}

fn parse_header_json(bytes: &[u8]) -> Result<HeaderFields<'_>, AuthError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let fields = HeaderFields::default().deserialize(&mut de).map_err(|_| AuthError::TokenMalformed("header json"))?;
    de.end().map_err(|_| AuthError::TokenMalformed("header json"))?;
    Ok(fields)
}

/// The checks of [`parse_header`], in the same order, on the fields of one pass.
fn check_header(h: HeaderFields<'_>) -> Result<JwsHeader, AuthError> {
    for (name, present) in REFUSED.iter().zip(h.refused) {
        if present {
            return Err(AuthError::HeaderUnsupported(if *name == "zip" { "enc" } else { name }));
        }
    }
    if let Some(typ) = h.typ {
        let ok = match &typ {
            StrOr::Str(t) => {
                let t = t.strip_prefix("application/").unwrap_or(t);
                t.eq_ignore_ascii_case("JWT") || t.eq_ignore_ascii_case("at+jwt")
            }
            StrOr::Other => false,
        };
        if !ok {
            return Err(AuthError::HeaderUnsupported("typ"));
        }
    }
    let alg = match h.alg {
        Some(StrOr::Str(a)) => a.parse().map_err(|_| AuthError::AlgorithmNotAllowed)?,
        Some(StrOr::Other) => return Err(AuthError::TokenMalformed("alg type")),
        None => return Err(AuthError::TokenMalformed("alg missing")),
    };
    let kid = match h.kid {
        None => None,
        Some(StrOr::Str(k)) if !k.is_empty() && k.len() <= 256 => Some(k.into_owned()),
        Some(_) => return Err(AuthError::TokenMalformed("kid")),
    };
    Ok(JwsHeader { alg, kid })
}

/// Splits and decodes a compact JWS; nothing is trusted yet.
pub fn parse_jws(token: &str) -> Result<UnverifiedJws<'_>, AuthError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(AuthError::TokenMalformed("segment count"));
    };
    if h.is_empty() || p.is_empty() || s.is_empty() {
        return Err(AuthError::TokenMalformed("empty segment"));
    }
    let header_bytes = b64::decode(h.as_bytes()).ok_or(AuthError::TokenMalformed("header encoding"))?;
    let header = check_header(parse_header_json(&header_bytes)?)?;
    let payload = b64::decode(p.as_bytes()).ok_or(AuthError::TokenMalformed("payload encoding"))?;
    let claims = UncheckedClaims::parse(payload).map_err(|_| AuthError::TokenMalformed("payload json"))?;
    let signature = b64::decode(s.as_bytes()).ok_or(AuthError::TokenMalformed("signature encoding"))?;
    let signing_input = &token.as_bytes()[..h.len() + 1 + p.len()];
    Ok(UnverifiedJws { header, claims, signing_input, signature })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(header: &str, payload: &str) -> String {
        format!("{}.{}.{}", b64::encode(header), b64::encode(payload), b64::encode([1u8; 64]))
    }

    #[test]
    fn header_refusals() {
        let cases = [
            (r#"{"alg":"none"}"#, AuthError::AlgorithmNotAllowed),
            (r#"{"alg":"HS256"}"#, AuthError::AlgorithmNotAllowed),
            (r#"{"alg":"RS256","crit":["exp"]}"#, AuthError::HeaderUnsupported("crit")),
            (r#"{"alg":"RS256","crit":[]}"#, AuthError::HeaderUnsupported("crit")),
            (r#"{"alg":"RS256","b64":false,"crit":["b64"]}"#, AuthError::HeaderUnsupported("crit")),
            (r#"{"alg":"RS256","b64":false}"#, AuthError::HeaderUnsupported("b64")),
            (r#"{"alg":"RS256","jku":"https://evil/jwks"}"#, AuthError::HeaderUnsupported("jku")),
            (r#"{"alg":"RS256","x5u":"https://evil/c"}"#, AuthError::HeaderUnsupported("x5u")),
            (r#"{"alg":"RS256","jwk":{"kty":"RSA"}}"#, AuthError::HeaderUnsupported("jwk")),
            (r#"{"alg":"RS256","x5c":["MII"]}"#, AuthError::HeaderUnsupported("x5c")),
            (r#"{"alg":"RS256","typ":"JOSE+JSON"}"#, AuthError::HeaderUnsupported("typ")),
            (r#"{"alg":"RS256","kid":7}"#, AuthError::TokenMalformed("kid")),
            (r#"{"alg":"RS256","alg":"none"}"#, AuthError::TokenMalformed("header json")),
            (r#"{"kid":"a"}"#, AuthError::TokenMalformed("alg missing")),
        ];
        for (h, want) in cases {
            let err = parse_jws(&tok(h, "{}")).unwrap_err();
            assert_eq!(err, want, "{h}");
        }
        let t = tok(r#"{"alg":"ES256","typ":"JWT","kid":"k1"}"#, r#"{"a":1}"#);
        let ok = parse_jws(&t).unwrap();
        assert_eq!(ok.header, JwsHeader { alg: Algorithm::ES256, kid: Some("k1".into()) });
    }

    #[test]
    fn structure_refusals() {
        let good = tok(r#"{"alg":"RS256"}"#, "{}");
        assert!(parse_jws(&good).is_ok());
        for bad in [
            "a.b",
            "a.b.c.d",
            "..",
            &format!("{good}="),
            &good.replacen('.', "=.", 1),
            &format!(" {good}"),
            &tok(r#"{"alg":"RS256"}"#, r#"{"sub":"a","sub":"admin"}"#),
            &tok(r#"{"alg":"RS256"}"#, "[]"),
        ] {
            assert!(matches!(parse_jws(bad), Err(AuthError::TokenMalformed(_))), "{bad}");
        }
        assert_eq!(classify("a.b.c.d.e"), Ok(Compact::Jwe));
        assert_eq!(classify("a.b.c"), Ok(Compact::Jws));
        assert!(classify("abc").is_err());
        // Counts past one 255-byte run and past 255 dots.
        let long = format!("{}.{}.{}", "a".repeat(300), "b".repeat(300), "c".repeat(300));
        assert_eq!(classify(&long), Ok(Compact::Jws));
        assert!(classify(&".".repeat(258)).is_err());
        assert!(classify(&".".repeat(255)).is_err());
        assert_eq!(classify(&format!("{}....", "x".repeat(600))), Ok(Compact::Jwe));
    }
}
