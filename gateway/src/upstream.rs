//! Upstream pools: one Pingora `LoadBalancer` per configured upstream with its peer
//! settings (timeouts, retries) prebuilt from config, and each pool's HTTP health
//! check ([`check`]), run when due by the "upstream health" background service
//! (`crate::background::health`).

pub mod check;

use gateway_core::config::Upstream;
use pingora::lb::selection::RoundRobin;
use pingora::lb::{Backend, LoadBalancer};
use pingora::prelude::HttpPeer;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Instant;

/// One upstream pool.
pub struct Pool {
    /// Round-robin balancer over healthy peers.
    pub lb: LoadBalancer<RoundRobin>,
    /// The pool's one peer (and its [`backend_id`]) when it has one and no health
    /// check: there is nothing to choose, so no balancer runs per request.
    only: Option<(u64, Backend)>,
    /// Config of the pool.
    pub settings: Upstream,
    /// TLS material, with `tls:` configured.
    pub tls: Option<crate::tls::upstream::UpstreamTlsFiles>,
    next_check: Mutex<Instant>,
}

impl Pool {
    /// Picks a healthy peer not in `tried` (by [`backend_id`]), as its id and an
    /// `HttpPeer` with the pool's timeouts.
    pub fn peer(&self, tried: &[u64]) -> Option<(u64, HttpPeer)> {
        if let Some((id, backend)) = &self.only {
            return (!tried.contains(id)).then(|| (*id, self.http_peer(backend)));
        }
        let fresh = |b: &Backend| tried.is_empty() || !tried.contains(&backend_id(b));
        let backend = self.lb.select_with(b"", 256, |b, healthy| healthy && fresh(b))?;
        Some((backend_id(&backend), self.http_peer(&backend)))
    }

    fn http_peer(&self, backend: &Backend) -> HttpPeer {
        let mut peer = HttpPeer::new(backend.addr.clone(), false, String::new());
        peer.options.connection_timeout = Some(self.settings.connect_timeout);
        peer.options.total_connection_timeout = Some(self.settings.connect_timeout);
        peer.options.read_timeout = Some(self.settings.read_timeout);
        peer.options.write_timeout = Some(self.settings.read_timeout);
        if let Some(tls) = &self.tls {
            tls.apply(&mut peer);
        }
        peer
    }

    /// Runs the health check if one is configured and due.
    pub async fn check_if_due(&self, now: Instant) {
        let Some(hc) = &self.settings.health_check else {
            return;
        };
        {
            let mut next = self.next_check.lock().unwrap_or_else(|p| p.into_inner());
            if *next > now {
                return;
            }
            *next = now + hc.interval;
        }
        self.lb.backends().run_health_check(true).await;
    }
}

/// A peer's identity within its pool (its address), as a number: what a request
/// keeps of the peers it tried.
pub fn backend_id(b: &Backend) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault};
    BuildHasherDefault::<std::hash::DefaultHasher>::default().hash_one(&b.addr)
}

/// Builds every pool of a config.
pub fn build(upstreams: &BTreeMap<String, Upstream>) -> anyhow::Result<HashMap<String, Pool>> {
    let mut pools = HashMap::new();
    for (name, u) in upstreams {
        let mut lb = LoadBalancer::<RoundRobin>::try_from_iter(u.peers.iter().map(|a| a.to_string()))?;
        let tls = match &u.tls {
            Some(t) => Some(
                crate::tls::upstream::UpstreamTlsFiles::load(name, t, None)
                    .map_err(|problems| anyhow::anyhow!(problems.join("\n")))?,
            ),
            None => None,
        };
        if let Some(hc) = &u.health_check {
            lb.set_health_check(Box::new(check::PoolCheck::new(&hc.path, tls.clone())?));
        }
        let backends = lb.backends().get_backend();
        let only = match (backends.len(), &u.health_check) {
            (1, None) => backends.first().map(|b| (backend_id(b), b.clone())),
            _ => None,
        };
        let next_check = Mutex::new(Instant::now());
        pools.insert(name.clone(), Pool { lb, only, settings: u.clone(), tls, next_check });
    }
    Ok(pools)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_core::config::HealthCheck;
    use std::time::Duration;

    fn upstream(peers: &[&str], health_check: bool) -> Upstream {
        Upstream {
            name: "u".into(),
            peers: peers.iter().map(|p| p.parse().unwrap()).collect(),
            health_check: health_check
                .then(|| HealthCheck { path: "/health".into(), interval: Duration::from_secs(5) }),
            connect_timeout: Duration::from_secs(1),
            read_timeout: Duration::from_secs(30),
            retries: 1,
            tls: None,
        }
    }

    fn pool(peers: &[&str], health_check: bool) -> Pool {
        build(&BTreeMap::from([("u".to_string(), upstream(peers, health_check))])).unwrap().remove("u").unwrap()
    }

    fn addr(peer: &HttpPeer) -> String {
        use pingora::upstreams::peer::Peer;
        peer.address().to_string()
    }

    #[test]
    fn one_unchecked_peer_is_used_as_it_is_until_tried() {
        let p = pool(&["127.0.0.1:9001"], false);
        assert!(p.only.is_some());
        let (id, peer) = p.peer(&[]).unwrap();
        assert_eq!(addr(&peer), "127.0.0.1:9001");
        assert_eq!(peer.options.read_timeout, Some(Duration::from_secs(30)));
        assert_eq!(id, backend_id(p.lb.backends().get_backend().first().unwrap()));
        // A retry finds no other peer.
        assert!(p.peer(&[id]).is_none());
    }

    #[test]
    fn checked_or_several_peers_go_through_the_balancer() {
        let checked = pool(&["127.0.0.1:9001"], true);
        assert!(checked.only.is_none());
        let (id, peer) = checked.peer(&[]).unwrap();
        assert_eq!(addr(&peer), "127.0.0.1:9001");
        assert!(checked.peer(&[id]).is_none());

        let two = pool(&["127.0.0.1:9001", "127.0.0.1:9002"], false);
        assert!(two.only.is_none());
        let (first, peer) = two.peer(&[]).unwrap();
        // A retry gets the other peer, whichever the first was.
        let (second, other) = two.peer(&[first]).unwrap();
        assert_ne!(first, second);
        assert_ne!(addr(&peer), addr(&other));
        assert!(two.peer(&[first, second]).is_none());
    }
}
