//! A bounded cache of verified tokens keyed by the exact token string. A hit is
//! only used while the tenant's key set (and, for a JWE, decryption key set) is the
//! very one that verified it (any key refresh or removal invalidates it), and time
//! claims are re-checked on every hit.
//! A different string for the same claims (e.g. a malleated ECDSA signature) simply
//! misses and is verified in full.

use crate::jwe::keys::DecryptionKeySet;
use crate::key::KeySet;
use crate::verify::VerifiedToken;
use dashmap::DashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Debug)]
struct Entry {
    token: Arc<VerifiedToken>,
    keys: Option<Arc<KeySet>>,
    dkeys: Option<Arc<DecryptionKeySet>>,
}

/// The key sets a token was checked with.
type KeySets = (Option<Arc<KeySet>>, Option<Arc<DecryptionKeySet>>);

fn same<T>(a: &Option<Arc<T>>, b: &Option<Arc<T>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        (None, None) => true,
        _ => false,
    }
}

/// The verified-token cache.
#[derive(Debug)]
pub struct TokenCache {
    map: DashMap<Box<str>, Entry>,
    capacity: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl TokenCache {
    /// A cache holding at most `capacity` tokens (0 disables it).
    pub fn new(capacity: usize) -> Self {
        Self { map: DashMap::new(), capacity, hits: AtomicU64::new(0), misses: AtomicU64::new(0) }
    }

    /// The cached token, if present and `current_keys` returns the same key sets that
    /// checked it.
    pub fn get(&self, token: &str, current_keys: impl FnOnce(&VerifiedToken) -> KeySets) -> Option<Arc<VerifiedToken>> {
        if self.capacity == 0 {
            return None;
        }
        let found = self.map.get(token).map(|e| (e.token.clone(), (e.keys.clone(), e.dkeys.clone())));
        let Some((hit, keys)) = found else {
            self.misses.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        let now_keys = current_keys(&hit);
        // A token checked with no key set at all is never served from the cache.
        let checked = keys.0.is_some() || keys.1.is_some();
        match checked && same(&now_keys.0, &keys.0) && same(&now_keys.1, &keys.1) {
            true => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(hit)
            }
            false => {
                self.map.remove(token);
                self.misses.fetch_add(1, Ordering::Relaxed);
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
        if self.map.len() >= self.capacity {
            self.map.retain(|_, e| e.token.claims().exp().is_some_and(|exp| exp > now));
            if self.map.len() >= self.capacity {
                self.map.clear();
            }
        }
        self.map.insert(token.into(), Entry { token: verified, keys, dkeys });
    }

    /// `(hits, misses)` so far.
    pub fn stats(&self) -> (u64, u64) {
        (self.hits.load(Ordering::Relaxed), self.misses.load(Ordering::Relaxed))
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
