//! The validated tenant spec: the one type a tenant is created from, built from the
//! YAML tenant config and from the admin API body alike. Every value is range-checked
//! and the stored record is exactly the validated value (no clamped copy checked
//! while the raw one is stored). Each problem names its field in the caller's
//! spelling (`rotation.interval` in YAML, `rotation_interval_secs` in the API).
//!
//! ```ignore
//! let spec = TenantSpec::validate(input).map_err(|e| TenantSpec::describe(&e, Source::Api))?;
//! kms.ensure_tenant(spec, now)?;
//! ```

use crate::default;
use crate::store::TenantRecord;
use serde::{Deserialize, Serialize};
use std::ops::RangeInclusive;

/// Most bytes in a tenant id: kids are `<tenant>-<use>-<suffix>` and stay far below
/// the 256-byte cap on a `kid`.
pub const ID_MAX_LEN: usize = 64;
/// Most bytes in an issuer or audience.
pub const NAME_MAX_LEN: usize = 1024;
/// Rotation interval in seconds: 1 s (tests) to 10 years.
pub const INTERVAL_SECS: RangeInclusive<i64> = 1..=10 * 365 * 86_400;
/// Longest token lifetime in seconds: 1 s to 7 days.
pub const MAX_TOKEN_TTL_SECS: RangeInclusive<i64> = 1..=7 * 86_400;
/// Clock skew in seconds: 0 to 1 hour.
pub const CLOCK_SKEW_SECS: RangeInclusive<i64> = 0..=3_600;
/// Tenant algorithms the sidecar can sign with.
pub const ALGS: [&str; 4] = ["RS256", "PS256", "ES256", "EdDSA"];
/// Encryption key management algorithms.
pub const ENC_ALGS: [&str; 2] = ["RSA-OAEP-256", "ECDH-ES+A256KW"];

/// A tenant as the admin API takes it (`POST /admin/tenants`) and answers it
/// (`GET /admin/tenants`): one set of field names both ways. `audiences` holds the
/// one `aud` the sidecar puts in the tokens it issues (so exactly one value); the old
/// body's `audience` (a string) is still accepted. The answer always carries the
/// values in force, defaults filled in (`enc_alg` is never null: every tenant has
/// encryption keys; `rsa_bits` is null for a non-RSA `alg`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantBody {
    /// Tenant id.
    pub id: String,
    /// Signing algorithm.
    pub alg: String,
    /// `iss` of issued tokens.
    pub issuer: String,
    /// The `aud` of issued tokens (exactly one).
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Old spelling of `audiences`, accepted in a POST body only.
    #[serde(default, skip_serializing)]
    pub audience: Option<String>,
    /// Rotation interval, seconds.
    #[serde(default)]
    pub rotation_interval_secs: Option<i64>,
    /// Longest token lifetime, seconds.
    #[serde(default)]
    pub max_token_ttl_secs: Option<i64>,
    /// Clock skew, seconds.
    #[serde(default)]
    pub clock_skew_secs: Option<i64>,
    /// Encryption key management.
    #[serde(default)]
    pub enc_alg: Option<String>,
    /// RSA signing key size.
    #[serde(default)]
    pub rsa_bits: Option<u32>,
}

/// The one `aud` a tenant issues, given as `audiences: [one]` or the older
/// `audience: one` (never both), or `audiences: problem`.
pub fn one_audience(audience: Option<&str>, audiences: &[String]) -> Result<String, String> {
    match (audience, audiences) {
        (Some(a), []) => Ok(a.to_owned()),
        (None, [a]) => Ok(a.clone()),
        (Some(_), [_, ..]) => Err("audiences: give audiences or the older audience, not both".into()),
        (None, []) => Err("audiences: required (one value: the aud of issued tokens)".into()),
        (None, _) => Err("audiences: the sidecar issues tokens for one audience: give exactly one value".into()),
    }
}

impl TenantBody {
    /// The body as validator input; `audiences` must hold exactly one value (or
    /// `audience` give it), else the problem is returned.
    pub fn input(self) -> Result<TenantInput, String> {
        let audience = one_audience(self.audience.as_deref(), &self.audiences)?;
        Ok(TenantInput {
            id: self.id,
            alg: self.alg,
            issuer: self.issuer,
            audience,
            interval: self.rotation_interval_secs,
            max_token_ttl: self.max_token_ttl_secs,
            clock_skew: self.clock_skew_secs,
            enc_alg: self.enc_alg,
            rsa_bits: self.rsa_bits,
        })
    }
}

