//! The decryption-key document: `GET /internal/v1/tenants/{tenant}/decryption-keys`
//! answers [`DecryptionKeys`], a JWKS of [`PrivateJwk`]s (RSA for `RSA-OAEP-256`,
//! P-256 for `ECDH-ES+A256KW`), sent `Cache-Control: no-store`. Every member that is
//! or reveals private key material is held in `Zeroizing`, so it is wiped on drop on
//! both sides, and `Debug` never shows it.
//!
//! The reader takes the document key by key (`DecryptionKeys<Vec<&RawValue>>`) so
//! that one unusable key is skipped, not the whole set; hence every member is
//! optional here and the reader says which one is missing.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// The JWKS: `{"keys": [...]}`. `K` is the list as held: `Vec<PrivateJwk>` to
/// build or read it whole, a borrowed slice to write it, raw values to read it key by key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecryptionKeys<K = Vec<PrivateJwk>> {
    /// The private JWKs.
    pub keys: K,
}

/// A private JWK of a decryption key.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrivateJwk {
    /// `RSA` or `EC`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kty: Option<String>,
    /// `P-256` for an EC key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    /// Key id (the `kid` of the JWEs it opens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// `enc`.
    #[serde(rename = "use", default, skip_serializing_if = "Option::is_none")]
    pub key_use: Option<String>,
    /// Key management algorithm (`RSA-OAEP-256`, `ECDH-ES+A256KW`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// RSA modulus.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    /// RSA public exponent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
    /// EC x coordinate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    /// EC y coordinate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    /// Private exponent (RSA) or scalar (EC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub d: Option<Zeroizing<String>>,
    /// RSA first prime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p: Option<Zeroizing<String>>,
    /// RSA second prime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q: Option<Zeroizing<String>>,
    /// RSA first CRT exponent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dp: Option<Zeroizing<String>>,
    /// RSA second CRT exponent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dq: Option<Zeroizing<String>>,
    /// RSA CRT coefficient.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qi: Option<Zeroizing<String>>,
}

impl std::fmt::Debug for PrivateJwk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateJwk")
            .field("kty", &self.kty)
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl PrivateJwk {
    /// The base64url text of member `name` (`n`, `e`, `x`, `y`, `d`, `p`, `q`, `dp`,
    /// `dq`, `qi`), if present.
    pub fn member(&self, name: &str) -> Option<&str> {
        fn secret(m: &Option<Zeroizing<String>>) -> Option<&str> {
            m.as_deref().map(String::as_str)
        }
        match name {
            "n" => self.n.as_deref(),
            "e" => self.e.as_deref(),
            "x" => self.x.as_deref(),
            "y" => self.y.as_deref(),
            "d" => secret(&self.d),
            "p" => secret(&self.p),
            "q" => secret(&self.q),
            "dp" => secret(&self.dp),
            "dq" => secret(&self.dq),
            "qi" => secret(&self.qi),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn s(v: &str) -> Option<String> {
        Some(v.into())
    }

    fn z(v: &str) -> Option<Zeroizing<String>> {
        Some(Zeroizing::new(v.into()))
    }

    #[test]
    fn decryption_keys_json_is_pinned() {
        let sample = json!({"keys": [
            {"kty": "RSA", "kid": "t-enc-1", "use": "enc", "alg": "RSA-OAEP-256",
             "n": "bg", "e": "AQAB", "d": "ZA", "p": "cA", "q": "cQ", "dp": "ZHA", "dq": "ZHE", "qi": "cWk"},
            {"kty": "EC", "crv": "P-256", "kid": "t-enc-2", "use": "enc", "alg": "ECDH-ES+A256KW",
             "x": "eA", "y": "eQ", "d": "ZA"}
        ]});
        let rsa = PrivateJwk {
            kty: s("RSA"),
            kid: s("t-enc-1"),
            key_use: s("enc"),
            alg: s("RSA-OAEP-256"),
            n: s("bg"),
            e: s("AQAB"),
            d: z("ZA"),
            p: z("cA"),
            q: z("cQ"),
            dp: z("ZHA"),
            dq: z("ZHE"),
            qi: z("cWk"),
            ..Default::default()
        };
        let ec = PrivateJwk {
            kty: s("EC"),
            crv: s("P-256"),
            kid: s("t-enc-2"),
            key_use: s("enc"),
            alg: s("ECDH-ES+A256KW"),
            x: s("eA"),
            y: s("eQ"),
            d: z("ZA"),
            ..Default::default()
        };
        let doc = DecryptionKeys { keys: vec![rsa.clone(), ec.clone()] };
        assert_eq!(serde_json::to_value(&doc).unwrap(), sample);
        assert_eq!(serde_json::to_value(DecryptionKeys { keys: &doc.keys[..] }).unwrap(), sample, "borrowed");
        assert_eq!(serde_json::from_value::<DecryptionKeys>(sample).unwrap(), doc);
        assert_eq!(rsa.member("qi"), Some("cWk"));
        assert_eq!(ec.member("y"), Some("eQ"));
        assert_eq!(ec.member("n"), None);
        let shown = format!("{rsa:?}");
        assert!(shown.contains("t-enc-1") && !shown.contains("cWk"), "Debug hides private members: {shown}");
    }
}
