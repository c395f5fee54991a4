//! HTTP: public JWKS endpoints (ETag/304, Cache-Control, CORS, nosniff), the
//! authenticated issuing and admin API, and the gateway's internal channel on its own
//! listener. Bearer credentials are compared in constant time and failures counted.

use crate::keyring::{Change, Use};
use crate::metrics::Metrics;
use crate::one_time::OneTimeWriter;
use crate::secret;
use crate::service::{Kms, KmsError, MintRequest};
use crate::store::{Claim, Revocation};
use crate::tenant::{Source, TenantBody, TenantSpec};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Request, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use medgate_channel::{path, FeedPage, FeedQuery, OneTimeAnswer, OneTimeClaim};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use zeroize::Zeroizing;

/// Shared state of the handlers.
pub struct AppState {
    /// The key service.
    pub kms: Arc<Kms>,
    /// Admin and issuing credential.
    pub admin_token: Zeroizing<String>,
    /// Gateway channel credential.
    pub gateway_token: Zeroizing<String>,
    /// Metrics.
    pub metrics: Metrics,
    /// Last revocation sequence number, watched by long-polling gateways.
    pub feed: tokio::sync::watch::Sender<u64>,
    /// Group-committing writer of one-time claims.
    pub one_time: OneTimeWriter,
}

type St = State<Arc<AppState>>;

/// Seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

fn error(status: StatusCode, code: &str, detail: impl Into<String>) -> Response {
    (status, Json(json!({"error": code, "detail": detail.into()}))).into_response()
}

impl IntoResponse for KmsError {
    fn into_response(self) -> Response {
        match &self {
            KmsError::UnknownTenant => error(StatusCode::NOT_FOUND, "unknown_tenant", self.to_string()),
            KmsError::BadRequest(m) => error(StatusCode::BAD_REQUEST, "bad_request", m.clone()),
            KmsError::Conflict(m) => error(StatusCode::CONFLICT, "conflict", m.clone()),
            KmsError::Busy(m) => error(StatusCode::SERVICE_UNAVAILABLE, "busy", m.clone()),
            KmsError::Internal(m) => {
                tracing::error!(error = %m, "internal error");
                error(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error")
            }
        }
    }
}

fn bearer_ok(headers: &HeaderMap, want: &str) -> bool {
    medgate_channel::bearer::matches(headers.get_all(header::AUTHORIZATION).iter().map(HeaderValue::as_bytes), want)
}

async fn require_admin(State(st): St, req: Request<Body>, next: Next) -> Response {
    if !bearer_ok(req.headers(), &st.admin_token) {
        st.metrics.auth_failures.with_label_values(&["admin"]).inc();
        return error(StatusCode::UNAUTHORIZED, "unauthorized", "missing or wrong bearer credential");
    }
    next.run(req).await
}

async fn require_gateway(State(st): St, req: Request<Body>, next: Next) -> Response {
    if !bearer_ok(req.headers(), &st.gateway_token) {
        st.metrics.auth_failures.with_label_values(&["gateway"]).inc();
        return error(StatusCode::UNAUTHORIZED, "unauthorized", "missing or wrong bearer credential");
    }
    next.run(req).await
}

async fn count(State(st): St, req: Request<Body>, next: Next) -> Response {
    let endpoint =
        req.extensions().get::<axum::extract::MatchedPath>().map_or("unmatched".to_owned(), |p| p.as_str().to_owned());
    let resp = next.run(req).await;
    st.metrics.requests.with_label_values(&[&endpoint, resp.status().as_str()]).inc();
    resp
}

fn jwks_response(st: &AppState, headers: &HeaderMap, doc: Value) -> Response {
    let body = doc.to_string();
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body.as_bytes());
    let etag = format!("\"{}\"", digest.as_ref()[..16].iter().map(|b| format!("{b:02x}")).collect::<String>());
    let cache = format!("public, max-age={}", st.kms.max_age());
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let status = if matches { StatusCode::NOT_MODIFIED } else { StatusCode::OK };
    let mut resp = if matches { status.into_response() } else { (status, body).into_response() };
    let h = resp.headers_mut();
    h.insert(header::ETAG, HeaderValue::from_str(&etag).expect("hex etag"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_str(&cache).expect("ascii"));
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/jwk-set+json"));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET"));
    h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("ETag, Cache-Control"));
    resp
}

