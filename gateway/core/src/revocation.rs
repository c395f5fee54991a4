//! Revoked tokens, subjects, tenants and keys, as learned from the sidecar's feed.
//! Single tokens are keyed by tenant and `jti` (never by token string) and dropped
//! once the token would have expired anyway; watermarks refuse every token of a
//! subject or tenant issued before an instant (raised by a revoke, set lower only by
//! an explicit `lower` event); a key removed by an emergency rotation refuses its
//! tokens at once, before any JWKS refresh.
//!
//! The feed is numbered within an `epoch` (the sidecar's store and run): a gateway
//! that sees another epoch, or a sequence below its own, rebuilds its whole state from
//! the start of the feed and swaps it in at once ([`Revocations::replace`]). Until
//! it has read the feed once (or loaded a fresh [`Snapshot`] of an earlier run) it is
//! not [`Revocations::synced`].

use crate::error::AuthError;
use crate::verify::VerifiedToken;
use arc_swap::ArcSwap;
use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

/// The feed's entry and page: the gateway-sidecar contract, defined once in
/// `medgate-channel` and used by both sides.
pub use medgate_channel::revocation::{FeedPage, RevocationEvent};

/// The revocation state as saved to disk between runs (`revocation.state_file`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    /// Feed epoch the state was read from.
    pub epoch: Option<String>,
    /// Feed position applied.
    pub cursor: u64,
    /// When the state was last known to match the feed (seconds).
    pub synced_at: i64,
    /// `(tenant, jti, exp)`.
    pub jtis: Vec<(String, String, i64)>,
    /// `(tenant, subject, before)`.
    pub subjects: Vec<(String, String, i64)>,
    /// `(tenant, before)`.
    pub tenants: Vec<(String, i64)>,
    /// `(tenant, kid)`.
    pub kids: Vec<(String, String)>,
}

#[derive(Debug, Default)]
struct Sets {
    jtis: DashMap<(String, String), i64>,
    subjects: DashMap<(String, String), i64>,
    tenants: DashMap<String, i64>,
    kids: DashMap<(String, String), ()>,
}

/// The in-memory revocation state.
#[derive(Debug, Default)]
pub struct Revocations {
    sets: ArcSwap<Sets>,
    cursor: AtomicU64,
    epoch: Mutex<Option<String>>,
    synced: AtomicBool,
    /// Set once anything is held, so the common case (nothing revoked) costs one load.
    any: AtomicBool,
}

fn watermark<K: std::hash::Hash + Eq>(map: &DashMap<K, i64>, key: K, before: i64, lower: bool) {
    if lower {
        if before <= 0 {
            map.remove(&key);
        } else {
            map.insert(key, before);
        }
    } else {
        let mut slot = map.entry(key).or_insert(before);
        *slot = (*slot).max(before);
    }
}

impl Sets {
    fn apply(&self, e: &RevocationEvent, now: i64) {
        match (&e.jti, e.exp, &e.subject, e.before, &e.kid) {
            (Some(jti), Some(exp), _, _, _) if exp >= now => {
                self.jtis.insert((e.tenant.clone(), jti.clone()), exp);
            }
            (Some(_), Some(_), _, _, _) => {}
            (None, _, Some(sub), Some(before), _) => {
                watermark(&self.subjects, (e.tenant.clone(), sub.clone()), before, e.lower)
            }
            (None, _, None, Some(before), _) => watermark(&self.tenants, e.tenant.clone(), before, e.lower),
            (_, _, _, _, Some(kid)) => {
                self.kids.insert((e.tenant.clone(), kid.clone()), ());
            }
            _ => {}
        }
    }

    fn len(&self) -> usize {
        self.jtis.len() + self.subjects.len() + self.tenants.len() + self.kids.len()
    }
}

impl Revocations {
    /// Applies one event in feed order (idempotent; events of already-expired tokens
    /// are skipped).
    pub fn apply(&self, e: &RevocationEvent, now: i64) {
        self.any.store(true, Ordering::Release);
        self.sets.load().apply(e, now);
        self.cursor.fetch_max(e.seq, Ordering::AcqRel);
    }

    /// Moves the position forward to `cursor` (a page may skip expired entries).
    pub fn advance(&self, cursor: u64) {
        self.cursor.fetch_max(cursor, Ordering::AcqRel);
    }

