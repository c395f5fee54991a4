//! The gateway channel on the internal listener, behind the gateway credential: the
//! tenant list, decryption keys, the revocation feed and one-time claims. Every
//! document is a `medgate_channel` type, the one the gateway reads.

use super::state::parse_json;
use super::state::St;
use crate::clock::now;
use crate::service::{Kms, KmsError};
use crate::store::Claim;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use medgate_channel::{FeedPage, FeedQuery, OneTimeAnswer, OneTimeClaim};
use serde_json::json;

/// `GET /internal/v1/tenants`: a [`TenantList`] for gateway tenant discovery, with
/// its `version` as a strong ETag (`If-None-Match` answers 304).
pub(super) async fn tenant_list(State(st): St, headers: HeaderMap) -> Response {
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

pub(super) async fn decryption_keys(State(st): St, Path(tenant): Path<String>) -> Result<Response, KmsError> {
    let keys = st.kms.decryption_keys(&tenant, now())?;
    // The body is sent from this wiped-on-drop buffer (hyper writes it as is).
    let body = Body::from(axum::body::Bytes::from_owner(crate::crypto::private_jwks_json(&keys)?));
    let headers = [(header::CACHE_CONTROL, "no-store"), (header::CONTENT_TYPE, "application/json")];
    Ok((headers, body).into_response())
}

/// `GET /internal/v1/revocations?after=&wait=&epoch=`: a [`FeedPage`]. It long-polls
/// only a reader that is current in this epoch; one with another epoch (or none), or
/// ahead of the feed, is answered at once so it can resync from the start.
pub(super) async fn revocation_feed(
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
pub(super) async fn claim_one_time(State(st): St, body: axum::body::Bytes) -> Result<Response, KmsError> {
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
