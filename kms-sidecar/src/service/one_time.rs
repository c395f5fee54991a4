//! Group commit for the shared one-time store: claims from every connection go
//! through one bounded queue to a writer thread, which records everything waiting in
//! one durable transaction and then answers each claim. Under load many claims share
//! one fsync; no claim is answered before its transaction has committed.

use super::{Kms, KmsError};
use crate::clock::now;
use crate::default;
use crate::store::Claim;
use std::sync::{mpsc, Arc};
use tokio::sync::oneshot;

/// Claims recorded in one transaction at most.
const MAX_BATCH: usize = 512;
/// Claims waiting for the writer at most; beyond, a claim is refused (503).
const QUEUE: usize = 8192;

struct Job {
    key: String,
    until: i64,
    reply: oneshot::Sender<Result<Claim, String>>,
}

/// The writer's queue.
pub struct OneTimeWriter {
    tx: mpsc::SyncSender<Job>,
}

impl OneTimeWriter {
    /// Starts the writer thread for `kms`, holding at most `capacity` unexpired ids.
    pub fn start(kms: Arc<Kms>, capacity: u64) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::sync_channel::<Job>(QUEUE);
        std::thread::Builder::new().name("one-time writer".into()).spawn(move || {
            while let Ok(first) = rx.recv() {
                let mut jobs = vec![first];
                while jobs.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(job) => jobs.push(job),
                        Err(_) => break,
                    }
                }
                let claims: Vec<(&str, i64)> = jobs.iter().map(|j| (j.key.as_str(), j.until)).collect();
                match kms.claim_one_time_batch(&claims, now(), capacity) {
                    Ok(results) => {
                        for (job, claim) in jobs.into_iter().zip(results) {
                            let _ = job.reply.send(Ok(claim));
                        }
                    }
                    Err(e) => {
                        for job in jobs {
                            let _ = job.reply.send(Err(e.to_string()));
                        }
                    }
                }
            }
        })?;
        Ok(Self { tx })
    }

    /// Queues a claim of `key` until `until` and waits for its committed answer.
    pub async fn claim(&self, key: String, until: i64) -> Result<Claim, KmsError> {
        let (reply, answer) = oneshot::channel();
        self.tx.try_send(Job { key, until, reply }).map_err(|_| KmsError::Busy("one-time claims queue full".into()))?;
        answer.await.map_err(|_| KmsError::Internal("one-time writer stopped".into()))?.map_err(KmsError::Internal)
    }
}

impl Kms {
    /// Checks a one-time claim and returns the id it is stored under
    /// (`tenant \0 issuer \0 jti`).
    pub fn one_time_key(&self, tenant: &str, issuer: &str, jti: &str) -> Result<String, KmsError> {
        if !self.read().tenants.contains_key(tenant) {
            return Err(KmsError::UnknownTenant);
        }
        if [tenant, issuer, jti].iter().any(|s| s.is_empty() || s.len() > 512 || s.contains('\0')) {
            return Err(KmsError::BadRequest("tenant, issuer and jti: 1 to 512 bytes, no NUL".into()));
        }
        Ok(format!("{tenant}\0{issuer}\0{jti}"))
    }

    /// How long a one-time id is held: the gateway's `until` (the token's `exp` plus
    /// leeway, by the gateway's clock), or now if that has passed by ours, plus
    /// [`default::ONE_TIME_SKEW`]: a gateway whose clock lags ours by up to that much, and so
    /// still accepts the token, can never replay an id we already let go.
    pub fn one_time_until(until: i64, now: i64) -> i64 {
        until.max(now).saturating_add(default::ONE_TIME_SKEW)
    }

    /// Records one-time ids for gateways side by side, in one durable transaction:
    /// the first claim of an id wins until its `until`; later ones are replays.
    pub fn claim_one_time_batch(
        &self,
        claims: &[(&str, i64)],
        now: i64,
        capacity: u64,
    ) -> Result<Vec<Claim>, KmsError> {
        Ok(self.store.claim_one_time_batch(claims, now, capacity)?)
    }

    /// One-time ids the store holds.
    pub fn one_time_held(&self) -> Result<u64, KmsError> {
        Ok(self.store.one_time_held()?)
    }
}
