//! Hot reload: SIGHUP swaps routes, policies, header mappings and tenants atomically;
//! a bad config is refused and the old one stays in force.

use crate::support::{standard_config, Gateway};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use testkit::claims;

async fn wait_for<F: Fn() -> Fut, Fut: std::future::Future<Output = bool>>(what: &str, f: F) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_swaps_config_and_refuses_a_bad_one() {
    let (key, server, echo) = crate::support::keyed_stack().await;
    let gw = Gateway::start_logging(&standard_config(&server.url_template(), echo.addr, ""), "info").await;
    let http = reqwest::Client::new();
    let token = key.mint(&claims("t1", "u-1", json!("doctor")));
    let get = |path: &'static str| {
        let (http, url, token) = (http.clone(), gw.url(path), token.clone());
        async move {
            let r = http.get(url).bearer_auth(token).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    assert_eq!(get("/reports/x").await.0, 404);
    let fetches_before = server.fetches("t1");

    // A valid new config: a new route, a renamed header, the rest unchanged.
    let original = std::fs::read_to_string(gw.config_path()).unwrap();
    let updated = original.replace("header: X-User-Id", "header: X-Subject").replace(
        "routes:\n",
        "routes:\n  - name: reports\n    prefix: /reports\n    upstream: echo\n    allow: [ { role: doctor } ]\n",
    );
    std::fs::write(gw.config_path(), &updated).unwrap();
    gw.hup();
    wait_for("new route", || async { get("/reports/x").await.0 == 200 }).await;
    let (_, body) = get("/echo").await;
    assert_eq!(body["headers"]["x-subject"], "u-1");
    assert!(body["headers"].get("x-user-id").is_none());
    assert_eq!(server.fetches("t1"), fetches_before, "unchanged tenants keep their cached keys");

    // An invalid config: refused, logged with its field path, old config in force.
    std::fs::write(
        gw.config_path(),
        updated.replace(
            "upstream: echo\n    allow: [ { role: doctor } ]",
            "upstream: nowhere\n    allow: [ { role: doctor } ]",
        ),
    )
    .unwrap();
    gw.hup();
    let metrics_url = gw.admin_url("/metrics");
    wait_for("reload error counted", || {
        let (http, url) = (http.clone(), metrics_url.clone());
        async move {
            let text = http.get(url).send().await.unwrap().text().await.unwrap();
            text.contains(r#"gateway_config_reloads_total{result="error"} 1"#)
        }
    })
    .await;
    assert_eq!(get("/reports/x").await.0, 200, "old config still in force");
    let log = gw.log();
    assert!(log.contains("routes[0] (name: reports).upstream: no upstream named \"nowhere\""), "{log}");

    // Requests under load never fail while configs swap.
    std::fs::write(gw.config_path(), &original).unwrap();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (http, url, token) = (http.clone(), gw.url("/echo"), token.clone());
        tasks.push(tokio::spawn(async move {
            let mut codes = Vec::new();
            for _ in 0..100 {
                codes.push(http.get(&url).bearer_auth(&token).send().await.unwrap().status().as_u16());
            }
            codes
        }));
    }
    for _ in 0..5 {
        gw.hup();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for t in tasks {
        assert!(t.await.unwrap().iter().all(|c| *c == 200));
    }
}

/// Used one-time ids outlive a reload (the in-memory store is carried over): a
/// token used before SIGHUP is still a replay after it, on the new config.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_time_ids_survive_a_reload() {
    let (key, server, echo) = crate::support::keyed_stack().await;
    let once = "routes:\n  - name: once\n    prefix: /once\n    upstream: echo\n    one_time: true\n";
    let config = standard_config(&server.url_template(), echo.addr, "").replace("routes:\n", once);
    let gw = Gateway::start(&config).await;
    let http = reqwest::Client::new();
    let get = |path: &'static str, token: String| {
        let (http, url) = (http.clone(), gw.url(path));
        async move {
            let r = http.get(url).bearer_auth(token).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap_or(Value::Null)["reason"].clone())
        }
    };
    let mut c = claims("t1", "u-1", json!("doctor"));
    c["jti"] = json!("once-across-reload");
    let used = key.mint(&c);
    assert_eq!(get("/once/a", used.clone()).await.0, 200);

    let later = "routes:\n  - name: later\n    prefix: /later\n    upstream: echo\n    one_time: true\n";
    let updated = std::fs::read_to_string(gw.config_path()).unwrap().replacen("routes:\n", later, 1);
    std::fs::write(gw.config_path(), &updated).unwrap();
    gw.hup();
    let fresh = key.mint(&claims("t1", "u-2", json!("doctor")));
    wait_for("new route", || {
        let token = key.mint(&claims("t1", "probe", json!("doctor")));
        let probe = get("/later/x", token);
        async move { probe.await.0 != 404 }
    })
    .await;
    assert_eq!(get("/once/a", used).await, (401, json!("token_replayed")), "remembered across the reload");
    assert_eq!(get("/once/a", fresh).await.0, 200);
}
