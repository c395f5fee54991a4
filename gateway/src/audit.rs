//! The audit trail: every decision becomes one JSON line, handed to a writer thread
//! through a bounded queue so a slow disk never slows or blocks a request (records
//! that do not fit are counted in `gateway_audit_dropped_total`, never silently
//! lost). The file rotates by size (`file.1` .. `file.N`), and the admin endpoint
//! queries the retained files by `jti`, subject, tenant and time range.

use gateway_core::audit::{AuditQuery, AuditRecord};
use gateway_core::config::AuditSettings;
use prometheus::IntCounter;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};

/// Handle to the audit trail.
pub struct AuditLog {
    tx: SyncSender<AuditRecord>,
    path: PathBuf,
    keep: usize,
    dropped: IntCounter,
}

impl AuditLog {
    /// Opens (creating) the file and starts the writer thread.
    pub fn start(settings: &AuditSettings, written: IntCounter, dropped: IntCounter) -> std::io::Result<AuditLog> {
        let path = PathBuf::from(&settings.file);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = open_append(&path)?;
        let (tx, rx) = sync_channel(settings.queue);
        let writer = Writer { path: path.clone(), file, max_bytes: settings.max_bytes, keep: settings.keep, written };
        std::thread::Builder::new().name("audit writer".into()).spawn(move || writer.run(rx))?;
        Ok(AuditLog { tx, path, keep: settings.keep, dropped })
    }

    /// Queues a record without blocking; a full queue drops it and counts the drop.
    pub fn record(&self, r: AuditRecord) {
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.tx.try_send(r) {
            self.dropped.inc();
        }
    }

    /// Matching retained records, newest first, at most `q.limit()`.
    pub fn query(&self, q: &AuditQuery) -> std::io::Result<Vec<AuditRecord>> {
        let mut out = Vec::new();
        // Newest file first; within a file, lines are oldest first.
        let files = std::iter::once(self.path.clone()).chain((1..=self.keep).map(|i| rotated(&self.path, i)));
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

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

fn rotated(path: &Path, i: usize) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(format!(".{i}"));
    PathBuf::from(p)
}

struct Writer {
    path: PathBuf,
    file: File,
    max_bytes: u64,
    keep: usize,
    written: IntCounter,
}

impl Writer {
    fn run(mut self, rx: Receiver<AuditRecord>) {
        let mut buf = Vec::with_capacity(64 * 1024);
        while let Ok(first) = rx.recv() {
            buf.clear();
            let mut n = 0;
            for r in std::iter::once(first).chain(rx.try_iter().take(1024)) {
                if serde_json::to_writer(&mut buf, &r).is_ok() {
                    buf.push(b'\n');
                    n += 1;
                }
            }
            if let Err(e) = self.file.write_all(&buf).and_then(|_| self.file.flush()) {
                tracing::error!(error = %e, "audit write failed");
                continue;
            }
            self.written.inc_by(n);
            if self.file.metadata().map(|m| m.len()).unwrap_or(0) >= self.max_bytes {
                if let Err(e) = self.rotate() {
                    tracing::error!(error = %e, "audit rotation failed");
                }
            }
        }
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.file.sync_data()?;
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
        self.file = open_append(&self.path)?;
        Ok(())
    }
}
