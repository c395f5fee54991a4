//! The YAML file format, mirrored one-to-one by serde structs with unknown fields
//! refused. Nothing here is validated beyond types; see [`super::Config`].

use crate::duration::Dur;
use serde::Deserialize;
use std::collections::BTreeMap;

fn default_tenant_claim() -> String {
    "tenant_id".into()
}
fn default_role_claim() -> String {
    "role".into()
}
fn default_true() -> bool {
    true
}

/// Top level of the gateway's YAML file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Proxy listener, e.g. `127.0.0.1:8080`.
    pub listen: String,
    /// Admin listener (`/healthz`, `/readyz`, `/metrics`).
    pub admin_listen: String,
    /// Worker threads for the proxy service.
    #[serde(default)]
    pub threads: Option<usize>,
    /// Token-handling settings.
    #[serde(default)]
    pub auth: AuthFile,
    /// Key-fetching settings.
    #[serde(default)]
    pub keys: KeysFile,
    /// Tenants by id.
    pub tenants: BTreeMap<String, TenantFile>,
    /// Claims forwarded as request headers.
    #[serde(default)]
    pub headers: Vec<HeaderFile>,
    /// Upstream pools by name.
    pub upstreams: BTreeMap<String, UpstreamFile>,
    /// Routes, matched in order.
    pub routes: Vec<RouteFile>,
    /// Audit trail.
    #[serde(default)]
    pub audit: Option<AuditFile>,
    /// Admin endpoint credentials.
    #[serde(default)]
    pub admin: Option<AdminFile>,
    /// The sidecar's revocation feed.
    #[serde(default)]
    pub revocation: Option<RevocationFile>,
    /// Metrics settings.
    #[serde(default)]
    pub metrics: Option<MetricsFile>,
    /// Where JWE-enabled tenants' private decryption keys come from.
    #[serde(default)]
    pub decryption: Option<DecryptionFile>,
    /// A shared one-time token store (default: in memory).
    #[serde(default)]
    pub replay_store: Option<ReplayStoreFile>,
    /// Limits, header hygiene and forwarding trust of the request's HTTP.
    #[serde(default)]
    pub http: HttpFile,
    /// Tenants added from the sidecar's tenant list.
    #[serde(default)]
    pub tenant_discovery: Option<DiscoveryFile>,
    /// The per-request access log (default: JSON lines on stdout).
    #[serde(default)]
    pub access_log: Option<AccessLogFile>,
    /// CORS for every route without its own.
    #[serde(default)]
    pub cors: Option<super::traffic::CorsFile>,
    /// Headers set on, and removed from, every answer.
    #[serde(default)]
    pub response_headers: Option<super::traffic::ResponseHeadersFile>,
    /// Refused tokens allowed per client address.
    #[serde(default)]
    pub auth_failure_limit: Option<super::traffic::AuthFailureLimitFile>,
    /// HTTPS listeners.
    #[serde(default)]
    pub tls: Option<super::tls::TlsFile>,
}

/// `access_log:` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLogFile {
    /// `off`, `stdout` (default), `stderr` or `file`.
    #[serde(default)]
    pub target: Option<String>,
    /// The file, with `target: file`.
    #[serde(default)]
    pub path: Option<String>,
    /// Line format: `json` (the only one).
    #[serde(default)]
    pub format: Option<String>,
    /// Lines queued for the writer before new ones are dropped (default 16384).
    #[serde(default)]
    pub queue: Option<usize>,
}

/// `http:` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpFile {
    /// Header names with `_`: `drop` (default), `reject` or `allow`.
    #[serde(default)]
    pub underscore_headers: Option<String>,
    /// Inbound headers always removed (default: the method-override family).
    #[serde(default)]
    pub strip_headers: Option<Vec<String>>,
    /// CIDRs (or addresses) of proxies whose `X-Forwarded-*` headers are believed.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Hops in front of the gateway trusted whatever their address.
    #[serde(default)]
    pub trusted_hops: Option<usize>,
    /// Longest header line (`name: value`).
    #[serde(default)]
    pub max_header_line_bytes: Option<usize>,
    /// Longest request head (request line and header lines).
    #[serde(default)]
    pub max_header_bytes: Option<usize>,
    /// Most header fields.
    #[serde(default)]
    pub max_headers: Option<usize>,
    /// Longest request target.
    #[serde(default)]
    pub max_uri_bytes: Option<usize>,
    /// Largest body, unless a route sets its own.
    #[serde(default)]
    pub max_body_bytes: Option<u64>,
    /// Longest wait for each read of a new connection's request head.
    #[serde(default)]
    pub header_read_timeout: Option<Dur>,
    /// Longest wait for the next request on a kept-alive connection.
    #[serde(default)]
    pub idle_timeout: Option<Dur>,
    /// Longest wait for each read of a request body.
    #[serde(default)]
    pub body_read_timeout: Option<Dur>,
}

