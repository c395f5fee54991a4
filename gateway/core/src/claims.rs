//! Claim sets: typed access to the registered claims with range checks done before
//! anything else touches them, and the time, issuer and audience rules.

use crate::error::AuthError;
use serde_json::{Map, Value};

/// Largest NumericDate accepted (9999-12-31T23:59:59Z); larger values are refused
/// before any arithmetic so no overflow is reachable.
pub const MAX_NUMERIC_DATE: i64 = 253_402_300_799;

/// A decoded claim set with its registered time claims range-checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Claims {
    map: Map<String, Value>,
    exp: Option<i64>,
    nbf: Option<i64>,
    iat: Option<i64>,
}

fn numeric_date(map: &Map<String, Value>, name: &str) -> Result<Option<i64>, AuthError> {
    let Some(v) = map.get(name) else {
        return Ok(None);
    };
    let n = v.as_number().ok_or_else(|| AuthError::ClaimInvalid(name.into()))?;
    let t = if let Some(i) = n.as_i64() {
        i
    } else {
        let f = n.as_f64().filter(|f| f.is_finite()).ok_or_else(|| AuthError::ClaimInvalid(name.into()))?;
        if !(0.0..=MAX_NUMERIC_DATE as f64).contains(&f) {
            return Err(AuthError::ClaimInvalid(name.into()));
        }
        f.floor() as i64
    };
    if !(0..=MAX_NUMERIC_DATE).contains(&t) {
        return Err(AuthError::ClaimInvalid(name.into()));
    }
    Ok(Some(t))
}

impl Claims {
    /// Wraps a claims object, refusing out-of-range or non-numeric time claims and
    /// non-string `iss`, `sub`, `jti`.
    pub fn new(map: Map<String, Value>) -> Result<Self, AuthError> {
        for name in ["iss", "sub", "jti"] {
            if map.get(name).is_some_and(|v| !v.is_string()) {
                return Err(AuthError::ClaimInvalid(name.into()));
            }
        }
        if let Some(aud) = map.get("aud") {
            let ok = match aud {
                Value::String(_) => true,
                Value::Array(a) => a.iter().all(Value::is_string),
                _ => false,
            };
            if !ok {
                return Err(AuthError::ClaimInvalid("aud".into()));
            }
        }
        Ok(Self {
            exp: numeric_date(&map, "exp")?,
            nbf: numeric_date(&map, "nbf")?,
            iat: numeric_date(&map, "iat")?,
            map,
        })
    }

