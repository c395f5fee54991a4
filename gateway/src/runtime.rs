//! Everything built from one config, swapped whole on reload: the decision engine
//! (routes, tenants, header mappings, key cache), the upstream pools and the key
//! fetcher. Requests load the current runtime once and keep it for their whole life,
//! so none ever sees half of an old config and half of a new one.

use crate::keys::KeyFetcher;
use crate::metrics::Metrics;
use crate::upstream::{self, Pool};
use arc_swap::ArcSwap;
use gateway_core::{Config, Engine};
use std::collections::HashMap;
use std::sync::Arc;

/// One config's worth of live state.
pub struct Runtime {
    /// Decision core (config, verifier, key cache).
    pub engine: Arc<Engine>,
    /// Upstream pools by name.
    pub pools: HashMap<String, Pool>,
    /// Key fetcher for this runtime's tenants.
    pub fetcher: Arc<KeyFetcher>,
    /// Tenants readiness waits for.
    pub required: Vec<String>,
}

/// The current runtime, shared by every service.
pub type SharedRuntime = Arc<ArcSwap<Runtime>>;

impl Runtime {
    /// Builds a runtime; with `previous`, tenants whose key source is unchanged keep
    /// their cached keys, so a reload never drops keys or forces a refetch storm.
    pub fn build(config: Config, previous: Option<&Runtime>, metrics: &Metrics) -> anyhow::Result<Runtime> {
        let required = config.required_tenants();
        let pools = upstream::build(&config.upstreams)?;
        let revocations = previous.map_or_else(Arc::default, |p| p.engine.revocations.clone());
        let engine = Arc::new(Engine::with_revocations(config, revocations));
        if let Some(prev) = previous {
            for t in &engine.config.tenants {
                let same = prev.engine.config.tenants.iter().any(|o| o.id == t.id && o.keys == t.keys);
                if same {
                    engine.keys.adopt(&prev.engine.keys, &t.id);
                }
            }
        }
        let fetcher = Arc::new(KeyFetcher::new(&engine.config, engine.keys.clone(), metrics.clone())?);
        Ok(Runtime { engine, pools, fetcher, required })
    }

    /// The required tenants without usable keys at `now` (empty when ready).
    pub fn missing_keys(&self, now: i64) -> Vec<&str> {
        self.engine.keys.missing(self.required.iter().map(String::as_str), now)
    }
}

/// Builds a shared handle around a first runtime.
pub fn shared(rt: Runtime) -> SharedRuntime {
    Arc::new(ArcSwap::from_pointee(rt))
}
