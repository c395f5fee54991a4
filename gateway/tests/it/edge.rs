//! The request's HTTP at the edge, end to end over raw TCP (header spelling and framing
//! matter): the real gateway binary in front of a recording upstream that keeps every
//! request head it was sent (before reading the body) and every body it received.

use crate::support::{keyed_stack, Gateway};
use axum::extract::{Request, State};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// What the upstream saw of one request.
#[derive(Debug, Clone, Default)]
struct Seen {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

impl Seen {
    fn all(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect()
    }
    fn names(&self) -> Vec<&str> {
        self.headers.iter().map(|(n, _)| n.as_str()).collect()
    }
}

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Seen>>>);

impl Recorder {
    async fn start() -> (Recorder, std::net::SocketAddr) {
        let rec = Recorder::default();
        let app = axum::Router::new().fallback(record).with_state(rec.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.ok();
        });
        (rec, addr)
    }
    fn seen(&self) -> Vec<Seen> {
        self.0.lock().unwrap().clone()
    }
    fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

async fn record(State(rec): State<Recorder>, req: Request) -> axum::Json<Value> {
    let (parts, body) = req.into_parts();
    let headers = parts
        .headers
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let seen = Seen { method: parts.method.to_string(), path: parts.uri.path().to_owned(), headers, body: None };
    // The head is recorded before the body is read, so an aborted body still shows.
    let i = {
        let mut all = rec.0.lock().unwrap();
        all.push(seen);
        all.len() - 1
    };
    let body = axum::body::to_bytes(body, usize::MAX).await.ok();
    let len = body.as_ref().map(|b| b.len());
    rec.0.lock().unwrap()[i].body = body.map(|b| b.to_vec());
    axum::Json(json!({"path": parts.uri.path(), "body_len": len}))
}

fn config(jwks: &str, upstream: std::net::SocketAddr, http: &str) -> String {
    format!(
        r#"
keys:
  url_template: "{jwks}"
tenants:
  t1:
    issuer: https://issuer.test/t1
    audiences: [api]
    algorithms: [ES256]
headers:
  - {{ claim: sub, header: X-User-Id }}
  - {{ claim: role, header: X-User-Role }}
  - {{ claim: tenant_id, header: X-Auth-Tenant }}
upstreams:
  rec:
    peers: ["{upstream}"]
    connect_timeout: 500ms
    read_timeout: 5s
routes:
  - name: records
    path: /records
    methods: [GET]
    upstream: rec
    allow: [{{ role: doctor }}]
  - name: upload
    path: /upload
    methods: [POST]
    upstream: rec
    public: true
    max_body_bytes: 1024
  - name: big
    path: /big
    methods: [POST]
    upstream: rec
    public: true
    max_body_bytes: 200000
  - name: echo
    prefix: /echo
    upstream: rec
    public: true
{http}
"#
    )
}

struct Stack {
    gw: Gateway,
    rec: Recorder,
    token: String,
    _jwks: testkit::JwksServer,
}

async fn stack(http: &str) -> Stack {
    let (key, jwks, _echo) = keyed_stack().await;
    let (rec, addr) = Recorder::start().await;
    let gw = Gateway::start(&config(&jwks.url_template(), addr, http)).await;
    let token = key.mint(&testkit::claims("t1", "p-1", json!("doctor")));
    Stack { gw, rec, token, _jwks: jwks }
}

/// Writes `request` (ignoring a write refused because the gateway already answered and
/// closed) and reads until the gateway closes; a gateway that does neither within
/// 10 s fails the test as a hang.
/// Reads `from` until the peer closes (or the read fails), appending to `out`; fails
/// the test with `hung` if that takes longer than `within`.
async fn read_until_closed(from: &mut (impl AsyncRead + Unpin), out: &mut Vec<u8>, within: Duration, hung: &str) {
    let mut buf = [0u8; 8192];
    let read = async {
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(within, read).await.expect(hung);
}

async fn exchange(port: u16, request: &[u8]) -> String {
    let conn = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (mut rd, mut wr) = conn.into_split();
    let request = request.to_vec();
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&request).await;
        wr
    });
    let mut out = Vec::new();
    read_until_closed(&mut rd, &mut out, Duration::from_secs(10), "the gateway hung: no answer and no close").await;
    drop(writer);
    String::from_utf8_lossy(&out).into_owned()
}

