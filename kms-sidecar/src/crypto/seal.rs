//! AES-256-GCM: sealing private keys at rest under the master key (envelope
//! encryption, the kid as AAD) and the content encryption of the JWEs the sidecar
//! issues.

use super::alg::KeyError;
use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use gateway_core::b64;
use serde_json::Value;
use zeroize::Zeroizing;

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
}
