//! The "revocation feed" background service: long-polls the sidecar's versioned
//! feed with a cursor and applies each event to the shared in-memory revocation
//! state, so a revoke call reaches every gateway in well under a second. When the
//! sidecar is unreachable the last state stays in force, and the metrics and
//! `/readyz` say the feed is down and how stale it is.

use crate::keys::now;
use crate::metrics::Metrics;
use crate::runtime::SharedRuntime;
use async_trait::async_trait;
use gateway_core::config::{AdminToken, RevocationSettings};
use gateway_core::revocation::RevocationEvent;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use serde::Deserialize;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Feed health shared with the admin listener.
#[derive(Debug, Default)]
pub struct FeedStatus {
    /// Last successful poll (seconds); 0 before the first.
    pub last_ok: AtomicI64,
    /// Whether the last poll succeeded.
    pub up: AtomicBool,
}

impl FeedStatus {
    /// `"ok"` while the last poll succeeded, `"unreachable"` otherwise.
    pub fn describe(&self) -> &'static str {
        if self.up.load(Ordering::Acquire) {
            "ok"
        } else {
            "unreachable"
        }
    }
}

#[derive(Deserialize)]
struct FeedPage {
    events: Vec<RevocationEvent>,
}

/// The feed follower.
pub struct Follower {
    /// Current runtime (its engine holds the shared revocation state).
    pub rt: SharedRuntime,
    /// Feed settings.
    pub settings: RevocationSettings,
    /// Health shared with `/readyz`.
    pub status: Arc<FeedStatus>,
    /// Metrics.
    pub metrics: Metrics,
}

/// Reads a channel credential from its environment variable or file.
pub fn read_token(t: &AdminToken) -> Option<zeroize::Zeroizing<String>> {
    match t {
        AdminToken::Env(v) => std::env::var(v).ok(),
        AdminToken::File(p) => std::fs::read_to_string(p).ok().map(|s| s.trim().to_owned()),
    }
    .map(zeroize::Zeroizing::new)
}

impl Follower {
    async fn poll(&self, client: &reqwest::Client, token: &str) -> anyhow::Result<()> {
        let revocations = self.rt.load().engine.revocations.clone();
        let url = format!(
            "{}?after={}&wait={}",
            self.settings.feed_url,
            revocations.cursor(),
            self.settings.poll_wait.as_secs()
        );
        let resp = client.get(url).bearer_auth(token).send().await?;
        if !resp.status().is_success() {
            anyhow::bail!("HTTP {}", resp.status());
        }
        let page: FeedPage = resp.json().await?;
        let now = now();
        for e in &page.events {
            revocations.apply(e, now);
        }
        revocations.sweep(now);
        self.status.last_ok.store(now, Ordering::Release);
        self.status.up.store(true, Ordering::Release);
        self.metrics.revocations.set(revocations.len() as i64);
        self.metrics.revocation_feed_up.set(1);
        Ok(())
    }
}

#[async_trait]
impl BackgroundService for Follower {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let client = match reqwest::Client::builder()
            .timeout(self.settings.poll_wait + Duration::from_secs(5))
            .connect_timeout(Duration::from_secs(2))
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "revocation feed disabled");
                return;
            }
        };
        loop {
            let result = match read_token(&self.settings.token) {
                Some(token) => {
                    tokio::select! {
                        _ = shutdown.changed() => return,
                        r = self.poll(&client, &token) => r,
                    }
                }
                None => Err(anyhow::anyhow!("revocation feed credential not available")),
            };
            let last = self.status.last_ok.load(Ordering::Acquire);
            self.metrics.revocation_feed_lag.set(if last > 0 { now() - last } else { -1 });
            if let Err(e) = result {
                self.status.up.store(false, Ordering::Release);
                self.metrics.revocation_feed_up.set(0);
                tracing::warn!(error = %e, "revocation feed unreachable; keeping the last revocation state");
                tokio::select! {
                    _ = shutdown.changed() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}
