//! The access log: one JSON line per finished request (`access_log:`), to stdout,
//! stderr or a file, never written by a proxy thread. A proxy thread formats its
//! request's line straight into a buffer of its own (one of a few shards, each behind
//! an uncontended lock), so a line costs no allocation and no queue hand-off. A
//! dedicated writer thread wakes every `FLUSH_INTERVAL`, swaps each shard's buffer for
//! an empty one and writes what it took in one go. A proxy thread wakes it early only
//! when its shard is half full, so a request costs no wake-up (no futex call, no
//! thread scheduled beside the proxy) however busy or idle the gateway is. Past
//! `access_log.queue` lines waiting, lines are dropped and
//! counted in `gateway_access_log_dropped_total`, so a slow disk or a stalled pipe
//! never slows a request.
//!
//! A line holds no token, no claim but the tenant, and no query string; a
//! token-shaped path segment is redacted as in the audit trail (see
//! [`gateway_core::audit::recorded_path`]).

use crate::metrics::Metrics;
use gateway_core::config::{AccessLogSettings, AccessLogTarget};
use prometheus::IntCounter;
use serde::Serialize;
use std::borrow::Cow;
use std::fs::OpenOptions;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// The longest path written, in bytes; longer ones are cut.
const MAX_PATH_BYTES: usize = 1024;
/// How long the writer naps after a batch before looking for more.
const FLUSH_INTERVAL: Duration = Duration::from_millis(50);
/// Buffers the proxy threads write into (a thread keeps one; more than the proxy's
/// threads, so two threads rarely share one).
const SHARDS: usize = 8;
/// A shard's buffer is handed back to its thread when the writer kept one larger.
const KEEP_BUFFER: usize = 256 << 10;

/// One finished request, as written.
#[derive(Debug, Serialize)]
pub struct AccessRecord<'a> {
    /// Milliseconds since the Unix epoch at the end of the request.
    pub time_ms: i64,
    /// The gateway's request id (sent upstream as `X-Request-Id`).
    pub request_id: &'a str,
    /// The client address (by the forwarding rule), absent off TCP.
    pub client_ip: Option<IpAddr>,
    /// Request method.
    pub method: &'a str,
    /// Request path without the query, token-shaped segments redacted, capped.
    pub path: &'a str,
    /// Response status (0: none was sent).
    pub status: u16,
    /// Matched route, if any.
    pub route: Option<&'a str>,
    /// Upstream pool, when the request was forwarded.
    pub upstream: Option<&'a str>,
    /// `allow` or `deny`.
    pub decision: &'a str,
    /// Refusal or failure reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
    /// The verified token's tenant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<&'a str>,
    /// Microseconds from the request's head to its end.
    pub latency_us: u64,
}

/// The path as written: the request path itself unless it needs redacting or cutting.
pub fn logged_path(path: &str) -> Cow<'_, str> {
    if path.len() <= MAX_PATH_BYTES && !path.contains("eyJ") {
        Cow::Borrowed(path)
    } else {
        Cow::Owned(gateway_core::audit::recorded_path(path, MAX_PATH_BYTES).0)
    }
}

/// Handle to the access log; cheap to call when off.
pub struct AccessLog {
    shared: Option<Arc<Shared>>,
    dropped: IntCounter,
}

/// What the proxy threads and the writer share.
struct Shared {
    shards: [Mutex<Shard>; SHARDS],
    /// Lines a shard may hold before new ones are dropped.
    shard_limit: usize,
    /// Lines the writer took and has not finished writing.
    writing: AtomicUsize,
    /// The writer is parked (or about to): the next line wakes it.
    asleep: AtomicBool,
    /// Set at shutdown: the writer writes what is left and stops.
    closing: AtomicBool,
    writer: OnceLock<Thread>,
}

/// One buffer of formatted lines.
#[derive(Default)]
struct Shard {
    buf: Vec<u8>,
    lines: usize,
}

impl Shared {
    fn wake(&self) {
        if self.asleep.load(Ordering::SeqCst) && self.asleep.swap(false, Ordering::SeqCst) {
            if let Some(t) = self.writer.get() {
                t.unpark();
            }
        }
    }

    fn queued(&self) -> usize {
        let held: usize = self.shards.iter().map(|s| lock(s).lines).sum();
        held + self.writing.load(Ordering::SeqCst)
    }
}

fn lock(shard: &Mutex<Shard>) -> std::sync::MutexGuard<'_, Shard> {
    shard.lock().unwrap_or_else(|p| p.into_inner())
}

/// The shard of the calling thread: threads are dealt shards in turn.
fn my_shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local!(static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS);
    SHARD.with(|s| *s)
}

