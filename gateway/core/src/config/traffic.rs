//! The traffic fields: `rate_limits`, `cors` and `response_headers` (global and per
//! route) and `auth_failure_limit`, as files and validated into
//! [`crate::traffic`] settings.

use super::{methods, valid_header_name, Errors};
use crate::cors::{Cors, OriginRule};
use crate::duration::Dur;
use crate::ratelimit::{KeyKind, RateLimit};
use crate::response_headers::{ResponseHeaders, DEFAULT_REMOVE, DEFAULT_SET};
use crate::route::Route;
use crate::traffic::{RouteTraffic, TrafficSettings};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Most limits on one route.
const MAX_LIMITS_PER_ROUTE: usize = 8;
/// Longest limit window.
const MAX_WINDOW_SECS: u64 = 86_400;

/// One rate limit: `requests` per `per`, counted by `key`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitFile {
    /// `tenant`, `subject` or `client`.
    pub key: String,
    /// Requests allowed per window.
    pub requests: u64,
    /// The window (whole seconds, 1s to 1d).
    pub per: Dur,
}

/// The address-keyed limit on refused tokens.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthFailureLimitFile {
    /// Refused tokens allowed per client address per window.
    pub requests: u64,
    /// The window.
    pub per: Dur,
}

/// A CORS policy.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsFile {
    /// Exact origins, `*.` subdomain patterns, or `*`.
    pub allow_origins: Vec<String>,
    /// Allowed methods (default GET, HEAD, POST).
    #[serde(default)]
    pub allow_methods: Option<Vec<String>>,
    /// Allowed request headers (default `Authorization`, `Content-Type`).
    #[serde(default)]
    pub allow_headers: Option<Vec<String>>,
    /// Response headers exposed to scripts.
    #[serde(default)]
    pub expose_headers: Vec<String>,
    /// Allow credentials (cookies, `Authorization` from the browser's store).
    #[serde(default)]
    pub allow_credentials: bool,
    /// How long a browser may cache a preflight answer.
    #[serde(default)]
    pub max_age: Option<Dur>,
}

/// Response headers set and removed.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseHeadersFile {
    /// Set on every answer (globally, default: nosniff, `X-Frame-Options: DENY`,
    /// `Referrer-Policy: no-referrer`; on a route, added to the global ones).
    #[serde(default)]
    pub set: Option<BTreeMap<String, String>>,
    /// Removed from upstream answers (globally, default `Server`, `X-Powered-By`; on
    /// a route, added to the global ones).
    #[serde(default)]
    pub remove: Option<Vec<String>>,
}

/// Header names the gateway owns on answers: neither set nor removed by config.
const RESERVED: [&str; 6] =
    ["content-length", "transfer-encoding", "connection", "content-type", "vary", "retry-after"];

fn limit(key: &str, requests: u64, per: Dur, path: &str, errs: &mut Errors) -> Option<RateLimit> {
    let kind = KeyKind::parse(key);
    if kind.is_none() {
        errs.push(format!("{path}.key"), format!("{key:?} is not tenant, subject or client"));
    }
    if requests == 0 {
        errs.push(format!("{path}.requests"), "must be at least 1");
    }
    let secs = per.0.as_secs();
    if per.0.subsec_nanos() != 0 || !(1..=MAX_WINDOW_SECS).contains(&secs) {
        errs.push(format!("{path}.per"), "whole seconds between 1s and 1d");
    }
    Some(RateLimit::new(kind?, requests, secs.max(1)))
}

fn cors(f: &CorsFile, path: &str, errs: &mut Errors) -> Cors {
    let mut origins = Vec::new();
    if f.allow_origins.is_empty() {
        errs.push(format!("{path}.allow_origins"), "must name at least one origin");
    }
    for (i, o) in f.allow_origins.iter().enumerate() {
        match OriginRule::parse(o) {
            Ok(OriginRule::Any) if f.allow_credentials => errs.push(
                format!("{path}.allow_origins[{i}]"),
                "\"*\" cannot be used with allow_credentials: list the origins",
            ),
            Ok(rule) => origins.push(rule),
            Err(e) => errs.push(format!("{path}.allow_origins[{i}]"), e),
        }
    }
    let default_methods = ["GET", "HEAD", "POST"].map(String::from).to_vec();
    let methods = methods(f.allow_methods.as_ref().unwrap_or(&default_methods), &format!("{path}.allow_methods"), errs);
    let mut names = |list: &[String], field: &str, star: bool| -> Vec<String> {
        let mut out = Vec::new();
        for (i, h) in list.iter().enumerate() {
            let lower = h.to_ascii_lowercase();
            if lower == "*" && star && !f.allow_credentials {
                out.push(lower);
            } else if !valid_header_name(&lower) {
                errs.push(format!("{path}.{field}[{i}]"), format!("{h:?} is not a valid header name"));
            } else {
                out.push(lower);
            }
        }
        out
    };
    let default_headers = ["Authorization", "Content-Type"].map(String::from).to_vec();
    let headers = names(f.allow_headers.as_ref().unwrap_or(&default_headers), "allow_headers", true);
    let expose = names(&f.expose_headers, "expose_headers", false);
    let max_age = f.max_age.map(|d| d.0.as_secs());
    if max_age.is_some_and(|s| s > MAX_WINDOW_SECS) {
        errs.push(format!("{path}.max_age"), "at most 1d");
    }
    Cors { origins, methods, headers, expose, credentials: f.allow_credentials, max_age }
}

