//! The request's HTTP at the edge, before any token is looked at: connection settings
//! (pipelining, idle and body timeouts), the client address and the `X-Forwarded-*`
//! values, the head limits, the header-name screen, framing, and the body limit.
//!
//! Pingora 0.9.1 parses the head itself (README, "Refusals"): past 256
//! header fields or about 1 MiB of head, or on a head it cannot parse, it answers a
//! bodiless 400 with `Connection: close` and no gateway code runs. Everything below
//! those ceilings is checked here and refused with the gateway's JSON.
//!
//! Chunked bodies are read before the upstream is chosen, into Pingora's 64 KiB retry
//! buffer, which Pingora then sends upstream itself: a chunked body that is malformed
//! or over its limit within that window never reaches an upstream. A longer chunked
//! body streams past the window (what was read is handed over in the first
//! `request_body_filter` call) and is counted as it goes; a `Content-Length` body is
//! checked against the limit up front, and Pingora reads exactly that many bytes.

use crate::metrics::Metrics;
use bytes::{Bytes, BytesMut};
use gateway_core::forwarded;
use gateway_core::header::Inbound;
use gateway_core::http_limits::{self, BodyBudget, HttpSettings};
use gateway_core::EdgeError;
use http::HeaderValue;
use pingora::prelude::*;
use std::net::IpAddr;

/// Names the gateway looks up on every request, made once (a `&str` lookup parses
/// and validates the name each time).
pub mod names {
    use http::HeaderName;
    /// `X-Forwarded-For`.
    pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
    /// `X-Forwarded-Proto`.
    pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
    /// `X-Forwarded-Host`.
    pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
    /// `X-Request-Id`.
    pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
}
use names::{X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO};

/// The forwarding headers sent upstream, as header values (cloning one is a reference
/// count, and the host is the client's own header value, not a copy).
#[derive(Debug, Clone)]
pub struct Forwarded {
    /// `X-Forwarded-For`.
    pub xff: HeaderValue,
    /// `X-Forwarded-Proto`.
    pub proto: &'static str,
    /// `X-Forwarded-Host`.
    pub host: Option<HeaderValue>,
}

/// Per-request edge state.
#[derive(Debug, Default)]
pub struct EdgeState {
    /// Forwarding headers for the upstream request.
    pub forwarded: Option<Forwarded>,
    /// Body bytes read before the upstream was chosen that Pingora's retry buffer
    /// could not hold: sent ahead of the first streamed piece.
    stash: Option<Bytes>,
    /// Running count of a chunked body streamed past the read-ahead window.
    budget: Option<BodyBudget>,
    /// The whole body was read ahead (the upstream gets no `Expect`).
    pub body_read_ahead: bool,
    /// A refusal decided while the body streamed, answered by `fail_to_proxy`.
    pub refusal: Option<EdgeError>,
}

/// Connection settings from the current config: pipelined requests are answered in
/// order (Pingora's opt-in; without it a pipelined request is dropped with the
/// connection), the keep-alive wait is bounded, and so is each body read.
pub fn connection(session: &mut Session, http: &HttpSettings) {
    session.set_pipelining_enabled(true);
    if session.get_keepalive().is_some() {
        session.set_keepalive(Some(http.idle_timeout.as_secs().max(1)));
    }
    session.set_read_timeout(Some(http.body_read_timeout));
}

/// The client address (by [`forwarded::forwarding`]) and the forwarding headers.
pub fn forwarding(session: &Session, http: &HttpSettings) -> (Option<IpAddr>, Option<Forwarded>) {
    let Some(peer) = session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip()) else {
        return (None, None);
    };
    let req = session.req_header();
    // No list to allocate for the usual request without `X-Forwarded-For`.
    let xff: Vec<&[u8]> = if req.headers.contains_key(&X_FORWARDED_FOR) {
        req.headers.get_all(&X_FORWARDED_FOR).iter().map(|v| v.as_bytes()).collect()
    } else {
        Vec::new()
    };
    let f = forwarded::forwarding(peer, &xff, &http.trusted);
    let proto = forwarded::proto(
        f.peer_trusted,
        req.headers.get(&X_FORWARDED_PROTO).map(|v| v.as_bytes()),
        session.digest().is_some_and(|d| d.ssl_digest.is_some()),
    );
    let given = req.headers.get(&X_FORWARDED_HOST);
    let host_header = req.headers.get(http::header::HOST);
    let request_host = host_header.map(|v| v.as_bytes()).or(req.uri.authority().map(|a| a.as_str().as_bytes()));
    let host = forwarded::host(f.peer_trusted, given.map(|v| v.as_bytes()), request_host).and_then(|h| {
        // The chosen value is one of the request's header values when it is that value
        // itself: share it; else (the request line's authority) copy it.
        let same = |v: &&HeaderValue| std::ptr::eq(v.as_bytes(), h.as_bytes());
        given.filter(same).or(host_header.filter(same)).cloned().or_else(|| HeaderValue::from_str(h).ok())
    });
    let xff = match f.xff {
        // Built from a `String` (no copy); the core only emits header-safe text here.
        Some(list) => HeaderValue::from_maybe_shared(Bytes::from(list)).unwrap_or_else(|_| address_value(f.client_ip)),
        None => address_value(f.client_ip),
    };
    (Some(f.client_ip), Some(Forwarded { xff, proto, host }))
}

