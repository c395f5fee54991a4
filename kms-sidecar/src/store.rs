//! Durable storage in an embedded redb database: tenants, and keys with their private
//! halves sealed under the master key. Every write is one transaction committed with
//! immediate durability before the caller acknowledges anything. Opening checks the
//! file's integrity and a sealed canary, so a wrong master key or a corrupted store
//! stops start-up with a clear error; keys are never silently regenerated.

use crate::crypto::Sealer;
use crate::keyring::Timeline;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};
use std::path::Path;
use zeroize::Zeroizing;

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const TENANTS: TableDefinition<&str, &[u8]> = TableDefinition::new("tenants");
const KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("keys");
const REVOCATIONS: TableDefinition<u64, &[u8]> = TableDefinition::new("revocations");
/// Used one-time token ids (`tenant \0 issuer \0 jti`) → until when they are held.
const ONE_TIME: TableDefinition<&str, i64> = TableDefinition::new("one_time");
/// The same ids ordered by expiry, for sweeping.
const ONE_TIME_EXPIRY: TableDefinition<(i64, &str), ()> = TableDefinition::new("one_time_expiry");
/// Expired one-time ids removed per claim (amortised sweeping, bounded work).
const SWEEP_PER_CLAIM: usize = 8;

/// What a one-time claim found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// First use: recorded durably until its expiry.
    First,
    /// Already used and not yet expired.
    Replayed,
    /// The store holds `capacity` unexpired ids: refused rather than forgetting one.
    Full,
}

impl Claim {
    /// Metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Claim::First => "first",
            Claim::Replayed => "replayed",
            Claim::Full => "full",
        }
    }
}

/// One entry of the revocation feed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// Position in the feed (assigned on append, from 1).
    #[serde(default)]
    pub seq: u64,
    /// Tenant.
    pub tenant: String,
    /// One token: its `jti` ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// ... and `exp` (the entry is needed until then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// Every token of this subject issued before `before`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Watermark: tokens with `iat` before this are refused (with `subject`, or tenant-wide).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<i64>,
    /// A key removed by an emergency rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// When it was recorded.
    #[serde(default)]
    pub at: i64,
}
const CANARY: &[u8] = b"kms-sidecar canary v1";

/// A stored tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantRecord {
    /// Tenant id.
    pub id: String,
    /// Signing algorithm.
    pub alg: String,
    /// `iss` of issued tokens.
    pub issuer: String,
    /// Default `aud`.
    pub audience: String,
    /// Rotation interval, seconds.
    pub interval: i64,
    /// Longest token lifetime, seconds.
    pub max_token_ttl: i64,
    /// Clock skew, seconds.
    pub clock_skew: i64,
    /// Key management of encryption keys (`RSA-OAEP-256` when absent).
    #[serde(default)]
    pub enc_alg: Option<String>,
    /// RSA signing key size (2048 when absent).
    #[serde(default)]
    pub rsa_bits: Option<u32>,
}

/// A stored key: timeline, public JWK, and the sealed private key (absent for an
/// imported public-only key, or once destroyed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// Owning tenant.
    pub tenant: String,
    /// JOSE algorithm.
    pub alg: String,
    /// Rotation instants.
    pub timeline: Timeline,
    /// Public JWK.
    pub public_jwk: serde_json::Value,
    /// `nonce || AES-256-GCM(private PKCS#8)`, AAD = kid.
    pub sealed: Option<Vec<u8>>,
}

/// Why the store could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No store and `create_if_missing` is off.
    #[error("no key store at {0} (set create_if_missing: true to initialise a new one)")]
    Missing(String),
    /// The canary did not unseal.
    #[error("the master key does not open this key store (wrong KMS master key?)")]
    WrongMasterKey,
    /// redb reported an error or corruption.
    #[error("key store error: {0}")]
    Db(String),
    /// A record did not decode.
    #[error("key store record {0} is corrupted")]
    Corrupt(String),
}

fn db<E: std::fmt::Display>(e: E) -> StoreError {
    StoreError::Db(e.to_string())
}

/// The key store.
pub struct Store {
    db: Database,
    sealer: Sealer,
}

