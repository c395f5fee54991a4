//! The admin listener: `/healthz` (process up), `/readyz` (every required tenant's
//! keys loaded) and `/metrics` (Prometheus text).

use crate::keys::now;
use crate::metrics::Metrics;
use crate::runtime::SharedRuntime;
use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

/// The admin HTTP app.
pub struct Admin {
    /// The current runtime, for readiness.
    pub rt: SharedRuntime,
    /// Metrics to render.
    pub metrics: Metrics,
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
                let missing = rt.missing_keys(now());
                if missing.is_empty() {
                    respond(200, "application/json", br#"{"status":"ready"}"#.to_vec())
                } else {
                    let body =
                        serde_json::json!({"status": "not_ready", "tenants_without_keys": missing});
                    respond(503, "application/json", body.to_string().into_bytes())
                }
            }
            "/metrics" => respond(200, "text/plain; version=0.0.4", self.metrics.render()),
            _ => respond(
                404,
                "application/json",
                br#"{"error":"not_found"}"#.to_vec(),
            ),
        }
    }
}
