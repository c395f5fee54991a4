//! Revocation through the real sidecar's feed: a revoked token, subject or tenant is
//! refused by the running gateway within one second of the revoke call; an
//! emergency key removal is refused without waiting for the JWKS cache; a gateway
//! that loses the sidecar keeps its last revocation state and says so.

use crate::support::{claims_of, Gateway, Sidecar, SIDECAR_GATEWAY};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use testkit::EchoServer;

async fn refused_within(http: &reqwest::Client, url: &str, token: &str, bound: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let r = http.get(url).bearer_auth(token).send().await.unwrap();
        let status = r.status();
        if status != 200 && status != 401 {
            panic!("unexpected {status}: {}", r.text().await.unwrap());
        }
        if status == 401 {
            assert_eq!(r.json::<Value>().await.unwrap()["reason"], "token_revoked");
            return started.elapsed();
        }
        assert!(started.elapsed() < bound, "still accepted after {:?}", started.elapsed());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_reach_the_gateway_within_a_second() {
    let mut sidecar = Sidecar::start(
        "60s",
        "  - { id: h1, alg: ES256, issuer: https://kms.test/h1, audience: api, rotation: { interval: 1d } }\n\
         \x20 - { id: h2, alg: RS256, issuer: https://kms.test/h2, audience: api, rotation: { interval: 1d } }\n",
    )
    .await;
    let echo = EchoServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("gateway.token");
    std::fs::write(&token_file, SIDECAR_GATEWAY).unwrap();
    let gw = Gateway::start(&format!(
        r#"
keys:
  url_template: "{}/jwk/{{tenant}}"
  refresh_floor: 60s
  unknown_kid_cooldown: 30s
tenants:
  h1: {{ issuer: https://kms.test/h1, audiences: [api], algorithms: [ES256] }}
  h2: {{ issuer: https://kms.test/h2, audiences: [api], algorithms: [RS256] }}
upstreams:
  echo: {{ peers: ["{}"] }}
routes:
  - {{ name: echo, prefix: /echo, upstream: echo }}
revocation:
  feed_url: {}/internal/v1/revocations
  token_file: {}
  poll_wait: 20s
"#,
        sidecar.base,
        echo.addr,
        sidecar.internal,
        token_file.display()
    ))
    .await;
    let http = reqwest::Client::new();
    let url = gw.url("/echo");
    let ok = |t: &str| {
        let (http, url, t) = (http.clone(), url.clone(), t.to_owned());
        async move { http.get(url).bearer_auth(t).send().await.unwrap().status().as_u16() }
    };

    // One token by jti.
    let a = sidecar.mint("h1", "alice", "doctor", 600).await;
    let a2 = sidecar.mint("h1", "alice", "doctor", 600).await;
    assert_eq!(ok(&a).await, 200);
    tokio::time::sleep(Duration::from_millis(300)).await; // the follower is parked in its long poll
    let c = claims_of(&a);
    assert_eq!(sidecar.admin("/admin/revoke", json!({"tenant": "h1", "jti": c["jti"], "exp": c["exp"]})).await, 200);
    let took = refused_within(&http, &url, &a, Duration::from_secs(1)).await;
    eprintln!("jti revocation reached the gateway in {took:?}");
    assert_eq!(ok(&a2).await, 200, "only that token");

    // Every token of a subject issued up to now.
    let b = sidecar.mint("h1", "bob", "doctor", 600).await;
    assert_eq!(ok(&b).await, 200);
    assert_eq!(sidecar.admin("/admin/revoke", json!({"tenant": "h1", "subject": "bob"})).await, 200);
    refused_within(&http, &url, &b, Duration::from_secs(1)).await;
    assert_eq!(ok(&a2).await, 200, "other subjects unaffected");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let b_new = sidecar.mint("h1", "bob", "doctor", 600).await;
    assert_eq!(ok(&b_new).await, 200, "tokens issued after the watermark pass");

    // A whole tenant.
    let h2 = sidecar.mint("h2", "carol", "doctor", 600).await;
    assert_eq!(ok(&h2).await, 200);
    assert_eq!(sidecar.admin("/admin/revoke", json!({"tenant": "h2"})).await, 200);
    refused_within(&http, &url, &h2, Duration::from_secs(1)).await;
    assert_eq!(ok(&a2).await, 200, "other tenants unaffected");

    // Emergency rotation: the removed key's tokens are refused at once, although the
    // gateway's JWKS cache (60 s) still holds the key.
    let victim = sidecar.mint("h1", "dave", "doctor", 600).await;
    assert_eq!(ok(&victim).await, 200);
    assert_eq!(sidecar.admin("/admin/rotate-key", json!({"tenant": "h1", "use": "sig", "emergency": true})).await, 200);
    refused_within(&http, &url, &victim, Duration::from_secs(1)).await;
    assert_eq!(ok(&a2).await, 401, "every token of the removed key");
    let fresh = sidecar.mint("h1", "erin", "doctor", 600).await;
    assert_eq!(ok(&fresh).await, 200, "the new key's tokens pass (unknown-kid refetch)");

    // The sidecar goes away: the last state stays in force and readiness says so.
    let metrics = http.get(gw.admin_url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("gateway_revocation_feed_up 1"), "{metrics}");
    sidecar.stop();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready: Value = http.get(gw.admin_url("/readyz")).send().await.unwrap().json().await.unwrap();
        if ready["revocation_feed"] == "unreachable" {
            assert_eq!(ready["status"], "ready", "keeps serving on its last state");
            break;
        }
        assert!(Instant::now() < deadline, "feed loss never reported: {ready}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(ok(&a).await, 401);
    assert_eq!(ok(&b).await, 401);
    assert_eq!(ok(&fresh).await, 200);
    let metrics = http.get(gw.admin_url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("gateway_revocation_feed_up 0"), "{metrics}");
}
