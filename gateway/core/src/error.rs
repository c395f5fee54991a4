//! Why a request was refused, and the one mapping from a refusal to an HTTP status,
//! `WWW-Authenticate` challenge and stable machine-readable reason code.

/// A token-level refusal (401, or 503 when keys are unavailable). Variants carry no
/// token content, so they are safe to log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No bearer token on a protected route.
    #[error("token missing")]
    TokenMissing,
    /// Wrong structure, encoding or JSON; the detail names what, never the content.
    #[error("token malformed: {0}")]
    TokenMalformed(&'static str),
    /// Larger than the configured maximum.
    #[error("token too large")]
    TokenTooLarge,
    /// A compact JWE, but no tenant accepts encrypted tokens.
    #[error("encrypted tokens are not supported")]
    EncryptionUnsupported,
    /// A plain JWS on a route that accepts only encrypted tokens.
    #[error("an encrypted token is required")]
    EncryptionRequired,
    /// A JWE did not decrypt (wrong key, tampered ciphertext, tag, IV or header).
    #[error("decryption failed")]
    DecryptionFailed,
    /// A JWE whose payload is not a signed JWS (`cty: JWT`), where one is required.
    #[error("a nested signed JWT is required")]
    NestedJwsRequired,
    /// The inner token names another tenant than the one whose key decrypted it.
    #[error("tenant mismatch between encryption and signature")]
    TenantMismatch,
    /// A one-time token used again.
    #[error("token already used")]
    TokenReplayed,
    /// The one-time token store is full of unexpired ids (refused, fails closed).
    #[error("replay store full")]
    ReplayStoreFull,
    /// The shared one-time token store did not answer (refused, fails closed).
    #[error("replay store unavailable")]
    ReplayStoreUnavailable,
    /// A header member we refuse (`crit`, `b64`, `jku`, `x5u`, `jwk`, `x5c`, bad `typ`).
    #[error("header member not supported: {0}")]
    HeaderUnsupported(&'static str),
    /// `alg` is unknown, `none`, HMAC, not allowlisted for the tenant, or does not fit the key.
    #[error("algorithm not allowed")]
    AlgorithmNotAllowed,
    /// No key with this `kid` in the tenant's set.
    #[error("key unknown")]
    KeyUnknown,
    /// The tenant's keys are not loaded (key source unreachable and nothing cached).
    #[error("tenant keys unavailable")]
    KeysUnavailable,
    /// The signature does not verify.
    #[error("signature invalid")]
    SignatureInvalid,
    /// `exp` is in the past (beyond leeway).
    #[error("token expired")]
    TokenExpired,
    /// `nbf` or `iat` is in the future (beyond leeway).
    #[error("token not yet valid")]
    TokenNotYetValid,
    /// `iss` does not match the tenant's issuer.
    #[error("issuer invalid")]
    IssuerInvalid,
    /// `aud` does not name one of the tenant's audiences.
    #[error("audience invalid")]
    AudienceInvalid,
    /// The tenant claim is missing or names no configured tenant.
    #[error("tenant unknown")]
    TenantUnknown,
    /// A required claim is absent.
    #[error("required claim missing: {0}")]
    ClaimMissing(String),
    /// A claim has the wrong type, an out-of-range time, or an unforwardable value.
    #[error("claim invalid: {0}")]
    ClaimInvalid(String),
    /// Revoked (by `jti`, subject or tenant watermark, or an emergency key removal).
    #[error("token revoked")]
    TokenRevoked,
    /// The revocation feed has not been read since start (and no fresh saved state):
    /// refused rather than risk accepting a revoked token.
    #[error("revocation state unavailable")]
    RevocationsUnavailable,
    /// `exp - iat` exceeds the route's maximum token lifetime.
    #[error("token lifetime exceeds the route maximum")]
    LifetimeExceeded,
}

/// A policy refusal (403).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// No allow rule names any of the caller's roles.
    #[error("role not allowed")]
    Role,
    /// The token's tenant is not one the route (or the rule naming the role) serves.
    #[error("tenant not allowed")]
    Tenant,
    /// A rule names the role but not this method.
    #[error("method not allowed for role")]
    Method,
    /// An owner rule did not hold (claim != path parameter).
    #[error("not the owner")]
    Owner,
}

