//! Token verification: a compact JWS is parsed strictly, its tenant resolved from the
//! (not yet trusted) claims, its signature checked with that tenant's keys only, and
//! its claims validated. A compact JWE is decrypted with the key its `kid` names (one
//! tenant's), and its payload must be a JWS of that same tenant, verified the same
//! way. [`VerifiedToken`] can only be made here.

pub mod cache;

use crate::alg::Algorithm;
use crate::claims::{Claims, UncheckedClaims};
use crate::error::AuthError;
use crate::jose::{self, Compact};
use crate::jwe::keys::DecryptionKeySet;
use crate::jwe::store::{DecryptionStore, KidOwner};
use crate::jwe::{self, ContentEncryption, JweAllow, JweError, KeyManagement};
use crate::key::{KeySet, VerifyingKey};
use crate::keystore::KeyStore;
use crate::tenant::Tenant;
use cache::TokenCache;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

/// The headers the gateway sets for one verified token, as ready header names and
/// values (`crate::header::identity` makes them): made once per token and kept with
/// it in the verified-token cache, shared by every request that token makes (setting
/// one upstream is a reference count, no parse).
pub type Identity = Arc<[(http::HeaderName, http::HeaderValue)]>;

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

/// How a JWE token was decrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encrypted {
    /// Key management algorithm.
    pub alg: KeyManagement,
    /// Content encryption.
    pub enc: ContentEncryption,
    /// `kid` of the decryption key.
    pub kid: String,
}

/// A token whose signature and tenant-level claims have been checked.
#[derive(Debug)]
pub struct VerifiedToken {
    tenant: Arc<Tenant>,
    alg: Option<Algorithm>,
    kid: Option<String>,
    encrypted: Option<Encrypted>,
    claims: Claims,
    /// The identity headers of this token, made on first use (see [`Self::identity_with`]).
    identity: OnceLock<Result<Identity, AuthError>>,
}

impl VerifiedToken {
    /// The token's identity headers: made by `make` on the first call and kept, so a
    /// token served from the cache sets its headers without building them again. A
    /// token lives in the cache of one config's verifier, so one header mapping
    /// (that config's) ever makes them.
    pub fn identity_with(
        &self,
        make: impl FnOnce(&Self) -> Result<Identity, AuthError>,
    ) -> Result<Identity, AuthError> {
        self.identity.get_or_init(|| make(self)).clone()
    }

    /// The tenant whose key verified the token.
    pub fn tenant(&self) -> &Arc<Tenant> {
        &self.tenant
    }
    /// The signature algorithm; `None` only for a JWE around bare claims (allowed per tenant).
    pub fn alg(&self) -> Option<Algorithm> {
        self.alg
    }
    /// The `kid` of the verifying key, when the token named one.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }
    /// How the token was decrypted, when it was a JWE.
    pub fn encrypted(&self) -> Option<&Encrypted> {
        self.encrypted.as_ref()
    }
    /// `"JWE"` or `"JWS"`.
    pub fn kind(&self) -> &'static str {
        if self.encrypted.is_some() {
            "JWE"
        } else {
            "JWS"
        }
    }
    /// The verified claims.
    pub fn claims(&self) -> &Claims {
        &self.claims
    }
}

/// Which keys a refetch might find a missing `kid` in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refetch {
    /// This tenant's signing keys.
    Signing(String),
    /// Decryption keys: no tenant holds this JWE `kid` (so a tenant it names, or any
    /// tenant, might have it now).
    Decryption(String),
}

/// What a failed lookup needs from the caller: whether an unknown-`kid` refetch may help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The refusal.
    pub error: AuthError,
    /// Set when a refetch could help.
    pub refetch: Option<Refetch>,
}

impl From<AuthError> for Refused {
    fn from(error: AuthError) -> Self {
        Self { error, refetch: None }
    }
}

/// Told about each decryption, for latency metrics (the core reads no clock for policy).
pub trait Observer: Send + Sync + std::fmt::Debug {
    /// One JWE decrypted in `seconds` with `alg`.
    fn decrypted(&self, alg: KeyManagement, seconds: f64);
}

fn jwe_refusal(e: JweError) -> AuthError {
    match e {
        JweError::Malformed(what) => AuthError::TokenMalformed(what),
        JweError::AlgorithmNotAllowed(_) => AuthError::AlgorithmNotAllowed,
        JweError::HeaderUnsupported(what) => AuthError::HeaderUnsupported(what),
        JweError::KeyUnknown => AuthError::KeyUnknown,
        JweError::DecryptionFailed => AuthError::DecryptionFailed,
    }
}

