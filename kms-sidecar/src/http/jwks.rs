//! The public JWKS endpoints: `GET /.well-known/jwks.json` (every tenant, each key
//! with its `tenant`) and `GET /jwk/{tenant}`, with a strong ETag (304 on
//! `If-None-Match`), `Cache-Control: public, max-age`, CORS and `nosniff`.

use super::state::AppState;
use super::state::St;
use crate::clock::now;
use crate::service::KmsError;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

pub(super) fn jwks_response(st: &AppState, headers: &HeaderMap, doc: Value) -> Response {
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

pub(super) async fn all_jwks(State(st): St, headers: HeaderMap) -> Response {
    let doc = st.kms.jwks(None, now()).unwrap_or_else(|| json!({"keys": []}));
    jwks_response(&st, &headers, doc)
}

pub(super) async fn tenant_jwks(State(st): St, Path(tenant): Path<String>, headers: HeaderMap) -> Response {
    match st.kms.jwks(Some(&tenant), now()) {
        Some(doc) => jwks_response(&st, &headers, doc),
        None => KmsError::UnknownTenant.into_response(),
    }
}