async fn all_jwks(State(st): St, headers: HeaderMap) -> Response {
    let doc = st.kms.jwks(None, now()).unwrap_or_else(|| json!({"keys": []}));
    jwks_response(&st, &headers, doc)
}

async fn tenant_jwks(State(st): St, Path(tenant): Path<String>, headers: HeaderMap) -> Response {
    match st.kms.jwks(Some(&tenant), now()) {
        Some(doc) => jwks_response(&st, &headers, doc),
        None => KmsError::UnknownTenant.into_response(),
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, KmsError> {
    serde_json::from_slice(body).map_err(|e| KmsError::BadRequest(format!("invalid JSON body: {e}")))
}

async fn mint(State(st): St, Path(tenant): Path<String>, body: axum::body::Bytes) -> Result<Response, KmsError> {
    let req: MintRequest = parse_json(&body)?;
    let token = st.kms.mint(&tenant, req, now())?;
    Ok((StatusCode::CREATED, [(header::CACHE_CONTROL, "no-store")], Json(json!({"token": token}))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateRequest {
    tenant: String,
    #[serde(rename = "use")]
    key_use: Use,
    #[serde(default)]
    emergency: bool,
}

fn describe(changes: &[Change]) -> Value {
    let created = changes.iter().filter(|c| matches!(c, Change::Create { .. })).count();
    let revoked: Vec<&str> = changes
        .iter()
        .filter_map(|c| match c {
            Change::Revoke { kid } => Some(kid.as_str()),
            _ => None,
        })
        .collect();
    json!({"created": created, "revoked": revoked})
}

async fn rotate(State(st): St, body: axum::body::Bytes) -> Result<Response, KmsError> {
    let req: RotateRequest = parse_json(&body)?;
    // Gateways learn of a key removed by an emergency rotation through the revocation
    // feed at once, without waiting for their JWKS cache to expire; the removal and its
    // feed event are one transaction.
    let (changes, events) = st.kms.rotate(&req.tenant, req.key_use, req.emergency, now())?;
    publish(&st, events);
    let kind = if req.emergency { "emergency" } else { "manual" };
    st.metrics.rotations.with_label_values(&[&req.tenant, req.key_use.as_str(), kind]).inc();
    tracing::info!(tenant = %req.tenant, key_use = req.key_use.as_str(), kind, "rotation");
    Ok(Json(describe(&changes)).into_response())
}

/// `POST /admin/tenants`: a [`TenantBody`]; 201 with the tenant as `GET` shows it.
async fn create_tenant(State(st): St, body: axum::body::Bytes) -> Result<Response, KmsError> {
    let req: TenantBody = parse_json(&body)?;
    let input = req.input().map_err(KmsError::BadRequest)?;
    let spec = TenantSpec::validate(input).map_err(|e| KmsError::BadRequest(TenantSpec::describe(&e, Source::Api)))?;
    let id = spec.id().to_owned();
    let shown = TenantBody::from(spec.record());
    if st.kms.ensure_tenant(spec, now())? {
        Ok((StatusCode::CREATED, Json(shown)).into_response())
    } else {
        Err(KmsError::Conflict(format!("tenant {id} exists")))
    }
}

/// `GET /admin/tenants`: `{"tenants": [TenantBody]}`, the names of the POST body.
async fn list_tenants(State(st): St) -> Response {
    let tenants: Vec<TenantBody> = st.kms.tenants().iter().map(TenantBody::from).collect();
    Json(json!({ "tenants": tenants })).into_response()
}

/// `GET /internal/v1/tenants`: a [`TenantList`] for gateway tenant discovery, with
/// its `version` as a strong ETag (`If-None-Match` answers 304).
async fn tenant_list(State(st): St, headers: HeaderMap) -> Response {
    let list = st.kms.tenant_list();
    let etag = format!("\"{}\"", list.version);
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let etag = HeaderValue::from_str(&etag).expect("hex etag");
    let no_store = (header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if matches {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag), no_store]).into_response();
    }
    ([(header::ETAG, etag), no_store], Json(list)).into_response()
}

async fn delete_tenant(State(st): St, Path(id): Path<String>) -> Result<Response, KmsError> {
    // The deletion puts a tenant-wide revocation on the feed in the same transaction.
    match st.kms.delete_tenant(&id, now())? {
        Some(event) => {
            publish(&st, vec![event]);
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        None => Err(KmsError::UnknownTenant),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportRequest<'a> {
    /// Borrowed raw JSON, unescaped by [`secret::json_string`] into a wiped buffer.
    #[serde(borrow)]
    pem: &'a serde_json::value::RawValue,
    #[serde(rename = "use")]
    key_use: Use,
    #[serde(default)]
    format: Option<String>,
}

async fn import(State(st): St, Path(tenant): Path<String>, body: Body) -> Result<Response, Response> {
    let body = secret::body(body).await.map_err(|e| match e {
        secret::BodyError::TooLarge => error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", e.to_string()),
        secret::BodyError::Unreadable => error(StatusCode::BAD_REQUEST, "bad_request", e.to_string()),
    })?;
    let req: ImportRequest = serde_json::from_slice(&body)
        .map_err(|e| KmsError::BadRequest(format!("invalid JSON body: {e}")).into_response())?;
    let pem = secret::json_string("pem", req.pem).map_err(IntoResponse::into_response)?;
    let kid =
        st.kms.import(&tenant, &pem, req.key_use, req.format.as_deref(), now()).map_err(IntoResponse::into_response)?;
    Ok((StatusCode::CREATED, Json(json!({"kid": kid}))).into_response())
}

async fn decryption_keys(State(st): St, Path(tenant): Path<String>) -> Result<Response, KmsError> {
    let keys = st.kms.decryption_keys(&tenant, now())?;
    // The body is sent from this wiped-on-drop buffer (hyper writes it as is).
    let body = Body::from(axum::body::Bytes::from_owner(crate::crypto::private_jwks_json(&keys)?));
    let headers = [(header::CACHE_CONTROL, "no-store"), (header::CONTENT_TYPE, "application/json")];
    Ok((headers, body).into_response())
}

async fn metrics(State(st): St) -> Response {
    for (tenant, key_use, age) in st.kms.current_ages(now()) {
        st.metrics.key_age.with_label_values(&[&tenant, key_use]).set(age);
    }
    if let Ok(held) = st.kms.one_time_held() {
        st.metrics.one_time_held.set(held as i64);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], st.metrics.render()).into_response()
}

fn publish(st: &AppState, events: Vec<Revocation>) {
    if let Some(last) = events.iter().map(|e| e.seq).max() {
        st.feed.send_if_modified(|cur| {
            let newer = last > *cur;
            *cur = (*cur).max(last);
            newer
        });
        st.metrics.revocations.inc_by(events.len() as u64);
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeRequest {
    tenant: String,
    #[serde(default)]
    jti: Option<String>,
    #[serde(default)]
    exp: Option<i64>,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    before: Option<i64>,
    #[serde(default)]
    lower: bool,
}

async fn revoke(State(st): St, body: axum::body::Bytes) -> Result<Response, KmsError> {
    let r: RevokeRequest = parse_json(&body)?;
    let now = now();
    let event = match (&r.jti, r.exp, &r.subject) {
        (Some(_), Some(_), None) if r.before.is_none() && !r.lower => {
            Revocation { tenant: r.tenant, jti: r.jti, exp: r.exp, at: now, ..Default::default() }
        }
        (None, None, _) => {
            if r.lower && r.before.is_none() {
                return Err(KmsError::BadRequest("before: required with lower (0 removes the watermark)".into()));
            }
            let before = r.before.unwrap_or(now);
            Kms::check_watermark(before, now)?;
            Revocation {
                tenant: r.tenant,
                subject: r.subject,
                before: Some(before),
                lower: r.lower,
                at: now,
                ..Default::default()
            }
        }
        _ => {
            return Err(KmsError::BadRequest(
                "give {tenant, jti, exp} for one token, or {tenant, subject?, before?, lower?} for a watermark".into(),
            ))
        }
    };
    let events = st.kms.revoke(vec![event])?;
    let seq = events[0].seq;
    publish(&st, events);
    Ok(Json(json!({"seq": seq})).into_response())
}

/// `GET /internal/v1/revocations?after=&wait=&epoch=`: a [`FeedPage`]. It long-polls
/// only a reader that is current in this epoch; one with another epoch (or none), or
/// ahead of the feed, is answered at once so it can resync from the start.
async fn revocation_feed(
    State(st): St,
    axum::extract::Query(q): axum::extract::Query<FeedQuery>,
) -> Result<Response, KmsError> {
    let mut rx = st.feed.subscribe();
    let wait = std::time::Duration::from_secs(q.wait.unwrap_or(0).min(medgate_channel::revocation::MAX_WAIT_SECS));
    let current = q.epoch.as_deref() == Some(st.kms.feed_epoch());
    if current && *rx.borrow_and_update() == q.after && !wait.is_zero() {
        let _ = tokio::time::timeout(wait, rx.wait_for(|last| *last != q.after)).await;
    }
    let page: FeedPage = st.kms.feed_page(q.after, now())?;
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(page)).into_response())
}

/// `POST /internal/v1/one-time`: the shared replay store of gateways side by side.
/// 200 `{"first_use": true|false}`, or 507 `one_time_store_full` (fail closed). The
/// claim is committed durably before the answer (group commit, see `one_time`).
async fn claim_one_time(State(st): St, body: axum::body::Bytes) -> Result<Response, KmsError> {
    let r: OneTimeClaim = parse_json(&body)?;
    let key = st.kms.one_time_key(&r.tenant, &r.issuer, &r.jti)?;
    let claim = st.one_time.claim(key, Kms::one_time_until(r.until, now())).await?;
    st.metrics.one_time.with_label_values(&[claim.as_str()]).inc();
    let no_store = [(header::CACHE_CONTROL, "no-store")];
    Ok(match claim {
        Claim::Full => (
            StatusCode::from_u16(medgate_channel::one_time::FULL_STATUS).expect("status"),
            no_store,
            Json(json!({"error": medgate_channel::one_time::FULL_ERROR, "detail": "too many unexpired one-time ids"})),
        )
            .into_response(),
        c => (no_store, Json(OneTimeAnswer { first_use: c == Claim::First })).into_response(),
    })
}

/// The public + admin router.
pub fn public(st: Arc<AppState>) -> Router {
    let admin = Router::new()
        .route("/v1/tenants/{tenant}/tokens", post(mint))
        .route("/admin/rotate-key", post(rotate))
        .route("/admin/revoke", post(revoke))
        .route("/admin/tenants", post(create_tenant).get(list_tenants))
        .route("/admin/tenants/{id}", delete(delete_tenant))
        .route("/admin/tenants/{id}/keys/import", post(import))
        .route_layer(middleware::from_fn_with_state(st.clone(), require_admin));
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/metrics", get(metrics))
        .route("/.well-known/jwks.json", get(all_jwks))
        .route("/jwk/{tenant}", get(tenant_jwks))
        .merge(admin)
        .layer(middleware::from_fn_with_state(st.clone(), count))
        .with_state(st)
}

/// The gateway channel router (its own listener, loopback by default).
pub fn internal(st: Arc<AppState>) -> Router {
    Router::new()
        .route(path::DECRYPTION_KEYS, get(decryption_keys))
        .route(path::REVOCATIONS, get(revocation_feed))
        .route(path::TENANTS, get(tenant_list))
        .route(path::ONE_TIME, post(claim_one_time))
        .route_layer(middleware::from_fn_with_state(st.clone(), require_gateway))
        .route(path::HEALTHZ, get(|| async { Json(json!({"status": "ok"})) }))
        .layer(middleware::from_fn_with_state(st.clone(), count))
        .with_state(st)
}
