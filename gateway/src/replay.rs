//! The shared one-time token store: gateways side by side record one-time ids in
//! the kms-sidecar (`POST /internal/v1/one-time` on its gateway channel), which
//! answers whether this was the id's first use after committing it durably. Any
//! failure (timeout, refused connection, unexpected answer) is `Unavailable`: the
//! request is refused with a 503 rather than risk a replay.

use crate::credential::Credential;
use gateway_core::config::ReplayStoreSettings;
use gateway_core::replay::{Check, FirstUse, OneTimeId, ReplayStore};
use medgate_channel::one_time::{self, OneTimeAnswer, OneTimeClaim};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;
use zeroize::Zeroizing;

/// A [`ReplayStore`] backed by the kms-sidecar.
#[derive(Debug)]
pub struct SidecarReplayStore {
    settings: ReplayStoreSettings,
    client: reqwest::Client,
    /// When a failure was last logged (seconds), and failures since: at most one
    /// warning per second however many requests the outage refuses.
    last_warning: AtomicI64,
    unlogged: AtomicU64,
    /// The channel credential, read once and again only when the sidecar refuses it
    /// (so a rotated credential file is picked up without a read per request).
    credential: Credential,
}

impl SidecarReplayStore {
    /// A store for these settings (connections to the sidecar are kept alive).
    pub fn new(settings: ReplayStoreSettings) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            // The sidecar closes keep-alive connections idle for its header read
            // timeout (10 s by default): never reuse one that may be closing.
            .pool_idle_timeout(Duration::from_secs(5))
            .build()?;
        Ok(Self {
            credential: Credential::new(settings.token.clone()),
            settings,
            client,
            last_warning: AtomicI64::new(0),
            unlogged: AtomicU64::new(0),
        })
    }

    /// The kept channel credential, or (`reread`) a fresh read.
    fn credential(&self, reread: bool) -> anyhow::Result<Zeroizing<String>> {
        let token = if reread { self.credential.reread() } else { self.credential.get() };
        token.map_err(|_| anyhow::anyhow!("channel credential not available"))
    }

    async fn claim(&self, id: &OneTimeId) -> anyhow::Result<FirstUse> {
        let body =
            OneTimeClaim { tenant: id.tenant.clone(), issuer: id.issuer.clone(), jti: id.jti.clone(), until: id.until };
        let send = |token: Zeroizing<String>| {
            self.client.post(&self.settings.url).bearer_auth(token.as_str()).json(&body).send()
        };
        let mut resp = send(self.credential(false)?).await?;
        if resp.status() == reqwest::StatusCode::UNAUTHORIZED {
            resp = send(self.credential(true)?).await?;
        }
        match resp.status().as_u16() {
            200 => {}
            one_time::FULL_STATUS => return Ok(FirstUse::Full),
            other => anyhow::bail!("HTTP {other}"),
        }
        let answer: OneTimeAnswer =
            resp.json().await.map_err(|e| anyhow::anyhow!("answer without first_use: {}", e.without_url()))?;
        Ok(if answer.first_use { FirstUse::Yes } else { FirstUse::Replayed })
    }
}

impl ReplayStore for SidecarReplayStore {
    fn first_use<'a>(&'a self, id: &'a OneTimeId, _now: i64) -> Check<'a> {
        Box::pin(async move {
            self.claim(id).await.unwrap_or_else(|e| {
                let (now, last) = (crate::clock::now(), self.last_warning.load(Ordering::Relaxed));
                let unlogged = self.unlogged.fetch_add(1, Ordering::Relaxed);
                if now > last
                    && self.last_warning.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
                {
                    self.unlogged.store(0, Ordering::Relaxed);
                    tracing::warn!(error = %e, tenant = %id.tenant, earlier_failures = unlogged,
                        "shared one-time store did not answer; refusing one-time requests");
                }
                FirstUse::Unavailable
            })
        })
    }
}
