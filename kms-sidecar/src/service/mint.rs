//! Token issuing: a signed JWT of the tenant's current signing key, nested in a JWE
//! to its current encryption key on request.

use super::{random_hex, Kms, KmsError};
use crate::crypto::{self, Alg};
use crate::default;
use crate::rotation::Use;
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// A token request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MintRequest {
    /// `sub`.
    pub sub: String,
    /// Role(s).
    #[serde(default)]
    pub role: Option<Value>,
    /// `aud` (default: the tenant's).
    #[serde(default)]
    pub aud: Option<String>,
    /// Lifetime in seconds: 1 to the tenant's maximum (default 15 minutes or that maximum).
    #[serde(default)]
    pub ttl_secs: Option<i64>,
    /// Extra claims (registered claims are refused here).
    #[serde(default)]
    pub claims: Option<Map<String, Value>>,
    /// Wrap in a JWE to the tenant's encryption key (nested JWT).
    #[serde(default)]
    pub encrypt: bool,
}

impl Kms {
    /// Issues a token for `tenant`.
    pub fn mint(&self, tenant: &str, req: MintRequest, now: i64) -> Result<String, KmsError> {
        let t = self.read().tenants.get(tenant).cloned().ok_or(KmsError::UnknownTenant)?;
        let ttl = req.ttl_secs.unwrap_or(default::TOKEN_TTL.min(t.max_token_ttl));
        if ttl < 1 || ttl > t.max_token_ttl {
            return Err(KmsError::BadRequest(format!("ttl_secs: must be between 1 and {}", t.max_token_ttl)));
        }
        // A tenant stored before its ranges were checked may allow any TTL.
        let exp = now.checked_add(ttl).ok_or_else(|| KmsError::BadRequest("ttl_secs: exp would overflow".into()))?;
        if req.sub.is_empty() {
            return Err(KmsError::BadRequest("sub must not be empty".into()));
        }
        let mut claims = Map::new();
        for (k, v) in req.claims.unwrap_or_default() {
            if ["iss", "aud", "sub", "iat", "nbf", "exp", "jti", "tenant_id"].contains(&k.as_str()) {
                return Err(KmsError::BadRequest(format!("claim {k:?} is set by the sidecar")));
            }
            claims.insert(k, v);
        }
        claims.insert("iss".into(), json!(t.issuer));
        claims.insert("aud".into(), json!(req.aud.unwrap_or(t.audience.clone())));
        claims.insert("sub".into(), json!(req.sub));
        if let Some(role) = req.role {
            claims.insert("role".into(), role);
        }
        claims.insert("tenant_id".into(), json!(t.id));
        claims.insert("iat".into(), json!(now));
        claims.insert("nbf".into(), json!(now));
        claims.insert("exp".into(), json!(exp));
        claims.insert("jti".into(), json!(random_hex(16)));
        let key = self
            .current_key(tenant, Use::Sig, now)
            .ok_or_else(|| KmsError::Internal("no current signing key".into()))?;
        let alg = Alg::parse(&key.alg).ok_or_else(|| KmsError::Internal("key alg".into()))?;
        let pkcs8 = self.store.private(&key)?;
        let jws = crypto::jws(alg, &pkcs8, &key.timeline.kid, &Value::Object(claims))?;
        if !req.encrypt {
            return Ok(jws);
        }
        let enc = self
            .current_key(tenant, Use::Enc, now)
            .ok_or_else(|| KmsError::Internal("no current encryption key".into()))?;
        let enc_pkcs8 = self.store.private(&enc)?;
        let alg = Alg::parse(&enc.alg).ok_or_else(|| KmsError::Internal("key alg".into()))?;
        Ok(crypto::jwe_wrap(alg, &enc_pkcs8, &enc.timeline.kid, &jws)?)
    }
}
