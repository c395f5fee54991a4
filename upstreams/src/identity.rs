//! The caller identity the gateway forwards in trusted headers.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::HeaderMap;

use crate::error::ApiError;

/// Header carrying the authenticated subject.
pub const USER_ID: &str = "x-user-id";
/// Header carrying the caller's tenant.
pub const TENANT_ID: &str = "x-tenant-id";
/// Header carrying the caller's role(s), comma separated.
pub const USER_ROLE: &str = "x-user-role";
/// Optional header carrying the token id (`jti`).
pub const TOKEN_ID: &str = "x-token-id";

/// A platform role as named in `X-User-Role`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// A patient, who may only see their own records.
    Patient,
    /// A clinician.
    Doctor,
    /// A laboratory.
    Lab,
    /// An insurer.
    Insurer,
}

impl Role {
    /// Parses one role name (case-insensitive, surrounding spaces ignored).
    pub fn parse(s: &str) -> Option<Role> {
        let s = s.trim();
        [Role::Patient, Role::Doctor, Role::Lab, Role::Insurer].into_iter().find(|r| r.name().eq_ignore_ascii_case(s))
    }

    /// The role's header spelling.
    pub const fn name(self) -> &'static str {
        match self {
            Role::Patient => "patient",
            Role::Doctor => "doctor",
            Role::Lab => "lab",
            Role::Insurer => "insurer",
        }
    }
}

/// Who is calling, as asserted by the gateway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// Subject (`X-User-Id`).
    pub user_id: String,
    /// Tenant (`X-Tenant-Id`); every data access is scoped to it.
    pub tenant: String,
    /// Recognised roles from `X-User-Role`; unknown names are dropped.
    pub roles: Vec<Role>,
    /// Token id (`X-Token-Id`), when the gateway sent one.
    pub token_id: Option<String>,
}

impl Identity {
    /// Reads the identity headers; any required one missing, empty or not
    /// valid UTF-8 yields [`ApiError::IdentityMissing`].
    pub fn from_headers(headers: &HeaderMap) -> Result<Identity, ApiError> {
        let user_id = header(headers, USER_ID).ok_or(ApiError::IdentityMissing)?;
        let tenant = header(headers, TENANT_ID).ok_or(ApiError::IdentityMissing)?;
        let role_header = header(headers, USER_ROLE).ok_or(ApiError::IdentityMissing)?;
        let mut roles: Vec<Role> = Vec::new();
        for role in role_header.split(',').filter_map(Role::parse) {
            if !roles.contains(&role) {
                roles.push(role);
            }
        }
        Ok(Identity { user_id, tenant, roles, token_id: header(headers, TOKEN_ID) })
    }

    /// Whether the caller holds `role`.
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Succeeds when the caller holds any of `allowed`, else 403 `forbidden_role`.
    pub fn require_any(&self, allowed: &[Role]) -> Result<(), ApiError> {
        if allowed.iter().any(|r| self.has(*r)) {
            Ok(())
        } else {
            Err(ApiError::ForbiddenRole)
        }
    }
}

/// First value of `name`, trimmed, if present, UTF-8 and non-empty.
fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    let value = headers.get(name)?.to_str().ok()?.trim();
    (!value.is_empty()).then(|| value.to_owned())
}

impl<S: Send + Sync> FromRequestParts<S> for Identity {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Identity::from_headers(&parts.headers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn parses_multi_role_and_ignores_unknown() {
        let id = Identity::from_headers(&headers(&[
            (USER_ID, "u-1"),
            (TENANT_ID, "hospital-a"),
            (USER_ROLE, " Doctor , admin,lab"),
        ]))
        .unwrap();
        assert_eq!(id.roles, vec![Role::Doctor, Role::Lab]);
        assert_eq!(id.token_id, None);
        assert!(id.require_any(&[Role::Lab]).is_ok());
        assert_eq!(id.require_any(&[Role::Insurer]), Err(ApiError::ForbiddenRole));
    }

    #[test]
    fn missing_or_blank_header_is_rejected() {
        let blank = headers(&[(USER_ID, " "), (TENANT_ID, "t"), (USER_ROLE, "lab")]);
        assert_eq!(Identity::from_headers(&blank), Err(ApiError::IdentityMissing));
        let no_role = headers(&[(USER_ID, "u"), (TENANT_ID, "t")]);
        assert_eq!(Identity::from_headers(&no_role), Err(ApiError::IdentityMissing));
    }
}
