//! The access log: one JSON line per finished request (`access_log:`), to stdout,
//! stderr or a file, never written by a proxy thread. The request's line is formatted
//! where the request ends and handed to a dedicated writer thread over a bounded
//! queue; when the queue is full the line is dropped and counted in
//! `gateway_access_log_dropped_total`, so a slow disk or a stalled pipe never slows a
//! request. The writer drains what is queued into one buffer, writes it in one go, and
//! naps a moment between batches, so under load the proxy threads rarely have to wake
//! it.
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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The longest path written, in bytes; longer ones are cut.
const MAX_PATH_BYTES: usize = 1024;
/// How long the writer naps after a batch before looking for more.
const BATCH_NAP: Duration = Duration::from_millis(2);

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
    tx: Option<SyncSender<Vec<u8>>>,
    /// Lines queued and not yet written (or counted as dropped).
    pending: Arc<AtomicUsize>,
    dropped: IntCounter,
}

impl AccessLog {
    /// Opens the target and starts the writer thread (nothing when `off`).
    pub fn start(settings: &AccessLogSettings, metrics: &Metrics) -> std::io::Result<AccessLog> {
        let out: Box<dyn Write + Send> = match &settings.target {
            AccessLogTarget::Off => {
                return Ok(AccessLog { tx: None, pending: Arc::default(), dropped: metrics.access_log_dropped.clone() })
            }
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
        let (tx, rx) = sync_channel(settings.queue);
        let pending = Arc::new(AtomicUsize::new(0));
        let writer = Writer { out, dropped: metrics.access_log_dropped.clone(), pending: pending.clone() };
        std::thread::Builder::new().name("access log writer".into()).spawn(move || writer.run(rx))?;
        Ok(AccessLog { tx: Some(tx), pending, dropped: metrics.access_log_dropped.clone() })
    }

    /// Whether lines are written at all.
    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues the record's line without blocking; a line that cannot be queued is
    /// counted as dropped.
    pub fn record(&self, r: &AccessRecord<'_>) {
        let Some(tx) = &self.tx else { return };
        let mut line = Vec::with_capacity(320);
        if serde_json::to_writer(&mut line, r).is_err() {
            self.dropped.inc();
            return;
        }
        line.push(b'\n');
        self.pending.fetch_add(1, Ordering::Relaxed);
        if tx.try_send(line).is_err() {
            self.pending.fetch_sub(1, Ordering::Relaxed);
            self.dropped.inc();
        }
    }

    /// At shutdown, after the proxy has stopped: waits up to `within` for the writer
    /// to write what is queued; what is left is counted as dropped.
    pub fn drain(&self, within: Duration) {
        let deadline = Instant::now() + within;
        while self.pending.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let lost = self.pending.load(Ordering::Acquire);
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
    pending: Arc<AtomicUsize>,
}

impl Writer {
    fn run(mut self, rx: Receiver<Vec<u8>>) {
        let mut batch: Vec<u8> = Vec::with_capacity(64 << 10);
        // Block for the first line of a burst, then take whatever else is queued, write
        // it at once, nap, and look again: a busy gateway's senders find the writer
        // awake (no wake-up per line) and the target sees few large writes.
        while let Ok(first) = rx.recv() {
            let mut next = Some(first);
            while let Some(line) = next.take() {
                batch.extend_from_slice(&line);
                let mut lines = 1;
                let mut closed = false;
                while batch.len() < 256 << 10 {
                    match rx.try_recv() {
                        Ok(line) => {
                            batch.extend_from_slice(&line);
                            lines += 1;
                        }
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => {
                            closed = true;
                            break;
                        }
                    }
                }
                self.write(&mut batch, lines);
                if closed {
                    return;
                }
                std::thread::sleep(BATCH_NAP);
                next = rx.try_recv().ok();
            }
        }
    }

    fn write(&mut self, batch: &mut Vec<u8>, lines: usize) {
        if self.out.write_all(batch).and_then(|()| self.out.flush()).is_err() {
            self.dropped.inc_by(lines as u64);
        }
        batch.clear();
        self.pending.fetch_sub(lines, Ordering::Release);
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
