//! The sidecar's Prometheus metrics, in an explicit registry.

use prometheus::{Encoder, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

/// Every metric the sidecar exports.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Requests by endpoint and status.
    pub requests: IntCounterVec,
    /// Rotations by tenant, use and kind (scheduled, manual, emergency).
    pub rotations: IntCounterVec,
    /// Refused credentials by channel.
    pub auth_failures: IntCounterVec,
    /// Age of each tenant's current key.
    pub key_age: IntGaugeVec,
    /// Revocations recorded.
    pub revocations: prometheus::IntCounter,
    /// One-time token claims by result (first, replayed, full).
    pub one_time: IntCounterVec,
    /// One-time token ids held (expired ones not yet swept included).
    pub one_time_held: prometheus::IntGauge,
}

impl Metrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> prometheus::Result<Metrics> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("kms_requests_total", "Requests by endpoint and status."),
            &["endpoint", "status"],
        )?;
        let rotations =
            IntCounterVec::new(Opts::new("kms_rotations_total", "Key rotations."), &["tenant", "use", "kind"])?;
        let auth_failures =
            IntCounterVec::new(Opts::new("kms_auth_failures_total", "Missing or wrong credentials."), &["channel"])?;
        let key_age =
            IntGaugeVec::new(Opts::new("kms_current_key_age_seconds", "Age of the current key."), &["tenant", "use"])?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(rotations.clone()))?;
        registry.register(Box::new(auth_failures.clone()))?;
        registry.register(Box::new(key_age.clone()))?;
        let revocations = prometheus::IntCounter::new("kms_revocations_total", "Revocations recorded.")?;
        registry.register(Box::new(revocations.clone()))?;
        let one_time =
            IntCounterVec::new(Opts::new("kms_one_time_claims_total", "One-time token claims."), &["result"])?;
        registry.register(Box::new(one_time.clone()))?;
        let one_time_held = prometheus::IntGauge::new("kms_one_time_ids", "One-time token ids held.")?;
        registry.register(Box::new(one_time_held.clone()))?;
        Ok(Metrics { registry, requests, rotations, auth_failures, key_age, revocations, one_time, one_time_held })
    }

    /// Text exposition.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}