/// Runs a library call so that a panic on hostile input becomes a refusal, never a
/// dropped connection.
pub fn guard<T>(f: impl FnOnce() -> T) -> Result<T, AuthError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|_| AuthError::DecryptionFailed)
}

/// Verifies tokens against per-tenant keys, with a cache of verified tokens.
#[derive(Debug)]
pub struct Verifier {
    opts: VerifyOptions,
    /// By id; the lookup key comes from the token, the map only from the config.
    tenants: HashMap<String, Arc<Tenant>, ahash::RandomState>,
    cache: TokenCache,
    /// Union of every tenant's JWE allowlist (the per-tenant one is applied after the
    /// `kid` names the tenant); `None` when no tenant accepts JWE.
    jwe_any: Option<JweAllow>,
    observer: Option<Arc<dyn Observer>>,
}

type Checked = (VerifiedToken, Option<Arc<KeySet>>, Option<Arc<DecryptionKeySet>>);

impl Verifier {
    /// A verifier for these tenants; `cache_size` 0 disables the cache.
    pub fn new(opts: VerifyOptions, tenants: Vec<Tenant>, cache_size: usize) -> Self {
        let mut jwe_any: Option<JweAllow> = None;
        for e in tenants.iter().filter_map(|t| t.encryption.as_ref()) {
            let u = jwe_any.get_or_insert_with(|| JweAllow { key_management: Vec::new(), content: Vec::new() });
            for a in &e.allow.key_management {
                if !u.key_management.contains(a) {
                    u.key_management.push(*a);
                }
            }
            for c in &e.allow.content {
                if !u.content.contains(c) {
                    u.content.push(*c);
                }
            }
        }
        Self {
            opts,
            tenants: tenants.into_iter().map(|t| (t.id.clone(), Arc::new(t))).collect(),
            cache: TokenCache::new(cache_size),
            jwe_any,
            observer: None,
        }
    }

