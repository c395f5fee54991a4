//! Durable storage in an embedded redb database: tenants, and keys with their private
//! halves sealed under the master key. Every write is one transaction committed with
//! immediate durability before the caller acknowledges anything. Opening checks the
//! file's integrity and a sealed canary, so a wrong master key or a corrupted store
//! stops start-up with a clear error; keys are never silently regenerated. A store is
//! created only by [`Store::create`] (`kms-sidecar init`), with a random store id.
//!
//! Beside the database, `last-run.json` records the store id and the revocation
//! feed's last position this sidecar wrote. A store whose feed is behind that record
//! (restored from an older copy) or that has another id (replaced) is refused by
//! [`Store::check_last_run`] until an operator accepts it (`init --accept-restore`):
//! revocations recorded after the copy was taken are not in it.

use crate::crypto::Sealer;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::Path;
use zeroize::Zeroizing;

pub mod last_run;
pub mod one_time;
pub mod permission;
pub mod record;

pub use record::{Claim, KeyRecord, Revocation, TenantRecord};

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const TENANTS: TableDefinition<&str, &[u8]> = TableDefinition::new("tenants");
const KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("keys");
const REVOCATIONS: TableDefinition<u64, &[u8]> = TableDefinition::new("revocations");
/// Used one-time token ids (`tenant \0 issuer \0 jti`) → until when they are held.
const ONE_TIME: TableDefinition<&str, i64> = TableDefinition::new("one_time");
/// The same ids ordered by expiry, for sweeping.
const ONE_TIME_EXPIRY: TableDefinition<(i64, &str), ()> = TableDefinition::new("one_time_expiry");

/// Name of the database file in `data_dir`.
pub const DB_FILE: &str = "keys.redb";

const CANARY: &[u8] = b"kms-sidecar canary v1";

/// Why the store could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No store: it is created only explicitly.
    #[error("no key store at {0}: run `kms-sidecar init --config <file>` once to create one (keys are never created implicitly)")]
    Missing(String),
    /// `init` found a store already.
    #[error("a key store already exists at {0}; init never replaces one")]
    Exists(String),
    /// The store is not the one this sidecar last ran with.
    #[error("{0}. Revocations recorded since are not in it: re-issue them once it runs. Accept this store with `kms-sidecar init --config <file> --accept-restore`")]
    Restored(String),
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
    dir: std::path::PathBuf,
    id: String,
    /// Serialises writers of `last-run.json` (revocations commit concurrently).
    last_run: std::sync::Mutex<()>,
    #[cfg(test)]
    fail_before_events: std::sync::atomic::AtomicBool,
}