    /// Any claim by name.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.map.get(name)
    }

    /// A string claim by name.
    pub fn str(&self, name: &str) -> Option<&str> {
        self.map.get(name).and_then(Value::as_str)
    }

    /// `exp`, when present.
    pub fn exp(&self) -> Option<i64> {
        self.exp
    }

    /// `iat`, when present.
    pub fn iat(&self) -> Option<i64> {
        self.iat
    }

    /// `nbf`, when present.
    pub fn nbf(&self) -> Option<i64> {
        self.nbf
    }

    /// Checks `exp` (required), `nbf` and `iat` against `now` with `leeway` seconds.
    pub fn check_time(&self, now: i64, leeway: i64) -> Result<(), AuthError> {
        let exp = self.exp.ok_or_else(|| AuthError::ClaimMissing("exp".into()))?;
        if now > exp.saturating_add(leeway) {
            return Err(AuthError::TokenExpired);
        }
        if self.nbf.is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
            return Err(AuthError::TokenNotYetValid);
        }
        if self.iat.is_some_and(|iat| iat > now.saturating_add(leeway)) {
            return Err(AuthError::TokenNotYetValid);
        }
        Ok(())
    }

    /// Checks `iss` equals `issuer` exactly.
    pub fn check_issuer(&self, issuer: &str) -> Result<(), AuthError> {
        match self.str("iss") {
            Some(iss) if iss == issuer => Ok(()),
            _ => Err(AuthError::IssuerInvalid),
        }
    }

    /// Checks `aud` (string or array) names at least one of `audiences`; an empty
    /// `audiences` list disables the check.
    pub fn check_audience(&self, audiences: &[String]) -> Result<(), AuthError> {
        if audiences.is_empty() {
            return Ok(());
        }
        let hit = match self.map.get("aud") {
            Some(Value::String(a)) => audiences.iter().any(|x| x == a),
            Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).any(|a| audiences.iter().any(|x| x == a)),
            _ => false,
        };
        if hit {
            Ok(())
        } else {
            Err(AuthError::AudienceInvalid)
        }
    }

    /// Checks every named claim is present and not null.
    pub fn check_required(&self, required: &[String]) -> Result<(), AuthError> {
        for name in required {
            if self.map.get(name).is_none_or(Value::is_null) {
                return Err(AuthError::ClaimMissing(name.clone()));
            }
        }
        Ok(())
    }

    /// Checks `exp - iat` is at most `max` seconds (`iat` is then required).
    pub fn check_lifetime(&self, max: i64) -> Result<(), AuthError> {
        let iat = self.iat.ok_or_else(|| AuthError::ClaimMissing("iat".into()))?;
        let exp = self.exp.ok_or_else(|| AuthError::ClaimMissing("exp".into()))?;
        if exp - iat > max {
            Err(AuthError::LifetimeExceeded)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Result<Claims, AuthError> {
        Claims::new(v.as_object().unwrap().clone())
    }

    #[test]
    fn time_claims_range_checked_before_use() {
        for bad in [json!(1e19), json!(-1), json!("1700000000"), json!(u64::MAX), json!(1e300), json!(true)] {
            assert!(claims(json!({"exp": bad})).is_err(), "{bad}");
        }
        assert_eq!(claims(json!({"exp": 1700000000.7})).unwrap().exp(), Some(1700000000));
    }

    #[test]
    fn time_rules() {
        let now = 1_700_000_000;
        let c = |v| claims(v).unwrap();
        assert_eq!(c(json!({})).check_time(now, 30), Err(AuthError::ClaimMissing("exp".into())));
        assert_eq!(c(json!({"exp": now - 31})).check_time(now, 30), Err(AuthError::TokenExpired));
        assert!(c(json!({"exp": now - 30})).check_time(now, 30).is_ok());
        assert_eq!(c(json!({"exp": now + 60, "nbf": now + 31})).check_time(now, 30), Err(AuthError::TokenNotYetValid));
        assert!(c(json!({"exp": now + 60, "nbf": now + 30})).check_time(now, 30).is_ok());
        assert_eq!(c(json!({"exp": now + 60, "iat": now + 100})).check_time(now, 30), Err(AuthError::TokenNotYetValid));
        assert_eq!(c(json!({"exp": now + 601, "iat": now})).check_lifetime(600), Err(AuthError::LifetimeExceeded));
        assert!(c(json!({"exp": now + 600, "iat": now})).check_lifetime(600).is_ok());
        assert_eq!(c(json!({"exp": now})).check_lifetime(600), Err(AuthError::ClaimMissing("iat".into())));
    }

    #[test]
    fn issuer_audience_required() {
        let c = claims(json!({"iss":"https://a","aud":["x","api"],"sub":"s","role":null})).unwrap();
        assert!(c.check_issuer("https://a").is_ok());
        assert_eq!(c.check_issuer("https://a/"), Err(AuthError::IssuerInvalid));
        assert!(c.check_audience(&["api".into()]).is_ok());
        assert_eq!(c.check_audience(&["other".into()]), Err(AuthError::AudienceInvalid));
        let no_aud = claims(json!({})).unwrap();
        assert_eq!(no_aud.check_audience(&["api".into()]), Err(AuthError::AudienceInvalid));
        assert_eq!(no_aud.check_issuer("https://a"), Err(AuthError::IssuerInvalid));
        assert!(c.check_required(&["sub".into()]).is_ok());
        assert_eq!(c.check_required(&["role".into()]), Err(AuthError::ClaimMissing("role".into())));
        assert!(claims(json!({"aud": 5})).is_err());
        assert!(claims(json!({"sub": 5})).is_err());
    }
}
