//! End-to-end: the real gateway binary in front of an in-process echo upstream, with
//! tenant keys from an in-process JWKS server, all on 127.0.0.1.

use crate::support::{eventually, standard_config, Gateway};
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use testkit::{claims, jwks, EchoServer, JwksServer, TestKey};

struct Keys {
    rs: TestKey,
    ps: TestKey,
    es: TestKey,
    ed: TestKey,
    t2: TestKey,
}

fn keys() -> Keys {
    Keys {
        rs: TestKey::load("rsa-a.pem", "rs-1", Algorithm::RS256),
        ps: TestKey::load("rsa-b.pem", "ps-1", Algorithm::PS256),
        es: TestKey::load("ec-a.pem", "es-1", Algorithm::ES256),
        ed: TestKey::load("ed-a.pem", "ed-1", Algorithm::EdDSA),
        t2: TestKey::load("ec-b.pem", "t2-es-1", Algorithm::ES256),
    }
}

struct Stack {
    gw: Gateway,
    jwks: JwksServer,
    echo: EchoServer,
    keys: Keys,
    http: reqwest::Client,
}

async fn stack() -> Stack {
    let k = keys();
    let jwks_server = JwksServer::start(300).await;
    jwks_server.set("t1", jwks(&[&k.rs, &k.ps, &k.es, &k.ed]));
    jwks_server.set("t2", jwks(&[&k.t2]));
    let echo = EchoServer::start().await;
    let gw = Gateway::start(&standard_config(&jwks_server.url_template(), echo.addr, "")).await;
    Stack { gw, jwks: jwks_server, echo, keys: k, http: reqwest::Client::new() }
}

