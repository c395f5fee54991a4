//! Configuration: the YAML file ([`file`]) is parsed with unknown fields refused,
//! then converted into validated types. Every problem is reported with its field
//! path (`routes[2].allow[0].role`) before failing, never just the first.

mod access_log;
mod audit;
pub mod discovery;
pub mod file;
mod http;
mod load;
mod route;
mod tenant;
pub mod tls;
mod traffic;

use crate::header::{self, ArrayEncoding, HeaderMapping};
use crate::keystore::RefreshPolicy;
use crate::route::Router;
use crate::secret::SecretSource;
use crate::tenant::Tenant;
use crate::verify::VerifyOptions;
pub use access_log::{AccessLogSettings, AccessLogTarget};
use file::FileConfig;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// One problem in a config file, with the path of the field at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Field path, e.g. `routes[2].allow[0].role`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// Every problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError(pub Vec<FieldError>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}: {}", e.path, e.message)?;
        }
        Ok(())
    }
}

/// What to do at start-up when a required tenant's keys cannot be loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Startup {
    /// Refuse to start.
    FailFast,
    /// Start and report not ready until the keys load.
    NotReady,
}

/// Default size cap on one key set (`keys.max_fetch_bytes`): 1 MiB, room for
/// hundreds of RSA keys.
pub const DEFAULT_MAX_FETCH_BYTES: usize = 1 << 20;
/// Largest `keys.max_fetch_bytes` accepted.
pub const MAX_FETCH_BYTES_LIMIT: usize = 64 << 20;

/// Key fetching settings.
#[derive(Debug, Clone)]
pub struct KeySettings {
    /// Refresh timing.
    pub refresh: RefreshPolicy,
    /// Time cap on one whole fetch (connect, headers and body).
    pub fetch_timeout: Duration,
    /// Size cap on one key set (URL body or file), in bytes.
    pub max_fetch_bytes: usize,
    /// Start-up behaviour.
    pub startup: Startup,
}

/// Health check of an upstream pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// Path probed with GET.
    pub path: String,
    /// Probe interval.
    pub interval: Duration,
}

/// A validated upstream pool.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// Pool name.
    pub name: String,
    /// Peers.
    pub peers: Vec<SocketAddr>,
    /// Optional active health check.
    pub health_check: Option<HealthCheck>,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Read timeout.
    pub read_timeout: Duration,
    /// Retries on connect failure.
    pub retries: usize,
    /// TLS to the peers, if configured.
    pub tls: Option<tls::UpstreamTls>,
}

/// Audit trail settings: the authenticated trail (decisions about a verified token,
/// never sampled) and the anonymous one, in files of their own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSettings {
    /// The authenticated trail.
    pub authenticated: AuditFiles,
    /// The anonymous trail (no verified token): public routes and early refusals.
    pub anonymous: AuditFiles,
    /// Anonymous records a second, on average, beyond which they are left out (counted);
    /// refusals and public-route passes each have a bucket of this size.
    pub anonymous_rate: u32,
    /// Anonymous records written at once before `anonymous_rate` applies.
    pub anonymous_burst: u32,
    /// The longest recorded path, in bytes; longer ones are cut and marked.
    pub max_path_bytes: usize,
}

/// One trail's file set and queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditFiles {
    /// JSON-lines file; rotated ones are `file.1` .. `file.keep`.
    pub file: String,
    /// No file ever grows past this many bytes.
    pub max_bytes: u64,
    /// Rotated files kept.
    pub keep: usize,
    /// Queue capacity between requests and this trail's writer.
    pub queue: usize,
}

/// The revocation feed the gateway follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationSettings {
    /// Feed URL.
    pub feed_url: String,
    /// Where the channel credential comes from.
    pub token: SecretSource,
    /// Long-poll wait.
    pub poll_wait: Duration,
    /// Refuse tokens on protected routes until the feed (or a fresh saved state) was read.
    pub require_sync: bool,
    /// File keeping the revocation state between runs (written durably after changes).
    pub state_file: Option<String>,
    /// Oldest saved state that counts as in sync at start.
    pub state_max_age: Duration,
}

