//! The audit trail: one record per decision with exactly the audited fields, queried
//! through the authenticated admin endpoint; rotation keeps the retained files.

mod support;

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::{standard_config, Gateway};
use testkit::claims;

const ADMIN: &str = "admin-token-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_are_audited_and_queryable_with_admin_auth() {
    let (key, server, echo) = support::keyed_stack().await;
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit/gateway.jsonl");
    let token_file = dir.path().join("admin.token");
    std::fs::write(&token_file, format!("{ADMIN}\n")).unwrap();
    let body = format!(
        "{}\naudit:\n  file: {}\n  max_bytes: 4096\n  keep: 3\nadmin:\n  token_file: {}\n",
        standard_config(&server.url_template(), echo.addr, ""),
        audit.display(),
        token_file.display()
    );
    let gw = Gateway::start(&body).await;
    let http = reqwest::Client::new();
    let mut c = claims("t1", "p-100", json!("patient"));
    c["jti"] = json!("jti-audit-1");
    let token = key.mint(&c);
    assert_eq!(http.get(gw.url("/patients/p-100/records")).bearer_auth(&token).send().await.unwrap().status(), 200);
    assert_eq!(http.get(gw.url("/patients/p-101/records")).bearer_auth(&token).send().await.unwrap().status(), 403);
    assert_eq!(http.get(gw.url("/patients/p-100/records")).send().await.unwrap().status(), 401);
    // Enough traffic to rotate the 4 KiB file a few times.
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

    let deadline = Instant::now() + Duration::from_secs(5);
    let records = loop {
        let (status, body) = q("jti=jti-audit-1&tenant=t1", Some(ADMIN)).await;
        assert_eq!(status, 200);
        let r = body["records"].as_array().unwrap().clone();
        if r.len() == 2 || Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
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
    let allowed = &records[1];
    assert_eq!((allowed["decision"].as_str(), allowed["status"].as_u64()), (Some("allow"), Some(200)));
    assert_eq!(allowed["upstream"], "echo");
    assert!(!allowed["request_id"].as_str().unwrap().is_empty());
    let fields: Vec<&String> = allowed.as_object().unwrap().keys().collect();
    assert_eq!(fields.len(), 16, "exactly the audited fields: {fields:?}");

    // Nothing of the token itself is ever written.
    let sig = &token[token.rfind('.').unwrap() + 1..];
    for f in std::fs::read_dir(audit.parent().unwrap()).unwrap() {
        let text = std::fs::read_to_string(f.unwrap().path()).unwrap();
        assert!(!text.contains(sig) && !text.contains(&token[..30]));
    }
    // The writer thread works off the request path: wait for it to rotate.
    let files = || std::fs::read_dir(audit.parent().unwrap()).unwrap().count();
    let deadline = Instant::now() + Duration::from_secs(5);
    while files() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rotated = files();
    assert!((2..=4).contains(&rotated), "current file plus at most `keep` rotated ones: {rotated}");

    let (_, all) = q("limit=5", Some(ADMIN)).await;
    assert_eq!(all["records"].as_array().unwrap().len(), 5);
    let metrics = http.get(gw.admin_url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("gateway_admin_auth_failures_total 2"), "{metrics}");
    assert!(metrics.contains("gateway_audit_dropped_total 0"));
}
