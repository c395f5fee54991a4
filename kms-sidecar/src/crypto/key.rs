//! Key material: generation, signing, public JWKs, the private JWKs handed to the
//! gateway, nested-JWE wrapping, sealing under the master key, and PEM import with
//! errors that name what was found and what was expected. All primitives come from
//! aws-lc-rs (constant-time RSA; no `rsa` crate). Private key bytes live only in
//! `Zeroizing` buffers.

use crate::der;
use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::rsa::{KeySize, OaepPublicEncryptingKey, PrivateDecryptingKey, OAEP_SHA256_MGF1SHA256};
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use gateway_core::b64;
use serde_json::{json, Value};
use zeroize::Zeroizing;

/// The algorithms a sidecar key can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    /// RSA PKCS#1 v1.5 SHA-256 signatures.
    RS256,
    /// RSA-PSS SHA-256 signatures.
    PS256,
    /// ECDSA P-256 signatures.
    ES256,
    /// Ed25519 signatures.
    EdDSA,
    /// RSA-OAEP-256 key management (JWE).
    RsaOaep256,
    /// ECDH-ES+A256KW key management on P-256 (JWE).
    EcdhEsA256Kw,
}

impl Alg {
    /// Parses a JOSE name.
    pub fn parse(s: &str) -> Option<Alg> {
        Some(match s {
            "RS256" => Alg::RS256,
            "PS256" => Alg::PS256,
            "ES256" => Alg::ES256,
            "EdDSA" => Alg::EdDSA,
            "RSA-OAEP-256" => Alg::RsaOaep256,
            "ECDH-ES+A256KW" => Alg::EcdhEsA256Kw,
            _ => return None,
        })
    }

    /// The JOSE name.
    pub fn as_str(self) -> &'static str {
        match self {
            Alg::RS256 => "RS256",
            Alg::PS256 => "PS256",
            Alg::ES256 => "ES256",
            Alg::EdDSA => "EdDSA",
            Alg::RsaOaep256 => "RSA-OAEP-256",
            Alg::EcdhEsA256Kw => "ECDH-ES+A256KW",
        }
    }

    fn family(self) -> &'static str {
        match self {
            Alg::RS256 | Alg::PS256 | Alg::RsaOaep256 => "an RSA key",
            Alg::ES256 | Alg::EcdhEsA256Kw => "a P-256 EC key",
            Alg::EdDSA => "an Ed25519 key",
        }
    }
}

/// Why a key operation failed. Never carries key material.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// The crypto library refused.
    #[error("crypto failure: {0}")]
    Crypto(&'static str),
    /// A PEM of the wrong kind or format.
    #[error("found {found}, expected {expected}")]
    Wrong {
        /// What the PEM holds.
        found: String,
        /// What was expected.
        expected: String,
    },
    /// Undecodable input.
    #[error("cannot decode PEM: {0}")]
    Pem(String),
}

/// Generates a new private key: PKCS#8 DER, or the raw scalar for ECDH keys.
/// `rsa_bits` (2048 or 3072) sizes RSA signing keys.
pub fn generate(alg: Alg, rsa_bits: u32) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let size = if rsa_bits == 3072 { KeySize::Rsa3072 } else { KeySize::Rsa2048 };
    let der = match alg {
        Alg::EcdhEsA256Kw => return crate::ecdh::generate(),
        Alg::RS256 | Alg::PS256 => RsaKeyPair::generate(size)
            .and_then(|k| k.as_der().map(|d| d.as_ref().to_vec()))
            .map_err(|_| KeyError::Crypto("RSA generation"))?,
        Alg::RsaOaep256 => PrivateDecryptingKey::generate(KeySize::Rsa2048)
            .and_then(|k| k.as_der().map(|d| d.as_ref().to_vec()))
            .map_err(|_| KeyError::Crypto("RSA generation"))?,
        Alg::ES256 => EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING)
            .and_then(|k| k.to_pkcs8v1())
            .map(|d| d.as_ref().to_vec())
            .map_err(|_| KeyError::Crypto("P-256 generation"))?,
        Alg::EdDSA => Ed25519KeyPair::generate()
            .and_then(|k| k.to_pkcs8v1())
            .map(|d| d.as_ref().to_vec())
            .map_err(|_| KeyError::Crypto("Ed25519 generation"))?,
    };
    Ok(Zeroizing::new(der))
}