    /// Replaces the whole state with the feed of `epoch` read from its start up to
    /// `cursor`, at once: a request sees either the old state or the new one.
    pub fn replace(&self, epoch: &str, cursor: u64, events: &[RevocationEvent], now: i64) {
        let sets = Sets::default();
        for e in events {
            sets.apply(e, now);
        }
        self.any.store(true, Ordering::Release);
        let mut ep = self.epoch.lock().unwrap_or_else(|p| p.into_inner());
        self.sets.store(std::sync::Arc::new(sets));
        self.cursor.store(cursor, Ordering::Release);
        *ep = Some(epoch.to_owned());
    }

    /// The feed epoch and position applied so far (no epoch before the first read).
    pub fn position(&self) -> (Option<String>, u64) {
        let ep = self.epoch.lock().unwrap_or_else(|p| p.into_inner());
        (ep.clone(), self.cursor.load(Ordering::Acquire))
    }

    /// The feed position applied so far.
    pub fn cursor(&self) -> u64 {
        self.cursor.load(Ordering::Acquire)
    }

    /// Records that the state matches the feed (read once since start, or restored
    /// from a fresh snapshot). It stays so: a feed that drops later leaves the last
    /// state in force.
    pub fn mark_synced(&self) {
        self.synced.store(true, Ordering::Release);
    }

    /// Whether the state was read from the feed (or a fresh snapshot) since start.
    pub fn synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    /// Refuses a revoked token.
    pub fn check(&self, t: &VerifiedToken) -> Result<(), AuthError> {
        if !self.any.load(Ordering::Acquire) {
            return Ok(());
        }
        let sets = self.sets.load();
        let tenant = &t.tenant().id;
        // A removed signing key, or a removed decryption key of a JWE.
        for kid in [t.kid(), t.encrypted().map(|e| e.kid.as_str())].into_iter().flatten() {
            if sets.kids.contains_key(&(tenant.clone(), kid.to_owned())) {
                return Err(AuthError::TokenRevoked);
            }
        }
        let c = t.claims();
        if let Some(jti) = c.str("jti") {
            if sets.jtis.contains_key(&(tenant.clone(), jti.to_owned())) {
                return Err(AuthError::TokenRevoked);
            }
        }
        // Without `iat` a token cannot show it was issued after a watermark; with
        // whole-second times, a token of the watermark's own second is refused too.
        let iat = c.iat().unwrap_or(i64::MIN);
        if sets.tenants.get(tenant).is_some_and(|b| iat <= *b) {
            return Err(AuthError::TokenRevoked);
        }
        if let Some(sub) = c.str("sub") {
            if sets.subjects.get(&(tenant.clone(), sub.to_owned())).is_some_and(|b| iat <= *b) {
                return Err(AuthError::TokenRevoked);
            }
        }
        Ok(())
    }

    /// Drops single-token entries whose token has expired.
    pub fn sweep(&self, now: i64) {
        self.sets.load().jtis.retain(|_, exp| *exp >= now);
    }

    /// Entries held (tokens, subjects, tenants, keys).
    pub fn len(&self) -> usize {
        self.sets.load().len()
    }

    /// True when nothing is revoked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The state to save, last known in sync with the feed at `synced_at`.
    pub fn snapshot(&self, synced_at: i64) -> Snapshot {
        let (epoch, cursor) = self.position();
        let sets = self.sets.load();
        let mut s = Snapshot {
            epoch,
            cursor,
            synced_at,
            jtis: sets.jtis.iter().map(|e| (e.key().0.clone(), e.key().1.clone(), *e.value())).collect(),
            subjects: sets.subjects.iter().map(|e| (e.key().0.clone(), e.key().1.clone(), *e.value())).collect(),
            tenants: sets.tenants.iter().map(|e| (e.key().clone(), *e.value())).collect(),
            kids: sets.kids.iter().map(|e| e.key().clone()).collect(),
        };
        s.jtis.sort();
        s.subjects.sort();
        s.tenants.sort();
        s.kids.sort();
        s
    }

