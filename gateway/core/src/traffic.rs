//! Edge traffic settings of the whole gateway and of each route: rate limits
//! ([`crate::ratelimit`]), CORS ([`crate::cors`]) and response headers
//! ([`crate::response_headers`]). Validated from the config's `rate_limits`, `cors`,
//! `response_headers` and `auth_failure_limit` fields (`config::traffic`).

use crate::cors::Cors;
use crate::ratelimit::RateLimit;
use crate::response_headers::ResponseHeaders;
use std::sync::Arc;

/// One route's traffic settings, with the global ones already applied.
#[derive(Debug, Clone, Default)]
pub struct RouteTraffic {
    /// The route's limits, in config order.
    pub rate_limits: Vec<RateLimit>,
    /// The route's CORS policy (its own, else the global one).
    pub cors: Option<Arc<Cors>>,
    /// Response headers (global merged with the route's own).
    pub response_headers: Arc<ResponseHeaders>,
}

impl RouteTraffic {
    /// Whether any of the route's limits is keyed by the client address (checked
    /// before the decision, which needs a route lookup of its own).
    pub fn has_client_limit(&self) -> bool {
        self.rate_limits.iter().any(|l| !l.key.needs_token())
    }
}

/// Gateway-wide traffic settings.
#[derive(Debug, Clone, Default)]
pub struct TrafficSettings {
    /// CORS for routes without their own (and for nothing else).
    pub cors: Option<Arc<Cors>>,
    /// Response headers on answers that match no route.
    pub response_headers: Arc<ResponseHeaders>,
    /// Refused tokens allowed per client address (`auth_failure_limit`).
    pub auth_failures: Option<RateLimit>,
}
