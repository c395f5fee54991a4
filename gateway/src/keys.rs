//! Fetching tenant keys from their sources (JWKS URLs, local JWKS or PEM files) into
//! the core's key store: on schedule (driven by `crate::background::key_refresh`), once
//! at start-up, and on demand after an unknown `kid`. JWE-enabled tenants' private decryption keys
//! come the same way from the sidecar's authenticated channel (or a local file) into
//! the decryption store. Every fetch is bounded: `keys.max_fetch_bytes` (checked on
//! `Content-Length`, then counted chunk by chunk, aborting as soon as it is passed)
//! and `keys.fetch_timeout` for the whole fetch, body included. The fetched bytes are
//! held in wiped memory and wiped after parsing.

mod source;

pub use source::{load_checked, KeySourceError};
use source::{parse_file, read_capped, CappedBody};

use crate::clock::now;
use crate::metrics::Metrics;
use gateway_core::config::Config;
use gateway_core::jwe::keys::DecryptionKeySet;
use gateway_core::jwe::store::DecryptionStore;
use gateway_core::keystore::{parse_max_age, KeyStore};
use gateway_core::tenant::{DecryptionSource, KeySource};
use gateway_core::KeySet;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use zeroize::Zeroizing;

/// Empties a tenant's signing and decryption keys at once (the sidecar deleted the
/// tenant): its tokens fail verification from now on, before any refresh. The empty
/// sets count as loaded, so readiness is unchanged; a later fetch (the tenant
/// created again) installs keys as usual.
pub fn drop_tenant_keys(engine: &gateway_core::Engine, tenant: &str, now: i64) {
    if !engine.config.tenants.iter().any(|t| t.id == tenant) {
        return;
    }
    engine.keys.install(tenant, KeySet::default(), now, None);
    if engine.dkeys.tenants().iter().any(|t| t == tenant) {
        engine.dkeys.install(tenant, DecryptionKeySet::default(), now, None);
    }
}

/// Signing or decryption keys: how logs name them, which counter counts their
/// fetches and which store keeps their refresh schedule.
struct Kind<'a, S> {
    what: &'static str,
    counter: &'a prometheus::IntCounterVec,
    store: &'a KeyStore<S>,
}

/// What a fetch reports about a parsed key set.
trait Fetched {
    /// Usable keys.
    fn keys(&self) -> usize;
    /// Why the others were skipped (never key material).
    fn skipped(&self) -> &[String];
}

impl Fetched for KeySet {
    fn keys(&self) -> usize {
        self.len()
    }
    fn skipped(&self) -> &[String] {
        &self.skipped
    }
}

impl Fetched for DecryptionKeySet {
    fn keys(&self) -> usize {
        self.len()
    }
    fn skipped(&self) -> &[String] {
        &self.skipped
    }
}

/// Loads tenant key sets and installs them in the store.
pub struct KeyFetcher {
    tenant_labels: bool,
    store: Arc<KeyStore>,
    sources: HashMap<String, KeySource>,
    dstore: Arc<DecryptionStore>,
    dsources: HashMap<String, DecryptionSource>,
    client: reqwest::Client,
    fetch_timeout: Duration,
    max_bytes: usize,
    metrics: Metrics,
}

impl KeyFetcher {
    /// A fetcher for every tenant of `config`.
    pub fn new(
        config: &Config,
        store: Arc<KeyStore>,
        dstore: Arc<DecryptionStore>,
        metrics: Metrics,
    ) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(config.keys.fetch_timeout)
            .connect_timeout(config.keys.fetch_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(0)
            .build()?;
        let sources = config.tenants.iter().map(|t| (t.id.clone(), t.keys.clone())).collect();
        let dsources = config
            .tenants
            .iter()
            .filter_map(|t| t.encryption.as_ref().map(|e| (t.id.clone(), e.keys.clone())))
            .collect();
        Ok(Self {
            tenant_labels: config.tenant_labels,
            store,
            sources,
            dstore,
            dsources,
            client,
            fetch_timeout: config.keys.fetch_timeout,
            max_bytes: config.keys.max_fetch_bytes,
            metrics,
        })
    }

    /// GETs a key set (with a bearer credential on the sidecar channel) within
    /// `keys.fetch_timeout` for the whole exchange and `keys.max_fetch_bytes`;
    /// returns the body (wiped when dropped) and its `max-age`.
    async fn get(&self, url: &str, bearer: Option<&str>) -> Result<(Zeroizing<Vec<u8>>, Option<i64>), KeySourceError> {
        tokio::time::timeout(self.fetch_timeout, self.download(url, bearer))
            .await
            .unwrap_or(Err(KeySourceError::Timeout(self.fetch_timeout)))
    }