    /// Installs a saved state (before the first read of the feed). It counts as in
    /// sync when it was in sync no longer than `max_age` seconds before `now`.
    pub fn restore(&self, s: Snapshot, now: i64, max_age: i64) -> bool {
        let mut sets = Sets::default();
        sets.jtis.extend(s.jtis.into_iter().filter(|(_, _, exp)| *exp >= now).map(|(t, j, exp)| ((t, j), exp)));
        sets.subjects.extend(s.subjects.into_iter().map(|(t, sub, b)| ((t, sub), b)));
        sets.tenants.extend(s.tenants);
        sets.kids.extend(s.kids.into_iter().map(|k| (k, ())));
        self.any.store(true, Ordering::Release);
        let mut ep = self.epoch.lock().unwrap_or_else(|p| p.into_inner());
        self.sets.store(std::sync::Arc::new(sets));
        self.cursor.store(s.cursor, Ordering::Release);
        *ep = s.epoch;
        let fresh = s.synced_at <= now && now - s.synced_at <= max_age;
        if fresh {
            self.mark_synced();
        }
        fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(seq: u64, jti: Option<&str>, exp: Option<i64>, sub: Option<&str>, before: Option<i64>) -> RevocationEvent {
        RevocationEvent {
            seq,
            tenant: "t".into(),
            jti: jti.map(Into::into),
            exp,
            subject: sub.map(Into::into),
            before,
            ..Default::default()
        }
    }

    #[test]
    fn events_apply_and_expire() {
        let r = Revocations::default();
        r.apply(&ev(1, Some("j1"), Some(200), None, None), 100);
        r.apply(&ev(2, Some("old"), Some(50), None, None), 100);
        r.apply(&ev(3, None, None, Some("s"), Some(90)), 100);
        r.apply(&ev(4, None, None, Some("s"), Some(80)), 100);
        r.apply(&RevocationEvent { seq: 5, tenant: "t".into(), kid: Some("k1".into()), ..Default::default() }, 100);
        assert_eq!(r.cursor(), 5);
        assert_eq!(r.len(), 3, "expired token skipped, watermark kept at its maximum");
        assert_eq!(*r.sets.load().subjects.get(&("t".into(), "s".into())).unwrap(), 90);
        r.sweep(201);
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn watermarks_are_lowered_only_explicitly() {
        let r = Revocations::default();
        r.apply(&ev(1, None, None, None, Some(1_700_000_000_000)), 100);
        r.apply(&ev(2, None, None, None, Some(90)), 100);
        assert_eq!(*r.sets.load().tenants.get("t").unwrap(), 1_700_000_000_000, "a revoke only raises");
        r.apply(&RevocationEvent { lower: true, ..ev(3, None, None, None, Some(90)) }, 100);
        assert_eq!(*r.sets.load().tenants.get("t").unwrap(), 90, "lower sets it");
        r.apply(&RevocationEvent { lower: true, ..ev(4, None, None, Some("s"), Some(50)) }, 100);
        r.apply(&RevocationEvent { lower: true, ..ev(5, None, None, Some("s"), Some(0)) }, 100);
        r.apply(&RevocationEvent { lower: true, ..ev(6, None, None, None, Some(0)) }, 100);
        assert!(r.is_empty(), "lowered to 0: removed");
    }

    #[test]
    fn replace_swaps_the_whole_state_and_position() {
        let r = Revocations::default();
        assert_eq!(r.position(), (None, 0));
        assert!(!r.synced());
        r.apply(&ev(7, Some("gone"), Some(500), None, None), 100);
        r.replace("e2", 2, &[ev(1, Some("new"), Some(500), None, None), ev(2, None, None, None, Some(90))], 100);
        assert_eq!(r.position(), (Some("e2".into()), 2));
        let s = r.snapshot(100);
        assert_eq!(s.jtis, vec![("t".into(), "new".into(), 500)], "the old store's entries are dropped");
        assert_eq!(s.tenants, vec![("t".into(), 90)]);
    }

    #[test]
    fn snapshots_round_trip_and_count_as_synced_only_when_fresh() {
        let r = Revocations::default();
        r.replace("e1", 3, &[ev(1, Some("j"), Some(500), None, None), ev(2, None, None, Some("s"), Some(90))], 100);
        let s = r.snapshot(100);
        let json = serde_json::to_string(&s).unwrap();
        let back: Snapshot = serde_json::from_str(&json).unwrap();
        let fresh = Revocations::default();
        assert!(fresh.restore(back.clone(), 150, 60));
        assert!(fresh.synced());
        assert_eq!(fresh.snapshot(100), s);
        let stale = Revocations::default();
        assert!(!stale.restore(back.clone(), 161, 60), "older than max_age");
        assert!(!stale.synced());
        assert_eq!(stale.len(), 2, "a stale snapshot is still held (revocations are never dropped early)");
        let future = Revocations::default();
        assert!(!future.restore(Snapshot { synced_at: 200, ..back }, 150, 60), "from the future: not trusted");
    }
}
