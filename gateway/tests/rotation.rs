//! End to end with the real kms-sidecar: tokens minted before, during and after
//! scheduled rotations all pass the running gateway with zero refusals, and after an
//! emergency rotation tokens of the removed key are refused while new ones pass.

mod support;

use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::{free_port, Gateway};
use testkit::EchoServer;

const ADMIN: &str = "rotation-test-admin-token";

fn sidecar_binary() -> PathBuf {
    let path = std::path::Path::new(env!("CARGO_BIN_EXE_gateway")).with_file_name("kms-sidecar");
    if !path.exists() {
        let ok = Command::new(env!("CARGO"))
            .args(["build", "-q", "-p", "kms-sidecar"])
            .status()
            .unwrap();
        assert!(ok.success(), "building kms-sidecar failed");
    }
    path
}

struct Sidecar(Child);

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn mint(http: &reqwest::Client, base: &str, sub: &str) -> String {
    let r = http
        .post(format!("{base}/v1/tenants/h1/tokens"))
        .bearer_auth(ADMIN)
        .json(&json!({"sub": sub, "role": "doctor", "ttl_secs": 30}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn kid(token: &str) -> String {
    let h = token.split('.').next().unwrap();
    let v: Value =
        serde_json::from_slice(&gateway_core::b64::decode(h.as_bytes()).unwrap()).unwrap();
    v["kid"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotations_never_refuse_a_valid_token_and_emergency_removes_the_old_key() {
    let dir = tempfile::tempdir().unwrap();
    let (port, internal) = (free_port(), free_port());
    let cfg = dir.path().join("kms.yaml");
    std::fs::write(
        &cfg,
        format!(
            "listen: 127.0.0.1:{port}\ninternal_listen: 127.0.0.1:{internal}\ndata_dir: {}\ncreate_if_missing: true\n\
             master_key: {{ env: KMS_MASTER_KEY }}\nadmin_token: {{ env: KMS_ADMIN_TOKEN }}\ngateway_token: {{ env: KMS_GATEWAY_TOKEN }}\n\
             jwks_max_age: 1s\ntenants:\n  - {{ id: h1, alg: ES256, issuer: https://kms.test/h1, audience: api, \
             rotation: {{ interval: 4s, max_token_ttl: 30s, clock_skew: 2s }} }}\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let _sidecar = Sidecar(
        Command::new(sidecar_binary())
            .args(["serve", "--config", cfg.to_str().unwrap()])
            .env(
                "KMS_MASTER_KEY",
                "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
            )
            .env("KMS_ADMIN_TOKEN", ADMIN)
            .env("KMS_GATEWAY_TOKEN", "rotation-test-gateway-token")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    for _ in 0..200 {
        if http
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let echo = EchoServer::start().await;
    let gw = Gateway::start(&format!(
        r#"
keys:
  url_template: "{base}/jwk/{{tenant}}"
  refresh_floor: 1s
  refresh_ceiling: 2s
  default_max_age: 1s
  unknown_kid_cooldown: 1h
  max_stale: 1h
tenants:
  h1:
    issuer: https://kms.test/h1
    audiences: [api]
    algorithms: [ES256]
headers:
  - {{ claim: sub, header: X-User-Id }}
upstreams:
  echo: {{ peers: ["{}"] }}
routes:
  - {{ name: echo, prefix: /echo, upstream: echo, allow: [ {{ role: doctor }} ] }}
"#,
        echo.addr
    ))
    .await;

    // ~10 s: three scheduled rotations. Every 100 ms a token is minted, and it and
    // every earlier token (all still within their 30 s lifetime) must pass. The
    // unknown-kid refetch is effectively off (1 h cooldown, used once at most), so
    // this proves the publish-ahead order, not the fallback.
    let mut tokens: Vec<String> = Vec::new();
    let mut kids = std::collections::BTreeSet::new();
    let mut refused = Vec::new();
    let mut sent = 0;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        let t = mint(&http, &base, &format!("u{}", tokens.len())).await;
        kids.insert(kid(&t));
        tokens.push(t);
        let sample: Vec<&String> = tokens
            .iter()
            .rev()
            .step_by(7)
            .chain(tokens.first())
            .collect();
        for t in sample {
            let r = http
                .get(gw.url("/echo"))
                .bearer_auth(t)
                .send()
                .await
                .unwrap();
            sent += 1;
            if r.status() != 200 {
                refused.push((
                    kid(t),
                    r.status().as_u16(),
                    r.text().await.unwrap_or_default(),
                ));
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(kids.len() >= 3, "several signing keys were used: {kids:?}");
    assert!(
        refused.is_empty(),
        "{} of {sent} valid requests refused: {:?}",
        refused.len(),
        &refused[..refused.len().min(5)]
    );

    // Emergency rotation: the current key is removed at once.
    let victim = mint(&http, &base, "victim").await;
    assert_eq!(
        http.get(gw.url("/echo"))
            .bearer_auth(&victim)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let r = http
        .post(format!("{base}/admin/rotate-key"))
        .bearer_auth(ADMIN)
        .json(&json!({"tenant": "h1", "use": "sig", "emergency": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let jwks: Value = http
        .get(format!("{base}/jwk/h1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["kid"] != kid(&victim)),
        "unpublished at once"
    );
    let fresh = mint(&http, &base, "fresh").await;
    assert_ne!(kid(&fresh), kid(&victim));
    let deadline = Instant::now() + Duration::from_secs(6);
    loop {
        let st = http
            .get(gw.url("/echo"))
            .bearer_auth(&victim)
            .send()
            .await
            .unwrap()
            .status();
        if st == 401 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "token of the removed key still accepted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = http
        .get(gw.url("/echo"))
        .bearer_auth(&victim)
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["reason"], "key_unknown");
    assert_eq!(
        http.get(gw.url("/echo"))
            .bearer_auth(&fresh)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}
