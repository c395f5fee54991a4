//! The gateway's Prometheus metrics, registered into an explicit registry.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use std::sync::{Arc, OnceLock};

/// Every metric the gateway exports.
#[derive(Clone)]
pub struct Metrics {
    /// The registry served on `/metrics`.
    pub registry: Registry,
    /// Requests by route, status and decision.
    pub requests: IntCounterVec,
    /// Refusals by reason.
    pub denials: IntCounterVec,
    /// Verification latency by algorithm (cache misses and hits alike).
    pub verify_seconds: HistogramVec,
    /// Key fetches by tenant and result.
    pub key_fetches: IntCounterVec,
    /// Decryption key fetches by tenant, trigger and result.
    pub decryption_key_fetches: IntCounterVec,
    /// JWE decryption latency by key management algorithm.
    pub decrypt_seconds: HistogramVec,
    /// Age of each tenant's key set.
    pub key_age: IntGaugeVec,
    /// Upstream request latency by upstream.
    pub upstream_seconds: HistogramVec,
    /// Config reloads by result.
    pub reloads: IntCounterVec,
    /// Audit records written.
    pub audit_written: IntCounter,
    /// Audit records not written: queue full, write or rotation failure, too large.
    pub audit_dropped: IntCounter,
    /// Anonymous audit records left out by the anonymous trail's rate limit.
    pub audit_sampled_out: IntCounter,
    /// Admin requests refused for a missing or wrong credential.
    pub admin_auth_failures: IntCounter,
    /// Revocation entries held.
    pub revocations: IntGauge,
    /// 1 while the revocation feed answers.
    pub revocation_feed_up: IntGauge,
    /// Seconds since the last successful feed poll (-1 before the first).
    pub revocation_feed_lag: IntGauge,
    /// Verified-token cache hits and misses of the current config.
    pub token_cache: IntGaugeVec,
    /// One-time token ids held (unexpired uses remembered).
    pub one_time_ids: IntGauge,
    /// One-time id checks by answer: `first`, or the refusal reason.
    pub one_time_checks: HistogramVec,
    /// Inbound header names with `_`, by what was done: `drop`, `reject` or `allow`.
    pub underscore_headers: IntCounterVec,
    /// Access log lines not written: queue full or write failure.
    pub access_log_dropped: IntCounter,
    /// Requests refused over a rate limit, by route and key kind.
    pub rate_limited: IntCounterVec,
    /// `verify_seconds` children by algorithm, resolved on first use.
    verify_by_alg: Arc<[(&'static str, OnceLock<Histogram>)]>,
}

/// The algorithm labels of `gateway_token_verify_seconds` kept resolved.
const ALG_LABELS: [&str; 5] = ["RS256", "PS256", "ES256", "EdDSA", "unsigned"];

/// Statuses whose `gateway_requests_total` children each route keeps resolved; others
/// are looked up per request.
const STATUSES: [u16; 30] = [
    200, 201, 202, 204, 206, 301, 302, 303, 304, 307, 308, 400, 401, 403, 404, 405, 408, 409, 410, 413, 414, 415, 422,
    429, 431, 500, 501, 502, 503, 504,
];

/// Label handles of one route (or of requests no route matched), resolved on first
/// use and kept for the runtime's life, so a request costs no label lookup: its
/// `gateway_requests_total` children by status and decision, and its upstream's
/// `gateway_upstream_seconds` child.
pub struct RouteMetrics {
    route: String,
    upstream: String,
    requests: IntCounterVec,
    upstream_seconds_vec: HistogramVec,
    /// `[status slot][deny]`.
    by_status: Box<[[OnceLock<IntCounter>; 2]; STATUSES.len()]>,
    upstream_seconds: OnceLock<Histogram>,
}

impl RouteMetrics {
    /// Counts one request with this response status (0: none) and decision.
    pub fn request(&self, status: u16, deny: bool) {
        let decision = if deny { "deny" } else { "allow" };
        let mut buf = [0u8; 5];
        let mut lookup =
            || self.requests.with_label_values(&[self.route.as_str(), status_label(status, &mut buf), decision]);
        match STATUSES.iter().position(|s| *s == status) {
            Some(slot) => self.by_status[slot][usize::from(deny)].get_or_init(lookup).inc(),
            None => lookup().inc(),
        }
    }

    /// Observes the time to the upstream response's end.
    pub fn upstream_seconds(&self, seconds: f64) {
        self.upstream_seconds
            .get_or_init(|| self.upstream_seconds_vec.with_label_values(&[self.upstream.as_str()]))
            .observe(seconds);
    }
}

/// A status code as label text, without allocating.
fn status_label(status: u16, buf: &mut [u8; 5]) -> &str {
    let mut n = status;
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[at..]).unwrap_or("0")
}

impl Metrics {
    /// Creates and registers every metric in a fresh registry.
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("gateway_requests_total", "Requests by route, status and decision."),
            &["route", "status", "decision"],
        )?;
        let denials = IntCounterVec::new(Opts::new("gateway_denials_total", "Refusals by reason."), &["reason"])?;
        let verify_seconds = HistogramVec::new(
            HistogramOpts::new("gateway_token_verify_seconds", "Token verification latency.")
                .buckets(vec![1e-6, 5e-6, 2e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 5e-3, 2.5e-2]),
            &["alg"],
        )?;
        let key_fetches = IntCounterVec::new(
            Opts::new("gateway_key_fetches_total", "Key set fetches by tenant, reason and result."),
            &["tenant", "trigger", "result"],
        )?;
        let decryption_key_fetches = IntCounterVec::new(
            Opts::new(
                "gateway_decryption_key_fetches_total",
                "Decryption key set fetches (sidecar channel or file) by tenant, reason and result.",
            ),
            &["tenant", "trigger", "result"],
        )?;
        let decrypt_seconds = HistogramVec::new(
            HistogramOpts::new("gateway_token_decrypt_seconds", "JWE decryption latency (cache misses).")
                .buckets(vec![1e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 5e-2]),
            &["alg"],
        )?;
        registry.register(Box::new(decryption_key_fetches.clone()))?;
        registry.register(Box::new(decrypt_seconds.clone()))?;
        let key_age = IntGaugeVec::new(
            Opts::new("gateway_key_set_age_seconds", "Seconds since the tenant's keys were fetched."),
            &["tenant"],
        )?;
        let upstream_seconds = HistogramVec::new(
            HistogramOpts::new("gateway_upstream_seconds", "Time from request to upstream response end."),
            &["upstream"],
        )?;
        let reloads =
            IntCounterVec::new(Opts::new("gateway_config_reloads_total", "Config reloads by result."), &["result"])?;
        registry.register(Box::new(reloads.clone()))?;
        let audit_written = IntCounter::new("gateway_audit_records_total", "Audit records written.")?;
        let audit_dropped = IntCounter::new(
            "gateway_audit_dropped_total",
            "Audit records not written: queue full, write or rotation failure, or larger than a file.",
        )?;
        let audit_sampled_out = IntCounter::new(
            "gateway_audit_sampled_out_total",
            "Anonymous audit records left out by the anonymous trail's rate limit.",
        )?;
        registry.register(Box::new(audit_sampled_out.clone()))?;
        let admin_auth_failures =
            IntCounter::new("gateway_admin_auth_failures_total", "Admin requests with a missing or wrong credential.")?;
        registry.register(Box::new(audit_written.clone()))?;
        registry.register(Box::new(audit_dropped.clone()))?;
        registry.register(Box::new(admin_auth_failures.clone()))?;
        let revocations = IntGauge::new("gateway_revocations", "Revocation entries held.")?;
        let revocation_feed_up = IntGauge::new("gateway_revocation_feed_up", "1 while the revocation feed answers.")?;
        let revocation_feed_lag = IntGauge::new(
            "gateway_revocation_feed_lag_seconds",
            "Seconds since the last successful revocation feed poll (-1 before the first).",
        )?;
        let token_cache = IntGaugeVec::new(
            Opts::new("gateway_token_cache_lookups", "Verified-token cache lookups since the config was loaded."),
            &["result"],
        )?;
        registry.register(Box::new(revocations.clone()))?;
        registry.register(Box::new(revocation_feed_up.clone()))?;
        registry.register(Box::new(revocation_feed_lag.clone()))?;
        registry.register(Box::new(token_cache.clone()))?;
        let one_time_ids =
            IntGauge::new("gateway_one_time_ids", "One-time token ids remembered until their expiry (bounded).")?;
        registry.register(Box::new(one_time_ids.clone()))?;
        let one_time_checks = HistogramVec::new(
            HistogramOpts::new(
                "gateway_one_time_check_seconds",
                "One-time id checks (memory or shared store) by answer.",
            )
            .buckets(vec![1e-6, 1e-5, 1e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 0.1, 1.0]),
            &["result"],
        )?;
        registry.register(Box::new(one_time_checks.clone()))?;
        let underscore_headers = IntCounterVec::new(
            Opts::new(
                "gateway_underscore_headers_total",
                "Inbound header names with an underscore, by action (drop, reject, allow).",
            ),
            &["action"],
        )?;
        registry.register(Box::new(underscore_headers.clone()))?;
        let access_log_dropped = IntCounter::new(
            "gateway_access_log_dropped_total",
            "Access log lines not written: queue full or write failure.",
        )?;
        registry.register(Box::new(access_log_dropped.clone()))?;
        let rate_limited = IntCounterVec::new(
            Opts::new(
                "gateway_rate_limited_total",
                "Requests refused over a rate limit, by route and key kind (tenant, subject, client, auth_failures).",
            ),
            &["route", "key"],
        )?;
        registry.register(Box::new(rate_limited.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(denials.clone()))?;
        registry.register(Box::new(verify_seconds.clone()))?;
        registry.register(Box::new(key_fetches.clone()))?;
        registry.register(Box::new(key_age.clone()))?;
        registry.register(Box::new(upstream_seconds.clone()))?;
        Ok(Self {
            registry,
            requests,
            denials,
            verify_seconds,
            key_fetches,
            decryption_key_fetches,
            decrypt_seconds,
            key_age,
            upstream_seconds,
            reloads,
            audit_written,
            audit_dropped,
            audit_sampled_out,
            admin_auth_failures,
            revocations,
            revocation_feed_up,
            revocation_feed_lag,
            token_cache,
            one_time_ids,
            one_time_checks,
            underscore_headers,
            access_log_dropped,
            rate_limited,
            verify_by_alg: ALG_LABELS.iter().map(|a| (*a, OnceLock::new())).collect(),
        })
    }

