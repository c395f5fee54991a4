//! The key cache: each tenant's immutable key set behind its own `ArcSwap` slot,
//! read without locks on the request path and replaced whole by the refresher. The
//! refresh timing rules (max-age clamped to a floor and ceiling, bounded staleness,
//! one unknown-`kid` refetch per tenant per cooldown) are pure functions of `now`.

use crate::key::KeySet;
use arc_swap::{ArcSwap, ArcSwapOption};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

/// Refresh timing, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshPolicy {
    /// Shortest interval between scheduled refreshes.
    pub floor: i64,
    /// Longest interval between scheduled refreshes.
    pub ceiling: i64,
    /// Interval when the source gives no `max-age`.
    pub default_max_age: i64,
    /// Minimum time between two unknown-`kid` refetches of one tenant.
    pub unknown_kid_cooldown: i64,
    /// How long keys keep serving after their last successful fetch.
    pub max_stale: i64,
}

impl RefreshPolicy {
    /// The interval to wait after a successful fetch that said `max_age` (if anything).
    pub fn interval(&self, max_age: Option<i64>) -> i64 {
        max_age.unwrap_or(self.default_max_age).clamp(self.floor, self.ceiling)
    }

    /// Retry interval after the `failures`-th consecutive failed fetch: exponential
    /// from one second, capped at the floor.
    pub fn retry_interval(&self, failures: u64) -> i64 {
        (1i64 << failures.saturating_sub(1).min(10)).min(self.floor).max(1)
    }
}

/// Reads `max-age` from a `Cache-Control` value (`no-store`/`no-cache` give 0).
pub fn parse_max_age(cache_control: &str) -> Option<i64> {
    let mut out = None;
    for d in cache_control.split(',').map(str::trim) {
        let lower = d.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return Some(0);
        }
        if let Some(v) = lower.strip_prefix("max-age=") {
            out = v.trim_matches('"').parse::<i64>().ok().filter(|v| *v >= 0);
        }
    }
    out
}

/// One tenant's keys as last fetched.
#[derive(Debug)]
pub struct TenantKeys<S = KeySet> {
    /// The key set.
    pub set: Arc<S>,
    /// When it was fetched (seconds).
    pub fetched_at: i64,
}

/// Per-tenant refresh bookkeeping (atomics, so the request path never locks).
#[derive(Debug, Default)]
struct FetchState {
    next_refresh_at: AtomicI64,
    last_forced_at: AtomicI64,
    in_flight: AtomicBool,
    failures: AtomicU64,
}

/// The cache of every tenant's keys: public verification keys (`KeySet`) or, with
/// the same refresh rules, private decryption keys (`DecryptionKeySet`).
#[derive(Debug)]
pub struct KeyStore<S = KeySet> {
    /// One slot per configured tenant, so installing one tenant's keys is O(1) (a
    /// whole-map copy per install made a refresh of every tenant quadratic).
    slots: HashMap<String, ArcSwapOption<TenantKeys<S>>, ahash::RandomState>,
    /// Keys installed for a tenant that is not configured (kept as before, rare).
    others: ArcSwap<HashMap<String, Arc<TenantKeys<S>>, ahash::RandomState>>,
    state: HashMap<String, FetchState>,
    policy: RefreshPolicy,
}

/// A guard for one in-flight fetch; dropping it releases the tenant's slot.
#[derive(Debug)]
pub struct FetchSlot<'a> {
    state: &'a FetchState,
}

impl Drop for FetchSlot<'_> {
    fn drop(&mut self) {
        self.state.in_flight.store(false, Ordering::Release);
    }
}

