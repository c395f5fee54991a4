//! Edge traffic control end to end, over real sockets on 127.0.0.1: rate limits by
//! subject, tenant and client address (429 with `Retry-After` and the `RateLimit`
//! fields, recovery after the window, counts kept across a reload), the per-address
//! limit on refused tokens, CORS preflights and actual requests, and the response
//! headers on the gateway's own answers and on proxied ones.

use crate::support::{free_port, raw_get, run_binary, Gateway};
use jsonwebtoken::Algorithm;
use reqwest::header::HeaderMap;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use testkit::{claims, jwks, EchoServer, JwksServer, TestKey};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An upstream that leaks its internals: every answer names its server and framework
/// (and, in `X-Seen-Target` and `X-Seen-Names`, the request target and header names
/// exactly as they reached it).
async fn leaky_upstream() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut head = Vec::new();
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let body = r#"{"ok":true}"#;
                let text = String::from_utf8_lossy(&head).into_owned();
                let mut lines = text.split("\r\n");
                let target = lines.next().unwrap_or("").split(' ').nth(1).unwrap_or("").to_owned();
                let names: Vec<&str> = lines.filter_map(|l| l.split_once(':').map(|(n, _)| n)).collect();
                let names = names.join(",");
                let resp = format!(
                    "HTTP/1.1 200 Fine Thanks\r\nX-Seen-Target: {target}\r\nX-Seen-Names: {names}\r\nServer: gunicorn/20.1.0\r\nX-Powered-By: Express\r\nX-Runtime: 0.0123\r\n\
                     X-Frame-Options: ALLOWALL\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(resp.as_bytes()).await;
            });
        }
    });
    addr
}

struct Stack {
    gw: Gateway,
    key: TestKey,
    http: reqwest::Client,
    _jwks: JwksServer,
    _echo: EchoServer,
}

