//! The audit trail: one record per decision with exactly the audited fields, queried
//! through the authenticated admin endpoint. Decisions about a verified token and
//! anonymous ones go to separate, separately rotated trails, the anonymous one
//! rate-limited, so a flood of anonymous requests never displaces a patient's
//! records; paths are capped; rotation is exact; files are private; request ids are
//! the gateway's own; every record not written is counted.

use crate::support::{standard_config, Gateway};
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use testkit::claims;

const ADMIN: &str = "admin-token-0123456789";

/// A gateway with the standard routes, this `audit:` section body and the admin token.
async fn start(
    dir: &tempfile::TempDir,
    audit: &str,
) -> (testkit::TestKey, Gateway, testkit::JwksServer, testkit::EchoServer) {
    let (key, server, echo) = crate::support::keyed_stack().await;
    let token_file = dir.path().join("admin.token");
    std::fs::write(&token_file, format!("{ADMIN}\n")).unwrap();
    let body = format!(
        "{}\naudit:\n{audit}\nadmin:\n  token_file: {}\n",
        standard_config(&server.url_template(), echo.addr, ""),
        token_file.display()
    );
    (key, Gateway::start(&body).await, server, echo)
}

async fn query(gw: &Gateway, q: &str) -> Vec<Value> {
    let r = reqwest::Client::new().get(gw.admin_url(&format!("/audit?{q}"))).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.json::<Value>().await.unwrap()["records"].as_array().unwrap().clone()
}

/// The value of an unlabelled metric.
async fn metric(gw: &Gateway, name: &str) -> u64 {
    let text = reqwest::get(gw.admin_url("/metrics")).await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("{name} not in metrics"))
        .parse()
        .unwrap()
}

