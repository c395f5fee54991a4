//! Compact JWE decryption with every check the JOSE crates leave to the caller,
//! done before any cryptographic work: exactly five canonical segments, a
//! duplicate-free header, allowlisted `alg`/`enc` (RSA1_5, PBES2-*, `dir` and bare key
//! wrap are never accepted), no `zip`, no `crit`, no key-carrying members, a P-256
//! `epk` on its curve, and exact IV, tag and encrypted-key lengths. Every primitive
//! is aws-lc-rs; every cryptographic failure is the same opaque `DecryptionFailed`,
//! and AES-CBC-HMAC checks the MAC (in constant time) before decrypting.
//! This module decrypts; authenticating the nested JWS is the caller's job.

pub mod keys;
pub mod store;

use crate::{b64, json};
use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM, AES_256_GCM};
use aws_lc_rs::agreement::{self, UnparsedPublicKey, ECDH_P256};
use aws_lc_rs::cipher::{DecryptionContext, PaddedBlockDecryptingKey, UnboundCipherKey, AES_128, AES_256};
use aws_lc_rs::digest::{self, SHA256};
use aws_lc_rs::hmac;
use aws_lc_rs::key_wrap::{self, KeyEncryptionKey, KeyWrap};
use aws_lc_rs::rsa::OAEP_SHA256_MGF1SHA256;
use keys::{DecryptionKey, DecryptionKeySet};
use serde_json::{Map, Value};
use zeroize::Zeroizing;

/// Largest compact JWE accepted.
pub const MAX_JWE_BYTES: usize = 16 * 1024;

/// Key management algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyManagement {
    /// RSA-OAEP with SHA-256.
    RsaOaep256,
    /// ECDH-ES direct key agreement (P-256).
    EcdhEs,
    /// ECDH-ES with AES-128 key wrap.
    EcdhEsA128Kw,
    /// ECDH-ES with AES-256 key wrap.
    EcdhEsA256Kw,
}

/// Content encryption algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentEncryption {
    /// AES-128-GCM.
    A128Gcm,
    /// AES-256-GCM.
    A256Gcm,
    /// AES-128-CBC with HMAC-SHA-256.
    A128CbcHs256,
    /// AES-256-CBC with HMAC-SHA-512.
    A256CbcHs512,
}

impl KeyManagement {
    /// Every supported value.
    pub const ALL: [Self; 4] = [Self::RsaOaep256, Self::EcdhEs, Self::EcdhEsA128Kw, Self::EcdhEsA256Kw];

    /// The registered name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RsaOaep256 => "RSA-OAEP-256",
            Self::EcdhEs => "ECDH-ES",
            Self::EcdhEsA128Kw => "ECDH-ES+A128KW",
            Self::EcdhEsA256Kw => "ECDH-ES+A256KW",
        }
    }

    /// Parses a supported registered name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "RSA-OAEP-256" => Self::RsaOaep256,
            "ECDH-ES" => Self::EcdhEs,
            "ECDH-ES+A128KW" => Self::EcdhEsA128Kw,
            "ECDH-ES+A256KW" => Self::EcdhEsA256Kw,
            _ => return None,
        })
    }
}

impl ContentEncryption {
    /// Every supported value.
    pub const ALL: [Self; 4] = [Self::A128Gcm, Self::A256Gcm, Self::A128CbcHs256, Self::A256CbcHs512];

    /// The registered name.
    pub fn as_str(self) -> &'static str {
        enc_name(self)
    }

    /// Parses a supported registered name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "A128GCM" => Self::A128Gcm,
            "A256GCM" => Self::A256Gcm,
            "A128CBC-HS256" => Self::A128CbcHs256,
            "A256CBC-HS512" => Self::A256CbcHs512,
            _ => return None,
        })
    }

    /// CEK length in bytes.
    fn key_len(self) -> usize {
        match self {
            Self::A128Gcm => 16,
            Self::A256Gcm | Self::A128CbcHs256 => 32,
            Self::A256CbcHs512 => 64,
        }
    }

    fn iv_len(self) -> usize {
        match self {
            Self::A128Gcm | Self::A256Gcm => 12,
            _ => 16,
        }
    }

    fn tag_len(self) -> usize {
        match self {
            Self::A256CbcHs512 => 32,
            _ => 16,
        }
    }
}

/// Which algorithms a tenant accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JweAllow {
    /// Key management algorithms.
    pub key_management: Vec<KeyManagement>,
    /// Content encryption algorithms.
    pub content: Vec<ContentEncryption>,
}

