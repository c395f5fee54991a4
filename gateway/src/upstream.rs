//! Upstream pools: one Pingora `LoadBalancer` per configured upstream, with its
//! health check run by a background service, and the peer settings (timeouts,
//! retries) prebuilt from config.

use gateway_core::config::Upstream;
use pingora::lb::health_check::HttpHealthCheck;
use pingora::lb::selection::RoundRobin;
use pingora::lb::{Backend, LoadBalancer};
use pingora::prelude::HttpPeer;
use pingora::services::background::{background_service, GenBackgroundService};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// One upstream pool.
pub struct Pool {
    /// Round-robin balancer over healthy peers.
    pub lb: Arc<LoadBalancer<RoundRobin>>,
    /// Config of the pool.
    pub settings: Upstream,
}

impl Pool {
    /// Picks a healthy peer not in `tried`, as an `HttpPeer` with the pool's timeouts.
    pub fn peer(&self, tried: &[Backend]) -> Option<(Backend, HttpPeer)> {
        let backend = self
            .lb
            .select_with(b"", 256, |b, healthy| healthy && !tried.contains(b))?;
        let mut peer = HttpPeer::new(backend.addr.clone(), false, String::new());
        peer.options.connection_timeout = Some(self.settings.connect_timeout);
        peer.options.total_connection_timeout = Some(self.settings.connect_timeout);
        peer.options.read_timeout = Some(self.settings.read_timeout);
        peer.options.write_timeout = Some(self.settings.read_timeout);
        Some((backend, peer))
    }
}

/// A background service running one pool's health checks.
pub type HealthService = GenBackgroundService<LoadBalancer<RoundRobin>>;

/// Builds every pool; health-checked pools also yield a background service to add.
pub fn build(
    upstreams: &std::collections::BTreeMap<String, Upstream>,
) -> anyhow::Result<(HashMap<String, Pool>, Vec<HealthService>)> {
    let mut pools = HashMap::new();
    let mut services = Vec::new();
    for (name, u) in upstreams {
        let mut lb =
            LoadBalancer::<RoundRobin>::try_from_iter(u.peers.iter().map(|a| a.to_string()))?;
        let lb = match &u.health_check {
            Some(hc) => {
                let mut check = HttpHealthCheck::new("localhost", false);
                check.req.set_uri(hc.path.parse()?);
                check.peer_template.options.connection_timeout = Some(Duration::from_secs(1));
                check.consecutive_failure = 2;
                lb.set_health_check(Box::new(check));
                lb.health_check_frequency = Some(hc.interval);
                lb.parallel_health_check = true;
                let service = background_service(&format!("health check {name}"), lb);
                let task = service.task();
                services.push(service);
                task
            }
            None => Arc::new(lb),
        };
        pools.insert(
            name.clone(),
            Pool {
                lb,
                settings: u.clone(),
            },
        );
    }
    Ok((pools, services))
}
