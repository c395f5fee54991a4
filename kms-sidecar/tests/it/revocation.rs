//! The sidecar's revocation feed and store lifecycle over real processes: a missing
//! store is refused until `init` creates it; a store restored from an older copy is
//! refused until accepted, and the feed's epoch changes with every store and run;
//! watermarks are checked (seconds, not milliseconds) and can be lowered explicitly;
//! a tenant deletion and an emergency rotation put their events on the feed; a
//! reader of another epoch is answered at once instead of long-polled.

use serde_json::{json, Value};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const ADMIN: &str = "admin-token-for-tests-0001";
const GATEWAY: &str = "gateway-token-for-tests-01";
const MASTER: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

/// A free loopback port never handed out before in this process (a sidecar
/// restarted on its port must not find it taken by another test's listener).
fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// A config in `dir` on fresh ports, with `extra` appended.
struct Setup {
    cfg: PathBuf,
    port: u16,
    internal: u16,
}

fn setup(dir: &Path, extra: &str) -> Setup {
    let (port, internal) = (free_port(), free_port());
    let cfg = dir.join("kms.yaml");
    std::fs::write(
        &cfg,
        format!(
            "listen: 127.0.0.1:{port}\ninternal_listen: 127.0.0.1:{internal}\ndata_dir: {}\n\
             master_key: {{ env: KMS_MASTER_KEY }}\nadmin_token: {{ env: KMS_ADMIN_TOKEN }}\ngateway_token: {{ env: KMS_GATEWAY_TOKEN }}\n\
             tenants:\n  - {{ id: t1, alg: ES256, issuer: https://kms.test/t1, audience: api, rotation: {{ interval: 1d }} }}\n\
             \x20 - {{ id: t2, alg: ES256, issuer: https://kms.test/t2, audience: api, rotation: {{ interval: 1d }} }}\n{extra}",
            dir.join("data").display()
        ),
    )
    .unwrap();
    Setup { cfg, port, internal }
}

fn command(args: &[&str], cfg: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kms-sidecar"));
    c.args(args)
        .arg("--config")
        .arg(cfg)
        .env("KMS_MASTER_KEY", MASTER)
        .env("KMS_ADMIN_TOKEN", ADMIN)
        .env("KMS_GATEWAY_TOKEN", GATEWAY)
        .env("RUST_LOG", "warn");
    c
}

fn run(args: &[&str], cfg: &Path) -> (bool, String) {
    let Output { status, stdout, stderr } = command(args, cfg).output().unwrap();
    (status.success(), format!("{}{}", String::from_utf8_lossy(&stdout), String::from_utf8_lossy(&stderr)))
}

struct Kms {
    child: Child,
    port: u16,
    internal: u16,
}

impl Drop for Kms {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Kms {
    async fn start(s: &Setup) -> Kms {
        let child = command(&["serve"], &s.cfg).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let mut kms = Kms { child, port: s.port, internal: s.internal };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(st) = kms.child.try_wait().unwrap() {
                panic!("kms-sidecar exited: {st}");
            }
            if http.get(format!("http://127.0.0.1:{}/healthz", s.port)).send().await.is_ok_and(|r| r.status() == 200) {
                return kms;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("kms-sidecar did not come up");
    }

    async fn admin(&self, path: &str, body: Value) -> (u16, Value) {
        let r = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{}{path}", self.port))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn feed(&self, query: &str) -> Value {
        let r = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{}/internal/v1/revocations?{query}", self.internal))
            .bearer_auth(GATEWAY)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }
}

/// `serve` exits with an error; returns its output.
fn refused(s: &Setup) -> String {
    let (ok, out) = run(&["serve"], &s.cfg);
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
    let (ok, out) = run(&["init"], &old.cfg);
    assert!(!ok && out.contains("create_if_missing: no longer supported"), "{out}");

    let s = setup(dir.path(), "");
    let (ok, out) = run(&["init"], &s.cfg);
    assert!(ok && out.contains("created a new key store"), "{out}");
    let (ok, out) = run(&["init"], &s.cfg);
    assert!(!ok && out.contains("already exists"), "init never replaces a store: {out}");
    let kms = Kms::start(&s).await;
    let page = kms.feed("after=0").await;
    assert_eq!((page["cursor"].as_u64(), page["last"].as_u64()), (Some(0), Some(0)));
    assert!(page["epoch"].as_str().is_some_and(|e| e.len() > 32), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_store_is_refused_until_accepted_and_every_run_has_its_own_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(dir.path(), "");
    assert!(run(&["init"], &s.cfg).0);
    let copy = dir.path().join("backup.redb");
    let first_epoch = {
        let kms = Kms::start(&s).await;
        assert_eq!(kms.admin("/admin/revoke", json!({"tenant": "t1", "subject": "a"})).await.0, 200);
        kms.feed("after=0").await["epoch"].as_str().unwrap().to_owned()
        // Killed: SIGKILL.
    };
    std::fs::copy(dir.path().join("data/keys.redb"), &copy).unwrap();
    let second_epoch = {
        let kms = Kms::start(&s).await;
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
    let (ok, out) = run(&["init", "--accept-restore"], &s.cfg);
    assert!(ok && out.contains("accepted the key store"), "{out}");
    let kms = Kms::start(&s).await;
    let page = kms.feed("after=0").await;
    assert_eq!(page["last"], 1, "the restored feed");
    assert!(page["epoch"] != first_epoch.as_str() && page["epoch"] != second_epoch.as_str());
    drop(kms);

    // A different store in its place (moved away, another one created) is refused too.
    let other = tempfile::tempdir().unwrap();
    let o = setup(other.path(), "");
    assert!(run(&["init"], &o.cfg).0);
    std::fs::copy(other.path().join("data/keys.redb"), dir.path().join("data/keys.redb")).unwrap();
    let out = refused(&s);
    assert!(out.contains("is not the one this sidecar last ran with"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watermarks_are_checked_lowered_explicitly_and_deletions_and_key_removals_are_on_the_feed() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(dir.path(), "");
    assert!(run(&["init"], &s.cfg).0);
    let kms = Kms::start(&s).await;
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
