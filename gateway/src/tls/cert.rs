//! One certificate chain and its private key, read from PEM files and checked before
//! use: the chain file holds `CERTIFICATE` blocks (leaf first), the key file a private
//! key, the key belongs to the leaf, and the leaf is valid now.

use openssl::asn1::{Asn1Time, Asn1TimeRef};
use openssl::pkey::{PKey, Private};
use openssl::x509::X509;
use pingora::utils::tls::CertKey;
use std::sync::Arc;
use zeroize::Zeroizing;

/// Why a certificate or key file was refused (never with key material in it).
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// The file could not be read.
    #[error("{path}: cannot be read: {reason}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        reason: String,
    },
    /// No PEM `CERTIFICATE` block, or one that does not parse.
    #[error("{path}: not a PEM certificate chain (expected CERTIFICATE blocks)")]
    NotCertificate {
        /// The file.
        path: String,
    },
    /// No PEM private key, or one that does not parse.
    #[error("{path}: not a PEM private key (expected a PRIVATE KEY block)")]
    NotKey {
        /// The file.
        path: String,
    },
    /// The key is not the leaf certificate's.
    #[error("{key}: the private key does not match the certificate in {cert}")]
    KeyMismatch {
        /// The certificate file.
        cert: String,
        /// The key file.
        key: String,
    },
    /// The leaf's validity period has ended.
    #[error("{path}: the certificate expired (not after {not_after})")]
    Expired {
        /// The certificate file.
        path: String,
        /// Its `notAfter`.
        not_after: String,
    },
    /// The leaf's validity period has not begun.
    #[error("{path}: the certificate is not valid yet (not before {not_before})")]
    NotYetValid {
        /// The certificate file.
        path: String,
        /// Its `notBefore`.
        not_before: String,
    },
}

/// A checked chain and key, ready for a handshake.
pub struct CertPair {
    /// Chain (leaf first) and key, in the form Pingora's connector takes.
    pub cert_key: Arc<CertKey>,
    /// The leaf's `notAfter`, Unix seconds.
    pub not_after: i64,
}

/// The raw bytes of a chain file and a key file (the key zeroized when dropped).
pub struct PairBytes {
    /// Certificate chain file content.
    pub cert: Vec<u8>,
    /// Key file content.
    pub key: Zeroizing<Vec<u8>>,
}

/// Reads both files.
pub fn read(cert: &str, key: &str) -> Result<PairBytes, CertError> {
    let rd = |p: &str| std::fs::read(p).map_err(|e| CertError::Read { path: p.to_owned(), reason: e.to_string() });
    Ok(PairBytes { cert: rd(cert)?, key: Zeroizing::new(rd(key)?) })
}

/// Unix seconds of an ASN.1 time.
fn unix(t: &Asn1TimeRef) -> i64 {
    Asn1Time::from_unix(0)
        .ok()
        .and_then(|epoch| epoch.diff(t).ok())
        .map_or(0, |d| i64::from(d.days) * 86_400 + i64::from(d.secs))
}

/// Parses and checks a pair read by [`read`] from `cert` and `key` (the names are
/// for messages), at Unix time `now`.
pub fn parse(bytes: &PairBytes, cert: &str, key: &str, now: i64) -> Result<CertPair, CertError> {
    let not_cert = || CertError::NotCertificate { path: cert.to_owned() };
    if !bytes.cert.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
        return Err(not_cert());
    }
    let chain = X509::stack_from_pem(&bytes.cert).map_err(|_| not_cert())?;
    let leaf = chain.first().ok_or_else(not_cert)?;
    let pkey: PKey<Private> =
        PKey::private_key_from_pem(&bytes.key).map_err(|_| CertError::NotKey { path: key.to_owned() })?;
    let matches = leaf.public_key().map(|pubkey| pubkey.public_eq(&pkey)).unwrap_or(false);
    if !matches {
        return Err(CertError::KeyMismatch { cert: cert.to_owned(), key: key.to_owned() });
    }
    let not_after = unix(leaf.not_after());
    if not_after <= now {
        return Err(CertError::Expired { path: cert.to_owned(), not_after: leaf.not_after().to_string() });
    }
    if unix(leaf.not_before()) > now {
        return Err(CertError::NotYetValid { path: cert.to_owned(), not_before: leaf.not_before().to_string() });
    }
    Ok(CertPair { cert_key: Arc::new(CertKey::new(chain, pkey)), not_after })
}

/// Reads a PEM CA bundle (one or more `CERTIFICATE` blocks).
pub fn ca_bundle(path: &str) -> Result<Box<[X509]>, CertError> {
    let bytes = std::fs::read(path).map_err(|e| CertError::Read { path: path.to_owned(), reason: e.to_string() })?;
    let certs = X509::stack_from_pem(&bytes).map_err(|_| CertError::NotCertificate { path: path.to_owned() })?;
    if certs.is_empty() {
        return Err(CertError::NotCertificate { path: path.to_owned() });
    }
    Ok(certs.into_boxed_slice())
}

/// The wall clock, Unix seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}
