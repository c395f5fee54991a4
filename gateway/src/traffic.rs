//! Edge traffic control over `gateway_core::{ratelimit, cors, response_headers}`:
//! the counters of every rate limit (`pingora-limits` estimators, kept across config
//! reloads for each limit whose definition did not change), the CORS preflight
//! answer, and the headers put on every answer, the gateway's own and the upstream's.
//!
//! Per request: [`before_decision`] answers a preflight and checks the limits known
//! without a token (the client address's, and the client's refused tokens) before
//! any signature work; [`token_limits`] checks the tenant and subject limits once the
//! token is verified (before a one-time token is used up); [`count_refusal`] counts a
//! refused token against its client address; [`own_answer`] and [`upstream_answer`]
//! set the response headers.
//!
//! A route whose limits are never hit costs one estimator update per limit (four
//! hashed atomic adds, no allocation, no lock).

use crate::metrics::Metrics;
use gateway_core::ratelimit::{self, Counters, LimitKey, Limited, Phase, RateLimit, Who};
use gateway_core::route::{NoMatch, Route};
use gateway_core::{Config, Decision, Denial, Refusal};
use http::{HeaderMap, HeaderName, HeaderValue};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora_limits::rate::Rate;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// What the traffic rules read of the current runtime: its limit state and config
/// (the runtime implements it, so this module never imports the runtime).
pub trait View {
    /// The config's limit counters and answer headers.
    fn traffic(&self) -> &Traffic;
    /// The config.
    fn config(&self) -> &Config;
}

impl<T: View> View for Arc<T> {
    fn traffic(&self) -> &Traffic {
        T::traffic(self)
    }
    fn config(&self) -> &Config {
        T::config(self)
    }
}

/// Hash functions of each limit's count-min estimator.
const HASHES: usize = 4;
/// Counters per hash function: with fewer distinct keys than this in a window, counts
/// are exact; beyond, a count can only err upwards.
const SLOTS: usize = 4096;

/// Headers to put on answers, as header names and values made once per config (the
/// config has validated both).
#[derive(Default)]
struct Answer {
    set: Vec<(HeaderName, HeaderValue)>,
    remove: Vec<String>,
}

impl Answer {
    fn of(h: &gateway_core::response_headers::ResponseHeaders) -> Answer {
        let set = h
            .set
            .iter()
            .filter_map(|(n, v)| Some((HeaderName::from_bytes(n.as_bytes()).ok()?, HeaderValue::from_str(v).ok()?)))
            .collect();
        Answer { set, remove: h.remove.clone() }
    }
}

/// One route's limit counters (by the route's limit order) and answer headers.
struct RouteState {
    rates: Vec<Arc<Rate>>,
    answer: Answer,
}

/// Rate-limit state and answer headers of one config.
pub struct Traffic {
    routes: Vec<RouteState>,
    unrouted: Answer,
    auth_failures: Option<(RateLimit, Arc<Rate>)>,
    /// Some route has a client-address limit (checked before the decision).
    client_limits: bool,
    /// Each counter by its definition (route name and limit), for the next reload.
    by_definition: HashMap<(String, RateLimit), Arc<Rate>>,
}

fn new_rate(limit: &RateLimit) -> Arc<Rate> {
    Arc::new(Rate::new_with_estimator_config(limit.window(), HASHES, SLOTS))
}

impl Traffic {
    /// The state of `config`, keeping `previous`'s counters of every limit defined
    /// the same (same route name, key, requests and window).
    pub fn build(config: &Config, previous: Option<&Traffic>) -> Traffic {
        let mut by_definition = HashMap::new();
        let mut routes = Vec::new();
        for route in config.router.routes() {
            let rates = route
                .traffic
                .rate_limits
                .iter()
                .map(|limit| {
                    let def = (route.name.clone(), limit.clone());
                    let rate =
                        previous.and_then(|p| p.by_definition.get(&def).cloned()).unwrap_or_else(|| new_rate(limit));
                    by_definition.insert(def, rate.clone());
                    rate
                })
                .collect();
            routes.push(RouteState { rates, answer: Answer::of(&route.traffic.response_headers) });
        }
        let auth_failures = config.traffic.auth_failures.as_ref().map(|limit| {
            let kept = previous.and_then(|p| p.auth_failures.as_ref()).filter(|(l, _)| l == limit);
            (limit.clone(), kept.map_or_else(|| new_rate(limit), |(_, r)| r.clone()))
        });
        Traffic {
            routes,
            unrouted: Answer::of(&config.traffic.response_headers),
            auth_failures,
            client_limits: config.router.routes().iter().any(|r| r.traffic.has_client_limit()),
            by_definition,
        }
    }
}