/// A refusal of the request's HTTP itself, before any token is looked at: limits on
/// the head and body, header names, framing and timeouts (400, 408, 413, 414, 431).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EdgeError {
    /// One header line, or the whole request head, is over its limit (431).
    #[error("request header too large")]
    HeaderTooLarge,
    /// More header fields than allowed (431).
    #[error("too many request headers")]
    TooManyHeaders,
    /// The request target is over its limit (414).
    #[error("request URI too long")]
    UriTooLong,
    /// The body is, or grew, over the route's limit (413).
    #[error("request body too large")]
    BodyTooLarge,
    /// Ambiguous or broken framing: both `Content-Length` and `Transfer-Encoding`, a
    /// bad chunk (400); the detail names what, never the content.
    #[error("request malformed: {0}")]
    Malformed(&'static str),
    /// A header name refused by `http.underscore_headers: reject` (400).
    #[error("header name invalid")]
    HeaderInvalid,
    /// The client was too slow sending the body (408).
    #[error("request timed out")]
    Timeout,
}

/// A failure on the way to or from the upstream of an allowed request (or the
/// client's side of the connection failing meanwhile): 502, 503, 504, a client error
/// status, or nothing written at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// No healthy peer in the route's upstream pool (503).
    #[error("no healthy upstream peer")]
    Unavailable,
    /// Connecting to, writing to or reading from the upstream timed out (504).
    #[error("upstream timed out")]
    Timeout,
    /// The proxy refused the request as the client's error with this status (below 500).
    #[error("bad request ({0})")]
    BadRequest(u16),
    /// The client's connection failed while the request was proxied: nothing is
    /// answered (status 0 in logs).
    #[error("client connection failed")]
    Client,
    /// The TLS handshake with the peer failed (502): its certificate does not chain to
    /// the pool's CA or is not for the pool's `server_name`, or it refused the
    /// gateway's client certificate.
    #[error("upstream TLS handshake failed")]
    Tls,
    /// Any other upstream failure (502).
    #[error("upstream failed")]
    Failed,
}

/// Any refusal the gateway answers itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    /// 401 (or 503 for unavailable keys).
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// 403.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// 404: no route matches the path.
    #[error("no route")]
    NoRoute,
    /// 405: a route matches the path but not the method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 400, 408, 413, 414 or 431: the request's HTTP itself.
    #[error(transparent)]
    Edge(#[from] EdgeError),
    /// 502, 503, 504 or a client error: the upstream of an allowed request failed.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// 429: over a rate limit (`crate::ratelimit`).
    #[error("rate limited")]
    RateLimited(Box<crate::ratelimit::Limited>),
    /// 403: a CORS preflight from an origin, or for a method or header, not allowed.
    #[error("CORS preflight refused")]
    CorsRefused,
}

/// What to answer for a denial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DenialResponse {
    /// HTTP status code.
    pub status: u16,
    /// Stable reason code for the JSON body, logs and metrics.
    pub reason: &'static str,
    /// `WWW-Authenticate` value, when one is due.
    pub www_authenticate: Option<&'static str>,
}

