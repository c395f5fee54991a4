//! End to end with the real kms-sidecar: tokens minted before, during and after
//! scheduled rotations all pass the running gateway with zero refusals, and after an
//! emergency rotation tokens of the removed key are refused while new ones pass.

use crate::support::{token_kid as kid, Gateway, Sidecar};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use testkit::EchoServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotations_never_refuse_a_valid_token_and_emergency_removes_the_old_key() {
    let sidecar = Sidecar::start(
        "1s",
        "  - { id: h1, alg: ES256, issuer: https://kms.test/h1, audience: api, \
         rotation: { interval: 4s, max_token_ttl: 30s, clock_skew: 2s } }\n",
    )
    .await;
    let base = sidecar.base.clone();
    let http = reqwest::Client::new();
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
    let url = gw.url("/echo");
    let (kids, refused, sent) = crate::support::mint_and_replay_all(10, &url, async |n| {
        sidecar.mint("h1", &format!("u{n}"), "doctor", 30).await
    })
    .await;
    assert!(kids.len() >= 3, "several signing keys were used: {kids:?}");
    assert!(
        refused.is_empty(),
        "{} of {sent} valid requests refused: {:?}",
        refused.len(),
        &refused[..refused.len().min(5)]
    );

    // Emergency rotation: the current key is removed at once.
    let victim = sidecar.mint("h1", "victim", "doctor", 30).await;
    assert_eq!(http.get(gw.url("/echo")).bearer_auth(&victim).send().await.unwrap().status(), 200);
    assert_eq!(sidecar.admin("/admin/rotate-key", json!({"tenant": "h1", "use": "sig", "emergency": true})).await, 200);
    let jwks: Value = http.get(format!("{base}/jwk/h1")).send().await.unwrap().json().await.unwrap();
    assert!(jwks["keys"].as_array().unwrap().iter().all(|k| k["kid"] != kid(&victim)), "unpublished at once");
    let fresh = sidecar.mint("h1", "fresh", "doctor", 30).await;
    assert_ne!(kid(&fresh), kid(&victim));
    let deadline = Instant::now() + Duration::from_secs(6);
    loop {
        let st = http.get(gw.url("/echo")).bearer_auth(&victim).send().await.unwrap().status();
        if st == 401 {
            break;
        }
        assert!(Instant::now() < deadline, "token of the removed key still accepted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = http.get(gw.url("/echo")).bearer_auth(&victim).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["reason"], "key_unknown");
    assert_eq!(http.get(gw.url("/echo")).bearer_auth(&fresh).send().await.unwrap().status(), 200);
}
