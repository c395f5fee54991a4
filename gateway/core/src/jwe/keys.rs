//! Private decryption keys from a JWKS of private JWKs (the sidecar's gateway
//! channel): RSA keys for RSA-OAEP-256 and P-256 keys for ECDH-ES*. Parsed once; the
//! key material lives inside aws-lc (freed and cleansed by it) or in `Zeroizing`.

use crate::b64;
use aws_lc_rs::agreement::{PrivateKey, ECDH_P256};
use aws_lc_rs::rsa::PrivateDecryptingKey;
// A private JWK as the sidecar sends it (the channel's document type): every member
// that is or reveals private key material is held in `Zeroizing`, so the text is
// wiped once the key is built.
use medgate_channel::decryption::{DecryptionKeys, PrivateJwk};
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::sync::Arc;
use zeroize::Zeroizing;

/// One decryption key.
pub enum DecryptionKey {
    /// RSA, for RSA-OAEP-256.
    Rsa(PrivateDecryptingKey),
    /// P-256, for ECDH-ES and ECDH-ES+A*KW.
    P256(PrivateKey),
}

impl std::fmt::Debug for DecryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DecryptionKey::Rsa(_) => "DecryptionKey::Rsa(..)",
            DecryptionKey::P256(_) => "DecryptionKey::P256(..)",
        })
    }
}

/// A tenant's decryption keys by `kid`.
#[derive(Debug, Default)]
pub struct DecryptionKeySet {
    by_kid: HashMap<String, Arc<DecryptionKey>>,
    /// Keys skipped (not `use: enc`, unsupported, malformed), without key material.
    pub skipped: Vec<String>,
}

fn der_len(n: usize, out: &mut Vec<u8>) {
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let b = n.to_be_bytes();
        let skip = b.iter().position(|x| *x != 0).unwrap_or(b.len() - 1);
        out.push(0x80 | (b.len() - skip) as u8);
        out.extend_from_slice(&b[skip..]);
    }
}

fn der(tag: u8, body: &[u8], out: &mut Vec<u8>) {
    out.push(tag);
    der_len(body.len(), out);
    out.extend_from_slice(body);
}

fn der_uint(v: &[u8], out: &mut Vec<u8>) {
    let first = v.iter().position(|b| *b != 0).unwrap_or(v.len().saturating_sub(1));
    let v = &v[first..];
    let mut body = Vec::with_capacity(v.len() + 1);
    if v.first().is_some_and(|b| b & 0x80 != 0) {
        body.push(0);
    }
    body.extend_from_slice(v);
    der(0x02, &body, out);
}

/// PKCS#8 DER of an RSA private key from its JWK members.
fn rsa_pkcs8(parts: &[Zeroizing<Vec<u8>>]) -> Zeroizing<Vec<u8>> {
    let mut ints = Zeroizing::new(vec![0x02, 0x01, 0x00]);
    for p in parts {
        der_uint(p, &mut ints);
    }
    let mut pkcs1 = Zeroizing::new(Vec::new());
    der(0x30, &ints, &mut pkcs1);
    let mut body = Zeroizing::new(vec![0x02, 0x01, 0x00]);
    // AlgorithmIdentifier { rsaEncryption, NULL }
    body.extend_from_slice(&[0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00]);
    der(0x04, &pkcs1, &mut body);
    let mut out = Zeroizing::new(Vec::new());
    der(0x30, &body, &mut out);
    out
}

fn parse_key(jwk: &PrivateJwk) -> Result<DecryptionKey, String> {
    let get = |name: &'static str| -> Result<Zeroizing<Vec<u8>>, String> {
        jwk.member(name)
            .and_then(|s| b64::decode(s.as_bytes()))
            .map(Zeroizing::new)
            .ok_or_else(|| format!("member {name} missing or invalid"))
    };
    match (jwk.kty.as_deref(), jwk.crv.as_deref()) {
        (Some("RSA"), _) => {
            let parts = ["n", "e", "d", "p", "q", "dp", "dq", "qi"].map(get);
            let parts: Vec<_> = parts.into_iter().collect::<Result<_, String>>()?;
            // Sizes first (an empty or zero `n` is 0 bits), so no DER is built from
            // hostile members.
            crate::key::check_rsa_modulus(&parts[0]).map_err(|e| e.to_string())?;
            crate::key::check_rsa_exponent(&parts[1]).map_err(|e| e.to_string())?;
            PrivateDecryptingKey::from_pkcs8(&rsa_pkcs8(&parts))
                .map(DecryptionKey::Rsa)
                .map_err(|_| "RSA key rejected".into())
        }
        (Some("EC"), Some("P-256")) => {
            let d = get("d")?;
            let key = PrivateKey::from_private_key(&ECDH_P256, &d).map_err(|_| "P-256 key rejected".to_owned())?;
            let public = key.compute_public_key().map_err(|_| "P-256 key rejected".to_owned())?;
            let (x, y) = (get("x")?, get("y")?);
            let p = public.as_ref();
            if p.len() != 65 || p[1..33] != x[..] || p[33..] != y[..] {
                return Err("x/y do not match d".into());
            }
            Ok(DecryptionKey::P256(key))
        }
        (kty, crv) => Err(format!("unsupported key type {kty:?}/{crv:?}")),
    }
}

