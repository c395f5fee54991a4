//! The "tenant discovery" background service: polls the sidecar's tenant list
//! (`tenant_discovery.url`, `GET /internal/v1/tenants` with the gateway channel
//! credential and `If-None-Match`) and, when it changed, rebuilds the runtime from the
//! config in force plus the listed tenants through the reload path
//! ([`Reloader::rediscover`]): cached keys of unchanged tenants are kept, the keys of
//! new ones are loaded before the swap, and a YAML tenant of the same id wins. A
//! tenant created on the sidecar is so accepted within one interval, and one deleted
//! refused (its keys are dropped at once by the revocation feed's deletion event).
//!
//! When the list cannot be read the last one stays in force; it is counted
//! (`gateway_tenant_discovery_total{result="error"}`) and logged.

use crate::background::reload::Reloader;
use crate::metrics::Metrics;
use async_trait::async_trait;
use gateway_core::config::discovery::DiscoverySettings;
use medgate_channel::tenant::TenantList;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use prometheus::{IntCounterVec, IntGauge, Opts};
use std::sync::Arc;
use std::time::Duration;

/// Largest tenant list accepted, in bytes.
const MAX_LIST_BYTES: usize = 16 << 20;
/// Time cap on one poll.
const POLL_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a config without `tenant_discovery` is looked at again (a reload may add it).
const IDLE: Duration = Duration::from_secs(1);

/// What one poll found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// A new list, applied.
    Changed,
    /// The list applied already.
    Unchanged,
    /// The list could not be read or applied; the last one stays.
    Error,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Changed => "changed",
            Outcome::Unchanged => "unchanged",
            Outcome::Error => "error",
        }
    }
}

/// The tenant discovery service.
pub struct Discovery {
    reloader: Arc<Reloader>,
    client: reqwest::Client,
    /// Polls by result: `changed`, `unchanged`, `error`.
    polls: IntCounterVec,
    /// Tenants in the last list applied.
    tenants: IntGauge,
}

impl Discovery {
    /// A discovery service rebuilding through `reloader`; its metrics are registered
    /// into `metrics.registry`.
    pub fn new(reloader: Arc<Reloader>, metrics: &Metrics) -> anyhow::Result<Discovery> {
        let polls = IntCounterVec::new(
            Opts::new("gateway_tenant_discovery_total", "Tenant list polls by result (changed, unchanged, error)."),
            &["result"],
        )?;
        let tenants = IntGauge::new("gateway_discovered_tenants", "Tenants in the last tenant list applied.")?;
        metrics.registry.register(Box::new(polls.clone()))?;
        metrics.registry.register(Box::new(tenants.clone()))?;
        let client = reqwest::Client::builder().timeout(POLL_TIMEOUT).build()?;
        Ok(Discovery { reloader, client, polls, tenants })
    }

    /// One poll; `applied` is the version in force, updated when a new list is.
    async fn poll(&self, s: &DiscoverySettings, applied: &mut Option<String>) -> Outcome {
        match self.fetch(s, applied.as_deref()).await {
            Ok(None) => Outcome::Unchanged,
            Ok(Some(list)) if applied.as_deref() == Some(list.version.as_str()) => Outcome::Unchanged,
            Ok(Some(list)) => {
                let (version, count) = (list.version.clone(), list.tenants.len());
                match self.reloader.rediscover(list.tenants).await {
                    Ok(()) => {
                        tracing::info!(tenants = count, version, "tenant list applied");
                        self.tenants.set(count as i64);
                        *applied = Some(version);
                        Outcome::Changed
                    }
                    Err(e) => {
                        tracing::error!(errors = %e, "tenant list not applied; the previous tenants stay in force");
                        Outcome::Error
                    }
                }
            }
            Err(e) => {
                tracing::warn!(url = %s.url, error = %e, "tenant discovery unavailable; the last tenant list stays in force");
                Outcome::Error
            }
        }
    }

    /// The list, or `None` when it is still `applied` (304).
    async fn fetch(&self, s: &DiscoverySettings, applied: Option<&str>) -> Result<Option<TenantList>, String> {
        let token = crate::credential::read(&s.token)
            .map_err(|_| "the channel credential (token_env or token_file) cannot be read")?;
        let mut req = self.client.get(&s.url).bearer_auth(token.as_str());
        if let Some(v) = applied {
            req = req.header(reqwest::header::IF_NONE_MATCH, format!("\"{v}\""));
        }
        let resp = req.send().await.map_err(|e| format!("request failed: {}", e.without_url()))?;
        match resp.status().as_u16() {
            304 => return Ok(None),
            200 => {}
            other => return Err(format!("answered {other}")),
        }
        if resp.content_length().is_some_and(|n| n > MAX_LIST_BYTES as u64) {
            return Err(format!("the list is larger than {MAX_LIST_BYTES} bytes"));
        }
        let body = resp.bytes().await.map_err(|e| format!("reading the list: {}", e.without_url()))?;
        if body.len() > MAX_LIST_BYTES {
            return Err(format!("the list is larger than {MAX_LIST_BYTES} bytes"));
        }
        serde_json::from_slice(&body).map(Some).map_err(|e| format!("the list does not parse: {e}"))
    }
}

#[async_trait]
impl BackgroundService for Discovery {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut applied: Option<String> = None;
        loop {
            let settings = self.reloader.rt.load().engine.config.tenant_discovery.clone();
            let wait = match settings {
                Some(s) => {
                    let outcome = self.poll(&s, &mut applied).await;
                    self.polls.with_label_values(&[outcome.label()]).inc();
                    s.interval
                }
                None => {
                    // Off (or turned off by a reload): a later config re-reads the list.
                    applied = None;
                    self.tenants.set(0);
                    IDLE
                }
            };
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}
