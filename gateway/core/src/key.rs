//! Public verification keys: parsed once from a JWK or a PEM block (SPKI or X.509
//! certificate) into a form that verifies without re-parsing, and grouped into a
//! [`KeySet`] looked up by `kid`.

mod pem;

use crate::alg::{Algorithm, KeyFamily};
use crate::b64;
use aws_lc_rs::signature::{self, ParsedPublicKey, VerificationAlgorithm};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// Why a key or key set could not be used. Messages name fields, never key material.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// The JWKS document is not `{"keys":[...]}`.
    #[error("JWKS is not an object with a \"keys\" array")]
    NotAJwks,
    /// A JWK member is missing or has the wrong type.
    #[error("JWK member `{0}` is missing or invalid")]
    Member(&'static str),
    /// The key type or curve is not one we verify with.
    #[error("unsupported key type {0}")]
    Unsupported(String),
    /// The crypto library rejected the key (too small, off-curve, ...).
    #[error("key rejected: {0}")]
    Rejected(String),
    /// A PEM file held the wrong kind of block.
    #[error("found {found}, expected {expected}")]
    WrongPemType {
        /// What was found, e.g. `PKCS#1 RSA public key (RSA PUBLIC KEY)`.
        found: String,
        /// What was expected.
        expected: &'static str,
    },
    /// The PEM or DER could not be decoded.
    #[error("cannot decode PEM: {0}")]
    Pem(String),
}

pub(crate) const PEM_EXPECTED_KINDS: &str = "an SPKI public key (PUBLIC KEY) or an X.509 certificate (CERTIFICATE)";

/// One public key, ready to verify signatures for the algorithms its type allows.
pub struct VerifyingKey {
    kid: Option<String>,
    family: KeyFamily,
    /// The JWK's own `alg`, when it names one: the key is then usable for that one only.
    pinned: Option<Algorithm>,
    parsed: Vec<(Algorithm, ParsedPublicKey)>,
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("family", &self.family)
            .field("pinned", &self.pinned)
            .finish_non_exhaustive()
    }
}

fn verification_alg(alg: Algorithm) -> &'static dyn VerificationAlgorithm {
    match alg {
        Algorithm::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
        Algorithm::ES256 => &signature::ECDSA_P256_SHA256_FIXED,
        Algorithm::EdDSA => &signature::ED25519,
    }
}

impl VerifyingKey {
    /// Builds a key from raw public bytes (PKCS#1 `RSAPublicKey` DER for RSA, the
    /// uncompressed SEC1 point for P-256, the 32 raw bytes for Ed25519).
    pub fn from_raw(
        kid: Option<String>,
        family: KeyFamily,
        pinned: Option<Algorithm>,
        bytes: &[u8],
    ) -> Result<Self, KeyError> {
        if let Some(p) = pinned {
            if p.family() != family {
                return Err(KeyError::Member("alg"));
            }
        }
        let mut parsed = Vec::new();
        for alg in Algorithm::ALL {
            if alg.family() != family || pinned.is_some_and(|p| p != alg) {
                continue;
            }
            let key =
                ParsedPublicKey::new(verification_alg(alg), bytes).map_err(|e| KeyError::Rejected(e.to_string()))?;
            parsed.push((alg, key));
        }
        Ok(Self { kid, family, pinned, parsed })
    }