/// The counters of one route's limits, as the core reads them.
struct Rates<'a> {
    limits: &'a [RateLimit],
    rates: &'a [Arc<Rate>],
}

impl Counters for Rates<'_> {
    fn observe(&self, limit: usize, key: &LimitKey<'_>, events: u64) -> u64 {
        self.rates[limit].observe(key, events as isize).max(0) as u64
    }

    fn elapsed(&self, limit: usize, key: &LimitKey<'_>) -> Duration {
        let fraction = self.rates[limit].rate_with(key, |c| c.current_interval_fraction);
        self.limits[limit].window().mul_f64(fraction.clamp(0.0, 1.0))
    }
}

/// `route`'s state in `rt` (one of its routes), found by identity.
fn route_state<'a, R: View>(rt: &'a R, route: &Arc<Route>) -> Option<&'a RouteState> {
    let routes = rt.config().router.routes();
    routes.iter().position(|r| Arc::ptr_eq(r, route)).and_then(|i| rt.traffic().routes.get(i))
}

fn limited(route: Option<Arc<Route>>, l: Limited, metrics: &Metrics) -> Refusal {
    let name = route.as_deref().map_or("none", |r| r.name.as_str());
    metrics.rate_limited.with_label_values(&[name, l.kind]).inc();
    Refusal { denial: Denial::RateLimited(Box::new(l)), route, refetch: None, token: None }
}

/// What [`before_decision`] concluded.
pub enum Early {
    /// A preflight to answer `204` with these CORS headers, for this route (none: a
    /// path the global policy answers for).
    Preflight(gateway_core::cors::Headers, Option<Arc<Route>>),
    /// A refusal: a preflight not allowed, or a limit hit.
    Refuse(Refusal),
}

/// Before any token work: a CORS preflight is answered (or refused), and the limits
/// keyed by the client address are checked: the route's, and (for a request that
/// carries a token) the client's refused tokens.
pub fn before_decision(rt: &impl View, session: &Session, client: Option<IpAddr>, metrics: &Metrics) -> Option<Early> {
    let req = session.req_header();
    let config = &rt.config();
    if req.method == http::Method::OPTIONS {
        if let Some(early) = preflight(config, req) {
            return Some(early);
        }
    }
    let client = client?;
    if rt.traffic().client_limits {
        if let Ok(m) = config.router.find(req.method.as_str(), req.uri.path()) {
            if let Some(state) = route_state(rt, m.route()).filter(|_| m.route().traffic.has_client_limit()) {
                let counters = Rates { limits: &m.route().traffic.rate_limits, rates: &state.rates };
                let who = Who { client: Some(client), ..Who::default() };
                if let Err(l) = ratelimit::check(&m.route().traffic.rate_limits, &counters, &who, Phase::Edge) {
                    return Some(Early::Refuse(limited(Some(m.route().clone()), l, metrics)));
                }
            }
        }
    }
    if let Some((limit, rate)) = &rt.traffic().auth_failures {
        if req.headers.contains_key("authorization") {
            let counters = Rates { limits: std::slice::from_ref(limit), rates: std::slice::from_ref(rate) };
            if let Err(l) = ratelimit::auth_failures_over(limit, &counters, client) {
                return Some(Early::Refuse(limited(None, l, metrics)));
            }
        }
    }
    None
}

/// A preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) to a
/// route with CORS: its answer; `None` for any other request.
fn preflight(config: &Config, req: &RequestHeader) -> Option<Early> {
    let origin = req.headers.get("origin")?;
    let method = req.headers.get("access-control-request-method")?;
    // The route that would serve the method; a path served for other methods only
    // is judged by the global policy (which then refuses or allows the method).
    let (route, cors) = match config.router.find(method.to_str().ok()?, req.uri.path()) {
        Ok(m) => {
            let cors = m.route().traffic.cors.clone()?;
            (Some(m.route().clone()), cors)
        }
        Err(NoMatch::Method) => (None, config.traffic.cors.clone()?),
        Err(_) => return None,
    };
    let asked = req.headers.get("access-control-request-headers").map(|v| v.as_bytes());
    Some(match cors.preflight(origin.as_bytes(), method.as_bytes(), asked) {
        Some(headers) => Early::Preflight(headers, route),
        None => Early::Refuse(Refusal { denial: Denial::CorsRefused, route, refetch: None, token: None }),
    })
}

