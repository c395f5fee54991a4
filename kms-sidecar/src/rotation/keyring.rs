//! The rotation timeline as a pure function of time. Every key carries the instants
//! at which it becomes current, stops being current and stops being published (or
//! held, for decryption keys); [`state`] reads a key's state off those instants, and
//! [`plan`] decides, for a given `now`, which keys to create and which instants to
//! set. A background task applies the plan; tests call it with any `now`.
//!
//! Signing keys: next (published, not signing) → current (signs) → retiring (still
//! published) → retired. A new key is published at least `publish_ahead` (≥ one JWKS
//! max-age) before it signs; the old one stays published for the longest token
//! lifetime plus clock skew after it stops signing.
//!
//! Encryption keys run the other way round: a next key is handed to the gateway
//! (private) before its public key is published; once current it is the issuers'
//! target and published; when retiring it is unpublished but the gateway keeps it
//! for the issuers' cache time plus the longest token lifetime plus skew.

use serde::{Deserialize, Serialize};

/// What a key is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Use {
    /// JWS signing.
    Sig,
    /// JWE key management.
    Enc,
}

impl Use {
    /// `sig` or `enc`.
    pub fn as_str(self) -> &'static str {
        match self {
            Use::Sig => "sig",
            Use::Enc => "enc",
        }
    }
}

impl Timeline {
    /// A new key's timeline: current from `activates_at`, no end set yet.
    pub fn new(kid: String, key_use: Use, now: i64, activates_at: i64) -> Timeline {
        Timeline { kid, key_use, created_at: now, activates_at, retires_at: None, expires_at: None, revoked: false }
    }
}

/// A key's place in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Created, not yet current.
    Next,
    /// Signs, or is the encryption target.
    Current,
    /// No longer used, still accepted.
    Retiring,
    /// Gone.
    Retired,
}

/// The timeline fields of a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeline {
    /// Key id.
    pub kid: String,
    /// What it is for.
    pub key_use: Use,
    /// When it was created.
    pub created_at: i64,
    /// When it becomes current.
    pub activates_at: i64,
    /// When it stops being current (set when its successor is planned).
    pub retires_at: Option<i64>,
    /// When it stops being accepted.
    pub expires_at: Option<i64>,
    /// Removed by an emergency rotation.
    pub revoked: bool,
}

/// A tenant's rotation settings, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// How long a key stays current.
    pub interval: i64,
    /// How long before signing a new key is published (≥ JWKS max-age).
    pub publish_ahead: i64,
    /// JWKS max-age (issuers' and verifiers' cache time).
    pub max_age: i64,
    /// Longest token lifetime.
    pub max_token_ttl: i64,
    /// Clock skew.
    pub clock_skew: i64,
}

impl Schedule {
    /// How long a key stays accepted after it stops being current.
    pub fn overlap(&self, key_use: Use) -> i64 {
        match key_use {
            Use::Sig => self.max_token_ttl + self.clock_skew,
            Use::Enc => self.max_age + self.max_token_ttl + self.clock_skew,
        }
    }
}

/// The state of `k` at `now`.
pub fn state(k: &Timeline, now: i64) -> State {
    if k.revoked {
        State::Retired
    } else if now < k.activates_at {
        State::Next
    } else if k.retires_at.is_none_or(|r| now < r) {
        State::Current
    } else if k.expires_at.is_some_and(|e| now < e) {
        State::Retiring
    } else {
        State::Retired
    }
}

/// Whether `k`'s public key is in the JWKS at `now`.
pub fn published(k: &Timeline, now: i64) -> bool {
    matches!(
        (k.key_use, state(k, now)),
        (Use::Sig, State::Next | State::Current | State::Retiring) | (Use::Enc, State::Current)
    )
}

/// Whether the gateway must hold `k`'s private key at `now` (encryption keys).
pub fn held_by_gateway(k: &Timeline, now: i64) -> bool {
    k.key_use == Use::Enc && matches!(state(k, now), State::Next | State::Current | State::Retiring)
}