impl Stack {
    async fn get(
        &self,
        path: &str,
        token: Option<&str>,
        extra: &[(&str, &str)],
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        self.send(reqwest::Method::GET, path, token, extra).await
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        extra: &[(&str, &str)],
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        crate::support::send(&self.http, method, self.gw.url(path), token, extra).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_algorithm_passes_and_identity_headers_reach_the_upstream() {
    let s = stack().await;
    for key in [&s.keys.rs, &s.keys.ps, &s.keys.es, &s.keys.ed] {
        let token = key.mint(&claims("t1", "u-1", json!(["doctor", "researcher"])));
        let (status, body, _) = s
            .get("/echo/x", Some(&token), &[("x-user-id", "admin"), ("X-Tenant-Id", "t2"), ("x-user-role", "admin")])
            .await;
        assert_eq!(status, 200, "{:?}: {body}", key.alg);
        let h = &body["headers"];
        assert_eq!(h["x-user-id"], "u-1", "spoofed header replaced, not appended");
        assert_eq!(h["x-tenant-id"], "t1");
        assert_eq!(h["x-user-role"], "doctor,researcher");
        assert!(h["x-token-id"].as_str().unwrap().starts_with("jti-u-1"));
        assert!(h.get("authorization").is_none(), "Authorization is not forwarded by default");
    }
    // A token without jti: the spoofed X-Token-Id is still stripped.
    let mut c = claims("t1", "u-2", json!("doctor"));
    c.as_object_mut().unwrap().remove("jti");
    let (status, body, _) = s.get("/echo", Some(&s.keys.rs.mint(&c)), &[("x-token-id", "forged")]).await;
    assert_eq!(status, 200);
    assert!(body["headers"].get("x-token-id").is_none(), "{body}");
    // Public route: no token needed, and spoofed identity never passes through.
    let (status, body, _) = s.get("/public/ping", None, &[("x-user-id", "admin"), ("x-user-role", "doctor")]).await;
    assert_eq!(status, 200);
    assert!(body["headers"].get("x-user-id").is_none() && body["headers"].get("x-user-role").is_none(), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_has_its_status_and_reason_and_never_a_5xx() {
    let s = stack().await;
    let k = &s.keys;
    let good = claims("t1", "u-1", json!("doctor"));
    let with = |name: &str, v: Value| {
        let mut c = good.clone();
        if v.is_null() {
            c.as_object_mut().unwrap().remove(name);
        } else {
            c[name] = v;
        }
        c
    };
    let now = testkit::now();
    let valid = k.rs.mint(&good);
    let sig_at = valid.rfind('.').unwrap();
    let forged = format!("{}.{}", &valid[..sig_at], testkit::b64(&[7u8; 256]));
    let unsigned = format!("{}.{}.", testkit::b64(br#"{"alg":"none"}"#), testkit::b64(good.to_string().as_bytes()));
    let big = k.rs.mint(&with("pad", json!("x".repeat(9000))));
    let unknown_kid = TestKey { kid: "nope".into(), ..k.rs.clone() }.mint(&good);
    let cases: Vec<(String, Option<String>, u16, &str)> =
        vec![
            ("missing".into(), None, 401, "token_missing"),
            ("malformed".into(), Some("abc.def".into()), 401, "token_malformed"),
            ("garbage".into(), Some("a.b.c".into()), 401, "token_malformed"),
            ("forged".into(), Some(forged), 401, "signature_invalid"),
            ("expired".into(), Some(k.rs.mint(&with("exp", json!(now - 120)))), 401, "token_expired"),
            ("nbf".into(), Some(k.rs.mint(&with("nbf", json!(now + 120)))), 401, "token_not_yet_valid"),
            ("issuer".into(), Some(k.rs.mint(&with("iss", json!("https://evil.test")))), 401, "issuer_invalid"),
            ("audience".into(), Some(k.rs.mint(&with("aud", json!("other")))), 401, "audience_invalid"),
            ("tenant".into(), Some(k.rs.mint(&with("tenant_id", json!("t9")))), 401, "tenant_unknown"),
            ("alg none".into(), Some(unsigned), 401, "token_malformed"),
            (
                "alg none signed".into(),
                Some(format!("{}.{}.c2ln", testkit::b64(br#"{"alg":"none"}"#), testkit::b64(b"{}"))),
                401,
                "algorithm_not_allowed",
            ),
            (
                "alg not for tenant".into(),
                Some(k.rs.mint(&claims("t2", "u", json!("doctor")))),
                401,
                "algorithm_not_allowed",
            ),
            ("too large".into(), Some(big), 401, "token_too_large"),
            ("jwe".into(), Some("eyJhbGciOiJSU0EtT0FFUC0yNTYifQ.a.b.c.d".into()), 401, "encryption_unsupported"),
            ("unknown kid".into(), Some(unknown_kid), 401, "key_unknown"),
            (
                "crit".into(),
                Some(k.rs.mint_raw(r#"{"alg":"RS256","kid":"rs-1","crit":["x"]}"#, &good.to_string())),
                401,
                "header_unsupported",
            ),
            (
                "jku".into(),
                Some(k.rs.mint_raw(r#"{"alg":"RS256","kid":"rs-1","jku":"http://127.0.0.1:9/x"}"#, &good.to_string())),
                401,
                "header_unsupported",
            ),
            (
                "dup claims".into(),
                Some(k.rs.mint_raw(
                    r#"{"alg":"RS256","kid":"rs-1"}"#,
                    &good.to_string().replacen('{', r#"{"sub":"admin","#, 1),
                )),
                401,
                "token_malformed",
            ),
            ("missing sub".into(), Some(k.rs.mint(&with("sub", Value::Null))), 401, "claim_missing"),
            ("cross tenant kid".into(), Some(k.t2.mint(&claims("t1", "u", json!("doctor")))), 401, "key_unknown"),
        ];
    for (name, token, status, reason) in cases {
        let (got, body, headers) = s.get("/echo/a", token.as_deref(), &[]).await;
        assert_eq!((got, body["reason"].as_str()), (status, Some(reason)), "{name}: {body}");
        let challenge = headers.get("www-authenticate").unwrap().to_str().unwrap();
        assert!(challenge.starts_with("Bearer"), "{name}");
        if reason != "token_missing" {
            assert!(challenge.contains(r#"error="invalid_token""#), "{name}: {challenge}");
        }
        if let Some(t) = &token {
            assert!(!body.to_string().contains(&t[..t.len().min(20)]), "{name}: token echoed back");
        }
    }
    // Other schemes and several Authorization headers.
    let (st, body, _) = s.get("/echo", None, &[("authorization", "Basic dXNlcjpwdw==")]).await;
    assert_eq!((st, body["reason"].as_str()), (401, Some("token_missing")));
    let (st, body, _) = s.get("/echo", None, &[("authorization", &format!("bEaReR {valid}"))]).await;
    assert_eq!(st, 200, "scheme is case-insensitive: {body}");
    // No route, wrong method, hostile path.
    assert_eq!(s.get("/nowhere", Some(&valid), &[]).await.0, 404);
    assert_eq!(s.send(reqwest::Method::DELETE, "/patients/u-1/records", Some(&valid), &[]).await.0, 405);
    for raw in ["/echo/../patients/p-2/records", "/echo/%2e%2e/patients/p-2/records", "/echo//x"] {
        let resp = crate::support::raw_get(s.gw.port, raw, &valid).await;
        assert!(resp.starts_with("HTTP/1.1 404"), "{raw}: {resp}");
        assert!(resp.contains("route_not_found"), "{raw}: {resp}");
    }
    assert_eq!(
        s.echo.hits.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "only the one valid request reached the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_policy_gives_403_with_reason() {
    let s = stack().await;
    let k = &s.keys;
    let patient = k.es.mint(&claims("t1", "p-100", json!("patient")));
    let doctor = k.es.mint(&claims("t1", "d-1", json!(["doctor"])));
    let lab = k.es.mint(&claims("t1", "l-1", json!("lab")));
    let cases: Vec<(reqwest::Method, &str, &str, u16, Option<&str>)> = vec![
        (reqwest::Method::GET, "/patients/p-100/records", &patient, 200, None),
        (reqwest::Method::GET, "/patients/p-101/records", &patient, 403, Some("forbidden_owner")),
        (reqwest::Method::PUT, "/patients/p-100/records", &patient, 403, Some("forbidden_method")),
        (reqwest::Method::GET, "/patients/p-101/records", &doctor, 200, None),
        (reqwest::Method::PUT, "/patients/p-101/records", &doctor, 200, None),
        (reqwest::Method::GET, "/patients/p-101/records", &lab, 403, Some("forbidden_role")),
        (reqwest::Method::POST, "/labs/results", &lab, 200, None),
        (reqwest::Method::POST, "/labs/results", &doctor, 403, Some("forbidden_role")),
    ];
    for (method, path, token, status, reason) in cases {
        let (got, body, headers) = s.send(method.clone(), path, Some(token), &[]).await;
        assert_eq!(got, status, "{method} {path}: {body}");
        if let Some(reason) = reason {
            assert_eq!(body["reason"], reason);
            assert_eq!(headers["www-authenticate"], r#"Bearer error="insufficient_scope""#);
        }
    }
    // Insurance routes cap token lifetime at 5 minutes: a 10-minute token is refused.
    let insurer = k.es.mint(&claims("t1", "i-1", json!("insurer")));
    let (st, body, _) = s.get("/insurance/p-100/summary", Some(&insurer), &[]).await;
    assert_eq!((st, body["reason"].as_str()), (401, Some("lifetime_exceeded")));
    let mut short = claims("t1", "i-1", json!("insurer"));
    short["exp"] = json!(testkit::now() + 240);
    assert_eq!(s.get("/insurance/p-100/summary", Some(&k.es.mint(&short)), &[]).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_server_outage_and_rotation_through_unknown_kid_refetch() {
    let s = stack().await;
    let token = s.keys.rs.mint(&claims("t1", "u-1", json!("doctor")));
    assert_eq!(s.get("/echo", Some(&token), &[]).await.0, 200);

    // A new key is published: the first token naming it triggers one refetch.
    let fetches_before = s.jwks.fetches("t1");
    let new_key = TestKey::load("ec-b.pem", "rotated-2", Algorithm::ES256);
    s.jwks.set("t1", jwks(&[&s.keys.rs, &s.keys.ps, &s.keys.es, &s.keys.ed, &new_key]));
    let fresh = new_key.mint(&claims("t1", "u-2", json!("doctor")));
    let (st, body, _) = s.get("/echo", Some(&fresh), &[]).await;
    assert_eq!(st, 200, "new key picked up without restart: {body}");
    assert_eq!(s.jwks.fetches("t1"), fetches_before + 1);

    // A burst of random kids within the cooldown causes no further fetch.
    let mut tasks = Vec::new();
    for i in 0..40 {
        let t = TestKey { kid: format!("random-{i}"), ..s.keys.rs.clone() }.mint(&claims("t1", "u", json!("doctor")));
        let (http, url) = (s.http.clone(), s.gw.url("/echo"));
        tasks.push(tokio::spawn(async move { http.get(url).bearer_auth(t).send().await.unwrap().status().as_u16() }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 401);
    }
    assert_eq!(s.jwks.fetches("t1"), fetches_before + 1, "no fetch storm");

    // The key server goes down: the last good keys keep serving.
    s.jwks.stop();
    let down = || async { tokio::net::TcpStream::connect(s.jwks.addr).await.is_err() };
    eventually("the key server to stop", std::time::Duration::from_secs(5), down).await;
    assert_eq!(s.get("/echo", Some(&token), &[]).await.0, 200);
    assert_eq!(s.get("/echo", Some(&fresh), &[]).await.0, 200);
    let ready = s.http.get(s.gw.admin_url("/readyz")).send().await.unwrap().status();
    assert_eq!(ready, 200);
}
