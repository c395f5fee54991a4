//! HTTPS listener settings: TLS 1.2 and 1.3 only with AEAD cipher suites, HTTP/2
//! offered by ALPN beside HTTP/1.1, and the certificate handed to each handshake from
//! the [`CertStore`] (by SNI), so a swapped certificate serves the next handshake.

use super::metrics::TlsMetrics;
use super::store::CertStore;
use async_trait::async_trait;
use gateway_core::config::tls::Http2Settings;
use openssl::ssl::{ClientHelloResponse, NameType, SslRef, SslVersion};
use pingora::apps::HttpServerOptions;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::{TlsAccept, ALPN};
use pingora::protocols::http::v2::server::H2Options;
use std::sync::Arc;

/// TLS 1.2 suites: ECDHE key exchange with AEAD ciphers only (Mozilla "intermediate").
const TLS12_CIPHERS: &str = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:\
ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
/// TLS 1.3 suites.
const TLS13_SUITES: &str = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";

/// The per-handshake callbacks: certificate by SNI, handshake metrics.
pub struct Acceptor {
    /// Certificates in force.
    pub store: Arc<CertStore>,
    /// TLS metrics.
    pub metrics: TlsMetrics,
}

#[async_trait]
impl TlsAccept for Acceptor {
    async fn certificate_callback(&self, ssl: &mut SslRef) {
        let set = self.store.current();
        let pair = set.pick(ssl.servername(NameType::HOST_NAME));
        let ck = &pair.cert_key;
        let mut result = ssl.set_certificate(ck.leaf()).and_then(|()| ssl.set_private_key(ck.key()));
        for c in ck.intermediates() {
            result = result.and_then(|()| ssl.add_chain_cert(c.clone()));
        }
        if let Err(e) = result {
            // The handshake then fails for want of a certificate; the store only holds
            // pairs that passed the checks, so this is not expected.
            tracing::error!(error = %e, "could not set the TLS certificate for a handshake");
        }
    }

    async fn handshake_complete_callback(&self, ssl: &SslRef) -> Option<Arc<dyn std::any::Any + Send + Sync>> {
        self.metrics.handshakes.with_label_values(&["ok", ssl.version_str()]).inc();
        None
    }
}

/// The listener's TLS settings.
pub fn settings(store: Arc<CertStore>, metrics: TlsMetrics, http2: &Http2Settings) -> anyhow::Result<TlsSettings> {
    let hello = metrics.clone();
    let mut s = TlsSettings::with_callbacks(Box::new(Acceptor { store, metrics }))?;
    s.set_min_proto_version(Some(SslVersion::TLS1_2))?;
    s.set_max_proto_version(Some(SslVersion::TLS1_3))?;
    s.set_cipher_list(TLS12_CIPHERS)?;
    s.set_ciphersuites(TLS13_SUITES)?;
    s.set_client_hello_callback(move |ssl, _alert| {
        hello.handshakes.with_label_values(&["started", ""]).inc();
        let old = match ssl.client_hello_legacy_version() {
            Some(v) if v == SslVersion::SSL3 => Some("SSLv3"),
            Some(v) if v == SslVersion::TLS1 => Some("TLSv1"),
            Some(v) if v == SslVersion::TLS1_1 => Some("TLSv1.1"),
            _ => None,
        };
        if let Some(version) = old {
            hello.handshakes.with_label_values(&["old_protocol", version]).inc();
        }
        Ok(ClientHelloResponse::SUCCESS)
    });
    if http2.enabled {
        s.enable_h2();
    } else {
        s.set_alpn(ALPN::H1);
    }
    Ok(s)
}

/// HTTP/2 options with every limit set explicitly.
pub fn h2_options(http2: &Http2Settings) -> H2Options {
    let mut o = H2Options::new();
    o.max_concurrent_streams(http2.max_concurrent_streams);
    o.max_header_list_size(http2.max_header_list_size);
    o.max_concurrent_reset_streams(64);
    o.max_send_buffer_size(1 << 20);
    o
}

/// Server options: the HTTP/2 idle timeout.
pub fn server_options(http2: &Http2Settings) -> HttpServerOptions {
    let mut o = HttpServerOptions::default();
    o.h2_idle_timeout = Some(http2.idle_timeout);
    o
}