/// A shared one-time token store (the kms-sidecar's `/internal/v1/one-time`), for
/// gateways side by side; absent, one-time ids are kept in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayStoreSettings {
    /// Claim URL.
    pub url: String,
    /// Where the channel credential comes from.
    pub token: SecretSource,
    /// Longest wait for an answer (then 503 `replay_store_unavailable`).
    pub timeout: Duration,
}

/// The validated configuration.
#[derive(Debug)]
pub struct Config {
    /// Proxy listener.
    pub listen: SocketAddr,
    /// Admin listener.
    pub admin_listen: SocketAddr,
    /// Proxy worker threads.
    pub threads: usize,
    /// Verification settings.
    pub verify: VerifyOptions,
    /// Role claim name.
    pub role_claim: String,
    /// Forward `Authorization` upstream.
    pub forward_authorization: bool,
    /// Verified-token cache size.
    pub token_cache_size: usize,
    /// One-time `jti`s remembered at most.
    pub replay_cache_size: usize,
    /// Key settings.
    pub keys: KeySettings,
    /// Tenants.
    pub tenants: Vec<Tenant>,
    /// Claim-to-header mappings.
    pub headers: Vec<HeaderMapping>,
    /// Upstreams by name.
    pub upstreams: BTreeMap<String, Upstream>,
    /// Routes.
    pub router: Router,
    /// Audit trail, if configured.
    pub audit: Option<AuditSettings>,
    /// Admin credential source, if configured (admin endpoints are off without it).
    pub admin_token: Option<SecretSource>,
    /// Revocation feed, if configured.
    pub revocation: Option<RevocationSettings>,
    /// Shared one-time token store, if configured (else in memory).
    pub replay_store: Option<ReplayStoreSettings>,
    /// Per-tenant metric labels (off: one `all` series, for large tenant counts).
    pub tenant_labels: bool,
    /// Limits, header hygiene and forwarding trust of the request's HTTP (`http:`).
    pub http: crate::http_limits::HttpSettings,
    /// Tenants added from the sidecar's tenant list, if configured.
    pub tenant_discovery: Option<discovery::DiscoverySettings>,
    /// The per-request access log (`access_log:`).
    pub access_log: AccessLogSettings,
    /// Global CORS, response headers and the limit on refused tokens.
    pub traffic: crate::traffic::TrafficSettings,
    /// HTTPS listeners (`tls:`), if configured.
    pub tls: Option<tls::TlsSettings>,
}

struct Errors(Vec<FieldError>);

impl Errors {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError { path: path.into(), message: message.into() });
    }
}

const METHODS: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"];

fn methods(list: &[String], path: &str, errs: &mut Errors) -> Vec<String> {
    let mut out = Vec::new();
    for (i, m) in list.iter().enumerate() {
        let up = m.to_ascii_uppercase();
        if METHODS.contains(&up.as_str()) {
            out.push(up);
        } else {
            errs.push(format!("{path}[{i}]"), format!("unknown HTTP method {m:?}"));
        }
    }
    out
}

/// Parses a list of algorithm names, naming each unknown one and the allowed set.
fn allowlist<T>(
    list: &[String],
    path: &str,
    parse: fn(&str) -> Option<T>,
    names: &[&str],
    errs: &mut Errors,
) -> Vec<T> {
    let mut out = Vec::new();
    for (i, a) in list.iter().enumerate() {
        match parse(a) {
            Some(a) => out.push(a),
            None => errs.push(format!("{path}[{i}]"), format!("{a:?} is not allowed: use {}", names.join(", "))),
        }
    }
    out
}

/// A credential source given as exactly one of `token_env` or `token_file`.
fn credential(env: &Option<String>, file: &Option<String>, path: &str, errs: &mut Errors) -> Option<SecretSource> {
    let source = SecretSource::from_fields(env, file);
    if source.is_none() {
        errs.push(path, "set exactly one of token_env or token_file");
    }
    source
}

fn valid_header_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

