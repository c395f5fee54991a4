//! A bounded cache of verified tokens keyed by the exact token string. A hit is
//! only used while the tenant's key set is the very one that verified it (any key
//! refresh or removal invalidates it), and time claims are re-checked on every hit.
//! A different string for the same claims (e.g. a malleated ECDSA signature) simply
//! misses and is verified in full.

use crate::key::KeySet;
use crate::verify::VerifiedToken;
use dashmap::DashMap;
use std::sync::Arc;

#[derive(Debug)]
struct Entry {
    token: Arc<VerifiedToken>,
    keys: Arc<KeySet>,
}

/// The verified-token cache.
#[derive(Debug)]
pub struct TokenCache {
    map: DashMap<Box<str>, Entry>,
    capacity: usize,
}

impl TokenCache {
    /// A cache holding at most `capacity` tokens (0 disables it).
    pub fn new(capacity: usize) -> Self {
        Self {
            map: DashMap::new(),
            capacity,
        }
    }

    /// The cached token, if present and `current_keys` returns the same key set that
    /// verified it.
    pub fn get(
        &self,
        token: &str,
        current_keys: impl FnOnce(&VerifiedToken) -> Option<Arc<KeySet>>,
    ) -> Option<Arc<VerifiedToken>> {
        if self.capacity == 0 {
            return None;
        }
        let (hit, keys) = {
            let e = self.map.get(token)?;
            (e.token.clone(), e.keys.clone())
        };
        match current_keys(&hit) {
            Some(now_keys) if Arc::ptr_eq(&now_keys, &keys) => Some(hit),
            _ => {
                self.map.remove(token);
                None
            }
        }
    }

    /// Stores a verified token; when full, expired entries go first, then everything.
    pub fn insert(&self, token: &str, verified: Arc<VerifiedToken>, keys: Arc<KeySet>, now: i64) {
        if self.capacity == 0 {
            return;
        }
        if self.map.len() >= self.capacity {
            self.map
                .retain(|_, e| e.token.claims().exp().is_some_and(|exp| exp > now));
            if self.map.len() >= self.capacity {
                self.map.clear();
            }
        }
        self.map.insert(
            token.into(),
            Entry {
                token: verified,
                keys,
            },
        );
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
