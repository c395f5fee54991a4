//! Runs the real `upstreams` binary on four free ports and talks to it.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Kills the child process even if an assertion fails.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("local addr").port()
}

#[tokio::test]
async fn binary_serves_all_four_services() {
    let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_upstreams"));
    for (flag, port) in ["--patient", "--doctor", "--lab", "--insurance"].iter().zip(&ports) {
        cmd.arg(flag).arg(format!("127.0.0.1:{port}"));
    }
    let mut child = KillOnDrop(cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn upstreams"));
    let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().expect("client");

    for port in &ports {
        let url = format!("http://127.0.0.1:{port}/healthz");
        let mut ready = false;
        for _ in 0..200 {
            if let Ok(resp) = client.get(&url).send().await {
                if resp.status().is_success() {
                    ready = true;
                    break;
                }
            }
            if let Ok(Some(status)) = child.0.try_wait() {
                panic!("upstreams exited early: {status}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(ready, "{url} never became healthy");
    }

    let resp = client
        .get(format!("http://127.0.0.1:{}/insurance/patients/p-100/summary", ports[3]))
        .header("X-User-Id", "i-1")
        .header("X-Tenant-Id", "hospital-a")
        .header("X-User-Role", "insurer")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), reqwest::StatusCode::OK);
    assert_eq!(resp.headers().get("x-served-by").and_then(|v| v.to_str().ok()), Some("insurance"));
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["record_count"], 2);
}
