//! The revocation feed across the life of the sidecar's store and of the gateway,
//! over real processes: a store reset or restored from an older copy under a running
//! gateway is read again from its start (a token revoked in it is refused, although
//! its positions repeat ones the gateway already passed); a gateway started while the
//! feed is down is not ready and answers 503 `revocations_unavailable` on protected
//! routes until it has read the feed; with a state file, a restarted gateway refuses
//! revoked tokens with the sidecar down; watermarks in milliseconds are refused and
//! a lowered watermark reaches the gateway; a deleted tenant's tokens are refused at
//! once and its keys dropped.

use crate::support::{claims_of, Gateway, Sidecar, SIDECAR_ADMIN, SIDECAR_GATEWAY};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use testkit::EchoServer;

const TENANTS: &str = "  - { id: h1, alg: ES256, issuer: https://kms.test/h1, audience: api, rotation: { interval: 1d } }\n\
                       \x20 - { id: h2, alg: ES256, issuer: https://kms.test/h2, audience: api, rotation: { interval: 1d } }\n";

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// A gateway config for h1 and h2 with keys from `keys` (a `keys:` value per tenant,
/// or none for the sidecar's JWKS), a public and a protected route, and the feed.
fn config(sidecar: &Sidecar, echo: &EchoServer, dir: &std::path::Path, keys: Option<&str>, feed_extra: &str) -> String {
    let token_file = dir.join("gateway.token");
    std::fs::write(&token_file, SIDECAR_GATEWAY).unwrap();
    let own = |t: &str| keys.map(|k| format!(", keys: {}", k.replace("{tenant}", t))).unwrap_or_default();
    format!(
        r#"
keys:
  url_template: "{base}/jwk/{{tenant}}"
  refresh_floor: 60s
  unknown_kid_cooldown: 1s
tenants:
  h1: {{ issuer: https://kms.test/h1, audiences: [api], algorithms: [ES256]{h1} }}
  h2: {{ issuer: https://kms.test/h2, audiences: [api], algorithms: [ES256]{h2} }}
upstreams:
  echo: {{ peers: ["{echo}"] }}
routes:
  - {{ name: public, path: /public/ping, methods: [GET], upstream: echo, public: true }}
  - {{ name: echo, prefix: /echo, upstream: echo }}
revocation:
  feed_url: {internal}/internal/v1/revocations
  token_file: {token}
  poll_wait: 20s
{feed_extra}
"#,
        base = sidecar.base,
        h1 = own("h1"),
        h2 = own("h2"),
        echo = echo.addr,
        internal = sidecar.internal,
        token = token_file.display(),
    )
}

/// Status and reason of a GET of `path` with `token`.
async fn answer(gw: &Gateway, path: &str, token: Option<&str>) -> (u16, String) {
    let mut req = reqwest::Client::new().get(gw.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    (status, body["reason"].as_str().unwrap_or("").to_owned())
}

/// Waits (polling, bounded) until `token` gets `status` with `reason` on `/echo`.
async fn until_answer(gw: &Gateway, token: &str, status: u16, reason: &str, bound: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let got = answer(gw, "/echo", Some(token)).await;
        if got == (status, reason.to_owned()) {
            return started.elapsed();
        }
        assert!(started.elapsed() < bound, "still {got:?} after {:?}, want {status} {reason}", started.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn readyz(gw: &Gateway) -> (u16, Value) {
    let r = reqwest::Client::new().get(gw.admin_url("/readyz")).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn until_ready(gw: &Gateway, bound: Duration) -> Value {
    let started = Instant::now();
    loop {
        let (status, body) = readyz(gw).await;
        if status == 200 {
            return body;
        }
        assert!(started.elapsed() < bound, "not ready after {:?}: {body}", started.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `POST /admin/revoke`; returns status and answer.
async fn revoke(sidecar: &Sidecar, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/admin/revoke", sidecar.base))
        .bearer_auth(SIDECAR_ADMIN)
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn revoke_token(sidecar: &Sidecar, token: &str) {
    let c = claims_of(token);
    let (status, answer) = revoke(sidecar, json!({"tenant": c["tenant_id"], "jti": c["jti"], "exp": c["exp"]})).await;
    assert_eq!(status, 200, "{answer}");
}

/// Writes the sidecar's current JWKS of each tenant to files, for gateways that must
/// verify while the sidecar is down; returns the `keys:` value template.
async fn jwks_files(sidecar: &Sidecar, dir: &std::path::Path) -> String {
    for t in ["h1", "h2"] {
        let doc = reqwest::get(format!("{}/jwk/{t}", sidecar.base)).await.unwrap().bytes().await.unwrap();
        std::fs::write(dir.join(format!("{t}.jwks")), doc).unwrap();
    }
    format!("{{ file: {}/{{tenant}}.jwks }}", dir.display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_reset_under_a_running_gateway_is_read_from_its_start() {
    let mut sidecar = Sidecar::start("60s", TENANTS).await;
    let echo = EchoServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&config(&sidecar, &echo, dir.path(), None, "")).await;
    until_ready(&gw, Duration::from_secs(10)).await;

    // The old store's feed reaches position 3.
    let old = sidecar.mint("h1", "x3", "doctor", 600).await;
    for sub in ["x1", "x2", "x3"] {
        assert_eq!(revoke(&sidecar, json!({"tenant": "h1", "subject": sub})).await.0, 200);
    }
    until_answer(&gw, &old, 401, "token_revoked", Duration::from_secs(2)).await;

    // The store is moved away: the sidecar refuses to start until one is initialised.
    sidecar.stop();
    std::fs::rename(sidecar.data_dir(), sidecar.data_dir().with_extension("moved")).unwrap();
    let (ok, out) = sidecar.run(&["serve"]);
    assert!(!ok && out.contains("no key store at") && out.contains("kms-sidecar init"), "{out}");
    let (ok, out) = sidecar.run(&["init"]);
    assert!(ok, "{out}");
    sidecar.restart().await;

    // The new store numbers its revocations from 1 again: the gateway, at 3 in the old
    // numbering, must read it from its start.
    let victim = sidecar.mint("h1", "victim", "doctor", 600).await;
    let good = sidecar.mint("h1", "good", "doctor", 600).await;
    assert_eq!(answer(&gw, "/echo", Some(&victim)).await, (200, String::new()), "new keys fetched on their kid");
    revoke_token(&sidecar, &victim).await;
    let took = until_answer(&gw, &victim, 401, "token_revoked", Duration::from_secs(5)).await;
    eprintln!("a revocation in the new store reached the gateway in {took:?}");
    assert_eq!(answer(&gw, "/echo", Some(&good)).await.0, 200);
    let metrics = reqwest::get(gw.admin_url("/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("gateway_revocations 1\n"), "only the new store's state is held: {metrics}");
    assert_eq!(readyz(&gw).await.1["revocation_feed"], "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_restored_from_an_older_copy_is_refused_until_accepted_then_read_from_its_start() {
    let mut sidecar = Sidecar::start("60s", TENANTS).await;
    let echo = EchoServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&config(&sidecar, &echo, dir.path(), None, "")).await;
    until_ready(&gw, Duration::from_secs(10)).await;

    let first = sidecar.mint("h1", "first", "doctor", 600).await;
    revoke_token(&sidecar, &first).await; // position 1
    until_answer(&gw, &first, 401, "token_revoked", Duration::from_secs(2)).await;
    sidecar.stop();
    let backup = dir.path().join("backup.redb");
    std::fs::copy(sidecar.data_dir().join("keys.redb"), &backup).unwrap();
    sidecar.restart().await;
    let after_backup = sidecar.mint("h1", "after-backup", "doctor", 600).await;
    revoke_token(&sidecar, &after_backup).await; // position 2
    until_answer(&gw, &after_backup, 401, "token_revoked", Duration::from_secs(5)).await;

    // The older copy is put back: the sidecar sees its feed is behind the last run's.
    sidecar.stop();
    std::fs::copy(&backup, sidecar.data_dir().join("keys.redb")).unwrap();
    let (ok, out) = sidecar.run(&["serve"]);
    assert!(!ok && out.contains("older than the one this sidecar last ran with"), "{out}");
    assert!(out.contains("--accept-restore"), "{out}");
    let (ok, out) = sidecar.run(&["init", "--accept-restore"]);
    assert!(ok, "{out}");
    sidecar.restart().await;

    // Position 2 again, another token: the gateway (at 2) must not skip it.
    let again = sidecar.mint("h1", "again", "doctor", 600).await;
    revoke_token(&sidecar, &again).await;
    until_answer(&gw, &again, 401, "token_revoked", Duration::from_secs(5)).await;
    assert_eq!(answer(&gw, "/echo", Some(&first)).await, (401, "token_revoked".into()), "in the copy: kept");
    // The documented rule: the gateway holds what the store holds. A revocation made
    // after the backup is not in it (the operator was told to re-issue it).
    assert_eq!(answer(&gw, "/echo", Some(&after_backup)).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_started_with_the_feed_down_refuses_protected_routes_until_it_has_read_the_feed() {
    let mut sidecar = Sidecar::start("60s", TENANTS).await;
    let echo = EchoServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let keys = jwks_files(&sidecar, dir.path()).await;
    let revoked = sidecar.mint("h1", "r", "doctor", 600).await;
    let good = sidecar.mint("h1", "g", "doctor", 600).await;
    revoke_token(&sidecar, &revoked).await;
    sidecar.stop();

    let gw = Gateway::start(&config(&sidecar, &echo, dir.path(), Some(&keys), "")).await;
    let (status, body) = readyz(&gw).await;
    assert_eq!((status, &body["status"], &body["revocation_feed"]), (503, &json!("not_ready"), &json!("not_synced")));
    assert_eq!(answer(&gw, "/echo", Some(&revoked)).await, (503, "revocations_unavailable".into()));
    assert_eq!(answer(&gw, "/echo", Some(&good)).await, (503, "revocations_unavailable".into()));
    assert_eq!(answer(&gw, "/echo", None).await, (401, "token_missing".into()));
    assert_eq!(answer(&gw, "/public/ping", None).await.0, 200, "public routes need no revocation state");

    sidecar.restart().await;
    let body = until_ready(&gw, Duration::from_secs(10)).await;
    assert_eq!(body["revocation_feed"], "ok");
    assert_eq!(answer(&gw, "/echo", Some(&revoked)).await, (401, "token_revoked".into()));
    assert_eq!(answer(&gw, "/echo", Some(&good)).await.0, 200);

    // Once synced, losing the feed keeps the last state in force (and ready).
    sidecar.stop();
    let started = Instant::now();
    while readyz(&gw).await.1["revocation_feed"] != "unreachable" {
        assert!(started.elapsed() < Duration::from_secs(30), "feed loss never reported");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(readyz(&gw).await.0, 200);
    assert_eq!(answer(&gw, "/echo", Some(&revoked)).await, (401, "token_revoked".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_state_file_a_restarted_gateway_refuses_revoked_tokens_while_the_sidecar_is_down() {
    let mut sidecar = Sidecar::start("60s", TENANTS).await;
    let echo = EchoServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let keys = jwks_files(&sidecar, dir.path()).await;
    let state = dir.path().join("revocations.json");
    let extra = format!("  state_file: {}\n  state_max_age: 10m\n", state.display());
    let body = config(&sidecar, &echo, dir.path(), Some(&keys), &extra);
    let revoked = sidecar.mint("h1", "r", "doctor", 600).await;
    let good = sidecar.mint("h1", "g", "doctor", 600).await;
    {
        let gw = Gateway::start(&body).await;
        until_ready(&gw, Duration::from_secs(10)).await;
        revoke_token(&sidecar, &revoked).await;
        until_answer(&gw, &revoked, 401, "token_revoked", Duration::from_secs(2)).await;
        let jti = claims_of(&revoked)["jti"].as_str().unwrap().to_owned();
        let started = Instant::now();
        while !std::fs::read_to_string(&state).is_ok_and(|s| s.contains(&jti)) {
            assert!(started.elapsed() < Duration::from_secs(5), "state never saved");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Dropped: SIGKILL.
    }
    sidecar.stop();
    let gw = Gateway::start(&body).await;
    let ready = until_ready(&gw, Duration::from_secs(5)).await;
    assert_ne!(ready["revocation_feed"], "not_synced", "{ready}");
    assert_eq!(answer(&gw, "/echo", Some(&revoked)).await, (401, "token_revoked".into()));
    assert_eq!(answer(&gw, "/echo", Some(&good)).await.0, 200);

    // A state saved too long ago is not served on.
    drop(gw);
    let mut saved: Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    saved["synced_at"] = json!(now() - 3600);
    std::fs::write(&state, saved.to_string()).unwrap();
    let gw = Gateway::start(&body).await;
    assert_eq!(readyz(&gw).await.0, 503);
    assert_eq!(answer(&gw, "/echo", Some(&good)).await, (503, "revocations_unavailable".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watermarks_in_milliseconds_are_refused_and_a_lowered_watermark_reaches_the_gateway() {
    let sidecar = Sidecar::start("60s", TENANTS).await;
    let echo = EchoServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&config(&sidecar, &echo, dir.path(), None, "")).await;
    until_ready(&gw, Duration::from_secs(10)).await;
    let token = sidecar.mint("h1", "u", "doctor", 600).await;
    assert_eq!(answer(&gw, "/echo", Some(&token)).await.0, 200);

    let (status, body) = revoke(&sidecar, json!({"tenant": "h1", "before": now() * 1000})).await;
    assert_eq!(status, 400);
    assert!(body["detail"].as_str().unwrap().starts_with("before:"), "{body}");
    assert_eq!(answer(&gw, "/echo", Some(&token)).await.0, 200, "nothing revoked");

    assert_eq!(revoke(&sidecar, json!({"tenant": "h1"})).await.0, 200);
    until_answer(&gw, &token, 401, "token_revoked", Duration::from_secs(2)).await;
    let (status, body) = revoke(&sidecar, json!({"tenant": "h1", "before": 0, "lower": true})).await;
    assert_eq!(status, 200, "{body}");
    let took = until_answer(&gw, &token, 200, "", Duration::from_secs(2)).await;
    eprintln!("a lowered watermark reached the gateway in {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_tenant_refuses_its_tokens_at_once_and_drops_its_keys() {
    let sidecar = Sidecar::start("60s", TENANTS).await;
    let echo = EchoServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&config(&sidecar, &echo, dir.path(), None, "")).await;
    until_ready(&gw, Duration::from_secs(10)).await;
    let h1 = sidecar.mint("h1", "a", "doctor", 600).await;
    let h2 = sidecar.mint("h2", "b", "doctor", 600).await;
    assert_eq!(answer(&gw, "/echo", Some(&h2)).await.0, 200);

    let r = reqwest::Client::new()
        .delete(format!("{}/admin/tenants/h2", sidecar.base))
        .bearer_auth(SIDECAR_ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    // The gateway's JWKS cache (refresh floor 60 s, max_stale 1 h) still held h2's key:
    // the feed event empties it at once (verification then finds no key for the kid).
    let took = until_answer(&gw, &h2, 401, "key_unknown", Duration::from_secs(1)).await;
    eprintln!("a tenant deletion reached the gateway in {took:?}");
    assert_eq!(answer(&gw, "/echo", Some(&h1)).await.0, 200, "other tenants unaffected");
    assert_eq!(readyz(&gw).await.0, 200, "readiness unchanged");
}