/// After the decision: the tenant and subject limits of the route, for a verified
/// token (before a one-time token is recorded as used).
pub fn token_limits(rt: &impl View, decision: Decision, metrics: &Metrics) -> Result<Decision, Refusal> {
    let Some(token) = decision.token() else {
        return Ok(decision);
    };
    let route = decision.route();
    let limits = &route.traffic.rate_limits;
    if limits.is_empty() {
        return Ok(decision);
    }
    let Some(state) = route_state(rt, route) else {
        return Ok(decision);
    };
    let who = Who { tenant: Some(token.tenant().id.as_str()), subject: token.claims().str("sub"), client: None };
    match ratelimit::check(limits, &Rates { limits, rates: &state.rates }, &who, Phase::Token) {
        Ok(()) => Ok(decision),
        Err(l) => {
            let token = token.clone();
            Err(Refusal { token: Some(token), ..limited(Some(route.clone()), l, metrics) })
        }
    }
}

/// Counts a refused token against the client address's limit.
pub fn count_refusal(rt: &impl View, status: u16, reason: &str, client: Option<IpAddr>) {
    if let (Some((_, rate)), Some(ip)) = (&rt.traffic().auth_failures, client) {
        if ratelimit::counts_as_auth_failure(status, reason) {
            rate.observe(&LimitKey::Client(ip), 1);
        }
    }
}

/// The extra headers of a refusal: `Retry-After` and the `RateLimit` fields of a 429.
pub fn refusal_headers(denial: &Denial) -> Vec<(&'static str, String)> {
    match denial {
        Denial::RateLimited(l) => vec![
            ("retry-after", l.retry_after.to_string()),
            ("ratelimit", l.ratelimit.clone()),
            ("ratelimit-policy", l.policy.clone()),
        ],
        _ => Vec::new(),
    }
}

/// Sets the configured headers and the CORS ones on an answer of `route` (or of no
/// route), in its header map.
fn decorate(
    h: &mut HeaderMap,
    answer: &Answer,
    cors: Option<&gateway_core::cors::Cors>,
    req: &RequestHeader,
) -> Result<(), Invalid> {
    for (name, value) in &answer.set {
        h.try_insert(name.clone(), value.clone())?;
    }
    if let Some(cors) = cors {
        h.try_append(http::header::VARY, HeaderValue::from_static("Origin"))?;
        // A refused preflight gets none: an allowed one is answered by `answer_preflight`.
        let preflight = req.method == http::Method::OPTIONS
            && req.headers.contains_key(http::header::ACCESS_CONTROL_REQUEST_METHOD);
        if let Some(origin) = req.headers.get(http::header::ORIGIN).filter(|_| !preflight) {
            for (name, value) in cors.actual(origin.as_bytes()) {
                h.try_insert(HeaderName::from_static(name), HeaderValue::try_from(value)?)?;
            }
        }
    }
    Ok(())
}

/// Why a header could not be set: too many headers, or a value that is not one.
enum Invalid {
    Full,
    Value,
}

impl From<http::header::MaxSizeReached> for Invalid {
    fn from(_: http::header::MaxSizeReached) -> Self {
        Invalid::Full
    }
}

impl From<http::header::InvalidHeaderValue> for Invalid {
    fn from(_: http::header::InvalidHeaderValue) -> Self {
        Invalid::Value
    }
}

/// The answer headers and CORS policy of `route` (or of no route).
fn answer_of<'a, R: View>(
    rt: &'a R,
    route: Option<&'a Arc<Route>>,
) -> (&'a Answer, Option<&'a gateway_core::cors::Cors>) {
    let state = route.and_then(|r| route_state(rt, r));
    let answer = state.map_or(&rt.traffic().unrouted, |s| &s.answer);
    let cors = route.map_or(rt.config().traffic.cors.as_ref(), |r| r.traffic.cors.as_ref());
    (answer, cors.map(|c| &**c))
}

