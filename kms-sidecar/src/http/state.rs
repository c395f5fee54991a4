//! What every handler shares: the state, the JSON error answer and the mapping of
//! service errors to statuses, the bearer checks of the two audiences (constant
//! time, failures counted), the request counter, and publishing to feed readers.

use crate::metrics::Metrics;
use crate::service::one_time::OneTimeWriter;
use crate::service::{Kms, KmsError};
use crate::store::Revocation;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Request, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use std::sync::Arc;
use zeroize::Zeroizing;

/// The state extractor of every handler.
pub type St = State<Arc<AppState>>;

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

pub(super) fn error(status: StatusCode, code: &str, detail: impl Into<String>) -> Response {
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

pub(super) fn bearer_ok(headers: &HeaderMap, want: &str) -> bool {
    medgate_channel::bearer::matches(headers.get_all(header::AUTHORIZATION).iter().map(HeaderValue::as_bytes), want)
}

pub(super) async fn require_admin(State(st): St, req: Request<Body>, next: Next) -> Response {
    if !bearer_ok(req.headers(), &st.admin_token) {
        st.metrics.auth_failures.with_label_values(&["admin"]).inc();
        return error(StatusCode::UNAUTHORIZED, "unauthorized", "missing or wrong bearer credential");
    }
    next.run(req).await
}

pub(super) async fn require_gateway(State(st): St, req: Request<Body>, next: Next) -> Response {
    if !bearer_ok(req.headers(), &st.gateway_token) {
        st.metrics.auth_failures.with_label_values(&["gateway"]).inc();
        return error(StatusCode::UNAUTHORIZED, "unauthorized", "missing or wrong bearer credential");
    }
    next.run(req).await
}

pub(super) async fn count(State(st): St, req: Request<Body>, next: Next) -> Response {
    let endpoint =
        req.extensions().get::<axum::extract::MatchedPath>().map_or("unmatched".to_owned(), |p| p.as_str().to_owned());
    let resp = next.run(req).await;
    st.metrics.requests.with_label_values(&[&endpoint, resp.status().as_str()]).inc();
    resp
}

pub(super) fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, KmsError> {
    serde_json::from_slice(body).map_err(|e| KmsError::BadRequest(format!("invalid JSON body: {e}")))
}

pub(super) fn publish(st: &AppState, events: Vec<Revocation>) {
    if let Some(last) = events.iter().map(|e| e.seq).max() {
        st.feed.send_if_modified(|cur| {
            let newer = last > *cur;
            *cur = (*cur).max(last);
            newer
        });
        st.metrics.revocations.inc_by(events.len() as u64);
    }
}