/// `replay_store:` section: the kms-sidecar's one-time endpoint.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayStoreFile {
    /// Claim URL (the sidecar's `/internal/v1/one-time`).
    pub url: String,
    /// Environment variable holding the gateway channel credential.
    #[serde(default)]
    pub token_env: Option<String>,
    /// File holding the gateway channel credential.
    #[serde(default)]
    pub token_file: Option<String>,
    /// Longest wait for an answer (default 1s).
    #[serde(default)]
    pub timeout: Option<Dur>,
}

/// `decryption:` section: the sidecar's gateway channel.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecryptionFile {
    /// URL for tenants without their own source; `{tenant}` is replaced.
    #[serde(default)]
    pub url_template: Option<String>,
    /// Environment variable holding the gateway channel credential.
    #[serde(default)]
    pub token_env: Option<String>,
    /// File holding the gateway channel credential.
    #[serde(default)]
    pub token_file: Option<String>,
}

/// A tenant's `encryption:` section (present: the tenant accepts JWE).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptionFile {
    /// Accepted key management algorithms (default: all supported).
    #[serde(default)]
    pub key_management: Vec<String>,
    /// Accepted content encryption algorithms (default: all supported).
    #[serde(default)]
    pub content_encryption: Vec<String>,
    /// Accept a JWE around bare claims instead of a signed JWS.
    #[serde(default)]
    pub allow_bare_claims: bool,
    /// Decryption key source; defaults to `decryption.url_template`.
    #[serde(default)]
    pub keys: Option<DecryptionKeysFile>,
}

/// Where one tenant's decryption keys come from: exactly one of `url` or `file`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecryptionKeysFile {
    /// The sidecar's decryption-keys URL (uses the `decryption:` credential).
    #[serde(default)]
    pub url: Option<String>,
    /// A local JWKS file of private JWKs.
    #[serde(default)]
    pub file: Option<String>,
}

/// `metrics:` section.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsFile {
    /// Label per-tenant series with the tenant id (turn off for large tenant counts:
    /// they are then aggregated under `tenant="all"`).
    #[serde(default)]
    pub tenant_labels: Option<bool>,
}

/// `revocation:` section.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationFile {
    /// Feed URL (the sidecar's `/internal/v1/revocations`).
    pub feed_url: String,
    /// Environment variable holding the gateway channel credential.
    #[serde(default)]
    pub token_env: Option<String>,
    /// File holding the gateway channel credential.
    #[serde(default)]
    pub token_file: Option<String>,
    /// Long-poll wait per request.
    #[serde(default)]
    pub poll_wait: Option<Dur>,
    /// Refuse tokens on protected routes (503) until the feed was read once (default true).
    #[serde(default)]
    pub require_sync: Option<bool>,
    /// Where to keep the revocation state between runs.
    #[serde(default)]
    pub state_file: Option<String>,
    /// How old a saved state may be and still count as in sync at start (default 1h).
    #[serde(default)]
    pub state_max_age: Option<Dur>,
}

/// `audit:` section: the authenticated trail's files, and `anonymous:` for the rest.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditFile {
    /// Append-only JSON-lines file of decisions about a verified token.
    pub file: String,
    /// No file grows past this many bytes (rotation before the write that would).
    #[serde(default)]
    pub max_bytes: Option<u64>,
    /// Rotated files kept (`file.1` .. `file.N`).
    #[serde(default)]
    pub keep: Option<usize>,
    /// Bounded queue between requests and the writer.
    #[serde(default)]
    pub queue: Option<usize>,
    /// The longest recorded path, in bytes.
    #[serde(default)]
    pub max_path_bytes: Option<usize>,
    /// The anonymous trail.
    #[serde(default)]
    pub anonymous: Option<AnonymousAuditFile>,
}

