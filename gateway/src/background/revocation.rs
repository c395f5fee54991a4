//! The "revocation feed" background service: long-polls the sidecar's versioned
//! feed with its epoch and cursor and applies each event to the shared in-memory
//! revocation state, so a revoke call reaches every gateway in well under a second.
//!
//! Positions mean something only within one epoch (one store, one sidecar run): when
//! the feed answers with another epoch, or with a last position below the gateway's
//! cursor (a store reset, restore or restart), the whole feed is read again from the
//! start and the new state replaces the old at once. A tenant deletion also empties
//! the tenant's keys at once. Until the feed has been read once since start (or a
//! fresh `revocation.state_file` was loaded), the state is not synced and, with
//! `require_sync`, protected routes answer 503 `revocations_unavailable`. Afterwards,
//! when the sidecar is unreachable the last state stays in force, and the metrics and
//! `/readyz` say the feed is down and how stale it is.

use crate::clock::now;
use crate::metrics::Metrics;
use crate::runtime::SharedRuntime;
use async_trait::async_trait;
use gateway_core::config::RevocationSettings;
use gateway_core::revocation::{Revocations, Snapshot};
use medgate_channel::revocation::{FeedPage, FeedQuery};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Rewrite the state file at least this often while in sync (seconds), so its
/// `synced_at` stays fresh although nothing changes.
const STATE_REFRESH: i64 = 30;

/// Feed health shared with the admin listener.
#[derive(Debug, Default)]
pub struct FeedStatus {
    /// Last successful poll (seconds); 0 before the first.
    pub last_ok: AtomicI64,
    /// Whether the last poll succeeded.
    pub up: AtomicBool,
}

impl FeedStatus {
    /// `"not_synced"` before the state was read once, then `"ok"` while the last poll
    /// succeeded and `"unreachable"` otherwise.
    pub fn describe(&self, synced: bool) -> &'static str {
        match (synced, self.up.load(Ordering::Acquire)) {
            (false, _) => "not_synced",
            (true, true) => "ok",
            (true, false) => "unreachable",
        }
    }
}

/// The feed follower.
pub struct Follower {
    /// Current runtime (its config holds the feed settings, its engine the shared
    /// revocation state).
    pub rt: SharedRuntime,
    /// Health shared with `/readyz`.
    pub status: Arc<FeedStatus>,
    /// Metrics.
    pub metrics: Metrics,
    /// When the state file was last written (seconds).
    pub saved_at: AtomicI64,
}

/// Loads `revocation.state_file` (if configured and present) into `revocations` at
/// start; it counts as synced when saved in sync within `state_max_age`. A missing
/// or unreadable file leaves the state empty and unsynced.
pub fn load_state(settings: &RevocationSettings, revocations: &Revocations, status: &FeedStatus) {
    let Some(path) = &settings.state_file else {
        return;
    };
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::info!(path, "no saved revocation state yet");
            return;
        }
        Err(e) => {
            tracing::error!(path, error = %e, "cannot read the saved revocation state; waiting for the feed");
            return;
        }
    };
    let snapshot: Snapshot = match serde_json::from_slice(&bytes) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(path, error = %e, "the saved revocation state does not parse; waiting for the feed");
            return;
        }
    };
    let synced_at = snapshot.synced_at;
    let now = now();
    if revocations.restore(snapshot, now, settings.state_max_age.as_secs() as i64) {
        status.last_ok.store(synced_at, Ordering::Release);
        tracing::info!(
            path,
            age_secs = now - synced_at,
            "serving on the saved revocation state until the feed answers"
        );
    } else {
        tracing::warn!(
            path,
            age_secs = now - synced_at,
            "the saved revocation state is too old to serve on; waiting for the feed"
        );
    }
}

/// Writes the state durably: a temporary file, fsync, rename, fsync of the directory.
fn save_state(path: &Path, snapshot: &Snapshot) -> std::io::Result<()> {
    use std::io::Write;
    let bytes = serde_json::to_vec(snapshot)?;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::File::open(dir)?.sync_all()
}

async fn fetch(
    client: &reqwest::Client,
    settings: &RevocationSettings,
    token: &str,
    after: u64,
    wait: Duration,
    epoch: Option<&str>,
) -> anyhow::Result<FeedPage> {
    let query = FeedQuery { after, wait: Some(wait.as_secs()), epoch: epoch.map(str::to_owned) };
    let request = client.get(&settings.feed_url).query(&query).bearer_auth(token).send();
    let resp = tokio::time::timeout(wait + Duration::from_secs(5), request)
        .await
        .map_err(|_| anyhow::anyhow!("timed out"))??;
    if !resp.status().is_success() {
        anyhow::bail!("HTTP {}", resp.status());
    }
    Ok(resp.json().await?)
}

