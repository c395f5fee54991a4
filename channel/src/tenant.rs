//! Tenant discovery: `GET /internal/v1/tenants` answers a [`TenantList`], its
//! `version` also sent as a strong `ETag` (`If-None-Match` is answered 304).

use serde::{Deserialize, Serialize};

/// One tenant as the sidecar lists it for gateways.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedTenant {
    /// Tenant id.
    pub id: String,
    /// `iss` of its tokens.
    pub issuer: String,
    /// Audiences its tokens are issued for.
    pub audiences: Vec<String>,
    /// Signing algorithms of its keys.
    pub algorithms: Vec<String>,
    /// Key management of its encryption keys, if it has any.
    #[serde(default)]
    pub enc_alg: Option<String>,
}

/// The sidecar's answer to `GET /internal/v1/tenants`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantList {
    /// Changes whenever the list does (also sent as the `ETag`).
    pub version: String,
    /// Every tenant.
    pub tenants: Vec<ListedTenant>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tenant_list_json_is_pinned() {
        let sample = json!({
            "version": "0f1e",
            "tenants": [
                {"id": "lab", "issuer": "https://kms/lab", "audiences": ["api"], "algorithms": ["ES256"], "enc_alg": "ECDH-ES+A256KW"},
                {"id": "old", "issuer": "i", "audiences": [], "algorithms": ["RS256"], "enc_alg": null}
            ]
        });
        let list = TenantList {
            version: "0f1e".into(),
            tenants: vec![
                ListedTenant {
                    id: "lab".into(),
                    issuer: "https://kms/lab".into(),
                    audiences: vec!["api".into()],
                    algorithms: vec!["ES256".into()],
                    enc_alg: Some("ECDH-ES+A256KW".into()),
                },
                ListedTenant {
                    id: "old".into(),
                    issuer: "i".into(),
                    audiences: vec![],
                    algorithms: vec!["RS256".into()],
                    enc_alg: None,
                },
            ],
        };
        assert_eq!(serde_json::to_value(&list).unwrap(), sample);
        assert_eq!(serde_json::from_value::<TenantList>(sample).unwrap(), list);
        let without: ListedTenant =
            serde_json::from_value(json!({"id": "a", "issuer": "i", "audiences": [], "algorithms": []})).unwrap();
        assert_eq!(without.enc_alg, None, "enc_alg may be left out");
    }
}