fn status(resp: &str) -> u16 {
    resp.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status line in {resp:?}"))
}

fn json_body(resp: &str) -> Value {
    let body = resp.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {resp:?}"))
}

fn header<'a>(resp: &'a str, name: &str) -> Option<&'a str> {
    let head = resp.split_once("\r\n\r\n").map_or(resp, |(h, _)| h);
    head.lines().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn get(path: &str, token: &str, extra: &[&str]) -> Vec<u8> {
    let mut r = format!("GET {path} HTTP/1.1\r\nHost: gw.test\r\nAuthorization: Bearer {token}\r\n");
    for h in extra {
        r.push_str(h);
        r.push_str("\r\n");
    }
    r.push_str("Connection: close\r\n\r\n");
    r.into_bytes()
}

fn chunked(path: &str, total: usize, chunk: usize) -> Vec<u8> {
    let mut r =
        format!("POST {path} HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
            .into_bytes();
    let mut left = total;
    while left > 0 {
        let n = left.min(chunk);
        r.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        r.extend(std::iter::repeat_n(b'a', n));
        r.extend_from_slice(b"\r\n");
        left -= n;
    }
    r.extend_from_slice(b"0\r\n\r\n");
    r
}

async fn metric(gw: &Gateway, line_prefix: &str) -> f64 {
    let text = reqwest::get(gw.admin_url("/metrics")).await.unwrap().text().await.unwrap();
    text.lines().find(|l| l.starts_with(line_prefix)).and_then(|l| l.rsplit(' ').next()?.parse().ok()).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_identity_and_forwarding_headers_never_reach_the_upstream() {
    let s = stack("").await;
    let spoof = [
        "X_User_Id: admin",
        "X-User_Role: doctor",
        "X_AUTH_TENANT: t9",
        "X_Custom: 1",
        "X-Forwarded-For: 6.6.6.6",
        "X-Forwarded-Proto: https",
        "X-Forwarded-Host: evil.example",
        "X_Forwarded_For: 7.7.7.7",
        "X-Real-IP: 6.6.6.6",
        "Forwarded: for=6.6.6.6",
        "X-HTTP-Method-Override: DELETE",
        "X-HTTP-Method: DELETE",
        "X-Method-Override: DELETE",
        "X_HTTP_Method_Override: DELETE",
        "X-Request-Id: req-given-1",
    ];
    let resp = exchange(s.gw.port, &get("/records", &s.token, &spoof)).await;
    assert_eq!(status(&resp), 200, "{resp}");
    let seen = s.rec.seen();
    assert_eq!(seen.len(), 1);
    let up = &seen[0];
    assert_eq!((up.method.as_str(), up.path.as_str()), ("GET", "/records"));
    assert!(!up.names().iter().any(|n| n.contains('_')), "underscore names reached the upstream: {:?}", up.names());
    assert_eq!(up.all("x-user-id"), ["p-1"]);
    assert_eq!(up.all("x-user-role"), ["doctor"]);
    assert_eq!(up.all("x-auth-tenant"), ["t1"]);
    // The peer is not a trusted proxy: its claims are replaced by what the gateway saw.
    assert_eq!(up.all("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(up.all("x-forwarded-proto"), ["http"]);
    assert_eq!(up.all("x-forwarded-host"), ["gw.test"]);
    // One X-Request-Id, the gateway's own (the client's is audited, never forwarded).
    let ids = up.all("x-request-id");
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_ne!(ids[0], "req-given-1");
    for gone in ["x-real-ip", "forwarded", "x-http-method-override", "x-http-method", "x-method-override"] {
        assert!(up.all(gone).is_empty(), "{gone} reached the upstream");
    }
    assert!(metric(&s.gw, r#"gateway_underscore_headers_total{action="drop"}"#).await >= 5.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn underscore_headers_can_be_refused() {
    let s = stack("http:\n  underscore_headers: reject\n").await;
    let resp = exchange(s.gw.port, &get("/records", &s.token, &["X_Custom: 1"])).await;
    assert_eq!(status(&resp), 400, "{resp}");
    assert_eq!(json_body(&resp)["reason"], "header_invalid");
    assert_eq!(header(&resp, "connection"), Some("close"));
    assert_eq!(s.rec.count(), 0);
    assert_eq!(metric(&s.gw, r#"gateway_underscore_headers_total{action="reject"}"#).await, 1.0);
    // Plain names still pass, and the method-override family is still stripped.
    let resp = exchange(s.gw.port, &get("/records", &s.token, &["X-Method-Override: DELETE"])).await;
    assert_eq!(status(&resp), 200, "{resp}");
    assert!(s.rec.seen()[0].all("x-method-override").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_underscore_headers_still_lose_identity_spellings() {
    let s = stack("http:\n  underscore_headers: allow\n  strip_headers: [X-Debug]\n").await;
    let extra =
        ["X_User_Id: admin", "X-User_Role: admin", "X_Forwarded_For: 6.6.6.6", "X_Custom_Thing: 1", "X-Debug: 1"];
    let resp = exchange(s.gw.port, &get("/records", &s.token, &extra)).await;
    assert_eq!(status(&resp), 200, "{resp}");
    let up = &s.rec.seen()[0];
    assert_eq!(up.all("x_custom_thing"), ["1"]);
    assert!(up.all("x_user_id").is_empty() && up.all("x-user_role").is_empty() && up.all("x_forwarded_for").is_empty());
    assert!(up.all("x-debug").is_empty());
    assert_eq!(up.all("x-user-id"), ["p-1"]);
    assert_eq!(up.all("x-user-role"), ["doctor"]);
    assert!(metric(&s.gw, r#"gateway_underscore_headers_total{action="allow"}"#).await >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_from_a_trusted_proxy_are_extended() {
    let s = stack("http:\n  trusted_proxies: [127.0.0.0/8]\n").await;
    let extra = ["X-Forwarded-For: 6.6.6.6, 198.51.100.7", "X-Forwarded-Proto: https", "X-Forwarded-Host: api.example"];
    let resp = exchange(s.gw.port, &get("/records", &s.token, &extra)).await;
    assert_eq!(status(&resp), 200, "{resp}");
    let up = &s.rec.seen()[0];
    assert_eq!(up.all("x-forwarded-for"), ["6.6.6.6, 198.51.100.7, 127.0.0.1"]);
    assert_eq!(up.all("x-forwarded-proto"), ["https"]);
    assert_eq!(up.all("x-forwarded-host"), ["api.example"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_heads_are_refused_before_anything_else() {
    let s = stack("").await;
    let port = s.gw.port;
    let long_value = "a".repeat(100 * 1024);
    let resp = exchange(port, &get("/records", &s.token, &[&format!("X-Big: {long_value}")])).await;
    assert_eq!(status(&resp), 431, "{}", &resp[..200.min(resp.len())]);
    assert_eq!(json_body(&resp)["reason"], "header_too_large");
    assert_eq!(header(&resp, "connection"), Some("close"));

    let many: Vec<String> = (0..150).map(|i| format!("X-H{i}: v")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let resp = exchange(port, &get("/records", &s.token, &many)).await;
    assert_eq!(status(&resp), 431, "{resp}");
    assert_eq!(json_body(&resp)["reason"], "too_many_headers");

    let resp = exchange(port, &get(&format!("/echo/{}", "x".repeat(10_000)), &s.token, &[])).await;
    assert_eq!(status(&resp), 414, "{resp}");
    assert_eq!(json_body(&resp)["reason"], "uri_too_long");

    // Past Pingora's own ceiling (256 fields) Pingora answers a bodiless 400 itself and closes.
    let very_many: Vec<String> = (0..300).map(|i| format!("X-H{i}: v")).collect();
    let very_many: Vec<&str> = very_many.iter().map(String::as_str).collect();
    let resp = exchange(port, &get("/records", &s.token, &very_many)).await;
    assert_eq!(status(&resp), 400, "{resp}");
    assert_eq!(s.rec.count(), 0, "nothing reaches the upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_route_limit_are_refused() {
    let s = stack("").await;
    let port = s.gw.port;
    // A declared length over the limit is refused on the head alone.
    let head = b"POST /upload HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 2000\r\n\r\n";
    let resp = exchange(port, head).await;
    assert_eq!(status(&resp), 413, "{resp}");
    assert_eq!(json_body(&resp)["reason"], "body_too_large");
    assert_eq!(header(&resp, "connection"), Some("close"));
    // A chunked body that grows past it never reaches the upstream.
    let resp = exchange(port, &chunked("/upload", 4000, 500)).await;
    assert_eq!(status(&resp), 413, "{resp}");
    assert_eq!(json_body(&resp)["reason"], "body_too_large");
    assert_eq!(s.rec.count(), 0, "nothing reaches the upstream");

    // Within the limit, chunked and sized bodies arrive whole.
    let resp = exchange(port, &chunked("/upload", 1000, 300)).await;
    assert_eq!(status(&resp), 200, "{resp}");
    let mut sized =
        b"POST /upload HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 1024\r\nConnection: close\r\n\r\n".to_vec();
    sized.extend(std::iter::repeat_n(b'b', 1024));
    let resp = exchange(port, &sized).await;
    assert_eq!(status(&resp), 200, "{resp}");
    let seen = s.rec.seen();
    assert_eq!(seen[0].body.as_deref(), Some(&[b'a'; 1000][..]));
    assert_eq!(seen[1].body.as_ref().map(Vec::len), Some(1024));

    // Past the 64 KiB read-ahead window a chunked body streams, whole and in order.
    let resp = exchange(port, &chunked("/big", 150_000, 10_000)).await;
    assert_eq!(status(&resp), 200, "{resp}");
    assert_eq!(json_body(&resp)["body_len"], 150_000);
    assert_eq!(s.rec.seen()[2].body.as_ref().map(Vec::len), Some(150_000));
    // And is cut off with a 413 once it passes the route's limit.
    let resp = exchange(port, &chunked("/big", 300_000, 10_000)).await;
    assert_eq!(status(&resp), 413, "{resp}");
    assert_eq!(json_body(&resp)["reason"], "body_too_large");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_framing_is_a_400_and_never_reaches_the_upstream() {
    let s = stack("").await;
    let port = s.gw.port;
    let overflow =
        b"POST /upload HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFFFFFF\r\nabc\r\n0\r\n\r\n";
    let resp = exchange(port, overflow).await;
    assert_eq!(status(&resp), 400, "{resp}");
    assert_eq!(json_body(&resp)["reason"], "request_malformed");

    let both =
        b"POST /upload HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    let resp = exchange(port, both).await;
    assert_eq!(status(&resp), 400, "{resp}");
    assert_eq!(json_body(&resp)["reason"], "request_malformed");

    assert_eq!(s.rec.count(), 0, "nothing reaches the upstream");

    // Past the read-ahead window the body streams; broken framing there still gets an
    // answer (the upstream saw the start of it, and the request is aborted).
    let mut late = chunked("/big", 100_000, 10_000);
    late.truncate(late.len() - b"0\r\n\r\n".len());
    late.extend_from_slice(b"FFFFFFFFFFFFFFFFFFFFFF\r\nabc\r\n0\r\n\r\n");
    let resp = exchange(port, &late).await;
    assert_eq!(status(&resp), 400, "{resp}");
    assert_eq!(json_body(&resp)["reason"], "request_malformed");

    // An invalid Content-Length is refused by Pingora's parser itself (bodiless 400).
    let resp = exchange(port, b"POST /upload HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 1x\r\n\r\nabc").await;
    assert_eq!(status(&resp), 400, "{resp}");
    assert!(s.rec.seen().iter().all(|r| r.path == "/big"), "only the streamed one started upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_continue_is_answered_before_the_body_is_read_ahead() {
    let s = stack("").await;
    let conn = tokio::net::TcpStream::connect(("127.0.0.1", s.gw.port)).await.unwrap();
    let (mut rd, mut wr) = conn.into_split();
    let head = "POST /upload HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n";
    wr.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), rd.read(&mut buf)).await.expect("no 100 Continue").unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 100"), "{}", String::from_utf8_lossy(&buf[..n]));
    wr.write_all(b"3\r\nabc\r\n0\r\n\r\n").await.unwrap();
    let mut out = buf[..n].to_vec();
    read_until_closed(&mut rd, &mut out, Duration::from_secs(10), "the gateway hung").await;
    let resp = String::from_utf8_lossy(&out);
    assert!(resp.contains("HTTP/1.1 200"), "{resp}");
    let up = &s.rec.seen()[0];
    assert_eq!(up.body.as_deref(), Some(&b"abc"[..]));
    assert!(up.all("expect").is_empty(), "the upstream was asked to wait for a body already read");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    let s = stack("").await;
    let mut req = Vec::new();
    for i in 1..=3 {
        let close = if i == 3 { "Connection: close\r\n" } else { "" };
        req.extend_from_slice(format!("GET /echo/{i} HTTP/1.1\r\nHost: gw.test\r\n{close}\r\n").as_bytes());
    }
    let resp = exchange(s.gw.port, &req).await;
    let answers: Vec<&str> = resp.split("HTTP/1.1 ").filter(|a| !a.is_empty()).collect();
    eprintln!("PIPELINE answers={}", answers.len());
    assert!(!answers.is_empty(), "no answer at all");
    if answers.len() == 1 {
        assert_eq!(header(&resp, "connection"), Some("close"), "one answer without Connection: close: {resp}");
    } else {
        assert_eq!(answers.len(), 3, "{resp}");
        for (i, a) in answers.iter().enumerate() {
            assert!(a.starts_with("200"), "{a}");
            assert!(a.contains(&format!(r#""path":"/echo/{}""#, i + 1)), "out of order: {resp}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed() {
    let s = stack("http:\n  idle_timeout: 1s\n").await;
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", s.gw.port)).await.unwrap();
    conn.write_all(b"GET /echo/1 HTTP/1.1\r\nHost: gw.test\r\n\r\n").await.unwrap();
    let started = std::time::Instant::now();
    let mut out = Vec::new();
    // The answer, then the close after a second of silence (not Pingora's unbounded wait).
    read_until_closed(&mut conn, &mut out, Duration::from_secs(8), "an idle connection was kept open").await;
    let resp = String::from_utf8_lossy(&out);
    assert_eq!(status(&resp), 200, "{resp}");
    assert!(started.elapsed() >= Duration::from_millis(900));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_request_heads_are_cut_off() {
    let s = stack("http:\n  header_read_timeout: 1s\n").await;
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", s.gw.port)).await.unwrap();
    conn.write_all(b"GET /echo/1 HTTP/1.1\r\nHost: gw.test\r\n").await.unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 1024];
    // Closed after a second without the rest of the head (Pingora alone waits 60 s).
    let n = tokio::time::timeout(Duration::from_secs(8), conn.read(&mut buf))
        .await
        .expect("a slow head was waited for")
        .unwrap_or(0);
    assert_eq!(n, 0, "{}", String::from_utf8_lossy(&buf[..n]));
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(s.rec.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_is_a_408() {
    let s = stack("http:\n  body_read_timeout: 1s\n").await;
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", s.gw.port)).await.unwrap();
    conn.write_all(b"POST /upload HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab")
        .await
        .unwrap();
    let mut out = Vec::new();
    read_until_closed(&mut conn, &mut out, Duration::from_secs(8), "a stalled body was waited for").await;
    let resp = String::from_utf8_lossy(&out);
    assert_eq!(status(&resp), 408, "{resp}");
    assert_eq!(json_body(&resp)["reason"], "request_timeout");
    assert_eq!(s.rec.count(), 0);
}