impl Denial {
    /// The stable reason code.
    pub fn reason(&self) -> &'static str {
        self.response().reason
    }

    /// Maps this denial to status, reason code and challenge (RFC 6750 §3).
    pub fn response(&self) -> DenialResponse {
        const INVALID: Option<&str> = Some(r#"Bearer error="invalid_token""#);
        let auth = |reason| DenialResponse { status: 401, reason, www_authenticate: INVALID };
        let forbid = |reason| DenialResponse {
            status: 403,
            reason,
            www_authenticate: Some(r#"Bearer error="insufficient_scope""#),
        };
        match self {
            Denial::Auth(e) => match e {
                AuthError::TokenMissing => {
                    DenialResponse { status: 401, reason: "token_missing", www_authenticate: Some("Bearer") }
                }
                AuthError::TokenMalformed(_) => auth("token_malformed"),
                AuthError::TokenTooLarge => auth("token_too_large"),
                AuthError::EncryptionUnsupported => auth("encryption_unsupported"),
                AuthError::EncryptionRequired => auth("encryption_required"),
                AuthError::DecryptionFailed => auth("decryption_failed"),
                AuthError::NestedJwsRequired => auth("nested_jws_required"),
                AuthError::TenantMismatch => auth("tenant_mismatch"),
                AuthError::TokenReplayed => auth("token_replayed"),
                AuthError::ReplayStoreFull => {
                    DenialResponse { status: 503, reason: "replay_store_full", www_authenticate: None }
                }
                AuthError::ReplayStoreUnavailable => {
                    DenialResponse { status: 503, reason: "replay_store_unavailable", www_authenticate: None }
                }
                AuthError::HeaderUnsupported(_) => auth("header_unsupported"),
                AuthError::AlgorithmNotAllowed => auth("algorithm_not_allowed"),
                AuthError::KeyUnknown => auth("key_unknown"),
                AuthError::KeysUnavailable => {
                    DenialResponse { status: 503, reason: "keys_unavailable", www_authenticate: None }
                }
                AuthError::SignatureInvalid => auth("signature_invalid"),
                AuthError::TokenExpired => auth("token_expired"),
                AuthError::TokenNotYetValid => auth("token_not_yet_valid"),
                AuthError::IssuerInvalid => auth("issuer_invalid"),
                AuthError::AudienceInvalid => auth("audience_invalid"),
                AuthError::TenantUnknown => auth("tenant_unknown"),
                AuthError::ClaimMissing(_) => auth("claim_missing"),
                AuthError::ClaimInvalid(_) => auth("claim_invalid"),
                AuthError::LifetimeExceeded => auth("lifetime_exceeded"),
                AuthError::TokenRevoked => auth("token_revoked"),
                AuthError::RevocationsUnavailable => {
                    DenialResponse { status: 503, reason: "revocations_unavailable", www_authenticate: None }
                }
            },
            Denial::Policy(PolicyError::Role) => forbid("forbidden_role"),
            Denial::Policy(PolicyError::Tenant) => forbid("forbidden_tenant"),
            Denial::Policy(PolicyError::Method) => forbid("forbidden_method"),
            Denial::Policy(PolicyError::Owner) => forbid("forbidden_owner"),
            Denial::NoRoute => DenialResponse { status: 404, reason: "route_not_found", www_authenticate: None },
            Denial::MethodNotAllowed => {
                DenialResponse { status: 405, reason: "method_not_allowed", www_authenticate: None }
            }
            Denial::RateLimited(_) => DenialResponse { status: 429, reason: "rate_limited", www_authenticate: None },
            Denial::CorsRefused => DenialResponse { status: 403, reason: "cors_refused", www_authenticate: None },
            Denial::Edge(e) => {
                let (status, reason) = match e {
                    EdgeError::HeaderTooLarge => (431, "header_too_large"),
                    EdgeError::TooManyHeaders => (431, "too_many_headers"),
                    EdgeError::UriTooLong => (414, "uri_too_long"),
                    EdgeError::BodyTooLarge => (413, "body_too_large"),
                    EdgeError::Malformed(_) => (400, "request_malformed"),
                    EdgeError::HeaderInvalid => (400, "header_invalid"),
                    EdgeError::Timeout => (408, "request_timeout"),
                };
                DenialResponse { status, reason, www_authenticate: None }
            }
            Denial::Upstream(e) => {
                let (status, reason) = match *e {
                    UpstreamError::Unavailable => (503, "upstream_unavailable"),
                    UpstreamError::Timeout => (504, "upstream_timeout"),
                    UpstreamError::BadRequest(status) => (status, "bad_request"),
                    UpstreamError::Client => (0, "client_error"),
                    UpstreamError::Tls => (502, "upstream_tls_failed"),
                    UpstreamError::Failed => (502, "upstream_failed"),
                };
                DenialResponse { status, reason, www_authenticate: None }
            }
        }
    }

    /// The JSON body: `{"error":..,"reason":..}` with no token content (`"error"` is
    /// `"upstream"` for every upstream failure).
    pub fn body(&self) -> String {
        let r = self.response();
        let error = match (r.status, self) {
            (_, Denial::Upstream(_)) => "upstream",
            (_, Denial::CorsRefused) => "cors",
            (401, _) => "invalid_token",
            (403, _) => "insufficient_scope",
            (404, _) => "not_found",
            (405, _) => "method_not_allowed",
            (400 | 408 | 413 | 414 | 431, _) => "invalid_request",
            (429, _) => "too_many_requests",
            _ => "unavailable",
        };
        format!(r#"{{"error":"{error}","reason":"{}"}}"#, r.reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_table() {
        let table: Vec<(Denial, u16, &str)> = vec![
            (AuthError::TokenMissing.into(), 401, "token_missing"),
            (AuthError::TokenMalformed("x").into(), 401, "token_malformed"),
            (AuthError::TokenTooLarge.into(), 401, "token_too_large"),
            (AuthError::EncryptionUnsupported.into(), 401, "encryption_unsupported"),
            (AuthError::EncryptionRequired.into(), 401, "encryption_required"),
            (AuthError::DecryptionFailed.into(), 401, "decryption_failed"),
            (AuthError::NestedJwsRequired.into(), 401, "nested_jws_required"),
            (AuthError::TenantMismatch.into(), 401, "tenant_mismatch"),
            (AuthError::TokenReplayed.into(), 401, "token_replayed"),
            (AuthError::ReplayStoreFull.into(), 503, "replay_store_full"),
            (AuthError::ReplayStoreUnavailable.into(), 503, "replay_store_unavailable"),
            (AuthError::HeaderUnsupported("crit").into(), 401, "header_unsupported"),
            (AuthError::AlgorithmNotAllowed.into(), 401, "algorithm_not_allowed"),
            (AuthError::KeyUnknown.into(), 401, "key_unknown"),
            (AuthError::KeysUnavailable.into(), 503, "keys_unavailable"),
            (AuthError::SignatureInvalid.into(), 401, "signature_invalid"),
            (AuthError::TokenExpired.into(), 401, "token_expired"),
            (AuthError::TokenNotYetValid.into(), 401, "token_not_yet_valid"),
            (AuthError::IssuerInvalid.into(), 401, "issuer_invalid"),
            (AuthError::AudienceInvalid.into(), 401, "audience_invalid"),
            (AuthError::TenantUnknown.into(), 401, "tenant_unknown"),
            (AuthError::ClaimMissing("sub".into()).into(), 401, "claim_missing"),
            (AuthError::ClaimInvalid("exp".into()).into(), 401, "claim_invalid"),
            (AuthError::LifetimeExceeded.into(), 401, "lifetime_exceeded"),
            (AuthError::TokenRevoked.into(), 401, "token_revoked"),
            (AuthError::RevocationsUnavailable.into(), 503, "revocations_unavailable"),
            (PolicyError::Role.into(), 403, "forbidden_role"),
            (PolicyError::Tenant.into(), 403, "forbidden_tenant"),
            (PolicyError::Method.into(), 403, "forbidden_method"),
            (PolicyError::Owner.into(), 403, "forbidden_owner"),
            (Denial::NoRoute, 404, "route_not_found"),
            (Denial::MethodNotAllowed, 405, "method_not_allowed"),
            (EdgeError::HeaderTooLarge.into(), 431, "header_too_large"),
            (EdgeError::TooManyHeaders.into(), 431, "too_many_headers"),
            (EdgeError::UriTooLong.into(), 414, "uri_too_long"),
            (EdgeError::BodyTooLarge.into(), 413, "body_too_large"),
            (EdgeError::Malformed("chunk").into(), 400, "request_malformed"),
            (EdgeError::HeaderInvalid.into(), 400, "header_invalid"),
            (EdgeError::Timeout.into(), 408, "request_timeout"),
            (UpstreamError::Unavailable.into(), 503, "upstream_unavailable"),
            (UpstreamError::Timeout.into(), 504, "upstream_timeout"),
            (UpstreamError::BadRequest(400).into(), 400, "bad_request"),
            (UpstreamError::BadRequest(413).into(), 413, "bad_request"),
            (UpstreamError::Client.into(), 0, "client_error"),
            (UpstreamError::Tls.into(), 502, "upstream_tls_failed"),
            (UpstreamError::Failed.into(), 502, "upstream_failed"),
            (
                Denial::RateLimited(Box::new(
                    crate::ratelimit::RateLimit::new(crate::ratelimit::KeyKind::Tenant, 1, 1)
                        .refusal(Default::default(), "tenant"),
                )),
                429,
                "rate_limited",
            ),
            (Denial::CorsRefused, 403, "cors_refused"),
        ];
        for (d, status, reason) in table {
            let r = d.response();
            assert_eq!((r.status, r.reason), (status, reason), "{d:?}");
            match status {
                401 => assert!(r.www_authenticate.unwrap().starts_with("Bearer")),
                403 if matches!(d, Denial::Policy(_)) => {
                    assert_eq!(r.www_authenticate, Some(r#"Bearer error="insufficient_scope""#))
                }
                _ => assert!(r.www_authenticate.is_none()),
            }
            let body: serde_json::Value = serde_json::from_str(&d.body()).unwrap();
            assert_eq!(body["reason"], reason);
            if matches!(d, Denial::Edge(_)) {
                assert_eq!(body["error"], "invalid_request");
            }
            if matches!(d, Denial::Upstream(_)) {
                assert_eq!(d.body(), format!(r#"{{"error":"upstream","reason":"{reason}"}}"#));
            }
        }
        assert_eq!(
            Denial::from(AuthError::SignatureInvalid).response().www_authenticate,
            Some(r#"Bearer error="invalid_token""#)
        );
    }
}
