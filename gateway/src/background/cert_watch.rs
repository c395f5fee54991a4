//! The "tls certificates" background service: on every `tls.watch_interval` and on
//! SIGHUP, re-reads the listener's certificate files and the client certificates of
//! the current upstream pools, swapping those that changed and passed the checks; a
//! bad file keeps the certificate in force, logged with the reason and counted in
//! `gateway_tls_certificate_reloads_total{result="error"}`.

use crate::runtime::SharedRuntime;
use crate::tls::metrics::TlsMetrics;
use crate::tls::store::{CertStore, Refresh};
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};

/// The watcher.
pub struct CertWatch {
    /// The HTTPS listener's certificates, if there is a listener.
    pub listener: Option<Arc<CertStore>>,
    /// The runtime, for the upstream pools in force.
    pub rt: SharedRuntime,
    /// Poll interval.
    pub interval: Duration,
    /// Metrics.
    pub metrics: TlsMetrics,
}

fn report(store: &CertStore, what: Refresh) {
    match what {
        Refresh::Unchanged => {}
        Refresh::Swapped => tracing::info!(certificates = %store.fields(), "TLS certificates reloaded"),
        Refresh::Refused(why) => {
            tracing::error!(certificates = %store.fields(), problem = %why, "TLS certificate reload refused; the certificates in force stay")
        }
    }
}

impl CertWatch {
    /// The watcher of the edge's listener certificates and the runtime's upstream pools.
    pub fn new(edge: &crate::tls::EdgeTls, rt: SharedRuntime) -> CertWatch {
        let (listener, interval, metrics) = edge.watched();
        CertWatch { listener, rt, interval, metrics }
    }

    /// One pass over every store.
    pub fn check(&self) {
        if let Some(s) = &self.listener {
            report(s, s.refresh());
        }
        let rt = self.rt.load();
        for pool in rt.pools.values() {
            if let Some(client) = pool.tls.as_ref().and_then(|t| t.client.as_ref()) {
                client.attach(self.metrics.clone());
                report(client, client.refresh());
            }
        }
    }
}

#[async_trait]
impl BackgroundService for CertWatch {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hup = signal(SignalKind::hangup()).ok();
        loop {
            self.check();
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(self.interval) => {}
                Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {}
            }
        }
    }
}