fn random_id() -> Result<String, StoreError> {
    let mut b = [0u8; 16];
    aws_lc_rs::rand::fill(&mut b).map_err(|_| StoreError::Db("random number generator failed".into()))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

impl Store {
    /// Opens the existing store in `dir`; a missing one is an error (see [`Store::create`]).
    pub fn open(dir: &Path, sealer: Sealer) -> Result<Store, StoreError> {
        let path = dir.join(DB_FILE);
        if !path.exists() {
            return Err(StoreError::Missing(path.display().to_string()));
        }
        Self::open_db(dir, sealer, false)
    }

    /// Creates a new store in `dir` with a fresh store id; an existing one is an error.
    pub fn create(dir: &Path, sealer: Sealer) -> Result<Store, StoreError> {
        let path = dir.join(DB_FILE);
        if path.exists() {
            return Err(StoreError::Exists(path.display().to_string()));
        }
        let store = Self::open_db(dir, sealer, true)?;
        store.record_last_run()?;
        Ok(store)
    }

    fn open_db(dir: &Path, sealer: Sealer, create: bool) -> Result<Store, StoreError> {
        let path = dir.join(DB_FILE);
        permission::private_dir(dir).map_err(db)?;
        permission::private_file(&path).map_err(db)?;
        let mut builder = Database::builder();
        builder.set_check_integrity_on_open(true);
        let database = if create { builder.create(&path) } else { builder.open(&path) }.map_err(db)?;
        let mut store = Store {
            db: database,
            sealer,
            dir: dir.to_owned(),
            id: String::new(),
            last_run: std::sync::Mutex::new(()),
            #[cfg(test)]
            fail_before_events: Default::default(),
        };
        let (canary, id) = {
            let tx = store.db.begin_read().map_err(db)?;
            match tx.open_table(META) {
                Ok(t) => (
                    t.get("canary").map_err(db)?.map(|v| v.value().to_vec()),
                    t.get("store_id").map_err(db)?.map(|v| String::from_utf8_lossy(v.value()).into_owned()),
                ),
                Err(redb::TableError::TableDoesNotExist(_)) => (None, None),
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
            None if !create => return Err(StoreError::Corrupt("canary".into())),
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
        store.id = match id {
            Some(id) => id,
            // Created now, or by a version without store ids: given one once, durably.
            None => {
                let id = random_id()?;
                let tx = store.db.begin_write().map_err(db)?;
                tx.open_table(META).map_err(db)?.insert("store_id", id.as_bytes()).map_err(db)?;
                tx.commit().map_err(db)?;
                id
            }
        };
        Ok(store)
    }

    /// The store's id (random, made when the store was created).
    pub fn id(&self) -> &str {
        &self.id
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
    pub fn append_revocations(&self, events: Vec<Revocation>) -> Result<Vec<Revocation>, StoreError> {
        self.commit(&[], &[], &[], &[], events)
    }

    /// Numbers `events` after the feed's last position and inserts them into `tx`.
    fn insert_revocations(tx: &redb::WriteTransaction, events: &mut [Revocation]) -> Result<(), StoreError> {
        let mut t = tx.open_table(REVOCATIONS).map_err(db)?;
        let mut seq = t.last().map_err(db)?.map_or(0, |(k, _)| k.value());
        for e in events {
            seq += 1;
            e.seq = seq;
            t.insert(seq, serde_json::to_vec(e).map_err(db)?.as_slice()).map_err(db)?;
        }
        Ok(())
    }

    /// Revocations with a sequence number above `after`, at most `limit`, and the
    /// feed's last sequence number, read together.
    pub fn revocations_after(&self, after: u64, limit: usize) -> Result<(Vec<Revocation>, u64), StoreError> {
        let tx = self.db.begin_read().map_err(db)?;
        let t = match tx.open_table(REVOCATIONS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok((Vec::new(), 0)),
            Err(e) => return Err(db(e)),
        };
        let last = t.last().map_err(db)?.map_or(0, |(k, _)| k.value());
        let mut out = Vec::new();
        for row in t.range(after.saturating_add(1)..).map_err(db)?.take(limit) {
            let (k, v) = row.map_err(db)?;
            out.push(
                serde_json::from_slice(v.value())
                    .map_err(|_| StoreError::Corrupt(format!("revocation {}", k.value())))?,
            );
        }
        Ok((out, last))
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

    /// Writes tenants and keys, deletes keys and tenants, and appends `events` to the
    /// revocation feed, all in one durable transaction: either every change is
    /// committed or none is. Returns the events numbered.
    pub fn commit(
        &self,
        tenants: &[TenantRecord],
        keys: &[KeyRecord],
        delete_keys: &[String],
        delete_tenants: &[String],
        mut events: Vec<Revocation>,
    ) -> Result<Vec<Revocation>, StoreError> {
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
        // Tests inject a failure here, between the key changes and their feed events:
        // the transaction is then dropped uncommitted and neither is written.
        #[cfg(test)]
        if self.fail_before_events.load(std::sync::atomic::Ordering::Acquire) {
            return Err(StoreError::Db("injected failure".into()));
        }
        Self::insert_revocations(&tx, &mut events)?;
        tx.commit().map_err(db)?;
        if !events.is_empty() {
            self.note_feed_advanced();
        }
        Ok(events)
    }

    /// Makes the next commits fail after their key changes and before their feed events.
    #[cfg(test)]
    pub fn inject_failure_before_events(&self, on: bool) {
        self.fail_before_events.store(on, std::sync::atomic::Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &Path) -> Store {
        match Store::open(dir, Sealer::new(&[7; 32]).unwrap()) {
            Ok(s) => s,
            Err(StoreError::Missing(_)) => Store::create(dir, Sealer::new(&[7; 32]).unwrap()).unwrap(),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn stores_are_created_only_explicitly_and_restores_are_detected() {
        let dir = tempfile::tempdir().unwrap();
        let sealer = || Sealer::new(&[7; 32]).unwrap();
        assert!(matches!(Store::open(dir.path(), sealer()), Err(StoreError::Missing(_))));
        let s = Store::create(dir.path(), sealer()).unwrap();
        let id = s.id().to_owned();
        assert_eq!(id.len(), 32);
        let rev = |t: &str| Revocation { tenant: t.into(), before: Some(1), ..Default::default() };
        s.append_revocations(vec![rev("a")]).unwrap();
        drop(s);
        assert!(matches!(Store::create(dir.path(), sealer()), Err(StoreError::Exists(_))));
        let copy = tempfile::tempdir().unwrap();
        std::fs::copy(dir.path().join(DB_FILE), copy.path().join(DB_FILE)).unwrap();
        let s = Store::open(dir.path(), sealer()).unwrap();
        assert_eq!(s.id(), id, "the id is kept");
        s.check_last_run().unwrap();
        s.append_revocations(vec![rev("b")]).unwrap();
        drop(s);
        // The older copy put back in place: its feed is behind the last run's.
        std::fs::copy(copy.path().join(DB_FILE), dir.path().join(DB_FILE)).unwrap();
        let s = Store::open(dir.path(), sealer()).unwrap();
        let err = s.check_last_run().unwrap_err().to_string();
        assert!(
            err.contains("older than the one this sidecar last ran with") && err.contains("--accept-restore"),
            "{err}"
        );
        s.record_last_run().unwrap();
        s.check_last_run().unwrap();
        drop(s);
        // Another store in its place.
        let other = tempfile::tempdir().unwrap();
        drop(Store::create(other.path(), sealer()).unwrap());
        std::fs::copy(other.path().join(DB_FILE), dir.path().join(DB_FILE)).unwrap();
        let err = Store::open(dir.path(), sealer()).unwrap().check_last_run().unwrap_err().to_string();
        assert!(err.contains("is not the one this sidecar last ran with"), "{err}");
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