    /// Parses one JWK object. Private members are ignored, never stored.
    pub fn from_jwk(jwk: &Map<String, Value>) -> Result<Self, KeyError> {
        let s = |name: &'static str| jwk.get(name).and_then(Value::as_str);
        let bytes = |name: &'static str| s(name).and_then(|v| b64::decode(v.as_bytes())).ok_or(KeyError::Member(name));
        let kid = match jwk.get("kid") {
            None => None,
            Some(Value::String(k)) if !k.is_empty() => Some(k.clone()),
            Some(_) => return Err(KeyError::Member("kid")),
        };
        let pinned = match jwk.get("alg") {
            None => None,
            Some(Value::String(a)) => Some(a.parse().map_err(|_| KeyError::Unsupported(format!("alg {a}")))?),
            Some(_) => return Err(KeyError::Member("alg")),
        };
        let kty = s("kty").ok_or(KeyError::Member("kty"))?;
        let (family, raw) = match (kty, s("crv")) {
            ("RSA", _) => {
                let (n, e) = (bytes("n")?, bytes("e")?);
                check_rsa_modulus(&n)?;
                check_rsa_exponent(&e)?;
                (KeyFamily::Rsa, rsa_public_der(&n, &e))
            }
            ("EC", Some("P-256")) => {
                let (x, y) = (bytes("x")?, bytes("y")?);
                if x.len() != 32 || y.len() != 32 {
                    return Err(KeyError::Member("x"));
                }
                let mut point = Vec::with_capacity(65);
                point.push(4);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                (KeyFamily::P256, point)
            }
            ("OKP", Some("Ed25519")) => {
                let x = bytes("x")?;
                if x.len() != 32 {
                    return Err(KeyError::Member("x"));
                }
                (KeyFamily::Ed25519, x)
            }
            (kty, crv) => {
                return Err(KeyError::Unsupported(match crv {
                    Some(c) => format!("{kty}/{c}"),
                    None => kty.to_owned(),
                }))
            }
        };
        Self::from_raw(kid, family, pinned, &raw)
    }

    /// The key's id, if it has one.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The key's family (RSA, P-256 or Ed25519).
    pub fn family(&self) -> KeyFamily {
        self.family
    }

    /// Whether this key may verify `alg` (type matches and any JWK `alg` agrees).
    pub fn allows(&self, alg: Algorithm) -> bool {
        self.parsed.iter().any(|(a, _)| *a == alg)
    }

    /// Verifies `sig` over `msg` with `alg`; false on any mismatch or failure.
    pub fn verify(&self, alg: Algorithm, msg: &[u8], sig: &[u8]) -> bool {
        self.parsed.iter().find(|(a, _)| *a == alg).is_some_and(|(_, k)| k.verify_sig(msg, sig).is_ok())
    }
}

/// The bit length of a big-endian unsigned integer: 0 for an empty or all-zero one,
/// leading zero bytes ignored (no arithmetic can underflow on hostile input).
pub(crate) fn bit_length(v: &[u8]) -> usize {
    match v.iter().position(|b| *b != 0) {
        None => 0,
        Some(first) => (v.len() - first) * 8 - v[first].leading_zeros() as usize,
    }
}

/// Refuses RSA moduli outside 2048..=8192 bits (leading zero bytes ignored; an empty
/// or zero modulus is 0 bits).
pub(crate) fn check_rsa_modulus(n: &[u8]) -> Result<(), KeyError> {
    let bits = bit_length(n);
    if (2048..=8192).contains(&bits) {
        Ok(())
    } else {
        Err(KeyError::Rejected(format!("RSA modulus of {bits} bits, expected 2048 to 8192")))
    }
}

/// Refuses RSA public exponents that are empty, even, below 3 or above 33 bits (the
/// range the crypto library accepts), before any DER is built from them.
pub(crate) fn check_rsa_exponent(e: &[u8]) -> Result<(), KeyError> {
    let bits = bit_length(e);
    if (2..=33).contains(&bits) && e.last().is_some_and(|b| b & 1 == 1) {
        Ok(())
    } else {
        Err(KeyError::Rejected(format!("RSA public exponent of {bits} bits, expected an odd value of 2 to 33 bits")))
    }
}

/// DER `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }`.
fn rsa_public_der(n: &[u8], e: &[u8]) -> Vec<u8> {
    fn int(v: &[u8], out: &mut Vec<u8>) {
        let v = {
            let first = v.iter().position(|b| *b != 0).unwrap_or(v.len().saturating_sub(1));
            &v[first..]
        };
        let pad = v.first().is_some_and(|b| b & 0x80 != 0);
        out.push(0x02);
        len(v.len() + usize::from(pad), out);
        if pad {
            out.push(0);
        }
        out.extend_from_slice(v);
    }
    fn len(n: usize, out: &mut Vec<u8>) {
        if n < 0x80 {
            out.push(n as u8);
        } else {
            let bytes = n.to_be_bytes();
            let skip = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len() - 1);
            out.push(0x80 | (bytes.len() - skip) as u8);
            out.extend_from_slice(&bytes[skip..]);
        }
    }
    let mut body = Vec::with_capacity(n.len() + e.len() + 16);
    int(n, &mut body);
    int(e, &mut body);
    let mut out = Vec::with_capacity(body.len() + 6);
    out.push(0x30);
    len(body.len(), &mut out);
    out.extend_from_slice(&body);
    out
}

