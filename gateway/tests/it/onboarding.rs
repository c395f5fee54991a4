//! Tenant onboarding end to end over real processes: a tenant created with one
//! `POST /admin/tenants` on the sidecar is accepted at a running gateway (signed and
//! encrypted tokens) without a config edit or reload, and refused promptly after
//! `DELETE /admin/tenants/{id}`; a YAML tenant of the same id wins over the
//! discovered one; with the sidecar down the last tenant list stays in force (a
//! reload meanwhile re-applies it); the
//! admin API answers with the names its POST body takes and the true `enc_alg`; the
//! internal tenant list needs the gateway credential and answers 304 when unchanged.

use crate::support::{Gateway, Sidecar, SIDECAR_ADMIN, SIDECAR_GATEWAY};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use testkit::EchoServer;

const TENANTS: &str =
    "  - { id: h1, alg: ES256, issuer: https://kms.test/h1, audience: api, rotation: { interval: 1d } }\n";

/// A gateway config with the YAML tenant `h1` (issuer `h1_issuer`), the sidecar's
/// JWKS, decryption keys, revocation feed and tenant list (polled every 200 ms).
fn config(sidecar: &Sidecar, echo: &EchoServer, dir: &std::path::Path, h1_issuer: &str) -> String {
    let token_file = crate::support::gateway_token_file(dir, "gateway.token");
    format!(
        r#"
keys:
  url_template: "{base}/jwk/{{tenant}}"
  refresh_floor: 60s
  unknown_kid_cooldown: 1s
tenants:
  h1: {{ issuer: "{h1_issuer}", audiences: [api], algorithms: [ES256] }}
decryption:
  url_template: "{internal}/internal/v1/tenants/{{tenant}}/decryption-keys"
  token_file: {token}
tenant_discovery:
  url: {internal}/internal/v1/tenants
  token_file: {token}
  interval: 200ms
upstreams:
  echo: {{ peers: ["{echo}"] }}
routes:
  - {{ name: echo, prefix: /echo, upstream: echo }}
  - {{ name: lab-2-only, prefix: /lab-2, upstream: echo, tenants: [lab-2] }}
revocation:
  feed_url: {internal}/internal/v1/revocations
  token_file: {token}
  poll_wait: 20s
"#,
        base = sidecar.base,
        echo = echo.addr,
        internal = sidecar.internal,
        token = token_file.display(),
    )
}

/// Status and reason of a GET of `/echo` with `token`.
async fn answer(gw: &Gateway, token: &str) -> (u16, String) {
    let r = reqwest::Client::new().get(gw.url("/echo")).bearer_auth(token).send().await.unwrap();
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    (status, body["reason"].as_str().unwrap_or("").to_owned())
}

