//! `last-run.json` beside the database: the store id and the revocation feed's last
//! position this sidecar wrote, so that a store restored from an older copy or
//! replaced is refused until an operator accepts it. Written durably (temporary
//! file, fsync, rename, fsync of the directory).

use super::{db, Store, StoreError, DB_FILE};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Name of the last-run record in `data_dir`.
pub const LAST_RUN_FILE: &str = "last-run.json";

/// What this sidecar last knew of its store (`last-run.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct LastRun {
    store_id: String,
    seq: u64,
}

/// Writes `bytes` to `path` durably: a temporary file, fsync, rename, fsync of the directory.
pub fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?
    };
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

impl Store {
    /// Refuses a store that is not the one this sidecar last ran with: another store
    /// id, or a revocation feed behind the last position recorded (an older copy).
    /// Without a record (first run of this version) the store is accepted.
    pub fn check_last_run(&self) -> Result<(), StoreError> {
        let path = self.dir.join(LAST_RUN_FILE);
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(StoreError::Db(format!("{}: {e}", path.display()))),
        };
        let last: LastRun =
            serde_json::from_slice(&text).map_err(|_| StoreError::Corrupt(path.display().to_string()))?;
        let seq = self.last_revocation()?;
        let db_path = self.dir.join(DB_FILE);
        if last.store_id != self.id {
            return Err(StoreError::Restored(format!(
                "the key store at {} (id {}) is not the one this sidecar last ran with (id {}): replaced or restored from another store",
                db_path.display(),
                self.id,
                last.store_id
            )));
        }
        if seq < last.seq {
            return Err(StoreError::Restored(format!(
                "the key store at {} is older than the one this sidecar last ran with: its revocation feed ends at {seq}, the last run's at {} (restored from an older copy?)",
                db_path.display(),
                last.seq
            )));
        }
        Ok(())
    }

    /// Records this store (id and feed position) as the one this sidecar runs with.
    pub fn record_last_run(&self) -> Result<(), StoreError> {
        // One writer at a time, reading the position under the lock: the record only
        // moves forward and is never a half-written file.
        let _w = self.last_run.lock().unwrap_or_else(|p| p.into_inner());
        let last = LastRun { store_id: self.id.clone(), seq: self.last_revocation()? };
        let bytes = serde_json::to_vec(&last).map_err(db)?;
        write_durably(&self.dir.join(LAST_RUN_FILE), &bytes).map_err(db)
    }

    /// After a revocation commit: a failure to record it only weakens restore
    /// detection (the record lags, never leads), so it is logged, not returned.
    pub(super) fn note_feed_advanced(&self) {
        if let Err(e) = self.record_last_run() {
            tracing::error!(error = %e, "could not update last-run.json (restore detection is behind)");
        }
    }
}
