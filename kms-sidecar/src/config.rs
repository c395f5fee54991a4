//! The sidecar's YAML config: listeners, store, where secrets come from, and the
//! tenants seeded at start-up. Unknown fields are refused; every problem is reported
//! with its field path.

use gateway_core::duration::Dur;
use serde::Deserialize;
use std::net::SocketAddr;

/// Where a secret comes from: exactly one of `env` or `file`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSource {
    /// Environment variable.
    #[serde(default)]
    pub env: Option<String>,
    /// File (whitespace trimmed).
    #[serde(default)]
    pub file: Option<String>,
}

impl SecretSource {
    /// Reads the secret; the error names the source, never the value.
    pub fn read(&self, field: &str) -> anyhow::Result<zeroize::Zeroizing<String>> {
        match (&self.env, &self.file) {
            (Some(var), None) => std::env::var(var)
                .map(zeroize::Zeroizing::new)
                .map_err(|_| anyhow::anyhow!("{field}: environment variable {var} is not set")),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map(|s| zeroize::Zeroizing::new(s.trim().to_owned()))
                .map_err(|e| anyhow::anyhow!("{field}: {path}: {e}")),
            _ => anyhow::bail!("{field}: set exactly one of env or file"),
        }
    }
}

/// Rotation settings of one tenant.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotationFile {
    /// How long a key stays current.
    pub interval: Dur,
    /// Longest token lifetime issued (also the cap on requested TTLs).
    #[serde(default)]
    pub max_token_ttl: Option<Dur>,
    /// Clock skew allowed between issuers and verifiers.
    #[serde(default)]
    pub clock_skew: Option<Dur>,
}

/// One seeded tenant.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantFile {
    /// Tenant id.
    pub id: String,
    /// Signing algorithm: RS256, PS256, ES256 or EdDSA.
    pub alg: String,
    /// `iss` of issued tokens.
    pub issuer: String,
    /// Default `aud` of issued tokens.
    pub audience: String,
    /// Rotation schedule.
    pub rotation: RotationFile,
    /// Encryption key management: `RSA-OAEP-256` (default) or `ECDH-ES+A256KW`.
    #[serde(default)]
    pub enc_alg: Option<String>,
    /// RSA signing key size: 2048 (default) or 3072.
    #[serde(default)]
    pub rsa_bits: Option<u32>,
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KmsConfig {
    /// Public + admin listener.
    pub listen: SocketAddr,
    /// Gateway channel listener (loopback by default).
    pub internal_listen: SocketAddr,
    /// Directory of the embedded store.
    pub data_dir: String,
    /// No longer accepted (a store is created only by `kms-sidecar init`); kept so
    /// that an old config is refused with a message naming the field.
    #[serde(default)]
    pub create_if_missing: Option<serde_yaml_ng::Value>,
    /// Base64 32-byte master key.
    pub master_key: SecretSource,
    /// Bearer credential for admin and issuing endpoints.
    pub admin_token: SecretSource,
    /// Bearer credential of the gateway channel.
    pub gateway_token: SecretSource,
    /// `Cache-Control: max-age` of JWKS responses.
    #[serde(default)]
    pub jwks_max_age: Option<Dur>,
    /// Keep retired private keys sealed in the store instead of destroying them.
    #[serde(default)]
    pub keep_retired: bool,
    /// Tenants created at start-up when missing.
    #[serde(default)]
    pub tenants: Vec<TenantFile>,
    /// Most unexpired one-time token ids held for gateways (default 1,000,000);
    /// beyond it claims are refused (fail closed), never forgotten.
    #[serde(default)]
    pub one_time_capacity: Option<u64>,
}

/// Tenant algorithms the sidecar can sign with.
pub const ALGS: [&str; 4] = ["RS256", "PS256", "ES256", "EdDSA"];

impl KmsConfig {
    /// Parses and validates YAML, naming the field of every problem.
    pub fn from_yaml(text: &str) -> Result<Self, String> {
        let de = serde_yaml_ng::Deserializer::from_str(text);
        let cfg: KmsConfig =
            serde_path_to_error::deserialize(de).map_err(|e| format!("{}: {}", e.path(), e.inner()))?;
        let mut errs = Vec::new();
        if cfg.create_if_missing.is_some() {
            errs.push(
                "create_if_missing: no longer supported: create the store once with `kms-sidecar init --config <file>`"
                    .into(),
            );
        }
        for (i, t) in cfg.tenants.iter().enumerate() {
            if let Err(e) = validate_tenant(t) {
                errs.push(format!("tenants[{i}].{e}"));
            }
        }
        if cfg.one_time_capacity == Some(0) {
            errs.push("one_time_capacity: must be at least 1".into());
        }
        if cfg.jwks_max_age.is_some_and(|d| d.secs() < 1) {
            errs.push("jwks_max_age: must be at least 1s".into());
        }
        if errs.is_empty() {
            Ok(cfg)
        } else {
            Err(errs.join("\n"))
        }
    }

    /// JWKS max-age in seconds (default 60).
    pub fn max_age(&self) -> i64 {
        self.jwks_max_age.map_or(60, |d| d.secs())
    }
}

/// Checks one tenant definition; `Err` starts with the field name.
pub fn validate_tenant(t: &TenantFile) -> Result<(), String> {
    if t.id.is_empty() || !t.id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(format!("id: {:?} must be non-empty letters, digits, - or _", t.id));
    }
    if !ALGS.contains(&t.alg.as_str()) {
        return Err(format!("alg: {:?} is not one of {}", t.alg, ALGS.join(", ")));
    }
    if t.issuer.is_empty() {
        return Err("issuer: must not be empty".into());
    }
    if t.audience.is_empty() {
        return Err("audience: must not be empty".into());
    }
    if let Some(a) = &t.enc_alg {
        if a != "RSA-OAEP-256" && a != "ECDH-ES+A256KW" {
            return Err(format!("enc_alg: {a:?} is not RSA-OAEP-256 or ECDH-ES+A256KW"));
        }
    }
    if t.rsa_bits.is_some_and(|b| b != 2048 && b != 3072) {
        return Err("rsa_bits: must be 2048 or 3072".into());
    }
    if t.rotation.interval.secs() < 1 {
        return Err("rotation.interval: must be at least 1s".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_config_is_valid_and_bad_fields_are_named() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../conf/kms.yaml")).unwrap();
        let cfg = KmsConfig::from_yaml(&text).unwrap();
        assert_eq!(cfg.tenants.len(), 2);
        let err = KmsConfig::from_yaml(&text.replace("alg: ES256", "alg: HS256")).unwrap_err();
        assert!(err.contains("tenants[1].alg"), "{err}");
        let err = KmsConfig::from_yaml(&text.replace("keep_retired:", "keep_retierd:")).unwrap_err();
        assert!(err.contains("keep_retierd"), "{err}");
        let err = KmsConfig::from_yaml(&format!("{text}create_if_missing: true\n")).unwrap_err();
        assert!(err.starts_with("create_if_missing: no longer supported") && err.contains("kms-sidecar init"), "{err}");
    }
}