/// The headers of one of the gateway's own answers (refusals, errors).
pub fn own_answer(
    resp: &mut ResponseHeader,
    rt: &impl View,
    route: Option<&Arc<Route>>,
    req: &RequestHeader,
) -> Result<()> {
    let (answer, cors) = answer_of(rt, route);
    edit_response(resp, answer.set.len() + if cors.is_some() { 6 } else { 0 }, |h| decorate(h, answer, cors, req))
}

/// The headers of an upstream's answer: leaking headers removed, the configured and
/// CORS ones set.
pub fn upstream_answer(
    resp: &mut ResponseHeader,
    rt: &impl View,
    route: Option<&Arc<Route>>,
    req: &RequestHeader,
) -> Result<()> {
    let (answer, cors) = answer_of(rt, route);
    edit_response(resp, answer.set.len() + if cors.is_some() { 6 } else { 0 }, |h| {
        remove_named(h, &answer.remove);
        decorate(h, answer, cors, req)
    })
}

/// Removes the headers named in `names` (lower case) that `headers` has: one pass over
/// the head's few names, instead of a parse and a map lookup per listed name (usually
/// none is there). Used for the upstream's leaking answer headers and for the request
/// headers the gateway owns.
pub fn remove_named(headers: &mut HeaderMap, names: &[String]) {
    let present = |n: &HeaderName| names.iter().any(|r| r.as_str() == n.as_str());
    if !headers.keys().any(present) {
        return;
    }
    let found: smallvec::SmallVec<[HeaderName; 4]> = headers.keys().filter(|n| present(n)).cloned().collect();
    for name in found {
        headers.remove(&name);
    }
}

/// Edits `resp`'s header map directly, with room for `extra` more headers, and leaves
/// it without Pingora's case-preserving name map (its status, headers and a
/// non-standard reason phrase kept).
///
/// Pingora sizes a parsed head's maps to exactly what it read and keeps the name map
/// beside the value map, so every added header grew both, and its `insert_header`
/// parses the name again each time; here names are the prebuilt `HeaderName`s. Over
/// HTTP/1 upstream header names then go out in canonical form (lower case, the common
/// ones title case), as HAProxy and Envoy send them; HTTP/2 names are lower case anyway.
fn edit_response(
    resp: &mut ResponseHeader,
    extra: usize,
    edit: impl FnOnce(&mut HeaderMap) -> Result<(), Invalid>,
) -> Result<()> {
    let reason = resp.get_reason_phrase().filter(|r| Some(*r) != resp.status.canonical_reason()).map(str::to_owned);
    // An empty head allocates nothing: it only holds the place while the parts move.
    let placeholder = ResponseHeader::from(http::Response::new(()).into_parts().0);
    let mut parts: http::response::Parts = std::mem::replace(resp, placeholder).into();
    parts.headers.reserve(extra);
    let edited = edit(&mut parts.headers);
    *resp = ResponseHeader::from(parts);
    resp.set_reason_phrase(reason.as_deref())?;
    edited.map_err(|e| match e {
        Invalid::Full => Error::explain(InvalidHTTPHeader, "too many answer headers"),
        Invalid::Value => Error::explain(InvalidHTTPHeader, "invalid answer header value"),
    })
}

/// Answers an allowed preflight: `204` with the CORS headers and the configured ones.
pub async fn answer_preflight(
    session: &mut Session,
    rt: &impl View,
    cors: gateway_core::cors::Headers,
    route: Option<Arc<Route>>,
) -> Result<()> {
    let mut resp = ResponseHeader::build_no_case(204, Some(cors.len() + 6))?;
    for (name, value) in cors {
        resp.insert_header(name, value)?;
    }
    resp.append_header("vary", "Origin, Access-Control-Request-Method, Access-Control-Request-Headers")?;
    let state = route.as_ref().and_then(|r| route_state(rt, r));
    for (name, value) in &state.map_or(&rt.traffic().unrouted, |s| &s.answer).set {
        resp.insert_header(name.clone(), value.clone())?;
    }
    if !session.is_body_done() {
        session.set_keepalive(None);
    }
    session.write_response_header(Box::new(resp), true).await
}