fn ec_pair(pkcs8: &[u8]) -> Result<EcdsaKeyPair, KeyError> {
    EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
        .map_err(|_| KeyError::Crypto("P-256 key"))
}

/// The public JWK of a private key (no private member ever).
pub fn public_jwk(alg: Alg, pkcs8: &[u8], kid: &str, key_use: &str) -> Result<Value, KeyError> {
    let mut jwk = match alg {
        Alg::RS256 | Alg::PS256 | Alg::RsaOaep256 => {
            let rsa = der::rsa_private(pkcs8).ok_or(KeyError::Crypto("RSA PKCS#8"))?;
            json!({"kty": "RSA", "n": b64::encode(&rsa.n), "e": b64::encode(&rsa.e)})
        }
        Alg::ES256 => {
            let pair = ec_pair(pkcs8)?;
            let point = pair.public_key().as_ref();
            if point.len() != 65 {
                return Err(KeyError::Crypto("P-256 point"));
            }
            json!({"kty": "EC", "crv": "P-256", "x": b64::encode(&point[1..33]), "y": b64::encode(&point[33..])})
        }
        Alg::EdDSA => {
            let pair = Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|_| KeyError::Crypto("Ed25519 key"))?;
            json!({"kty": "OKP", "crv": "Ed25519", "x": b64::encode(pair.public_key().as_ref())})
        }
        Alg::EcdhEsA256Kw => crate::ecdh::public_members(pkcs8)?,
    };
    let o = jwk.as_object_mut().expect("object literal");
    o.insert("kid".into(), json!(kid));
    o.insert("use".into(), json!(key_use));
    o.insert("alg".into(), json!(alg.as_str()));
    Ok(jwk)
}

/// A private JWK handed to the gateway over the channel: the channel's document
/// type, every private member a `Zeroizing` string wiped when the JWK is dropped.
pub use medgate_channel::decryption::PrivateJwk;

/// Base64url of private bytes, straight into a wiped-on-drop string.
fn secret(v: &[u8]) -> Zeroizing<String> {
    Zeroizing::new(b64::encode(v))
}

/// The private JWK of a decryption key, for the gateway channel only.
pub fn private_jwk(alg: Alg, pkcs8: &[u8], kid: &str) -> Result<PrivateJwk, KeyError> {
    let jwk = PrivateJwk {
        kid: Some(kid.to_owned()),
        key_use: Some("enc".into()),
        alg: Some(alg.as_str().into()),
        ..Default::default()
    };
    match alg {
        Alg::EcdhEsA256Kw => {
            let (x, y) = crate::ecdh::public_coordinates(pkcs8)?;
            Ok(PrivateJwk {
                kty: Some("EC".into()),
                crv: Some("P-256".into()),
                x: Some(x),
                y: Some(y),
                d: Some(secret(pkcs8)),
                ..jwk
            })
        }
        Alg::RsaOaep256 => {
            let k = der::rsa_private(pkcs8).ok_or(KeyError::Crypto("RSA PKCS#8"))?;
            Ok(PrivateJwk {
                kty: Some("RSA".into()),
                n: Some(b64::encode(&k.n)),
                e: Some(b64::encode(&k.e)),
                d: Some(secret(&k.d)),
                p: Some(secret(&k.p)),
                q: Some(secret(&k.q)),
                dp: Some(secret(&k.dp)),
                dq: Some(secret(&k.dq)),
                qi: Some(secret(&k.qi)),
                ..jwk
            })
        }
        _ => Err(KeyError::Crypto("not a decryption key")),
    }
}

/// `{"keys": [...]}` of private JWKs as JSON in one wiped-on-drop buffer, allocated at
/// its exact size so no partial copy is left behind by a reallocation.
pub fn private_jwks_json(keys: &[PrivateJwk]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let set = medgate_channel::DecryptionKeys { keys };
    let mut count = Count(0);
    serde_json::to_writer(&mut count, &set).map_err(|_| KeyError::Crypto("JWK encoding"))?;
    let mut out = Zeroizing::new(Vec::with_capacity(count.0));
    serde_json::to_writer(&mut *out, &set).map_err(|_| KeyError::Crypto("JWK encoding"))?;
    debug_assert_eq!(out.len(), out.capacity());
    Ok(out)
}

