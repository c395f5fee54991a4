//! TLS at the edge and to the upstreams, on Pingora's OpenSSL back end (the one whose
//! `TlsAccept::certificate_callback` lets the gateway hand a certificate to each
//! handshake, so certificates swap without rebuilding the listener).
//!
//! - [`cert`]: reads and checks one PEM chain and key (types, key matching, validity);
//! - [`store`]: the certificates in force, by server name, swapped atomically when
//!   their files change (or on SIGHUP), keeping the old set when a file is bad;
//! - [`listener`]: the HTTPS listener settings (TLS 1.2/1.3, ALPN h2 + http/1.1, the
//!   per-handshake certificate pick and handshake metrics) and HTTP/2 limits;
//! - [`redirect`]: the redirect-only plain listener and the HSTS header;
//! - [`upstream`]: CA bundle and client certificate of an upstream pool;
//! - [`watch`]: the "tls certificates" background service.

pub mod cert;
pub mod listener;
pub mod metrics;
pub mod redirect;
pub mod store;
pub mod upstream;

use gateway_core::Config;

/// Every problem with the TLS files a config names (listener certificates, upstream
/// CA bundles and client certificates), each with its field path: what `--check`
/// reports and what stops start-up.
pub fn problems(config: &Config) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(t) = &config.tls {
        if let Err(e) = store::CertStore::load(store::listener_entries(t), None) {
            out.extend(e);
        }
    }
    for (name, u) in &config.upstreams {
        if let Some(t) = &u.tls {
            if let Err(e) = upstream::UpstreamTlsFiles::load(name, t, None) {
                out.extend(e);
            }
        }
    }
    out
}

/// The edge's TLS pieces built at start-up from `tls:`: the certificate store, the
/// metrics, and what the proxy service and server need from them.
pub struct EdgeTls {
    settings: Option<gateway_core::config::tls::TlsSettings>,
    store: Option<std::sync::Arc<store::CertStore>>,
    metrics: metrics::TlsMetrics,
}

impl EdgeTls {
    /// Registers the TLS metrics and loads the listener's certificates.
    pub fn start(
        settings: Option<&gateway_core::config::tls::TlsSettings>,
        m: &crate::metrics::Metrics,
    ) -> anyhow::Result<EdgeTls> {
        let metrics = metrics::TlsMetrics::new(&m.registry)?;
        let store = match settings {
            Some(t) => {
                if let Some(v) = &t.hsts {
                    redirect::set_hsts(v)?;
                }
                let s = store::CertStore::load(store::listener_entries(t), Some(metrics.clone()))
                    .map_err(|p| anyhow::anyhow!("TLS files refused:\n{}", p.join("\n")))?;
                Some(std::sync::Arc::new(s))
            }
            None => None,
        };
        Ok(EdgeTls { settings: settings.cloned(), store, metrics })
    }

    /// Sets the HTTP/2 limits and idle timeout on the proxy.
    pub fn configure_proxy<P>(&self, proxy: &mut pingora::proxy::HttpProxy<P>) {
        if let Some(t) = &self.settings {
            proxy.h2_options = Some(listener::h2_options(&t.http2));
            proxy.server_options = Some(listener::server_options(&t.http2));
        }
    }

    /// Adds the HTTPS listeners to the proxy service.
    pub fn add_listeners<A>(&self, service: &mut pingora::services::listening::Service<A>) -> anyhow::Result<()>
    where
        A: pingora::apps::ServerApp + Send + Sync + 'static,
    {
        if let (Some(t), Some(store)) = (&self.settings, &self.store) {
            for addr in &t.listen {
                let s = listener::settings(store.clone(), self.metrics.clone(), &t.http2)?;
                service.add_tls_with_settings(&addr.to_string(), None, s);
            }
        }
        Ok(())
    }

    /// The redirect-only plain listener's service, if configured.
    pub fn redirect_service(&self) -> Option<pingora::services::listening::Service<redirect::Redirect>> {
        let t = self.settings.as_ref()?;
        let addr = t.redirect_listen?;
        let https_port = t.listen.first()?.port();
        let mut s =
            pingora::services::listening::Service::new("tls redirect".to_string(), redirect::Redirect { https_port });
        s.threads = Some(1);
        s.add_tcp(&addr.to_string());
        Some(s)
    }

    /// What the certificate watcher (`crate::background::cert_watch`) needs: the
    /// listener's store, the poll interval and the metrics.
    pub fn watched(&self) -> (Option<std::sync::Arc<store::CertStore>>, std::time::Duration, metrics::TlsMetrics) {
        let interval = self.settings.as_ref().map_or(std::time::Duration::from_secs(5), |t| t.watch_interval);
        (self.store.clone(), interval, self.metrics.clone())
    }
}
