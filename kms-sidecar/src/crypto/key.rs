//! Key material: generation, signing, public JWKs, the private JWKs handed to the
//! gateway and nested-JWE wrapping. All primitives come from aws-lc-rs (constant-time
//! RSA; no `rsa` crate). Private key bytes live only in `Zeroizing` buffers.

use super::alg::{Alg, KeyError};
use super::der;
use super::seal::seal_a256gcm;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::rsa::{KeySize, OaepPublicEncryptingKey, PrivateDecryptingKey, OAEP_SHA256_MGF1SHA256};
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use gateway_core::b64;
use serde_json::{json, Value};
use zeroize::Zeroizing;

/// Generates a new private key: PKCS#8 DER, or the raw scalar for ECDH keys.
/// `rsa_bits` (2048 or 3072) sizes RSA signing keys.
pub fn generate(alg: Alg, rsa_bits: u32) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let size = if rsa_bits == 3072 { KeySize::Rsa3072 } else { KeySize::Rsa2048 };
    let der = match alg {
        Alg::EcdhEsA256Kw => return super::ecdh::generate(),
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

pub(super) fn ec_pair(pkcs8: &[u8]) -> Result<EcdsaKeyPair, KeyError> {
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
        Alg::EcdhEsA256Kw => super::ecdh::public_members(pkcs8)?,
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
            let (x, y) = super::ecdh::public_coordinates(pkcs8)?;
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
        Alg::EcdhEsA256Kw => super::ecdh::wrap(enc_key, kid, jws),
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