    /// Observes one verification's latency under its algorithm's label.
    pub fn verify_seconds(&self, alg: &str, seconds: f64) {
        match self.verify_by_alg.iter().find(|(a, _)| *a == alg) {
            Some((_, h)) => h.get_or_init(|| self.verify_seconds.with_label_values(&[alg])).observe(seconds),
            None => self.verify_seconds.with_label_values(&[alg]).observe(seconds),
        }
    }

    /// The label handles of a route named `route` forwarding to `upstream` (`"none"`
    /// and `""` for requests no route matched).
    pub fn route(&self, route: &str, upstream: &str) -> RouteMetrics {
        RouteMetrics {
            route: route.to_owned(),
            upstream: upstream.to_owned(),
            requests: self.requests.clone(),
            upstream_seconds_vec: self.upstream_seconds.clone(),
            by_status: Box::new(std::array::from_fn(|_| [OnceLock::new(), OnceLock::new()])),
            upstream_seconds: OnceLock::new(),
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

/// Feeds the core's decryption timings into `gateway_token_decrypt_seconds`.
#[derive(Debug)]
pub struct DecryptObserver(pub HistogramVec);

impl gateway_core::verify::Observer for DecryptObserver {
    fn decrypted(&self, alg: gateway_core::jwe::KeyManagement, seconds: f64) {
        self.0.with_label_values(&[alg.as_str()]).observe(seconds);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_handles_count_like_label_lookups() {
        let m = Metrics::new().unwrap();
        let r = m.route("open", "echo");
        r.request(200, false);
        r.request(200, false);
        r.request(401, true);
        r.request(299, false);
        r.upstream_seconds(0.01);
        m.verify_seconds("RS256", 0.001);
        m.verify_seconds("XX1", 0.001);
        assert_eq!(m.requests.with_label_values(&["open", "200", "allow"]).get(), 2);
        assert_eq!(m.requests.with_label_values(&["open", "401", "deny"]).get(), 1);
        assert_eq!(m.requests.with_label_values(&["open", "299", "allow"]).get(), 1);
        assert_eq!(m.upstream_seconds.with_label_values(&["echo"]).get_sample_count(), 1);
        assert_eq!(m.verify_seconds.with_label_values(&["RS256"]).get_sample_count(), 1);
        assert_eq!(m.verify_seconds.with_label_values(&["XX1"]).get_sample_count(), 1);
        let mut buf = [0u8; 5];
        assert_eq!(status_label(0, &mut buf), "0");
        assert_eq!(status_label(503, &mut buf), "503");
    }
}
