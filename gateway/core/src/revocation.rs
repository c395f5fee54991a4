//! Revoked tokens, subjects, tenants and keys, as learned from the sidecar's feed.
//! Single tokens are keyed by tenant and `jti` (never by token string) and dropped
//! once the token would have expired anyway; watermarks refuse every token of a
//! subject or tenant issued before an instant; a key removed by an emergency rotation
//! refuses its tokens at once, before any JWKS refresh.

use crate::error::AuthError;
use crate::verify::VerifiedToken;
use dashmap::DashMap;
use serde::Deserialize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// One entry of the sidecar's revocation feed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct RevocationEvent {
    /// Feed position.
    pub seq: u64,
    /// Tenant.
    pub tenant: String,
    /// A single token's `jti` ...
    #[serde(default)]
    pub jti: Option<String>,
    /// ... and its `exp`.
    #[serde(default)]
    pub exp: Option<i64>,
    /// A subject (with `before`).
    #[serde(default)]
    pub subject: Option<String>,
    /// Watermark: refuse tokens issued before this.
    #[serde(default)]
    pub before: Option<i64>,
    /// A key removed by an emergency rotation.
    #[serde(default)]
    pub kid: Option<String>,
}

/// The in-memory revocation state.
#[derive(Debug, Default)]
pub struct Revocations {
    jtis: DashMap<(String, String), i64>,
    subjects: DashMap<(String, String), i64>,
    tenants: DashMap<String, i64>,
    kids: DashMap<(String, String), ()>,
    cursor: AtomicU64,
    /// Set once anything is held, so the common case (nothing revoked) costs one load.
    any: AtomicBool,
}

fn raise(slot: &mut i64, to: i64) {
    *slot = (*slot).max(to);
}

impl Revocations {
    /// Applies one event (idempotent; events of already-expired tokens are skipped).
    pub fn apply(&self, e: &RevocationEvent, now: i64) {
        self.any.store(true, Ordering::Release);
        match (&e.jti, e.exp, &e.subject, e.before, &e.kid) {
            (Some(jti), Some(exp), _, _, _) if exp >= now => {
                self.jtis.insert((e.tenant.clone(), jti.clone()), exp);
            }
            (None, _, Some(sub), Some(before), _) => {
                raise(self.subjects.entry((e.tenant.clone(), sub.clone())).or_insert(before).value_mut(), before);
            }
            (None, _, None, Some(before), _) => {
                raise(self.tenants.entry(e.tenant.clone()).or_insert(before).value_mut(), before);
            }
            (_, _, _, _, Some(kid)) => {
                self.kids.insert((e.tenant.clone(), kid.clone()), ());
            }
            _ => {}
        }
        self.cursor.fetch_max(e.seq, Ordering::AcqRel);
    }

    /// The feed position applied so far.
    pub fn cursor(&self) -> u64 {
        self.cursor.load(Ordering::Acquire)
    }

    /// Refuses a revoked token.
    pub fn check(&self, t: &VerifiedToken) -> Result<(), AuthError> {
        if !self.any.load(Ordering::Acquire) {
            return Ok(());
        }
        let tenant = &t.tenant().id;
        // A removed signing key, or a removed decryption key of a JWE.
        for kid in [t.kid(), t.encrypted().map(|e| e.kid.as_str())].into_iter().flatten() {
            if self.kids.contains_key(&(tenant.clone(), kid.to_owned())) {
                return Err(AuthError::TokenRevoked);
            }
        }
        let c = t.claims();
        if let Some(jti) = c.str("jti") {
            if self.jtis.contains_key(&(tenant.clone(), jti.to_owned())) {
                return Err(AuthError::TokenRevoked);
            }
        }
        // Without `iat` a token cannot show it was issued after a watermark; with
        // whole-second times, a token of the watermark's own second is refused too.
        let iat = c.iat().unwrap_or(i64::MIN);
        if self.tenants.get(tenant).is_some_and(|b| iat <= *b) {
            return Err(AuthError::TokenRevoked);
        }
        if let Some(sub) = c.str("sub") {
            if self.subjects.get(&(tenant.clone(), sub.to_owned())).is_some_and(|b| iat <= *b) {
                return Err(AuthError::TokenRevoked);
            }
        }
        Ok(())
    }

    /// Drops single-token entries whose token has expired.
    pub fn sweep(&self, now: i64) {
        self.jtis.retain(|_, exp| *exp >= now);
    }

    /// Entries held (tokens, subjects, tenants, keys).
    pub fn len(&self) -> usize {
        self.jtis.len() + self.subjects.len() + self.tenants.len() + self.kids.len()
    }

    /// True when nothing is revoked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_apply_and_expire() {
        let r = Revocations::default();
        let ev = |seq, jti: Option<&str>, exp, sub: Option<&str>, before, kid: Option<&str>| RevocationEvent {
            seq,
            tenant: "t".into(),
            jti: jti.map(Into::into),
            exp,
            subject: sub.map(Into::into),
            before,
            kid: kid.map(Into::into),
        };
        r.apply(&ev(1, Some("j1"), Some(200), None, None, None), 100);
        r.apply(&ev(2, Some("old"), Some(50), None, None, None), 100);
        r.apply(&ev(3, None, None, Some("s"), Some(90), None), 100);
        r.apply(&ev(4, None, None, Some("s"), Some(80), None), 100);
        r.apply(&ev(5, None, None, None, None, Some("k1")), 100);
        assert_eq!(r.cursor(), 5);
        assert_eq!(r.len(), 3, "expired token skipped, watermark kept at its maximum");
        assert_eq!(*r.subjects.get(&("t".into(), "s".into())).unwrap(), 90);
        r.sweep(201);
        assert_eq!(r.len(), 2);
    }
}
