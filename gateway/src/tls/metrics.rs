//! TLS metrics, registered into the gateway's registry.

use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

/// Handshakes, certificate reloads and certificate expiry.
#[derive(Clone)]
pub struct TlsMetrics {
    /// `gateway_tls_handshakes_total{result, version}`: `result` is `started` (a
    /// ClientHello was read), `ok` (with the protocol version) or `old_protocol`
    /// (a client offering nothing newer than TLS 1.1, refused); failed handshakes
    /// are `started` minus `ok`.
    pub handshakes: IntCounterVec,
    /// `gateway_tls_certificate_reloads_total{result}`: `ok` or `error`.
    pub reloads: IntCounterVec,
    /// `gateway_tls_certificate_expiry_timestamp_seconds{certificate}`: the
    /// `notAfter` of each certificate in force, by its config field path.
    pub expiry: IntGaugeVec,
}

impl TlsMetrics {
    /// Creates the metrics and registers them into `registry`.
    pub fn new(registry: &Registry) -> prometheus::Result<TlsMetrics> {
        let handshakes = IntCounterVec::new(
            Opts::new("gateway_tls_handshakes_total", "TLS handshakes on the HTTPS listeners by result and version."),
            &["result", "version"],
        )?;
        let reloads = IntCounterVec::new(
            Opts::new("gateway_tls_certificate_reloads_total", "Certificate file reloads by result."),
            &["result"],
        )?;
        let expiry = IntGaugeVec::new(
            Opts::new(
                "gateway_tls_certificate_expiry_timestamp_seconds",
                "notAfter of each certificate in force (Unix seconds), by config field path.",
            ),
            &["certificate"],
        )?;
        registry.register(Box::new(handshakes.clone()))?;
        registry.register(Box::new(reloads.clone()))?;
        registry.register(Box::new(expiry.clone()))?;
        Ok(TlsMetrics { handshakes, reloads, expiry })
    }
}
