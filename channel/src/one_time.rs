//! The shared one-time store: a gateway claims a one-time token id with
//! `POST /internal/v1/one-time`; the sidecar commits it durably, then answers
//! [`OneTimeAnswer`] (200), or [`FULL_STATUS`] with the error [`FULL_ERROR`] when it
//! holds as many unexpired ids as it may (fail closed).

use serde::{Deserialize, Serialize};

/// HTTP status of a claim refused because the store is full (507).
pub const FULL_STATUS: u16 = 507;
/// The `error` code of that refusal.
pub const FULL_ERROR: &str = "one_time_store_full";

/// A claim of a one-time id: the token's tenant, issuer and `jti`, held until `until`
/// (the token's `exp` plus leeway, seconds, by the gateway's clock).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OneTimeClaim {
    /// Tenant.
    pub tenant: String,
    /// `iss`.
    pub issuer: String,
    /// `jti`.
    pub jti: String,
    /// Hold the id until then (seconds since the epoch).
    pub until: i64,
}

/// The answer to a claim that was recorded or found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OneTimeAnswer {
    /// True on the id's first use; false for a replay.
    pub first_use: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn claim_and_answer_json_are_pinned() {
        let claim = OneTimeClaim { tenant: "t".into(), issuer: "https://i".into(), jti: "j-1".into(), until: 1_700 };
        let sample = json!({"tenant": "t", "issuer": "https://i", "jti": "j-1", "until": 1_700});
        assert_eq!(serde_json::to_value(&claim).unwrap(), sample);
        assert_eq!(serde_json::from_value::<OneTimeClaim>(sample.clone()).unwrap(), claim);
        let mut extra = sample;
        extra["more"] = json!(1);
        assert!(serde_json::from_value::<OneTimeClaim>(extra).is_err(), "unknown fields are refused");

        for first_use in [true, false] {
            let sample = json!({"first_use": first_use});
            assert_eq!(serde_json::to_value(OneTimeAnswer { first_use }).unwrap(), sample);
            assert_eq!(serde_json::from_value::<OneTimeAnswer>(sample).unwrap(), OneTimeAnswer { first_use });
        }
        assert!(serde_json::from_value::<OneTimeAnswer>(json!({})).is_err(), "an answer without first_use");
        assert_eq!((FULL_STATUS, FULL_ERROR), (507, "one_time_store_full"));
    }
}