    async fn download(
        &self,
        url: &str,
        bearer: Option<&str>,
    ) -> Result<(Zeroizing<Vec<u8>>, Option<i64>), KeySourceError> {
        let failed = |e| KeySourceError::transport(e, self.fetch_timeout);
        let mut req = self.client.get(url).header("accept", "application/json");
        if let Some(token) = bearer {
            req = req.bearer_auth(token);
        }
        let mut resp = req.send().await.map_err(failed)?;
        if !resp.status().is_success() {
            return Err(KeySourceError::Status(resp.status()));
        }
        let max_age = resp.headers().get("cache-control").and_then(|v| v.to_str().ok()).and_then(parse_max_age);
        if resp.content_length().is_some_and(|l| l > self.max_bytes as u64) {
            return Err(KeySourceError::TooLarge { limit: self.max_bytes });
        }
        let mut body = CappedBody::new(self.max_bytes, resp.content_length());
        while let Some(chunk) = resp.chunk().await.map_err(failed)? {
            // On `TooLarge` the response is dropped here: the connection closes and
            // nothing more is read.
            body.push(chunk)?;
        }
        // The connection goes first (no idle pooling), so the chunks can be wiped.
        drop(resp);
        Ok((body.into_inner(), max_age))
    }

    async fn read_file(&self, path: &str) -> Result<Zeroizing<Vec<u8>>, KeySourceError> {
        let (path, limit) = (path.to_owned(), self.max_bytes);
        tokio::task::spawn_blocking(move || read_capped(&path, limit))
            .await
            .map_err(|e| KeySourceError::Transport(e.to_string()))?
    }

    async fn load(&self, source: &KeySource) -> Result<(KeySet, Option<i64>), KeySourceError> {
        let invalid = |e: gateway_core::KeyError| KeySourceError::Invalid(e.to_string());
        match source {
            KeySource::Url(url) => {
                let (body, max_age) = self.get(url, None).await?;
                Ok((KeySet::from_jwks(&body).map_err(invalid)?, max_age))
            }
            KeySource::File { path, kid } => {
                let bytes = self.read_file(path).await?;
                let set = parse_file(&bytes, kid.as_deref())
                    .map_err(|e| KeySourceError::File { path: path.clone(), error: e.to_string() })?;
                Ok((set, None))
            }
        }
    }

    async fn load_decryption(
        &self,
        source: &DecryptionSource,
    ) -> Result<(DecryptionKeySet, Option<i64>), KeySourceError> {
        let (body, max_age) = match source {
            DecryptionSource::Url { url, token } => {
                let token =
                    crate::credential::read(token).map_err(|_| KeySourceError::Credential(token.to_string()))?;
                self.get(url, Some(&token)).await?
            }
            DecryptionSource::File(path) => (self.read_file(path).await?, None),
        };
        Ok((DecryptionKeySet::from_jwks(&body).map_err(KeySourceError::Invalid)?, max_age))
    }

    /// Fetches one tenant's decryption keys and installs them; on failure the old keys stay.
    pub async fn refresh_decryption(&self, tenant: &str, trigger: &'static str) -> anyhow::Result<()> {
        let source = self.dsources.get(tenant).ok_or_else(|| anyhow::anyhow!("tenant has no encryption"))?;
        let outcome = self.load_decryption(source).await;
        let kind =
            Kind { what: "decryption", counter: &self.metrics.decryption_key_fetches, store: self.dstore.store() };
        self.settle(tenant, trigger, kind, outcome, |set, now, max_age| self.dstore.install(tenant, set, now, max_age))
    }

    /// A JWE named a `kid` no tenant holds: refetch, concurrently, the tenants the
    /// `kid` names (`<tenant>-...`, else every JWE tenant) whose unknown-`kid` cooldown
    /// allows it (or wait for its fetch in flight). Returns whether any tenant's keys
    /// may have changed.
    pub async fn refetch_unknown_decryption_kid(&self, kid: &str) -> bool {
        let now = now();
        let fetches = self.dstore.candidates(kid).into_iter().map(|tenant| async move {
            match self.dstore.store().try_refetch(tenant, now) {
                Some(_slot) => self.refresh_decryption(tenant, "unknown_kid").await.is_ok(),
                None => self.wait_for_fetch(self.dstore.store(), tenant).await,
            }
        });
        futures_util::future::join_all(fetches).await.into_iter().any(|ok| ok)
    }

