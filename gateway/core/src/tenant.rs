//! Tenants: who issues their tokens, for which audience, with which algorithms, and
//! where their keys come from.

use crate::alg::Algorithm;
use crate::jwe::JweAllow;
use crate::secret::SecretSource;

/// Where a tenant's public keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A JWKS URL (the sidecar's `/jwk/{tenant}` or the tenant's own IdP).
    Url(String),
    /// A local JWKS file (`.json`/`.jwks`) or PEM file (SPKI keys or certificates).
    File {
        /// File path.
        path: String,
        /// `kid` for a single-key PEM file.
        kid: Option<String>,
    },
}

/// Where a tenant's private decryption keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecryptionSource {
    /// The sidecar's authenticated gateway channel (a JWKS of private JWKs).
    Url {
        /// URL, e.g. `http://127.0.0.1:8082/internal/v1/tenants/{tenant}/decryption-keys`.
        url: String,
        /// The channel credential.
        token: SecretSource,
    },
    /// A local JWKS file of private JWKs.
    File(String),
}

/// A tenant's JWE settings (absent: the tenant accepts no JWE).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encryption {
    /// Accepted key management and content encryption algorithms.
    pub allow: JweAllow,
    /// Accept a JWE whose payload is bare claims rather than a signed JWS. Off by
    /// default: anyone holding the public encryption key could have made it.
    pub allow_bare_claims: bool,
    /// Decryption key source.
    pub keys: DecryptionSource,
}

/// A validated tenant.
#[derive(Debug, Clone)]
pub struct Tenant {
    /// Tenant id (value of the tenant claim).
    pub id: String,
    /// Exact expected `iss`.
    pub issuer: String,
    /// Accepted audiences.
    pub audiences: Vec<String>,
    /// Allowed algorithms.
    pub algorithms: Vec<Algorithm>,
    /// Readiness waits for this tenant's keys.
    pub required: bool,
    /// Claims that must be present.
    pub required_claims: Vec<String>,
    /// Key source.
    pub keys: KeySource,
    /// JWE settings, when the tenant accepts encrypted tokens.
    pub encryption: Option<Encryption>,
}
