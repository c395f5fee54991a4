//! The Pingora `ProxyHttp` glue. Each phase makes a few calls into `gateway-core`:
//! `request_filter` screens the request's HTTP (`crate::edge`), decides, and answers
//! refusals itself, `request_body_filter` keeps a streamed body within its limit,
//! `upstream_peer` picks a peer from the prebuilt pool, `upstream_request_filter`
//! applies the header plan and the forwarding headers, `fail_to_proxy` turns upstream
//! failures into JSON 502/503/504s (and a client's broken or stalled body into its
//! 4xx), and `logging` records metrics, the access log line (without token content)
//! and the audit record.
//!
//! The request path allocates little: the route travels as the core's `Arc<Route>`,
//! metric label handles are resolved once per route and runtime
//! ([`crate::metrics::RouteMetrics`]), and header values move into the upstream
//! request as shared bytes (the token's identity headers are made once per token).

use crate::access_log::{logged_path, AccessLog, AccessRecord};
use crate::audit::AuditLog;
use crate::clock::now;
use crate::edge::{self, EdgeState};
use crate::metrics::Metrics;
use crate::runtime::{Runtime, SharedRuntime};
use crate::traffic::Early;
use async_trait::async_trait;
use bytes::Bytes;
use gateway_core::audit::{AuditRecord, Finished};
use gateway_core::header::HeaderPlan;
use gateway_core::request_id::{client_request_id, RequestId, RequestIds};
use gateway_core::route::Route;
use gateway_core::{Allowed, Decision, Denial, EdgeError, Refusal, UpstreamError, VerifiedToken};
use http::HeaderValue;
use pingora::prelude::*;
use pingora::proxy::FailToProxy;
use std::net::IpAddr;
use std::sync::{Arc, LazyLock};
use std::time::Instant;

/// The gateway proxy.
pub struct Gateway {
    /// The current runtime (engine, pools, fetcher), swapped on reload.
    pub rt: SharedRuntime,
    /// Metrics.
    pub metrics: Metrics,
    /// Audit trail, when configured.
    pub audit: Option<Arc<AuditLog>>,
    /// The access log (a no-op when off).
    pub access_log: Arc<AccessLog>,
}

/// Per-request state, boxed: Pingora moves the context with the request's future
/// (several times per request), and a pointer is cheaper to move than the state.
pub struct Ctx(Box<State>);

impl std::ops::Deref for Ctx {
    type Target = State;
    fn deref(&self) -> &State {
        &self.0
    }
}

impl std::ops::DerefMut for Ctx {
    fn deref_mut(&mut self) -> &mut State {
        &mut self.0
    }
}

/// What the gateway keeps of one request.
pub struct State {
    rt: Arc<Runtime>,
    started: Instant,
    /// The matched route, if any.
    route: Option<Arc<Route>>,
    /// The request was allowed: it goes to the route's upstream.
    forwarded: bool,
    /// The header edits of an allowed request (shared lists: nothing built per request).
    headers: Option<HeaderPlan>,
    reason: Option<&'static str>,
    token: Option<Arc<VerifiedToken>>,
    /// The gateway's own id of this request (forwarded upstream as `X-Request-Id`).
    request_id: RequestId,
    /// The client's `X-Request-Id`, when short and plain: audited, not forwarded.
    client_request_id: Option<String>,
    /// Peers tried so far, by [`crate::upstream::backend_id`] (inline: no allocation unless
    /// retried more than once, and small: the context is moved with every request).
    tried: smallvec::SmallVec<[u64; 2]>,
    /// The client address by the one rule of `gateway_core::forwarded` (the TCP peer
    /// unless it is a trusted proxy); `None` only off TCP.
    client_ip: Option<IpAddr>,
    /// Forwarding headers and body state of the request's HTTP.
    edge: EdgeState,
}

impl State {
    /// The upstream pool name, once the request is allowed.
    fn upstream(&self) -> Option<&str> {
        self.route.as_deref().filter(|_| self.forwarded).map(|r| r.upstream.as_str())
    }
}

/// The process's request ids: a counter after the process start time in nanoseconds.
static REQUEST_IDS: LazyLock<RequestIds> = LazyLock::new(|| RequestIds::new(crate::clock::unix_nanos()));

