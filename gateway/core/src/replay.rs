//! One-time tokens: a `jti` may pass once. The store is behind a small trait whose
//! check is a future, so a shared store over the network (the kms-sidecar's
//! `/internal/v1/one-time`, or Redis `SET NX EX`) can back it when several gateways
//! run side by side without blocking a worker. Ids are keyed by tenant, issuer and
//! `jti` (never by the token string, which ECDSA malleability can change). The
//! in-memory store is sharded, keeps each entry until the token's `exp` and no longer
//! (a shard sweeps its expired entries as soon as its earliest one expires), and is
//! bounded: when full it refuses (fails closed) rather than forgetting an unexpired
//! `jti`.

use std::collections::HashMap;
use std::future::Future;
use std::hash::BuildHasher;
use std::pin::Pin;
use std::sync::Mutex;

/// What a replay check says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstUse {
    /// First time seen: recorded until `exp`.
    Yes,
    /// Seen before and not yet expired.
    Replayed,
    /// The store is full of unexpired entries; refuse rather than risk a replay.
    Full,
    /// A shared store could not answer; refuse rather than risk a replay.
    Unavailable,
}

/// What a one-time token is recorded under, and until when.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OneTimeId {
    /// Tenant id.
    pub tenant: String,
    /// The tenant's issuer.
    pub issuer: String,
    /// The token's `jti`.
    pub jti: String,
    /// Held until then (the token's `exp` plus leeway), seconds.
    pub until: i64,
}

/// A store's answer, possibly still on its way.
pub type Check<'a> = Pin<Box<dyn Future<Output = FirstUse> + Send + 'a>>;

/// A store of used one-time token ids.
pub trait ReplayStore: Send + Sync + std::fmt::Debug {
    /// Atomically records `id` until `id.until` if absent.
    fn first_use<'a>(&'a self, id: &'a OneTimeId, now: i64) -> Check<'a>;

    /// Ids held, when the store can tell cheaply (for metrics).
    fn held(&self) -> Option<usize> {
        None
    }
}

#[derive(Debug, Default)]
struct Shard {
    map: HashMap<Key, i64>,
    /// Earliest expiry among the entries (`i64::MAX` when empty).
    earliest: i64,
}

impl Shard {
    fn sweep(&mut self, now: i64) {
        self.map.retain(|_, until| *until >= now);
        self.earliest = self.map.values().copied().min().unwrap_or(i64::MAX);
    }
}

type Key = (String, String, String);

/// The in-memory replay store.
#[derive(Debug)]
pub struct MemoryReplayStore {
    shards: Vec<Mutex<Shard>>,
    per_shard: usize,
    hasher: std::collections::hash_map::RandomState,
}

impl MemoryReplayStore {
    /// A store holding at most about `capacity` unexpired ids.
    pub fn new(capacity: usize) -> Self {
        let shards = 16;
        Self {
            shards: (0..shards).map(|_| Mutex::new(Shard { map: HashMap::new(), earliest: i64::MAX })).collect(),
            per_shard: capacity.div_ceil(shards).max(1),
            hasher: Default::default(),
        }
    }

    /// Number of ids held (expired ones included until swept).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().map_or(0, |m| m.map.len())).sum()
    }

    /// True when no id is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Atomically records `(tenant, issuer, jti)` until `exp` if absent.
    pub fn record(&self, tenant: &str, issuer: &str, jti: &str, exp: i64, now: i64) -> FirstUse {
        let key = (tenant.to_owned(), issuer.to_owned(), jti.to_owned());
        let shard = &self.shards[(self.hasher.hash_one(&key) as usize) % self.shards.len()];
        let mut shard = match shard.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        if shard.earliest < now {
            shard.sweep(now);
        }
        if let Some(&until) = shard.map.get(&key) {
            if until >= now {
                return FirstUse::Replayed;
            }
        }
        if shard.map.len() >= self.per_shard {
            return FirstUse::Full;
        }
        shard.map.insert(key, exp);
        shard.earliest = shard.earliest.min(exp);
        FirstUse::Yes
    }
}

impl ReplayStore for MemoryReplayStore {
    fn first_use<'a>(&'a self, id: &'a OneTimeId, now: i64) -> Check<'a> {
        Box::pin(std::future::ready(self.record(&id.tenant, &id.issuer, &id.jti, id.until, now)))
    }

    fn held(&self) -> Option<usize> {
        Some(self.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn once_until_exp_and_namespaced() {
        let s = MemoryReplayStore::new(100);
        assert_eq!(s.record("t1", "i", "j1", 110, 100), FirstUse::Yes);
        assert_eq!(s.record("t1", "i", "j1", 110, 105), FirstUse::Replayed);
        assert_eq!(s.record("t2", "i", "j1", 110, 105), FirstUse::Yes, "other tenant");
        assert_eq!(s.record("t1", "i2", "j1", 110, 105), FirstUse::Yes, "other issuer");
        // After exp the token itself is expired; the entry may be reused/swept.
        assert_eq!(s.record("t1", "i", "j1", 200, 111), FirstUse::Yes);
    }

    #[test]
    fn bounded_and_fails_closed_but_sweeps_expired() {
        let s = MemoryReplayStore::new(16);
        let mut full = 0;
        for i in 0..64 {
            if s.record("t", "i", &format!("j{i}"), 1000, 0) == FirstUse::Full {
                full += 1;
            }
        }
        assert!(full > 0 && s.len() <= 16, "bounded: {}", s.len());
        // Once those expire, new ids fit again: memory does not grow with time.
        for i in 0..16 {
            assert_ne!(s.record("t", "i", &format!("k{i}"), 3000, 2000), FirstUse::Replayed);
        }
        assert!(s.len() <= 16);
    }

    #[test]
    fn expired_ids_are_dropped_once_they_expire_not_when_full() {
        let s = MemoryReplayStore::new(1000);
        for i in 0..100 {
            assert_eq!(s.record("t", "i", &format!("a{i}"), 110, 100), FirstUse::Yes);
        }
        assert_eq!(s.held(), Some(100));
        // Past their exp, each shard drops them on its next use.
        for i in 0..200 {
            s.record("t", "i", &format!("b{i}"), 300, 111);
        }
        assert_eq!(s.held(), Some(200), "only the unexpired ids are held");
    }

    #[test]
    fn concurrent_uses_exactly_one_wins() {
        for round in 0..50 {
            let s = Arc::new(MemoryReplayStore::new(1000));
            let jti = format!("j{round}");
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let (s, jti) = (s.clone(), jti.clone());
                    std::thread::spawn(move || s.record("t", "i", &jti, 100, 1))
                })
                .collect();
            let wins = handles.into_iter().map(|h| h.join().unwrap()).filter(|r| *r == FirstUse::Yes).count();
            assert_eq!(wins, 1);
        }
    }
}