/// An immutable set of one tenant's verification keys.
#[derive(Debug, Default)]
pub struct KeySet {
    by_kid: HashMap<String, Arc<VerifyingKey>, ahash::RandomState>,
    all: Vec<Arc<VerifyingKey>>,
    /// Keys in the source that were skipped (encryption keys, unsupported types), with why.
    pub skipped: Vec<String>,
}

impl KeySet {
    /// Builds a set from keys; a repeated `kid` keeps the first and records the rest as skipped.
    pub fn from_keys(keys: Vec<VerifyingKey>) -> Self {
        let mut set = KeySet::default();
        for k in keys {
            set.push(k);
        }
        set
    }

    fn push(&mut self, k: VerifyingKey) {
        let k = Arc::new(k);
        if let Some(kid) = k.kid() {
            if self.by_kid.contains_key(kid) {
                self.skipped.push(format!("duplicate kid {kid}"));
                return;
            }
            self.by_kid.insert(kid.to_owned(), k.clone());
        }
        self.all.push(k);
    }

    /// Parses a JWKS document. Keys that are not for signatures or of an unsupported
    /// type are skipped (and listed in `skipped`), not fatal; a malformed document is.
    pub fn from_jwks(bytes: &[u8]) -> Result<Self, KeyError> {
        let doc: Value = serde_json::from_slice(bytes).map_err(|_| KeyError::NotAJwks)?;
        let keys = doc.get("keys").and_then(Value::as_array).ok_or(KeyError::NotAJwks)?;
        let mut set = KeySet::default();
        for (i, k) in keys.iter().enumerate() {
            let Some(obj) = k.as_object() else {
                set.skipped.push(format!("keys[{i}]: not an object"));
                continue;
            };
            if obj.get("use").is_some_and(|u| u != "sig") {
                set.skipped.push(format!("keys[{i}]: use is not sig"));
                continue;
            }
            match VerifyingKey::from_jwk(obj) {
                Ok(key) => set.push(key),
                Err(e) => set.skipped.push(format!("keys[{i}]: {e}")),
            }
        }
        Ok(set)
    }

    /// Parses PEM text holding SPKI public keys and/or X.509 certificates. Keys
    /// get `kid` `pem-<index>` unless `kid` names the single key.
    pub fn from_pem(text: &[u8], kid: Option<&str>) -> Result<Self, KeyError> {
        let blocks = ::pem::parse_many(text).map_err(|e| KeyError::Pem(e.to_string()))?;
        if blocks.is_empty() {
            return Err(KeyError::Pem("no PEM block found".into()));
        }
        let mut keys = Vec::new();
        for (i, block) in blocks.iter().enumerate() {
            let id = match kid {
                Some(k) if blocks.len() == 1 => k.to_owned(),
                _ => format!("pem-{i}"),
            };
            keys.push(pem::parse_block(block, id)?);
        }
        Ok(Self::from_keys(keys))
    }

    /// The key with this `kid`, if any.
    pub fn get(&self, kid: &str) -> Option<&Arc<VerifyingKey>> {
        self.by_kid.get(kid)
    }

    /// Every key, in source order.
    pub fn keys(&self) -> &[Arc<VerifyingKey>] {
        &self.all
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.all.len()
    }

    /// True when the set holds no usable key.
    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The test RSA key's public JWK (2048 bits), with `edit` applied.
    fn rsa_jwk(edit: impl FnOnce(&mut Map<String, Value>)) -> Map<String, Value> {
        let key = testkit::TestKey::load("rsa-a.pem", "rs-1", jsonwebtoken::Algorithm::RS256);
        let mut jwk = key.jwk().as_object().cloned().expect("object");
        edit(&mut jwk);
        jwk
    }