impl Config {
    /// Parses and validates YAML text.
    /// Every error is reported, the file's (an unknown field, a wrong type) and the
    /// validation's alike: an entry with a file error is left out and the rest still
    /// validated.
    pub fn from_yaml(text: &str) -> Result<Config, ConfigError> {
        let (file, mut errors) = load::read(text);
        let Some((file, gaps)) = file else {
            return Err(ConfigError(errors));
        };
        match Config::validate(file, &gaps) {
            Ok(config) if errors.is_empty() => Ok(config),
            Ok(_) => Err(ConfigError(errors)),
            Err(ConfigError(more)) => {
                errors.extend(more);
                Err(ConfigError(errors))
            }
        }
    }

    /// Reads and validates a YAML file.
    pub fn from_file(path: &std::path::Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(vec![FieldError { path: path.display().to_string(), message: e.to_string() }]))?;
        Config::from_yaml(&text)
    }

    /// Ids of tenants whose keys readiness waits for.
    pub fn required_tenants(&self) -> Vec<String> {
        self.tenants.iter().filter(|t| t.required).map(|t| t.id.clone()).collect()
    }
}

impl TryFrom<FileConfig> for Config {
    type Error = ConfigError;

    fn try_from(f: FileConfig) -> Result<Config, ConfigError> {
        let gaps = load::Gaps::none(&f);
        Config::validate(f, &gaps)
    }
}

impl Config {
    /// `(route name, tenant id)` for every tenant a route (or one of its allow rules)
    /// names that this config's tenants lack. Empty for a config read from its file
    /// alone (validation refuses such names); with `tenant_discovery`, a route may
    /// name a tenant of the sidecar's list, which this shows missing until the list
    /// has it (its requests are refused `forbidden_tenant` meanwhile).
    pub fn unknown_route_tenants(&self) -> Vec<(&str, &str)> {
        let mut unknown = Vec::new();
        for r in self.router.routes() {
            let named = r.tenants.iter().chain(r.allow.iter().flat_map(|a| a.tenants.iter()));
            for t in named {
                let pair = (r.name.as_str(), t.as_str());
                if !self.tenants.iter().any(|x| x.id == *t) && !unknown.contains(&pair) {
                    unknown.push(pair);
                }
            }
        }
        unknown
    }
}

