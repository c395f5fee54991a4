//! The algorithms a sidecar key can have and the one error of key operations.

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

    pub(super) fn family(self) -> &'static str {
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
