//! The sidecar's YAML config: listeners, store, where secrets come from, and the
//! tenants seeded at start-up. Unknown fields are refused; every problem is reported
//! with its field path.

use crate::default;
use crate::http::listener::Limits;
use crate::tenant::{Source, TenantInput, TenantSpec};
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
                .map(zeroize::Zeroizing::new)
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
    /// The `aud` of issued tokens, one value (the admin API's and the gateway's name).
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Older spelling of `audiences`: one string.
    #[serde(default)]
    pub audience: Option<String>,
    /// Rotation schedule.
    pub rotation: RotationFile,
    /// Encryption key management: `RSA-OAEP-256` (default) or `ECDH-ES+A256KW`.
    #[serde(default)]
    pub enc_alg: Option<String>,
    /// RSA signing key size: 2048 (default) or 3072.
    #[serde(default)]
    pub rsa_bits: Option<u32>,
}

/// HTTP limits applied to every listener; each field defaults to the constant of
/// the same name in [`crate::default`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    /// Time to receive a request's headers; also the idle keep-alive timeout (default 10s).
    #[serde(default)]
    pub header_read_timeout: Option<Dur>,
    /// Time for a whole request, above the feed's 30 s long poll (default 60s).
    #[serde(default)]
    pub request_timeout: Option<Dur>,
    /// Largest request body in bytes (default 65536).
    #[serde(default)]
    pub max_body_bytes: Option<usize>,
    /// Largest start line plus headers in bytes (default 16384).
    #[serde(default)]
    pub max_header_bytes: Option<usize>,
    /// Most request headers (default 64).
    #[serde(default)]
    pub max_headers: Option<usize>,
    /// Most open connections per listener (default 1024).
    #[serde(default)]
    pub max_connections: Option<usize>,
}

impl LimitsFile {
    /// The limits, or every problem with its field path.
    pub fn validate(&self, errs: &mut Vec<String>) -> Limits {
        let d = Limits::default();
        let l = Limits {
            header_read_timeout: self.header_read_timeout.map_or(d.header_read_timeout, |v| v.0),
            request_timeout: self.request_timeout.map_or(d.request_timeout, |v| v.0),
            max_body_bytes: self.max_body_bytes.unwrap_or(d.max_body_bytes),
            max_header_bytes: self.max_header_bytes.unwrap_or(d.max_header_bytes),
            max_headers: self.max_headers.unwrap_or(d.max_headers),
            max_connections: self.max_connections.unwrap_or(d.max_connections),
        };
        let secs = std::time::Duration::from_secs;
        if !(secs(1)..=secs(300)).contains(&l.header_read_timeout) {
            errs.push("limits.header_read_timeout: must be between 1s and 300s".into());
        }
        if !(secs(31)..=secs(3600)).contains(&l.request_timeout) {
            errs.push("limits.request_timeout: must be between 31s (above the feed's 30 s long poll) and 1h".into());
        }
        if !(1024..=16 << 20).contains(&l.max_body_bytes) {
            errs.push("limits.max_body_bytes: must be between 1024 and 16777216".into());
        }
        if !(1024..=1 << 20).contains(&l.max_header_bytes) {
            errs.push("limits.max_header_bytes: must be between 1024 and 1048576".into());
        }
        if !(8..=1000).contains(&l.max_headers) {
            errs.push("limits.max_headers: must be between 8 and 1000".into());
        }
        if !(1..=1_000_000).contains(&l.max_connections) {
            errs.push("limits.max_connections: must be between 1 and 1000000".into());
        }
        l
    }
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
    /// HTTP limits of every listener.
    #[serde(default)]
    pub limits: LimitsFile,
    /// The validated `tenants` (filled by [`KmsConfig::from_yaml`]).
    #[serde(skip)]
    pub specs: Vec<TenantSpec>,
    /// The validated `limits` (filled by [`KmsConfig::from_yaml`]).
    #[serde(skip)]
    pub http_limits: Limits,
}

impl KmsConfig {
    /// Parses and validates YAML, naming the field of every problem. The validated
    /// tenants and limits are in [`KmsConfig::specs`] and [`KmsConfig::http_limits`].
    pub fn from_yaml(text: &str) -> Result<Self, String> {
        let de = serde_yaml_ng::Deserializer::from_str(text);
        let mut cfg: KmsConfig =
            serde_path_to_error::deserialize(de).map_err(|e| format!("{}: {}", e.path(), e.inner()))?;
        let mut errs = Vec::new();
        if cfg.create_if_missing.is_some() {
            errs.push(
                "create_if_missing: no longer supported: create the store once with `kms-sidecar init --config <file>`"
                    .into(),
            );
        }
        for (i, t) in cfg.tenants.iter().enumerate() {
            let input = match t.input() {
                Ok(input) => input,
                Err(e) => {
                    errs.push(format!("tenants[{i}].{e}"));
                    continue;
                }
            };
            match TenantSpec::validate(input) {
                Ok(spec) => cfg.specs.push(spec),
                Err(e) => {
                    errs.extend(e.iter().map(|e| format!("tenants[{i}].{}: {}", e.field.name(Source::Yaml), e.problem)))
                }
            }
        }
        if cfg.one_time_capacity == Some(0) {
            errs.push("one_time_capacity: must be at least 1".into());
        }
        if cfg.jwks_max_age.is_some_and(|d| d.secs() < 1) {
            errs.push("jwks_max_age: must be at least 1s".into());
        }
        cfg.http_limits = cfg.limits.validate(&mut errs);
        if errs.is_empty() {
            Ok(cfg)
        } else {
            Err(errs.join("\n"))
        }
    }