impl DecryptionKeySet {
    /// Parses a JWKS of private JWKs; unusable keys are skipped and listed.
    pub fn from_jwks(bytes: &[u8]) -> Result<Self, String> {
        // Borrowed, so no copy of the document's key text is made here.
        let doc: DecryptionKeys<Vec<&RawValue>> =
            serde_json::from_slice(bytes).map_err(|_| "not a JWKS (no keys array)".to_owned())?;
        let mut set = DecryptionKeySet::default();
        for (i, raw) in doc.keys.iter().enumerate() {
            let Ok(jwk) = serde_json::from_str::<PrivateJwk>(raw.get()) else {
                set.skipped.push(format!("keys[{i}]: not a JWK object"));
                continue;
            };
            let kid = jwk.kid.as_deref().unwrap_or_default();
            if kid.is_empty() || jwk.key_use.as_deref().is_some_and(|u| u != "enc") {
                set.skipped.push(format!("keys[{i}]: no kid or not use=enc"));
                continue;
            }
            match parse_key(&jwk) {
                Ok(key) => {
                    set.by_kid.insert(kid.to_owned(), Arc::new(key));
                }
                Err(e) => set.skipped.push(format!("keys[{i}] ({kid}): {e}")),
            }
        }
        Ok(set)
    }

    /// The key with this `kid`.
    pub fn get(&self, kid: &str) -> Option<&Arc<DecryptionKey>> {
        self.by_kid.get(kid)
    }

    /// The key ids held.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.by_kid.keys().map(String::as_str)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.by_kid.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.by_kid.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    /// The test RSA decryption key's private JWK with `edit` applied, as a JWKS.
    fn rsa_jwks(edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> String {
        let text = std::fs::read_to_string(testkit::keys_dir().join("enc-rsa.jwks")).expect("test key");
        let doc: Value = serde_json::from_str(&text).expect("json");
        let mut jwk = doc["keys"][0].as_object().cloned().expect("object");
        jwk.insert("use".into(), json!("enc"));
        edit(&mut jwk);
        json!({ "keys": [jwk] }).to_string()
    }

    #[test]
    fn the_valid_rsa_key_parses() {
        let set = DecryptionKeySet::from_jwks(rsa_jwks(|_| {}).as_bytes()).unwrap();
        assert_eq!(set.len(), 1, "{:?}", set.skipped);
    }

    /// An empty, zero, short or absurd modulus (or exponent) is skipped with why,
    /// never a panic or a DER built from it.
    #[test]
    fn rsa_private_jwks_with_hostile_sizes_are_skipped() {
        let huge = testkit::b64(&vec![0xffu8; 1 << 16]);
        let cases = [
            ("n", json!(""), "RSA modulus of 0 bits"),
            ("n", json!("AA"), "RSA modulus of 0 bits"),
            ("n", json!(testkit::b64(&[0; 512])), "RSA modulus of 0 bits"),
            ("n", json!("AQ"), "RSA modulus of 1 bits"),
            ("n", json!(huge), "RSA modulus of 524288 bits"),
            ("e", json!(""), "RSA public exponent of 0 bits"),
            ("e", json!("AA"), "RSA public exponent of 0 bits"),
            ("n", json!("***"), "member n missing or invalid"),
            ("d", json!(""), "RSA key rejected"),
        ];
        for (member, value, expected) in cases {
            let doc = rsa_jwks(|j| {
                j.insert(member.into(), value.clone());
            });
            let set = DecryptionKeySet::from_jwks(doc.as_bytes()).expect("document parses");
            assert!(set.is_empty(), "{member}={value}");
            assert_eq!(set.skipped.len(), 1);
            assert!(set.skipped[0].contains(expected), "{member}={value}: {}", set.skipped[0]);
        }
    }
}
