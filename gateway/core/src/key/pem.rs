//! PEM blocks to verification keys: SPKI public keys and X.509 certificates only;
//! any other block type is refused with a message naming what was found.

use crate::alg::KeyFamily;
use crate::key::{KeyError, VerifyingKey, PEM_EXPECTED_KINDS};
use x509_parser::prelude::{FromDer, SubjectPublicKeyInfo, X509Certificate};
use x509_parser::public_key::PublicKey;

const OID_ED25519: &str = "1.3.101.112";
const OID_P256: &str = "1.2.840.10045.3.1.7";

fn describe(label: &str) -> String {
    let what = match label {
        "RSA PUBLIC KEY" => "a PKCS#1 RSA public key",
        "RSA PRIVATE KEY" => "a PKCS#1 RSA private key",
        "PRIVATE KEY" => "a PKCS#8 private key",
        "ENCRYPTED PRIVATE KEY" => "an encrypted PKCS#8 private key",
        "EC PRIVATE KEY" => "a SEC1 EC private key",
        "EC PARAMETERS" => "EC parameters",
        "CERTIFICATE REQUEST" | "NEW CERTIFICATE REQUEST" => "a certificate signing request",
        _ => "an unknown block",
    };
    format!("{what} ({label})")
}

/// Parses one PEM block into a key with the given `kid`.
pub(crate) fn parse_block(block: &pem::Pem, kid: String) -> Result<VerifyingKey, KeyError> {
    match block.tag() {
        "PUBLIC KEY" => {
            let (_, spki) =
                SubjectPublicKeyInfo::from_der(block.contents()).map_err(|e| KeyError::Pem(format!("SPKI: {e}")))?;
            from_spki(&spki, kid)
        }
        "CERTIFICATE" => {
            let (_, cert) =
                X509Certificate::from_der(block.contents()).map_err(|e| KeyError::Pem(format!("certificate: {e}")))?;
            from_spki(cert.public_key(), kid)
        }
        other => Err(KeyError::WrongPemType { found: describe(other), expected: PEM_EXPECTED_KINDS }),
    }
}

fn from_spki(spki: &SubjectPublicKeyInfo<'_>, kid: String) -> Result<VerifyingKey, KeyError> {
    let oid = spki.algorithm.algorithm.to_id_string();
    if oid == OID_ED25519 {
        return VerifyingKey::from_raw(Some(kid), KeyFamily::Ed25519, None, &spki.subject_public_key.data);
    }
    match spki.parsed() {
        Ok(PublicKey::RSA(rsa)) => {
            crate::key::check_rsa_modulus(rsa.modulus)?;
            crate::key::check_rsa_exponent(rsa.exponent)?;
            // The BIT STRING of an RSA SPKI is the PKCS#1 RSAPublicKey DER.
            VerifyingKey::from_raw(Some(kid), KeyFamily::Rsa, None, &spki.subject_public_key.data)
        }
        Ok(PublicKey::EC(point)) => {
            let curve = spki.algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok()).map(|o| o.to_id_string());
            if curve.as_deref() != Some(OID_P256) {
                return Err(KeyError::Unsupported(format!("EC curve {}", curve.unwrap_or_default())));
            }
            VerifyingKey::from_raw(Some(kid), KeyFamily::P256, None, point.data())
        }
        _ => Err(KeyError::Unsupported(format!("SPKI algorithm {oid}"))),
    }
}
