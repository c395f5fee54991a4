//! The per-request decision, free of any proxy framework: route lookup, bearer
//! extraction, the route's encryption requirement, verification (decrypting a JWE
//! first), revocation, policy, the header plan and finally the one-time check, in
//! that order (so a refused request never uses up a one-time token). The Pingora glue
//! calls [`Engine::authenticate`] once per request: it runs [`Engine::decide`] and,
//! when the keys lack the token's `kid`, has a [`KeyFetch`] refetch them and decides
//! again (as Envoy's `jwt_authn` authenticator asks its JWKS fetcher). On a one-time
//! route it gets a [`OneTime`], which only [`Engine::admit`] (the replay store's
//! possibly remote check) turns into an [`Allowed`].
//!
//! ```ignore
//! match engine.authenticate(method, path, &authorization, clock::now, &fetcher).await? {
//!     Decision::Allowed(allowed) => forward(allowed),
//!     Decision::OneTime(once) => forward(engine.admit(once, clock::now()).await?),
//! }
//! ```

use crate::config::Config;
use crate::error::{AuthError, Denial};
use crate::header::{self, HeaderPlan};
use crate::jose::{self, Compact};
use crate::jwe::store::DecryptionStore;
use crate::keystore::KeyStore;
use crate::policy::{self, Permit};
use crate::replay::{FirstUse, MemoryReplayStore, OneTimeId, ReplayStore};
use crate::revocation::Revocations;
use crate::route::{NoMatch, Route};
use crate::verify::{Identity, Observer, Refetch, VerifiedToken, Verifier};
use std::future::Future;
use std::sync::Arc;

/// Fetches keys a token named that the stores lacked: the gateway's key fetcher, or a
/// test's fake. Generic (no boxing per request), as Envoy's authenticator takes its
/// JWKS fetcher.
pub trait KeyFetch {
    /// Refetches the keys `want` names (within the source's cooldown, or waits for a
    /// fetch in flight); resolves to whether any keys may have changed.
    fn refetch(&self, want: &Refetch) -> impl Future<Output = bool> + Send;
}

/// A request that may be forwarded.
#[derive(Debug)]
pub struct Allowed {
    /// Evidence of the checks passed.
    pub permit: Permit,
    /// Header edits for the upstream request.
    pub headers: HeaderPlan,
}

/// What [`Engine::decide`] concluded for a request that passed every check.
#[derive(Debug)]
pub enum Decision {
    /// Forward it.
    Allowed(Allowed),
    /// Forward it once its one-time id is recorded: see [`Engine::admit`].
    OneTime(OneTime),
}

impl Decision {
    /// The verified token (none on a public route).
    pub fn token(&self) -> Option<&Arc<VerifiedToken>> {
        match self {
            Decision::Allowed(a) => a.permit.token(),
            Decision::OneTime(o) => Some(&o.token),
        }
    }

    /// The matched route.
    pub fn route(&self) -> &Arc<Route> {
        match self {
            Decision::Allowed(a) => &a.permit.route().route,
            Decision::OneTime(o) => &o.allowed.permit.route().route,
        }
    }
}

/// A request on a one-time route that passed every other check. Its [`Allowed`] is
/// only reachable through [`Engine::admit`], so no caller can skip the replay check.
#[derive(Debug)]
pub struct OneTime {
    allowed: Allowed,
    id: OneTimeId,
    token: Arc<VerifiedToken>,
}

impl OneTime {
    /// The id the replay store records.
    pub fn id(&self) -> &OneTimeId {
        &self.id
    }
}

/// A request the gateway answers itself.
#[derive(Debug)]
pub struct Refusal {
    /// Why.
    pub denial: Denial,
    /// The matched route, if any (for logs and metrics).
    pub route: Option<Arc<Route>>,
    /// Set when the keys lack the token's `kid`: a refetch may help.
    pub refetch: Option<Refetch>,
    /// The verified token, when the refusal came after verification (policy, lifetime).
    pub token: Option<Arc<VerifiedToken>>,
}

/// Everything a request decision needs, built once from a config.
#[derive(Debug)]
pub struct Engine {
    /// The validated config (routes, upstreams, settings).
    pub config: Config,
    /// Token verifier.
    pub verifier: Verifier,
    /// Key cache shared with the refresher.
    pub keys: Arc<KeyStore>,
    /// Decryption-key cache of JWE-enabled tenants, shared with the refresher.
    pub dkeys: Arc<DecryptionStore>,
    /// Revocation state, shared across config reloads.
    pub revocations: Arc<Revocations>,
    /// Used one-time token ids, shared across config reloads.
    pub replay: Arc<dyn ReplayStore>,
    /// The headers removed from every upstream request (made once).
    removals: Arc<[String]>,
    /// The empty identity of public routes (made once).
    no_identity: Identity,
}

