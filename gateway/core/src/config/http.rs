//! The `http:` section: limits on the request head and body, timeouts, the inbound
//! header-name screen and which proxies' forwarding headers are believed.

use super::file::HttpFile;
use super::{valid_header_name, Errors};
use crate::forwarded::TrustedProxies;
use crate::header::{normalise, InboundPolicy, UnderscoreAction};
use crate::http_limits::{HttpSettings, Limits, PINGORA_MAX_HEADERS, PINGORA_MAX_HEAD_BYTES};
use std::time::Duration;

/// The method-override family, stripped by default: a GET-only route must not become a
/// DELETE in an upstream framework that honours them.
pub const DEFAULT_STRIP: [&str; 3] = ["X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"];

/// `Authorization: Bearer ` plus margin, so the longest allowed token fits one line.
const AUTH_LINE_OVERHEAD: usize = 64;

/// Validates `f` into settings; `mapped` are the identity header names (lower case),
/// `max_token_size` the longest token a header line must hold.
pub(super) fn http(f: &HttpFile, mapped: &[String], max_token_size: usize, errs: &mut Errors) -> HttpSettings {
    let underscore = match f.underscore_headers.as_deref() {
        None | Some("drop") => UnderscoreAction::Drop,
        Some("reject") => UnderscoreAction::Reject,
        Some("allow") => UnderscoreAction::Allow,
        Some(o) => {
            errs.push("http.underscore_headers", format!("{o:?} is not drop, reject or allow"));
            UnderscoreAction::Drop
        }
    };
    let strip_names: Vec<String> = match &f.strip_headers {
        Some(list) => list.clone(),
        None => DEFAULT_STRIP.iter().map(|s| s.to_string()).collect(),
    };
    let mut strip = Vec::new();
    for (i, name) in strip_names.iter().enumerate() {
        let lower = name.to_ascii_lowercase();
        if !valid_header_name(&lower) {
            errs.push(format!("http.strip_headers[{i}]"), format!("{name:?} is not a valid header name"));
        } else if ["host", "authorization", "content-length", "transfer-encoding", "connection"]
            .contains(&normalise(&lower).as_str())
        {
            errs.push(format!("http.strip_headers[{i}]"), format!("{name:?} cannot be stripped"));
        }
        strip.push(normalise(&lower));
    }
    let mut nets = Vec::new();
    for (i, cidr) in f.trusted_proxies.iter().enumerate() {
        let parsed = cidr
            .parse::<ipnet::IpNet>()
            .or_else(|_| cidr.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
            .map(|n| n.trunc());
        match parsed {
            Ok(n) => nets.push(n),
            Err(_) => errs.push(format!("http.trusted_proxies[{i}]"), format!("{cidr:?} is not a CIDR or IP address")),
        }
    }
    let hops = f.trusted_hops.unwrap_or(0);
    if hops > 10 {
        errs.push("http.trusted_hops", "at most 10");
    }

    let d = Limits::default();
    let line_floor = max_token_size + AUTH_LINE_OVERHEAD;
    let max_header_line_bytes = f.max_header_line_bytes.unwrap_or(d.max_header_line_bytes.max(line_floor));
    if f.max_header_line_bytes.is_some() && max_header_line_bytes < line_floor {
        errs.push(
            "http.max_header_line_bytes",
            format!("must be at least {line_floor} (auth.max_token_size plus the Authorization line)"),
        );
    }
    let max_header_bytes = f.max_header_bytes.unwrap_or(d.max_header_bytes.max(max_header_line_bytes + 16_384));
    if max_header_bytes < max_header_line_bytes {
        errs.push("http.max_header_bytes", "must be at least http.max_header_line_bytes");
    }
    if max_header_bytes > PINGORA_MAX_HEAD_BYTES {
        errs.push("http.max_header_bytes", format!("at most {PINGORA_MAX_HEAD_BYTES} (Pingora's own ceiling)"));
    }
    let max_headers = f.max_headers.unwrap_or(d.max_headers);
    if !(1..=PINGORA_MAX_HEADERS).contains(&max_headers) {
        errs.push("http.max_headers", format!("between 1 and {PINGORA_MAX_HEADERS} (Pingora's own ceiling)"));
    }
    let max_uri_bytes = f.max_uri_bytes.unwrap_or(d.max_uri_bytes);
    if max_uri_bytes < 16 || max_uri_bytes > max_header_bytes {
        errs.push("http.max_uri_bytes", "between 16 and http.max_header_bytes");
    }
    let limits = Limits {
        max_header_line_bytes,
        max_header_bytes,
        max_headers,
        max_uri_bytes,
        max_body_bytes: f.max_body_bytes.unwrap_or(d.max_body_bytes),
    };

    let mut timeout = |v: Option<crate::duration::Dur>, default: u64, max: u64, path: &str| {
        let t = v.map_or(Duration::from_secs(default), |d| d.0);
        if t < Duration::from_secs(1) || t > Duration::from_secs(max) || t.subsec_nanos() != 0 {
            errs.push(path, format!("whole seconds between 1s and {max}s"));
        }
        t
    };
    let header_read_timeout = timeout(f.header_read_timeout, 10, 300, "http.header_read_timeout");
    let idle_timeout = timeout(f.idle_timeout, 60, 3600, "http.idle_timeout");
    let body_read_timeout = timeout(f.body_read_timeout, 30, 3600, "http.body_read_timeout");

    HttpSettings {
        limits,
        inbound: InboundPolicy { underscore, owned: mapped.to_vec(), strip },
        trusted: TrustedProxies { nets, hops },
        header_read_timeout,
        idle_timeout,
        body_read_timeout,
    }
}

#[cfg(test)]
mod tests {
    use crate::header::UnderscoreAction;
    use crate::Config;
    use std::time::Duration;

    fn config(http: &str) -> Result<Config, crate::ConfigError> {
        Config::from_yaml(&format!(
            r#"
listen: 127.0.0.1:8080
admin_listen: 127.0.0.1:9090
keys: {{ url_template: "http://127.0.0.1:1/{{tenant}}" }}
tenants:
  t1: {{ issuer: https://a, audiences: [api], algorithms: [ES256] }}
headers:
  - {{ claim: sub, header: X-User_Id }}
upstreams:
  u: {{ peers: ["127.0.0.1:1"] }}
routes:
  - {{ prefix: /a, upstream: u, public: true, max_body_bytes: 10 }}
{http}
"#
        ))
    }

    #[test]
    fn defaults() {
        let c = config("").unwrap();
        let h = &c.http;
        assert_eq!(h.inbound.underscore, UnderscoreAction::Drop);
        assert_eq!(h.inbound.owned, ["x-user-id"]);
        assert_eq!(h.inbound.strip, ["x-http-method-override", "x-http-method", "x-method-override"]);
        assert_eq!((h.limits.max_header_line_bytes, h.limits.max_headers), (16384, 100));
        assert_eq!(h.limits.max_body_bytes, 1 << 20);
        assert_eq!(h.idle_timeout, Duration::from_secs(60));
        assert_eq!(c.router.routes()[0].max_body_bytes, Some(10));
        // A long token allowance raises the line default with it.
        let c = config("auth: { max_token_size: 65536 }").unwrap();
        assert_eq!(c.http.limits.max_header_line_bytes, 65536 + 64);
        assert!(c.http.limits.max_header_bytes >= c.http.limits.max_header_line_bytes);
    }

    #[test]
    fn every_bad_field_is_named() {
        let err = config(
            r#"http:
  underscore_headers: sometimes
  strip_headers: [Authorization, "bad name"]
  trusted_proxies: [10.0.0.0/8, "10.0.0.0/33", nonsense, 192.168.1.7]
  trusted_hops: 11
  max_header_line_bytes: 1000
  max_headers: 300
  max_uri_bytes: 1
  idle_timeout: 0s
  header_read_timeout: 1500ms
"#,
        )
        .unwrap_err();
        let paths: Vec<&str> = err.0.iter().map(|e| e.path.as_str()).collect();
        for want in [
            "http.underscore_headers",
            "http.strip_headers[0]",
            "http.strip_headers[1]",
            "http.trusted_proxies[1]",
            "http.trusted_proxies[2]",
            "http.trusted_hops",
            "http.max_header_line_bytes",
            "http.max_headers",
            "http.max_uri_bytes",
            "http.idle_timeout",
            "http.header_read_timeout",
        ] {
            assert!(paths.contains(&want), "missing {want} in {paths:?}");
        }
        assert!(!paths.contains(&"http.trusted_proxies[0]") && !paths.contains(&"http.trusted_proxies[3]"));
        let unknown = config("http: { max_body: 1 }").unwrap_err();
        assert!(unknown.0[0].path.starts_with("http"), "{unknown}");
    }
}
