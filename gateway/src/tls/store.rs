//! The certificates in force, swapped as a whole: each handshake loads the current
//! set (an `ArcSwap`, no lock) and picks by server name, so a swap applies to the
//! next handshake and never to a connection already established.
//!
//! [`CertStore::refresh`] re-reads the files and swaps only when their content
//! changed and every pair passes [`cert::parse`]; otherwise the old set stays.

use super::cert::{self, CertPair};
use super::metrics::TlsMetrics;
use arc_swap::ArcSwap;
use gateway_core::config::tls::{CertificateSource, TlsSettings};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// One certificate to load: its files, server names and field path.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The files and names.
    pub source: CertificateSource,
    /// Field path in the config, e.g. `tls.certificates[1]`; also the metric label.
    pub field: String,
}

/// The listener's certificates as entries, the default first.
pub fn listener_entries(t: &TlsSettings) -> Vec<Entry> {
    let default = t.default_index();
    let mut order: Vec<usize> = vec![default];
    order.extend((0..t.certificates.len()).filter(|i| *i != default));
    order
        .into_iter()
        .map(|i| Entry { source: t.certificates[i].clone(), field: format!("tls.certificates[{i}]") })
        .collect()
}

/// A loaded set: pairs in entry order (the first is the default), the names that
/// pick them, and a digest of the file contents they came from.
pub struct Loaded {
    /// Pairs, the default first.
    pub pairs: Vec<Arc<CertPair>>,
    exact: HashMap<String, usize>,
    wildcard: HashMap<String, usize>,
    digest: u64,
}

impl Loaded {
    /// The pair for server name `sni` (exact name, then `*.` one label up), else the default.
    pub fn pick(&self, sni: Option<&str>) -> &Arc<CertPair> {
        let found = sni.map(|s| s.trim_end_matches('.').to_ascii_lowercase()).and_then(|s| {
            self.exact.get(&s).or_else(|| s.split_once('.').and_then(|(_, parent)| self.wildcard.get(parent))).copied()
        });
        &self.pairs[found.unwrap_or(0)]
    }
}

/// Certificates in force for a listener (or an upstream's client certificate).
pub struct CertStore {
    entries: Vec<Entry>,
    current: ArcSwap<Loaded>,
    metrics: OnceLock<TlsMetrics>,
    /// Digest of the last content refused (0: none), so it is reported once.
    last_refused: AtomicU64,
}

fn digest(bytes: &[cert::PairBytes]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for b in bytes {
        b.cert.hash(&mut h);
        b.key.as_slice().hash(&mut h);
    }
    h.finish()
}

/// Reads and checks every entry; every problem with its field path.
fn load_all(entries: &[Entry]) -> Result<Loaded, Vec<String>> {
    let now = cert::now();
    let mut problems = Vec::new();
    let mut bytes = Vec::new();
    let mut pairs = Vec::new();
    for e in entries {
        let (c, k) = (&e.source.cert, &e.source.key);
        match cert::read(c, k).and_then(|b| cert::parse(&b, c, k, now).map(|p| (b, p))) {
            Ok((b, p)) => {
                bytes.push(b);
                pairs.push(Arc::new(p));
            }
            Err(why) => problems.push(format!("{}: {why}", e.field)),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let (mut exact, mut wildcard) = (HashMap::new(), HashMap::new());
    for (i, e) in entries.iter().enumerate() {
        for n in &e.source.server_names {
            match n.strip_prefix("*.") {
                Some(parent) => wildcard.insert(parent.to_owned(), i),
                None => exact.insert(n.clone(), i),
            };
        }
    }
    Ok(Loaded { pairs, exact, wildcard, digest: digest(&bytes) })
}

/// What a refresh did.
#[derive(Debug, PartialEq, Eq)]
pub enum Refresh {
    /// The files are as loaded.
    Unchanged,
    /// New certificates are in force.
    Swapped,
    /// The files changed but a pair is bad: the old set stays. Holds every problem.
    Refused(String),
}

impl CertStore {
    /// Loads `entries` (the first is the default); `Err` holds every problem with its
    /// field path. With `metrics`, the expiry gauges are set.
    pub fn load(entries: Vec<Entry>, metrics: Option<TlsMetrics>) -> Result<CertStore, Vec<String>> {
        let loaded = load_all(&entries)?;
        let store = CertStore {
            entries,
            current: ArcSwap::from_pointee(loaded),
            metrics: OnceLock::new(),
            last_refused: AtomicU64::new(0),
        };
        if let Some(m) = metrics {
            store.attach(m);
        }
        Ok(store)
    }

    /// The set in force.
    pub fn current(&self) -> arc_swap::Guard<Arc<Loaded>> {
        self.current.load()
    }

    /// Re-reads the files; swaps when they changed and all are good. A bad content
    /// is reported once (not on every poll) until the files change again.
    pub fn refresh(&self) -> Refresh {
        let now = cert::now();
        let mut bytes = Vec::new();
        for e in &self.entries {
            match cert::read(&e.source.cert, &e.source.key) {
                Ok(b) => bytes.push(b),
                Err(why) => {
                    let why = format!("{}: {why}", e.field);
                    let mut h = std::collections::hash_map::DefaultHasher::new();
                    why.hash(&mut h);
                    return self.refused(h.finish(), why);
                }
            }
        }
        let d = digest(&bytes);
        if d == self.current.load().digest || d == self.last_refused.load(Ordering::Relaxed) {
            return Refresh::Unchanged;
        }
        // Parse what was read (not a second read), so the digest matches what is served.
        let mut problems = Vec::new();
        let mut pairs = Vec::new();
        for (e, b) in self.entries.iter().zip(&bytes) {
            match cert::parse(b, &e.source.cert, &e.source.key, now) {
                Ok(p) => pairs.push(Arc::new(p)),
                Err(why) => problems.push(format!("{}: {why}", e.field)),
            }
        }
        if !problems.is_empty() {
            return self.refused(d, problems.join("; "));
        }
        let old = self.current.load_full();
        self.current.store(Arc::new(Loaded {
            pairs,
            exact: old.exact.clone(),
            wildcard: old.wildcard.clone(),
            digest: d,
        }));
        self.last_refused.store(0, Ordering::Relaxed);
        self.publish_expiry();
        if let Some(m) = self.metrics.get() {
            m.reloads.with_label_values(&["ok"]).inc();
        }
        Refresh::Swapped
    }

    fn refused(&self, d: u64, why: String) -> Refresh {
        if self.last_refused.swap(d, Ordering::Relaxed) == d {
            return Refresh::Unchanged;
        }
        if let Some(m) = self.metrics.get() {
            m.reloads.with_label_values(&["error"]).inc();
        }
        Refresh::Refused(why)
    }

    fn publish_expiry(&self) {
        let Some(m) = self.metrics.get() else { return };
        for (e, p) in self.entries.iter().zip(&self.current.load().pairs) {
            m.expiry.with_label_values(&[&e.field]).set(p.not_after);
        }
    }

    /// Counts this store's reloads and publishes its expiry in `metrics` (the first
    /// call wins; a store built before the metrics existed gets them here).
    pub fn attach(&self, metrics: TlsMetrics) {
        if self.metrics.set(metrics).is_ok() {
            self.publish_expiry();
        }
    }

    /// Field paths of the entries, for log lines.
    pub fn fields(&self) -> String {
        self.entries.iter().map(|e| e.field.as_str()).collect::<Vec<_>>().join(", ")
    }
}
