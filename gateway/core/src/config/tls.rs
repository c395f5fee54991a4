//! The `tls:` section (HTTPS listeners: certificates by server name, HTTP/2 limits,
//! `Strict-Transport-Security`, a redirect-only plain listener, file watching) and
//! an upstream's `tls:` (CA bundle, verified server name, client certificate, HTTP/2).
//!
//! ```yaml
//! tls:
//!   listen: ["127.0.0.1:8443"]
//!   certificates:
//!     - { cert: tls/gateway.pem, key: tls/gateway.key }                       # the default
//!     - { cert: tls/api.pem, key: tls/api.key, server_names: [api.example] } # by SNI
//!   http2: { max_concurrent_streams: 100, max_header_list_size: 65536, idle_timeout: 60s }
//!   hsts: { max_age: 365d, include_subdomains: true }
//!   redirect_listen: "127.0.0.1:8081"
//! upstreams:
//!   patient:
//!     peers: ["127.0.0.1:9101"]
//!     tls: { ca: tls/ca.pem, server_name: patient.medgate.test,
//!            client_cert: tls/gateway-client.pem, client_key: tls/gateway-client.key }
//! ```
//!
//! Only the shape is validated here; the files are read (PEM types, key matching
//! the certificate, expiry) by the gateway, which reports them under the same paths.

use super::Errors;
use crate::duration::Dur;
use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Duration;

/// `tls:` as written in the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFile {
    /// HTTPS listeners (`ip:port`).
    pub listen: Vec<String>,
    /// Certificate chains and keys; the first without `server_names` is the default.
    pub certificates: Vec<CertificateFile>,
    /// HTTP/2 limits (offered by ALPN beside HTTP/1.1).
    #[serde(default)]
    pub http2: Option<Http2File>,
    /// `Strict-Transport-Security` on HTTPS answers.
    #[serde(default)]
    pub hsts: Option<HstsFile>,
    /// A plain-HTTP listener that only redirects to HTTPS.
    #[serde(default)]
    pub redirect_listen: Option<String>,
    /// How often certificate files are checked for changes (default 5s).
    #[serde(default)]
    pub watch_interval: Option<Dur>,
}

/// One `tls.certificates[]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateFile {
    /// PEM certificate chain, leaf first.
    pub cert: String,
    /// PEM private key of the leaf.
    pub key: String,
    /// Server names (SNI) this certificate answers; none: the default certificate.
    #[serde(default)]
    pub server_names: Vec<String>,
}

/// `tls.http2:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Http2File {
    /// Offer HTTP/2 by ALPN (default true).
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Concurrent streams per connection.
    #[serde(default)]
    pub max_concurrent_streams: Option<u32>,
    /// Largest decoded header list.
    #[serde(default)]
    pub max_header_list_size: Option<u32>,
    /// An idle HTTP/2 connection is closed after this.
    #[serde(default)]
    pub idle_timeout: Option<Dur>,
}

/// `tls.hsts:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HstsFile {
    /// Send the header (default true).
    #[serde(default)]
    pub enabled: Option<bool>,
    /// `max-age` (default 365d).
    #[serde(default)]
    pub max_age: Option<Dur>,
    /// Add `includeSubDomains`.
    #[serde(default)]
    pub include_subdomains: bool,
    /// Add `preload`.
    #[serde(default)]
    pub preload: bool,
}

/// `upstreams.<name>.tls:` as written in the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsFile {
    /// PEM bundle of the CAs the service's certificate must chain to.
    pub ca: String,
    /// Name sent as SNI and verified in the service's certificate.
    pub server_name: String,
    /// PEM client certificate chain the gateway presents.
    #[serde(default)]
    pub client_cert: Option<String>,
    /// PEM private key of the client certificate.
    #[serde(default)]
    pub client_key: Option<String>,
    /// Offer HTTP/2 to the service (default false).
    #[serde(default)]
    pub http2: bool,
}

/// One certificate of an HTTPS listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateSource {
    /// PEM chain file.
    pub cert: String,
    /// PEM key file.
    pub key: String,
    /// Lower-case server names; empty for the default certificate.
    pub server_names: Vec<String>,
}