impl Config {
    /// Validates a file config; `gaps` says what its reading left out.
    fn validate(f: FileConfig, gaps: &load::Gaps) -> Result<Config, ConfigError> {
        let mut errs = Errors(Vec::new());
        let addr = |s: &str, path: &str, errs: &mut Errors| -> SocketAddr {
            s.parse().unwrap_or_else(|_| {
                errs.push(path, format!("{s:?} is not an ip:port address"));
                SocketAddr::from(([127, 0, 0, 1], 0))
            })
        };
        let listen = addr(&f.listen, "listen", &mut errs);
        let admin_listen = addr(&f.admin_listen, "admin_listen", &mut errs);
        if admin_listen == listen && listen.port() != 0 {
            errs.push("admin_listen", format!("{admin_listen} is also the proxy's listen address"));
        }
        if f.threads == Some(0) {
            errs.push("threads", "must be at least 1");
        }
        for (name, claim) in [("auth.tenant_claim", &f.auth.tenant_claim), ("auth.role_claim", &f.auth.role_claim)] {
            if claim.is_empty() {
                errs.push(name, "must not be empty");
            }
        }
        let max_token_size = f.auth.max_token_size.unwrap_or(8192);
        if !(256..=65536).contains(&max_token_size) {
            errs.push("auth.max_token_size", "must be between 256 and 65536 bytes");
        }
        let k = &f.keys;
        let secs = |d: Option<crate::duration::Dur>, default: i64| d.map_or(default, |d| d.secs());
        let refresh = RefreshPolicy {
            floor: secs(k.refresh_floor, 30),
            ceiling: secs(k.refresh_ceiling, 3600),
            default_max_age: secs(k.default_max_age, 300),
            unknown_kid_cooldown: secs(k.unknown_kid_cooldown, 10),
            max_stale: secs(k.max_stale, 3600),
        };
        if refresh.floor < 1 {
            errs.push("keys.refresh_floor", "must be at least 1s");
        }
        if refresh.ceiling < refresh.floor {
            errs.push("keys.refresh_ceiling", "must not be below keys.refresh_floor");
        }
        if refresh.max_stale < refresh.ceiling {
            errs.push("keys.max_stale", "must be at least keys.refresh_ceiling, or keys expire before their refresh");
        }
        let fetch_timeout = k.fetch_timeout.map_or(Duration::from_secs(2), |d| d.0);
        if fetch_timeout < Duration::from_millis(10) || fetch_timeout > Duration::from_secs(60) {
            errs.push("keys.fetch_timeout", "must be between 10ms and 60s");
        }
        let max_fetch_bytes = k.max_fetch_bytes.unwrap_or(DEFAULT_MAX_FETCH_BYTES);
        if !(1024..=MAX_FETCH_BYTES_LIMIT).contains(&max_fetch_bytes) {
            errs.push("keys.max_fetch_bytes", format!("must be between 1024 and {MAX_FETCH_BYTES_LIMIT} bytes"));
        }
        let startup = match k.startup.as_deref() {
            None | Some("fail_fast") => Startup::FailFast,
            Some("not_ready") => Startup::NotReady,
            Some(other) => {
                errs.push("keys.startup", format!("{other:?} is not fail_fast or not_ready"));
                Startup::FailFast
            }
        };
        let tenants = tenant::tenants(&f, gaps, &mut errs);

        let mut headers = Vec::new();
        for (i, h) in f.headers.iter().enumerate() {
            let p = format!("headers[{i}]");
            let name = h.header.to_ascii_lowercase();
            if !valid_header_name(&name) {
                errs.push(format!("{p}.header"), format!("{:?} is not a valid header name", h.header));
            }
            if ["host", "authorization", "content-length", "transfer-encoding", "connection"].contains(&name.as_str()) {
                errs.push(format!("{p}.header"), format!("{:?} cannot carry a claim", h.header));
            }
            if headers.iter().any(|m: &HeaderMapping| m.header == name) {
                errs.push(format!("{p}.header"), format!("{:?} is mapped twice", h.header));
            }
            let array = match h.array.as_deref() {
                None | Some("csv") => ArrayEncoding::Csv,
                Some("json") => ArrayEncoding::Json,
                Some(o) => {
                    errs.push(format!("{p}.array"), format!("{o:?} is not csv or json"));
                    ArrayEncoding::Csv
                }
            };
            if h.claim.is_empty() {
                errs.push(format!("{p}.claim"), "must not be empty");
            }
            headers.push(HeaderMapping { claim: h.claim.clone(), header: name, array });
        }

        let mut upstreams = BTreeMap::new();
        for (name, u) in &f.upstreams {
            let p = format!("upstreams.{name}");
            if u.peers.is_empty() {
                errs.push(format!("{p}.peers"), "at least one peer is required");
            }
            let peers = u
                .peers
                .iter()
                .enumerate()
                .filter_map(|(i, s)| match s.parse::<SocketAddr>() {
                    Ok(a) => Some(a),
                    Err(_) => {
                        errs.push(format!("{p}.peers[{i}]"), format!("{s:?} is not an ip:port address"));
                        None
                    }
                })
                .collect();
            let health_check = u.health_check.as_ref().map(|h| {
                if !h.path.starts_with('/') {
                    errs.push(format!("{p}.health_check.path"), "must start with '/'");
                }
                HealthCheck { path: h.path.clone(), interval: h.interval.map_or(Duration::from_secs(5), |d| d.0) }
            });
            upstreams.insert(
                name.clone(),
                Upstream {
                    name: name.clone(),
                    peers,
                    health_check,
                    connect_timeout: u.connect_timeout.map_or(Duration::from_secs(1), |d| d.0),
                    read_timeout: u.read_timeout.map_or(Duration::from_secs(30), |d| d.0),
                    retries: u.retries.unwrap_or(1),
                    tls: tls::upstream(u.tls.as_ref(), &format!("{p}.tls"), &mut errs),
                },
            );
        }

        let mut routes = route::routes(&f, gaps, &mut errs);
        let globals = traffic::GlobalFields {
            cors: f.cors.as_ref(),
            response_headers: f.response_headers.as_ref(),
            auth_failure_limit: f.auth_failure_limit.as_ref(),
        };
        let traffic = traffic::apply_globals(globals, &mut routes, &mut errs);
        let mapped: Vec<String> = headers.iter().map(|m: &HeaderMapping| header::normalise(&m.header)).collect();
        let http = http::http(&f.http, &mapped, max_token_size, &mut errs);

        let audit = f.audit.as_ref().map(|a| audit::settings(a, &mut errs));
        let access_log = access_log::settings(f.access_log.as_ref(), &mut errs);
        let tls = tls::settings(f.tls.as_ref(), &[listen, admin_listen], &mut errs);
        let admin_token = f.admin.as_ref().and_then(|a| credential(&a.token_env, &a.token_file, "admin", &mut errs));

        let revocation = f.revocation.as_ref().and_then(|r| {
            check_url(&r.feed_url, "revocation.feed_url", &mut errs);
            let token = credential(&r.token_env, &r.token_file, "revocation", &mut errs)?;
            let poll_wait = r.poll_wait.map_or(Duration::from_secs(20), |d| d.0);
            if poll_wait > Duration::from_secs(30) {
                errs.push("revocation.poll_wait", "at most 30s");
            }
            if r.state_file.as_deref() == Some("") {
                errs.push("revocation.state_file", "must not be empty");
            }
            let state_max_age = r.state_max_age.map_or(Duration::from_secs(3600), |d| d.0);
            if state_max_age < Duration::from_secs(1) {
                errs.push("revocation.state_max_age", "at least 1s");
            }
            Some(RevocationSettings {
                feed_url: r.feed_url.clone(),
                token,
                poll_wait,
                require_sync: r.require_sync.unwrap_or(true),
                state_file: r.state_file.clone(),
                state_max_age,
            })
        });

        let replay_store = f.replay_store.as_ref().and_then(|r| {
            check_url(&r.url, "replay_store.url", &mut errs);
            let timeout = r.timeout.map_or(Duration::from_secs(1), |d| d.0);
            if timeout.is_zero() || timeout > Duration::from_secs(10) {
                errs.push("replay_store.timeout", "between 1ms and 10s");
            }
            let token = credential(&r.token_env, &r.token_file, "replay_store", &mut errs)?;
            Some(ReplayStoreSettings { url: r.url.clone(), token, timeout })
        });

        let tenant_discovery = discovery::settings(&f, &mut errs);
        if f.auth.replay_cache_size == Some(0) {
            errs.push("auth.replay_cache_size", "must be at least 1");
        }
        if !errs.0.is_empty() {
            return Err(ConfigError(errs.0));
        }
        Ok(Config {
            listen,
            admin_listen,
            threads: f.threads.unwrap_or(2),
            verify: VerifyOptions {
                tenant_claim: f.auth.tenant_claim,
                leeway: f.auth.leeway.map_or(30, |d| d.secs()),
                max_token_size,
            },
            role_claim: f.auth.role_claim,
            forward_authorization: f.auth.forward_authorization,
            token_cache_size: f.auth.token_cache_size.unwrap_or(10_000),
            replay_cache_size: f.auth.replay_cache_size.unwrap_or(100_000),
            keys: KeySettings { refresh, fetch_timeout, max_fetch_bytes, startup },
            tenants,
            headers,
            upstreams,
            router: Router::new(routes),
            audit,
            admin_token,
            revocation,
            replay_store,
            tenant_labels: f.metrics.as_ref().and_then(|m| m.tenant_labels).unwrap_or(true),
            http,
            tenant_discovery,
            access_log,
            traffic,
            tls,
        })
    }
}

fn check_url(u: &str, path: &str, errs: &mut Errors) {
    if !(u.starts_with("http://") || u.starts_with("https://")) {
        errs.push(path, format!("{u:?} is not an http(s) URL"));
    }
}
