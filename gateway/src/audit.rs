//! The audit trail, in two file sets so unauthenticated traffic can never push out
//! the record of an access to patient data:
//!
//! - the authenticated trail (`audit.file`): every decision about a verified token,
//!   allowed or refused (policy, revocation, lifetime, one-time use). Never sampled.
//! - the anonymous trail (`audit.anonymous.file`): public routes and refusals before
//!   any token was verified (no token, a bad one, no route). Rate-limited (a token
//!   bucket of `rate`/`burst` for refusals and another for public-route passes, so
//!   busy public probes never hide refused attempts); records left out are counted
//!   in `gateway_audit_sampled_out_total` and the next record written says how many.
//!
//! Each trail has its own bounded queue and writer thread, so a slow disk never slows
//! a request and a flood on one never fills the other's queue. A record not written
//! for any reason (queue full, write or rotation failure, larger than a file) is
//! counted in `gateway_audit_dropped_total`. Rotation by size is exact: before the
//! record that would take the file past `max_bytes`, the file becomes `file.1` (..
//! `file.N`). Files are created `0600` (and an existing one is set to it), directories
//! `0700`. The admin endpoint queries one trail's retained files by `jti`, subject,
//! tenant, request ids and time range.

use crate::metrics::Metrics;
use gateway_core::audit::{AnonymousLimit, AuditQuery, AuditRecord, Trail};
use gateway_core::config::{AuditFiles, AuditSettings};
use prometheus::IntCounter;
use std::fs::{DirBuilder, File, OpenOptions, Permissions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Handle to the audit trail.
pub struct AuditLog {
    authenticated: Sink,
    anonymous: Sink,
    /// Anonymous refusals.
    limit_refused: AnonymousLimit,
    /// Anonymous passes (public routes).
    limit_passed: AnonymousLimit,
    epoch: Instant,
    max_path_bytes: usize,
    dropped: IntCounter,
    sampled_out: IntCounter,
}

/// One trail's queue and files.
struct Sink {
    tx: SyncSender<AuditRecord>,
    /// Records queued and not yet written or counted as dropped.
    pending: Arc<AtomicUsize>,
    path: PathBuf,
    keep: usize,
}

/// Leave to write one record, from [`AuditLog::admit`].
pub struct Admission {
    trail: Trail,
    sampled_out: u64,
}

impl AuditLog {
    /// Opens (creating) both trails' files and starts their writer threads.
    pub fn start(settings: &AuditSettings, metrics: &Metrics) -> std::io::Result<AuditLog> {
        let sink = |files: &AuditFiles, name: &str| -> std::io::Result<Sink> {
            let pending = Arc::new(AtomicUsize::new(0));
            let writer = Writer::open(files, metrics.audit_written.clone(), metrics.audit_dropped.clone())?;
            let (tx, rx) = sync_channel(files.queue);
            let left = pending.clone();
            std::thread::Builder::new().name(name.into()).spawn(move || writer.run(rx, &left))?;
            Ok(Sink { tx, pending, path: PathBuf::from(&files.file), keep: files.keep })
        };
        Ok(AuditLog {
            authenticated: sink(&settings.authenticated, "audit writer")?,
            anonymous: sink(&settings.anonymous, "anonymous audit writer")?,
            limit_refused: AnonymousLimit::new(settings.anonymous_rate, settings.anonymous_burst),
            limit_passed: AnonymousLimit::new(settings.anonymous_rate, settings.anonymous_burst),
            epoch: Instant::now(),
            max_path_bytes: settings.max_path_bytes,
            dropped: metrics.audit_dropped.clone(),
            sampled_out: metrics.audit_sampled_out.clone(),
        })
    }

    /// Whether a decision is recorded: always when a verified token was involved; an
    /// anonymous one within its kind's rate limit (`refused` or not), else counted as
    /// sampled out. Called before the record is built, so a flood costs no allocation.
    pub fn admit(&self, verified: bool, refused: bool) -> Option<Admission> {
        let trail = Trail::of(verified);
        if trail == Trail::Authenticated {
            return Some(Admission { trail, sampled_out: 0 });
        }
        let limit = if refused { &self.limit_refused } else { &self.limit_passed };
        match limit.admit(self.epoch.elapsed().as_nanos() as u64) {
            Some(sampled_out) => Some(Admission { trail, sampled_out }),
            None => {
                self.sampled_out.inc();
                None
            }
        }
    }

    /// The longest recorded path, in bytes.
    pub fn max_path_bytes(&self) -> usize {
        self.max_path_bytes
    }

    /// Queues an admitted record without blocking; one that cannot be queued is counted.
    pub fn record(&self, admission: Admission, mut r: AuditRecord) {
        let sink = match admission.trail {
            Trail::Authenticated => &self.authenticated,
            Trail::Anonymous => {
                r.sampled_out = (admission.sampled_out > 0).then_some(admission.sampled_out);
                &self.anonymous
            }
        };
        sink.pending.fetch_add(1, Ordering::SeqCst);
        if sink.tx.try_send(r).is_err() {
            sink.pending.fetch_sub(1, Ordering::SeqCst);
            self.dropped.inc();
        }
    }

    /// At shutdown, after the proxy has stopped: waits up to `within` for both writers
    /// to finish what is queued; what is still queued then is counted as dropped and
    /// logged.
    pub fn drain(&self, within: Duration) {
        let deadline = Instant::now() + within;
        let queued =
            || self.authenticated.pending.load(Ordering::SeqCst) + self.anonymous.pending.load(Ordering::SeqCst);
        while queued() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let lost = queued();
        if lost > 0 {
            self.dropped.inc_by(lost as u64);
            tracing::error!(records = lost, "audit records still queued at exit; dropped");
        }
    }

    /// Matching retained records of the queried trail, newest first, at most `q.limit()`.
    pub fn query(&self, q: &AuditQuery) -> std::io::Result<Vec<AuditRecord>> {
        let sink = match q.trail.unwrap_or_default() {
            Trail::Authenticated => &self.authenticated,
            Trail::Anonymous => &self.anonymous,
        };
        let mut out = Vec::new();
        // Newest file first; within a file, lines are oldest first.
        let files = std::iter::once(sink.path.clone()).chain((1..=sink.keep).map(|i| rotated(&sink.path, i)));
        for path in files {
            let Ok(f) = File::open(&path) else { continue };
            let mut hits: Vec<AuditRecord> = BufReader::new(f)
                .lines()
                .map_while(Result::ok)
                .filter_map(|l| serde_json::from_str::<AuditRecord>(&l).ok())
                .filter(|r| q.matches(r))
                .collect();
            hits.reverse();
            out.extend(hits);
            if out.len() >= q.limit() {
                break;
            }
        }
        out.truncate(q.limit());
        Ok(out)
    }
}

/// Opens `path` for appending, created `0600`; an existing regular file is set to `0600`.
fn open_append(path: &Path) -> std::io::Result<File> {
    let file = OpenOptions::new().create(true).append(true).mode(0o600).open(path)?;
    let meta = file.metadata()?;
    if meta.is_file() && meta.permissions().mode() & 0o777 != 0o600 {
        file.set_permissions(Permissions::from_mode(0o600))?;
    }
    Ok(file)
}

fn rotated(path: &Path, i: usize) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(format!(".{i}"));
    PathBuf::from(p)
}

