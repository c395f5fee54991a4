//! Pingora's graceful binary upgrade: a new gateway process started with `-u` takes
//! the listening sockets over from the old one (SIGQUIT), and a client hammering the
//! gateway meanwhile sees no failed request.

use crate::support::{free_port, standard_config};
use serde_json::json;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::claims;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_upgrade_hands_over_the_listeners_without_dropping_requests() {
    let (key, server, echo) = crate::support::keyed_stack().await;
    let dir = tempfile::tempdir().unwrap();
    let (port, admin) = (free_port(), free_port());
    let cfg = dir.path().join("gateway.yaml");
    std::fs::write(
        &cfg,
        format!(
            "listen: 127.0.0.1:{port}\nadmin_listen: 127.0.0.1:{admin}\n{}",
            standard_config(&server.url_template(), echo.addr, "")
        ),
    )
    .unwrap();
    let pingora = dir.path().join("pingora.yaml");
    std::fs::write(
        &pingora,
        format!(
            "version: 1\nupgrade_sock: {}\npid_file: {}\ngrace_period_seconds: 1\ngraceful_shutdown_timeout_seconds: 1\n",
            dir.path().join("upgrade.sock").display(),
            dir.path().join("gateway.pid").display()
        ),
    )
    .unwrap();
    let spawn = |upgrade: bool| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_gateway"));
        c.args(["--config", cfg.to_str().unwrap(), "-c", pingora.to_str().unwrap()]);
        if upgrade {
            c.arg("-u");
        }
        c.env("RUST_LOG", "warn").stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap()
    };
    let mut old = spawn(false);
    // A fresh connection per request: what the upgrade guarantees is that no new
    // connection is refused or fails; an idle keep-alive connection to the old process
    // closing under a client is the ordinary keep-alive race that clients retry.
    let http = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let url = format!("http://127.0.0.1:{port}/echo");
    let token = key.mint(&claims("t1", "u", json!("doctor")));
    let deadline = Instant::now() + Duration::from_secs(10);
    while http.get(&url).bearer_auth(&token).send().await.map(|r| r.status().as_u16()).unwrap_or(0) != 200 {
        assert!(Instant::now() < deadline, "old gateway never served");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Client traffic throughout the hand-over.
    let stop = Arc::new(AtomicBool::new(false));
    let (okc, failc) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load = {
        let (stop, okc, failc, http, url, token) =
            (stop.clone(), okc.clone(), failc.clone(), http.clone(), url.clone(), token.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                match http.get(&url).bearer_auth(&token).send().await {
                    Ok(r) if r.status() == 200 => okc.fetch_add(1, Ordering::SeqCst),
                    _ => failc.fetch_add(1, Ordering::SeqCst),
                };
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut new = spawn(true);
    // The new process is ready for the hand-over once it listens on the upgrade
    // socket (the old one connects there on SIGQUIT to pass its listeners).
    let sock = dir.path().join("upgrade.sock");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !sock.exists() {
        assert!(Instant::now() < deadline, "the new process never listened on the upgrade socket");
        assert!(new.try_wait().unwrap().is_none(), "the new process exited");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(Command::new("kill").args(["-QUIT", &old.id().to_string()]).status().unwrap().success());
    let exited = {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if old.try_wait().unwrap().is_some() {
                break true;
            }
            if Instant::now() > deadline {
                break false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    load.await.unwrap();
    let served_after = http.get(&url).bearer_auth(&token).send().await.map(|r| r.status().as_u16()).unwrap_or(0);
    let still_running = new.try_wait().unwrap().is_none();
    let _ = old.kill();
    let _ = new.kill();
    let _ = new.wait();
    assert!(exited, "the old process hands over and exits");
    assert!(still_running, "the new process keeps running");
    assert_eq!(served_after, 200, "the new process serves on the same port");
    assert!(okc.load(Ordering::SeqCst) > 10);
    assert_eq!(failc.load(Ordering::SeqCst), 0, "no request failed during the upgrade");
}
