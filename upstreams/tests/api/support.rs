//! Harness: starts the four routers on `127.0.0.1:0` and issues requests.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::net::TcpListener;
use upstreams::{router, Service, Store};

/// Identity headers to send (`X-User-Id`, `X-Tenant-Id`, `X-User-Role`).
#[derive(Clone, Copy, Debug)]
pub struct Who {
    pub user: &'static str,
    pub tenant: &'static str,
    pub role: &'static str,
}

/// Shorthand for a [`Who`].
pub const fn who(user: &'static str, tenant: &'static str, role: &'static str) -> Who {
    Who { user, tenant, role }
}

/// A response reduced to what the tests look at.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub served_by: Option<String>,
    pub text: String,
    pub json: Value,
}

/// The four running services.
pub struct App {
    addrs: HashMap<Service, SocketAddr>,
    client: reqwest::Client,
}

/// Starts every service on its own ephemeral port with a freshly seeded store.
pub async fn start() -> App {
    let store = Arc::new(Store::seeded());
    let mut addrs = HashMap::new();
    for service in Service::ALL {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        addrs.insert(service, listener.local_addr().expect("local addr"));
        let app = router(service, Arc::clone(&store));
        tokio::spawn(async move { axum::serve(listener, app).await });
    }
    App { addrs, client: reqwest::Client::new() }
}

impl App {
    /// Sends `method path` to `service` with optional identity and JSON body.
    pub async fn call(
        &self,
        service: Service,
        method: Method,
        path: &str,
        who: Option<Who>,
        body: Option<&str>,
    ) -> Reply {
        let url = format!("http://{}{}", self.addrs[&service], path);
        let mut req = self.client.request(method, url);
        if let Some(w) = who {
            req = req.header("X-User-Id", w.user).header("X-Tenant-Id", w.tenant).header("X-User-Role", w.role);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b.to_owned());
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let served_by = resp.headers().get("x-served-by").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let text = resp.text().await.expect("body");
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply { status, served_by, text, json }
    }

    /// `GET path` on `service`.
    pub async fn get(&self, service: Service, path: &str, who: Option<Who>) -> Reply {
        self.call(service, Method::GET, path, who, None).await
    }
}

/// Notes of all records in a records response.
pub fn notes(reply: &Reply) -> Vec<String> {
    reply.json["records"]
        .as_array()
        .map(|rs| rs.iter().filter_map(|r| r["note"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// Asserts `reply` is `status` with JSON `{"error": code}`.
#[track_caller]
pub fn assert_error(reply: &Reply, status: StatusCode, code: &str) {
    assert_eq!(reply.status, status, "body: {}", reply.text);
    assert_eq!(reply.json, serde_json::json!({ "error": code }));
}