/// An address as a header value, rendered once per address and thread: a client's
/// requests on a keep-alive connection share one value (a reference count each).
fn address_value(ip: IpAddr) -> HeaderValue {
    thread_local!(static LAST: std::cell::RefCell<Option<(IpAddr, HeaderValue)>> = const { std::cell::RefCell::new(None) });
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if let Some((_, value)) = last.as_ref().filter(|(cached, _)| *cached == ip) {
            return value.clone();
        }
        let value = HeaderValue::from_maybe_shared(Bytes::from(ip.to_string())).expect("an address is a header value");
        *last = Some((ip, value.clone()));
        value
    })
}

/// Head limits, framing and the header-name screen; removes screened headers from the
/// request (so neither the decision nor the upstream sees them).
pub fn screen(session: &mut Session, http: &HttpSettings, metrics: &Metrics) -> Result<(), EdgeError> {
    let raw = session.to_h1_raw();
    let req = session.req_header();
    http_limits::check_head(
        &http.limits,
        req.raw_path().len(),
        raw.len(),
        req.headers.len(),
        req.headers.iter().map(|(n, v)| (n.as_str().len(), v.len())),
    )?;
    http_limits::check_framing(&raw, req.headers.contains_key(http::header::TRANSFER_ENCODING))?;
    let mut remove = Vec::new();
    for name in req.headers.keys() {
        let verdict = http.inbound.inbound(name.as_str());
        if name.as_str().contains('_') {
            let action = match verdict {
                Inbound::Keep => "allow",
                Inbound::Remove => "drop",
                Inbound::Reject => "reject",
            };
            metrics.underscore_headers.with_label_values(&[action]).inc();
        }
        match verdict {
            Inbound::Keep => {}
            Inbound::Remove => remove.push(name.clone()),
            Inbound::Reject => return Err(EdgeError::HeaderInvalid),
        }
    }
    let req = session.req_header_mut();
    for name in remove {
        req.remove_header(&name);
    }
    Ok(())
}

/// Maps a body read error: `Ok` with a refusal for a malformed body or a timeout,
/// `Err` when the client is gone (nothing to answer).
fn body_error(mut e: Box<Error>) -> Result<EdgeError> {
    match downstream_refusal(&e) {
        Some(refusal) => Ok(refusal),
        None => {
            // The client's doing: `fail_to_proxy` answers nothing and blames no upstream.
            e.as_down();
            Err(e)
        }
    }
}

/// The refusal for a downstream (client) error while reading the request: a timeout
/// or broken framing; `None` when the client went away.
pub fn downstream_refusal(e: &Error) -> Option<EdgeError> {
    match e.etype() {
        ReadTimedout => Some(EdgeError::Timeout),
        InvalidHTTPHeader => Some(EdgeError::Malformed("request framing")),
        ErrorType::Custom("InvalidChunk") | ErrorType::Custom("InvalidTrailerEnd") => {
            Some(EdgeError::Malformed("chunked body"))
        }
        _ => None,
    }
}

