//! Config hot reload: on SIGHUP the YAML file is re-read and validated exactly as
//! `--check` does (every field, then every key file it names); a valid config becomes
//! a new runtime swapped in atomically (in-flight requests finish on the runtime they
//! started with). An invalid one is refused, logged with every field error, counted,
//! and the old config stays in force; so is one whose new key source leaves a tenant
//! that had keys without any.

use crate::metrics::Metrics;
use crate::runtime::{Runtime, SharedRuntime};
use async_trait::async_trait;
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
}

impl Reloader {
    /// Reloads once; `Err` holds every problem, and the old runtime is kept.
    pub async fn reload(&self) -> Result<(), String> {
        let config = crate::keys::load_checked(&self.path)?;
        let old = self.rt.load_full();
        let fixed = &old.engine.config;
        if config.listen != fixed.listen || config.admin_listen != fixed.admin_listen || config.threads != fixed.threads
        {
            tracing::warn!("listen, admin_listen and threads change only on restart or graceful upgrade");
        }
        if config.access_log != fixed.access_log {
            tracing::warn!("access_log changes only on restart or graceful upgrade");
        }
        let new = Runtime::build(config, Some(&old), &self.metrics).map_err(|e| format!("{e:#}"))?;
        // Tenants new to this config (or with a new key source) load before the swap;
        // a tenant serving now must not be left without keys by it.
        let now = crate::keys::now();
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
impl BackgroundService for Reloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
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
            match self.reload().await {
                Ok(()) => {
                    self.metrics.reloads.with_label_values(&["ok"]).inc();
                    tracing::info!(path = %self.path.display(), "config reloaded");
                }
                Err(e) => {
                    self.metrics.reloads.with_label_values(&["error"]).inc();
                    tracing::error!(path = %self.path.display(), errors = %e, "config reload refused; the previous config stays in force");
                }
            }
        }
    }
}