impl From<&TenantRecord> for TenantBody {
    /// A stored tenant as the API shows it, with the values in force (a record stored
    /// before defaults were written shows them filled in).
    fn from(t: &TenantRecord) -> Self {
        let rsa = t.alg.starts_with("RS") || t.alg.starts_with("PS");
        TenantBody {
            id: t.id.clone(),
            alg: t.alg.clone(),
            issuer: t.issuer.clone(),
            audiences: vec![t.audience.clone()],
            audience: None,
            rotation_interval_secs: Some(t.interval),
            max_token_ttl_secs: Some(t.max_token_ttl),
            clock_skew_secs: Some(t.clock_skew),
            enc_alg: Some(t.enc_alg.clone().unwrap_or_else(|| default::ENC_ALG.to_owned())),
            rsa_bits: rsa.then(|| t.rsa_bits.unwrap_or(default::RSA_BITS)),
        }
    }
}

/// A tenant definition as given, from either source; durations in whole seconds.
#[derive(Debug, Clone, Default)]
pub struct TenantInput {
    /// Tenant id.
    pub id: String,
    /// Signing algorithm.
    pub alg: String,
    /// `iss` of issued tokens.
    pub issuer: String,
    /// Default `aud` of issued tokens.
    pub audience: String,
    /// Rotation interval (the API's default applies when absent).
    pub interval: Option<i64>,
    /// Longest token lifetime.
    pub max_token_ttl: Option<i64>,
    /// Clock skew.
    pub clock_skew: Option<i64>,
    /// Encryption key management.
    pub enc_alg: Option<String>,
    /// RSA signing key size.
    pub rsa_bits: Option<u32>,
}

impl From<&TenantRecord> for TenantInput {
    /// A stored tenant as input, to re-check one stored before validation existed.
    fn from(t: &TenantRecord) -> Self {
        TenantInput {
            id: t.id.clone(),
            alg: t.alg.clone(),
            issuer: t.issuer.clone(),
            audience: t.audience.clone(),
            interval: Some(t.interval),
            max_token_ttl: Some(t.max_token_ttl),
            clock_skew: Some(t.clock_skew),
            enc_alg: t.enc_alg.clone(),
            rsa_bits: t.rsa_bits,
        }
    }
}

/// A field of a tenant definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// `id`.
    Id,
    /// `alg`.
    Alg,
    /// `issuer`.
    Issuer,
    /// `audience`.
    Audience,
    /// The rotation interval.
    Interval,
    /// The longest token lifetime.
    MaxTokenTtl,
    /// The clock skew.
    ClockSkew,
    /// `enc_alg`.
    EncAlg,
    /// `rsa_bits`.
    RsaBits,
}

/// Where a tenant definition came from, for naming its fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A `tenants[i]` entry of the YAML config.
    Yaml,
    /// The `POST /admin/tenants` body.
    Api,
}

impl Field {
    /// The field's name in `source`.
    pub fn name(self, source: Source) -> &'static str {
        match (self, source) {
            (Field::Id, _) => "id",
            (Field::Alg, _) => "alg",
            (Field::Issuer, _) => "issuer",
            (Field::Audience, _) => "audience",
            (Field::EncAlg, _) => "enc_alg",
            (Field::RsaBits, _) => "rsa_bits",
            (Field::Interval, Source::Yaml) => "rotation.interval",
            (Field::Interval, Source::Api) => "rotation_interval_secs",
            (Field::MaxTokenTtl, Source::Yaml) => "rotation.max_token_ttl",
            (Field::MaxTokenTtl, Source::Api) => "max_token_ttl_secs",
            (Field::ClockSkew, Source::Yaml) => "rotation.clock_skew",
            (Field::ClockSkew, Source::Api) => "clock_skew_secs",
        }
    }
}

/// One problem of a tenant definition (never holds a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    /// The field.
    pub field: Field,
    /// What is wrong with it.
    pub problem: String,
}

/// A tenant definition that passed every check; only [`TenantSpec::validate`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantSpec(TenantRecord);

fn in_range(errs: &mut Vec<SpecError>, field: Field, v: i64, range: &RangeInclusive<i64>) {
    if !range.contains(&v) {
        let problem = format!("must be between {} and {} seconds (got {v})", range.start(), range.end());
        errs.push(SpecError { field, problem });
    }
}