/// State that outlives one config: kept by the caller and handed to each new engine.
#[derive(Debug, Clone)]
pub struct Shared {
    /// Revocations.
    pub revocations: Arc<Revocations>,
    /// Used one-time token ids.
    pub replay: Arc<dyn ReplayStore>,
    /// Decryption latency observer.
    pub observer: Option<Arc<dyn Observer>>,
}

impl Shared {
    /// Fresh state sized for `config`.
    pub fn new(config: &Config) -> Self {
        Self {
            revocations: Arc::default(),
            replay: Arc::new(MemoryReplayStore::new(config.replay_cache_size)),
            observer: None,
        }
    }
}

/// Extracts the token from `Authorization` values: exactly one header, scheme
/// `Bearer` in any case, one or more spaces, a non-empty token of visible ASCII
/// (the one parser, [`medgate_channel::bearer::token`]).
pub fn bearer<'a>(values: &[&'a [u8]]) -> Result<&'a str, AuthError> {
    medgate_channel::bearer::token(values.iter().copied()).map_err(|e| match e {
        medgate_channel::BearerError::Missing => AuthError::TokenMissing,
        medgate_channel::BearerError::Malformed(what) => AuthError::TokenMalformed(what),
    })
}

impl Engine {
    /// Builds an engine; the key stores start empty and are filled by the refresher.
    pub fn new(config: Config) -> Self {
        let shared = Shared::new(&config);
        Self::with_shared(config, shared)
    }

    /// Builds an engine that consults (and keeps) existing revocation and replay state.
    pub fn with_shared(config: Config, shared: Shared) -> Self {
        let keys = Arc::new(KeyStore::new(config.tenants.iter().map(|t| t.id.as_str()), config.keys.refresh));
        let jwe_tenants = config.tenants.iter().filter(|t| t.encryption.is_some()).map(|t| t.id.as_str());
        let dkeys = Arc::new(DecryptionStore::new(jwe_tenants, config.keys.refresh));
        let verifier = Verifier::new(config.verify.clone(), config.tenants.clone(), config.token_cache_size)
            .with_observer(shared.observer);
        let removals = header::removals(&config.headers, config.forward_authorization);
        Self {
            config,
            verifier,
            keys,
            dkeys,
            revocations: shared.revocations,
            replay: shared.replay,
            removals,
            no_identity: Arc::new([]),
        }
    }

    /// The id a one-time token is recorded under: `(tenant, issuer, jti)` until `exp`
    /// plus leeway (as long as the token itself could pass).
    fn one_time_id(&self, token: &VerifiedToken) -> Result<OneTimeId, AuthError> {
        let claims = token.claims();
        let jti = claims.str("jti").ok_or_else(|| AuthError::ClaimMissing("jti".into()))?;
        let exp = claims.exp().ok_or_else(|| AuthError::ClaimMissing("exp".into()))?;
        let tenant = token.tenant();
        Ok(OneTimeId {
            tenant: tenant.id.clone(),
            issuer: tenant.issuer.clone(),
            jti: jti.to_owned(),
            until: exp.saturating_add(self.config.verify.leeway),
        })
    }

    /// Records a one-time request's id in the replay store (which may be remote) and
    /// allows it the first time; a second use is `token_replayed`, a full or
    /// unreachable store a 503 (fails closed).
    pub async fn admit(&self, once: OneTime, now: i64) -> Result<Allowed, Refusal> {
        let error = match self.replay.first_use(&once.id, now).await {
            FirstUse::Yes => return Ok(once.allowed),
            FirstUse::Replayed => AuthError::TokenReplayed,
            FirstUse::Full => AuthError::ReplayStoreFull,
            FirstUse::Unavailable => AuthError::ReplayStoreUnavailable,
        };
        let route = once.allowed.permit.route().route.clone();
        Err(Refusal { denial: error.into(), route: Some(route), refetch: None, token: Some(once.token) })
    }

    /// Decides one request, refetching keys the token names that the stores lack:
    /// each kind of key (a nested JWE's decryption key, then its signing key, both
    /// rotated at once) gets at most one refetch, then the request is decided again
    /// at a fresh `clock()`. A panic inside (a library bug reached by hostile input)
    /// is a `token_malformed` refusal, never a dropped connection.
    pub async fn authenticate<C, F>(
        &self,
        method: &str,
        path: &str,
        authorization: &[&[u8]],
        clock: C,
        keys: &F,
    ) -> Result<Decision, Refusal>
    where
        C: Fn() -> i64 + Send + Sync,
        F: KeyFetch,
    {
        let mut outcome = self.decide_guarded(method, path, authorization, clock());
        let mut done: Vec<Refetch> = Vec::new();
        while let Err(Refusal { refetch: Some(want), .. }) = &outcome {
            if done.contains(want) || !keys.refetch(want).await {
                break;
            }
            done.push(want.clone());
            outcome = self.decide_guarded(method, path, authorization, clock());
        }
        outcome
    }