/// `audit.anonymous:`: records without a verified token, in their own files, rate-limited.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnonymousAuditFile {
    /// Its own JSON-lines file (default `<audit.file>.anonymous`).
    #[serde(default)]
    pub file: Option<String>,
    /// As `audit.max_bytes`, for this file set (default the same).
    #[serde(default)]
    pub max_bytes: Option<u64>,
    /// As `audit.keep` (default the same).
    #[serde(default)]
    pub keep: Option<usize>,
    /// Its own queue.
    #[serde(default)]
    pub queue: Option<usize>,
    /// Records a second, on average.
    #[serde(default)]
    pub rate: Option<u32>,
    /// Records at once before `rate` applies.
    #[serde(default)]
    pub burst: Option<u32>,
}

/// `admin:` section: where the bearer credential for admin endpoints comes from.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminFile {
    /// Environment variable holding the token.
    #[serde(default)]
    pub token_env: Option<String>,
    /// File holding the token.
    #[serde(default)]
    pub token_file: Option<String>,
}

/// `auth:` section.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthFile {
    /// Claim naming the tenant.
    #[serde(default = "default_tenant_claim")]
    pub tenant_claim: String,
    /// Claim holding the role(s), string or array.
    #[serde(default = "default_role_claim")]
    pub role_claim: String,
    /// Clock leeway for `exp`, `nbf`, `iat`.
    #[serde(default)]
    pub leeway: Option<Dur>,
    /// Maximum token length in bytes.
    #[serde(default)]
    pub max_token_size: Option<usize>,
    /// Forward the client's `Authorization` header upstream.
    #[serde(default)]
    pub forward_authorization: bool,
    /// Verified-token cache capacity (0 disables).
    #[serde(default)]
    pub token_cache_size: Option<usize>,
    /// Most unexpired one-time `jti`s remembered (beyond it one-time routes refuse).
    #[serde(default)]
    pub replay_cache_size: Option<usize>,
}

impl Default for AuthFile {
    fn default() -> Self {
        Self {
            tenant_claim: default_tenant_claim(),
            role_claim: default_role_claim(),
            leeway: None,
            max_token_size: None,
            forward_authorization: false,
            token_cache_size: None,
            replay_cache_size: None,
        }
    }
}

/// `keys:` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysFile {
    /// JWKS URL for tenants without their own source; `{tenant}` is replaced.
    #[serde(default)]
    pub url_template: Option<String>,
    /// Shortest refresh interval, whatever `max-age` says.
    #[serde(default)]
    pub refresh_floor: Option<Dur>,
    /// Longest refresh interval.
    #[serde(default)]
    pub refresh_ceiling: Option<Dur>,
    /// Refresh interval when the source sends no `max-age`.
    #[serde(default)]
    pub default_max_age: Option<Dur>,
    /// Minimum time between two unknown-`kid` refetches of one tenant.
    #[serde(default)]
    pub unknown_kid_cooldown: Option<Dur>,
    /// How long the last good keys keep serving while the source is down.
    #[serde(default)]
    pub max_stale: Option<Dur>,
    /// Time cap on one whole fetch (connect, headers and body).
    #[serde(default)]
    pub fetch_timeout: Option<Dur>,
    /// Size cap on one key set (URL body or file), in bytes.
    #[serde(default)]
    pub max_fetch_bytes: Option<usize>,
    /// `fail_fast` (refuse to start) or `not_ready` (start, report not ready).
    #[serde(default)]
    pub startup: Option<String>,
}

/// One tenant.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantFile {
    /// Expected `iss`.
    pub issuer: String,
    /// Accepted `aud` values (at least one must match).
    pub audiences: Vec<String>,
    /// Allowed JWS algorithms.
    pub algorithms: Vec<String>,
    /// Whether readiness waits for this tenant's keys.
    #[serde(default = "default_true")]
    pub required: bool,
    /// Claims that must be present.
    #[serde(default)]
    pub required_claims: Vec<String>,
    /// Key source; defaults to `keys.url_template`.
    #[serde(default)]
    pub keys: Option<KeySourceFile>,
    /// JWE settings; absent means the tenant accepts no encrypted token.
    #[serde(default)]
    pub encryption: Option<EncryptionFile>,
}

