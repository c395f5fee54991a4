//! Config hot reload: on SIGHUP the YAML file is re-read and validated exactly as
//! `--check` does (every field, then every key file it names); a valid config becomes
//! a new runtime swapped in atomically (in-flight requests finish on the runtime they
//! started with). An invalid one is refused, logged with every field error, counted,
//! and the old config stays in force; so is one whose new key source leaves a tenant
//! that had keys without any.
//!
//! Tenant discovery rebuilds through the same path: [`Reloader::rediscover`] applies
//! the config text in force (not an unsignalled edit of the file) plus a new tenant
//! list, and every reload re-applies the last list discovered.

use crate::metrics::Metrics;
use crate::runtime::{Runtime, SharedRuntime};
use async_trait::async_trait;
use gateway_core::config::discovery::{self, ListedTenant};
use gateway_core::Config;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::signal::unix::{signal, SignalKind};

/// The "config reload" background service.
pub struct Reloader {
    /// Config file to re-read.
    pub path: PathBuf,
    /// Runtime to swap.
    pub rt: SharedRuntime,
    /// Metrics.
    pub metrics: Metrics,
    /// The last tenant list discovered, added to every config applied.
    discovered: std::sync::Mutex<Arc<Vec<ListedTenant>>>,
    /// The config text in force; held while a new runtime is built, so a reload and
    /// a discovery never build at once.
    applied: tokio::sync::Mutex<String>,
}

/// The "config reload" background service: a reload on each SIGHUP.
pub struct OnHangup(pub Arc<Reloader>);

impl Reloader {
    /// A reloader of the config at `path`, whose current text is the one in force.
    pub fn new(path: PathBuf, rt: SharedRuntime, metrics: Metrics) -> Reloader {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        Reloader { path, rt, metrics, discovered: Default::default(), applied: tokio::sync::Mutex::new(text) }
    }

    /// Reloads once; `Err` holds every problem, and the old runtime is kept.
    pub async fn reload(&self) -> Result<(), String> {
        let mut applied = self.applied.lock().await;
        let text = std::fs::read_to_string(&self.path).map_err(|e| format!("{}: {e}", self.path.display()))?;
        let config = crate::keys::load_checked(&self.path)?;
        self.apply(config).await?;
        *applied = text;
        Ok(())
    }

    /// Rebuilds the runtime from the config in force with `listed` as the discovered
    /// tenants; `Err` holds every problem, and the old runtime is kept.
    pub async fn rediscover(&self, listed: Vec<ListedTenant>) -> Result<(), String> {
        let applied = self.applied.lock().await;
        *self.discovered.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(listed);
        let config = Config::from_yaml(&applied).map_err(|e| e.to_string())?;
        self.apply(config).await
    }

    /// Builds a runtime from `config` (plus the discovered tenants, YAML ones winning),
    /// loads the keys of tenants new to it, and swaps it in.
    async fn apply(&self, mut config: Config) -> Result<(), String> {
        if let Some(settings) = &config.tenant_discovery {
            let listed = self.discovered.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let merged = discovery::merge(&mut config.tenants, &listed, settings);
            if !merged.overridden.is_empty() {
                let ids = merged.overridden.join(", ");
                tracing::info!(tenants = %ids, "discovered tenants also in the config file: the file's settings win");
            }
            for why in merged.left_out {
                tracing::warn!(problem = %why, "a discovered tenant is left out");
            }
            for (route, tenant) in config.unknown_route_tenants() {
                tracing::warn!(
                    route,
                    tenant,
                    "a route names a tenant neither the config file nor the sidecar's list has: its tokens cannot exist, the route refuses every other tenant (forbidden_tenant)"
                );
            }
        }
        let old = self.rt.load_full();
        let fixed = &old.engine.config;
        if config.listen != fixed.listen || config.admin_listen != fixed.admin_listen || config.threads != fixed.threads
        {
            tracing::warn!("listen, admin_listen and threads change only on restart or graceful upgrade");
        }
        if config.access_log != fixed.access_log {
            tracing::warn!("access_log changes only on restart or graceful upgrade");
        }
        if config.tls != fixed.tls {
            tracing::warn!(
                "the tls section changes only on restart or graceful upgrade (certificate files reload on their own)"
            );
        }
        let new = Runtime::build(config, Some(&old), &self.metrics).map_err(|e| format!("{e:#}"))?;
        // Tenants new to this config (or with a new key source) load before the swap;
        // a tenant serving now must not be left without keys by it.
        let now = crate::clock::now();
        let mut problems = Vec::new();
        for t in &new.engine.config.tenants {
            if new.engine.keys.age(&t.id, now).is_none() {
                let fetched = new.fetcher.refresh(&t.id, "reload").await;
                if let (Err(e), Some(_)) = (fetched, old.engine.keys.get(&t.id, now)) {
                    problems.push(format!("tenants.{}.keys: the new key source failed: {e}", t.id));
                }
            }
            if t.encryption.is_some() && new.engine.dkeys.store().age(&t.id, now).is_none() {
                let fetched = new.fetcher.refresh_decryption(&t.id, "reload").await;
                if let (Err(e), Some(_)) = (fetched, old.engine.dkeys.get(&t.id, now)) {
                    problems.push(format!("tenants.{}.encryption.keys: the new key source failed: {e}", t.id));
                }
            }
        }
        if !problems.is_empty() {
            return Err(problems.join("\n"));
        }
        self.rt.store(Arc::new(new));
        Ok(())
    }
}

#[async_trait]
impl BackgroundService for OnHangup {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let this = &self.0;
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGHUP; hot reload disabled");
                return;
            }
        };
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = hup.recv() => {}
            }
            match this.reload().await {
                Ok(()) => {
                    this.metrics.reloads.with_label_values(&["ok"]).inc();
                    tracing::info!(path = %this.path.display(), "config reloaded");
                }
                Err(e) => {
                    this.metrics.reloads.with_label_values(&["error"]).inc();
                    tracing::error!(path = %this.path.display(), errors = %e, "config reload refused; the previous config stays in force");
                }
            }
        }
    }
}
