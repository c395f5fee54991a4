//! Tenants: who issues their tokens, for which audience, with which algorithms, and
//! where their keys come from.

use crate::alg::Algorithm;

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
}