/// Tenants t1 and t2 (one RS256 key), an echo upstream, the leaky upstream, an
/// upstream nobody listens on, and `routes` (YAML list items) plus `top` settings.
async fn stack(routes: &str, top: &str) -> Stack {
    let key = TestKey::load("rsa-a.pem", "rs-1", Algorithm::RS256);
    let server = JwksServer::start(300).await;
    server.set("t1", jwks(&[&key]));
    server.set("t2", jwks(&[&key]));
    let echo = EchoServer::start().await;
    let leaky = leaky_upstream().await;
    let closed = free_port();
    let body = format!(
        r#"
keys:
  url_template: "{}"
tenants:
  t1: {{ issuer: https://issuer.test/t1, audiences: [api], algorithms: [RS256] }}
  t2: {{ issuer: https://issuer.test/t2, audiences: [api], algorithms: [RS256] }}
upstreams:
  echo: {{ peers: ["{}"] }}
  leaky: {{ peers: ["{leaky}"] }}
  closed: {{ peers: ["127.0.0.1:{closed}"], connect_timeout: 500ms, retries: 0 }}
http:
  trusted_proxies: [127.0.0.1/32]
routes:
{routes}
{top}
"#,
        server.url_template(),
        echo.addr,
    );
    let gw = Gateway::start(&body).await;
    Stack { gw, key, http: reqwest::Client::new(), _jwks: server, _echo: echo }
}

impl Stack {
    fn token(&self, tenant: &str, sub: &str) -> String {
        self.key.mint(&claims(tenant, sub, json!("doctor")))
    }

    /// Sends `method path` with a bearer token (if any) and headers; returns status, JSON body and headers.
    async fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        extra: &[(&str, &str)],
    ) -> (u16, Value, HeaderMap) {
        crate::support::send(&self.http, method.parse().unwrap(), self.gw.url(path), token, extra).await
    }

    async fn get(&self, path: &str, token: Option<&str>, extra: &[(&str, &str)]) -> (u16, Value, HeaderMap) {
        self.send("GET", path, token, extra).await
    }

    async fn metrics(&self) -> String {
        self.http.get(self.gw.admin_url("/metrics")).send().await.unwrap().text().await.unwrap()
    }
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// Asserts a 429 of `policy` (`"<name>";q=..;w=..`) and returns its `Retry-After`.
fn assert_limited(status: u16, body: &Value, h: &HeaderMap, policy: &str) -> u64 {
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["reason"], "rate_limited");
    assert_eq!(body["error"], "too_many_requests");
    let retry: u64 = header(h, "retry-after").expect("Retry-After").parse().unwrap();
    let name = policy.split(';').next().unwrap();
    assert_eq!(header(h, "ratelimit"), Some(format!("{name};r=0;t={retry}").as_str()));
    assert_eq!(header(h, "ratelimit-policy"), Some(policy));
    retry
}

const LIMITED_ROUTES: &str = r#"
  - name: limited
    prefix: /limited
    upstream: echo
    rate_limits:
      - { key: subject, requests: 3, per: 2s }
      - { key: tenant, requests: 5, per: 1m }
  - name: open
    prefix: /open
    upstream: echo
    public: true
    rate_limits:
      - { key: client, requests: 2, per: 1m }
  - name: echo
    prefix: /echo
    upstream: echo
"#;

/// Over its subject limit a client gets 429 with honest `Retry-After` and `RateLimit`
/// fields and recovers after the window; other subjects of the tenant go on until the
/// tenant's own limit, and another tenant is not affected at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_hit_gives_429_and_recovers_and_tenants_are_apart() {
    let s = stack(LIMITED_ROUTES, "").await;
    let a1 = s.token("t1", "p-1");
    for i in 0..3 {
        let (status, body, _) = s.get("/limited/x", Some(&a1), &[]).await;
        assert_eq!(status, 200, "request {i}: {body}");
    }
    let (status, body, h) = s.get("/limited/x", Some(&a1), &[]).await;
    let retry = assert_limited(status, &body, &h, "\"subject-2s\";q=3;w=2");
    assert!((1..=2).contains(&retry), "{retry}");
    // The security headers are on the 429 too.
    assert_eq!(header(&h, "x-content-type-options"), Some("nosniff"));
    // A route without limits is not affected.
    assert_eq!(s.get("/echo/x", Some(&a1), &[]).await.0, 200);

    // Recovery: allowed again once the window is over, within Retry-After (and a margin).
    let refused_at = Instant::now();
    let deadline = refused_at + Duration::from_secs(retry + 2);
    loop {
        let (status, _, _) = s.get("/limited/x", Some(&a1), &[]).await;
        if status == 200 {
            break;
        }
        assert_eq!(status, 429);
        assert!(Instant::now() < deadline, "still limited {retry} s after the 429 said to retry");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The tenant's limit (5 a minute) counts every subject: p-1 has used 4 (3 + 1 after recovery).
    let a2 = s.token("t1", "p-2");
    assert_eq!(s.get("/limited/x", Some(&a2), &[]).await.0, 200);
    let (status, body, h) = s.get("/limited/x", Some(&a2), &[]).await;
    let retry = assert_limited(status, &body, &h, "\"tenant-60s\";q=5;w=60");
    assert!((50..=60).contains(&retry), "{retry}");
    // Another tenant is unaffected.
    let b1 = s.token("t2", "p-1");
    for _ in 0..3 {
        assert_eq!(s.get("/limited/x", Some(&b1), &[]).await.0, 200);
    }

    let m = s.metrics().await;
    assert!(m.contains(r#"gateway_rate_limited_total{key="subject",route="limited"}"#), "{m}");
    assert!(m.contains(r#"gateway_rate_limited_total{key="tenant",route="limited"}"#), "{m}");
    let lines: Vec<&str> = m.lines().filter(|l| l.starts_with("gateway_rate_limited_total")).collect();
    assert!(
        lines.iter().all(|l| !l.contains("p-1") && !l.contains("t1")),
        "no subject or tenant id as a label: {lines:?}"
    );
}

/// A client-address limit on a public route (the address from the trusted proxy's
/// `X-Forwarded-For`): the third request of an address is refused, another address
/// is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_limit_counts_each_address() {
    let s = stack(LIMITED_ROUTES, "").await;
    let one = [("x-forwarded-for", "203.0.113.7")];
    let two = [("x-forwarded-for", "203.0.113.8")];
    assert_eq!(s.get("/open/a", None, &one).await.0, 200);
    assert_eq!(s.get("/open/a", None, &one).await.0, 200);
    let (status, body, h) = s.get("/open/a", None, &one).await;
    assert_limited(status, &body, &h, "\"client-60s\";q=2;w=60");
    assert_eq!(s.get("/open/a", None, &two).await.0, 200);
    let m = s.metrics().await;
    assert!(m.contains(r#"gateway_rate_limited_total{key="client",route="open"} 1"#), "{m}");
}

/// A token-guessing burst from one address is cut off after `auth_failure_limit`
/// refused tokens (then even a valid token from it gets 429: the check comes before
/// any signature work), while a valid client from another address is not affected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_guessing_from_one_address_is_limited_and_others_are_not() {
    let s = stack(LIMITED_ROUTES, "auth_failure_limit: { requests: 5, per: 1m }").await;
    let guesser = [("x-forwarded-for", "198.51.100.66")];
    let other = [("x-forwarded-for", "198.51.100.67")];
    let valid = s.token("t1", "p-1");
    let forged = {
        let mut parts: Vec<String> = valid.split('.').map(String::from).collect();
        parts[2] = testkit::b64(&[7u8; 256]);
        parts.join(".")
    };
    // A missing token costs nothing and is not counted.
    for _ in 0..10 {
        assert_eq!(s.get("/echo/x", None, &guesser).await.0, 401);
    }
    for i in 0..5 {
        let (status, body, _) = s.get("/echo/x", Some(&forged), &guesser).await;
        assert_eq!((status, body["reason"].as_str()), (401, Some("signature_invalid")), "guess {i}");
    }
    for token in [&forged, &valid] {
        let (status, body, h) = s.get("/echo/x", Some(token), &guesser).await;
        assert_limited(status, &body, &h, "\"client-60s\";q=5;w=60");
    }
    // Another address: valid passes, a bad token is still a 401.
    assert_eq!(s.get("/echo/x", Some(&valid), &other).await.0, 200);
    assert_eq!(s.get("/echo/x", Some(&forged), &other).await.0, 401);
    let m = s.metrics().await;
    assert!(m.contains(r#"gateway_rate_limited_total{key="auth_failures",route="none"} 2"#), "{m}");
}

/// A reload keeps the counts of a limit whose definition did not change, and starts
/// a changed one afresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_keep_their_counts_across_a_reload_when_unchanged() {
    let s = stack(LIMITED_ROUTES, "").await;
    let one = [("x-forwarded-for", "203.0.113.9")];
    for _ in 0..2 {
        assert_eq!(s.get("/open/a", None, &one).await.0, 200);
    }
    assert_eq!(s.get("/open/a", None, &one).await.0, 429);
    let path = s.gw.config_path();
    let text = std::fs::read_to_string(&path).unwrap();
    // Same limits, one more route: a real reload that changes nothing of the limit.
    std::fs::write(
        &path,
        text.replace("  - name: echo\n", "  - name: extra\n    prefix: /extra\n    upstream: echo\n  - name: echo\n"),
    )
    .unwrap();
    s.gw.hup();
    wait_reloads(&s, 1).await;
    assert_eq!(s.get("/extra/x", Some(&s.token("t1", "p-1")), &[]).await.0, 200, "the new config is in force");
    assert_eq!(s.get("/open/a", None, &one).await.0, 429, "the unchanged limit kept its count");
    // A changed limit starts again.
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("{ key: client, requests: 2, per: 1m }", "{ key: client, requests: 3, per: 1m }"),
    )
    .unwrap();
    s.gw.hup();
    wait_reloads(&s, 2).await;
    assert_eq!(s.get("/open/a", None, &one).await.0, 200);
}

async fn wait_reloads(s: &Stack, n: usize) {
    let want = format!("gateway_config_reloads_total{{result=\"ok\"}} {n}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !s.metrics().await.contains(&want) {
        assert!(Instant::now() < deadline, "reload {n} not done:\n{}", s.gw.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const CORS: &str = r#"
cors:
  allow_origins: ["https://app.example.com", "https://*.example.org"]
  allow_methods: [GET, PUT]
  allow_headers: [Authorization, Content-Type]
  expose_headers: [X-Request-Id]
  allow_credentials: true
  max_age: 10m
"#;

/// Preflights are answered by the gateway without a token: allowed ones with the CORS
/// headers, refused ones (origin, method or header) with none; actual answers carry
/// the CORS headers for an allowed origin only, and `Vary: Origin` always.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflight_allowed_and_refused_credentials_and_vary() {
    let routes = "  - { name: echo, prefix: /echo, upstream: echo, methods: [GET, PUT] }\n  \
                  - name: own\n    prefix: /own\n    upstream: echo\n    \
                  cors: { allow_origins: [\"https://own.example.net\"], allow_methods: [POST] }\n";
    let s = stack(routes, CORS).await;
    let preflight = |origin: &'static str, method: &'static str, headers: &'static str| {
        vec![("origin", origin), ("access-control-request-method", method), ("access-control-request-headers", headers)]
    };
    let (status, _, h) = s
        .send("OPTIONS", "/echo/x", None, &preflight("https://app.example.com", "PUT", "authorization, content-type"))
        .await;
    assert_eq!(status, 204);
    assert_eq!(header(&h, "access-control-allow-origin"), Some("https://app.example.com"));
    assert_eq!(header(&h, "access-control-allow-methods"), Some("GET, PUT"));
    assert_eq!(header(&h, "access-control-allow-headers"), Some("authorization, content-type"));
    assert_eq!(header(&h, "access-control-allow-credentials"), Some("true"));
    assert_eq!(header(&h, "access-control-max-age"), Some("600"));
    assert!(header(&h, "vary").unwrap().contains("Origin"));
    // A pattern origin.
    let (status, _, h) =
        s.send("OPTIONS", "/echo/x", None, &preflight("https://eu.example.org", "GET", "authorization")).await;
    assert_eq!((status, header(&h, "access-control-allow-origin")), (204, Some("https://eu.example.org")));

    // Refused: another origin, a method or a header not allowed. No CORS header at all.
    for (origin, method, hdrs) in [
        ("https://evil.test", "GET", "authorization"),
        ("https://example.org", "GET", ""),
        ("https://app.example.com", "DELETE", ""),
        ("https://app.example.com", "GET", "x-secret"),
    ] {
        let (status, body, h) = s.send("OPTIONS", "/echo/x", None, &preflight(origin, method, hdrs)).await;
        assert_eq!((status, body["reason"].as_str()), (403, Some("cors_refused")), "{origin} {method} {hdrs}");
        assert!(h.keys().all(|k| !k.as_str().starts_with("access-control-")), "{origin}: {h:?}");
        assert!(header(&h, "vary").unwrap().contains("Origin"));
    }

    // Actual requests: allowed origin gets the headers (on a 200 and on a 401, so the
    // page can read the refusal), another origin none; both `Vary: Origin`.
    let token = s.token("t1", "p-1");
    let app = [("origin", "https://app.example.com")];
    for (tok, want) in [(Some(token.as_str()), 200), (None, 401)] {
        let (status, _, h) = s.get("/echo/x", tok, &app).await;
        assert_eq!(status, want);
        assert_eq!(header(&h, "access-control-allow-origin"), Some("https://app.example.com"));
        assert_eq!(header(&h, "access-control-allow-credentials"), Some("true"));
        assert_eq!(header(&h, "access-control-expose-headers"), Some("x-request-id"));
        assert!(h.get_all("vary").iter().any(|v| v.to_str().unwrap().contains("Origin")), "{h:?}");
    }
    let (status, _, h) = s.get("/echo/x", Some(&token), &[("origin", "https://evil.test")]).await;
    assert_eq!(status, 200);
    assert!(h.keys().all(|k| !k.as_str().starts_with("access-control-")), "{h:?}");
    assert!(h.get_all("vary").iter().any(|v| v.to_str().unwrap().contains("Origin")));

    // A route's own CORS replaces the global one.
    let (status, _, _) = s.send("OPTIONS", "/own/x", None, &preflight("https://app.example.com", "POST", "")).await;
    assert_eq!(status, 403);
    let (status, _, h) = s.send("OPTIONS", "/own/x", None, &preflight("https://own.example.net", "POST", "")).await;
    assert_eq!((status, header(&h, "access-control-allow-origin")), (204, Some("https://own.example.net")));
    assert!(header(&h, "access-control-allow-credentials").is_none());

    // Not a preflight (no Access-Control-Request-Method): the usual decision.
    let (status, _, _) = s.send("OPTIONS", "/echo/x", None, &app).await;
    assert_eq!(status, 405);
}

/// On the wire (HTTP/1.1), an upstream answer keeps its status line, including a
/// reason phrase of its own, and its headers with their values, under canonical names
/// (the gateway adds its headers to a map without Pingora's case-preserving copy): the
/// common ones in title case, the others in lower case, as HAProxy sends them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_answer_keeps_its_reason_phrase_and_headers_on_the_wire() {
    let s = stack("  - { name: app, prefix: /app, upstream: leaky }\n", "").await;
    let token = s.token("t1", "p-1");
    let raw = raw_get(s.gw.port, "/app/page", &token).await;
    let (head, body) = raw.split_once("\r\n\r\n").expect("a whole answer");
    let mut lines = head.split("\r\n");
    assert_eq!(lines.next(), Some("HTTP/1.1 200 Fine Thanks"), "{raw}");
    let names: Vec<&str> = lines.map(|l| l.split_once(": ").expect("a header line").0).collect();
    assert!(names.contains(&"Content-Type") && names.contains(&"Content-Length"), "{names:?}");
    assert!(names.contains(&"x-runtime") && names.contains(&"x-content-type-options"), "{names:?}");
    assert!(!names.iter().any(|n| n.eq_ignore_ascii_case("server")), "{names:?}");
    assert_eq!(names.iter().filter(|n| n.eq_ignore_ascii_case("x-frame-options")).count(), 1);
    assert!(head.contains("x-runtime: 0.0123") && head.contains("x-frame-options: DENY"), "{head}");
    assert_eq!(body, r#"{"ok":true}"#);
}

/// The upstream request (HTTP/1.1 on the wire) keeps the client's target and headers,
/// under canonical names, and carries the gateway's own: the headers the gateway adds
/// go to a map without Pingora's case-preserving copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_request_keeps_the_target_and_headers_under_canonical_names() {
    let s = stack("  - { name: app, prefix: /app, upstream: leaky }\n", "").await;
    let token = s.token("t1", "p-1");
    let (status, _, h) = s.get("/app/page?q=1&r=%2F", Some(&token), &[("X-Custom-Thing", "v")]).await;
    assert_eq!(status, 200);
    assert_eq!(header(&h, "x-seen-target"), Some("/app/page?q=1&r=%2F"));
    let names: Vec<&str> = header(&h, "x-seen-names").unwrap_or_default().split(',').collect();
    for name in ["Host", "x-custom-thing", "x-request-id", "x-forwarded-for", "x-forwarded-proto"] {
        assert!(names.contains(&name), "{name} not in {names:?}");
    }
    assert!(!names.iter().any(|n| n.eq_ignore_ascii_case("authorization")), "{names:?}");
    // An absolute-form target goes upstream as it came (Pingora keeps it verbatim).
    let raw = raw_get(s.gw.port, "http://gw/app/page?q=2", &token).await;
    assert!(raw.starts_with("HTTP/1.1 200 "), "{raw}");
    assert!(raw.contains("\r\nx-seen-target: http://gw/app/page?q=2\r\n"), "{raw}");
}

/// The configured security headers are on a proxied 200 and on the gateway's own
/// 401 and 502; the upstream's leaking headers are removed and a route's own
/// `Content-Security-Policy` is added.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_headers_on_200_401_502_and_upstream_leaks_removed() {
    let routes = "  - name: html\n    prefix: /html\n    upstream: leaky\n    \
                  response_headers: { set: { Content-Security-Policy: \"default-src 'self'\" }, remove: [X-Runtime] }\n  \
                  - { name: app, prefix: /app, upstream: leaky }\n  \
                  - { name: down, prefix: /down, upstream: closed }\n";
    let s = stack(routes, "").await;
    let token = s.token("t1", "p-1");
    let secure = |h: &HeaderMap, what: &str| {
        assert_eq!(header(h, "x-content-type-options"), Some("nosniff"), "{what}: {h:?}");
        assert_eq!(header(h, "x-frame-options"), Some("DENY"), "{what}: {h:?}");
        assert_eq!(header(h, "referrer-policy"), Some("no-referrer"), "{what}: {h:?}");
    };
    let (status, body, h) = s.get("/html/page", Some(&token), &[]).await;
    assert_eq!((status, &body), (200, &json!({"ok": true})));
    secure(&h, "200");
    assert_eq!(h.get_all("x-frame-options").iter().count(), 1, "the upstream's value is replaced");
    assert_eq!(header(&h, "content-security-policy"), Some("default-src 'self'"));
    for leak in ["server", "x-powered-by", "x-runtime"] {
        assert!(h.get(leak).is_none(), "{leak} leaked: {h:?}");
    }
    // Without the route's own settings: the global removals only.
    let (status, _, h) = s.get("/app/page", Some(&token), &[]).await;
    assert_eq!(status, 200);
    secure(&h, "200 app");
    assert!(h.get("server").is_none() && h.get("x-powered-by").is_none());
    assert_eq!(header(&h, "x-runtime"), Some("0.0123"));
    assert!(h.get("content-security-policy").is_none());

    let (status, _, h) = s.get("/html/page", None, &[]).await;
    assert_eq!(status, 401);
    secure(&h, "401");
    assert_eq!(header(&h, "content-security-policy"), Some("default-src 'self'"));
    let (status, body, h) = s.get("/down/x", Some(&token), &[]).await;
    assert_eq!((status, body["reason"].as_str()), (502, Some("upstream_failed")));
    secure(&h, "502");
    let (status, _, h) = s.get("/nowhere", None, &[]).await;
    assert_eq!(status, 404);
    secure(&h, "404");
}

/// `gateway --check` names the field of a bad limit, CORS or header entry.
#[test]
fn check_names_bad_traffic_fields() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.yaml");
    std::fs::write(
        &path,
        r#"
listen: 127.0.0.1:1
admin_listen: 127.0.0.1:2
keys: { url_template: "http://127.0.0.1:1/{tenant}" }
tenants:
  t1: { issuer: https://a, audiences: [api], algorithms: [ES256], required: false }
upstreams:
  u: { peers: ["127.0.0.1:3"] }
routes:
  - name: r
    prefix: /r
    upstream: u
    rate_limits: [{ key: ip, requests: 10, per: 1m }]
    cors: { allow_origins: ["https://x.test/path"] }
response_headers: { set: { "bad name": x } }
auth_failure_limit: { requests: 0, per: 1m }
"#,
    )
    .unwrap();
    let (ok, out) = run_binary(&["--check", "--config", path.to_str().unwrap()]);
    assert!(!ok, "{out}");
    for want in [
        "routes[0] (name: r).rate_limits[0].key",
        "routes[0] (name: r).cors.allow_origins[0]",
        "response_headers.set.bad name",
        "auth_failure_limit.requests",
    ] {
        assert!(out.contains(want), "missing {want} in {out}");
    }
}

/// Over one kept-alive raw connection: a preflight's 204 (no body, no
/// `Content-Length`) then a 429 and a 401 are each framed so the next answer follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_and_429_keep_the_connection_framed() {
    let s = stack(LIMITED_ROUTES, CORS).await;
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", s.gw.port)).await.unwrap();
    let xff = "X-Forwarded-For: 203.0.113.77\r\n";
    let mut reqs = String::from(
        "OPTIONS /echo/x HTTP/1.1\r\nHost: gw\r\nOrigin: https://app.example.com\r\nAccess-Control-Request-Method: GET\r\n\r\n",
    );
    for _ in 0..3 {
        reqs.push_str(&format!("GET /open/a HTTP/1.1\r\nHost: gw\r\n{xff}\r\n"));
    }
    reqs.push_str("GET /echo/x HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n");
    conn.write_all(reqs.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut out)).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&out);
    let statuses: Vec<&str> =
        text.split("HTTP/1.1 ").skip(1).map(|a| a.split(' ').next().unwrap_or_default()).collect();
    assert_eq!(statuses, ["204", "200", "200", "429", "401"], "{text}");
    let preflight = text.split("HTTP/1.1 ").nth(1).unwrap();
    assert!(!preflight.to_ascii_lowercase().contains("content-length"), "{preflight}");
    assert!(preflight.contains("access-control-allow-origin: https://app.example.com"), "{preflight}");
}