/// Signs `msg` (the JWS signing input) with `alg`.
pub fn sign(alg: Alg, pkcs8: &[u8], msg: &[u8]) -> Result<Vec<u8>, KeyError> {
    let rng = SystemRandom::new();
    match alg {
        Alg::RS256 | Alg::PS256 => {
            let pair = RsaKeyPair::from_pkcs8(pkcs8).map_err(|_| KeyError::Crypto("RSA key"))?;
            let mut sig = vec![0; pair.public_modulus_len()];
            let enc: &'static dyn signature::RsaEncoding =
                if alg == Alg::RS256 { &signature::RSA_PKCS1_SHA256 } else { &signature::RSA_PSS_SHA256 };
            pair.sign(enc, &rng, msg, &mut sig).map_err(|_| KeyError::Crypto("RSA sign"))?;
            Ok(sig)
        }
        Alg::ES256 => {
            Ok(ec_pair(pkcs8)?.sign(&rng, msg).map_err(|_| KeyError::Crypto("ECDSA sign"))?.as_ref().to_vec())
        }
        Alg::EdDSA => {
            let pair = Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|_| KeyError::Crypto("Ed25519 key"))?;
            Ok(pair.sign(msg).as_ref().to_vec())
        }
        Alg::RsaOaep256 | Alg::EcdhEsA256Kw => Err(KeyError::Crypto("not a signing key")),
    }
}

/// Compact JWS over `claims` with header `{"alg","typ":"JWT","kid"}`.
pub fn jws(alg: Alg, pkcs8: &[u8], kid: &str, claims: &Value) -> Result<String, KeyError> {
    let header = json!({"alg": alg.as_str(), "typ": "JWT", "kid": kid});
    let input = format!("{}.{}", b64::encode(header.to_string()), b64::encode(claims.to_string()));
    let sig = sign(alg, pkcs8, input.as_bytes())?;
    Ok(format!("{input}.{}", b64::encode(sig)))
}

/// Nested JWT: the signed `jws` encrypted to the decryption key (`RSA-OAEP-256` or
/// `ECDH-ES+A256KW`) with A256GCM and `cty: JWT`.
pub fn jwe_wrap(alg: Alg, enc_key: &[u8], kid: &str, jws: &str) -> Result<String, KeyError> {
    match alg {
        Alg::EcdhEsA256Kw => crate::ecdh::wrap(enc_key, kid, jws),
        Alg::RsaOaep256 => {
            let mut cek = Zeroizing::new([0u8; 32]);
            SystemRandom::new().fill(cek.as_mut()).map_err(|_| KeyError::Crypto("rng"))?;
            let private = PrivateDecryptingKey::from_pkcs8(enc_key).map_err(|_| KeyError::Crypto("RSA key"))?;
            let public = OaepPublicEncryptingKey::new(private.public_key()).map_err(|_| KeyError::Crypto("RSA key"))?;
            let mut ek = vec![0u8; public.ciphertext_size()];
            let ek_len = public
                .encrypt(&OAEP_SHA256_MGF1SHA256, cek.as_ref(), &mut ek, None)
                .map_err(|_| KeyError::Crypto("RSA-OAEP"))?
                .len();
            ek.truncate(ek_len);
            let header = json!({"alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": kid, "cty": "JWT"});
            seal_a256gcm(&header, &ek, &cek, jws)
        }
        _ => Err(KeyError::Crypto("not an encryption key")),
    }
}

/// The compact JWE of `payload` under `cek` (A256GCM; AAD = the encoded header).
pub(crate) fn seal_a256gcm(
    header: &Value,
    encrypted_key: &[u8],
    cek: &[u8; 32],
    payload: &str,
) -> Result<String, KeyError> {
    let h64 = b64::encode(header.to_string());
    let mut iv = [0u8; 12];
    SystemRandom::new().fill(&mut iv).map_err(|_| KeyError::Crypto("rng"))?;
    let key = aead_key(cek)?;
    let mut data = payload.as_bytes().to_vec();
    let tag = key
        .seal_in_place_separate_tag(Nonce::assume_unique_for_key(iv), Aad::from(h64.as_bytes()), &mut data)
        .map_err(|_| KeyError::Crypto("AES-GCM"))?;
    Ok(format!(
        "{h64}.{}.{}.{}.{}",
        b64::encode(encrypted_key),
        b64::encode(iv),
        b64::encode(&data),
        b64::encode(tag.as_ref())
    ))
}

/// AES-256-GCM sealing of private keys under the master key (envelope: the kid is the AAD).
pub struct Sealer {
    key: LessSafeKey,
}

