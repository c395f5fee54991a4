//! The shared one-time ids: claimed in batches in one durable transaction, held
//! until their expiry, bounded by a capacity (fail closed), expired ones swept a few
//! per claim.

use super::{db, Store, StoreError, ONE_TIME, ONE_TIME_EXPIRY};
use crate::store::record::Claim;
use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata};

/// Expired one-time ids removed per claim (amortised sweeping, bounded work).
const SWEEP_PER_CLAIM: usize = 8;

impl Store {
    /// Records a one-time token id until `until` if it is not held already; see
    /// [`Store::claim_one_time_batch`].
    #[cfg(test)]
    pub fn claim_one_time(&self, id: &str, until: i64, now: i64, capacity: u64) -> Result<Claim, StoreError> {
        Ok(self.claim_one_time_batch(&[(id, until)], now, capacity)?[0])
    }

    /// Records each `(id, until)` not held already, in order, in one durable
    /// transaction (group commit: one fsync for the batch). redb serialises writers,
    /// so two claims of one id, in one batch or in two, never both see it absent.
    /// Each claim also removes a few expired ids, oldest first.
    pub fn claim_one_time_batch(
        &self,
        claims: &[(&str, i64)],
        now: i64,
        capacity: u64,
    ) -> Result<Vec<Claim>, StoreError> {
        let tx = self.db.begin_write().map_err(db)?;
        let mut changed = false;
        let mut out = Vec::with_capacity(claims.len());
        {
            let mut ids = tx.open_table(ONE_TIME).map_err(db)?;
            let mut expiry = tx.open_table(ONE_TIME_EXPIRY).map_err(db)?;
            for &(id, until) in claims {
                let expired: Vec<(i64, String)> = expiry
                    .range(..(now, ""))
                    .map_err(db)?
                    .take(SWEEP_PER_CLAIM)
                    .map(|row| row.map(|(k, _)| (k.value().0, k.value().1.to_owned())))
                    .collect::<Result<_, _>>()
                    .map_err(db)?;
                for (at, old) in &expired {
                    expiry.remove((*at, old.as_str())).map_err(db)?;
                    ids.remove(old.as_str()).map_err(db)?;
                }
                changed |= !expired.is_empty();
                let held = ids.get(id).map_err(db)?.map(|v| v.value());
                let claim = match held {
                    Some(t) if t >= now => Claim::Replayed,
                    _ if held.is_none() && ids.len().map_err(db)? >= capacity => Claim::Full,
                    _ => {
                        if let Some(t) = held {
                            expiry.remove((t, id)).map_err(db)?;
                        }
                        ids.insert(id, until).map_err(db)?;
                        expiry.insert((until, id), ()).map_err(db)?;
                        changed = true;
                        Claim::First
                    }
                };
                out.push(claim);
            }
        }
        if changed {
            tx.commit().map_err(db)?;
        } else {
            tx.abort().map_err(db)?;
        }
        Ok(out)
    }

    /// One-time ids held (expired ones not yet swept included).
    pub fn one_time_held(&self) -> Result<u64, StoreError> {
        let tx = self.db.begin_read().map_err(db)?;
        match tx.open_table(ONE_TIME) {
            Ok(t) => t.len().map_err(db),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(0),
            Err(e) => Err(db(e)),
        }
    }
}
