//! The "jwks refresh" background service: refreshes every tenant's signing and
//! decryption keys when their schedule is due, always through the current runtime's
//! fetcher (a reload swaps it).

use crate::clock::now;
use crate::runtime::SharedRuntime;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::time::Duration;

/// The "jwks refresh" background service.
pub struct KeyRefresher(pub SharedRuntime);

#[async_trait]
impl BackgroundService for KeyRefresher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            let fetcher = self.0.load().fetcher.clone();
            fetcher.tick().await;
            let wait = fetcher.next_due().map_or(1, |due| (due - now()).clamp(1, 5)) as u64;
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(Duration::from_secs(wait)) => {}
            }
        }
    }
}
