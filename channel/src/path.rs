//! The paths of the gateway channel (the sidecar's internal listener). The decryption
//! keys path holds `{tenant}`, the placeholder of both axum's routes and the
//! gateway's `decryption.url_template`.

/// Prefix of every authenticated channel path.
pub const PREFIX: &str = "/internal/v1";
/// `GET`: the revocation feed, a [`crate::FeedPage`] (query: [`crate::FeedQuery`]).
pub const REVOCATIONS: &str = "/internal/v1/revocations";
/// `GET`: the tenant list, a [`crate::TenantList`] (`ETag` / `If-None-Match`).
pub const TENANTS: &str = "/internal/v1/tenants";
/// `GET`: one tenant's private decryption keys, a [`crate::DecryptionKeys`].
pub const DECRYPTION_KEYS: &str = "/internal/v1/tenants/{tenant}/decryption-keys";
/// `POST`: a [`crate::OneTimeClaim`], answered by a [`crate::OneTimeAnswer`].
pub const ONE_TIME: &str = "/internal/v1/one-time";
/// `GET`: liveness, unauthenticated.
pub const HEALTHZ: &str = "/healthz";

/// [`DECRYPTION_KEYS`] for `tenant`.
pub fn decryption_keys(tenant: &str) -> String {
    DECRYPTION_KEYS.replace("{tenant}", tenant)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_pinned() {
        for p in [REVOCATIONS, TENANTS, DECRYPTION_KEYS, ONE_TIME] {
            assert!(p.starts_with(PREFIX), "{p}");
        }
        assert_eq!(REVOCATIONS, "/internal/v1/revocations");
        assert_eq!(TENANTS, "/internal/v1/tenants");
        assert_eq!(ONE_TIME, "/internal/v1/one-time");
        assert_eq!(decryption_keys("t-ec"), "/internal/v1/tenants/t-ec/decryption-keys");
    }
}
