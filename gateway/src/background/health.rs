//! The "upstream health" background service: runs each upstream pool's HTTP health
//! check on its interval, always over the current runtime's pools so reloads take
//! effect.

use crate::runtime::SharedRuntime;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::time::{Duration, Instant};

/// The "upstream health" background service.
pub struct HealthChecks(pub SharedRuntime);

#[async_trait]
impl BackgroundService for HealthChecks {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            let rt = self.0.load_full();
            let now = Instant::now();
            for pool in rt.pools.values() {
                pool.check_if_due(now).await;
            }
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
        }
    }
}