/// Polls `cond` until it holds or `secs` pass; returns whether it held.
async fn wait_for(secs: u64, mut cond: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if cond().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every file of the trail at `path`, oldest (`path.N`) first, newest (`path`) last.
fn trail_files(path: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> =
        (1..1000).map(|i| PathBuf::from(format!("{}.{i}", path.display()))).take_while(|p| p.exists()).collect();
    files.reverse();
    files.push(path.to_owned());
    files
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_are_audited_and_queryable_with_admin_auth() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit/gateway.jsonl");
    let section = format!(
        "  file: {}\n  max_bytes: 4096\n  keep: 3\n  anonymous: {{ keep: 10, rate: 1000, burst: 1000 }}\n",
        audit.display()
    );
    let (key, gw, _jwks, _echo) = start(&dir, &section).await;
    let http = reqwest::Client::new();
    let mut c = claims("t1", "p-100", json!("patient"));
    c["jti"] = json!("jti-audit-1");
    let token = key.mint(&c);
    assert_eq!(http.get(gw.url("/patients/p-100/records")).bearer_auth(&token).send().await.unwrap().status(), 200);
    assert_eq!(http.get(gw.url("/patients/p-101/records")).bearer_auth(&token).send().await.unwrap().status(), 403);
    assert_eq!(http.get(gw.url("/patients/p-100/records")).send().await.unwrap().status(), 401);
    // Enough anonymous traffic to rotate its 4 KiB files a few times.
    for _ in 0..40 {
        http.get(gw.url("/public/ping")).send().await.unwrap();
    }

    let q = |query: &str, auth: Option<&str>| {
        let mut req = http.get(gw.admin_url(&format!("/audit?{query}")));
        if let Some(a) = auth {
            req = req.bearer_auth(a);
        }
        async move {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    assert_eq!(q("jti=jti-audit-1", None).await.0, 401);
    assert_eq!(q("jti=jti-audit-1", Some("wrong-token-0123456789")).await.0, 401);
    assert_eq!(q("bogus=1", Some(ADMIN)).await.0, 400);
    assert_eq!(q("trail=everything", Some(ADMIN)).await.0, 400);

    assert!(wait_for(5, async || metric(&gw, "gateway_audit_records_total").await == 43).await);
    let records = query(&gw, "jti=jti-audit-1&tenant=t1").await;
    assert_eq!(records.len(), 2, "{records:?}");
    let denied = &records[0];
    assert_eq!(denied["decision"], "deny");
    assert_eq!(denied["reason"], "forbidden_owner");
    assert_eq!(denied["status"], 403);
    assert_eq!(denied["subject"], "p-100");
    assert_eq!(denied["role"], "patient");
    assert_eq!(denied["kid"], "es-1");
    assert_eq!(denied["token_kind"], "JWS");
    assert_eq!(denied["path"], "/patients/p-101/records");
    assert_eq!(denied["client_ip"], "127.0.0.1");
    let allowed = &records[1];
    assert_eq!((allowed["decision"].as_str(), allowed["status"].as_u64()), (Some("allow"), Some(200)));
    assert_eq!(allowed["upstream"], "echo");
    assert_eq!(allowed["path_truncated"], false);
    assert!(!allowed["request_id"].as_str().unwrap().is_empty());
    let fields: Vec<&String> = allowed.as_object().unwrap().keys().collect();
    assert_eq!(fields.len(), 20, "exactly the audited fields: {fields:?}");

    // The unauthenticated refusal is in the anonymous trail, not the patient's.
    assert_eq!(query(&gw, "").await.len(), 2);
    let anonymous = query(&gw, "trail=anonymous&limit=1000").await;
    assert_eq!(anonymous.len(), anonymous.iter().filter(|r| r["subject"].is_null()).count());
    let refused: Vec<&Value> = anonymous.iter().filter(|r| r["reason"] == "token_missing").collect();
    assert_eq!(refused.len(), 1, "{anonymous:?}");
    assert_eq!((refused[0]["status"].as_u64(), refused[0]["client_ip"].as_str()), (Some(401), Some("127.0.0.1")));
    assert_eq!(query(&gw, "trail=anonymous&limit=5").await.len(), 5);

    // Nothing of the token itself is ever written.
    let sig = &token[token.rfind('.').unwrap() + 1..];
    for f in std::fs::read_dir(audit.parent().unwrap()).unwrap() {
        let text = std::fs::read_to_string(f.unwrap().path()).unwrap();
        assert!(!text.contains(sig) && !text.contains(&token[..30]));
    }
    // The anonymous trail rotated on its own: its file plus at most `keep` rotated ones.
    let anon_files = trail_files(&PathBuf::from(format!("{}.anonymous", audit.display())));
    assert!((3..=11).contains(&anon_files.len()), "{anon_files:?}");
    assert_eq!(trail_files(&audit).len(), 1, "the authenticated trail did not need to rotate");

    let metrics = http.get(gw.admin_url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("gateway_admin_auth_failures_total 2"), "{metrics}");
    assert!(metrics.contains("gateway_audit_dropped_total 0"));
    assert!(metrics.contains("gateway_audit_sampled_out_total 0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anonymous_flood_never_displaces_a_patients_records() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("gateway.jsonl");
    let section = format!(
        "  file: {}\n  max_bytes: 16384\n  keep: 1\n  max_path_bytes: 256\n  \
         anonymous: {{ max_bytes: 8192, keep: 1, rate: 5, burst: 10 }}\n",
        audit.display()
    );
    let (key, gw, _jwks, _echo) = start(&dir, &section).await;
    let http = reqwest::Client::new();
    let token = key.mint(&claims("t1", "p-100", json!("patient")));
    for _ in 0..2 {
        assert_eq!(http.get(gw.url("/patients/p-100/records")).bearer_auth(&token).send().await.unwrap().status(), 200);
    }
    // A token in the path is recorded as `[token]`.
    let r = http.get(gw.url(&format!("/patients/{token}/records"))).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 403);

    // 300 anonymous requests with 7 KiB paths (under http.max_uri_bytes), four at a time: no token, a bad token,
    // no route.
    let started = Instant::now();
    let long = "x".repeat(7 * 1024);
    let flood: Vec<_> = (0..4)
        .map(|w| {
            let (http, long) = (http.clone(), long.clone());
            let urls = [gw.url(&format!("/patients/{long}/records")), gw.url(&format!("/nowhere/{long}"))];
            tokio::spawn(async move {
                for i in 0..75 {
                    let mut req = http.get(&urls[(w + i) % 2]);
                    if i % 3 == 0 {
                        req = req.bearer_auth("not.a.token");
                    }
                    let status = req.send().await.unwrap().status().as_u16();
                    assert!(status == 401 || status == 404, "{status}");
                }
            })
        })
        .collect();
    for f in flood {
        f.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let total = 3 + 300;
    assert!(
        wait_for(10, async || {
            metric(&gw, "gateway_audit_records_total").await + metric(&gw, "gateway_audit_sampled_out_total").await
                == total
        })
        .await,
        "every decision is written or counted as sampled out"
    );
    assert_eq!(metric(&gw, "gateway_audit_dropped_total").await, 0);
    let sampled_out = metric(&gw, "gateway_audit_sampled_out_total").await;
    let allowed = 10.0 + 5.0 * (elapsed + 1.0);
    assert!(sampled_out as f64 >= 300.0 - allowed, "{sampled_out} left out in {elapsed}s");

    // Every record of the patient is still there.
    let mine = query(&gw, "subject=p-100").await;
    assert_eq!(mine.len(), 3, "{mine:?}");
    assert_eq!(mine[0]["path"], "/patients/[token]/records");
    assert_eq!(mine[0]["reason"], "forbidden_owner");
    assert!(mine[1..].iter().all(|r| r["status"] == 200));

    // The anonymous ones are capped and marked.
    let anonymous = query(&gw, "trail=anonymous&limit=1000").await;
    assert!(!anonymous.is_empty() && anonymous.len() as f64 <= allowed, "{}", anonymous.len());
    for r in &anonymous {
        assert!(r["path"].as_str().unwrap().len() <= 256);
        assert_eq!(r["path_truncated"], true);
    }
    // The trail says how many it left out: the next anonymous record after the flood
    // carries the count.
    let mut carried = 0;
    assert!(
        wait_for(10, async || {
            http.get(gw.url("/patients/p-100/records")).send().await.unwrap();
            carried =
                query(&gw, "trail=anonymous&limit=1000").await.iter().filter_map(|r| r["sampled_out"].as_u64()).sum();
            carried > 0
        })
        .await
    );
    assert!(carried <= metric(&gw, "gateway_audit_sampled_out_total").await);
    // Public-route passes have their own bucket: the flood of refusals did not use it up.
    assert_eq!(http.get(gw.url("/public/ping")).send().await.unwrap().status(), 200);
    assert!(
        wait_for(5, async || { query(&gw, "trail=anonymous&limit=1000").await.iter().any(|r| r["route"] == "public") })
            .await
    );

    let sig = &token[token.rfind('.').unwrap() + 1..];
    for f in std::fs::read_dir(dir.path()).unwrap() {
        let text = std::fs::read_to_string(f.unwrap().path()).unwrap();
        assert!(!text.contains(sig));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_is_exact_and_files_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("gateway.jsonl");
    let anon = dir.path().join("anon/anonymous.jsonl");
    // A file left by an earlier version: world-readable, one record.
    let old =
        r#"{"time_ms":1,"request_id":"old","method":"GET","path":"/","decision":"allow","status":200,"latency_us":1}"#;
    std::fs::write(&audit, format!("{old}\n")).unwrap();
    std::fs::set_permissions(&audit, std::fs::Permissions::from_mode(0o644)).unwrap();
    let section = format!(
        "  file: {}\n  max_bytes: 4096\n  keep: 200\n  \
         anonymous: {{ file: {}, max_bytes: 4096, keep: 200, rate: 10000, burst: 10000 }}\n",
        audit.display(),
        anon.display()
    );
    let (key, gw, _jwks, _echo) = start(&dir, &section).await;
    let http = reqwest::Client::new();
    let token = key.mint(&claims("t1", "d-1", json!("doctor")));
    let (authenticated, anonymous): (u64, u64) = (200, 60);
    for i in 0..authenticated {
        // Records of varied sizes.
        let path = format!("/echo/{}", "a".repeat((i as usize * 37) % 500));
        assert_eq!(http.get(gw.url(&path)).bearer_auth(&token).send().await.unwrap().status(), 200);
    }
    for i in 0..anonymous {
        http.get(gw.url(&format!("/echo/{}", "b".repeat((i as usize * 53) % 700)))).send().await.unwrap();
    }
    assert!(wait_for(10, async || metric(&gw, "gateway_audit_records_total").await == authenticated + anonymous).await);

    for (path, lines) in [(&audit, authenticated + 1), (&anon, anonymous)] {
        let files = trail_files(path);
        assert!(files.len() > 5, "{files:?}");
        let mut total = 0;
        for pair in files.windows(2) {
            let (older, newer) =
                (std::fs::read_to_string(&pair[0]).unwrap(), std::fs::read_to_string(&pair[1]).unwrap());
            let first = newer.lines().next().unwrap().len() + 1;
            assert!(
                older.len() + first > 4096,
                "{} rotated early: {} bytes, and the next record had {first}",
                pair[0].display(),
                older.len()
            );
        }
        for f in &files {
            let size = std::fs::metadata(f).unwrap().len();
            assert!(size <= 4096, "{} has {size} bytes", f.display());
            assert_eq!(mode(f), 0o600, "{}", f.display());
            total += std::fs::read_to_string(f).unwrap().lines().count() as u64;
        }
        assert_eq!(total, lines, "{}", path.display());
    }
    assert_eq!(mode(anon.parent().unwrap()), 0o700);
    assert_eq!(metric(&gw, "gateway_audit_dropped_total").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_the_gateways_own_and_the_clients_is_kept_beside() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("gateway.jsonl");
    let (key, gw, _jwks, _echo) = start(&dir, &format!("  file: {}\n", audit.display())).await;
    let http = reqwest::Client::new();
    let token = key.mint(&claims("t1", "d-1", json!("doctor")));
    let mut seen = Vec::new();
    for given in ["client-abc", "client-abc", &"z".repeat(65), "has space"] {
        let r = http.get(gw.url("/echo/x")).bearer_auth(&token).header("x-request-id", given).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let echoed = r.json::<Value>().await.unwrap();
        let upstream = echoed["headers"]["x-request-id"].as_str().unwrap().to_owned();
        assert_eq!(upstream.len(), 33, "{upstream}");
        assert_ne!(upstream, given);
        seen.push(upstream);
    }
    let distinct: std::collections::HashSet<&String> = seen.iter().collect();
    assert_eq!(distinct.len(), seen.len(), "{seen:?}");

    assert!(wait_for(5, async || metric(&gw, "gateway_audit_records_total").await == 4).await);
    let records = query(&gw, "client_request_id=client-abc").await;
    assert_eq!(records.len(), 2, "{records:?}");
    let ids: Vec<&str> = records.iter().rev().map(|r| r["request_id"].as_str().unwrap()).collect();
    assert_eq!(ids, [seen[0].as_str(), seen[1].as_str()], "the ids the upstream saw are the audited ones");
    for id in &seen[2..] {
        let r = query(&gw, &format!("request_id={id}")).await;
        assert_eq!(r.len(), 1);
        assert_eq!(r[0]["client_request_id"], Value::Null, "a long or unplain client id is not kept");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_not_written_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    // Every write to the authenticated trail fails (ENOSPC).
    let audit = dir.path().join("gateway.jsonl");
    std::os::unix::fs::symlink("/dev/full", &audit).unwrap();
    let (key, gw, _jwks, _echo) = start(&dir, &format!("  file: {}\n", audit.display())).await;
    let http = reqwest::Client::new();
    let token = key.mint(&claims("t1", "d-1", json!("doctor")));
    for _ in 0..20 {
        assert_eq!(http.get(gw.url("/echo/x")).bearer_auth(&token).send().await.unwrap().status(), 200);
    }
    for _ in 0..5 {
        assert_eq!(http.get(gw.url("/echo/x")).send().await.unwrap().status(), 401);
    }
    assert!(
        wait_for(5, async || metric(&gw, "gateway_audit_dropped_total").await == 20).await,
        "dropped: {}",
        metric(&gw, "gateway_audit_dropped_total").await
    );
    // The anonymous trail, on a good disk, is unaffected.
    assert!(wait_for(5, async || metric(&gw, "gateway_audit_records_total").await == 5).await);
    assert_eq!(query(&gw, "trail=anonymous").await.len(), 5);
}