impl AccessLog {
    /// Opens the target and starts the writer thread (nothing when `off`).
    pub fn start(settings: &AccessLogSettings, metrics: &Metrics) -> std::io::Result<AccessLog> {
        let dropped = metrics.access_log_dropped.clone();
        let out: Box<dyn Write + Send> = match &settings.target {
            AccessLogTarget::Off => return Ok(AccessLog { shared: None, dropped }),
            AccessLogTarget::Stdout => Box::new(std::io::stdout()),
            AccessLogTarget::Stderr => Box::new(std::io::stderr()),
            AccessLogTarget::File(path) => Box::new(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(|e| std::io::Error::new(e.kind(), format!("access_log.path {path}: {e}")))?,
            ),
        };
        let shared = Arc::new(Shared {
            shards: Default::default(),
            shard_limit: settings.queue.div_ceil(SHARDS).max(1),
            writing: AtomicUsize::new(0),
            asleep: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            writer: OnceLock::new(),
        });
        let writer = Writer { out, dropped: dropped.clone(), shared: shared.clone() };
        let handle = std::thread::Builder::new().name("access log writer".into()).spawn(move || writer.run())?;
        let _ = shared.writer.set(handle.thread().clone());
        Ok(AccessLog { shared: Some(shared), dropped })
    }

    /// Whether lines are written at all.
    pub fn enabled(&self) -> bool {
        self.shared.is_some()
    }

    /// Adds the record's line to this thread's buffer without blocking on the writer;
    /// a line that finds its buffer full is counted as dropped.
    pub fn record(&self, r: &AccessRecord<'_>) {
        let Some(shared) = &self.shared else { return };
        {
            let mut shard = lock(&shared.shards[my_shard()]);
            if shard.lines >= shared.shard_limit {
                drop(shard);
                self.dropped.inc();
                return;
            }
            let at = shard.buf.len();
            if serde_json::to_writer(&mut shard.buf, r).is_err() {
                shard.buf.truncate(at);
                drop(shard);
                self.dropped.inc();
                return;
            }
            shard.buf.push(b'\n');
            shard.lines += 1;
            // Early only under pressure: the writer comes by every `FLUSH_INTERVAL`.
            if shard.lines * 2 < shared.shard_limit {
                return;
            }
        }
        shared.wake();
    }

    /// At shutdown, after the proxy has stopped: waits up to `within` for the writer
    /// to write what is buffered; what is left is counted as dropped.
    pub fn drain(&self, within: Duration) {
        let Some(shared) = &self.shared else { return };
        shared.closing.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + within;
        while shared.queued() > 0 && Instant::now() < deadline {
            shared.asleep.store(true, Ordering::SeqCst);
            shared.wake();
            std::thread::sleep(Duration::from_millis(5));
        }
        let lost = shared.queued();
        if lost > 0 {
            self.dropped.inc_by(lost as u64);
            tracing::warn!(lines = lost, "access log lines still queued at exit; dropped");
        }
    }
}

/// The writer thread's end.
struct Writer {
    out: Box<dyn Write + Send>,
    dropped: IntCounter,
    shared: Arc<Shared>,
}

impl Writer {
    fn run(mut self) {
        let mut spare: Vec<u8> = Vec::new();
        loop {
            for shard in &self.shared.shards {
                let lines = {
                    let mut s = lock(shard);
                    if s.lines == 0 {
                        continue;
                    }
                    std::mem::swap(&mut s.buf, &mut spare);
                    self.shared.writing.store(s.lines, Ordering::SeqCst);
                    std::mem::take(&mut s.lines)
                };
                if self.out.write_all(&spare).and_then(|()| self.out.flush()).is_err() {
                    self.dropped.inc_by(lines as u64);
                }
                self.shared.writing.store(0, Ordering::SeqCst);
                spare.clear();
                if spare.capacity() > KEEP_BUFFER {
                    spare = Vec::new();
                }
            }
            if self.shared.closing.load(Ordering::SeqCst) && self.shared.queued() == 0 {
                return;
            }
            // Lines gather while the writer sleeps: few large writes. A shard filling
            // up (or the drain at exit) wakes it early; say so before sleeping.
            self.shared.asleep.store(true, Ordering::SeqCst);
            std::thread::park_timeout(FLUSH_INTERVAL);
            self.shared.asleep.store(false, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_redacted_and_capped_only_when_needed() {
        assert!(matches!(logged_path("/api/patients/p-1"), Cow::Borrowed("/api/patients/p-1")));
        let token_path = "/x/eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln/y";
        assert_eq!(logged_path(token_path), "/x/[token]/y");
        let long = format!("/{}", "a".repeat(2000));
        assert_eq!(logged_path(&long).len(), MAX_PATH_BYTES);
    }

    #[test]
    fn a_record_is_one_json_line_without_absent_fields() {
        let r = AccessRecord {
            time_ms: 1,
            request_id: "id",
            client_ip: Some("10.0.0.1".parse().unwrap()),
            method: "GET",
            path: "/a\"b",
            status: 200,
            route: Some("r"),
            upstream: Some("u"),
            decision: "allow",
            reason: None,
            tenant: None,
            latency_us: 7,
        };
        let line = serde_json::to_string(&r).unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["path"], "/a\"b");
        assert_eq!(v["client_ip"], "10.0.0.1");
        assert!(v.get("reason").is_none() && v.get("tenant").is_none());
    }
}
