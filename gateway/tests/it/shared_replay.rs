//! Gateways side by side share one-time token ids through the kms-sidecar: a token
//! used at one gateway is a replay at the other, of two racing uses at two gateways
//! exactly one passes, and when the shared store is down one-time routes fail closed
//! (503 `replay_store_unavailable`) while other routes keep working.

use crate::support::{Gateway, Sidecar, SIDECAR_GATEWAY};
use serde_json::Value;
use testkit::EchoServer;

async fn gateway(sidecar: &Sidecar, echo: &EchoServer, token_file: &std::path::Path) -> Gateway {
    Gateway::start(&format!(
        r#"
keys:
  url_template: "{base}/jwk/{{tenant}}"
replay_store:
  url: "{internal}/internal/v1/one-time"
  token_file: "{token}"
  timeout: 500ms
tenants:
  h1:
    issuer: https://kms.test/h1
    audiences: [api]
    algorithms: [ES256]
upstreams:
  echo:
    peers: ["{echo}"]
routes:
  - name: once
    prefix: /once
    upstream: echo
    one_time: true
  - name: any
    prefix: /any
    upstream: echo
"#,
        base = sidecar.base,
        internal = sidecar.internal,
        token = token_file.display(),
        echo = echo.addr,
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_time_ids_are_shared_by_gateways_side_by_side() {
    let mut sidecar = Sidecar::start(
        "60s",
        "  - { id: h1, alg: ES256, issuer: https://kms.test/h1, audience: api, rotation: { interval: 1d } }\n",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("gateway-token");
    std::fs::write(&token_file, SIDECAR_GATEWAY).unwrap();
    let echo = EchoServer::start().await;
    let (a, b) = (gateway(&sidecar, &echo, &token_file).await, gateway(&sidecar, &echo, &token_file).await);
    let http = reqwest::Client::new();
    let get = |gw: &Gateway, path: &str, token: &str| {
        let (http, url, token) = (http.clone(), gw.url(path), token.to_owned());
        async move {
            let r = http.get(url).bearer_auth(token).send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null)["reason"].as_str().map(str::to_owned))
        }
    };

    let token = sidecar.mint("h1", "ins-1", "insurer", 120).await;
    assert_eq!(get(&a, "/once/x", &token).await, (200, None));
    assert_eq!(get(&b, "/once/x", &token).await, (401, Some("token_replayed".into())), "used at the other gateway");
    assert_eq!(get(&a, "/once/x", &token).await, (401, Some("token_replayed".into())));

    // The same token at both gateways at the same moment: exactly one passes.
    for n in 0..8 {
        let token = sidecar.mint("h1", &format!("race-{n}"), "insurer", 120).await;
        let (x, y) = tokio::join!(get(&a, "/once/x", &token), get(&b, "/once/x", &token));
        let mut got = [x, y];
        got.sort();
        assert_eq!(got, [(200, None), (401, Some("token_replayed".into()))], "round {n}");
    }

    // The shared store down: one-time routes fail closed, others are unaffected.
    let fresh = sidecar.mint("h1", "ins-2", "insurer", 120).await;
    sidecar.stop();
    assert_eq!(get(&a, "/once/x", &fresh).await, (503, Some("replay_store_unavailable".into())));
    assert_eq!(get(&a, "/any/x", &fresh).await, (200, None), "keys are cached; only one-time routes need the store");
    // An outage does not flood the log: at most one warning per second.
    let started = std::time::Instant::now();
    for _ in 0..30 {
        assert_eq!(get(&a, "/once/x", &fresh).await.0, 503);
    }
    let warnings = a.log().matches("shared one-time store did not answer").count();
    let allowed = started.elapsed().as_secs() as usize + 2;
    assert!((1..=allowed).contains(&warnings), "{warnings} warnings for 31 refusals");
    let metrics = http.get(a.admin_url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"reason="replay_store_unavailable""#), "{metrics}");
    let count = |result: &str| {
        let prefix = format!(r#"gateway_one_time_check_seconds_count{{result="{result}"}} "#);
        metrics.lines().find_map(|l| l.strip_prefix(&prefix)).map_or(0, |v| v.parse::<u64>().unwrap())
    };
    // Gateway a: the first use, its own replay and eight races (won or lost), then 31 unanswered.
    assert_eq!(count("first") + count("token_replayed"), 10, "{metrics}");
    assert!(count("first") >= 1 && count("token_replayed") >= 1, "{metrics}");
    assert_eq!(count("replay_store_unavailable"), 31, "{metrics}");
}
