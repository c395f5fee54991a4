//! The role-specific endpoints of the patient, doctor, lab and insurance
//! services.

use std::collections::BTreeSet;

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::identity::{Identity, Role};
use crate::store::Record;
use crate::AppState;

/// Longest accepted note or lab field, in bytes.
pub const MAX_TEXT: usize = 8 * 1024;

/// `GET /patients/{patient_id}/records` (patient service).
///
/// Doctors may read any patient of their tenant; patients only themselves.
pub async fn patient_records(
    identity: Identity,
    State(state): State<AppState>,
    patient_id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let patient_id = param(patient_id)?;
    if !identity.has(Role::Doctor) {
        identity.require_any(&[Role::Patient])?;
        if identity.user_id != patient_id {
            return Err(ApiError::ForbiddenOwner);
        }
    }
    records_body(&state, &identity, &patient_id)
}

/// `GET /doctors/patients/{patient_id}/records` (doctor service, role doctor).
pub async fn doctor_records(
    identity: Identity,
    State(state): State<AppState>,
    patient_id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let patient_id = param(patient_id)?;
    identity.require_any(&[Role::Doctor])?;
    records_body(&state, &identity, &patient_id)
}

/// Body of `PUT /doctors/patients/{patient_id}/records/{record_id}`.
#[derive(Debug, Deserialize)]
pub struct NoteUpdate {
    /// The new note text.
    pub note: String,
}

/// `PUT /doctors/patients/{patient_id}/records/{record_id}` (role doctor):
/// replaces the note and returns the updated record.
pub async fn doctor_update(
    identity: Identity,
    State(state): State<AppState>,
    ids: Result<Path<(String, String)>, PathRejection>,
    body: Result<Json<NoteUpdate>, JsonRejection>,
) -> Result<Json<Record>, ApiError> {
    let (patient_id, record_id) = param(ids)?;
    identity.require_any(&[Role::Doctor])?;
    let Json(body) = body.map_err(|_| ApiError::BadRequest)?;
    check_text(&body.note, true)?;
    state
        .store
        .update_note(&identity.tenant, &patient_id, &record_id, &body.note, &identity.user_id)
        .map(Json)
        .ok_or(ApiError::NotFound)
}

/// Body of `POST /labs/results`.
#[derive(Debug, Deserialize)]
pub struct LabResult {
    /// Patient the result belongs to (in the caller's tenant).
    pub patient_id: String,
    /// Test name, e.g. `hba1c`.
    pub test: String,
    /// Result value, e.g. `5.4%`.
    pub value: String,
}

/// `POST /labs/results` (role lab): stores a `lab_result` record and answers
/// 201 with it.
pub async fn lab_result(
    identity: Identity,
    State(state): State<AppState>,
    body: Result<Json<LabResult>, JsonRejection>,
) -> Result<(StatusCode, Json<Record>), ApiError> {
    identity.require_any(&[Role::Lab])?;
    let Json(body) = body.map_err(|_| ApiError::BadRequest)?;
    check_text(&body.patient_id, false)?;
    check_text(&body.test, false)?;
    check_text(&body.value, true)?;
    let note = format!("{}: {}", body.test.trim(), body.value.trim());
    state
        .store
        .insert(&identity.tenant, &body.patient_id, "lab_result", &note, &identity.user_id)
        .map(|r| (StatusCode::CREATED, Json(r)))
        .ok_or(ApiError::NotFound)
}

/// `GET /insurance/patients/{patient_id}/summary` (role insurer): record
/// count and distinct kinds, never notes.
pub async fn insurance_summary(
    identity: Identity,
    State(state): State<AppState>,
    patient_id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let patient_id = param(patient_id)?;
    identity.require_any(&[Role::Insurer])?;
    let records = state.store.records(&identity.tenant, &patient_id).ok_or(ApiError::NotFound)?;
    let kinds: BTreeSet<&str> = records.iter().map(|r| r.kind.as_str()).collect();
    Ok(Json(json!({
        "service": state.service.name(),
        "tenant": identity.tenant,
        "patient_id": patient_id,
        "record_count": records.len(),
        "kinds": kinds,
    })))
}

/// The `{"service","tenant","patient_id","records"}` body, scoped to the
/// caller's tenant; 404 when the patient is not in it.
fn records_body(state: &AppState, identity: &Identity, patient_id: &str) -> Result<Json<Value>, ApiError> {
    let records = state.store.records(&identity.tenant, patient_id).ok_or(ApiError::NotFound)?;
    Ok(Json(json!({
        "service": state.service.name(),
        "tenant": identity.tenant,
        "patient_id": patient_id,
        "records": records,
    })))
}

/// Unwraps a path extraction, mapping a malformed path to 400.
fn param<T>(path: Result<Path<T>, PathRejection>) -> Result<T, ApiError> {
    path.map(|Path(v)| v).map_err(|_| ApiError::BadRequest)
}

/// Rejects over-long text, and blank text unless `allow_blank`.
fn check_text(text: &str, allow_blank: bool) -> Result<(), ApiError> {
    if text.len() > MAX_TEXT || (!allow_blank && text.trim().is_empty()) {
        Err(ApiError::BadRequest)
    } else {
        Ok(())
    }
}