impl<S> KeyStore<S> {
    /// An empty store for these tenant ids.
    pub fn new<'a>(tenants: impl IntoIterator<Item = &'a str>, policy: RefreshPolicy) -> Self {
        let state: HashMap<String, FetchState> =
            tenants.into_iter().map(|t| (t.to_owned(), FetchState::default())).collect();
        Self {
            slots: state.keys().map(|t| (t.clone(), ArcSwapOption::empty())).collect(),
            others: ArcSwap::from_pointee(HashMap::default()),
            state,
            policy,
        }
    }

    /// The refresh policy.
    pub fn policy(&self) -> &RefreshPolicy {
        &self.policy
    }

    /// The tenant's keys if loaded and not staler than `max_stale`.
    pub fn get(&self, tenant: &str, now: i64) -> Option<Arc<S>> {
        if let Some(slot) = self.slots.get(tenant) {
            let keys = slot.load();
            let keys = keys.as_ref()?;
            return (now - keys.fetched_at <= self.policy.max_stale).then(|| keys.set.clone());
        }
        let snap = self.others.load();
        let keys = snap.get(tenant)?;
        (now - keys.fetched_at <= self.policy.max_stale).then(|| keys.set.clone())
    }

    /// Whether `set` is the tenant's current key set at `now` (what [`Self::get`]
    /// would return), without taking a reference to it.
    pub fn is_current(&self, tenant: &str, set: &Arc<S>, now: i64) -> bool {
        let fresh =
            |keys: &TenantKeys<S>| now - keys.fetched_at <= self.policy.max_stale && Arc::ptr_eq(&keys.set, set);
        match self.slots.get(tenant) {
            Some(slot) => slot.load().as_deref().is_some_and(fresh),
            None => self.others.load().get(tenant).is_some_and(|k| fresh(k)),
        }
    }

    /// The tenant's keys as last installed, stale or not.
    fn entry(&self, tenant: &str) -> Option<Arc<TenantKeys<S>>> {
        match self.slots.get(tenant) {
            Some(slot) => slot.load_full(),
            None => self.others.load().get(tenant).cloned(),
        }
    }

    fn put(&self, tenant: &str, entry: Arc<TenantKeys<S>>) {
        match self.slots.get(tenant) {
            Some(slot) => slot.store(Some(entry)),
            None => {
                self.others.rcu(|old| {
                    let mut next = HashMap::clone(old);
                    next.insert(tenant.to_owned(), entry.clone());
                    next
                });
            }
        }
    }

    /// Installs a freshly fetched set and schedules the next refresh from `max_age`.
    pub fn install(&self, tenant: &str, set: S, now: i64, max_age: Option<i64>) {
        self.put(tenant, Arc::new(TenantKeys { set: Arc::new(set), fetched_at: now }));
        if let Some(st) = self.state.get(tenant) {
            st.next_refresh_at.store(now + self.policy.interval(max_age), Ordering::Release);
            st.failures.store(0, Ordering::Release);
        }
    }

    /// Takes over `tenant`'s keys and schedule from `old` (after a config reload that
    /// kept the tenant's key source), so a reload never empties the cache.
    pub fn adopt(&self, old: &KeyStore<S>, tenant: &str) {
        let Some(entry) = old.entry(tenant) else {
            return;
        };
        self.put(tenant, entry);
        if let (Some(new), Some(prev)) = (self.state.get(tenant), old.state.get(tenant)) {
            new.next_refresh_at.store(prev.next_refresh_at.load(Ordering::Acquire), Ordering::Release);
        }
    }

    /// Records a failed fetch: the old keys stay, a retry is scheduled soon.
    pub fn record_failure(&self, tenant: &str, now: i64) {
        if let Some(st) = self.state.get(tenant) {
            let failures = st.failures.fetch_add(1, Ordering::AcqRel) + 1;
            st.next_refresh_at.store(now + self.policy.retry_interval(failures), Ordering::Release);
        }
    }

    /// Tenants whose scheduled refresh is due at `now`.
    pub fn due(&self, now: i64) -> Vec<String> {
        self.state
            .iter()
            .filter(|(_, st)| st.next_refresh_at.load(Ordering::Acquire) <= now)
            .map(|(t, _)| t.clone())
            .collect()
    }

    /// The earliest scheduled refresh of any tenant.
    pub fn next_due(&self) -> Option<i64> {
        self.state.values().map(|st| st.next_refresh_at.load(Ordering::Acquire)).min()
    }

    /// Claims the single unknown-`kid` refetch slot for `tenant`, if no fetch is in
    /// flight, the cooldown has passed and, after failed fetches, the retry backoff
    /// has too (requests never hammer a failing source); `None` otherwise.
    pub fn try_refetch(&self, tenant: &str, now: i64) -> Option<FetchSlot<'_>> {
        let st = self.state.get(tenant)?;
        let last = st.last_forced_at.load(Ordering::Acquire);
        if now - last < self.policy.unknown_kid_cooldown {
            return None;
        }
        if st.failures.load(Ordering::Acquire) > 0 && now < st.next_refresh_at.load(Ordering::Acquire) {
            return None;
        }
        if st.in_flight.swap(true, Ordering::AcqRel) {
            return None;
        }
        if st.last_forced_at.compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire).is_err() {
            st.in_flight.store(false, Ordering::Release);
            return None;
        }
        Some(FetchSlot { state: st })
    }

    /// Claims the fetch slot for a scheduled refresh (no cooldown), if none is in flight.
    pub fn try_scheduled(&self, tenant: &str) -> Option<FetchSlot<'_>> {
        let st = self.state.get(tenant)?;
        (!st.in_flight.swap(true, Ordering::AcqRel)).then_some(FetchSlot { state: st })
    }

    /// Every loaded tenant's keys (stale ones included).
    pub fn loaded(&self) -> Arc<HashMap<String, Arc<TenantKeys<S>>, ahash::RandomState>> {
        let mut all = HashMap::clone(&self.others.load());
        all.extend(self.slots.iter().filter_map(|(t, slot)| slot.load_full().map(|k| (t.clone(), k))));
        Arc::new(all)
    }

    /// Whether a fetch of the tenant's keys is in flight.
    pub fn fetching(&self, tenant: &str) -> bool {
        self.state.get(tenant).is_some_and(|st| st.in_flight.load(Ordering::Acquire))
    }

    /// Seconds since the tenant's keys were fetched, if loaded.
    pub fn age(&self, tenant: &str, now: i64) -> Option<i64> {
        self.entry(tenant).map(|k| now - k.fetched_at)
    }

    /// Consecutive failed fetches of the tenant.
    pub fn failures(&self, tenant: &str) -> u64 {
        self.state.get(tenant).map_or(0, |s| s.failures.load(Ordering::Acquire))
    }

    /// The tenants of `required` without usable keys at `now`.
    pub fn missing<'a>(&self, required: impl IntoIterator<Item = &'a str>, now: i64) -> Vec<&'a str> {
        required.into_iter().filter(|t| self.get(t, now).is_none()).collect()
    }

    /// Whether every tenant in `required` has usable keys at `now`.
    pub fn ready<'a>(&self, required: impl IntoIterator<Item = &'a str>, now: i64) -> bool {
        self.missing(required, now).is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RefreshPolicy =
        RefreshPolicy { floor: 30, ceiling: 3600, default_max_age: 300, unknown_kid_cooldown: 10, max_stale: 600 };

    #[test]
    fn max_age_parsing_and_clamping() {
        assert_eq!(parse_max_age("public, max-age=120"), Some(120));
        assert_eq!(parse_max_age("Max-Age=\"60\""), Some(60));
        assert_eq!(parse_max_age("no-store"), Some(0));
        assert_eq!(parse_max_age("public"), None);
        assert_eq!(parse_max_age("max-age=-5"), None);
        assert_eq!(POLICY.interval(Some(120)), 120);
        assert_eq!(POLICY.interval(Some(0)), 30);
        assert_eq!(POLICY.interval(Some(999_999)), 3600);
        assert_eq!(POLICY.interval(None), 300);
        assert_eq!([1, 2, 3, 4, 5, 6, 9].map(|f| POLICY.retry_interval(f)), [1, 2, 4, 8, 16, 30, 30]);
    }

    #[test]
    fn staleness_and_schedule() {
        let store = KeyStore::new(["a", "b"], POLICY);
        assert!(store.get("a", 0).is_none());
        assert_eq!(store.due(0).len(), 2);
        store.install("a", KeySet::default(), 1000, Some(60));
        assert!(store.get("a", 1000 + 600).is_some());
        assert!(store.get("a", 1000 + 601).is_none(), "too stale");
        assert_eq!(store.due(1059), vec!["b".to_string()]);
        assert!(store.due(1060).contains(&"a".to_string()));
        store.record_failure("a", 1060);
        assert!(store.get("a", 1060).is_some(), "failure keeps old keys");
        assert_eq!(store.failures("a"), 1);
        assert!(store.ready(["a"], 1100));
        assert!(!store.ready(["a", "b"], 1100));
    }

    /// Configured tenants have their own slots; keys for any other id still install.
    #[test]
    fn slots_and_unconfigured_tenants() {
        let store = KeyStore::new(["a"], POLICY);
        store.install("a", KeySet::default(), 1000, None);
        store.install("x", KeySet::default(), 1000, None);
        let a = store.get("a", 1000).expect("configured");
        assert!(store.get("x", 1000).is_some(), "unconfigured id kept");
        assert!(store.is_current("a", &a, 1000));
        assert!(!store.is_current("a", &a, 1000 + 601), "too stale");
        store.install("a", KeySet::default(), 1001, None);
        assert!(!store.is_current("a", &a, 1001), "replaced");
        let loaded = store.loaded();
        assert_eq!(loaded.len(), 2);
        assert_eq!(store.age("a", 1010), Some(9));
    }

    #[test]
    fn adopt_carries_keys_and_schedule_over() {
        let old = KeyStore::new(["a", "b"], POLICY);
        old.install("a", KeySet::default(), 1000, Some(60));
        let new = KeyStore::new(["a", "c"], POLICY);
        new.adopt(&old, "a");
        new.adopt(&old, "b");
        assert!(new.get("a", 1000).is_some());
        assert!(new.get("b", 1000).is_none() && new.get("c", 1000).is_none());
        assert_eq!(new.due(1059), vec!["c".to_string()]);
    }

    #[test]
    fn unknown_kid_refetch_is_gated() {
        let store: KeyStore = KeyStore::new(["a"], POLICY);
        let slot = store.try_refetch("a", 100).expect("first refetch allowed");
        assert!(store.try_refetch("a", 200).is_none(), "one in flight at a time");
        assert!(store.fetching("a"));
        drop(slot);
        assert!(!store.fetching("a"));
        assert!(store.try_refetch("a", 105).is_none(), "cooldown");
        assert!(store.try_refetch("a", 110).is_some(), "after cooldown");
        assert!(store.try_refetch("zzz", 500).is_none(), "unknown tenant never fetches");
    }

    /// After failed fetches an unknown-`kid` refetch also waits out the retry
    /// backoff (1 s, 2 s, 4 s ... capped at the floor), even with no cooldown.
    #[test]
    fn unknown_kid_refetch_waits_out_the_failure_backoff() {
        let policy = RefreshPolicy { unknown_kid_cooldown: 0, ..POLICY };
        let store: KeyStore = KeyStore::new(["a"], policy);
        assert!(store.try_refetch("a", 100).is_some());
        store.record_failure("a", 100);
        assert!(store.try_refetch("a", 100).is_none(), "backoff after one failure");
        assert!(store.try_refetch("a", 101).is_some(), "1 s later");
        store.record_failure("a", 101);
        assert!(store.try_refetch("a", 102).is_none(), "2 s backoff");
        assert!(store.try_refetch("a", 103).is_some());
        for f in 3..=12 {
            store.record_failure("a", 1000);
            assert_eq!(store.failures("a"), f);
        }
        assert!(store.try_refetch("a", 1029).is_none(), "capped at the floor, not shorter");
        assert!(store.try_refetch("a", 1030).is_some());
        store.install("a", KeySet::default(), 1030, None);
        assert!(store.try_refetch("a", 1030).is_some(), "a success clears the backoff");
    }
}
