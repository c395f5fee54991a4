//! The sidecar's input limits over real sockets: slow-loris and idle connections are
//! closed within the header read timeout on both listeners; oversized bodies get 413
//! and oversized headers 431 (or a close), never a hang; admin inputs out of range are
//! refused with 400 naming the field and nothing is stored; a huge mint TTL is
//! refused; identical admin and gateway credentials refuse to start; the store is
//! owner-only.

use crate::support::{tenants, Kms, Sidecar, ADMIN, GATEWAY, T_EC};
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The header read timeout the tests configure.
const HEADER_TIMEOUT: Duration = Duration::from_secs(2);

/// This file's sidecar in `dir` with these credentials, its `limits` extended by
/// `extra_limits` (`, field: value` entries); `init` runs first if there is no store
/// (its outcome shows in `serve`: identical credentials are refused by both).
fn sidecar(dir: &Path, admin: &str, gateway: &str, extra_limits: &str) -> Sidecar {
    let limits = format!(
        "limits: {{ header_read_timeout: {}s, max_body_bytes: 4096, max_header_bytes: 8192, max_headers: 32{extra_limits} }}\n",
        HEADER_TIMEOUT.as_secs()
    );
    let s = Sidecar::new(dir, &format!("{limits}{}", tenants(&[T_EC]))).credentials(admin, gateway);
    if !dir.join("data").exists() {
        let _ = s.run(&["init"]);
    }
    s
}

fn spawn(dir: &Path, admin: &str, gateway: &str, extra_limits: &str) -> (Child, u16, u16) {
    let s = sidecar(dir, admin, gateway, extra_limits);
    (s.spawn(), s.port, s.internal)
}

async fn start(dir: &Path) -> Kms {
    start_with(dir, "").await
}

/// Starts the sidecar with `extra_limits` (`, field: value` entries) added to `limits`.
async fn start_with(dir: &Path, extra_limits: &str) -> Kms {
    sidecar(dir, ADMIN, GATEWAY, extra_limits).start().await
}

/// Reads until the peer closes (EOF or reset) or `within` passes; returns what was
/// read and whether the connection was closed.
async fn read_until_closed(s: &mut TcpStream, within: Duration) -> (String, bool) {
    let deadline = tokio::time::Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), false),
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&got).into_owned(), true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Sends `bytes` (ignoring a reset once the server has answered) and reads the answer.
async fn exchange(port: u16, bytes: &[u8]) -> (String, bool) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let _ = s.write_all(bytes).await;
    read_until_closed(&mut s, Duration::from_secs(10)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loris_and_idle_connections_are_closed_within_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let kms = start(dir.path()).await;
    // 100 connections per listener, each holding a partial request head.
    let mut held = Vec::new();
    for port in [kms.port, kms.internal] {
        for i in 0..100 {
            let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
            s.write_all(format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow-{i}: ").as_bytes()).await.unwrap();
            held.push(s);
        }
    }
    let opened = Instant::now();
    // The server still answers others meanwhile.
    let r = reqwest::get(kms.url("/healthz")).await.unwrap();
    assert_eq!(r.status(), 200);
    let reads = held.iter_mut().map(|s| read_until_closed(s, HEADER_TIMEOUT + Duration::from_secs(8)));
    let results = futures_util::future::join_all(reads).await;
    let closed_after = opened.elapsed();
    assert!(results.iter().all(|(_, closed)| *closed), "every partial connection is closed");
    assert!(results.iter().all(|(text, _)| !text.contains("200 OK")), "no request was served");
    assert!(closed_after >= HEADER_TIMEOUT - Duration::from_millis(500), "closed by the timeout: {closed_after:?}");

    // An idle keep-alive connection is closed after one request, on both listeners.
    for port in [kms.port, kms.internal] {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf).await.unwrap();
        assert!(
            String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&buf[..n])
        );
        let idle = Instant::now();
        let (_, closed) = read_until_closed(&mut s, HEADER_TIMEOUT + Duration::from_secs(8)).await;
        assert!(closed, "an idle keep-alive connection is closed");
        assert!(idle.elapsed() >= HEADER_TIMEOUT - Duration::from_millis(500), "{:?}", idle.elapsed());
    }
}