    fn b64(bytes: &[u8]) -> Value {
        json!(testkit::b64(bytes))
    }

    #[test]
    fn bit_length_never_underflows() {
        assert_eq!(bit_length(&[]), 0);
        assert_eq!(bit_length(&[0, 0, 0]), 0);
        assert_eq!(bit_length(&[1]), 1);
        assert_eq!(bit_length(&[0, 0x80]), 8);
        assert_eq!(bit_length(&[0x01, 0]), 9);
        assert_eq!(bit_length(&[0xff; 256]), 2048);
    }

    #[test]
    fn the_valid_rsa_jwk_parses() {
        let key = VerifyingKey::from_jwk(&rsa_jwk(|_| {})).expect("valid key");
        assert!(key.allows(Algorithm::RS256));
    }

    /// Hostile moduli and exponents are refused with a clean error, never a panic
    /// (an empty `n` used to underflow the bit count).
    #[test]
    fn rsa_jwks_with_empty_zero_or_absurd_members_are_refused() {
        let huge = vec![0xffu8; 1 << 16];
        let cases: Vec<(&str, &str, Value, &str)> = vec![
            ("empty n", "n", json!(""), "RSA modulus of 0 bits"),
            ("zero n", "n", b64(&[0]), "RSA modulus of 0 bits"),
            ("all-zero n", "n", b64(&[0; 256]), "RSA modulus of 0 bits"),
            ("one-bit n", "n", b64(&[1]), "RSA modulus of 1 bits"),
            ("2047-bit n", "n", b64(&[[0x7f].as_slice(), &[0xff; 255]].concat()), "RSA modulus of 2047 bits"),
            ("512 kbit n", "n", b64(&huge), "RSA modulus of 524288 bits"),
            ("empty e", "e", json!(""), "RSA public exponent of 0 bits"),
            ("zero e", "e", b64(&[0, 0]), "RSA public exponent of 0 bits"),
            ("e = 1", "e", b64(&[1]), "RSA public exponent of 1 bits"),
            ("even e", "e", b64(&[1, 0, 0]), "RSA public exponent of 17 bits"),
            ("huge e", "e", b64(&[0xff; 64]), "RSA public exponent of 512 bits"),
        ];
        for (what, member, value, expected) in cases {
            let jwk = rsa_jwk(|j| {
                j.insert(member.into(), value);
            });
            match VerifyingKey::from_jwk(&jwk) {
                Err(KeyError::Rejected(m)) => assert!(m.starts_with(expected), "{what}: {m}"),
                other => panic!("{what}: {other:?}"),
            }
        }
        for member in ["n", "e"] {
            let missing = rsa_jwk(|j| {
                j.remove(member);
            });
            assert!(matches!(VerifyingKey::from_jwk(&missing), Err(KeyError::Member(_))), "{member} missing");
            let not_b64 = rsa_jwk(|j| {
                j.insert(member.into(), json!("***"));
            });
            assert!(matches!(VerifyingKey::from_jwk(&not_b64), Err(KeyError::Member(_))), "{member} not base64url");
        }
    }

    /// In a JWKS the bad key is skipped (with why) and the good ones still load.
    #[test]
    fn a_jwks_with_an_empty_n_key_keeps_its_good_keys() {
        let good = rsa_jwk(|_| {});
        let bad = rsa_jwk(|j| {
            j.insert("n".into(), json!(""));
            j.insert("kid".into(), json!("bad"));
        });
        let doc = json!({ "keys": [bad, good] }).to_string();
        let set = KeySet::from_jwks(doc.as_bytes()).expect("document parses");
        assert_eq!(set.len(), 1);
        assert!(set.get("rs-1").is_some() && set.get("bad").is_none());
        assert_eq!(
            set.skipped,
            vec!["keys[0]: key rejected: RSA modulus of 0 bits, expected 2048 to 8192".to_string()]
        );
    }
}