impl Default for JweAllow {
    fn default() -> Self {
        use ContentEncryption::*;
        use KeyManagement::*;
        Self {
            key_management: vec![RsaOaep256, EcdhEs, EcdhEsA128Kw, EcdhEsA256Kw],
            content: vec![A128Gcm, A256Gcm, A128CbcHs256, A256CbcHs512],
        }
    }
}

/// Why a JWE was refused. Never carries token content or key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JweError {
    /// Structure, encoding or lengths.
    #[error("malformed JWE: {0}")]
    Malformed(&'static str),
    /// `alg` or `enc` not allowed (names which).
    #[error("JWE {0} not allowed")]
    AlgorithmNotAllowed(&'static str),
    /// A header member we refuse.
    #[error("JWE header member not supported: {0}")]
    HeaderUnsupported(&'static str),
    /// No key with this `kid`.
    #[error("decryption key unknown")]
    KeyUnknown,
    /// Any cryptographic failure (wrong key, tampering, padding): one opaque answer.
    #[error("decryption failed")]
    DecryptionFailed,
}

/// A validated JWE protected header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JweHeader {
    /// Key management.
    pub alg: KeyManagement,
    /// Content encryption.
    pub enc: ContentEncryption,
    /// Key id (required).
    pub kid: String,
    /// Content type (`JWT` for a nested token).
    pub cty: Option<String>,
    /// Ephemeral public point (uncompressed), for ECDH-ES*.
    epk: Option<Vec<u8>>,
    apu: Vec<u8>,
    apv: Vec<u8>,
}

/// A decrypted payload.
#[derive(Debug)]
pub struct Decrypted {
    /// Key id that decrypted it.
    pub kid: String,
    /// Content type.
    pub cty: Option<String>,
    /// Plaintext (zeroized on drop).
    pub payload: Zeroizing<Vec<u8>>,
}

const REFUSED_MEMBERS: [&str; 8] = ["zip", "crit", "jku", "jwk", "x5u", "x5c", "p2s", "p2c"];

fn parse_header(map: &Map<String, Value>, allow: &JweAllow) -> Result<JweHeader, JweError> {
    for m in REFUSED_MEMBERS {
        if map.contains_key(m) {
            return Err(JweError::HeaderUnsupported(m));
        }
    }
    let alg = map.get("alg").and_then(Value::as_str).ok_or(JweError::Malformed("alg"))?;
    let alg = KeyManagement::parse(alg)
        .filter(|a| allow.key_management.contains(a))
        .ok_or(JweError::AlgorithmNotAllowed("alg"))?;
    let enc = map.get("enc").and_then(Value::as_str).ok_or(JweError::Malformed("enc"))?;
    let enc = ContentEncryption::parse(enc)
        .filter(|e| allow.content.contains(e))
        .ok_or(JweError::AlgorithmNotAllowed("enc"))?;
    let kid = match map.get("kid") {
        Some(Value::String(k)) if !k.is_empty() && k.len() <= 256 => k.clone(),
        _ => return Err(JweError::Malformed("kid")),
    };
    let cty = match map.get("cty") {
        None => None,
        Some(Value::String(c)) => Some(c.clone()),
        Some(_) => return Err(JweError::Malformed("cty")),
    };
    let party = |name: &'static str| -> Result<Vec<u8>, JweError> {
        match map.get(name) {
            None => Ok(Vec::new()),
            Some(Value::String(s)) => b64::decode(s.as_bytes()).ok_or(JweError::Malformed(name)),
            Some(_) => Err(JweError::Malformed(name)),
        }
    };
    let epk = if alg == KeyManagement::RsaOaep256 {
        None
    } else {
        let e = map.get("epk").and_then(Value::as_object).ok_or(JweError::Malformed("epk"))?;
        let s = |n: &str| e.get(n).and_then(Value::as_str);
        if s("kty") != Some("EC") || s("crv") != Some("P-256") {
            return Err(JweError::AlgorithmNotAllowed("epk curve"));
        }
        let coord = |n: &'static str| {
            s(n).and_then(|v| b64::decode(v.as_bytes())).filter(|v| v.len() == 32).ok_or(JweError::Malformed("epk"))
        };
        let mut point = vec![4u8];
        point.extend(coord("x")?);
        point.extend(coord("y")?);
        Some(point)
    };
    Ok(JweHeader { alg, enc, kid, cty, epk, apu: party("apu")?, apv: party("apv")? })
}

/// A compact JWE whose structure, header and lengths passed the checks (no crypto yet).
#[derive(Debug)]
pub struct Parts<'a> {
    header_b64: &'a str,
    header: JweHeader,
    ek: Vec<u8>,
    iv: Vec<u8>,
    ct: Vec<u8>,
    tag: Vec<u8>,
}

