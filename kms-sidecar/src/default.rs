//! Every default value of the sidecar in one place: what a config file, an admin API
//! body or a request that leaves a value out gets. The accepted ranges live with
//! their validators ([`crate::tenant`], [`crate::config`]).

use std::time::Duration;

/// Rotation interval of a tenant that gives none (90 days).
pub const ROTATION_INTERVAL: i64 = 90 * 86_400;
/// Longest token lifetime of a tenant that gives none (15 minutes).
pub const MAX_TOKEN_TTL: i64 = 900;
/// Lifetime of a minted token whose request gives none (15 minutes, capped by the
/// tenant's longest lifetime).
pub const TOKEN_TTL: i64 = 900;
/// Clock skew between issuers and verifiers of a tenant that gives none (seconds).
pub const CLOCK_SKEW: i64 = 60;
/// Encryption key management of a tenant that gives none: every tenant gets
/// encryption keys.
pub const ENC_ALG: &str = "RSA-OAEP-256";
/// RSA signing key size of a tenant that gives none.
pub const RSA_BITS: u32 = 2048;
/// `Cache-Control: max-age` of JWKS answers (`jwks_max_age`), seconds.
pub const JWKS_MAX_AGE: i64 = 60;
/// Most unexpired one-time ids held for gateways (`one_time_capacity`).
pub const ONE_TIME_CAPACITY: u64 = 1_000_000;
/// How far in the future a revocation watermark may lie (seconds): clock skew only.
pub const WATERMARK_AHEAD: i64 = 60;
/// Clock skew between gateways and the sidecar tolerated by one-time ids (seconds).
pub const ONE_TIME_SKEW: i64 = 60;
/// How often the "key rotation" task applies the timeline.
pub const ROTATION_TICK: Duration = Duration::from_secs(1);

/// Default time a client has to send a request's start line and headers; it also
/// bounds how long an idle keep-alive connection stays open.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time a whole request may take (reading the body, the handler, the long
/// poll of the revocation feed, which waits at most 30 s); past it the answer is 408.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Default largest request body (PEM imports are the largest bodies, a few KiB).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Default largest start line plus headers, in bytes.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Default most request headers.
pub const MAX_HEADERS: usize = 64;
/// Default most open connections per listener.
pub const MAX_CONNECTIONS: usize = 1024;
/// How long a shutdown waits for in-flight requests before dropping them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