    /// JWKS max-age in seconds (default [`default::JWKS_MAX_AGE`]).
    pub fn max_age(&self) -> i64 {
        self.jwks_max_age.map_or(default::JWKS_MAX_AGE, |d| d.secs())
    }
}

impl TenantFile {
    /// The definition as the validator takes it (durations in whole seconds), or
    /// `field: problem` when the audience is not given exactly once.
    pub fn input(&self) -> Result<TenantInput, String> {
        let audience = crate::tenant::one_audience(self.audience.as_deref(), &self.audiences)?;
        Ok(TenantInput {
            id: self.id.clone(),
            alg: self.alg.clone(),
            issuer: self.issuer.clone(),
            audience,
            interval: Some(self.rotation.interval.secs()),
            max_token_ttl: self.rotation.max_token_ttl.map(|d| d.secs()),
            clock_skew: self.rotation.clock_skew.map(|d| d.secs()),
            enc_alg: self.enc_alg.clone(),
            rsa_bits: self.rsa_bits,
        })
    }
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
        assert_eq!(cfg.specs.len(), 2);
        assert_eq!(cfg.http_limits, Limits::default());
        let err = KmsConfig::from_yaml(&text.replace("interval: 1d", "interval: 0s")).unwrap_err();
        assert!(err.contains("tenants[0].rotation.interval: must be between 1 and"), "{err}");
        let err = KmsConfig::from_yaml(&text.replace("max_token_ttl: 15m", "max_token_ttl: 30d")).unwrap_err();
        assert!(err.contains("tenants[0].rotation.max_token_ttl"), "{err}");
        let err =
            KmsConfig::from_yaml(&format!("{text}\nlimits: {{ request_timeout: 5s, max_headers: 0 }}\n")).unwrap_err();
        assert!(err.contains("limits.request_timeout") && err.contains("limits.max_headers"), "{err}");
        let cfg = KmsConfig::from_yaml(&format!("{text}\nlimits: {{ header_read_timeout: 2s }}\n")).unwrap();
        assert_eq!(cfg.http_limits.header_read_timeout, std::time::Duration::from_secs(2));
        let err = KmsConfig::from_yaml(&format!("{text}create_if_missing: true\n")).unwrap_err();
        assert!(err.starts_with("create_if_missing: no longer supported") && err.contains("kms-sidecar init"), "{err}");
    }
}

#[cfg(test)]
mod same_validation {
    use super::*;
    use crate::tenant::{Field, TenantBody};

    /// A tenant created over the admin API gets exactly the validation of a YAML
    /// tenant: the same values are refused for the same fields, each named in its
    /// source's spelling (and nothing is built from a refused body).
    #[test]
    fn an_invalid_api_tenant_is_refused_like_the_yaml_one_with_the_field_named() {
        let yaml = "id: Lab 9\nalg: HS256\nissuer: i\naudiences: [api]\nenc_alg: A128KW\nrsa_bits: 1024\n\
                    rotation: { interval: 0s, max_token_ttl: 30d, clock_skew: 2h }\n";
        let file: TenantFile = serde_yaml_ng::from_str(yaml).unwrap();
        let body: TenantBody = serde_json::from_value(serde_json::json!({
            "id": "Lab 9", "alg": "HS256", "issuer": "i", "audiences": ["api"], "enc_alg": "A128KW", "rsa_bits": 1024,
            "rotation_interval_secs": 0, "max_token_ttl_secs": 30 * 86_400, "clock_skew_secs": 7_200
        }))
        .unwrap();
        let from_yaml = TenantSpec::validate(file.input().unwrap()).unwrap_err();
        let from_api = TenantSpec::validate(body.input().unwrap()).unwrap_err();
        assert_eq!(from_api, from_yaml, "the same problems from both sources");
        let fields: Vec<Field> = from_api.iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            [
                Field::Id,
                Field::Alg,
                Field::EncAlg,
                Field::RsaBits,
                Field::Interval,
                Field::MaxTokenTtl,
                Field::ClockSkew
            ]
        );
        let api = TenantSpec::describe(&from_api, Source::Api);
        for name in [
            "id:",
            "alg:",
            "enc_alg:",
            "rsa_bits:",
            "rotation_interval_secs:",
            "max_token_ttl_secs:",
            "clock_skew_secs:",
        ] {
            assert!(api.contains(name), "{name} in {api}");
        }
        let yaml = TenantSpec::describe(&from_yaml, Source::Yaml);
        assert!(yaml.contains("rotation.clock_skew:") && !yaml.contains("clock_skew_secs"), "{yaml}");
    }
}