/// One change the plan asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Create a new key becoming current at `activates_at`.
    Create {
        /// What for.
        key_use: Use,
        /// When it becomes current.
        activates_at: i64,
    },
    /// Set the end of a key's current period and acceptance.
    Retire {
        /// Key id.
        kid: String,
        /// Stops being current.
        retires_at: i64,
        /// Stops being accepted.
        expires_at: i64,
    },
    /// Mark revoked (emergency).
    Revoke {
        /// Key id.
        kid: String,
    },
    /// Past its expiry: destroy (or keep sealed, as configured).
    Destroy {
        /// Key id.
        kid: String,
    },
}

fn current(keys: &[Timeline], key_use: Use, now: i64) -> Option<&Timeline> {
    keys.iter().filter(|k| k.key_use == key_use && state(k, now) == State::Current).max_by_key(|k| k.activates_at)
}

fn pending(keys: &[Timeline], key_use: Use, now: i64) -> Option<&Timeline> {
    keys.iter().find(|k| k.key_use == key_use && state(k, now) == State::Next)
}

/// The scheduled plan for one tenant's keys at `now`.
pub fn plan(keys: &[Timeline], s: &Schedule, now: i64) -> Vec<Change> {
    let mut out = Vec::new();
    for key_use in [Use::Sig, Use::Enc] {
        match current(keys, key_use, now) {
            None if pending(keys, key_use, now).is_none() => {
                out.push(Change::Create { key_use, activates_at: now });
            }
            None => {}
            Some(cur) => {
                let due = cur.activates_at + s.interval - s.publish_ahead;
                if pending(keys, key_use, now).is_none() && now >= due {
                    let activates_at = (now + s.publish_ahead).max(cur.activates_at + s.interval);
                    out.push(Change::Create { key_use, activates_at });
                    out.push(Change::Retire {
                        kid: cur.kid.clone(),
                        retires_at: activates_at,
                        expires_at: activates_at + s.overlap(key_use),
                    });
                }
            }
        }
    }
    for k in keys {
        if !k.revoked && state(k, now) == State::Retired && k.retires_at.is_some() {
            out.push(Change::Destroy { kid: k.kid.clone() });
        }
    }
    out
}