    /// Reports each decryption to `observer`.
    pub fn with_observer(mut self, observer: Option<Arc<dyn Observer>>) -> Self {
        self.observer = observer;
        self
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

    /// Verifies `token` (a compact JWS, or a compact JWE around one) at time `now`,
    /// using `keys` for signatures and `dkeys` for decryption.
    pub fn verify(
        &self,
        token: &str,
        keys: &KeyStore,
        dkeys: &DecryptionStore,
        now: i64,
    ) -> Result<Arc<VerifiedToken>, Refused> {
        if token.len() > self.opts.max_token_size {
            return Err(AuthError::TokenTooLarge.into());
        }
        let kind = jose::classify(token)?;
        // The key sets that checked a cached token must still be the tenant's current
        // ones: a signing key set exactly when the token was signed, a decryption key
        // set exactly when it was encrypted.
        let current = |t: &VerifiedToken, set: Option<&Arc<KeySet>>, dset: Option<&Arc<DecryptionKeySet>>| {
            let id = &t.tenant.id;
            let signed = match (t.alg, set) {
                (Some(_), Some(set)) => keys.is_current(id, set, now),
                (None, None) => true,
                _ => false,
            };
            signed
                && match (&t.encrypted, dset) {
                    (Some(_), Some(dset)) => dkeys.store().is_current(id, dset, now),
                    (None, None) => true,
                    _ => false,
                }
        };
        if let Some(hit) = self.cache.get(token, current) {
            hit.claims.check_time(now, self.opts.leeway)?;
            return Ok(hit);
        }
        let (verified, set, dset) = match kind {
            Compact::Jws => self.verify_jws(token, None, keys, now).map(|(v, set)| (v, Some(set), None))?,
            Compact::Jwe => self.verify_jwe(token, keys, dkeys, now)?,
        };
        let verified = Arc::new(verified);
        self.cache.insert(token, verified.clone(), set, dset, now);
        Ok(verified)
    }

    fn check_claims(&self, claims: &Claims, tenant: &Tenant, now: i64) -> Result<(), AuthError> {
        claims.check_time(now, self.opts.leeway)?;
        claims.check_issuer(&tenant.issuer)?;
        claims.check_audience(&tenant.audiences)?;
        claims.check_required(&tenant.required_claims)
    }

    /// A compact JWS; when nested in a JWE, its tenant must be `expected`.
    fn verify_jws(
        &self,
        token: &str,
        expected: Option<&Arc<Tenant>>,
        keys: &KeyStore,
        now: i64,
    ) -> Result<(VerifiedToken, Arc<KeySet>), Refused> {
        let jws = jose::parse_jws(token)?;
        let claims = jws.claims.check()?;
        let tenant_id = claims.str(&self.opts.tenant_claim).ok_or(AuthError::TenantUnknown)?;
        let tenant = match expected {
            Some(t) if t.id != tenant_id => return Err(AuthError::TenantMismatch.into()),
            Some(t) => t,
            None => self.tenants.get(tenant_id).ok_or(AuthError::TenantUnknown)?,
        };
        let alg = jws.header.alg;
        if !tenant.algorithms.contains(&alg) {
            return Err(AuthError::AlgorithmNotAllowed.into());
        }
        let set = keys.get(&tenant.id, now).ok_or(AuthError::KeysUnavailable)?;
        let key = select_key(&set, jws.header.kid.as_deref(), alg).map_err(|error| Refused {
            refetch: (error == AuthError::KeyUnknown).then(|| Refetch::Signing(tenant.id.clone())),
            error,
        })?;
        if !key.verify(alg, jws.signing_input, &jws.signature) {
            return Err(AuthError::SignatureInvalid.into());
        }
        self.check_claims(&claims, tenant, now)?;
        let verified = VerifiedToken {
            tenant: tenant.clone(),
            alg: Some(alg),
            kid: jws.header.kid,
            encrypted: None,
            claims,
            identity: OnceLock::new(),
        };
        Ok((verified, set))
    }

    /// A compact JWE: the header's `kid` names the one tenant that can decrypt it; the
    /// payload must be a signed JWS of that same tenant (or, where the tenant allows
    /// it, bare claims naming that tenant).
    fn verify_jwe(&self, token: &str, keys: &KeyStore, dkeys: &DecryptionStore, now: i64) -> Result<Checked, Refused> {
        let any = self.jwe_any.as_ref().ok_or(AuthError::EncryptionUnsupported)?;
        let parsed = jwe::parse(token, any).map_err(jwe_refusal)?;
        let header = parsed.header();
        let tenant_id = match dkeys.owner(&header.kid) {
            Some(KidOwner::Tenant(t)) => t,
            Some(KidOwner::Ambiguous) => return Err(AuthError::KeyUnknown.into()),
            None => {
                let refetch = Some(Refetch::Decryption(header.kid.clone()));
                return Err(Refused { error: AuthError::KeyUnknown, refetch });
            }
        };
        let tenant = self.tenants.get(&*tenant_id).ok_or(AuthError::TenantUnknown)?;
        let settings = tenant.encryption.as_ref().ok_or(AuthError::EncryptionUnsupported)?;
        if !settings.allow.key_management.contains(&header.alg) || !settings.allow.content.contains(&header.enc) {
            return Err(AuthError::AlgorithmNotAllowed.into());
        }
        let dset = dkeys.get(&tenant.id, now).ok_or(AuthError::KeysUnavailable)?;
        let started = std::time::Instant::now();
        let decrypted = guard(|| jwe::decrypt_parsed(&parsed, &dset))?.map_err(jwe_refusal)?;
        if let Some(o) = &self.observer {
            o.decrypted(header.alg, started.elapsed().as_secs_f64());
        }
        let encrypted = Encrypted { alg: header.alg, enc: header.enc, kid: decrypted.kid.clone() };
        let nested = decrypted.cty.as_deref().is_some_and(|c| c.eq_ignore_ascii_case("JWT"));
        if nested {
            let inner = std::str::from_utf8(&decrypted.payload).map_err(|_| AuthError::NestedJwsRequired)?;
            if jose::classify(inner) != Ok(Compact::Jws) {
                return Err(AuthError::NestedJwsRequired.into());
            }
            let (mut verified, set) = self.verify_jws(inner, Some(tenant), keys, now)?;
            verified.encrypted = Some(encrypted);
            return Ok((verified, Some(set), Some(dset)));
        }
        if !settings.allow_bare_claims || !decrypted.payload.starts_with(b"{") {
            return Err(AuthError::NestedJwsRequired.into());
        }
        let claims = UncheckedClaims::parse(decrypted.payload.to_vec())
            .map_err(|_| AuthError::TokenMalformed("claims json"))?
            .check()?;
        if claims.str(&self.opts.tenant_claim) != Some(tenant.id.as_str()) {
            return Err(AuthError::TenantMismatch.into());
        }
        self.check_claims(&claims, tenant, now)?;
        let verified = VerifiedToken {
            tenant: tenant.clone(),
            alg: None,
            kid: None,
            encrypted: Some(encrypted),
            claims,
            identity: OnceLock::new(),
        };
        Ok((verified, None, Some(dset)))
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