/// Where one tenant's keys come from: exactly one of `url` or `file`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySourceFile {
    /// A JWKS URL.
    #[serde(default)]
    pub url: Option<String>,
    /// A local JWKS (`.json`) or PEM file.
    #[serde(default)]
    pub file: Option<String>,
    /// `kid` for a single-key PEM file.
    #[serde(default)]
    pub kid: Option<String>,
}

/// One claim-to-header mapping.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderFile {
    /// Claim name.
    pub claim: String,
    /// Request header set upstream.
    pub header: String,
    /// Array encoding: `csv` (default) or `json`.
    #[serde(default)]
    pub array: Option<String>,
}

/// One upstream pool.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamFile {
    /// `host:port` peers.
    pub peers: Vec<String>,
    /// Active HTTP health check.
    #[serde(default)]
    pub health_check: Option<HealthCheckFile>,
    /// TCP connect timeout.
    #[serde(default)]
    pub connect_timeout: Option<Dur>,
    /// Read timeout.
    #[serde(default)]
    pub read_timeout: Option<Dur>,
    /// Retries on connect failure, each to another peer.
    #[serde(default)]
    pub retries: Option<usize>,
    /// TLS (and mutual TLS) to the peers.
    #[serde(default)]
    pub tls: Option<super::tls::UpstreamTlsFile>,
}

/// Health check settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckFile {
    /// Path probed with GET; 2xx is healthy.
    pub path: String,
    /// Probe interval.
    #[serde(default)]
    pub interval: Option<Dur>,
}

/// One route.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteFile {
    /// Name used in logs, metrics and error messages (default `route-<index>`); unique.
    #[serde(default)]
    pub name: Option<String>,
    /// Exact path template, e.g. `/patients/{patient_id}/records`.
    #[serde(default)]
    pub path: Option<String>,
    /// Segment-wise path prefix, e.g. `/echo`.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Methods this route answers (default: all).
    #[serde(default)]
    pub methods: Vec<String>,
    /// Upstream pool name.
    pub upstream: String,
    /// No token needed.
    #[serde(default)]
    pub public: bool,
    /// Tenants whose tokens the route accepts (default: every configured tenant).
    #[serde(default)]
    pub tenants: Option<Vec<String>>,
    /// Allow rules (any one must pass).
    #[serde(default)]
    pub allow: Vec<AllowFile>,
    /// Maximum `exp - iat` for tokens on this route.
    #[serde(default)]
    pub max_token_lifetime: Option<Dur>,
    /// Only a JWE (nested signed JWT) is accepted here.
    #[serde(default)]
    pub require_encrypted: bool,
    /// Each token (`jti`) passes once.
    #[serde(default)]
    pub one_time: bool,
    /// Largest request body on this route (default `http.max_body_bytes`).
    #[serde(default)]
    pub max_body_bytes: Option<u64>,
    /// Rate limits of this route.
    #[serde(default)]
    pub rate_limits: Vec<super::traffic::RateLimitFile>,
    /// CORS of this route (instead of the global one).
    #[serde(default)]
    pub cors: Option<super::traffic::CorsFile>,
    /// Response headers of this route, on top of the global ones.
    #[serde(default)]
    pub response_headers: Option<super::traffic::ResponseHeadersFile>,
}

/// One allow rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowFile {
    /// Role this rule grants.
    pub role: String,
    /// Tenants this rule applies to (default: every tenant the route accepts).
    #[serde(default)]
    pub tenants: Option<Vec<String>>,
    /// Methods allowed for the role (default: the route's).
    #[serde(default)]
    pub methods: Vec<String>,
    /// Owner rule: claim must equal path parameter.
    #[serde(default)]
    pub owner: Option<OwnerFile>,
}

/// Owner rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnerFile {
    /// Claim name, e.g. `sub`.
    pub claim: String,
    /// Path parameter name, e.g. `patient_id`.
    pub param: String,
}

/// `tenant_discovery:` section.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoveryFile {
    /// The sidecar's tenant list (`/internal/v1/tenants` on its internal listener).
    pub url: String,
    /// Environment variable holding the gateway channel credential.
    #[serde(default)]
    pub token_env: Option<String>,
    /// File holding the gateway channel credential.
    #[serde(default)]
    pub token_file: Option<String>,
    /// Poll interval (default 5s).
    #[serde(default)]
    pub interval: Option<Dur>,
}
