//! The decryption-key cache: every tenant's private decryption keys in the same
//! lock-free, refresh-scheduled [`KeyStore`] as the public keys, plus a `kid` → tenant
//! index so a JWE (whose header names only a `kid`) finds the one tenant that can
//! decrypt it. A `kid` that two tenants both claim is never used: it is ambiguous
//! and refused, so one tenant can never decrypt (or be tricked into decrypting) what
//! was meant for another.

use super::keys::DecryptionKeySet;
use crate::keystore::{KeyStore, RefreshPolicy};
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Who owns a `kid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KidOwner {
    /// Exactly one tenant holds this `kid`.
    Tenant(Arc<str>),
    /// Several tenants claim it: refused.
    Ambiguous,
}

/// Private decryption keys of every JWE-enabled tenant.
#[derive(Debug)]
pub struct DecryptionStore {
    keys: KeyStore<DecryptionKeySet>,
    index: ArcSwap<HashMap<String, KidOwner>>,
    tenants: Vec<String>,
    rebuild: Mutex<()>,
}

impl DecryptionStore {
    /// An empty store for these JWE-enabled tenants.
    pub fn new<'a>(tenants: impl IntoIterator<Item = &'a str>, policy: RefreshPolicy) -> Self {
        let tenants: Vec<String> = tenants.into_iter().map(str::to_owned).collect();
        Self {
            keys: KeyStore::new(tenants.iter().map(String::as_str), policy),
            index: ArcSwap::from_pointee(HashMap::new()),
            tenants,
            rebuild: Mutex::new(()),
        }
    }

    /// The JWE-enabled tenants.
    pub fn tenants(&self) -> &[String] {
        &self.tenants
    }

    /// The tenants an unknown `kid` may belong to: those whose id followed by `-` starts
    /// it (the sidecar names keys `<tenant>-enc-<random>`), else every JWE tenant. So
    /// one tenant's new key does not spend the other tenants' unknown-`kid` cooldowns.
    /// The `kid` is the client's, so this only narrows a refetch; ownership is still
    /// decided by the fetched keys alone.
    pub fn candidates(&self, kid: &str) -> Vec<&str> {
        let named: Vec<&str> = self
            .tenants
            .iter()
            .filter(|t| kid.strip_prefix(t.as_str()).is_some_and(|rest| rest.starts_with('-')))
            .map(String::as_str)
            .collect();
        if named.is_empty() {
            self.tenants.iter().map(String::as_str).collect()
        } else {
            named
        }
    }

    /// The underlying key store (schedule, refetch gating, staleness).
    pub fn store(&self) -> &KeyStore<DecryptionKeySet> {
        &self.keys
    }

    /// The JWE tenants among `required` without usable decryption keys at `now`.
    pub fn missing<'a>(&self, required: impl IntoIterator<Item = &'a str>, now: i64) -> Vec<&'a str> {
        self.keys.missing(required.into_iter().filter(|t| self.tenants.iter().any(|j| j == t)), now)
    }

    /// The tenant owning `kid`, if any.
    pub fn owner(&self, kid: &str) -> Option<KidOwner> {
        self.index.load().get(kid).cloned()
    }

    /// The tenant's decryption keys, if loaded and fresh enough.
    pub fn get(&self, tenant: &str, now: i64) -> Option<Arc<DecryptionKeySet>> {
        self.keys.get(tenant, now)
    }

    /// Installs a tenant's freshly fetched keys and re-indexes.
    pub fn install(&self, tenant: &str, set: DecryptionKeySet, now: i64, max_age: Option<i64>) {
        let _g = self.rebuild.lock().unwrap_or_else(|p| p.into_inner());
        self.keys.install(tenant, set, now, max_age);
        self.reindex();
    }

    /// Takes over a tenant's keys from the store of a previous config.
    pub fn adopt(&self, old: &DecryptionStore, tenant: &str) {
        let _g = self.rebuild.lock().unwrap_or_else(|p| p.into_inner());
        self.keys.adopt(&old.keys, tenant);
        self.reindex();
    }

    fn reindex(&self) {
        let mut index: HashMap<String, KidOwner> = HashMap::new();
        for (tenant, keys) in self.keys.loaded().iter() {
            let owner: Arc<str> = Arc::from(tenant.as_str());
            for kid in keys.set.kids() {
                index
                    .entry(kid.to_owned())
                    .and_modify(|o| *o = KidOwner::Ambiguous)
                    .or_insert_with(|| KidOwner::Tenant(owner.clone()));
            }
        }
        self.index.store(Arc::new(index));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RefreshPolicy =
        RefreshPolicy { floor: 30, ceiling: 3600, default_max_age: 300, unknown_kid_cooldown: 10, max_stale: 600 };

    fn p256_jwks(kids: &[&str]) -> DecryptionKeySet {
        use aws_lc_rs::agreement::{PrivateKey, ECDH_P256};
        use aws_lc_rs::encoding::AsBigEndian;
        let key = PrivateKey::generate(&ECDH_P256).unwrap();
        let d: aws_lc_rs::encoding::EcPrivateKeyBin = key.as_be_bytes().unwrap();
        let public = key.compute_public_key().unwrap();
        let p = public.as_ref();
        let enc = |b: &[u8]| crate::b64::encode(b);
        let keys: Vec<String> = kids
            .iter()
            .map(|kid| {
                format!(
                    r#"{{"kty":"EC","crv":"P-256","use":"enc","kid":"{kid}","x":"{}","y":"{}","d":"{}"}}"#,
                    enc(&p[1..33]),
                    enc(&p[33..]),
                    enc(d.as_ref())
                )
            })
            .collect();
        let set = DecryptionKeySet::from_jwks(format!(r#"{{"keys":[{}]}}"#, keys.join(",")).as_bytes()).unwrap();
        assert!(set.skipped.is_empty(), "{:?}", set.skipped);
        set
    }

    #[test]
    fn an_unknown_kid_narrows_its_refetch_to_the_tenants_it_names() {
        let store = DecryptionStore::new(["h1", "h2", "h2-lab"], POLICY);
        assert_eq!(store.candidates("h1-enc-0a1b"), ["h1"]);
        assert_eq!(store.candidates("h2-enc-0a1b"), ["h2"]);
        assert_eq!(store.candidates("h2-lab-enc-1"), ["h2", "h2-lab"], "both prefixes may own it");
        assert_eq!(store.candidates("h1"), ["h1", "h2", "h2-lab"], "no `<tenant>-` prefix: every tenant");
        assert_eq!(store.candidates("h1x-enc"), ["h1", "h2", "h2-lab"]);
        assert_eq!(store.candidates(""), ["h1", "h2", "h2-lab"]);
    }

    #[test]
    fn kid_index_names_one_tenant_and_refuses_shared_kids() {
        let s = DecryptionStore::new(["a", "b"], POLICY);
        s.install("a", p256_jwks(&["a-1", "shared"]), 100, None);
        s.install("b", p256_jwks(&["b-1"]), 100, None);
        assert_eq!(s.owner("a-1"), Some(KidOwner::Tenant("a".into())));
        assert_eq!(s.owner("b-1"), Some(KidOwner::Tenant("b".into())));
        assert_eq!(s.owner("nope"), None);
        assert_eq!(s.owner("shared"), Some(KidOwner::Tenant("a".into())));
        s.install("b", p256_jwks(&["b-1", "shared"]), 101, None);
        assert_eq!(s.owner("shared"), Some(KidOwner::Ambiguous), "claimed twice: never used");
        // A rotation that drops a kid drops it from the index.
        s.install("a", p256_jwks(&["a-2"]), 102, None);
        assert_eq!(s.owner("a-1"), None);
        assert_eq!(s.owner("shared"), Some(KidOwner::Tenant("b".into())));
    }

    #[test]
    fn adopt_reindexes() {
        let old = DecryptionStore::new(["a"], POLICY);
        old.install("a", p256_jwks(&["a-1"]), 100, None);
        let new = DecryptionStore::new(["a"], POLICY);
        assert_eq!(new.owner("a-1"), None);
        new.adopt(&old, "a");
        assert_eq!(new.owner("a-1"), Some(KidOwner::Tenant("a".into())));
        assert!(new.get("a", 100).is_some());
    }
}