impl Sealer {
    /// A sealer for a 32-byte master key.
    pub fn new(master: &[u8]) -> Result<Sealer, KeyError> {
        if master.len() != 32 {
            return Err(KeyError::Crypto("the master key must be 32 bytes"));
        }
        let key = UnboundKey::new(&AES_256_GCM, master).map_err(|_| KeyError::Crypto("master key"))?;
        Ok(Sealer { key: LessSafeKey::new(key) })
    }

    /// Envelope encryption: a fresh data key per sealed value encrypts it (AAD: the
    /// kid); the master key wraps that data key. Layout: `1 || wrap(dek) || seal(value)`,
    /// each part `nonce || ciphertext || tag`.
    pub fn seal(&self, kid: &str, plain: &[u8]) -> Result<Vec<u8>, KeyError> {
        let mut dek = Zeroizing::new([0u8; 32]);
        SystemRandom::new().fill(dek.as_mut()).map_err(|_| KeyError::Crypto("rng"))?;
        let dek_key = aead_key(dek.as_ref())?;
        let mut out = vec![1u8];
        out.extend(aead_seal(&self.key, format!("dek:{kid}").as_bytes(), dek.as_ref())?);
        out.extend(aead_seal(&dek_key, kid.as_bytes(), plain)?);
        Ok(out)
    }

    /// Opens a sealed value; fails on a wrong master key or any tampering.
    pub fn open(&self, kid: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        const WRAPPED: usize = 12 + 32 + 16;
        let (version, rest) = sealed.split_first().ok_or(KeyError::Crypto("empty sealed value"))?;
        if *version != 1 || rest.len() < WRAPPED + 12 + 16 {
            return Err(KeyError::Crypto("unknown sealed format"));
        }
        let (wrapped, body) = rest.split_at(WRAPPED);
        let dek = aead_open(&self.key, format!("dek:{kid}").as_bytes(), wrapped)?;
        aead_open(&aead_key(&dek)?, kid.as_bytes(), body)
    }
}

fn aead_key(bytes: &[u8]) -> Result<LessSafeKey, KeyError> {
    Ok(LessSafeKey::new(UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| KeyError::Crypto("AES key"))?))
}

fn aead_seal(key: &LessSafeKey, aad: &[u8], plain: &[u8]) -> Result<Vec<u8>, KeyError> {
    let mut nonce = [0u8; 12];
    SystemRandom::new().fill(&mut nonce).map_err(|_| KeyError::Crypto("rng"))?;
    // Room for the tag, so the plaintext is never left behind by a reallocation.
    let mut buf = Zeroizing::new(Vec::with_capacity(plain.len() + 16));
    buf.extend_from_slice(plain);
    key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut *buf)
        .map_err(|_| KeyError::Crypto("seal"))?;
    let mut out = Vec::with_capacity(12 + buf.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&buf);
    Ok(out)
}

fn aead_open(key: &LessSafeKey, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    if sealed.len() < 12 + 16 {
        return Err(KeyError::Crypto("sealed value too short"));
    }
    let (nonce, body) = sealed.split_at(12);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| KeyError::Crypto("nonce"))?;
    let mut buf = Zeroizing::new(body.to_vec());
    let len = key
        .open_in_place(nonce, Aad::from(aad), &mut buf)
        .map_err(|_| KeyError::Crypto("cannot unseal: wrong master key or corrupted store"))?
        .len();
    buf.truncate(len);
    Ok(buf)
}

fn describe(label: &str) -> &'static str {
    match label {
        "PRIVATE KEY" => "a PKCS#8 private key (PRIVATE KEY)",
        "RSA PRIVATE KEY" => "a PKCS#1 RSA private key (RSA PRIVATE KEY)",
        "EC PRIVATE KEY" => "a SEC1 EC private key (EC PRIVATE KEY)",
        "PUBLIC KEY" => "an SPKI public key (PUBLIC KEY)",
        "RSA PUBLIC KEY" => "a PKCS#1 RSA public key (RSA PUBLIC KEY)",
        "CERTIFICATE" => "an X.509 certificate (CERTIFICATE)",
        "ENCRYPTED PRIVATE KEY" => "an encrypted PKCS#8 private key (ENCRYPTED PRIVATE KEY)",
        _ => "an unsupported PEM block",
    }
}

/// What an imported PEM turned out to be.
pub enum Imported {
    /// A private key, normalised to PKCS#8 DER.
    Private(Zeroizing<Vec<u8>>),
    /// A public key only: its JWK members (kty/n/e, crv/x/y).
    Public(Value),
}

