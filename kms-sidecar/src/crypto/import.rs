//! PEM import, with errors that name what was found and what was expected.

use super::alg::{Alg, KeyError};
use super::der;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, RsaKeyPair};
use serde_json::Value;
use zeroize::Zeroizing;

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
                (der::Kind::P256, Alg::ES256) => super::key::ec_pair(&der).map(|_| Imported::Private(der)),
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
