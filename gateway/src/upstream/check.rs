//! The HTTP health check of an upstream pool, over the pool's TLS settings with the
//! client certificate in force. Pingora's `HttpHealthCheck` keeps the peer it was built
//! with, so [`PoolCheck`] rebuilds it whenever the pool's client certificate store has
//! swapped its pair (on a file change or SIGHUP, `crate::background::cert_watch`):
//! health checks present the certificate request traffic presents, without a reload.

use crate::tls::upstream::UpstreamTlsFiles;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::lb::health_check::{HealthCheck, HttpHealthCheck};
use pingora::lb::Backend;
use pingora::utils::tls::CertKey;
use std::sync::Arc;
use std::time::Duration;

/// Failed checks in a row that make a peer unhealthy (one success makes it healthy).
const FAILURES_TO_UNHEALTHY: usize = 2;

/// One pool's health check: `GET <path>` answered 200, with the pool's TLS.
pub struct PoolCheck {
    path: http::Uri,
    tls: Option<UpstreamTlsFiles>,
    built: ArcSwap<Built>,
}

/// A Pingora check and the client certificate its peer presents.
struct Built {
    check: HttpHealthCheck,
    client: Option<Arc<CertKey>>,
}

impl PoolCheck {
    /// The check of `path` with these TLS settings (`None`: plain HTTP).
    pub fn new(path: &str, tls: Option<UpstreamTlsFiles>) -> anyhow::Result<PoolCheck> {
        let path: http::Uri = path.parse()?;
        let built = ArcSwap::from_pointee(build(&path, tls.as_ref()));
        Ok(PoolCheck { path, tls, built })
    }

    /// The check for the client certificate in force now, rebuilt if it changed.
    fn in_force(&self) -> Arc<Built> {
        let built = self.built.load_full();
        let now = self.tls.as_ref().and_then(|t| t.client.as_ref()).map(|c| c.current().pairs[0].cert_key.clone());
        let same = match (&built.client, &now) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        if same {
            return built;
        }
        let fresh = Arc::new(build(&self.path, self.tls.as_ref()));
        self.built.store(fresh.clone());
        fresh
    }
}

fn build(path: &http::Uri, tls: Option<&UpstreamTlsFiles>) -> Built {
    let mut check = HttpHealthCheck::new("localhost", false);
    if let Some(t) = tls {
        t.apply(&mut check.peer_template);
    }
    check.req.set_uri(path.clone());
    check.peer_template.options.connection_timeout = Some(Duration::from_secs(1));
    check.consecutive_failure = FAILURES_TO_UNHEALTHY;
    let client = check.peer_template.client_cert_key.clone();
    Built { check, client }
}

#[async_trait]
impl HealthCheck for PoolCheck {
    async fn check(&self, target: &Backend) -> pingora::Result<()> {
        self.in_force().check.check(target).await
    }

    fn health_threshold(&self, success: bool) -> usize {
        self.built.load().check.health_threshold(success)
    }
}
