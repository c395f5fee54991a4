//! Fetching tenant keys from their sources (JWKS URLs, local JWKS or PEM files) into
//! the core's key store, on schedule in a Pingora background service, once at start-up,
//! and on demand after an unknown `kid`. JWE-enabled tenants' private decryption keys
//! come the same way from the sidecar's authenticated channel (or a local file) into
//! the decryption store; the fetched bytes are wiped after parsing.

use crate::metrics::Metrics;
use crate::revocation::read_token;
use crate::runtime::SharedRuntime;
use async_trait::async_trait;
use gateway_core::config::Config;
use gateway_core::jwe::keys::DecryptionKeySet;
use gateway_core::jwe::store::DecryptionStore;
use gateway_core::keystore::{parse_max_age, KeyStore};
use gateway_core::tenant::{DecryptionSource, KeySource};
use gateway_core::KeySet;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use zeroize::Zeroizing;

/// Seconds since the epoch: the only wall-clock read, handed to the core.
pub fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

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

/// Largest JWKS document accepted from a source.
const MAX_JWKS_BYTES: usize = 1 << 20;

/// Parses a local key file: JWKS when it looks like JSON, PEM otherwise.
fn parse_file(bytes: &[u8], kid: Option<&str>) -> Result<KeySet, gateway_core::KeyError> {
    if bytes.trim_ascii_start().starts_with(b"{") {
        KeySet::from_jwks(bytes)
    } else {
        KeySet::from_pem(bytes, kid)
    }
}

/// Loads every file key source now (check mode), returning `field path: problem` lines.
pub fn check_files(config: &Config) -> Vec<String> {
    let mut out = Vec::new();
    for t in &config.tenants {
        if let KeySource::File { path, kid } = &t.keys {
            let field = format!("tenants.{}.keys.file", t.id);
            match std::fs::read(path) {
                Err(e) => out.push(format!("{field}: {path}: {e}")),
                Ok(bytes) => match parse_file(&bytes, kid.as_deref()) {
                    Err(e) => out.push(format!("{field}: {path}: {e}")),
                    Ok(set) if set.is_empty() => out.push(format!("{field}: {path}: no usable signing key")),
                    Ok(_) => {}
                },
            }
        }
        if let Some(DecryptionSource::File(path)) = t.encryption.as_ref().map(|e| &e.keys) {
            let field = format!("tenants.{}.encryption.keys.file", t.id);
            match std::fs::read(path).map(Zeroizing::new) {
                Err(e) => out.push(format!("{field}: {path}: {e}")),
                Ok(bytes) => match DecryptionKeySet::from_jwks(&bytes) {
                    Err(e) => out.push(format!("{field}: {path}: {e}")),
                    Ok(set) if set.is_empty() => out.push(format!("{field}: {path}: no usable decryption key")),
                    Ok(_) => {}
                },
            }
        }
    }
    out
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
        let fetch_timeout = config.keys.fetch_timeout;
        Ok(Self {
            tenant_labels: config.tenant_labels,
            store,
            sources,
            dstore,
            dsources,
            client,
            fetch_timeout,
            metrics,
        })
    }

    /// GETs a JWKS document (with a bearer credential on the sidecar channel), bounded
    /// in size; returns the body (wiped when dropped) and its `max-age`.
    async fn get(&self, url: &str, bearer: Option<&str>) -> anyhow::Result<(Zeroizing<Vec<u8>>, Option<i64>)> {
        let mut req = self.client.get(url).header("accept", "application/json");
        if let Some(token) = bearer {
            req = req.bearer_auth(token);
        }
        let resp = req.send().await?;
        if !resp.status().is_success() {
            anyhow::bail!("HTTP {}", resp.status());
        }
        let max_age = resp.headers().get("cache-control").and_then(|v| v.to_str().ok()).and_then(parse_max_age);
        if resp.content_length().is_some_and(|l| l as usize > MAX_JWKS_BYTES) {
            anyhow::bail!("JWKS larger than {MAX_JWKS_BYTES} bytes");
        }
        let body = Zeroizing::new(resp.bytes().await?.to_vec());
        if body.len() > MAX_JWKS_BYTES {
            anyhow::bail!("JWKS larger than {MAX_JWKS_BYTES} bytes");
        }
        Ok((body, max_age))
    }

    async fn load(&self, source: &KeySource) -> anyhow::Result<(KeySet, Option<i64>)> {
        match source {
            KeySource::Url(url) => {
                let (body, max_age) = self.get(url, None).await?;
                Ok((KeySet::from_jwks(&body)?, max_age))
            }
            KeySource::File { path, kid } => {
                let bytes = tokio::fs::read(path).await.map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
                let set = parse_file(&bytes, kid.as_deref()).map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
                Ok((set, None))
            }
        }
    }

    async fn load_decryption(&self, source: &DecryptionSource) -> anyhow::Result<(DecryptionKeySet, Option<i64>)> {
        let (body, max_age) = match source {
            DecryptionSource::Url { url, token } => {
                let token = read_token(token).ok_or_else(|| anyhow::anyhow!("channel credential not available"))?;
                self.get(url, Some(&token)).await?
            }
            DecryptionSource::File(path) => {
                (Zeroizing::new(tokio::fs::read(path).await.map_err(|e| anyhow::anyhow!("{path}: {e}"))?), None)
            }
        };
        Ok((DecryptionKeySet::from_jwks(&body).map_err(|e| anyhow::anyhow!("{e}"))?, max_age))
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
        outcome: anyhow::Result<(T, Option<i64>)>,
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
                count("error");
                e
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

/// The "jwks refresh" background service, always driving the current runtime's fetcher.
pub struct KeyRefresher(pub SharedRuntime);

#[async_trait]
impl BackgroundService for KeyRefresher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            let fetcher = self.0.load().fetcher.clone();
            fetcher.tick().await;
            let due = [fetcher.store.next_due(), fetcher.dstore.store().next_due()].into_iter().flatten().min();
            let wait = due.map_or(1, |due| (due - now()).clamp(1, 5)) as u64;
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(Duration::from_secs(wait)) => {}
            }
        }
    }
}
