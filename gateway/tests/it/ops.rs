//! Start-up behaviour (fail fast / not ready), readiness, and dead upstreams.

use crate::support::{eventually, free_port, standard_config, Gateway};
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use testkit::{claims, jwks, EchoServer, JwksServer, TestKey};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_fast_refuses_to_start_without_required_keys() {
    let dead = format!("http://127.0.0.1:{}/jwk/{{tenant}}", free_port());
    let echo = EchoServer::start().await;
    let (port, admin) = (free_port(), free_port());
    let yaml = format!(
        "listen: 127.0.0.1:{port}\nadmin_listen: 127.0.0.1:{admin}\n{}",
        standard_config(&dead, echo.addr, "  fetch_timeout: 500ms\n  startup: fail_fast")
    );
    let dir = tempfile::tempdir().unwrap();
    let path = crate::support::write_config(&dir, &yaml);
    let (ok, out) = crate::support::run_binary(&["--config", path.to_str().unwrap()]);
    assert!(!ok);
    assert!(out.contains("fail_fast") && out.contains("t1") && out.contains("t2"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_until_keys_load_then_serves() {
    let key = TestKey::load("ec-a.pem", "es-1", Algorithm::ES256);
    let server = JwksServer::start(60).await;
    let echo = EchoServer::start().await;
    let gw = Gateway::start(&standard_config(
        &server.url_template(),
        echo.addr,
        "  startup: not_ready\n  fetch_timeout: 500ms",
    ))
    .await;
    let http = reqwest::Client::new();
    let ready = http.get(gw.admin_url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["tenants_without_keys"], json!(["t1", "t2"]));
    // While keys are missing a valid token gets a 503 with a reason, not a forgery verdict.
    let token = key.mint(&claims("t1", "u", json!("doctor")));
    let resp = http.get(gw.url("/echo")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.json::<Value>().await.unwrap()["reason"], "keys_unavailable");

    server.set("t1", jwks(&[&key]));
    server.set("t2", jwks(&[&TestKey::load("ec-b.pem", "t2-1", Algorithm::ES256)]));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let st = http.get(gw.admin_url("/readyz")).send().await.unwrap().status();
        if st == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "never became ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(http.get(gw.url("/echo")).bearer_auth(&token).send().await.unwrap().status(), 200);
    let metrics = http.get(gw.admin_url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("gateway_requests_total") && metrics.contains("gateway_key_fetches_total"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_upstream_gives_a_json_5xx_quickly_never_a_hang() {
    let key = TestKey::load("ec-a.pem", "es-1", Algorithm::ES256);
    let server = JwksServer::start(60).await;
    server.set("t1", jwks(&[&key]));
    server.set("t2", jwks(&[&key]));
    let dead: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let gw = Gateway::start(&standard_config(&server.url_template(), dead, "")).await;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let token = key.mint(&claims("t1", "u", json!("doctor")));
    let started = Instant::now();
    let resp = http.get(gw.url("/echo")).bearer_auth(&token).send().await.unwrap();
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap();
    assert!(status == 502 || status == 503, "{status} {body}");
    assert!(["upstream_unavailable", "upstream_failed"].contains(&body["reason"].as_str().unwrap()), "{body}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failure_retries_on_another_peer_and_authorization_forwarding_is_optional() {
    let (key, server, echo) = crate::support::keyed_stack().await;
    let dead = free_port();
    let body = standard_config(&server.url_template(), echo.addr, "")
        .replace(
            &format!("peers: [\"{}\"]\n    health_check: {{ path: /healthz, interval: 1s }}", echo.addr),
            &format!("peers: [\"127.0.0.1:{dead}\", \"{}\"]\n    retries: 1", echo.addr),
        )
        .replace("auth:\n", "auth:\n  forward_authorization: true\n");
    assert!(body.contains(&format!("127.0.0.1:{dead}")) && body.contains("forward_authorization"));
    let gw = Gateway::start(&body).await;
    let http = reqwest::Client::new();
    let token = key.mint(&claims("t1", "u", json!("doctor")));
    for _ in 0..6 {
        let resp = http.get(gw.url("/echo")).bearer_auth(&token).send().await.unwrap();
        assert_eq!(resp.status(), 200, "round robin hits the dead peer, the retry goes to the live one");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["headers"]["authorization"], format!("Bearer {token}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_never_contain_tokens_or_key_material_even_at_trace() {
    let key = TestKey::load("rsa-a.pem", "rs-1", Algorithm::RS256);
    let server = JwksServer::start(60).await;
    server.set("t1", jwks(&[&key]));
    server.set("t2", jwks(&[&key]));
    let echo = EchoServer::start().await;
    // The access log goes to stderr here, beside the operational log at trace.
    let body =
        format!("{}\naccess_log: {{ target: stderr }}\n", standard_config(&server.url_template(), echo.addr, ""));
    let gw = Gateway::start_logging(&body, "trace").await;
    let http = reqwest::Client::new();
    let good = key.mint(&claims("t1", "patient-secret-id", json!("doctor")));
    let expired = {
        let mut c = claims("t1", "patient-secret-id", json!("doctor"));
        c["exp"] = json!(testkit::now() - 3600);
        key.mint(&c)
    };
    for t in [&good, &expired, &"garbage.token.value".to_string()] {
        let _ = http.get(gw.url("/echo")).bearer_auth(t).send().await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while gw.log().matches("\"request_id\"").count() < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = gw.log();
    assert_eq!(log.matches("\"request_id\"").count(), 3, "one access line per request: {log}");
    let n = key.jwk()["n"].as_str().unwrap().to_string();
    for secret in [
        &good[..40],
        &good[good.len() - 40..],
        &expired[expired.len() - 40..],
        "garbage.token",
        "patient-secret-id",
        &n[..40],
    ] {
        if let Some(at) = log.find(secret) {
            panic!("log leaked {secret}: ...{}...", &log[at.saturating_sub(300)..at]);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_upstream_times_out_with_504() {
    let (key, server, echo) = crate::support::keyed_stack().await;
    let body =
        standard_config(&server.url_template(), echo.addr, "").replace("read_timeout: 5s", "read_timeout: 300ms");
    let gw = Gateway::start(&body).await;
    let token = key.mint(&claims("t1", "u", json!("doctor")));
    let http = reqwest::Client::new();
    let resp = http.get(gw.url("/echo?sleep_ms=2000")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(resp.status(), 504);
    assert_eq!(resp.headers()["connection"], "close", "the client must not reuse this connection");
    assert_eq!(resp.json::<Value>().await.unwrap()["reason"], "upstream_timeout");
    assert_eq!(http.get(gw.url("/echo?sleep_ms=10")).bearer_auth(&token).send().await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool_and_count_refusals_by_reason() {
    let (key, server, echo) = crate::support::keyed_stack().await;
    let gw = Gateway::start(&standard_config(&server.url_template(), echo.addr, "")).await;
    let http = reqwest::Client::new();
    let token = key.mint(&claims("t1", "u", json!("doctor")));
    http.get(gw.url("/echo")).bearer_auth(&token).send().await.unwrap();
    http.get(gw.url("/echo")).send().await.unwrap();
    http.get(gw.url("/echo")).bearer_auth("a.b.c").send().await.unwrap();
    // Metrics are recorded in the logging phase, just after the response is sent.
    let needles = [
        r#"gateway_denials_total{reason="token_missing"} 1"#,
        r#"gateway_denials_total{reason="token_malformed"} 1"#,
        r#"gateway_requests_total{decision="allow",route="echo",status="200"} 1"#,
        r#"gateway_token_verify_seconds_count{alg="ES256"} 1"#,
        r#"gateway_key_fetches_total{result="ok",tenant="t1",trigger="startup"} 1"#,
    ];
    let deadline = Instant::now() + Duration::from_secs(3);
    let text = loop {
        let text = http.get(gw.admin_url("/metrics")).send().await.unwrap().text().await.unwrap();
        if needles.iter().all(|n| text.contains(n)) || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for needle in needles {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
    match testkit::promtool_check(&text) {
        Some((ok, msg)) => assert!(ok, "promtool: {msg}"),
        None => eprintln!("promtool not installed; skipped the lint outside CI"),
    }
    // Large tenant counts: one aggregated series instead of one per tenant.
    let body =
        format!("{}\nmetrics:\n  tenant_labels: false\n", standard_config(&server.url_template(), echo.addr, ""));
    let gw = Gateway::start(&body).await;
    let all = r#"gateway_key_fetches_total{result="ok",tenant="all",trigger="startup"} 2"#;
    let scrape = || async { http.get(gw.admin_url("/metrics")).send().await.unwrap().text().await.unwrap() };
    eventually("the aggregated key fetch series", Duration::from_secs(5), || async { scrape().await.contains(all) })
        .await;
    let text = scrape().await;
    assert!(text.contains(r#"gateway_key_fetches_total{result="ok",tenant="all",trigger="startup"} 2"#), "{text}");
    assert!(!text.contains(r#"tenant="t1""#), "{text}");
}

/// The access log lines (JSON) in `path` once there are `n` of them.
async fn access_lines(path: &std::path::Path, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.lines().count() >= n || Instant::now() > deadline {
            return text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_file_has_one_json_line_per_request_without_tokens() {
    let key = TestKey::load("rsa-a.pem", "rs-1", Algorithm::RS256);
    let server = JwksServer::start(60).await;
    server.set("t1", jwks(&[&key]));
    server.set("t2", jwks(&[&key]));
    let echo = EchoServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("access.jsonl");
    let body = format!(
        "{}\naccess_log: {{ target: file, path: {}, format: json }}\n",
        standard_config(&server.url_template(), echo.addr, ""),
        file.display()
    );
    let gw = Gateway::start(&body).await;
    let http = reqwest::Client::new();
    let good = key.mint(&claims("t1", "patient-secret-id", json!("doctor")));
    let r = http.get(gw.url("/public/ping?access_token=secret-in-query")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = http.get(gw.url("/patients/p-1/records")).bearer_auth(&good).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let echoed: Value = r.json().await.unwrap();
    let r = http.get(gw.url("/patients/p-1/records")).bearer_auth("garbage.token.value").send().await.unwrap();
    assert_eq!(r.status(), 401);
    let path_token = format!("/echo/{}", &good[..60]);
    let r = http.get(gw.url(&path_token)).send().await.unwrap();
    assert_eq!(r.status(), 401);

    let lines = access_lines(&file, 4).await;
    assert_eq!(lines.len(), 4, "{lines:?}");
    // The writer takes each proxy thread's lines in turn: find each by what it was.
    let line = |path: &str, status: u64| {
        lines.iter().find(|l| l["path"].as_str().is_some_and(|p| p.starts_with(path)) && l["status"] == status).unwrap()
    };
    let (public, allowed) = (line("/public/ping", 200), line("/patients/p-1/records", 200));
    let (refused, in_path) = (line("/patients/p-1/records", 401), line("/echo/", 401));
    assert_eq!((public["route"].as_str(), public["status"].as_u64()), (Some("public"), Some(200)));
    assert_eq!((public["decision"].as_str(), public["upstream"].as_str()), (Some("allow"), Some("echo")));
    assert_eq!(public["path"], "/public/ping", "no query string");
    assert_eq!(public["client_ip"], "127.0.0.1");
    assert_eq!(public["method"], "GET");
    assert!(public.get("tenant").is_none() && public.get("reason").is_none());
    assert_eq!((allowed["route"].as_str(), allowed["tenant"].as_str()), (Some("records"), Some("t1")));
    assert_eq!(allowed["status"], 200);
    assert_eq!(allowed["request_id"], echoed["headers"]["x-request-id"], "the id sent upstream");
    assert_eq!((refused["status"].as_u64(), refused["decision"].as_str()), (Some(401), Some("deny")));
    assert_eq!(refused["reason"], "token_malformed");
    assert_eq!(refused["upstream"], Value::Null);
    assert_eq!(in_path["path"], "/echo/[token]", "a token-shaped path segment is redacted");

    let text = std::fs::read_to_string(&file).unwrap();
    for secret in [&good[..40], &good[good.len() - 40..], "garbage.token", "patient-secret-id", "secret-in-query"] {
        assert!(!text.contains(secret), "access log leaked {secret}: {text}");
    }
    let metrics = http.get(gw.admin_url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("gateway_access_log_dropped_total 0"), "{metrics}");
    assert!(!gw.log().contains("\"request_id\""), "access lines go to the file only");
}
