//! The "key rotation" task: applies the rotation timeline of every tenant every
//! [`crate::default::ROTATION_TICK`], counting and logging each scheduled rotation.

use super::Kms;
use crate::clock::now;
use crate::metrics::Metrics;
use crate::rotation::Change;
use std::sync::Arc;

/// Runs until aborted; a failed tick is logged and tried again on the next.
pub async fn run(kms: Arc<Kms>, metrics: Metrics) {
    loop {
        let k = kms.clone();
        match tokio::task::spawn_blocking(move || k.tick(now())).await {
            Ok(Ok(changes)) => {
                for (tenant, change) in changes {
                    if let Change::Create { key_use, .. } = change {
                        metrics.rotations.with_label_values(&[&tenant, key_use.as_str(), "scheduled"]).inc();
                        tracing::info!(%tenant, key_use = key_use.as_str(), "scheduled rotation: next key created");
                    }
                }
            }
            Ok(Err(e)) => tracing::error!(error = %e, "rotation failed; will retry"),
            Err(e) => tracing::error!(error = %e, "rotation task failed"),
        }
        tokio::time::sleep(crate::default::ROTATION_TICK).await;
    }
}
