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

use crate::store::TenantRecord;
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
/// Rotation interval when the admin API body gives none (90 days).
pub const DEFAULT_INTERVAL: i64 = 90 * 86_400;
/// Longest token lifetime when none is given (15 minutes).
pub const DEFAULT_MAX_TOKEN_TTL: i64 = 900;
/// Clock skew when none is given.
pub const DEFAULT_CLOCK_SKEW: i64 = 60;
/// Tenant algorithms the sidecar can sign with.
pub const ALGS: [&str; 4] = ["RS256", "PS256", "ES256", "EdDSA"];
/// Encryption key management algorithms.
pub const ENC_ALGS: [&str; 2] = ["RSA-OAEP-256", "ECDH-ES+A256KW"];

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
        let interval = t.interval.unwrap_or(DEFAULT_INTERVAL);
        let max_token_ttl = t.max_token_ttl.unwrap_or(DEFAULT_MAX_TOKEN_TTL);
        let clock_skew = t.clock_skew.unwrap_or(DEFAULT_CLOCK_SKEW);
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
            enc_alg: t.enc_alg,
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
        assert_eq!((r.interval, r.max_token_ttl, r.clock_skew), (DEFAULT_INTERVAL, 900, 60));
        let t = TenantInput { interval: Some(4), max_token_ttl: Some(30), clock_skew: Some(0), ..input() };
        let r = TenantSpec::validate(t).unwrap().record().clone();
        assert_eq!((r.interval, r.max_token_ttl, r.clock_skew), (4, 30, 0));
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
