//! Revocations: recorded durably and numbered, served as feed pages within the
//! sidecar's epoch, with watermarks checked to be seconds near now.

use super::{Kms, KmsError};
use crate::default;
use crate::store::Revocation;
use medgate_channel::FeedPage;

impl Kms {
    /// Records revocations durably (one transaction) and returns them numbered.
    pub fn revoke(&self, events: Vec<Revocation>) -> Result<Vec<Revocation>, KmsError> {
        for e in &events {
            if !self.read().tenants.contains_key(&e.tenant) {
                return Err(KmsError::UnknownTenant);
            }
        }
        Ok(self.store.append_revocations(events)?)
    }

    /// The feed's epoch: the store's id and this run's, so that a gateway never
    /// mistakes positions of a replaced, restored or re-opened store for its own.
    pub fn feed_epoch(&self) -> &str {
        &self.epoch
    }

    /// One page of the feed after `after` (the gateway's cursor); single-token entries
    /// whose token has expired by `now` are left out (the cursor still passes them).
    pub fn feed_page(&self, after: u64, now: i64) -> Result<FeedPage, KmsError> {
        let (rows, last) = self.store.revocations_after(after, 10_000)?;
        let cursor = rows.last().map_or(after, |r| r.seq);
        let events = rows.iter().filter(|r| !(r.jti.is_some() && r.exp.is_some_and(|e| e < now))).map(Into::into);
        Ok(FeedPage { epoch: self.epoch.clone(), events: events.collect(), cursor, last })
    }

    /// Checks a subject or tenant watermark: seconds since the epoch, not negative and
    /// not beyond [`default::WATERMARK_AHEAD`] from `now` (a value in milliseconds would
    /// otherwise revoke every future token for good).
    pub fn check_watermark(before: i64, now: i64) -> Result<(), KmsError> {
        if before < 0 {
            return Err(KmsError::BadRequest(format!("before: {before} must not be negative")));
        }
        if before > now.saturating_add(default::WATERMARK_AHEAD) {
            return Err(KmsError::BadRequest(format!(
                "before: {before} is more than {} s in the future (now is {now}); give seconds since the epoch, not milliseconds",
                default::WATERMARK_AHEAD
            )));
        }
        Ok(())
    }

    /// The feed's last sequence number.
    pub fn last_revocation(&self) -> Result<u64, KmsError> {
        Ok(self.store.last_revocation()?)
    }
}
