//! HTTP, by audience: [`jwks`] (public keys), [`admin`] (the admin and issuing API,
//! admin credential), both on the public listener, and [`channel`] (the gateway
//! channel, gateway credential) on its own listener, loopback by default. [`state`]
//! holds what the handlers share, [`listener`] serves a router under the HTTP
//! [`listener::Limits`], and [`secret`] reads bodies that carry key material.
//!
//! ```ignore
//! listener::serve(tcp, http::public(state.clone()), &limits, shutdown()).await?;
//! ```

pub mod admin;
pub mod channel;
pub mod jwks;
pub mod listener;
pub mod secret;
pub mod state;

pub use state::AppState;

use crate::clock::now;
use axum::extract::State;
use axum::http::header;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use medgate_channel::path;
use serde_json::json;
use state::St;
use std::sync::Arc;

/// `GET /metrics`: Prometheus text, the key ages and one-time ids held read at the
/// time of the scrape.
async fn metrics(State(st): St) -> Response {
    for (tenant, key_use, age) in st.kms.current_ages(now()) {
        st.metrics.key_age.with_label_values(&[&tenant, key_use]).set(age);
    }
    if let Ok(held) = st.kms.one_time_held() {
        st.metrics.one_time_held.set(held as i64);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], st.metrics.render()).into_response()
}

/// The public + admin router.
pub fn public(st: Arc<AppState>) -> Router {
    let admin = Router::new()
        .route("/v1/tenants/{tenant}/tokens", post(admin::mint))
        .route("/admin/rotate-key", post(admin::rotate))
        .route("/admin/revoke", post(admin::revoke))
        .route("/admin/tenants", post(admin::create_tenant).get(admin::list_tenants))
        .route("/admin/tenants/{id}", delete(admin::delete_tenant))
        .route("/admin/tenants/{id}/keys/import", post(admin::import))
        .route_layer(middleware::from_fn_with_state(st.clone(), state::require_admin));
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/metrics", get(metrics))
        .route("/.well-known/jwks.json", get(jwks::all_jwks))
        .route("/jwk/{tenant}", get(jwks::tenant_jwks))
        .merge(admin)
        .layer(middleware::from_fn_with_state(st.clone(), state::count))
        .with_state(st)
}

/// The gateway channel router (its own listener, loopback by default).
pub fn internal(st: Arc<AppState>) -> Router {
    Router::new()
        .route(path::DECRYPTION_KEYS, get(channel::decryption_keys))
        .route(path::REVOCATIONS, get(channel::revocation_feed))
        .route(path::TENANTS, get(channel::tenant_list))
        .route(path::ONE_TIME, post(channel::claim_one_time))
        .route_layer(middleware::from_fn_with_state(st.clone(), state::require_gateway))
        .route(path::HEALTHZ, get(|| async { Json(json!({"status": "ok"})) }))
        .layer(middleware::from_fn_with_state(st.clone(), state::count))
        .with_state(st)
}