/// The client's `X-Request-Id` when short and plain. It is audited beside the
/// gateway's own id (made in `new_ctx`), never used in its place: clients can repeat one.
fn client_request_id_header(session: &Session) -> Option<String> {
    let given = session.req_header().headers.get(&edge::names::X_REQUEST_ID)?;
    client_request_id(given.as_bytes()).map(str::to_owned)
}

impl Gateway {
    async fn decide(&self, rt: &Runtime, session: &Session) -> Result<Allowed, Refusal> {
        let req = session.req_header();
        let method = req.method.as_str();
        let path = req.uri.path();
        // Almost every request has at most one `Authorization` line: no allocation for it.
        let all = req.headers.get_all(http::header::AUTHORIZATION);
        let mut lines = all.iter();
        let (one, many): ([&[u8]; 1], Vec<&[u8]>);
        let auth: &[&[u8]] = match (lines.next(), lines.next()) {
            (None, _) => &[],
            (Some(v), None) => {
                one = [v.as_bytes()];
                &one
            }
            _ => {
                many = all.iter().map(|v| v.as_bytes()).collect();
                &many
            }
        };
        let started = Instant::now();
        let outcome = rt.engine.authenticate(method, path, auth, now, rt.fetcher.as_ref()).await;
        if let Some(t) = outcome.as_ref().ok().and_then(Decision::token) {
            let alg = t.alg().map_or("unsigned", |a| a.as_str());
            self.metrics.verify_seconds(alg, started.elapsed().as_secs_f64());
        }
        match crate::traffic::token_limits(rt, outcome?, &self.metrics)? {
            Decision::Allowed(allowed) => Ok(allowed),
            Decision::OneTime(once) => {
                let started = Instant::now();
                let outcome = rt.engine.admit(once, now()).await;
                let result = match &outcome {
                    Ok(_) => "first",
                    Err(r) => r.denial.response().reason,
                };
                let elapsed = started.elapsed().as_secs_f64();
                self.metrics.one_time_checks.with_label_values(&[result]).observe(elapsed);
                outcome
            }
        }
    }
}

/// Answers a refusal of the request's HTTP and closes the connection: a client that
/// sent it is broken or hostile, and what follows on the connection is not trusted.
async fn refuse_edge(session: &mut Session, ctx: &mut Ctx, e: EdgeError) -> Result<bool> {
    let denial = Denial::from(e);
    let r = denial.response();
    ctx.reason = Some(r.reason);
    session.set_keepalive(None);
    write_json(session, ctx, r.status, &[], denial.body()).await?;
    Ok(true)
}