/// A manual rotation of `key_use` at `now`. Normal: the successor is published
/// `publish_ahead` before it takes over (an already planned successor is kept).
/// Emergency: the current key is revoked at once and a new one is current now.
pub fn rotate_now(keys: &[Timeline], s: &Schedule, key_use: Use, emergency: bool, now: i64) -> Vec<Change> {
    let cur = current(keys, key_use, now);
    if emergency {
        // The compromised key goes at once; a planned successor is dropped too, so
        // exactly one key (the new one) is current from now on.
        let mut out: Vec<Change> =
            cur.into_iter().chain(pending(keys, key_use, now)).map(|k| Change::Revoke { kid: k.kid.clone() }).collect();
        out.push(Change::Create { key_use, activates_at: now });
        return out;
    }
    if pending(keys, key_use, now).is_some() {
        return Vec::new();
    }
    let activates_at = now + s.publish_ahead;
    let mut out = vec![Change::Create { key_use, activates_at }];
    if let Some(c) = cur {
        out.push(Change::Retire {
            kid: c.kid.clone(),
            retires_at: activates_at,
            expires_at: activates_at + s.overlap(key_use),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Schedule =
        Schedule { interval: 1000, publish_ahead: 120, max_age: 60, max_token_ttl: 300, clock_skew: 30 };

    fn apply(keys: &mut Vec<Timeline>, changes: &[Change], now: i64) {
        for c in changes {
            match c {
                Change::Create { key_use, activates_at } => keys.push(Timeline {
                    kid: format!("k{now}-{}-{activates_at}", key_use.as_str()),
                    key_use: *key_use,
                    created_at: now,
                    activates_at: *activates_at,
                    retires_at: None,
                    expires_at: None,
                    revoked: false,
                }),
                Change::Retire { kid, retires_at, expires_at } => {
                    let k = keys.iter_mut().find(|k| &k.kid == kid).unwrap();
                    k.retires_at = Some(*retires_at);
                    k.expires_at = Some(*expires_at);
                }
                Change::Revoke { kid } => keys.iter_mut().find(|k| &k.kid == kid).unwrap().revoked = true,
                Change::Destroy { kid } => keys.retain(|k| &k.kid != kid),
            }
        }
    }

    /// Drives the timeline second by second and checks, at every instant, that a
    /// token signed by the current key at any earlier moment still verifies for its
    /// whole lifetime, and that the next key was published ≥ max-age before signing.
    #[test]
    fn scheduled_rotation_never_breaks_a_valid_token() {
        let mut keys = Vec::new();
        let mut signed: Vec<(String, i64)> = Vec::new(); // (kid, exp)
        let mut first_published: std::collections::HashMap<String, i64> = Default::default();
        for now in 0..5000 {
            let changes = plan(&keys, &S, now);
            apply(&mut keys, &changes, now);
            let sig: Vec<&Timeline> = keys.iter().filter(|k| k.key_use == Use::Sig).collect();
            let currents: Vec<_> = sig.iter().filter(|k| state(k, now) == State::Current).collect();
            assert_eq!(currents.len(), 1, "exactly one signing key at {now}");
            for k in &sig {
                if published(k, now) {
                    first_published.entry(k.kid.clone()).or_insert(now);
                }
            }
            let cur = currents[0];
            if now > 0 {
                assert!(
                    now - first_published[&cur.kid] >= S.max_age || cur.activates_at == 0,
                    "published a max-age ahead"
                );
            }
            signed.push((cur.kid.clone(), now + S.max_token_ttl));
            for (kid, exp) in &signed {
                if now <= exp + S.clock_skew {
                    let k = keys.iter().find(|k| &k.kid == kid).expect("key still present");
                    assert!(published(k, now), "token of {kid} (exp {exp}) refused at {now}");
                }
            }
            // Encryption: whatever is published, the gateway holds; a key unpublished
            // is held for the issuers' cache time plus token lifetime.
            for k in keys.iter().filter(|k| k.key_use == Use::Enc) {
                if published(k, now) {
                    assert!(held_by_gateway(k, now));
                }
                if let Some(r) = k.retires_at {
                    if now >= r && now < r + S.max_age + S.max_token_ttl {
                        assert!(held_by_gateway(k, now), "enc key {} dropped too early at {now}", k.kid);
                    }
                }
            }
        }
        assert!(keys.iter().filter(|k| k.key_use == Use::Sig).count() <= 3, "retired keys are destroyed");
    }

    #[test]
    fn manual_and_emergency_rotation() {
        let mut keys = Vec::new();
        let first = plan(&keys, &S, 0);
        apply(&mut keys, &first, 0);
        let old = keys.iter().find(|k| k.key_use == Use::Sig).unwrap().kid.clone();
        let ch = rotate_now(&keys, &S, Use::Sig, false, 10);
        apply(&mut keys, &ch, 10);
        assert_eq!(
            state(keys.iter().find(|k| k.kid == old).unwrap(), 100),
            State::Current,
            "old signs until successor is due"
        );
        assert!(rotate_now(&keys, &S, Use::Sig, false, 11).is_empty(), "one successor at a time");
        let ch = rotate_now(&keys, &S, Use::Sig, true, 100);
        apply(&mut keys, &ch, 100);
        let k_old = keys.iter().find(|k| k.kid == old).unwrap();
        assert_eq!(state(k_old, 100), State::Retired);
        assert!(!published(k_old, 100), "emergency removes the old key at once");
        for now in [100, 129, 131, 500] {
            let n = keys.iter().filter(|k| k.key_use == Use::Sig && state(k, now) == State::Current).count();
            assert_eq!(n, 1, "exactly one signing key at {now}");
        }
    }
}
