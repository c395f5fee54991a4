//! P-256 encryption keys for `ECDH-ES+A256KW`: generation (the private scalar is kept
//! as its 32 big-endian bytes), public and private JWKs, and nested-JWE wrapping with
//! an ephemeral key, the RFC 7518 §4.6 Concat KDF and AES-256 key wrap.

use super::alg::KeyError;
use super::seal::seal_a256gcm;
use aws_lc_rs::agreement::{self, PrivateKey, UnparsedPublicKey, ECDH_P256};
use aws_lc_rs::digest::{self, SHA256};
use aws_lc_rs::encoding::{AsBigEndian, EcPrivateKeyBin};
use aws_lc_rs::key_wrap::{KeyEncryptionKey, KeyWrap, AES_256};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use gateway_core::b64;
use serde_json::{json, Value};
use zeroize::Zeroizing;

const ALG: &str = "ECDH-ES+A256KW";

/// A new private scalar.
pub fn generate() -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let k = PrivateKey::generate(&ECDH_P256).map_err(|_| KeyError::Crypto("P-256 generation"))?;
    let d: EcPrivateKeyBin = k.as_be_bytes().map_err(|_| KeyError::Crypto("P-256 export"))?;
    Ok(Zeroizing::new(d.as_ref().to_vec()))
}

fn public_point(d: &[u8]) -> Result<Vec<u8>, KeyError> {
    let k = PrivateKey::from_private_key(&ECDH_P256, d).map_err(|_| KeyError::Crypto("P-256 key"))?;
    let p = k.compute_public_key().map_err(|_| KeyError::Crypto("P-256 public key"))?;
    let p = p.as_ref().to_vec();
    if p.len() != 65 || p[0] != 4 {
        return Err(KeyError::Crypto("P-256 point"));
    }
    Ok(p)
}

/// `{"kty":"EC","crv":"P-256","x","y"}` of the key.
pub fn public_members(d: &[u8]) -> Result<Value, KeyError> {
    let p = public_point(d)?;
    Ok(json!({"kty": "EC", "crv": "P-256", "x": b64::encode(&p[1..33]), "y": b64::encode(&p[33..])}))
}

/// The base64url `x` and `y` coordinates of the key's public point.
pub fn public_coordinates(d: &[u8]) -> Result<(String, String), KeyError> {
    let p = public_point(d)?;
    Ok((b64::encode(&p[1..33]), b64::encode(&p[33..])))
}

/// RFC 7518 §4.6.2 Concat KDF for one SHA-256 round (keys up to 256 bits).
fn concat_kdf(z: &[u8], alg_id: &str, bits: u32) -> [u8; 32] {
    let mut ctx = digest::Context::new(&SHA256);
    ctx.update(&1u32.to_be_bytes());
    ctx.update(z);
    ctx.update(&(alg_id.len() as u32).to_be_bytes());
    ctx.update(alg_id.as_bytes());
    ctx.update(&0u32.to_be_bytes()); // PartyUInfo: empty
    ctx.update(&0u32.to_be_bytes()); // PartyVInfo: empty
    ctx.update(&bits.to_be_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Nested JWT encrypted to the P-256 key `d` (its public half) with A256GCM.
pub fn wrap(d: &[u8], kid: &str, jws: &str) -> Result<String, KeyError> {
    let recipient = public_point(d)?;
    let eph = PrivateKey::generate(&ECDH_P256).map_err(|_| KeyError::Crypto("ephemeral key"))?;
    let eph_pub = eph.compute_public_key().map_err(|_| KeyError::Crypto("ephemeral key"))?;
    let eph_pub = eph_pub.as_ref();
    let kek = agreement::agree(&eph, UnparsedPublicKey::new(&ECDH_P256, &recipient), KeyError::Crypto("ECDH"), |z| {
        Ok(Zeroizing::new(concat_kdf(z, ALG, 256)))
    })?;
    let mut cek = Zeroizing::new([0u8; 32]);
    SystemRandom::new().fill(cek.as_mut()).map_err(|_| KeyError::Crypto("rng"))?;
    let mut wrapped = [0u8; 40];
    let kw = KeyEncryptionKey::new(&AES_256, kek.as_ref()).map_err(|_| KeyError::Crypto("AES-KW key"))?;
    let ek = kw.wrap(cek.as_ref(), &mut wrapped).map_err(|_| KeyError::Crypto("AES-KW"))?.to_vec();
    let header = json!({
        "alg": ALG, "enc": "A256GCM", "kid": kid, "cty": "JWT",
        "epk": {"kty": "EC", "crv": "P-256", "x": b64::encode(&eph_pub[1..33]), "y": b64::encode(&eph_pub[33..])},
    });
    seal_a256gcm(&header, &ek, &cek, jws)
}