impl Parts<'_> {
    /// The validated protected header.
    pub fn header(&self) -> &JweHeader {
        &self.header
    }
}

/// Strictly validates a compact JWE (structure, header, lengths) without any crypto.
pub fn parse<'a>(token: &'a str, allow: &JweAllow) -> Result<Parts<'a>, JweError> {
    split(token, allow)
}

fn split<'a>(token: &'a str, allow: &JweAllow) -> Result<Parts<'a>, JweError> {
    if token.len() > MAX_JWE_BYTES {
        return Err(JweError::Malformed("too large"));
    }
    let segs: Vec<&str> = token.split('.').collect();
    let [h, ek, iv, ct, tag] = segs[..] else { return Err(JweError::Malformed("segment count")) };
    let dec = |s: &str, what: &'static str| b64::decode(s.as_bytes()).ok_or(JweError::Malformed(what));
    let map = json::parse_object(&dec(h, "header")?).map_err(|_| JweError::Malformed("header json"))?;
    let header = parse_header(&map, allow)?;
    let (ek, iv, ct, tag) = (dec(ek, "encrypted key")?, dec(iv, "iv")?, dec(ct, "ciphertext")?, dec(tag, "tag")?);
    let enc = header.enc;
    if iv.len() != enc.iv_len() {
        return Err(JweError::Malformed("iv length"));
    }
    if tag.len() != enc.tag_len() {
        return Err(JweError::Malformed("tag length"));
    }
    if ct.is_empty() || (enc.iv_len() == 16 && ct.len() % 16 != 0) {
        return Err(JweError::Malformed("ciphertext length"));
    }
    let ek_ok = match header.alg {
        KeyManagement::RsaOaep256 => ek.len() >= 256,
        KeyManagement::EcdhEs => ek.is_empty(),
        KeyManagement::EcdhEsA128Kw => ek.len() == enc.key_len() + 8 && enc.key_len() <= 64,
        KeyManagement::EcdhEsA256Kw => ek.len() == enc.key_len() + 8,
    };
    if !ek_ok {
        return Err(JweError::Malformed("encrypted key length"));
    }
    Ok(Parts { header_b64: h, header, ek, iv, ct, tag })
}

/// Strictly validates a compact JWE's structure and header without any crypto, so the
/// caller can find the tenant whose key `kid` names.
pub fn peek_header(token: &str, allow: &JweAllow) -> Result<JweHeader, JweError> {
    split(token, allow).map(|p| p.header)
}

/// RFC 7518 §4.6.2 Concat KDF (SHA-256), `out_len` bytes.
fn concat_kdf(z: &[u8], alg_id: &str, apu: &[u8], apv: &[u8], out_len: usize) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(out_len + 32));
    let mut counter = 1u32;
    while out.len() < out_len {
        let mut ctx = digest::Context::new(&SHA256);
        ctx.update(&counter.to_be_bytes());
        ctx.update(z);
        for part in [alg_id.as_bytes(), apu, apv] {
            ctx.update(&(part.len() as u32).to_be_bytes());
            ctx.update(part);
        }
        ctx.update(&((out_len * 8) as u32).to_be_bytes());
        out.extend_from_slice(ctx.finish().as_ref());
        counter += 1;
    }
    out.truncate(out_len);
    out
}

fn cek(p: &Parts<'_>, key: &DecryptionKey) -> Result<Zeroizing<Vec<u8>>, JweError> {
    let h = &p.header;
    let want = h.enc.key_len();
    let cek = match (h.alg, key) {
        (KeyManagement::RsaOaep256, DecryptionKey::Rsa(k)) => {
            let oaep =
                aws_lc_rs::rsa::OaepPrivateDecryptingKey::new(k.clone()).map_err(|_| JweError::DecryptionFailed)?;
            if p.ek.len() != oaep.key_size_bytes() {
                return Err(JweError::Malformed("encrypted key length"));
            }
            let mut out = Zeroizing::new(vec![0u8; p.ek.len()]);
            let n = oaep
                .decrypt(&OAEP_SHA256_MGF1SHA256, &p.ek, &mut out, None)
                .map_err(|_| JweError::DecryptionFailed)?
                .len();
            out.truncate(n);
            out
        }
        (KeyManagement::RsaOaep256, _) | (_, DecryptionKey::Rsa(_)) => {
            return Err(JweError::AlgorithmNotAllowed("key type"))
        }
        (alg, DecryptionKey::P256(k)) => {
            let epk = h.epk.as_deref().ok_or(JweError::Malformed("epk"))?;
            let (alg_id, len) = match alg {
                KeyManagement::EcdhEs => (enc_name(h.enc), want),
                KeyManagement::EcdhEsA128Kw => ("ECDH-ES+A128KW", 16),
                _ => ("ECDH-ES+A256KW", 32),
            };
            // An off-curve or malformed point is refused by aws-lc here.
            let derived =
                agreement::agree(k, UnparsedPublicKey::new(&ECDH_P256, epk), JweError::DecryptionFailed, |z| {
                    Ok(concat_kdf(z, alg_id, &h.apu, &h.apv, len))
                })?;
            if alg == KeyManagement::EcdhEs {
                derived
            } else {
                let cipher = if len == 16 { &key_wrap::AES_128 } else { &key_wrap::AES_256 };
                let kek = KeyEncryptionKey::new(cipher, &derived).map_err(|_| JweError::DecryptionFailed)?;
                let mut out = Zeroizing::new(vec![0u8; p.ek.len()]);
                let n = kek.unwrap(&p.ek, &mut out).map_err(|_| JweError::DecryptionFailed)?.len();
                out.truncate(n);
                out
            }
        }
    };
    if cek.len() != want {
        return Err(JweError::DecryptionFailed);
    }
    Ok(cek)
}

