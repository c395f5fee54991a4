//! The admin listener: `/healthz` (process up), `/readyz` (every required tenant's
//! keys loaded and, with `revocation.require_sync`, the revocation feed read once
//! since start), `/metrics` (Prometheus text) and `/audit` (queries over the audit
//! trail; bearer credential compared in constant time, failures counted).

use crate::audit::AuditLog;
use crate::background::revocation::FeedStatus;
use crate::clock::now;
use crate::metrics::Metrics;
use crate::runtime::SharedRuntime;
use async_trait::async_trait;
use gateway_core::audit::AuditQuery;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use std::sync::Arc;
use zeroize::Zeroizing;

/// The admin HTTP app.
pub struct Admin {
    /// The current runtime, for readiness.
    pub rt: SharedRuntime,
    /// Metrics to render.
    pub metrics: Metrics,
    /// Audit trail to query, when configured.
    pub audit: Option<Arc<AuditLog>>,
    /// Bearer credential for `/audit`; without one the endpoint is off.
    pub token: Option<Zeroizing<String>>,
    /// Revocation feed health (reported when the current config has a feed).
    pub feed: Arc<FeedStatus>,
}

impl Admin {
    /// Constant-time check of the request's bearer credential.
    fn authorized(&self, session: &ServerSession) -> bool {
        let Some(want) = &self.token else {
            return false;
        };
        let values = session.req_header().headers.get_all(http::header::AUTHORIZATION);
        let ok = medgate_channel::bearer::matches(values.iter().map(|v| v.as_bytes()), want);
        if !ok {
            self.metrics.admin_auth_failures.inc();
        }
        ok
    }

    async fn audit_query(&self, session: &ServerSession) -> Response<Vec<u8>> {
        let Some(audit) = self.audit.clone() else {
            return respond(404, "application/json", br#"{"error":"audit_not_configured"}"#.to_vec());
        };
        if !self.authorized(session) {
            return respond(401, "application/json", br#"{"error":"unauthorized"}"#.to_vec());
        }
        let query = session.req_header().uri.query().unwrap_or("");
        let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
        let map: serde_json::Map<String, serde_json::Value> = pairs
            .into_iter()
            .map(|(k, v)| {
                let value = match k.as_str() {
                    "from_ms" | "to_ms" | "limit" => v.parse::<i64>().map_or(serde_json::Value::String(v), Into::into),
                    _ => serde_json::Value::String(v),
                };
                (k, value)
            })
            .collect();
        let q: AuditQuery = match serde_json::from_value(serde_json::Value::Object(map)) {
            Ok(q) => q,
            Err(e) => {
                let body = serde_json::json!({"error": "bad_query", "detail": e.to_string()});
                return respond(400, "application/json", body.to_string().into_bytes());
            }
        };
        match tokio::task::spawn_blocking(move || audit.query(&q)).await {
            Ok(Ok(records)) => {
                let body = serde_json::json!({"records": records});
                respond(200, "application/json", body.to_string().into_bytes())
            }
            _ => respond(500, "application/json", br#"{"error":"audit_unreadable"}"#.to_vec()),
        }
    }
}

fn respond(status: u16, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("cache-control", "no-store")
        .header("content-length", body.len())
        .body(body)
        .expect("static response parts are valid")
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        match session.req_header().uri.path() {
            "/healthz" => respond(200, "application/json", br#"{"status":"ok"}"#.to_vec()),
            "/readyz" => {
                let rt = self.rt.load();
                let now = now();
                let missing = rt.missing_keys(now);
                // Before the feed was read once (or a fresh saved state loaded) a gateway
                // that requires it is not ready. Afterwards it keeps serving on its last
                // revocation state when the feed is down; readiness says so rather than
                // taking the gateway out of service.
                let synced = rt.engine.revocations.synced();
                let settings = rt.engine.config.revocation.as_ref();
                let feed = settings.map(|_| self.feed.describe(synced));
                let unsynced = settings.is_some_and(|s| s.require_sync) && !synced;
                let (status, word) = if missing.is_empty() && !unsynced { (200, "ready") } else { (503, "not_ready") };
                let mut body = serde_json::json!({"status": word});
                if !missing.is_empty() {
                    body["tenants_without_keys"] = serde_json::json!(missing);
                }
                if let Some(f) = feed {
                    body["revocation_feed"] = serde_json::json!(f);
                }
                respond(status, "application/json", body.to_string().into_bytes())
            }
            "/metrics" => {
                let rt = self.rt.load();
                let (hits, misses) = rt.engine.verifier.cache_stats();
                self.metrics.token_cache.with_label_values(&["hit"]).set(hits as i64);
                self.metrics.token_cache.with_label_values(&["miss"]).set(misses as i64);
                if let Some(held) = rt.engine.replay.held() {
                    self.metrics.one_time_ids.set(held as i64);
                }
                respond(200, "text/plain; version=0.0.4", self.metrics.render())
            }
            "/audit" => self.audit_query(session).await,
            _ => respond(404, "application/json", br#"{"error":"not_found"}"#.to_vec()),
        }
    }
}
