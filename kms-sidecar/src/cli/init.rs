//! `kms-sidecar init`: creates the key store of a config (never replacing one), or
//! with `--accept-restore` accepts the store in place after a restore.

use super::load::load;
use crate::store::Store;

/// Creates the store, or accepts the existing one.
pub fn init(path: &std::path::Path, accept_restore: bool) -> anyhow::Result<()> {
    let (cfg, sealer) = load(path)?;
    let dir = std::path::Path::new(&cfg.data_dir);
    if accept_restore {
        let store = Store::open(dir, sealer)?;
        if let Err(e) = store.check_last_run() {
            tracing::warn!(reason = %e, "accepting the store as it is");
        }
        store.record_last_run()?;
        println!("accepted the key store at {} (store id {}) as this sidecar's", dir.display(), store.id());
    } else {
        let store = Store::create(dir, sealer)?;
        println!("created a new key store at {} (store id {})", dir.display(), store.id());
    }
    Ok(())
}
