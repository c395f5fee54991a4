//! A bounded cache of verified tokens keyed by the exact token string. A hit is
//! only used while the tenant's key set (and, for a JWE, decryption key set) is the
//! very one that verified it (any key refresh or removal invalidates it), and time
//! claims are re-checked on every hit.
//! A different string for the same claims (e.g. a malleated ECDSA signature) simply
//! misses and is verified in full.
//!
//! The hit path costs one hash of the token (aHash, keyed with per-process random
//! keys, as the token is attacker-chosen), a shard read lock and one `Arc` clone; the
//! size bound is an atomic count (no walk of every shard per insert) and the hit/miss
//! counters are striped per thread on separate cache lines, so proxy threads do not
//! contend on them.

use crate::jwe::keys::DecryptionKeySet;
use crate::key::KeySet;
use crate::verify::VerifiedToken;
use dashmap::DashMap;
use std::sync::atomic::{AtomicIsize, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

#[derive(Debug)]
struct Entry {
    token: Arc<VerifiedToken>,
    keys: Option<Arc<KeySet>>,
    dkeys: Option<Arc<DecryptionKeySet>>,
}

/// Hit and miss counts of the threads mapped to one stripe, alone on its cache lines.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Stripe {
    hits: AtomicU64,
    misses: AtomicU64,
}

const STRIPES: usize = 16;

/// This thread's stripe: threads take stripes round-robin on first use.
fn stripe_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
    }
    INDEX.with(|i| *i)
}

/// The verified-token cache.
#[derive(Debug)]
pub struct TokenCache {
    map: DashMap<Box<str>, Entry, ahash::RandomState>,
    capacity: usize,
    /// Entries in `map`, kept beside it so an insert never walks every shard; it may
    /// drift by the few inserts racing a purge, which only moves the purge point.
    count: AtomicIsize,
    stripes: Box<[Stripe]>,
}

impl TokenCache {
    /// A cache holding at most `capacity` tokens (0 disables it).
    pub fn new(capacity: usize) -> Self {
        Self {
            map: DashMap::with_hasher(ahash::RandomState::new()),
            capacity,
            count: AtomicIsize::new(0),
            stripes: (0..STRIPES).map(|_| Stripe::default()).collect(),
        }
    }

    fn stripe(&self) -> &Stripe {
        &self.stripes[stripe_index()]
    }

    /// The cached token, if present and `is_current` says the key sets that checked it
    /// (the tenant's signing keys, and for a JWE its decryption keys) are still the
    /// tenant's current ones.
    pub fn get(
        &self,
        token: &str,
        is_current: impl FnOnce(&VerifiedToken, Option<&Arc<KeySet>>, Option<&Arc<DecryptionKeySet>>) -> bool,
    ) -> Option<Arc<VerifiedToken>> {
        if self.capacity == 0 {
            return None;
        }
        let found = self.map.get(token).map(|e| {
            // A token checked with no key set at all is never served from the cache.
            let checked = e.keys.is_some() || e.dkeys.is_some();
            (checked && is_current(&e.token, e.keys.as_ref(), e.dkeys.as_ref())).then(|| e.token.clone())
        });
        match found {
            Some(Some(hit)) => {
                self.stripe().hits.fetch_add(1, Ordering::Relaxed);
                Some(hit)
            }
            Some(None) => {
                if self.map.remove(token).is_some() {
                    self.count.fetch_sub(1, Ordering::Relaxed);
                }
                self.stripe().misses.fetch_add(1, Ordering::Relaxed);
                None
            }
            None => {
                self.stripe().misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Stores a verified token; when full, expired entries go first, then everything.
    pub fn insert(
        &self,
        token: &str,
        verified: Arc<VerifiedToken>,
        keys: Option<Arc<KeySet>>,
        dkeys: Option<Arc<DecryptionKeySet>>,
        now: i64,
    ) {
        if self.capacity == 0 {
            return;
        }
        if self.count.load(Ordering::Relaxed) >= self.capacity as isize {
            self.map.retain(|_, e| e.token.claims().exp().is_some_and(|exp| exp > now));
            if self.map.len() >= self.capacity {
                self.map.clear();
            }
            self.count.store(self.map.len() as isize, Ordering::Relaxed);
        }
        if self.map.insert(token.into(), Entry { token: verified, keys, dkeys }).is_none() {
            self.count.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `(hits, misses)` so far.
    pub fn stats(&self) -> (u64, u64) {
        self.stripes
            .iter()
            .fold((0, 0), |(h, m), s| (h + s.hits.load(Ordering::Relaxed), m + s.misses.load(Ordering::Relaxed)))
    }

    /// Number of cached tokens.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}