/// Explicit HTTP/2 limits (Pingora's defaults change once options are supplied, so
/// every one is set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Http2Settings {
    /// HTTP/2 offered by ALPN.
    pub enabled: bool,
    /// Concurrent streams per connection.
    pub max_concurrent_streams: u32,
    /// Largest decoded header list, bytes.
    pub max_header_list_size: u32,
    /// Idle connection timeout.
    pub idle_timeout: Duration,
}

/// The validated `tls:` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// HTTPS listeners.
    pub listen: Vec<SocketAddr>,
    /// Certificates; [`TlsSettings::default_index`] names the default one.
    pub certificates: Vec<CertificateSource>,
    /// HTTP/2 settings.
    pub http2: Http2Settings,
    /// The `Strict-Transport-Security` value, if sent.
    pub hsts: Option<String>,
    /// Redirect-only plain listener.
    pub redirect_listen: Option<SocketAddr>,
    /// Certificate file poll interval.
    pub watch_interval: Duration,
}

impl TlsSettings {
    /// The certificate served when no server name matches: the first without
    /// `server_names`, else the first.
    pub fn default_index(&self) -> usize {
        self.certificates.iter().position(|c| c.server_names.is_empty()).unwrap_or(0)
    }
}

/// The validated `upstreams.<name>.tls:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTls {
    /// CA bundle file.
    pub ca: String,
    /// SNI and verified name.
    pub server_name: String,
    /// Client certificate and key files, if the gateway presents one.
    pub client: Option<(String, String)>,
    /// HTTP/2 offered to the service.
    pub http2: bool,
}

/// Default HTTP/2 limits.
pub const H2_MAX_STREAMS: u32 = 100;
/// Default HTTP/2 header list limit (64 KiB, as the HTTP/1 head limit's order).
pub const H2_MAX_HEADER_LIST: u32 = 65_536;

fn addr(s: &str, path: &str, errs: &mut Errors) -> Option<SocketAddr> {
    let parsed = s.parse().ok();
    if parsed.is_none() {
        errs.push(path, format!("{s:?} is not an ip:port address"));
    }
    parsed
}

fn file(s: &str, path: &str, errs: &mut Errors) {
    if s.trim().is_empty() {
        errs.push(path, "a file path is required");
    }
}