    fn label<'a>(&self, tenant: &'a str) -> &'a str {
        if self.tenant_labels {
            tenant
        } else {
            "all"
        }
    }

    /// Fetches one tenant's keys and installs them; on failure the old keys stay.
    pub async fn refresh(&self, tenant: &str, trigger: &'static str) -> anyhow::Result<()> {
        let source = self.sources.get(tenant).ok_or_else(|| anyhow::anyhow!("unknown tenant"))?;
        let outcome = self.load(source).await;
        let kind = Kind { what: "signing", counter: &self.metrics.key_fetches, store: &self.store };
        self.settle(tenant, trigger, kind, outcome, |set, now, max_age| self.store.install(tenant, set, now, max_age))
    }

    /// Installs a fetched key set (`install`), or records the failure and keeps the
    /// last good keys: a set without one usable key counts as a failure (`empty`).
    /// Counts the outcome and logs it, never with key material.
    fn settle<T: Fetched, S>(
        &self,
        tenant: &str,
        trigger: &'static str,
        kind: Kind<'_, S>,
        outcome: Result<(T, Option<i64>), KeySourceError>,
        install: impl FnOnce(T, i64, Option<i64>),
    ) -> anyhow::Result<()> {
        let count = |result: &str| kind.counter.with_label_values(&[self.label(tenant), trigger, result]).inc();
        let what = kind.what;
        let error = match outcome {
            Ok((set, _)) if set.keys() == 0 => {
                count("empty");
                anyhow::anyhow!("no usable {what} key ({} skipped)", set.skipped().len())
            }
            Ok((set, max_age)) => {
                for why in set.skipped() {
                    tracing::debug!(tenant, why, what, "key skipped");
                }
                let keys = set.keys();
                install(set, now(), max_age);
                count("ok");
                tracing::info!(tenant, trigger, keys, what, "tenant keys loaded");
                return Ok(());
            }
            Err(e) => {
                count(e.label());
                e.into()
            }
        };
        kind.store.record_failure(tenant, now());
        tracing::warn!(tenant, trigger, what, error = %error, "tenant key fetch failed; keeping last good keys");
        Err(error)
    }

    /// Unknown-`kid` refetch: at most one per tenant at a time and per cooldown. A
    /// request that finds a fetch already in flight (scheduled, or another request's)
    /// waits for it rather than being refused with keys about to arrive. Returns
    /// whether the keys may have changed.
    pub async fn refetch_unknown_kid(&self, tenant: &str) -> bool {
        match self.store.try_refetch(tenant, now()) {
            Some(_slot) => self.refresh(tenant, "unknown_kid").await.is_ok(),
            None => self.wait_for_fetch(&self.store, tenant).await,
        }
    }

    /// Waits (bounded by the fetch timeout) while a fetch of `tenant` is in flight in
    /// `store`; returns whether there was one.
    async fn wait_for_fetch<S>(&self, store: &KeyStore<S>, tenant: &str) -> bool {
        if !store.fetching(tenant) {
            return false;
        }
        let deadline = tokio::time::Instant::now() + self.fetch_timeout;
        while store.fetching(tenant) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }

    /// Loads every tenant once (signing and decryption keys); returns the tenants that
    /// failed, with why.
    pub async fn load_all(&self) -> Vec<(String, String)> {
        let mut failed = Vec::new();
        for tenant in self.sources.keys() {
            if let Err(e) = self.refresh(tenant, "startup").await {
                failed.push((tenant.clone(), e.to_string()));
            }
        }
        for tenant in self.dsources.keys() {
            if let Err(e) = self.refresh_decryption(tenant, "startup").await {
                failed.push((tenant.clone(), format!("decryption keys: {e}")));
            }
        }
        failed
    }

    /// When the next scheduled refresh of any tenant's signing or decryption keys is
    /// due (seconds), if any is scheduled.
    pub fn next_due(&self) -> Option<i64> {
        [self.store.next_due(), self.dstore.store().next_due()].into_iter().flatten().min()
    }

    /// Refreshes every tenant whose schedule is due.
    pub async fn tick(&self) {
        let now = now();
        for tenant in self.store.due(now) {
            if let Some(_slot) = self.store.try_scheduled(&tenant) {
                let _ = self.refresh(&tenant, "scheduled").await;
            }
        }
        for tenant in self.dstore.store().due(now) {
            if let Some(_slot) = self.dstore.store().try_scheduled(&tenant) {
                let _ = self.refresh_decryption(&tenant, "scheduled").await;
            }
        }
        // Per tenant, or (for large tenant counts) the oldest key set under "all".
        let ages = self.sources.keys().filter_map(|t| self.store.age(t, now).map(|a| (t.as_str(), a)));
        if self.tenant_labels {
            for (tenant, age) in ages {
                self.metrics.key_age.with_label_values(&[tenant]).set(age);
            }
        } else if let Some(oldest) = ages.map(|(_, a)| a).max() {
            self.metrics.key_age.with_label_values(&["all"]).set(oldest);
        }
    }
}