impl Follower {
    /// Reads the whole feed of `first`'s epoch from `first` (a page read from the
    /// start) on, then replaces the state with it at once.
    async fn resync(
        &self,
        client: &reqwest::Client,
        settings: &RevocationSettings,
        token: &str,
        revocations: &Revocations,
        mut page: FeedPage,
    ) -> anyhow::Result<()> {
        let epoch = page.epoch.clone();
        let mut events = std::mem::take(&mut page.events);
        let mut cursor = page.cursor;
        while cursor < page.last {
            page = fetch(client, settings, token, cursor, Duration::ZERO, Some(&epoch)).await?;
            if page.epoch != epoch {
                anyhow::bail!("the feed's epoch changed again during a resync");
            }
            if page.cursor <= cursor {
                anyhow::bail!("the feed did not advance past {cursor} (last {})", page.last);
            }
            cursor = page.cursor;
            events.append(&mut page.events);
        }
        revocations.replace(&epoch, cursor, &events, now());
        tracing::info!(events = events.len(), cursor, "revocation state rebuilt from the feed");
        Ok(())
    }

    /// One long poll; returns whether the state changed.
    async fn poll(&self, client: &reqwest::Client, settings: &RevocationSettings, token: &str) -> anyhow::Result<bool> {
        let rt = self.rt.load_full();
        let revocations = rt.engine.revocations.clone();
        let (epoch, cursor) = revocations.position();
        let page = fetch(client, settings, token, cursor, settings.poll_wait, epoch.as_deref()).await?;
        if epoch.as_deref() != Some(page.epoch.as_str()) || page.last < cursor {
            if epoch.is_some() {
                tracing::warn!(
                    cursor,
                    feed_last = page.last,
                    "the revocation feed is another store's or run's (reset, restore or restart): reading it again from the start"
                );
            }
            let first =
                if cursor == 0 { page } else { fetch(client, settings, token, 0, Duration::ZERO, None).await? };
            self.resync(client, settings, token, &revocations, first).await?;
            return Ok(true);
        }
        let now = now();
        for e in &page.events {
            revocations.apply(e, now);
            if e.deleted {
                crate::keys::drop_tenant_keys(&rt.engine, &e.tenant, now);
                tracing::warn!(tenant = %e.tenant, "tenant deleted at the sidecar: its keys are dropped and its tokens refused");
            }
        }
        revocations.advance(page.cursor);
        revocations.sweep(now);
        Ok(!page.events.is_empty())
    }

    /// Saves the state when it changed, or its `synced_at` is getting old.
    async fn persist(&self, settings: &RevocationSettings, changed: bool) {
        let Some(path) = settings.state_file.clone() else {
            return;
        };
        let now = now();
        if !changed && now - self.saved_at.load(Ordering::Acquire) < STATE_REFRESH {
            return;
        }
        let snapshot = self.rt.load().engine.revocations.snapshot(now);
        match tokio::task::spawn_blocking(move || save_state(Path::new(&path), &snapshot)).await {
            Ok(Ok(())) => self.saved_at.store(now, Ordering::Release),
            Ok(Err(e)) => tracing::error!(error = %e, "cannot save the revocation state"),
            Err(e) => tracing::error!(error = %e, "revocation state writer failed"),
        }
    }
}

#[async_trait]
impl BackgroundService for Follower {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let client = match reqwest::Client::builder().connect_timeout(Duration::from_secs(2)).build() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "revocation feed disabled");
                return;
            }
        };
        loop {
            // The settings are the current config's: a reload may add, change or remove the feed.
            let Some(settings) = self.rt.load().engine.config.revocation.clone() else {
                tokio::select! {
                    _ = shutdown.changed() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            };
            let result = match crate::credential::read(&settings.token) {
                Ok(token) => {
                    tokio::select! {
                        _ = shutdown.changed() => return,
                        r = self.poll(&client, &settings, &token) => r,
                    }
                }
                Err(_) => Err(anyhow::anyhow!("revocation feed credential not available")),
            };
            match result {
                Ok(changed) => {
                    let revocations = self.rt.load().engine.revocations.clone();
                    revocations.mark_synced();
                    self.status.last_ok.store(now(), Ordering::Release);
                    self.status.up.store(true, Ordering::Release);
                    self.metrics.revocations.set(revocations.len() as i64);
                    self.metrics.revocation_feed_up.set(1);
                    self.persist(&settings, changed).await;
                }
                Err(e) => {
                    self.status.up.store(false, Ordering::Release);
                    self.metrics.revocation_feed_up.set(0);
                    tracing::warn!(error = %e, "revocation feed unreachable; keeping the last revocation state");
                }
            }
            let last = self.status.last_ok.load(Ordering::Acquire);
            self.metrics.revocation_feed_lag.set(if last > 0 { now() - last } else { -1 });
            if !self.status.up.load(Ordering::Acquire) {
                tokio::select! {
                    _ = shutdown.changed() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}