fn response_headers(f: &ResponseHeadersFile, global: bool, path: &str, errs: &mut Errors) -> ResponseHeaders {
    let mut set = Vec::new();
    match &f.set {
        Some(map) => {
            for (name, value) in map {
                let lower = name.to_ascii_lowercase();
                let field = format!("{path}.set.{name}");
                if !valid_header_name(&lower) {
                    errs.push(field, format!("{name:?} is not a valid header name"));
                } else if RESERVED.contains(&lower.as_str()) || lower.starts_with("access-control-") {
                    errs.push(field, format!("{name:?} is set by the gateway itself"));
                } else if value.is_empty() || !value.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b)) {
                    errs.push(field, "must be non-empty visible ASCII");
                } else {
                    set.push((name.clone(), value.clone()));
                }
            }
        }
        None if global => set = DEFAULT_SET.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
        None => {}
    }
    let mut remove = Vec::new();
    match &f.remove {
        Some(list) => {
            for (i, name) in list.iter().enumerate() {
                let lower = name.to_ascii_lowercase();
                if !valid_header_name(&lower) {
                    errs.push(format!("{path}.remove[{i}]"), format!("{name:?} is not a valid header name"));
                } else if RESERVED.contains(&lower.as_str()) {
                    errs.push(format!("{path}.remove[{i}]"), format!("{name:?} cannot be removed"));
                } else if !remove.contains(&lower) {
                    remove.push(lower);
                }
            }
        }
        None if global => remove = DEFAULT_REMOVE.iter().map(|n| n.to_ascii_lowercase()).collect(),
        None => {}
    }
    ResponseHeaders { set, remove }
}

/// The file fields of one route that this module validates.
pub(super) struct RouteFields<'a> {
    pub rate_limits: &'a [RateLimitFile],
    pub cors: Option<&'a CorsFile>,
    pub response_headers: Option<&'a ResponseHeadersFile>,
    pub public: bool,
}

/// Validates one route's own traffic fields (`p` names the route); the global ones
/// are applied by [`apply_globals`].
pub(super) fn route(r: RouteFields<'_>, p: &str, errs: &mut Errors) -> RouteTraffic {
    let mut rate_limits: Vec<RateLimit> = Vec::new();
    if r.rate_limits.len() > MAX_LIMITS_PER_ROUTE {
        errs.push(format!("{p}.rate_limits"), format!("at most {MAX_LIMITS_PER_ROUTE} limits"));
    }
    for (i, l) in r.rate_limits.iter().enumerate() {
        let path = format!("{p}.rate_limits[{i}]");
        let Some(limit) = limit(&l.key, l.requests, l.per, &path, errs) else {
            continue;
        };
        if r.public && limit.key.needs_token() {
            errs.push(format!("{path}.key"), "a public route has no token: only client limits apply");
        } else if rate_limits.iter().any(|o| o.key == limit.key && o.window_secs == limit.window_secs) {
            errs.push(path, format!("a second {} limit per {}s", limit.key.as_str(), limit.window_secs));
        } else {
            rate_limits.push(limit);
        }
    }
    let cors = r.cors.map(|c| Arc::new(cors(c, &format!("{p}.cors"), errs)));
    let own = r.response_headers.map(|h| response_headers(h, false, &format!("{p}.response_headers"), errs));
    RouteTraffic { rate_limits, cors, response_headers: Arc::new(own.unwrap_or_default()) }
}

/// The global fields of the file.
pub(super) struct GlobalFields<'a> {
    pub cors: Option<&'a CorsFile>,
    pub response_headers: Option<&'a ResponseHeadersFile>,
    pub auth_failure_limit: Option<&'a AuthFailureLimitFile>,
}

