//! A bounded cache of verified tokens keyed by the exact token string. A hit is
//! only used while the tenant's key set (and, for a JWE, decryption key set) is the
//! very one that verified it (any key refresh or removal invalidates it), and time
//! claims are re-checked on every hit.
//! A different string for the same claims (e.g. a malleated ECDSA signature) simply
//! misses and is verified in full.
//!
//! Storage is `quick_cache`'s sharded cache (CLOCK-Pro style eviction: a full cache
//! evicts cold entries one at a time, so a working set just above the capacity still
//! hits on most requests, where clearing the whole cache would miss on every one).
//! Keys are whole token strings, never just their hash, hashed with aHash keyed per
//! process (tokens are attacker-chosen). The hit path costs one hash of the token, a
//! shard read lock and two reference counts; the hit/miss counters are striped per
//! thread on separate cache lines, so proxy threads do not contend on them.

use crate::jwe::keys::DecryptionKeySet;
use crate::key::KeySet;
use crate::verify::VerifiedToken;
use quick_cache::sync::Cache;
use quick_cache::UnitWeighter;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
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
    /// `None` when the cache is off (capacity 0).
    map: Option<Cache<Box<str>, Arc<Entry>, UnitWeighter, ahash::RandomState>>,
    stripes: Box<[Stripe]>,
}

impl TokenCache {
    /// A cache holding at most `capacity` tokens (0 disables it).
    pub fn new(capacity: usize) -> Self {
        let map = (capacity > 0).then(|| {
            Cache::with(capacity, capacity as u64, UnitWeighter, ahash::RandomState::new(), Default::default())
        });
        Self { map, stripes: (0..STRIPES).map(|_| Stripe::default()).collect() }
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
        let map = self.map.as_ref()?;
        let found = map.get(token).map(|e| {
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
                map.remove(token);
                self.stripe().misses.fetch_add(1, Ordering::Relaxed);
                None
            }
            None => {
                self.stripe().misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Stores a verified token; when full, the cache evicts its coldest entries.
    pub fn insert(
        &self,
        token: &str,
        verified: Arc<VerifiedToken>,
        keys: Option<Arc<KeySet>>,
        dkeys: Option<Arc<DecryptionKeySet>>,
        now: i64,
    ) {
        let Some(map) = &self.map else { return };
        // An expired token is never served (time claims are re-checked on every hit):
        // keeping it would only take a live token's place.
        if verified.claims().exp().is_some_and(|exp| exp <= now) {
            return;
        }
        map.insert(token.into(), Arc::new(Entry { token: verified, keys, dkeys }));
    }

    /// `(hits, misses)` so far.
    pub fn stats(&self) -> (u64, u64) {
        self.stripes
            .iter()
            .fold((0, 0), |(h, m), s| (h + s.hits.load(Ordering::Relaxed), m + s.misses.load(Ordering::Relaxed)))
    }

    /// Number of cached tokens.
    pub fn len(&self) -> usize {
        self.map.as_ref().map_or(0, Cache::len)
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