/// The label and contents of the first PEM block of `text`. The base64 text and the
/// decoded DER each live in one wiped-on-drop buffer allocated at its final size (the
/// `pem` crate would leave an unwiped copy of the base64 behind).
fn pem_block(text: &str) -> Result<(&str, Zeroizing<Vec<u8>>), KeyError> {
    use base64::Engine as _;
    let bad = |m: &str| KeyError::Pem(m.into());
    let (_, rest) = text.split_once("-----BEGIN ").ok_or_else(|| bad("no BEGIN line"))?;
    let (label, rest) = rest.split_once("-----").ok_or_else(|| bad("malformed BEGIN line"))?;
    if label.is_empty() || label.len() > 64 || label.contains(['\r', '\n']) {
        return Err(bad("malformed BEGIN line"));
    }
    let (data, _) = rest.split_once(&format!("-----END {label}-----")).ok_or_else(|| bad("no matching END line"))?;
    if data.contains(':') {
        return Err(bad("PEM headers (legacy encrypted PEM) are not supported"));
    }
    let mut b64 = Zeroizing::new(String::with_capacity(data.len()));
    b64.extend(data.chars().filter(|c| !c.is_whitespace()));
    let mut der = Zeroizing::new(Vec::with_capacity(b64.len() / 4 * 3 + 3));
    base64::engine::general_purpose::STANDARD.decode_vec(b64.as_bytes(), &mut der).map_err(|e| bad(&e.to_string()))?;
    Ok((label, der))
}