/// Validates `tls:`; `taken` are the other listeners (`listen`, `admin_listen`).
pub(super) fn settings(t: Option<&TlsFile>, taken: &[SocketAddr], errs: &mut Errors) -> Option<TlsSettings> {
    let t = t?;
    if t.listen.is_empty() {
        errs.push("tls.listen", "at least one ip:port is required");
    }
    let mut seen: Vec<SocketAddr> = taken.to_vec();
    let mut listen = Vec::new();
    for (i, s) in t.listen.iter().enumerate() {
        let path = format!("tls.listen[{i}]");
        if let Some(a) = addr(s, &path, errs) {
            if seen.contains(&a) {
                errs.push(path, format!("{a} is already used by another listener"));
            }
            seen.push(a);
            listen.push(a);
        }
    }
    let redirect_listen = t.redirect_listen.as_deref().and_then(|s| {
        let a = addr(s, "tls.redirect_listen", errs)?;
        if seen.contains(&a) {
            errs.push("tls.redirect_listen", format!("{a} is already used by another listener"));
        }
        Some(a)
    });
    if t.certificates.is_empty() {
        errs.push("tls.certificates", "at least one certificate is required");
    }
    let mut names: Vec<String> = Vec::new();
    let mut certificates = Vec::new();
    for (i, c) in t.certificates.iter().enumerate() {
        let p = format!("tls.certificates[{i}]");
        file(&c.cert, &format!("{p}.cert"), errs);
        file(&c.key, &format!("{p}.key"), errs);
        let mut server_names = Vec::new();
        for (j, n) in c.server_names.iter().enumerate() {
            let n = n.trim().trim_end_matches('.').to_ascii_lowercase();
            let valid = !n.is_empty()
                && n.len() <= 253
                && n.split('.').enumerate().all(|(k, label)| {
                    (!label.is_empty() && label.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-'))
                        || (k == 0 && label == "*")
                });
            if !valid {
                errs.push(format!("{p}.server_names[{j}]"), format!("{n:?} is not a DNS name"));
            } else if names.contains(&n) {
                errs.push(format!("{p}.server_names[{j}]"), format!("{n} is named by an earlier certificate"));
            } else {
                names.push(n.clone());
                server_names.push(n);
            }
        }
        certificates.push(CertificateSource { cert: c.cert.clone(), key: c.key.clone(), server_names });
    }
    let h = t.http2.as_ref();
    let http2 = Http2Settings {
        enabled: h.and_then(|h| h.enabled).unwrap_or(true),
        max_concurrent_streams: h.and_then(|h| h.max_concurrent_streams).unwrap_or(H2_MAX_STREAMS),
        max_header_list_size: h.and_then(|h| h.max_header_list_size).unwrap_or(H2_MAX_HEADER_LIST),
        idle_timeout: h.and_then(|h| h.idle_timeout).map_or(Duration::from_secs(60), |d| d.0),
    };
    if !(1..=10_000).contains(&http2.max_concurrent_streams) {
        errs.push("tls.http2.max_concurrent_streams", "between 1 and 10000");
    }
    if !(1024..=1 << 20).contains(&http2.max_header_list_size) {
        errs.push("tls.http2.max_header_list_size", "between 1024 and 1048576");
    }
    if http2.idle_timeout < Duration::from_secs(1) || http2.idle_timeout > Duration::from_secs(3600) {
        errs.push("tls.http2.idle_timeout", "between 1s and 1h");
    }
    let hsts = match t.hsts.as_ref() {
        Some(h) if h.enabled == Some(false) => None,
        h => {
            let max_age = h.and_then(|h| h.max_age).map_or(365 * 86_400, |d| d.0.as_secs());
            let mut v = format!("max-age={max_age}");
            if h.is_some_and(|h| h.include_subdomains) {
                v.push_str("; includeSubDomains");
            }
            if h.is_some_and(|h| h.preload) {
                v.push_str("; preload");
            }
            Some(v)
        }
    };
    let watch_interval = t.watch_interval.map_or(Duration::from_secs(5), |d| d.0);
    if watch_interval < Duration::from_millis(100) || watch_interval > Duration::from_secs(3600) {
        errs.push("tls.watch_interval", "between 100ms and 1h");
    }
    Some(TlsSettings { listen, certificates, http2, hsts, redirect_listen, watch_interval })
}

/// Validates `upstreams.<name>.tls:` at path `p`.
pub(super) fn upstream(u: Option<&UpstreamTlsFile>, p: &str, errs: &mut Errors) -> Option<UpstreamTls> {
    let u = u?;
    file(&u.ca, &format!("{p}.ca"), errs);
    if u.server_name.trim().is_empty() {
        errs.push(format!("{p}.server_name"), "the name to verify in the service's certificate is required");
    }
    let client = match (&u.client_cert, &u.client_key) {
        (Some(c), Some(k)) => {
            file(c, &format!("{p}.client_cert"), errs);
            file(k, &format!("{p}.client_key"), errs);
            Some((c.clone(), k.clone()))
        }
        (None, None) => None,
        (Some(_), None) => {
            errs.push(format!("{p}.client_key"), "required with client_cert");
            None
        }
        (None, Some(_)) => {
            errs.push(format!("{p}.client_cert"), "required with client_key");
            None
        }
    };
    Some(UpstreamTls { ca: u.ca.clone(), server_name: u.server_name.trim().to_owned(), client, http2: u.http2 })
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn config(tls: &str, upstream_tls: &str) -> Result<Config, String> {
        let yaml = format!(
            "listen: 127.0.0.1:1\nadmin_listen: 127.0.0.1:2\ntenants:\n  t:\n    issuer: https://i\n    audiences: [a]\n    algorithms: [ES256]\n    keys: {{ url: \"http://127.0.0.1:4/jwks\" }}\nupstreams:\n  u:\n    peers: [\"127.0.0.1:3\"]\n{upstream_tls}\
             routes:\n  - {{ path: /p, upstream: u, public: true }}\n{tls}"
        );
        Config::from_yaml(&yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_explicit() {
        let c =
            config("tls:\n  listen: [\"127.0.0.1:5\"]\n  certificates: [{ cert: c.pem, key: k.pem }]\n", "").unwrap();
        let t = c.tls.unwrap();
        assert_eq!(t.listen.len(), 1);
        assert!(t.http2.enabled);
        assert_eq!(t.http2.max_concurrent_streams, super::H2_MAX_STREAMS);
        assert_eq!(t.hsts.as_deref(), Some("max-age=31536000"));
        assert_eq!(t.default_index(), 0);
        assert!(t.redirect_listen.is_none());
    }

    #[test]
    fn sni_default_and_hsts_options() {
        let c = config(
            "tls:\n  listen: [\"127.0.0.1:5\"]\n  certificates:\n    - { cert: a, key: a, server_names: [API.Example.] }\n    - { cert: b, key: b }\n  hsts: { max_age: 1d, include_subdomains: true, preload: true }\n  redirect_listen: \"127.0.0.1:6\"\n",
            "",
        )
        .unwrap();
        let t = c.tls.unwrap();
        assert_eq!(t.certificates[0].server_names, vec!["api.example".to_string()]);
        assert_eq!(t.default_index(), 1);
        assert_eq!(t.hsts.as_deref(), Some("max-age=86400; includeSubDomains; preload"));
        let off = config(
            "tls:\n  listen: [\"127.0.0.1:5\"]\n  certificates: [{ cert: a, key: a }]\n  hsts: { enabled: false }\n",
            "",
        )
        .unwrap();
        assert!(off.tls.unwrap().hsts.is_none());
    }

    #[test]
    fn errors_name_the_field() {
        let table = [
            ("tls:\n  listen: []\n  certificates: [{ cert: a, key: a }]\n", "tls.listen"),
            ("tls:\n  listen: [nope]\n  certificates: [{ cert: a, key: a }]\n", "tls.listen[0]"),
            ("tls:\n  listen: [\"127.0.0.1:1\"]\n  certificates: [{ cert: a, key: a }]\n", "tls.listen[0]"),
            ("tls:\n  listen: [\"127.0.0.1:5\"]\n  certificates: []\n", "tls.certificates"),
            ("tls:\n  listen: [\"127.0.0.1:5\"]\n  certificates: [{ cert: \"\", key: a }]\n", "tls.certificates[0].cert"),
            (
                "tls:\n  listen: [\"127.0.0.1:5\"]\n  certificates: [{ cert: a, key: a, server_names: [a.b, A.B] }]\n",
                "tls.certificates[0].server_names[1]",
            ),
            (
                "tls:\n  listen: [\"127.0.0.1:5\"]\n  certificates: [{ cert: a, key: a, server_names: [\"bad name\"] }]\n",
                "tls.certificates[0].server_names[0]",
            ),
            (
                "tls:\n  listen: [\"127.0.0.1:5\"]\n  certificates: [{ cert: a, key: a }]\n  http2: { max_concurrent_streams: 0 }\n",
                "tls.http2.max_concurrent_streams",
            ),
            (
                "tls:\n  listen: [\"127.0.0.1:5\"]\n  certificates: [{ cert: a, key: a }]\n  http2: { idle_timeout: 0s }\n",
                "tls.http2.idle_timeout",
            ),
            (
                "tls:\n  listen: [\"127.0.0.1:5\"]\n  certificates: [{ cert: a, key: a }]\n  redirect_listen: \"127.0.0.1:5\"\n",
                "tls.redirect_listen",
            ),
            ("tls:\n  listen: [\"127.0.0.1:5\"]\n  certificates: [{ cert: a, key: a }]\n  bogus: 1\n", "tls"),
        ];
        for (yaml, path) in table {
            let e = config(yaml, "").unwrap_err();
            assert!(e.contains(path), "{yaml}: {e}");
        }
    }

    #[test]
    fn upstream_tls() {
        let ok = config("", "    tls: { ca: ca.pem, server_name: svc.test, client_cert: c.pem, client_key: k.pem }\n")
            .unwrap();
        let t = ok.upstreams["u"].tls.clone().unwrap();
        assert_eq!(t.client, Some(("c.pem".into(), "k.pem".into())));
        assert!(!t.http2);
        let e = config("", "    tls: { ca: ca.pem, server_name: svc.test, client_cert: c.pem }\n").unwrap_err();
        assert!(e.contains("upstreams.u.tls.client_key"), "{e}");
        let e = config("", "    tls: { ca: \"\", server_name: \"\" }\n").unwrap_err();
        assert!(e.contains("upstreams.u.tls.ca") && e.contains("upstreams.u.tls.server_name"), "{e}");
    }
}
