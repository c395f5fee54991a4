//! Token verification: a compact JWS is parsed strictly, its tenant resolved from the
//! (not yet trusted) claims, its signature checked with that tenant's keys only, and
//! its claims validated. [`VerifiedToken`] can only be made here.

use crate::alg::Algorithm;
use crate::cache::TokenCache;
use crate::claims::Claims;
use crate::error::AuthError;
use crate::jose::{self, Compact};
use crate::key::{KeySet, VerifyingKey};
use crate::keystore::KeyStore;
use crate::tenant::Tenant;
use std::collections::HashMap;
use std::sync::Arc;

/// Verification settings shared by all tenants.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Claim naming the tenant.
    pub tenant_claim: String,
    /// Leeway for time claims, seconds.
    pub leeway: i64,
    /// Maximum token length in bytes.
    pub max_token_size: usize,
}

/// A token whose signature and tenant-level claims have been checked.
#[derive(Debug)]
pub struct VerifiedToken {
    tenant: Arc<Tenant>,
    alg: Algorithm,
    kid: Option<String>,
    claims: Claims,
}

impl VerifiedToken {
    /// The tenant whose key verified the token.
    pub fn tenant(&self) -> &Arc<Tenant> {
        &self.tenant
    }
    /// The algorithm used.
    pub fn alg(&self) -> Algorithm {
        self.alg
    }
    /// The `kid` of the verifying key, when the token named one.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }
    /// The verified claims.
    pub fn claims(&self) -> &Claims {
        &self.claims
    }
}

/// What a failed lookup needs from the caller: whether an unknown-`kid` refetch may help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The refusal.
    pub error: AuthError,
    /// The tenant whose keys lacked the `kid`, when a refetch could help.
    pub refetch_tenant: Option<String>,
}

impl From<AuthError> for Refused {
    fn from(error: AuthError) -> Self {
        Self { error, refetch_tenant: None }
    }
}

/// Verifies tokens against per-tenant keys, with a cache of verified tokens.
#[derive(Debug)]
pub struct Verifier {
    opts: VerifyOptions,
    tenants: HashMap<String, Arc<Tenant>>,
    cache: TokenCache,
}

impl Verifier {
    /// A verifier for these tenants; `cache_size` 0 disables the cache.
    pub fn new(opts: VerifyOptions, tenants: Vec<Tenant>, cache_size: usize) -> Self {
        Self {
            opts,
            tenants: tenants.into_iter().map(|t| (t.id.clone(), Arc::new(t))).collect(),
            cache: TokenCache::new(cache_size),
        }
    }

    /// The configured tenants.
    pub fn tenants(&self) -> impl Iterator<Item = &Arc<Tenant>> {
        self.tenants.values()
    }

    /// Verified-token cache `(hits, misses)`.
    pub fn cache_stats(&self) -> (u64, u64) {
        self.cache.stats()
    }

    /// The settings.
    pub fn options(&self) -> &VerifyOptions {
        &self.opts
    }

    /// Verifies `token` at time `now` using `keys`.
    pub fn verify(&self, token: &str, keys: &KeyStore, now: i64) -> Result<Arc<VerifiedToken>, Refused> {
        if token.len() > self.opts.max_token_size {
            return Err(AuthError::TokenTooLarge.into());
        }
        if jose::classify(token)? == Compact::Jwe {
            return Err(AuthError::EncryptionUnsupported.into());
        }
        if let Some(hit) = self.cache.get(token, |t| keys.get(&t.tenant.id, now)) {
            hit.claims.check_time(now, self.opts.leeway)?;
            return Ok(hit);
        }
        let jws = jose::parse_jws(token)?;
        let claims = Claims::new(jws.claims)?;
        let tenant_id = claims.str(&self.opts.tenant_claim).ok_or(AuthError::TenantUnknown)?;
        let tenant = self.tenants.get(tenant_id).ok_or(AuthError::TenantUnknown)?;
        let alg = jws.header.alg;
        if !tenant.algorithms.contains(&alg) {
            return Err(AuthError::AlgorithmNotAllowed.into());
        }
        let set = keys.get(&tenant.id, now).ok_or(AuthError::KeysUnavailable)?;
        let key = select_key(&set, jws.header.kid.as_deref(), alg).map_err(|error| Refused {
            refetch_tenant: (error == AuthError::KeyUnknown).then(|| tenant.id.clone()),
            error,
        })?;
        if !key.verify(alg, jws.signing_input, &jws.signature) {
            return Err(AuthError::SignatureInvalid.into());
        }
        claims.check_time(now, self.opts.leeway)?;
        claims.check_issuer(&tenant.issuer)?;
        claims.check_audience(&tenant.audiences)?;
        claims.check_required(&tenant.required_claims)?;
        let verified = Arc::new(VerifiedToken { tenant: tenant.clone(), alg, kid: jws.header.kid, claims });
        self.cache.insert(token, verified.clone(), set, now);
        Ok(verified)
    }
}

/// Picks the key: by `kid` within the tenant's own set, or the tenant's only key
/// that fits `alg` when the token names none. The key's type must fit `alg`.
fn select_key<'a>(set: &'a KeySet, kid: Option<&str>, alg: Algorithm) -> Result<&'a VerifyingKey, AuthError> {
    let key = match kid {
        Some(kid) => set.get(kid).ok_or(AuthError::KeyUnknown)?,
        None => {
            let mut fitting = set.keys().iter().filter(|k| k.allows(alg));
            match (fitting.next(), fitting.next()) {
                (Some(k), None) => k,
                _ => return Err(AuthError::KeyUnknown),
            }
        }
    };
    if key.allows(alg) {
        Ok(key)
    } else {
        Err(AuthError::AlgorithmNotAllowed)
    }
}