/// Validates the global fields and applies them to each route: the global CORS to
/// routes without their own, the global response headers under each route's own.
pub(super) fn apply_globals(g: GlobalFields<'_>, routes: &mut [Route], errs: &mut Errors) -> TrafficSettings {
    let cors = g.cors.map(|c| Arc::new(cors(c, "cors", errs)));
    let default = ResponseHeadersFile::default();
    let headers = Arc::new(response_headers(g.response_headers.unwrap_or(&default), true, "response_headers", errs));
    let auth_failures =
        g.auth_failure_limit.and_then(|l| limit("client", l.requests, l.per, "auth_failure_limit", errs));
    for r in routes {
        let t = &mut r.traffic;
        if t.cors.is_none() {
            t.cors = cors.clone();
        }
        t.response_headers = Arc::new(headers.merged(&t.response_headers));
    }
    TrafficSettings { cors, response_headers: headers, auth_failures }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::ratelimit::KeyKind;

    fn config(route_extra: &str, top: &str) -> Result<Config, crate::ConfigError> {
        Config::from_yaml(&format!(
            r#"
listen: 127.0.0.1:8080
admin_listen: 127.0.0.1:9090
keys: {{ url_template: "http://127.0.0.1:1/{{tenant}}" }}
tenants:
  t1: {{ issuer: https://a, audiences: [api], algorithms: [ES256] }}
upstreams:
  u: {{ peers: ["127.0.0.1:1"] }}
routes:
  - {{ name: open, prefix: /open, upstream: u, public: true }}
  - {{ name: r, prefix: /r, upstream: u{route_extra} }}
{top}
"#
        ))
    }

    #[test]
    fn valid_settings_are_applied_to_routes() {
        let c = config(
            ", rate_limits: [{ key: subject, requests: 5, per: 1m }, { key: client, requests: 50, per: 10s }], \
             response_headers: { set: { Content-Security-Policy: \"default-src 'none'\" }, remove: [X-Runtime] }",
            "cors: { allow_origins: [\"https://app.example.com\", \"https://*.example.org\"], allow_credentials: true, max_age: 10m }\n\
             auth_failure_limit: { requests: 20, per: 1m }",
        )
        .unwrap();
        let routes = c.router.routes();
        let r = &routes[1].traffic;
        assert_eq!(r.rate_limits.len(), 2);
        assert_eq!(
            (r.rate_limits[0].key, r.rate_limits[0].requests, r.rate_limits[0].window_secs),
            (KeyKind::Subject, 5, 60)
        );
        assert!(r.has_client_limit() && !routes[0].traffic.has_client_limit());
        let cors = r.cors.as_ref().unwrap();
        assert_eq!(cors.max_age, Some(600));
        assert_eq!(cors.methods, ["GET", "HEAD", "POST"]);
        assert!(routes[0].traffic.cors.is_some(), "the global CORS applies to every route");
        let set: Vec<&str> = r.response_headers.set.iter().map(|(n, _)| n.as_str()).collect();
        assert!(set.contains(&"X-Content-Type-Options") && set.contains(&"Content-Security-Policy"), "{set:?}");
        assert_eq!(r.response_headers.remove, ["server", "x-powered-by", "x-runtime"]);
        assert_eq!(routes[0].traffic.response_headers.set.len(), 3);
        assert_eq!(c.traffic.auth_failures.as_ref().unwrap().requests, 20);
        // Turned off: nothing set or removed.
        let c = config("", "response_headers: { set: {}, remove: [] }").unwrap();
        assert!(c.router.routes()[1].traffic.response_headers.set.is_empty());
        assert!(c.traffic.cors.is_none() && c.traffic.auth_failures.is_none());
    }

    #[test]
    fn every_bad_field_is_named() {
        let err = config(
            ", rate_limits: [{ key: user, requests: 0, per: 1500ms }, { key: tenant, requests: 1, per: 1m }, \
             { key: tenant, requests: 9, per: 60s }, { key: client, requests: 1, per: 1m, burst: 3 }], \
             cors: { allow_origins: [\"app.example.com\", \"*\"], allow_credentials: true, allow_methods: [FETCH], \
             allow_headers: [\"bad header\"] }",
            "response_headers: { set: { Content-Length: \"1\", X-Ok: \"\" }, remove: [Vary] }\n\
             auth_failure_limit: { requests: 0, per: 2d }\n\
             cors: { allow_origins: [] }",
        )
        .unwrap_err();
        let paths: Vec<&str> = err.0.iter().map(|e| e.path.as_str()).collect();
        for want in [
            "routes[1] (name: r).rate_limits[0].key",
            "routes[1] (name: r).rate_limits[0].requests",
            "routes[1] (name: r).rate_limits[0].per",
            "routes[1] (name: r).rate_limits[2]",
            "routes[1] (name: r).rate_limits[3].burst",
            "routes[1] (name: r).cors.allow_origins[0]",
            "routes[1] (name: r).cors.allow_origins[1]",
            "routes[1] (name: r).cors.allow_methods[0]",
            "routes[1] (name: r).cors.allow_headers[0]",
            "response_headers.set.Content-Length",
            "response_headers.set.X-Ok",
            "response_headers.remove[0]",
            "auth_failure_limit.requests",
            "auth_failure_limit.per",
            "cors.allow_origins",
        ] {
            assert!(paths.contains(&want), "missing {want} in {err}");
        }
        let public = config("", "").and_then(|_| {
            Config::from_yaml(
                "listen: 127.0.0.1:1\nadmin_listen: 127.0.0.1:2\nkeys: { url_template: \"http://k/{tenant}\" }\n\
                 tenants: {}\nupstreams: { u: { peers: [\"127.0.0.1:3\"] } }\n\
                 routes: [{ prefix: /, upstream: u, public: true, rate_limits: [{ key: tenant, requests: 1, per: 1s }] }]\n",
            )
        });
        let err = public.unwrap_err();
        assert!(
            err.0.iter().any(|e| e.path == "routes[0].rate_limits[0].key" && e.message.contains("public")),
            "{err}"
        );
    }
}