/// Past `max_connections` a client waits in the accept queue (it is not refused);
/// it is served once the slow-loris connections holding the slots are timed out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_cap_queues_clients_until_a_slot_frees() {
    let dir = tempfile::tempdir().unwrap();
    let kms = start_with(dir.path(), ", max_connections: 4").await;
    // Fill every slot with a partial request head (the accept queue is FIFO, so the
    // request below comes after all of them).
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(("127.0.0.1", kms.port)).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        held.push(s);
    }
    let queued = Instant::now();
    let (text, _) = exchange(kms.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert!(text.starts_with("HTTP/1.1 200"), "served once a slot frees: {text}");
    assert!(queued.elapsed() >= HEADER_TIMEOUT - Duration::from_millis(500), "it waited: {:?}", queued.elapsed());
    for s in &mut held {
        assert!(read_until_closed(s, Duration::from_secs(5)).await.1, "the held connections were closed");
    }
}

/// A body that trickles in (or stops) is cut at the whole-request timeout with a 408
/// (the shortest allowed, 31 s: above the revocation feed's 30 s long poll).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_gets_408_at_the_request_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let kms = start_with(dir.path(), ", request_timeout: 31s").await;
    let head = format!(
        "POST /admin/tenants HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"id\":"
    );
    let sent = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", kms.port)).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    let (text, _) = read_until_closed(&mut s, Duration::from_secs(45)).await;
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(sent.elapsed() >= Duration::from_secs(30), "{:?}", sent.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_get_413_and_oversized_headers_431() {
    let dir = tempfile::tempdir().unwrap();
    let kms = start(dir.path()).await;
    // A declared length over the cap: 413 before the body is read, on both listeners.
    for (port, path, token) in [(kms.port, "/admin/tenants", ADMIN), (kms.internal, "/internal/v1/one-time", GATEWAY)] {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{{\"id\":"
        );
        let (text, _) = exchange(port, head.as_bytes()).await;
        assert!(text.starts_with("HTTP/1.1 413"), "{port}{path}: {text}");
    }
    // A chunked body over the cap (no length announced): 413 too, also through the
    // PEM import's wiped body reader.
    let filler = "a".repeat(3000);
    for path in ["/admin/tenants", "/admin/tenants/t-ec/keys/import"] {
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        for _ in 0..2 {
            req.push_str(&format!("{:x}\r\n{filler}\r\n", filler.len()));
        }
        req.push_str("0\r\n\r\n");
        let (text, _) = exchange(kms.port, req.as_bytes()).await;
        assert!(text.starts_with("HTTP/1.1 413"), "{path}: {text}");
    }
    // Headers over 8 KiB, or more than 32 of them: 431 or a close, never a hang.
    let big = format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "b".repeat(12_000));
    let many = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\n{}\r\n",
        (0..40).map(|i| format!("X-H{i}: v\r\n")).collect::<String>()
    );
    for port in [kms.port, kms.internal] {
        for req in [&big, &many] {
            let (text, closed) = exchange(port, req.as_bytes()).await;
            assert!(closed, "the connection is closed");
            assert!(text.is_empty() || text.starts_with("HTTP/1.1 431"), "{text}");
        }
    }
    let (text, _) = exchange(kms.port, many.as_bytes()).await;
    assert!(text.starts_with("HTTP/1.1 431"), "a fully sent head over the count gets its answer: {text}");
    // Within the limits all is well.
    let r = reqwest::get(kms.url("/healthz")).await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_inputs_are_validated_before_anything_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let kms = start(dir.path()).await;
    let http = reqwest::Client::new();
    let create = |extra: Value| {
        let mut body = json!({"id": "lab-9", "alg": "ES256", "issuer": "https://kms.test/lab-9", "audience": "api"});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        http.post(kms.url("/admin/tenants")).bearer_auth(ADMIN).json(&body).send()
    };
    let cases = [
        (json!({"rotation_interval_secs": -100000}), "rotation_interval_secs"),
        (json!({"rotation_interval_secs": 0}), "rotation_interval_secs"),
        (json!({"rotation_interval_secs": i64::MAX}), "rotation_interval_secs"),
        (json!({"max_token_ttl_secs": i64::MAX}), "max_token_ttl_secs"),
        (json!({"max_token_ttl_secs": 0}), "max_token_ttl_secs"),
        (json!({"clock_skew_secs": -1}), "clock_skew_secs"),
        (json!({"clock_skew_secs": i64::MAX}), "clock_skew_secs"),
        (json!({"id": "x".repeat(300)}), "id"),
        (json!({"id": "Lab/9"}), "id"),
    ];
    for (extra, field) in cases {
        let r = create(extra.clone()).await.unwrap();
        assert_eq!(r.status(), 400, "{extra}");
        let detail = r.json::<Value>().await.unwrap()["detail"].as_str().unwrap().to_owned();
        assert!(detail.starts_with(&format!("{field}: ")), "{extra}: {detail}");
    }
    let listed = || async {
        let t: Value =
            http.get(kms.url("/admin/tenants")).bearer_auth(ADMIN).send().await.unwrap().json().await.unwrap();
        t["tenants"].as_array().unwrap().clone()
    };
    let ids: Vec<Value> = listed().await.iter().map(|t| t["id"].clone()).collect();
    assert_eq!(ids, [json!("t-ec")], "nothing refused was stored");

    // What is stored is the validated value itself.
    let r = create(json!({"rotation_interval_secs": 3600, "max_token_ttl_secs": 600, "clock_skew_secs": 5})).await;
    assert_eq!(r.unwrap().status(), 201);
    let lab = listed().await.into_iter().find(|t| t["id"] == "lab-9").unwrap();
    assert_eq!(
        (lab["rotation_interval_secs"].as_i64(), lab["max_token_ttl_secs"].as_i64(), lab["clock_skew_secs"].as_i64()),
        (Some(3600), Some(600), Some(5))
    );

    // Mint: a TTL past the tenant's maximum is refused (no overflowed, negative exp).
    let mint = |ttl: i64| {
        http.post(kms.url("/v1/tenants/lab-9/tokens"))
            .bearer_auth(ADMIN)
            .json(&json!({"sub": "u", "ttl_secs": ttl}))
            .send()
    };
    for ttl in [i64::MAX, i64::MIN, 0, -1, 601] {
        let r = mint(ttl).await.unwrap();
        assert_eq!(r.status(), 400, "ttl_secs {ttl}");
        assert!(r.json::<Value>().await.unwrap()["detail"].as_str().unwrap().starts_with("ttl_secs: "));
    }
    let token = mint(600).await.unwrap().json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned();
    let payload = token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(&gateway_core::b64::decode(payload.as_bytes()).unwrap()).unwrap();
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 600);
    // Without a TTL the default is capped by the tenant's maximum.
    let r = http.post(kms.url("/v1/tenants/lab-9/tokens")).bearer_auth(ADMIN).json(&json!({"sub": "u"})).send().await;
    assert_eq!(r.unwrap().status(), 201);

    // The store is owner-only.
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir.path().join("data")), 0o700);
    assert_eq!(mode(&dir.path().join("data/keys.redb")), 0o600);
}

#[test]
fn identical_admin_and_gateway_credentials_refuse_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let (child, _, _) = spawn(dir.path(), ADMIN, ADMIN, "");
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("admin_token and gateway_token: must differ"), "{stderr}");
    assert!(!stderr.contains(ADMIN), "the credential is never printed: {stderr}");
}
