//! JWE production by an independent implementation (josekit), for end-to-end tests
//! of the gateway's decryption: fresh encryption keys, their private JWKS (what the
//! gateway loads) and compact JWEs of any supported (alg, enc) pair.

use josekit::jwe::{self, JweEncrypter, JweHeader};
use josekit::jwk::{alg::ec::EcCurve, Jwk};
use serde_json::{json, Value};

/// Key management algorithms the gateway supports.
pub const ALGS: [&str; 4] = ["RSA-OAEP-256", "ECDH-ES", "ECDH-ES+A128KW", "ECDH-ES+A256KW"];
/// Content encryption algorithms the gateway supports.
pub const ENCS: [&str; 4] = ["A128GCM", "A256GCM", "A128CBC-HS256", "A256CBC-HS512"];

/// A private encryption key (RSA-2048 or P-256) with its `kid`.
#[derive(Clone)]
pub struct EncKey {
    /// Key id.
    pub kid: String,
    jwk: Jwk,
}

impl EncKey {
    /// A fresh RSA-2048 key (RSA-OAEP-256).
    pub fn rsa(kid: &str) -> Self {
        Self::with(Jwk::generate_rsa_key(2048).expect("rsa"), kid)
    }

    /// A fresh P-256 key (ECDH-ES*).
    pub fn p256(kid: &str) -> Self {
        Self::with(Jwk::generate_ec_key(EcCurve::P256).expect("p256"), kid)
    }

    /// A key from its private JWK (with `kid`).
    pub fn from_jwk(jwk: &Value) -> Self {
        let map = jwk.as_object().expect("JWK object").clone();
        let jwk = Jwk::from_map(map).expect("JWK");
        let kid = jwk.key_id().expect("kid").to_owned();
        Self { kid, jwk }
    }

    fn with(mut jwk: Jwk, kid: &str) -> Self {
        jwk.set_key_id(kid);
        jwk.set_key_use("enc");
        Self { kid: kid.into(), jwk }
    }

    /// Whether this key serves `alg`.
    pub fn fits(&self, alg: &str) -> bool {
        (self.jwk.key_type() == "RSA") == (alg == "RSA-OAEP-256")
    }

    /// The private JWK.
    pub fn private_jwk(&self) -> Value {
        serde_json::to_value(self.jwk.as_ref()).expect("jwk")
    }

    /// A compact JWE of `payload` under `alg`/`enc`, with `cty` when given and this
    /// key's `kid`.
    pub fn encrypt(&self, alg: &str, enc: &str, cty: Option<&str>, payload: &[u8]) -> String {
        let mut header = JweHeader::new();
        header.set_content_encryption(enc);
        header.set_key_id(&self.kid);
        if let Some(c) = cty {
            header.set_content_type(c);
        }
        let public = self.jwk.to_public_key().expect("public");
        let encrypter: Box<dyn JweEncrypter> = match alg {
            "RSA-OAEP-256" => Box::new(jwe::RSA_OAEP_256.encrypter_from_jwk(&public).expect("enc")),
            "ECDH-ES" => Box::new(jwe::ECDH_ES.encrypter_from_jwk(&public).expect("enc")),
            "ECDH-ES+A128KW" => Box::new(jwe::ECDH_ES_A128KW.encrypter_from_jwk(&public).expect("enc")),
            "ECDH-ES+A256KW" => Box::new(jwe::ECDH_ES_A256KW.encrypter_from_jwk(&public).expect("enc")),
            other => panic!("unsupported alg {other}"),
        };
        jwe::serialize_compact(payload, &header, encrypter.as_ref()).expect("encrypt")
    }

    /// A nested JWT: `inner` (a compact JWS) encrypted with `cty: JWT`.
    pub fn wrap(&self, alg: &str, enc: &str, inner: &str) -> String {
        self.encrypt(alg, enc, Some("JWT"), inner.as_bytes())
    }
}

/// A JWKS of private JWKs (the shape of the sidecar's decryption-keys endpoint).
pub fn private_jwks(keys: &[&EncKey]) -> String {
    json!({ "keys": keys.iter().map(|k| k.private_jwk()).collect::<Vec<_>>() }).to_string()
}

/// Replaces the protected header of a compact JWE (breaking its tag unless the
/// change is refused before decryption, which is what tests want to show).
pub fn edit_header(token: &str, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> String {
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let raw = crate::b64_decode(&parts[0]);
    let mut h: Value = serde_json::from_slice(&raw).expect("header json");
    edit(h.as_object_mut().expect("object"));
    parts[0] = crate::b64(h.to_string().as_bytes());
    parts.join(".")
}

/// Flips one bit in segment `index` (0 header .. 4 tag) of a compact JWE.
pub fn tamper(token: &str, index: usize) -> String {
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut raw = crate::b64_decode(&parts[index]);
    if raw.is_empty() {
        raw.push(0);
    } else {
        raw[0] ^= 1;
    }
    parts[index] = crate::b64(&raw);
    parts.join(".")
}