/// Polls until `token` gets an answer `ok` accepts; returns it and how long it took.
async fn until(gw: &Gateway, token: &str, bound: Duration, ok: impl Fn(&(u16, String)) -> bool) -> Duration {
    let started = Instant::now();
    loop {
        let got = answer(gw, token).await;
        if ok(&got) {
            return started.elapsed();
        }
        assert!(started.elapsed() < bound, "still {got:?} after {:?}\n{}", started.elapsed(), gw.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An admin request to the sidecar; status and JSON answer.
async fn admin(sidecar: &Sidecar, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = reqwest::Client::new().request(method, format!("{}{path}", sidecar.base)).bearer_auth(SIDECAR_ADMIN);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn create(sidecar: &Sidecar, body: Value) -> Value {
    let (status, answer) = admin(sidecar, reqwest::Method::POST, "/admin/tenants", Some(body)).await;
    assert_eq!(status, 201, "{answer}");
    answer
}

/// The value of the metric line starting with `series` (0 if absent).
async fn metric(gw: &Gateway, series: &str) -> i64 {
    let text = reqwest::get(gw.admin_url("/metrics")).await.unwrap().text().await.unwrap();
    text.lines().find_map(|l| l.strip_prefix(series)?.trim().parse().ok()).unwrap_or(0)
}

async fn stack(h1_issuer: &str) -> (Sidecar, EchoServer, Gateway, tempfile::TempDir) {
    let sidecar = Sidecar::start("60s", TENANTS).await;
    let echo = EchoServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start_logging(&config(&sidecar, &echo, dir.path(), h1_issuer), "info").await;
    (sidecar, echo, gw, dir)
}

fn lab(id: &str) -> Value {
    json!({"id": id, "alg": "ES256", "issuer": format!("https://kms.test/{id}"), "audiences": ["api"],
           "enc_alg": "ECDH-ES+A256KW", "rotation_interval_secs": 86400})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_created_on_the_sidecar_is_accepted_without_reload_and_refused_after_deletion() {
    let (sidecar, _echo, gw, _dir) = stack("https://kms.test/h1").await;
    let h1 = sidecar.mint("h1", "u", "doctor", 300).await;
    until(&gw, &h1, Duration::from_secs(10), |a| a.0 == 200).await;

    create(&sidecar, lab("lab-1")).await;
    let signed = sidecar.mint("lab-1", "u1", "doctor", 300).await;
    let encrypted = sidecar.mint_encrypted("lab-1", "u1", "doctor", 300).await;
    let took = until(&gw, &signed, Duration::from_secs(5), |a| a.0 == 200).await;
    assert_eq!(answer(&gw, &encrypted).await.0, 200, "its decryption keys were discovered too");
    assert!(took < Duration::from_secs(5), "accepted within seconds ({took:?})");
    assert_eq!(metric(&gw, "gateway_discovered_tenants").await, 2);
    assert!(metric(&gw, "gateway_tenant_discovery_total{result=\"changed\"}").await >= 1);
    assert_eq!(metric(&gw, "gateway_config_reloads_total{result=\"ok\"}").await, 0, "no reload");

    let (status, _) = admin(&sidecar, reqwest::Method::DELETE, "/admin/tenants/lab-1", None).await;
    assert_eq!(status, 204);
    let refused = |a: &(u16, String)| a.0 == 401 && (a.1 == "token_revoked" || a.1 == "tenant_unknown");
    let took = until(&gw, &signed, Duration::from_secs(3), refused).await;
    assert!(took < Duration::from_secs(3), "refused promptly ({took:?})");
    // Once the list without it is applied, the tenant is unknown again.
    until(&gw, &signed, Duration::from_secs(5), |a| *a == (401, "tenant_unknown".to_owned())).await;
    assert_eq!(answer(&gw, &encrypted).await.0, 401);
    assert_eq!(answer(&gw, &h1).await.0, 200, "the YAML tenant is untouched");
}

/// A route may be scoped to a tenant only the sidecar's list has: refused to others
/// (`forbidden_tenant`) before and after the tenant exists, open to its tokens once
/// discovered, and the gateway warns while the tenant is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_can_be_scoped_to_a_tenant_created_on_the_sidecar() {
    let (sidecar, _echo, gw, _dir) = stack("https://kms.test/h1").await;
    let h1 = sidecar.mint("h1", "u", "doctor", 300).await;
    until(&gw, &h1, Duration::from_secs(10), |a| a.0 == 200).await;
    let lab2 = |token: String| {
        let url = gw.url("/lab-2/results");
        async move {
            let r = reqwest::Client::new().get(url).bearer_auth(token).send().await.unwrap();
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            (status, body["reason"].as_str().unwrap_or("").to_owned())
        }
    };
    assert_eq!(lab2(h1.clone()).await, (403, "forbidden_tenant".to_owned()));
    assert!(
        gw.log().contains("a route names a tenant neither the config file nor the sidecar's list has")
            && gw.log().contains("lab-2"),
        "{}",
        gw.log()
    );

    create(&sidecar, lab("lab-2")).await;
    let token = sidecar.mint("lab-2", "u2", "doctor", 300).await;
    until(&gw, &token, Duration::from_secs(5), |a| a.0 == 200).await;
    assert_eq!(lab2(token).await.0, 200, "the discovered tenant's token passes its route");
    assert_eq!(lab2(h1).await, (403, "forbidden_tenant".to_owned()), "other tenants stay refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_yaml_tenant_wins_over_a_discovered_one_of_the_same_id() {
    // The YAML h1 expects another issuer than the sidecar's h1 tokens carry.
    let (sidecar, _echo, gw, _dir) = stack("https://elsewhere.test/h1").await;
    create(&sidecar, lab("lab-2")).await;
    let probe = sidecar.mint("lab-2", "u", "doctor", 300).await;
    until(&gw, &probe, Duration::from_secs(5), |a| a.0 == 200).await;
    let h1 = sidecar.mint("h1", "u", "doctor", 300).await;
    assert_eq!(answer(&gw, &h1).await, (401, "issuer_invalid".to_owned()), "the YAML h1 is in force");
    assert!(gw.log().contains("the file's settings win"), "the clash is logged:\n{}", gw.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_sidecar_down_the_last_tenant_list_stays_in_force() {
    let (mut sidecar, _echo, gw, _dir) = stack("https://kms.test/h1").await;
    create(&sidecar, lab("lab-3")).await;
    let token = sidecar.mint("lab-3", "u", "doctor", 300).await;
    until(&gw, &token, Duration::from_secs(5), |a| a.0 == 200).await;

    sidecar.stop();
    let errors = "gateway_tenant_discovery_total{result=\"error\"}";
    let started = Instant::now();
    while metric(&gw, errors).await < 3 {
        assert!(started.elapsed() < Duration::from_secs(10), "discovery errors are counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(answer(&gw, &token).await.0, 200, "the discovered tenant is kept");
    assert_eq!(metric(&gw, "gateway_discovered_tenants").await, 2);
    assert!(gw.log().contains("tenant discovery unavailable"), "{}", gw.log());
    // A reload meanwhile re-applies the last list: the tenant stays.
    gw.hup();
    let started = Instant::now();
    while metric(&gw, "gateway_config_reloads_total{result=\"ok\"}").await < 1 {
        assert!(started.elapsed() < Duration::from_secs(10), "reloaded:\n{}", gw.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(answer(&gw, &token).await.0, 200, "a reload keeps the discovered tenant");

    sidecar.restart().await;
    let before = metric(&gw, "gateway_tenant_discovery_total{result=\"unchanged\"}").await;
    let started = Instant::now();
    while metric(&gw, "gateway_tenant_discovery_total{result=\"unchanged\"}").await <= before {
        assert!(started.elapsed() < Duration::from_secs(10), "discovery resumes");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(answer(&gw, &token).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_answers_with_its_body_names_and_the_enc_alg_in_force() {
    let sidecar = Sidecar::start("60s", TENANTS).await;
    let ecdh = lab("lab-4");
    let posted = create(&sidecar, ecdh.clone()).await;
    // The older spelling, and no enc_alg: the keys are RSA-OAEP-256 ones.
    let old = json!({"id": "lab-5", "alg": "ES256", "issuer": "https://kms.test/lab-5", "audience": "api"});
    create(&sidecar, old).await;

    let (status, list) = admin(&sidecar, reqwest::Method::GET, "/admin/tenants", None).await;
    assert_eq!(status, 200);
    let tenants = list["tenants"].as_array().unwrap();
    assert_eq!(tenants.len(), 3, "{list}");
    let names = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<std::collections::BTreeSet<_>>();
    for t in tenants {
        assert!(names(t).is_superset(&names(&ecdh)), "{t} has every POST name");
        for old_name in ["interval", "max_token_ttl", "clock_skew", "audience"] {
            assert!(t.get(old_name).is_none(), "{t} has no {old_name}");
        }
        // The enc_alg shown is the alg of the encryption key the JWKS holds.
        let id = t["id"].as_str().unwrap();
        let jwks: Value = reqwest::get(format!("{}/jwk/{id}", sidecar.base)).await.unwrap().json().await.unwrap();
        let enc: Vec<&str> = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|k| k["use"] == "enc")
            .filter_map(|k| k["alg"].as_str())
            .collect();
        assert!(!enc.is_empty(), "{jwks}");
        assert!(enc.iter().all(|a| Some(*a) == t["enc_alg"].as_str()), "{t} vs {jwks}");
    }
    let find = |id: &str| tenants.iter().find(|t| t["id"] == id).unwrap().clone();
    assert_eq!(find("lab-4"), posted, "the 201 answer is the tenant as listed");
    assert_eq!(find("lab-4")["enc_alg"], "ECDH-ES+A256KW");
    assert_eq!(find("lab-5")["enc_alg"], "RSA-OAEP-256", "never null");
    assert_eq!(find("lab-5")["audiences"], json!(["api"]));
    // A listed tenant posted back is a valid body (same names both ways).
    let mut again = find("lab-4");
    again["id"] = json!("lab-6");
    create(&sidecar, again).await;
    let two = json!({"id": "lab-7", "alg": "ES256", "issuer": "i", "audiences": ["a", "b"]});
    let (status, answer) = admin(&sidecar, reqwest::Method::POST, "/admin/tenants", Some(two)).await;
    assert_eq!(status, 400, "the sidecar issues one aud: {answer}");

    // The gateway channel's list: credential required, ETag and 304.
    let url = format!("{}/internal/v1/tenants", sidecar.internal);
    let http = reqwest::Client::new();
    assert_eq!(http.get(&url).bearer_auth(SIDECAR_ADMIN).send().await.unwrap().status(), 401);
    let r = http.get(&url).bearer_auth(SIDECAR_GATEWAY).send().await.unwrap();
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    let list: Value = r.json().await.unwrap();
    assert_eq!(format!("\"{}\"", list["version"].as_str().unwrap()), etag);
    let lab4 = list["tenants"].as_array().unwrap().iter().find(|t| t["id"] == "lab-4").unwrap();
    assert_eq!(
        lab4,
        &json!({"id": "lab-4", "issuer": "https://kms.test/lab-4", "audiences": ["api"],
                "algorithms": ["ES256"], "enc_alg": "ECDH-ES+A256KW"})
    );
    let unchanged = http.get(&url).bearer_auth(SIDECAR_GATEWAY).header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(unchanged.status(), 304);
    admin(&sidecar, reqwest::Method::DELETE, "/admin/tenants/lab-6", None).await;
    let changed = http.get(&url).bearer_auth(SIDECAR_GATEWAY).header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(changed.status(), 200, "a deletion changes the version");
}