impl Store {
    /// Opens (or, if allowed, creates) the store in `dir`.
    pub fn open(dir: &Path, sealer: Sealer, create_if_missing: bool) -> Result<Store, StoreError> {
        let path = dir.join("keys.redb");
        let exists = path.exists();
        if !exists && !create_if_missing {
            return Err(StoreError::Missing(path.display().to_string()));
        }
        crate::permission::private_dir(dir).map_err(db)?;
        crate::permission::private_file(&path).map_err(db)?;
        let mut builder = Database::builder();
        builder.set_check_integrity_on_open(true);
        let database = if exists { builder.open(&path) } else { builder.create(&path) }.map_err(db)?;
        let store = Store { db: database, sealer };
        let canary = {
            let tx = store.db.begin_read().map_err(db)?;
            match tx.open_table(META) {
                Ok(t) => t.get("canary").map_err(db)?.map(|v| v.value().to_vec()),
                Err(redb::TableError::TableDoesNotExist(_)) => None,
                Err(e) => return Err(db(e)),
            }
        };
        match canary {
            Some(sealed) => {
                let plain = store.sealer.open("canary", &sealed).map_err(|_| StoreError::WrongMasterKey)?;
                if plain.as_slice() != CANARY {
                    return Err(StoreError::WrongMasterKey);
                }
            }
            None if exists && !create_if_missing => return Err(StoreError::Corrupt("canary".into())),
            None => {
                let sealed = store.sealer.seal("canary", CANARY).map_err(db)?;
                let tx = store.db.begin_write().map_err(db)?;
                {
                    tx.open_table(META).map_err(db)?.insert("canary", sealed.as_slice()).map_err(db)?;
                    tx.open_table(TENANTS).map_err(db)?;
                    tx.open_table(KEYS).map_err(db)?;
                    tx.open_table(REVOCATIONS).map_err(db)?;
                    tx.open_table(ONE_TIME).map_err(db)?;
                    tx.open_table(ONE_TIME_EXPIRY).map_err(db)?;
                }
                tx.commit().map_err(db)?;
            }
        }
        Ok(store)
    }

    /// Every tenant.
    pub fn tenants(&self) -> Result<Vec<TenantRecord>, StoreError> {
        let tx = self.db.begin_read().map_err(db)?;
        let t = tx.open_table(TENANTS).map_err(db)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(db)? {
            let (k, v) = row.map_err(db)?;
            out.push(serde_json::from_slice(v.value()).map_err(|_| StoreError::Corrupt(k.value().to_owned()))?);
        }
        Ok(out)
    }

