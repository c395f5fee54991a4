//! Demo role services that sit behind the edge gateway: a patient, doctor,
//! lab and insurance service, each with its own listener but sharing one
//! in-memory, per-tenant record store. The services never authenticate
//! anyone themselves; they trust the identity headers (`X-User-Id`,
//! `X-Tenant-Id`, `X-User-Role`, optional `X-Token-Id`) that the gateway sets
//! after verifying a token, and enforce role, ownership and tenant rules on
//! top of them.

pub mod common;
pub mod error;
pub mod identity;
pub mod roles;
pub mod store;
pub mod tls;

use std::fmt;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::Router;

pub use error::ApiError;
pub use identity::{Identity, Role};
pub use store::{Record, Store};

/// Name of the response header that says which service answered.
pub const SERVED_BY: HeaderName = HeaderName::from_static("x-served-by");

/// One of the four role services.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Service {
    /// Patients reading their own records (doctors may read too).
    Patient,
    /// Doctors reading and updating records.
    Doctor,
    /// Labs posting results.
    Lab,
    /// Insurers reading note-free summaries.
    Insurance,
}

impl Service {
    /// All services, in CLI/port order.
    pub const ALL: [Service; 4] = [Service::Patient, Service::Doctor, Service::Lab, Service::Insurance];

    /// Lower-case service name used in bodies, logs and `X-Served-By`.
    pub const fn name(self) -> &'static str {
        match self {
            Service::Patient => "patient",
            Service::Doctor => "doctor",
            Service::Lab => "lab",
            Service::Insurance => "insurance",
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Shared state handed to every handler of one service's router.
#[derive(Clone, Debug)]
pub struct AppState {
    /// Which service this router serves.
    pub service: Service,
    /// The store shared by all four services.
    pub store: Arc<Store>,
}

/// Builds the complete router for `service` on top of the shared `store`.
///
/// Every router serves `/healthz`, `/public/ping` and `/echo`, plus the
/// service's own endpoints; unknown paths answer 404 JSON and every response
/// carries `X-Served-By`.
pub fn router(service: Service, store: Arc<Store>) -> Router {
    let state = AppState { service, store };
    let base = Router::new()
        .route("/healthz", get(common::healthz))
        .route("/public/ping", get(common::ping))
        .route("/echo", get(common::echo))
        .route("/echo/{*rest}", get(common::echo));
    let specific = match service {
        Service::Patient => Router::new().route("/patients/{patient_id}/records", get(roles::patient_records)),
        Service::Doctor => Router::new()
            .route("/doctors/patients/{patient_id}/records", get(roles::doctor_records))
            .route("/doctors/patients/{patient_id}/records/{record_id}", put(roles::doctor_update)),
        Service::Lab => Router::new().route("/labs/results", post(roles::lab_result)),
        Service::Insurance => {
            Router::new().route("/insurance/patients/{patient_id}/summary", get(roles::insurance_summary))
        }
    };
    base.merge(specific)
        .fallback(common::not_found)
        .method_not_allowed_fallback(common::method_not_allowed)
        .layer(middleware::from_fn_with_state(service, stamp))
        .with_state(state)
}

/// Adds `X-Served-By` to every response and logs the request outcome.
async fn stamp(State(service): State<Service>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let mut resp = next.run(req).await;
    resp.headers_mut().insert(SERVED_BY, HeaderValue::from_static(service.name()));
    tracing::debug!(%service, %method, %path, status = resp.status().as_u16(), "request");
    resp
}