/// Imports one PEM block for `alg`. `format` (`pkcs8`, `pkcs1`, `sec1`, `spki`), when
/// given, must match the block; the key type must match `alg`.
pub fn import_pem(text: &str, alg: Alg, format: Option<&str>) -> Result<Imported, KeyError> {
    let (label, der) = pem_block(text)?;
    let found = describe(label);
    let wanted = match format {
        None => None,
        Some("pkcs8") => Some("PRIVATE KEY"),
        Some("pkcs1") => Some("RSA PRIVATE KEY"),
        Some("sec1") => Some("EC PRIVATE KEY"),
        Some("spki") => Some("PUBLIC KEY"),
        Some(other) => {
            return Err(KeyError::Wrong {
                found: format!("format {other:?}"),
                expected: "pkcs8, pkcs1, sec1 or spki".into(),
            })
        }
    };
    if let Some(w) = wanted {
        if w != label {
            return Err(KeyError::Wrong { found: found.into(), expected: describe(w).into() });
        }
    }
    let wrong_type =
        |what: &str| KeyError::Wrong { found: what.into(), expected: format!("{} for {}", alg.family(), alg.as_str()) };
    match label {
        "PRIVATE KEY" => {
            let kind = der::pkcs8_kind(&der).ok_or_else(|| KeyError::Pem("not a PKCS#8 structure".into()))?;
            match (kind, alg) {
                (der::Kind::Rsa, Alg::RS256 | Alg::PS256 | Alg::RsaOaep256) => {
                    RsaKeyPair::from_pkcs8(&der)
                        .map_err(|_| KeyError::Crypto("RSA key rejected (2048 bits or more?)"))?;
                    Ok(Imported::Private(der))
                }
                (der::Kind::P256, Alg::ES256) => ec_pair(&der).map(|_| Imported::Private(der)),
                (der::Kind::Ed25519, Alg::EdDSA) => Ed25519KeyPair::from_pkcs8(&der)
                    .map(|_| Imported::Private(der.clone()))
                    .or_else(|_| {
                        Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der).map(|_| Imported::Private(der.clone()))
                    })
                    .map_err(|_| KeyError::Crypto("Ed25519 key rejected")),
                (k, _) => Err(wrong_type(k.describe())),
            }
        }
        "RSA PRIVATE KEY" => {
            if !matches!(alg, Alg::RS256 | Alg::PS256 | Alg::RsaOaep256) {
                return Err(wrong_type("an RSA key"));
            }
            let pair = RsaKeyPair::from_der(&der).map_err(|_| KeyError::Crypto("PKCS#1 RSA key rejected"))?;
            let p8 = pair.as_der().map_err(|_| KeyError::Crypto("PKCS#8 encoding"))?;
            Ok(Imported::Private(Zeroizing::new(p8.as_ref().to_vec())))
        }
        "EC PRIVATE KEY" => {
            if alg != Alg::ES256 {
                return Err(wrong_type("a P-256 EC key"));
            }
            let pair = EcdsaKeyPair::from_private_key_der(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &der)
                .map_err(|_| KeyError::Crypto("SEC1 key rejected (P-256 only)"))?;
            let p8 = pair.to_pkcs8v1().map_err(|_| KeyError::Crypto("PKCS#8 encoding"))?;
            Ok(Imported::Private(Zeroizing::new(p8.as_ref().to_vec())))
        }
        "PUBLIC KEY" => {
            let set = gateway_core::KeySet::from_pem(text.as_bytes(), Some("import"))
                .map_err(|e| KeyError::Pem(e.to_string()))?;
            let key = set.get("import").ok_or_else(|| KeyError::Pem("no key".into()))?;
            let fits = gateway_core::Algorithm::ALL.iter().any(|a| a.as_str() == alg.as_str() && key.allows(*a));
            if !fits {
                return Err(wrong_type(&format!("{:?} public key", key.family())));
            }
            let raw = der::spki_jwk(&der).ok_or_else(|| KeyError::Pem("SPKI".into()))?;
            Ok(Imported::Public(raw))
        }
        _ => Err(KeyError::Wrong {
            found: found.into(),
            expected: "a PKCS#8, PKCS#1 or SEC1 private key, or an SPKI public key".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_sealing_binds_kid_and_master_key() {
        let a = Sealer::new(&[7u8; 32]).unwrap();
        let b = Sealer::new(&[8u8; 32]).unwrap();
        let sealed = a.seal("kid-1", b"private key bytes").unwrap();
        assert_eq!(a.open("kid-1", &sealed).unwrap().as_slice(), b"private key bytes");
        assert!(a.open("kid-2", &sealed).is_err(), "bound to its kid");
        assert!(b.open("kid-1", &sealed).is_err(), "bound to the master key");
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(a.open("kid-1", &tampered).is_err());
        assert_ne!(a.seal("kid-1", b"x").unwrap(), a.seal("kid-1", b"x").unwrap(), "fresh data key and nonces");
    }

    #[test]
    fn private_jwks_carry_every_private_member_in_one_exact_buffer() {
        let rsa = generate(Alg::RsaOaep256, 2048).unwrap();
        let ec = generate(Alg::EcdhEsA256Kw, 0).unwrap();
        let keys =
            [private_jwk(Alg::RsaOaep256, &rsa, "r").unwrap(), private_jwk(Alg::EcdhEsA256Kw, &ec, "e").unwrap()];
        let json = private_jwks_json(&keys).unwrap();
        assert_eq!(json.len(), json.capacity(), "allocated once, at its final size");
        let doc: Value = serde_json::from_slice(&json).unwrap();
        let (r, e) = (&doc["keys"][0], &doc["keys"][1]);
        for m in ["n", "e", "d", "p", "q", "dp", "dq", "qi"] {
            assert!(r[m].as_str().is_some_and(|v| !v.is_empty()), "RSA member {m}: {r}");
        }
        assert_eq!((r["kty"].as_str(), r["kid"].as_str(), r["use"].as_str()), (Some("RSA"), Some("r"), Some("enc")));
        assert_eq!(
            (e["kty"].as_str(), e["crv"].as_str(), e["alg"].as_str()),
            (Some("EC"), Some("P-256"), Some("ECDH-ES+A256KW"))
        );
        assert_eq!(gateway_core::b64::decode(e["d"].as_str().unwrap().as_bytes()).unwrap(), ec.as_slice());
        assert!(private_jwk(Alg::ES256, &ec, "s").is_err(), "signing keys are never handed out");
    }

    #[test]
    fn pem_framing_is_checked() {
        let body = "MIIB\nAAAA\n";
        let text = format!("junk\n-----BEGIN PRIVATE KEY-----\n{body}-----END PRIVATE KEY-----\n");
        let (label, der) = pem_block(&text).unwrap();
        assert_eq!((label, der.as_slice()), ("PRIVATE KEY", &[0x30, 0x82, 0x01, 0, 0, 0][..]));
        for bad in [
            "not a pem",
            "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PUBLIC KEY-----\n",
            "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nMIIB\n-----END RSA PRIVATE KEY-----\n",
            "-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n",
        ] {
            assert!(matches!(pem_block(bad), Err(KeyError::Pem(_))), "{bad}");
        }
    }
}