/// Answers a refusal of the decision (or of a limit or preflight before it) and
/// counts a refused token against its client address.
async fn refuse(session: &mut Session, ctx: &mut Ctx, refusal: Refusal) -> Result<bool> {
    let r = refusal.denial.response();
    ctx.route = refusal.route;
    ctx.reason = Some(r.reason);
    ctx.token = refusal.token;
    crate::traffic::count_refusal(&ctx.rt, r.status, r.reason, ctx.client_ip);
    // A 429's `Retry-After` and `RateLimit` fields, or a 401/403's challenge (no
    // allocation for the latter).
    let limited = crate::traffic::refusal_headers(&refusal.denial);
    let limited: Vec<(&'static str, &str)> = limited.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let challenge = r.www_authenticate.map(|w| ("www-authenticate", w));
    let extra = if limited.is_empty() { challenge.as_slice() } else { &limited };
    // An unread body is not drained for a refusal: the connection closes.
    if !session.is_body_done() {
        session.set_keepalive(None);
    }
    write_json(session, ctx, r.status, extra, refusal.denial.body()).await?;
    Ok(true)
}

/// The gateway's own JSON answer. Its header names are lower case already, so the
/// head is built without Pingora's case-preserving name map.
async fn write_json(
    session: &mut Session,
    ctx: &Ctx,
    status: u16,
    extra: &[(&'static str, &str)],
    body: String,
) -> Result<()> {
    let mut resp = ResponseHeader::build_no_case(status, Some(9))?;
    crate::tls::redirect::add_hsts(session, &mut resp)?;
    resp.insert_header("content-type", "application/json")?;
    resp.insert_header("cache-control", "no-store")?;
    resp.insert_header("content-length", body.len())?;
    for (k, v) in extra {
        resp.insert_header(*k, *v)?;
    }
    crate::traffic::own_answer(&mut resp, &ctx.rt, ctx.route.as_ref(), session.req_header())?;
    // An answer to HEAD has no content (its Content-Length is what GET would get); over
    // HTTP/2 a body after it would end the stream with an error instead of the answer.
    if session.req_header().method == http::Method::HEAD {
        return session.write_response_header(Box::new(resp), true).await;
    }
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(Bytes::from(body)), true).await
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = Ctx;

    /// No downstream modules: the gateway does not compress answers, and Pingora's
    /// default (a disabled compression module) costs a context and its calls on every
    /// request.
    fn init_downstream_modules(&self, _modules: &mut pingora::modules::http::HttpModules) {}

    fn new_ctx(&self) -> Ctx {
        Ctx(Box::new(State {
            rt: self.rt.load_full(),
            started: Instant::now(),
            route: None,
            forwarded: false,
            headers: None,
            reason: None,
            token: None,
            request_id: REQUEST_IDS.next(),
            client_request_id: None,
            tried: smallvec::SmallVec::new(),
            client_ip: None,
            edge: EdgeState::default(),
        }))
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let rt = ctx.rt.clone();
        let http = &rt.engine.config.http;
        edge::connection(session, http);
        // Read what the gateway uses of the client's headers, then screen them.
        ctx.client_request_id = client_request_id_header(session);
        (ctx.client_ip, ctx.edge.forwarded) = edge::forwarding(session, http);
        if let Err(e) = edge::screen(session, http, &self.metrics) {
            return refuse_edge(session, ctx, e).await;
        }
        match crate::traffic::before_decision(&rt, session, ctx.client_ip, &self.metrics) {
            None => {}
            Some(Early::Preflight(cors, route)) => {
                return crate::traffic::answer_preflight(session, &rt, cors, route).await.map(|_| true)
            }
            Some(Early::Refuse(refusal)) => return refuse(session, ctx, refusal).await,
        }
        if !session.is_body_empty() {
            let req = session.req_header();
            let route = rt.engine.config.router.find(req.method.as_str(), req.uri.path()).ok();
            let limit = route.and_then(|m| m.route().max_body_bytes).unwrap_or(http.limits.max_body_bytes);
            if let Err(e) = edge::body(session, limit, &mut ctx.edge).await? {
                return refuse_edge(session, ctx, e).await;
            }
        }
        match self.decide(&rt, session).await {
            Ok(allowed) => {
                ctx.route = Some(allowed.permit.route().route().clone());
                ctx.forwarded = true;
                ctx.token = allowed.permit.token().cloned();
                ctx.headers = Some(allowed.headers);
                Ok(false)
            }
            Err(refusal) => refuse(session, ctx, refusal).await,
        }
    }

    async fn response_filter(&self, session: &mut Session, resp: &mut ResponseHeader, ctx: &mut Ctx) -> Result<()> {
        crate::traffic::upstream_answer(resp, &ctx.rt, ctx.route.as_ref(), session.req_header())?;
        crate::tls::redirect::add_hsts(session, resp)
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let name = ctx.upstream().unwrap_or_default();
        let pool = ctx.rt.pools.get(name).ok_or_else(|| Error::explain(HTTPStatus(502), "unknown upstream"))?;
        match pool.peer(&ctx.tried) {
            Some((id, peer)) => {
                ctx.tried.push(id);
                Ok(Box::new(peer))
            }
            None => {
                ctx.reason = Some(Denial::from(UpstreamError::Unavailable).reason());
                Err(Error::explain(HTTPStatus(503), "no healthy upstream peer"))
            }
        }
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        let retries = ctx.upstream().and_then(|n| ctx.rt.pools.get(n)).map_or(0, |p| p.settings.retries);
        if ctx.tried.len() <= retries {
            e.set_retry(true);
        }
        e
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        use edge::names::{X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO, X_REQUEST_ID};
        let plan = ctx.headers.as_ref();
        let identity = plan.map_or(&[][..], |plan| &plan.set[..]);
        let request_id = HeaderValue::from_bytes(ctx.request_id.as_bytes())
            .map_err(|_| Error::explain(InternalError, "request id is not a header value"))?;
        // Pingora runs this filter again on a fresh copy for each retry: values are
        // cloned (a reference count), not taken.
        let forwarded = ctx.edge.forwarded.as_ref();
        let body_read_ahead = ctx.edge.body_read_ahead;
        edit_request(upstream_request, 4 + identity.len(), |h| {
            if let Some(plan) = plan {
                crate::traffic::remove_named(h, &plan.remove);
            }
            h.try_insert(X_REQUEST_ID.clone(), request_id)?;
            if let Some(f) = forwarded {
                h.try_insert(X_FORWARDED_FOR.clone(), f.xff.clone())?;
                h.try_insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(f.proto))?;
                if let Some(host) = &f.host {
                    h.try_insert(X_FORWARDED_HOST.clone(), host.clone())?;
                }
            }
            if body_read_ahead {
                // The whole body is in hand: the upstream has nothing to wait for.
                h.remove(http::header::EXPECT);
            }
            // The mapped identity headers, made once per token.
            for (name, value) in identity {
                h.try_insert(name.clone(), value.clone())?;
            }
            Ok(())
        })
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<()> {
        edge::body_piece(&mut ctx.edge, body).map_err(|e| {
            ctx.edge.refusal = Some(e);
            Error::explain(HTTPStatus(Denial::from(e).response().status), "request body refused")
        })
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        // A body refused while it streamed, or a client's broken framing or timeout,
        // is the client's 4xx, never an upstream error or silence.
        let edge = ctx
            .edge
            .refusal
            .take()
            .or_else(|| (*e.esource() == ErrorSource::Downstream).then(|| edge::downstream_refusal(e)).flatten());
        if let Some(refusal) = edge {
            let denial = Denial::from(refusal);
            ctx.reason = Some(denial.reason());
            session.set_keepalive(None);
            if session.response_written().is_none() {
                let _ = write_json(session, ctx, denial.response().status, &[], denial.body()).await;
            }
            return FailToProxy { error_code: denial.response().status, can_reuse_downstream: false };
        }
        let failure = match e.etype() {
            HTTPStatus(503) => UpstreamError::Unavailable,
            _ if *e.esource() == ErrorSource::Downstream => UpstreamError::Client,
            ConnectTimedout | ReadTimedout | WriteTimedout => UpstreamError::Timeout,
            HTTPStatus(code) if *code < 500 => UpstreamError::BadRequest(*code),
            TLSHandshakeFailure | InvalidCert => UpstreamError::Tls,
            _ if crate::tls::upstream::failed_in_tls(e) => UpstreamError::Tls,
            _ => UpstreamError::Failed,
        };
        let denial = Denial::from(failure);
        let status = denial.response().status;
        ctx.reason = Some(denial.reason());
        if status > 0 {
            let body = denial.body();
            // The connection is not reused after a proxy failure: say so, so clients do not
            // send their next request into a closing socket. Pingora writes the
            // `Connection` header from its keep-alive state, so that state is what to set.
            session.set_keepalive(None);
            let _ = write_json(session, ctx, status, &[], body).await;
        }
        FailToProxy { error_code: status, can_reuse_downstream: false }
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Ctx) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let denied = ctx.reason.is_some() && !ctx.forwarded;
        let elapsed = ctx.started.elapsed();
        self.count(ctx, status, denied, elapsed);
        if self.access_log.enabled() {
            let path = logged_path(session.req_header().uri.path());
            self.access_log.record(&access_record(session, ctx, &path, status, denied, elapsed));
        }
        if let Some(audit) = &self.audit {
            audit_request(audit, session, ctx, status, denied);
        }
    }
}

/// Edits `req`'s header map directly, with room for `extra` more headers, and leaves
/// it without Pingora's case-preserving name map; its target (as received, when the
/// URI does not reproduce it) and HTTP/2 end-of-stream flag are kept.
///
/// Pingora sizes a parsed head's maps to exactly what it read and keeps the name map
/// beside the value map, so every header the gateway added grew both, and its
/// `insert_header` parses the name again each time. Here names are the prebuilt
/// `HeaderName`s, inserted as they are. Over HTTP/1 the upstream then gets canonical
/// names (the common ones in title case, the others in lower case), as HAProxy and
/// Envoy send them.
fn edit_request(
    req: &mut RequestHeader,
    extra: usize,
    edit: impl FnOnce(&mut http::HeaderMap) -> Result<(), http::header::MaxSizeReached>,
) -> Result<()> {
    let end_stream = req.send_end_stream();
    let raw = req.raw_path();
    let verbatim = (Some(raw) != req.uri.path_and_query().map(|p| p.as_str().as_bytes())).then(|| raw.to_vec());
    // An empty head allocates nothing: it only holds the place while the parts move.
    let placeholder = RequestHeader::from(http::Request::new(()).into_parts().0);
    let mut parts: http::request::Parts = std::mem::replace(req, placeholder).into();
    parts.headers.reserve(extra);
    let edited = edit(&mut parts.headers);
    *req = RequestHeader::from(parts);
    edited.map_err(|_| Error::explain(InvalidHTTPHeader, "too many upstream request headers"))?;
    if let Some(raw) = verbatim {
        req.set_raw_path(&raw)?;
    }
    if let Some(end_stream) = end_stream {
        req.set_send_end_stream(end_stream);
    }
    Ok(())
}

/// Hands the request to the audit trail, when the trail admits it (the record is
/// built by the core's `AuditRecord::of`).
fn audit_request(audit: &AuditLog, session: &Session, ctx: &mut Ctx, status: u16, denied: bool) {
    let token = ctx.token.take();
    let Some(admission) = audit.admit(token.is_some(), denied) else {
        return;
    };
    let req = session.req_header();
    let finished = Finished {
        time_ms: crate::clock::unix_ms(),
        request_id: ctx.request_id.as_str(),
        client_request_id: ctx.client_request_id.as_deref(),
        client_ip: ctx.client_ip,
        token: token.as_deref(),
        role_claim: &ctx.rt.engine.config.role_claim,
        route: ctx.route.as_deref().map(|r| r.name.as_str()),
        method: req.method.as_str(),
        path: req.uri.path(),
        max_path: audit.max_path_bytes(),
        denied,
        reason: ctx.reason,
        status,
        upstream: ctx.upstream(),
        latency_us: ctx.started.elapsed().as_micros() as u64,
    };
    audit.record(admission, AuditRecord::of(&finished));
}

impl Gateway {
    /// The request's metrics: its route's request and upstream latency series, and the
    /// refusal or failure reason.
    fn count(&self, ctx: &Ctx, status: u16, denied: bool, elapsed: std::time::Duration) {
        let handles = ctx.rt.route_metrics(ctx.route.as_ref());
        handles.request(status, denied);
        if let Some(reason) = ctx.reason {
            self.metrics.denials.with_label_values(&[reason]).inc();
        }
        if ctx.forwarded {
            handles.upstream_seconds(elapsed.as_secs_f64());
        }
    }
}

/// The access log line of a finished request (no token content).
fn access_record<'a>(
    session: &'a Session,
    ctx: &'a Ctx,
    path: &'a str,
    status: u16,
    denied: bool,
    elapsed: std::time::Duration,
) -> AccessRecord<'a> {
    let req = session.req_header();
    AccessRecord {
        time_ms: crate::clock::unix_ms(),
        request_id: ctx.request_id.as_str(),
        client_ip: ctx.client_ip,
        method: req.method.as_str(),
        path,
        status,
        route: ctx.route.as_deref().map(|r| r.name.as_str()),
        upstream: ctx.upstream(),
        decision: if denied { "deny" } else { "allow" },
        reason: ctx.reason,
        tenant: ctx.token.as_ref().map(|t| t.tenant().id.as_str()),
        latency_us: elapsed.as_micros() as u64,
    }
}