/// The body limit: a declared `Content-Length` is checked up front; a chunked body is
/// read ahead (see the module docs). `Ok(Err)` is a refusal to answer, `Err` a client
/// that went away.
pub async fn body(session: &mut Session, limit: u64, state: &mut EdgeState) -> Result<Result<(), EdgeError>> {
    let req = session.req_header();
    let chunked = req.headers.contains_key(http::header::TRANSFER_ENCODING);
    if !chunked {
        // Pingora has validated the value; no Content-Length is no body.
        let declared = req.headers.get("content-length").and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
        return Ok(BodyBudget::new(limit).declared(declared.unwrap_or(0)));
    }
    if req.headers.get("expect").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue")) {
        session.write_continue_response().await?;
    }
    let mut budget = BodyBudget::new(limit);
    let mut read: Vec<Bytes> = Vec::new();
    session.enable_retry_buffering();
    loop {
        let piece = match session.read_request_body().await {
            Ok(p) => p,
            Err(e) => return body_error(e).map(Err),
        };
        let Some(piece) = piece else {
            // All of it is in Pingora's retry buffer, which it sends upstream itself.
            state.body_read_ahead = true;
            return Ok(Ok(()));
        };
        if let Err(e) = budget.take(piece.len()) {
            return Ok(Err(e));
        }
        read.push(piece);
        if session.retry_buffer_truncated() {
            // Past the window (a chunked piece never ends the body, so more follows):
            // stream the rest, handing over what was read first.
            let mut stash = BytesMut::with_capacity(read.iter().map(Bytes::len).sum());
            read.iter().for_each(|p| stash.extend_from_slice(p));
            state.stash = Some(stash.freeze());
            state.budget = Some(budget);
            return Ok(Ok(()));
        }
    }
}

/// One streamed body piece: prepends the read-ahead bytes to the first, and counts
/// the pieces of a chunked body past the window against its limit.
pub fn body_piece(state: &mut EdgeState, body: &mut Option<Bytes>) -> Result<(), EdgeError> {
    let fresh = body.as_ref().map_or(0, Bytes::len);
    if let Some(budget) = state.budget.as_mut() {
        budget.take(fresh)?;
    }
    if let Some(stash) = state.stash.take() {
        *body = Some(match body.take() {
            Some(b) if !b.is_empty() => {
                let mut joined = BytesMut::with_capacity(stash.len() + b.len());
                joined.extend_from_slice(&stash);
                joined.extend_from_slice(&b);
                joined.freeze()
            }
            _ => stash,
        });
    }
    Ok(())
}

/// The proxy service's connection loop: Pingora's own HTTP/1 loop (HTTP/2, offered by
/// ALPN on HTTPS listeners only, goes to Pingora's HTTP/2 loop), except that a new
/// connection's first request head is read with `http.header_read_timeout` per read
/// instead of Pingora's fixed 60 s. Later requests on the connection wait
/// `http.idle_timeout` (set per request in [`connection`]). Generic over the proxy
/// (the gateway's `crate::proxy::Gateway`), so the HTTP screening here never imports
/// the proxy that calls it.
pub struct EdgeApp<P> {
    /// The Pingora proxy.
    pub proxy: std::sync::Arc<pingora::proxy::HttpProxy<P>>,
    /// The current runtime, for the current config's timeout.
    pub rt: crate::runtime::SharedRuntime,
}

#[async_trait::async_trait]
impl<P> pingora::apps::ServerApp for EdgeApp<P>
where
    P: pingora::proxy::ProxyHttp + Send + Sync + 'static,
    P::CTX: Send + Sync,
{
    async fn process_new(
        self: &std::sync::Arc<Self>,
        stream: pingora::protocols::Stream,
        shutdown: &pingora::server::ShutdownWatch,
    ) -> Option<pingora::protocols::Stream> {
        use pingora::apps::HttpServerApp;
        use pingora::protocols::http::ServerSession;
        if matches!(stream.selected_alpn_proto(), Some(pingora::protocols::ALPN::H2)) {
            // HTTP/2 (by ALPN on an HTTPS listener): Pingora's own HTTP/2 loop, with the
            // limits set on the proxy (`tls.http2`).
            return pingora::apps::ServerApp::process_new(&self.proxy, stream, shutdown).await;
        }
        let header_read_timeout = self.rt.load().engine.config.http.header_read_timeout;
        let mut session = ServerSession::new_http1(stream);
        if *shutdown.borrow() {
            session.set_keepalive(None);
        } else {
            session.set_keepalive(Some(header_read_timeout.as_secs().max(1)));
        }
        let mut result = self.proxy.process_new_http(session, shutdown).await;
        while let Some((stream, settings)) = result.map(|r| r.consume()) {
            let mut session = ServerSession::new_http1(stream);
            if let Some(settings) = settings {
                settings.apply_to_session(&mut session);
            }
            result = self.proxy.process_new_http(session, shutdown).await;
        }
        None
    }

    async fn cleanup(&self) {
        use pingora::apps::HttpServerApp;
        self.proxy.http_cleanup().await;
    }
}
