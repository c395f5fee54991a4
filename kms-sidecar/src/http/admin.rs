//! The admin and issuing API on the public listener, behind the admin credential:
//! token minting, rotation, revocation, tenant creation, listing and deletion, and
//! PEM import.

use super::secret;
use super::state::St;
use super::state::{error, parse_json, publish};
use crate::clock::now;
use crate::rotation::{Change, Use};
use crate::service::mint::MintRequest;
use crate::service::{Kms, KmsError};
use crate::store::Revocation;
use crate::tenant::{Source, TenantBody, TenantSpec};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

pub(super) async fn mint(
    State(st): St,
    Path(tenant): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, KmsError> {
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

pub(super) fn describe(changes: &[Change]) -> Value {
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

pub(super) async fn rotate(State(st): St, body: axum::body::Bytes) -> Result<Response, KmsError> {
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
pub(super) async fn create_tenant(State(st): St, body: axum::body::Bytes) -> Result<Response, KmsError> {
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
pub(super) async fn list_tenants(State(st): St) -> Response {
    let tenants: Vec<TenantBody> = st.kms.tenants().iter().map(TenantBody::from).collect();
    Json(json!({ "tenants": tenants })).into_response()
}

pub(super) async fn delete_tenant(State(st): St, Path(id): Path<String>) -> Result<Response, KmsError> {
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

pub(super) async fn import(State(st): St, Path(tenant): Path<String>, body: Body) -> Result<Response, Response> {
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

pub(super) async fn revoke(State(st): St, body: axum::body::Bytes) -> Result<Response, KmsError> {
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
