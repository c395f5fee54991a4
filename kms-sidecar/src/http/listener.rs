//! The sidecar's HTTP listeners, each served with the same [`Limits`]: a header read
//! timeout that also closes idle keep-alive connections, a whole-request timeout
//! (408), a body size cap (413), a header size and count cap (431), and a cap on open
//! connections (further clients wait in the kernel's accept queue). HTTP/1.1 only, so
//! every limit applies to every connection.
//!
//! ```ignore
//! let listener = tokio::net::TcpListener::bind(addr).await?;
//! listener::serve(listener, http::public(state), &Limits::default(), shutdown()).await?;
//! ```

use crate::default::{
    HEADER_READ_TIMEOUT, MAX_BODY_BYTES, MAX_CONNECTIONS, MAX_HEADERS, MAX_HEADER_BYTES, REQUEST_TIMEOUT,
    SHUTDOWN_GRACE,
};
use axum::http::StatusCode;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

/// hyper's smallest connection read buffer.
const MIN_BUF: usize = 8 * 1024;

/// The limits every sidecar listener enforces (validated by the config loader).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Time to receive a request's headers; also the idle keep-alive timeout.
    pub header_read_timeout: Duration,
    /// Time for a whole request, body and handler included (408 past it).
    pub request_timeout: Duration,
    /// Largest request body (413 above it).
    pub max_body_bytes: usize,
    /// Largest start line plus headers (431 above it).
    pub max_header_bytes: usize,
    /// Most request headers (431 above it).
    pub max_headers: usize,
    /// Most open connections on one listener.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: HEADER_READ_TIMEOUT,
            request_timeout: REQUEST_TIMEOUT,
            max_body_bytes: MAX_BODY_BYTES,
            max_header_bytes: MAX_HEADER_BYTES,
            max_headers: MAX_HEADERS,
            max_connections: MAX_CONNECTIONS,
        }
    }
}

/// Serves `app` on `listener` under `limits` until `shutdown` resolves, then lets
/// in-flight requests finish for up to [`SHUTDOWN_GRACE`].
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: &Limits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let app = app
        .layer(RequestBodyLimitLayer::new(limits.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, limits.request_timeout));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(limits.max_header_bytes)
        .max_buf_size(limits.max_header_bytes.max(MIN_BUF))
        .max_headers(limits.max_headers)
        // Bodies (private JWKs among them) go to the socket from their own buffers,
        // never copied into the connection's write buffer.
        .writev(true);
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors or an aborted handshake: back off briefly.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let conn = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection closed");
            }
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await.is_err() {
        tracing::warn!("shutdown: in-flight requests dropped after the grace period");
    }
    Ok(())
}