fn enc_name(e: ContentEncryption) -> &'static str {
    match e {
        ContentEncryption::A128Gcm => "A128GCM",
        ContentEncryption::A256Gcm => "A256GCM",
        ContentEncryption::A128CbcHs256 => "A128CBC-HS256",
        ContentEncryption::A256CbcHs512 => "A256CBC-HS512",
    }
}

fn open_content(p: &Parts<'_>, cek: &[u8]) -> Result<Zeroizing<Vec<u8>>, JweError> {
    let aad = p.header_b64.as_bytes();
    let fail = |_| JweError::DecryptionFailed;
    match p.header.enc {
        ContentEncryption::A128Gcm | ContentEncryption::A256Gcm => {
            let alg = if cek.len() == 16 { &AES_128_GCM } else { &AES_256_GCM };
            let key = LessSafeKey::new(UnboundKey::new(alg, cek).map_err(fail)?);
            let nonce = Nonce::try_assume_unique_for_key(&p.iv).map_err(fail)?;
            let mut buf = Zeroizing::new([p.ct.as_slice(), p.tag.as_slice()].concat());
            let n = key.open_in_place(nonce, Aad::from(aad), &mut buf).map_err(fail)?.len();
            buf.truncate(n);
            Ok(buf)
        }
        enc => {
            let half = cek.len() / 2;
            let (mac_key, enc_key) = cek.split_at(half);
            let (hmac_alg, cipher) = if enc == ContentEncryption::A128CbcHs256 {
                (hmac::HMAC_SHA256, &AES_128)
            } else {
                (hmac::HMAC_SHA512, &AES_256)
            };
            let mut ctx = hmac::Context::with_key(&hmac::Key::new(hmac_alg, mac_key));
            ctx.update(aad);
            ctx.update(&p.iv);
            ctx.update(&p.ct);
            ctx.update(&((aad.len() as u64) * 8).to_be_bytes());
            let mac = ctx.sign();
            // Constant-time, and before any decryption: no padding oracle.
            aws_lc_rs::constant_time::verify_slices_are_equal(&mac.as_ref()[..p.tag.len()], &p.tag).map_err(fail)?;
            let key = PaddedBlockDecryptingKey::cbc_pkcs7(UnboundCipherKey::new(cipher, enc_key).map_err(fail)?)
                .map_err(fail)?;
            let iv: [u8; 16] = p.iv.as_slice().try_into().map_err(|_| JweError::DecryptionFailed)?;
            let mut buf = Zeroizing::new(p.ct.clone());
            let n = key.decrypt(&mut buf, DecryptionContext::Iv128(iv.into())).map_err(fail)?.len();
            buf.truncate(n);
            Ok(buf)
        }
    }
}

/// Decrypts a compact JWE with the key its `kid` names in `keys`.
pub fn decrypt(token: &str, keys: &DecryptionKeySet, allow: &JweAllow) -> Result<Decrypted, JweError> {
    decrypt_parsed(&split(token, allow)?, keys)
}

/// Decrypts an already validated JWE with the key its `kid` names in `keys`.
pub fn decrypt_parsed(parts: &Parts<'_>, keys: &DecryptionKeySet) -> Result<Decrypted, JweError> {
    let key = keys.get(&parts.header.kid).ok_or(JweError::KeyUnknown)?;
    let cek = cek(parts, key)?;
    let payload = open_content(parts, &cek)?;
    Ok(Decrypted { kid: parts.header.kid.clone(), cty: parts.header.cty.clone(), payload })
}