/// One trail's writer: appends records, rotating before the one that would not fit.
struct Writer {
    path: PathBuf,
    file: Option<File>,
    /// Bytes in the current file.
    size: u64,
    max_bytes: u64,
    keep: usize,
    written: IntCounter,
    dropped: IntCounter,
    /// Set while writes fail, so a failure is logged once, not per record.
    failing: bool,
}

impl Writer {
    fn open(files: &AuditFiles, written: IntCounter, dropped: IntCounter) -> std::io::Result<Writer> {
        let path = PathBuf::from(&files.file);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        }
        let file = open_append(&path)?;
        let size = file.metadata()?.len();
        Ok(Writer {
            path,
            file: Some(file),
            size,
            max_bytes: files.max_bytes,
            keep: files.keep,
            written,
            dropped,
            failing: false,
        })
    }

    /// Writes what arrives on `rx`; `queued` is lowered by each record once it is
    /// written or counted as dropped.
    fn run(mut self, rx: Receiver<AuditRecord>, queued: &AtomicUsize) {
        let mut buf = Vec::with_capacity(64 * 1024);
        while let Ok(first) = rx.recv() {
            let mut pending = 0;
            let batch: Vec<AuditRecord> = std::iter::once(first).chain(rx.try_iter().take(1024)).collect();
            let handled = batch.len();
            for r in batch {
                let start = buf.len();
                if serde_json::to_writer(&mut buf, &r).is_err() {
                    buf.truncate(start);
                    self.dropped.inc();
                    continue;
                }
                buf.push(b'\n');
                let line = (buf.len() - start) as u64;
                if line > self.max_bytes {
                    buf.truncate(start);
                    self.dropped.inc();
                    tracing::error!(bytes = line, "audit record larger than audit max_bytes; dropped");
                    continue;
                }
                let before = self.size + start as u64;
                if before > 0 && before + line > self.max_bytes {
                    let tail = buf.split_off(start);
                    self.flush(&mut buf, pending);
                    pending = 0;
                    if let Err(e) = self.rotate() {
                        self.dropped.inc();
                        self.failed("audit rotation failed; record dropped", &e);
                        continue;
                    }
                    buf.extend_from_slice(&tail);
                }
                pending += 1;
            }
            self.flush(&mut buf, pending);
            queued.fetch_sub(handled, Ordering::SeqCst);
        }
    }

    /// Appends `buf` (`n` records) and clears it; on failure the records are counted
    /// as dropped and the file is reopened for the next batch.
    fn flush(&mut self, buf: &mut Vec<u8>, n: u64) {
        if n == 0 {
            buf.clear();
            return;
        }
        let result = match self.file.as_mut() {
            Some(f) => f.write_all(buf),
            None => Err(std::io::Error::other("audit file not open")),
        };
        match result {
            Ok(()) => {
                self.size += buf.len() as u64;
                self.written.inc_by(n);
                if self.failing {
                    self.failing = false;
                    tracing::info!("audit writes succeed again");
                }
            }
            Err(e) => {
                self.dropped.inc_by(n);
                self.failed("audit write failed; records dropped", &e);
                // A partial write leaves the size unknown: reopen and read it back.
                self.file = open_append(&self.path).ok();
                self.size = self.file.as_ref().and_then(|f| f.metadata().ok()).map_or(self.max_bytes, |m| m.len());
            }
        }
        buf.clear();
    }

    fn failed(&mut self, what: &str, e: &std::io::Error) {
        if !self.failing {
            self.failing = true;
            tracing::error!(error = %e, path = %self.path.display(), "{what}");
        }
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        if let Some(f) = &self.file {
            f.sync_data()?;
        }
        for i in (1..self.keep).rev() {
            let from = rotated(&self.path, i);
            if from.exists() {
                std::fs::rename(&from, rotated(&self.path, i + 1))?;
            }
        }
        if self.keep > 0 {
            std::fs::rename(&self.path, rotated(&self.path, 1))?;
        } else {
            std::fs::remove_file(&self.path)?;
        }
        self.file = Some(open_append(&self.path)?);
        self.size = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(dir: &Path, queue: usize) -> (AuditLog, Metrics) {
        let files =
            |name: &str| AuditFiles { file: dir.join(name).display().to_string(), max_bytes: 1 << 20, keep: 10, queue };
        let settings = AuditSettings {
            authenticated: files("a.jsonl"),
            anonymous: files("n.jsonl"),
            anonymous_rate: 1,
            anonymous_burst: 1,
            max_path_bytes: 1024,
        };
        let metrics = Metrics::new().unwrap();
        (AuditLog::start(&settings, &metrics).unwrap(), metrics)
    }

    /// Lines in `name` and its rotated files.
    fn lines(dir: &Path, name: &str) -> u64 {
        let base = dir.join(name);
        std::iter::once(base.clone())
            .chain((1..=10).map(|i| rotated(&base, i)))
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .map(|t| t.lines().count() as u64)
            .sum()
    }

    fn record(i: usize) -> AuditRecord {
        AuditRecord { request_id: i.to_string(), subject: Some("p-1".into()), ..Default::default() }
    }

    #[test]
    fn drain_waits_for_every_queued_record() {
        let dir = tempfile::tempdir().unwrap();
        let (audit, metrics) = log(dir.path(), 100_000);
        for i in 0..20_000 {
            audit.record(audit.admit(true, false).unwrap(), record(i));
        }
        audit.drain(Duration::from_secs(10));
        assert_eq!(lines(dir.path(), "a.jsonl"), 20_000);
        assert_eq!((metrics.audit_written.get(), metrics.audit_dropped.get()), (20_000, 0));
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let (audit, metrics) = log(dir.path(), 1);
        for i in 0..20_000 {
            audit.record(audit.admit(true, false).unwrap(), record(i));
        }
        audit.drain(Duration::from_secs(10));
        let (written, dropped) = (metrics.audit_written.get(), metrics.audit_dropped.get());
        assert!(dropped > 0, "a queue of 1 under a burst of 20000");
        assert_eq!(written + dropped, 20_000);
        assert_eq!(lines(dir.path(), "a.jsonl"), written);
        // The anonymous refusals' limit (1 a second, burst 1) admits one, then counts.
        assert!(audit.admit(false, true).is_some());
        assert!(audit.admit(false, true).is_none());
        assert_eq!(metrics.audit_sampled_out.get(), 1);
        // Public-route passes have their own bucket: refusals did not use it up.
        assert!(audit.admit(false, false).is_some());
        assert!(audit.admit(false, false).is_none());
        assert_eq!(metrics.audit_sampled_out.get(), 2);
    }
}
