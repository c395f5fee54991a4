//! The JSON error responses every service shares.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// A request failure rendered as `{"error": "<code>"}` with a 4xx status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiError {
    /// 401: `X-User-Id`, `X-Tenant-Id` or `X-User-Role` is missing or empty.
    IdentityMissing,
    /// 403: none of the caller's roles may use this endpoint.
    ForbiddenRole,
    /// 403: a patient asked for somebody else's records.
    ForbiddenOwner,
    /// 404: unknown route, or patient/record not in the caller's tenant.
    NotFound,
    /// 400: malformed path, body or JSON.
    BadRequest,
    /// 405: the route exists but not for this method.
    MethodNotAllowed,
}

impl ApiError {
    /// HTTP status for this error.
    pub const fn status(self) -> StatusCode {
        match self {
            ApiError::IdentityMissing => StatusCode::UNAUTHORIZED,
            ApiError::ForbiddenRole | ApiError::ForbiddenOwner => StatusCode::FORBIDDEN,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::BadRequest => StatusCode::BAD_REQUEST,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    /// Stable machine-readable error code used as the `error` field.
    pub const fn code(self) -> &'static str {
        match self {
            ApiError::IdentityMissing => "identity_headers_missing",
            ApiError::ForbiddenRole => "forbidden_role",
            ApiError::ForbiddenOwner => "forbidden_owner",
            ApiError::NotFound => "not_found",
            ApiError::BadRequest => "bad_request",
            ApiError::MethodNotAllowed => "method_not_allowed",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status(), Json(json!({ "error": self.code() }))).into_response()
    }
}
