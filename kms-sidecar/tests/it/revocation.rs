//! The sidecar's revocation feed and store lifecycle over real processes: a missing
//! store is refused until `init` creates it; a store restored from an older copy is
//! refused until accepted, and the feed's epoch changes with every store and run;
//! watermarks are checked (seconds, not milliseconds) and can be lowered explicitly;
//! a tenant deletion and an emergency rotation put their events on the feed; a
//! reader of another epoch is answered at once instead of long-polled.

use crate::support::{now, tenants, Sidecar, ADMIN, T1, T2};
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

/// A config in `dir` on fresh ports (tenants t1 and t2), with `extra` appended.
type Setup = Sidecar;

fn setup(dir: &Path, extra: &str) -> Setup {
    Sidecar::new(dir, &format!("{}{extra}", tenants(&[T1, T2])))
}

fn run(args: &[&str], s: &Setup) -> (bool, String) {
    s.run(args)
}

/// `serve` exits with an error; returns its output.
fn refused(s: &Setup) -> String {
    let (ok, out) = run(&["serve"], s);
    assert!(!ok, "serve started: {out}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_store_is_refused_until_init_creates_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(dir.path(), "");
    let out = refused(&s);
    assert!(out.contains("no key store at") && out.contains("kms-sidecar init --config"), "{out}");
    assert!(!dir.path().join("data/keys.redb").exists(), "nothing created implicitly");

    let old = setup(dir.path(), "create_if_missing: true\n");
    let (ok, out) = run(&["init"], &old);
    assert!(!ok && out.contains("create_if_missing: no longer supported"), "{out}");

    let s = setup(dir.path(), "");
    let (ok, out) = run(&["init"], &s);
    assert!(ok && out.contains("created a new key store"), "{out}");
    let (ok, out) = run(&["init"], &s);
    assert!(!ok && out.contains("already exists"), "init never replaces a store: {out}");
    let kms = s.start().await;
    let page = kms.feed("after=0").await;
    assert_eq!((page["cursor"].as_u64(), page["last"].as_u64()), (Some(0), Some(0)));
    assert!(page["epoch"].as_str().is_some_and(|e| e.len() > 32), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_store_is_refused_until_accepted_and_every_run_has_its_own_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(dir.path(), "");
    assert!(run(&["init"], &s).0);
    let copy = dir.path().join("backup.redb");
    let first_epoch = {
        let kms = s.start().await;
        assert_eq!(kms.admin("/admin/revoke", json!({"tenant": "t1", "subject": "a"})).await.0, 200);
        kms.feed("after=0").await["epoch"].as_str().unwrap().to_owned()
        // Killed: SIGKILL.
    };
    std::fs::copy(dir.path().join("data/keys.redb"), &copy).unwrap();
    let second_epoch = {
        let kms = s.start().await;
        assert_eq!(kms.admin("/admin/revoke", json!({"tenant": "t1", "subject": "b"})).await.0, 200);
        let page = kms.feed("after=0").await;
        assert_eq!(page["last"], 2);
        page["epoch"].as_str().unwrap().to_owned()
    };
    assert_ne!(first_epoch, second_epoch, "a restart changes the epoch");
    assert_eq!(first_epoch.split('.').next(), second_epoch.split('.').next(), "same store id");

    // The older copy is put back: refused, with what to do.
    std::fs::copy(&copy, dir.path().join("data/keys.redb")).unwrap();
    let out = refused(&s);
    assert!(out.contains("older than the one this sidecar last ran with"), "{out}");
    assert!(out.contains("ends at 1, the last run's at 2") && out.contains("--accept-restore"), "{out}");
    let (ok, out) = run(&["init", "--accept-restore"], &s);
    assert!(ok && out.contains("accepted the key store"), "{out}");
    let kms = s.start().await;
    let page = kms.feed("after=0").await;
    assert_eq!(page["last"], 1, "the restored feed");
    assert!(page["epoch"] != first_epoch.as_str() && page["epoch"] != second_epoch.as_str());
    drop(kms);

    // A different store in its place (moved away, another one created) is refused too.
    let other = tempfile::tempdir().unwrap();
    let o = setup(other.path(), "");
    assert!(run(&["init"], &o).0);
    std::fs::copy(other.path().join("data/keys.redb"), dir.path().join("data/keys.redb")).unwrap();
    let out = refused(&s);
    assert!(out.contains("is not the one this sidecar last ran with"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watermarks_are_checked_lowered_explicitly_and_deletions_and_key_removals_are_on_the_feed() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(dir.path(), "");
    assert!(run(&["init"], &s).0);
    let kms = s.start().await;
    let now = now();

    // A watermark in milliseconds would revoke the tenant for good: refused, naming the field.
    for body in [
        json!({"tenant": "t1", "before": now * 1000}),
        json!({"tenant": "t1", "subject": "s", "before": now * 1000}),
        json!({"tenant": "t1", "before": now + 3600}),
        json!({"tenant": "t1", "before": -5}),
        json!({"tenant": "t1", "lower": true}),
        json!({"tenant": "t1", "jti": "j", "exp": now + 60, "lower": true}),
    ] {
        let (status, answer) = kms.admin("/admin/revoke", body.clone()).await;
        assert_eq!(status, 400, "{body}: {answer}");
        let detail = answer["detail"].as_str().unwrap();
        assert!(detail.starts_with("before:") || detail.starts_with("give {tenant"), "{body}: {detail}");
    }
    let (_, answer) = kms.admin("/admin/revoke", json!({"tenant": "t1", "before": now * 1000})).await;
    assert!(answer["detail"].as_str().unwrap().contains("milliseconds"), "{answer}");
    assert_eq!(kms.feed("after=0").await["last"], 0, "nothing recorded");

    assert_eq!(kms.admin("/admin/revoke", json!({"tenant": "t1", "before": now + 30})).await.0, 200, "skew allowed");
    assert_eq!(kms.admin("/admin/revoke", json!({"tenant": "t1", "before": 0, "lower": true})).await.0, 200);
    assert_eq!(
        kms.admin("/admin/revoke", json!({"tenant": "t1", "subject": "s", "before": 5, "lower": true})).await.0,
        200
    );
    let r = kms.admin("/admin/rotate-key", json!({"tenant": "t1", "use": "sig", "emergency": true})).await;
    assert_eq!(r.0, 200);
    let removed = r.1["revoked"][0].as_str().unwrap().to_owned();
    let r = reqwest::Client::new()
        .delete(format!("http://127.0.0.1:{}/admin/tenants/t2", kms.port))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);

    let page = kms.feed("after=0").await;
    let events = page["events"].as_array().unwrap();
    assert_eq!(events.len(), 5, "{page}");
    assert_eq!(events[0]["before"], now + 30);
    assert!(events[0].get("lower").is_none());
    assert_eq!((events[1]["lower"].as_bool(), events[1]["before"].as_i64()), (Some(true), Some(0)));
    assert_eq!((events[2]["subject"].as_str(), events[2]["lower"].as_bool()), (Some("s"), Some(true)));
    assert_eq!(events[3]["kid"], removed.as_str(), "emergency removal");
    assert_eq!((events[4]["tenant"].as_str(), events[4]["deleted"].as_bool()), (Some("t2"), Some(true)));
    assert!(events[4]["before"].as_i64().unwrap() >= now, "every token of the tenant issued so far");
    assert_eq!((page["cursor"].as_u64(), page["last"].as_u64()), (Some(5), Some(5)));

    // A current reader is long-polled; a reader of another epoch, or ahead of the
    // feed, is answered at once.
    let epoch = page["epoch"].as_str().unwrap();
    let started = Instant::now();
    let same = kms.feed(&format!("after=5&wait=1&epoch={epoch}")).await;
    assert!(started.elapsed() >= Duration::from_millis(900) && same["events"].as_array().unwrap().is_empty());
    let started = Instant::now();
    let other = kms.feed("after=5&wait=20&epoch=not-this-one").await;
    assert!(started.elapsed() < Duration::from_secs(5), "not parked: {:?}", started.elapsed());
    assert_eq!(other["epoch"], epoch);
    let started = Instant::now();
    let ahead = kms.feed(&format!("after=9&wait=20&epoch={epoch}")).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!((ahead["cursor"].as_u64(), ahead["last"].as_u64()), (Some(9), Some(5)));
}
