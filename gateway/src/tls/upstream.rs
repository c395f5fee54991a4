//! TLS to an upstream pool: the CA bundle its certificates must chain to, the name
//! sent as SNI and verified in them, the client certificate the gateway presents
//! (kept in a [`CertStore`], so it reloads like the listener's) and HTTP/2 by ALPN.
//! Health checks use the same settings and the certificate in force
//! (`crate::upstream::check`).

use super::cert;
use super::metrics::TlsMetrics;
use super::store::{CertStore, Entry};
use gateway_core::config::tls::{CertificateSource, UpstreamTls};
use openssl::x509::X509;
use pingora::listeners::ALPN;
use pingora::prelude::HttpPeer;
use std::sync::Arc;

/// The loaded TLS material of one upstream pool; a clone shares the client
/// certificate store, so it sees every reload.
#[derive(Clone)]
pub struct UpstreamTlsFiles {
    ca: Arc<Box<[X509]>>,
    /// The client certificate, if the gateway presents one.
    pub client: Option<Arc<CertStore>>,
    server_name: String,
    http2: bool,
}

impl UpstreamTlsFiles {
    /// Loads the CA bundle and client certificate of upstream `name`; `Err` holds
    /// every problem with its field path.
    pub fn load(name: &str, t: &UpstreamTls, metrics: Option<TlsMetrics>) -> Result<UpstreamTlsFiles, Vec<String>> {
        let p = format!("upstreams.{name}.tls");
        let mut problems = Vec::new();
        let ca = cert::ca_bundle(&t.ca).map_err(|e| problems.push(format!("{p}.ca: {e}"))).ok();
        let client = match &t.client {
            None => None,
            Some((c, k)) => {
                let entry = Entry {
                    source: CertificateSource { cert: c.clone(), key: k.clone(), server_names: Vec::new() },
                    field: format!("{p}.client_cert"),
                };
                CertStore::load(vec![entry], metrics).map_err(|e| problems.extend(e)).ok().map(Arc::new)
            }
        };
        match ca {
            Some(ca) if problems.is_empty() => {
                Ok(UpstreamTlsFiles { ca: Arc::new(ca), client, server_name: t.server_name.clone(), http2: t.http2 })
            }
            _ => Err(problems),
        }
    }

    /// Makes `peer` a verified TLS peer with these settings (and the client
    /// certificate in force now).
    pub fn apply(&self, peer: &mut HttpPeer) {
        peer.scheme = pingora::upstreams::peer::Scheme::HTTPS;
        peer.sni.clone_from(&self.server_name);
        peer.options.ca = Some(self.ca.clone());
        peer.options.verify_cert = true;
        peer.options.verify_hostname = true;
        peer.options.alpn = if self.http2 { ALPN::H2H1 } else { ALPN::H1 };
        peer.client_cert_key = self.client.as_ref().map(|c| c.current().pairs[0].cert_key.clone());
    }
}

/// `ERR_LIB_SSL`: OpenSSL's library code of errors raised by the TLS layer itself
/// (alerts received, handshake and record failures), as opposed to I/O or crypto.
const ERR_LIB_SSL: i32 = 20;

/// Whether a proxy error with an upstream came from the TLS layer of its connection,
/// though Pingora reports it as a read or write error: with TLS 1.3 a service that
/// refuses the gateway's client certificate says so with an alert after the client
/// has finished its side of the handshake, so the refusal surfaces on the first read.
pub fn failed_in_tls(e: &pingora::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e.root_cause());
    while let Some(c) = cause {
        let ssl = c
            .downcast_ref::<openssl::ssl::Error>()
            .or_else(|| c.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()?.downcast_ref()));
        if let Some(stack) = ssl.and_then(|s| s.ssl_error()) {
            return stack.errors().iter().any(|x| x.library_code() == ERR_LIB_SSL);
        }
        if let Some(stack) = c.downcast_ref::<openssl::error::ErrorStack>() {
            return stack.errors().iter().any(|x| x.library_code() == ERR_LIB_SSL);
        }
        cause = c.source();
    }
    false
}