impl TenantSpec {
    /// Checks every field; returns all problems, or the spec with defaults filled in.
    pub fn validate(t: TenantInput) -> Result<TenantSpec, Vec<SpecError>> {
        let mut errs = Vec::new();
        let mut bad = |field, problem: String| errs.push(SpecError { field, problem });
        let id_ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_';
        if t.id.is_empty() || t.id.len() > ID_MAX_LEN || !t.id.bytes().all(id_ok) {
            bad(Field::Id, format!("must be 1 to {ID_MAX_LEN} of a-z, 0-9, - or _ (got {} bytes)", t.id.len()));
        }
        if !ALGS.contains(&t.alg.as_str()) {
            bad(Field::Alg, format!("{:?} is not one of {}", truncated(&t.alg), ALGS.join(", ")));
        }
        for (field, v) in [(Field::Issuer, &t.issuer), (Field::Audience, &t.audience)] {
            if v.is_empty() || v.len() > NAME_MAX_LEN {
                bad(field, format!("must be 1 to {NAME_MAX_LEN} bytes"));
            }
        }
        if let Some(a) = t.enc_alg.as_deref().filter(|a| !ENC_ALGS.contains(a)) {
            bad(Field::EncAlg, format!("{:?} is not RSA-OAEP-256 or ECDH-ES+A256KW", truncated(a)));
        }
        if t.rsa_bits.is_some_and(|b| b != 2048 && b != 3072) {
            bad(Field::RsaBits, "must be 2048 or 3072".into());
        }
        let interval = t.interval.unwrap_or(default::ROTATION_INTERVAL);
        let max_token_ttl = t.max_token_ttl.unwrap_or(default::MAX_TOKEN_TTL);
        let clock_skew = t.clock_skew.unwrap_or(default::CLOCK_SKEW);
        in_range(&mut errs, Field::Interval, interval, &INTERVAL_SECS);
        in_range(&mut errs, Field::MaxTokenTtl, max_token_ttl, &MAX_TOKEN_TTL_SECS);
        in_range(&mut errs, Field::ClockSkew, clock_skew, &CLOCK_SKEW_SECS);
        if !errs.is_empty() {
            return Err(errs);
        }
        Ok(TenantSpec(TenantRecord {
            id: t.id,
            alg: t.alg,
            issuer: t.issuer,
            audience: t.audience,
            interval,
            max_token_ttl,
            clock_skew,
            // Stored as in force: a tenant without `enc_alg` gets RSA-OAEP-256 keys.
            enc_alg: Some(t.enc_alg.unwrap_or_else(|| default::ENC_ALG.to_owned())),
            rsa_bits: t.rsa_bits,
        }))
    }

    /// The problems as one line per field, named as `source` spells them.
    pub fn describe(errs: &[SpecError], source: Source) -> String {
        errs.iter().map(|e| format!("{}: {}", e.field.name(source), e.problem)).collect::<Vec<_>>().join("; ")
    }

    /// The tenant id.
    pub fn id(&self) -> &str {
        &self.0.id
    }

    /// The record to store.
    pub fn record(&self) -> &TenantRecord {
        &self.0
    }
}

