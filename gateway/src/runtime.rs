//! Everything built from one config, swapped whole on reload: the decision engine
//! (routes, tenants, header mappings, key cache), the upstream pools and the key
//! fetcher. Requests load the current runtime once and keep it for their whole life,
//! so none ever sees half of an old config and half of a new one.

use crate::keys::KeyFetcher;
use crate::metrics::{Metrics, RouteMetrics};
use crate::replay::SidecarReplayStore;
use crate::upstream::{self, Pool};
use arc_swap::ArcSwap;
use gateway_core::engine::Shared;
use gateway_core::replay::{MemoryReplayStore, ReplayStore};
use gateway_core::route::Route;
use gateway_core::tenant::Tenant;
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
    /// Metric label handles of each route, in the router's order.
    route_metrics: Vec<RouteMetrics>,
    /// Metric label handles of requests no route matched.
    unrouted: RouteMetrics,
    /// Rate-limit counters and answer headers.
    pub traffic: crate::traffic::Traffic,
}

fn decryption_source(t: &Tenant) -> Option<&gateway_core::tenant::DecryptionSource> {
    t.encryption.as_ref().map(|e| &e.keys)
}

/// The current runtime, shared by every service.
pub type SharedRuntime = Arc<ArcSwap<Runtime>>;

impl Runtime {
    /// Builds a runtime; with `previous`, tenants whose key source is unchanged keep
    /// their cached keys, so a reload never drops keys or forces a refetch storm.
    pub fn build(config: Config, previous: Option<&Runtime>, metrics: &Metrics) -> anyhow::Result<Runtime> {
        let required = config.required_tenants();
        let pools = upstream::build(&config.upstreams)?;
        // Revocations and used one-time ids outlive a config: a reload must not forget
        // them (the one-time store is replaced only when its own settings change).
        let replay: Arc<dyn ReplayStore> = match (previous, &config.replay_store) {
            (Some(p), settings) if p.engine.config.replay_store == *settings => p.engine.replay.clone(),
            (_, Some(settings)) => Arc::new(SidecarReplayStore::new(settings.clone())?),
            (_, None) => Arc::new(MemoryReplayStore::new(config.replay_cache_size)),
        };
        let shared = Shared {
            revocations: previous.map(|p| p.engine.revocations.clone()).unwrap_or_default(),
            replay,
            observer: Some(Arc::new(crate::metrics::DecryptObserver(metrics.decrypt_seconds.clone()))),
        };
        let engine = Arc::new(Engine::with_shared(config, shared));
        if let Some(prev) = previous {
            for t in &engine.config.tenants {
                let old = prev.engine.config.tenants.iter().find(|o| o.id == t.id);
                if old.is_some_and(|o| o.keys == t.keys) {
                    engine.keys.adopt(&prev.engine.keys, &t.id);
                }
                let same_source =
                    |o: &Tenant| decryption_source(o).is_some() && decryption_source(o) == decryption_source(t);
                if old.is_some_and(same_source) {
                    engine.dkeys.adopt(&prev.engine.dkeys, &t.id);
                }
            }
        }
        let fetcher =
            Arc::new(KeyFetcher::new(&engine.config, engine.keys.clone(), engine.dkeys.clone(), metrics.clone())?);
        let route_metrics = engine.config.router.routes().iter().map(|r| metrics.route(&r.name, &r.upstream)).collect();
        let unrouted = metrics.route("none", "");
        let traffic = crate::traffic::Traffic::build(&engine.config, previous.map(|p| &p.traffic));
        Ok(Runtime { engine, pools, fetcher, required, route_metrics, unrouted, traffic })
    }

    /// The metric label handles of `route` (one of this runtime's), or of no route.
    pub fn route_metrics(&self, route: Option<&Arc<Route>>) -> &RouteMetrics {
        let routes = self.engine.config.router.routes();
        route
            .and_then(|r| routes.iter().position(|x| Arc::ptr_eq(x, r)))
            .map_or(&self.unrouted, |i| &self.route_metrics[i])
    }

    /// The required tenants without usable signing keys, or (JWE tenants) decryption
    /// keys, at `now` (empty when ready).
    pub fn missing_keys(&self, now: i64) -> Vec<&str> {
        let required = self.required.iter().map(String::as_str);
        let mut missing = self.engine.keys.missing(required.clone(), now);
        for t in self.engine.dkeys.missing(required, now) {
            if !missing.contains(&t) {
                missing.push(t);
            }
        }
        missing
    }
}

/// Builds a shared handle around a first runtime.
pub fn shared(rt: Runtime) -> SharedRuntime {
    Arc::new(ArcSwap::from_pointee(rt))
}

impl crate::traffic::View for Runtime {
    fn traffic(&self) -> &crate::traffic::Traffic {
        &self.traffic
    }
    fn config(&self) -> &gateway_core::config::Config {
        &self.engine.config
    }
}
