//! Endpoints every service exposes without identity: health, ping, echo,
//! plus the JSON fallbacks.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri, Version};
use axum::Json;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::AppState;

/// `GET /healthz`: plain `ok` for the gateway's health checks.
pub async fn healthz() -> &'static str {
    "ok"
}

/// `GET /public/ping`: `{"service": .., "pong": true}`.
pub async fn ping(State(state): State<AppState>) -> Json<Value> {
    Json(json!({ "service": state.service.name(), "pong": true }))
}

/// `GET /echo[/..]`: reflects method, path, the HTTP version it was asked with
/// (`HTTP/1.1`, `HTTP/2.0`) and the received headers (lower-cased names; repeated
/// headers joined with `, `).
pub async fn echo(
    State(state): State<AppState>,
    method: Method,
    version: Version,
    uri: Uri,
    headers: HeaderMap,
) -> Json<Value> {
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in &headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        seen.entry(name.as_str().to_ascii_lowercase())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    Json(json!({
        "service": state.service.name(),
        "method": method.as_str(),
        "path": uri.path(),
        "version": format!("{version:?}"),
        "headers": seen,
    }))
}

/// Fallback for unknown paths: 404 `{"error":"not_found"}`.
pub async fn not_found() -> ApiError {
    ApiError::NotFound
}

/// Fallback for known paths with the wrong method: 405 JSON.
pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