/// At most 64 bytes of a user-given value, for an error message.
fn truncated(s: &str) -> &str {
    let mut end = s.len().min(64);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> TenantInput {
        TenantInput {
            id: "lab-9".into(),
            alg: "ES256".into(),
            issuer: "https://kms.test/lab-9".into(),
            audience: "api".into(),
            ..Default::default()
        }
    }

    fn refused(f: impl FnOnce(&mut TenantInput)) -> Vec<Field> {
        let mut t = input();
        f(&mut t);
        TenantSpec::validate(t).expect_err("refused").into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn defaults_fill_in_and_the_stored_record_is_the_validated_value() {
        let spec = TenantSpec::validate(input()).unwrap();
        let r = spec.record();
        assert_eq!((r.interval, r.max_token_ttl, r.clock_skew), (default::ROTATION_INTERVAL, 900, 60));
        assert_eq!(r.enc_alg.as_deref(), Some(default::ENC_ALG), "the enc alg in force is stored, never null");
        let t = TenantInput { interval: Some(4), max_token_ttl: Some(30), clock_skew: Some(0), ..input() };
        let r = TenantSpec::validate(t).unwrap().record().clone();
        assert_eq!((r.interval, r.max_token_ttl, r.clock_skew), (4, 30, 0));
    }

    /// The GET answer parses back as a POST body with the same names, and a record
    /// stored without `enc_alg` (RSA-OAEP-256 keys) shows the alg of its keys.
    #[test]
    fn the_answer_uses_the_body_names_and_shows_the_enc_alg_in_force() {
        let body: TenantBody = serde_json::from_value(serde_json::json!({
            "id": "lab-9", "alg": "ES256", "issuer": "i", "audiences": ["api"], "enc_alg": "ECDH-ES+A256KW"
        }))
        .unwrap();
        let spec = TenantSpec::validate(body.input().unwrap()).unwrap();
        let shown = serde_json::to_value(TenantBody::from(spec.record())).unwrap();
        let again: TenantBody = serde_json::from_value(shown.clone()).expect("the answer is a valid body");
        assert_eq!(again.audiences, ["api"]);
        assert_eq!((shown["enc_alg"].as_str(), shown["rsa_bits"].is_null()), (Some("ECDH-ES+A256KW"), true));
        let mut legacy = spec.record().clone();
        legacy.enc_alg = None;
        assert_eq!(TenantBody::from(&legacy).enc_alg.as_deref(), Some("RSA-OAEP-256"));
        let old: TenantBody =
            serde_json::from_value(serde_json::json!({"id": "a", "alg": "ES256", "issuer": "i", "audience": "x"}))
                .unwrap();
        assert_eq!(old.input().unwrap().audience, "x", "the old name still works");
        let two = TenantBody { audiences: vec!["a".into(), "b".into()], ..again };
        assert!(two.input().unwrap_err().starts_with("audiences:"));
    }

    #[test]
    fn ranges_are_enforced_at_both_ends() {
        type Set = fn(&mut TenantInput, i64);
        let table: [(Field, Set, i64, i64); 3] = [
            (Field::Interval, |t, v| t.interval = Some(v), *INTERVAL_SECS.start(), *INTERVAL_SECS.end()),
            (Field::MaxTokenTtl, |t, v| t.max_token_ttl = Some(v), 1, 7 * 86_400),
            (Field::ClockSkew, |t, v| t.clock_skew = Some(v), 0, 3_600),
        ];
        for (field, set, lo, hi) in table {
            for ok in [lo, hi] {
                let mut t = input();
                set(&mut t, ok);
                assert!(TenantSpec::validate(t).is_ok(), "{field:?} = {ok}");
            }
            for bad in [lo - 1, hi + 1, -100_000, i64::MIN, i64::MAX] {
                assert_eq!(refused(|t| set(t, bad)), [field], "{field:?} = {bad}");
            }
        }
        assert_eq!(refused(|t| t.interval = Some(0)), [Field::Interval]);
    }

    #[test]
    fn tenant_ids_are_short_lowercase_names() {
        for ok in ["a", "lab-9", "t_1", &"x".repeat(ID_MAX_LEN)] {
            assert!(TenantSpec::validate(TenantInput { id: ok.into(), ..input() }).is_ok(), "{ok}");
        }
        for bad in ["", "Lab", "a b", "a/b", "a.b", "é", &"x".repeat(ID_MAX_LEN + 1), &"x".repeat(300)] {
            assert_eq!(refused(|t| t.id = bad.into()), [Field::Id], "{bad:?}");
        }
    }

    #[test]
    fn every_problem_is_reported_with_its_name_in_each_source() {
        let t = TenantInput {
            alg: "HS256".into(),
            issuer: String::new(),
            interval: Some(-1),
            max_token_ttl: Some(i64::MAX),
            enc_alg: Some("A128KW".into()),
            rsa_bits: Some(1024),
            ..input()
        };
        let errs = TenantSpec::validate(t).unwrap_err();
        assert_eq!(errs.len(), 6, "{errs:?}");
        let api = TenantSpec::describe(&errs, Source::Api);
        for name in ["alg:", "issuer:", "rotation_interval_secs:", "max_token_ttl_secs:", "enc_alg:", "rsa_bits:"] {
            assert!(api.contains(name), "{api}");
        }
        let yaml = TenantSpec::describe(&errs, Source::Yaml);
        assert!(yaml.contains("rotation.interval:") && yaml.contains("rotation.max_token_ttl:"), "{yaml}");
    }
}