    /// Every key of every tenant.
    pub fn keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        let tx = self.db.begin_read().map_err(db)?;
        let t = tx.open_table(KEYS).map_err(db)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(db)? {
            let (k, v) = row.map_err(db)?;
            out.push(serde_json::from_slice(v.value()).map_err(|_| StoreError::Corrupt(k.value().to_owned()))?);
        }
        Ok(out)
    }

    /// Appends revocations durably; returns them with their sequence numbers.
    pub fn append_revocations(&self, mut events: Vec<Revocation>) -> Result<Vec<Revocation>, StoreError> {
        let tx = self.db.begin_write().map_err(db)?;
        {
            let mut t = tx.open_table(REVOCATIONS).map_err(db)?;
            let mut seq = t.last().map_err(db)?.map_or(0, |(k, _)| k.value());
            for e in &mut events {
                seq += 1;
                e.seq = seq;
                t.insert(seq, serde_json::to_vec(e).map_err(db)?.as_slice()).map_err(db)?;
            }
        }
        tx.commit().map_err(db)?;
        Ok(events)
    }

    /// Revocations with a sequence number above `after`, at most `limit`.
    pub fn revocations_after(&self, after: u64, limit: usize) -> Result<Vec<Revocation>, StoreError> {
        let tx = self.db.begin_read().map_err(db)?;
        let t = match tx.open_table(REVOCATIONS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(db(e)),
        };
        let mut out = Vec::new();
        for row in t.range(after.saturating_add(1)..).map_err(db)?.take(limit) {
            let (k, v) = row.map_err(db)?;
            out.push(
                serde_json::from_slice(v.value())
                    .map_err(|_| StoreError::Corrupt(format!("revocation {}", k.value())))?,
            );
        }
        Ok(out)
    }

    /// The last sequence number of the feed (0 when empty).
    pub fn last_revocation(&self) -> Result<u64, StoreError> {
        let tx = self.db.begin_read().map_err(db)?;
        match tx.open_table(REVOCATIONS) {
            Ok(t) => Ok(t.last().map_err(db)?.map_or(0, |(k, _)| k.value())),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(0),
            Err(e) => Err(db(e)),
        }
    }

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

    /// Seals a private key for `kid`.
    pub fn seal(&self, kid: &str, pkcs8: &[u8]) -> Result<Vec<u8>, StoreError> {
        self.sealer.seal(kid, pkcs8).map_err(db)
    }

    /// Unseals a key's private half.
    pub fn private(&self, rec: &KeyRecord) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        let sealed = rec
            .sealed
            .as_ref()
            .ok_or_else(|| StoreError::Corrupt(format!("{} has no private key", rec.timeline.kid)))?;
        self.sealer.open(&rec.timeline.kid, sealed).map_err(|_| StoreError::WrongMasterKey)
    }

    /// Writes tenants and keys, deletes keys and tenants, all in one durable transaction.
    pub fn commit(
        &self,
        tenants: &[TenantRecord],
        keys: &[KeyRecord],
        delete_keys: &[String],
        delete_tenants: &[String],
    ) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(db)?;
        {
            let mut t = tx.open_table(TENANTS).map_err(db)?;
            for rec in tenants {
                t.insert(rec.id.as_str(), serde_json::to_vec(rec).map_err(db)?.as_slice()).map_err(db)?;
            }
            for id in delete_tenants {
                t.remove(id.as_str()).map_err(db)?;
            }
            let mut k = tx.open_table(KEYS).map_err(db)?;
            for rec in keys {
                k.insert(rec.timeline.kid.as_str(), serde_json::to_vec(rec).map_err(db)?.as_slice()).map_err(db)?;
            }
            for kid in delete_keys {
                k.remove(kid.as_str()).map_err(db)?;
            }
        }
        tx.commit().map_err(db)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &Path) -> Store {
        Store::open(dir, Sealer::new(&[7; 32]).unwrap(), true).unwrap()
    }

    #[test]
    fn one_time_ids_are_held_until_expiry_bounded_and_swept() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        assert_eq!(s.claim_one_time("a", 110, 100, 3).unwrap(), Claim::First);
        assert_eq!(s.claim_one_time("a", 110, 105, 3).unwrap(), Claim::Replayed);
        assert_eq!(s.claim_one_time("a", 110, 110, 3).unwrap(), Claim::Replayed, "held through its last second");
        assert_eq!(s.claim_one_time("b", 200, 100, 3).unwrap(), Claim::First);
        assert_eq!(s.claim_one_time("c", 200, 100, 3).unwrap(), Claim::First);
        assert_eq!(s.claim_one_time("d", 200, 100, 3).unwrap(), Claim::Full, "full of unexpired ids: fail closed");
        assert_eq!(s.claim_one_time("b", 200, 100, 3).unwrap(), Claim::Replayed, "a held id is still a replay");
        // At 111 "a" has expired: the next claim sweeps it and fits.
        assert_eq!(s.claim_one_time("d", 200, 111, 3).unwrap(), Claim::First);
        assert_eq!(s.one_time_held().unwrap(), 3);
        // Many expired ids are swept a few per claim, oldest first, and never grow the store.
        let s2dir = tempfile::tempdir().unwrap();
        let s2 = store(s2dir.path());
        for i in 0..40 {
            assert_eq!(s2.claim_one_time(&format!("x{i}"), 50 + i, 10, 100).unwrap(), Claim::First);
        }
        for i in 0..10 {
            assert_eq!(s2.claim_one_time(&format!("y{i}"), 2000, 1000, 100).unwrap(), Claim::First);
        }
        assert_eq!(s2.one_time_held().unwrap(), 10, "50 claimed, 40 expired and swept 8 per claim");
        // One batch, one transaction: a repeated id is first once, then a replay.
        let got = s2.claim_one_time_batch(&[("z", 2000), ("y0", 2000), ("z", 2000), ("w", 2000)], 1000, 100).unwrap();
        assert_eq!(got, [Claim::First, Claim::Replayed, Claim::Replayed, Claim::First]);
        drop(s);
        let reopened = store(dir.path());
        assert_eq!(reopened.claim_one_time("b", 200, 150, 3).unwrap(), Claim::Replayed, "durable");
    }
}