    /// [`Engine::decide`], with any panic turned into a refusal. Decryption is guarded
    /// inside already; this is the second line.
    fn decide_guarded(&self, method: &str, path: &str, authorization: &[&[u8]], now: i64) -> Result<Decision, Refusal> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.decide(method, path, authorization, now)))
            .unwrap_or_else(|_| {
                tracing::error!("panic while deciding a request; refused as token_malformed");
                Err(Refusal {
                    denial: AuthError::TokenMalformed("unprocessable").into(),
                    route: None,
                    refetch: None,
                    token: None,
                })
            })
    }

    /// Decides one request at time `now` (seconds since the epoch).
    pub fn decide(&self, method: &str, path: &str, authorization: &[&[u8]], now: i64) -> Result<Decision, Refusal> {
        let refuse = |denial: Denial, route: Option<Arc<Route>>| Refusal { denial, route, refetch: None, token: None };
        let matched = self.config.router.find(method, path).map_err(|e| {
            refuse(
                match e {
                    NoMatch::NotFound | NoMatch::BadPath => Denial::NoRoute,
                    NoMatch::Method => Denial::MethodNotAllowed,
                },
                None,
            )
        })?;
        let route = matched.route.clone();
        if route.public {
            let headers = HeaderPlan { remove: self.removals.clone(), set: self.no_identity.clone() };
            return Ok(Decision::Allowed(Allowed { permit: policy::permit_public(matched), headers }));
        }
        let token = bearer(authorization).map_err(|e| refuse(e.into(), Some(route.clone())))?;
        if route.require_encrypted && jose::classify(token) == Ok(Compact::Jws) {
            return Err(refuse(AuthError::EncryptionRequired.into(), Some(route)));
        }
        let verified = self.verifier.verify(token, &self.keys, &self.dkeys, now).map_err(|r| Refusal {
            denial: r.error.into(),
            route: Some(route.clone()),
            refetch: r.refetch,
            token: None,
        })?;
        let unsynced = self.config.revocation.as_ref().is_some_and(|r| r.require_sync) && !self.revocations.synced();
        if let Err(e) =
            if unsynced { Err(AuthError::RevocationsUnavailable) } else { self.revocations.check(&verified) }
        {
            return Err(Refusal { token: Some(verified), ..refuse(e.into(), Some(route)) });
        }
        let permit = policy::authorize(matched, verified.clone(), method, &self.config.role_claim)
            .map_err(|d| Refusal { token: Some(verified.clone()), ..refuse(d, Some(route.clone())) })?;
        let set = verified
            .identity_with(|t| header::identity(&self.config.headers, t))
            .map_err(|e| Refusal { token: Some(verified.clone()), ..refuse(e.into(), Some(route.clone())) })?;
        let headers = HeaderPlan { remove: self.removals.clone(), set };
        let allowed = Allowed { permit, headers };
        if !route.one_time {
            return Ok(Decision::Allowed(allowed));
        }
        match self.one_time_id(&verified) {
            Ok(id) => Ok(Decision::OneTime(OneTime { allowed, id, token: verified })),
            Err(e) => Err(Refusal { token: Some(verified), ..refuse(e.into(), Some(route)) }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_extraction() {
        assert_eq!(bearer(&[b"Bearer abc.def.ghi"]), Ok("abc.def.ghi"));
        assert_eq!(bearer(&[b"bearer   abc"]), Ok("abc"));
        assert_eq!(bearer(&[b"BEARER abc"]), Ok("abc"));
        assert_eq!(bearer(&[]), Err(AuthError::TokenMissing));
        assert_eq!(bearer(&[b"Basic dXNlcjpwYXNz"]), Err(AuthError::TokenMissing));
        assert_eq!(bearer(&[b"Bearer "]), Err(AuthError::TokenMissing));
        assert_eq!(bearer(&[b"Bearer"]), Err(AuthError::TokenMissing));
        assert!(matches!(bearer(&[b"Bearer a", b"Bearer b"]), Err(AuthError::TokenMalformed(_))));
        assert!(matches!(bearer(&[b"Bearer a\x01b"]), Err(AuthError::TokenMalformed(_))));
        assert!(matches!(bearer(&[b"Bearer a b"]), Err(AuthError::TokenMalformed(_))));
    }
}
