//! Key fetches are bounded: a huge (chunked) JWKS is cut off as soon as it passes
//! `keys.max_fetch_bytes` with the gateway's memory flat, a slow-drip one at
//! `keys.fetch_timeout` for the whole fetch, failed fetches back off, and a reload
//! whose key file is missing or garbage is refused with the old keys in force.

use crate::support::{run_binary, Gateway};
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use testkit::{claims, TestKey};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Size of the huge JWKS the server would send in full.
const HUGE: usize = 50 << 20;
/// The filler inside the huge JWKS, which must never reach a log line.
const FILLER: &str = "ZQZQZQZQZQZQZQZQ";

#[derive(Clone)]
enum Mode {
    /// A small JWKS with `Content-Length`.
    Good(String),
    /// A JWKS of [`HUGE`] bytes, chunked, generated while it is sent.
    Huge,
    /// A chunked JWKS that sends one byte every 50 ms, forever.
    Drip,
}

/// How one connection ended, as the server saw it.
#[derive(Debug, Clone)]
struct Served {
    /// Body bytes written before the peer went away (or all of them).
    sent: usize,
    /// Whether the peer closed before the whole body was sent.
    cut: bool,
    /// From the request to the end of the connection.
    lasted: Duration,
}

#[derive(Default)]
struct State {
    mode: Mutex<Option<Mode>>,
    fetches: AtomicUsize,
    served: Mutex<Vec<Served>>,
}

/// A raw-TCP key server on 127.0.0.1:0 whose answer is switched by the test.
struct KeyServer {
    port: u16,
    state: Arc<State>,
}

impl KeyServer {
    async fn start(mode: Mode) -> KeyServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State { mode: Mutex::new(Some(mode)), ..State::default() });
        let st = state.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(serve(conn, st.clone()));
            }
        });
        KeyServer { port, state }
    }

    fn set(&self, mode: Mode) {
        *self.state.mode.lock().unwrap() = Some(mode);
    }

    fn fetches(&self) -> usize {
        self.state.fetches.load(Ordering::SeqCst)
    }

    fn served(&self) -> Vec<Served> {
        self.state.served.lock().unwrap().clone()
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/jwk/t1", self.port)
    }
}

async fn serve(mut conn: TcpStream, st: Arc<State>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    st.fetches.fetch_add(1, Ordering::SeqCst);
    let started = Instant::now();
    let mode = st.mode.lock().unwrap().clone().unwrap();
    let chunked = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
    let (sent, cut) = match mode {
        Mode::Good(doc) => {
            let resp = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncache-control: max-age=60\r\n\
                 content-length: {}\r\nconnection: close\r\n\r\n{doc}",
                doc.len()
            );
            let _ = conn.write_all(resp.as_bytes()).await;
            return;
        }
        Mode::Huge => {
            let piece = format!(r#"{{"kty":"oct","k":"{}"}},"#, FILLER.repeat(4000));
            let frame = format!("{:x}\r\n{piece}\r\n", piece.len());
            let mut sent = 0;
            let mut cut = conn.write_all(format!("{chunked}a\r\n{{\"keys\":[ \r\n").as_bytes()).await.is_err();
            while !cut && sent < HUGE {
                cut = conn.write_all(frame.as_bytes()).await.is_err();
                if !cut {
                    sent += piece.len();
                }
            }
            if !cut {
                cut = conn.write_all(b"2\r\n{}\r\n2\r\n]}\r\n0\r\n\r\n").await.is_err();
            }
            (sent, cut)
        }
        Mode::Drip => {
            let mut sent = 0;
            let mut cut = conn.write_all(format!("{chunked}a\r\n{{\"keys\":[ \r\n").as_bytes()).await.is_err();
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            while !cut && started.elapsed() < Duration::from_secs(30) {
                tick.tick().await;
                cut = conn.write_all(b"1\r\n \r\n").await.is_err();
                sent += usize::from(!cut);
            }
            (sent, cut)
        }
    };
    st.served.lock().unwrap().push(Served { sent, cut, lasted: started.elapsed() });
}

async fn wait_for<F: Fn() -> Fut, Fut: std::future::Future<Output = bool>>(what: &str, f: F) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn key() -> TestKey {
    TestKey::load("ec-a.pem", "es-1", jsonwebtoken::Algorithm::ES256)
}

/// A key the tenant's JWKS does not hold: its tokens trigger an unknown-`kid` refetch.
fn stranger() -> TestKey {
    TestKey::load("ec-b.pem", "es-unknown", jsonwebtoken::Algorithm::ES256)
}

/// One tenant `t1` with `keys` as its key source, an echo upstream and one route.
fn config(keys_section: &str, t1_keys: &str, echo: std::net::SocketAddr) -> String {
    format!(
        r#"
keys:
  refresh_floor: 30s
{keys_section}
tenants:
  t1:
    issuer: https://issuer.test/t1
    audiences: [api]
    algorithms: [ES256]
    keys: {t1_keys}
upstreams:
  echo:
    peers: ["{echo}"]
routes:
  - name: echo
    prefix: /echo
    upstream: echo
"#
    )
}

async fn status(http: &reqwest::Client, gw: &Gateway, token: &str) -> u16 {
    http.get(gw.url("/echo")).bearer_auth(token).send().await.unwrap().status().as_u16()
}

async fn metrics(http: &reqwest::Client, gw: &Gateway) -> String {
    http.get(gw.admin_url("/metrics")).send().await.unwrap().text().await.unwrap()
}

/// A `kB` line of `/proc/<pid>/status`, in bytes.
fn proc_status(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = text.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("{field} in {text}"));
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// The tester's case: a tenant's key URL answers a 50 MB chunked JWKS. The gateway
/// stops reading as soon as the 1 MiB default cap is passed (the server sees the
/// connection closed long before the end), its peak memory stays flat, the fetch
/// counts as `too_large` (logged without content), and the last good keys stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_chunked_jwks_is_cut_off_at_the_cap_with_memory_flat() {
    let (key, echo) = (key(), testkit::EchoServer::start().await);
    let server = KeyServer::start(Mode::Good(testkit::jwks(&[&key]))).await;
    let keys = format!("{{ url: \"{}\" }}", server.url());
    let gw = Gateway::start(&config("  unknown_kid_cooldown: 1s", &keys, echo.addr)).await;
    let http = reqwest::Client::new();
    let good = key.mint(&claims("t1", "u-1", json!("doctor")));
    assert_eq!(status(&http, &gw, &good).await, 200);

    // Peak RSS from here on: reset the high-water mark (Linux `clear_refs` 5).
    let pid = gw.pid();
    let reset = std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok();
    let before = proc_status(pid, "VmRSS:");
    server.set(Mode::Huge);
    let unknown = stranger().mint(&claims("t1", "u-1", json!("doctor")));
    assert_eq!(status(&http, &gw, &unknown).await, 401, "unknown kid after a refetch that failed");

    let text = metrics(&http, &gw).await;
    assert!(
        text.contains(r#"gateway_key_fetches_total{result="too_large",tenant="t1",trigger="unknown_kid"} 1"#),
        "{text}"
    );
    wait_for("the server to see the connection closed", || async { !server.served().is_empty() }).await;
    let served = server.served();
    assert!(served[0].cut, "the gateway read the whole 50 MB: {served:?}");
    assert!(served[0].sent < 17 << 20, "1 MiB cap, socket buffers aside: {served:?}");

    let peak = proc_status(pid, if reset { "VmHWM:" } else { "VmRSS:" });
    let extra = peak.saturating_sub(before);
    assert!(extra < 24 << 20, "gateway memory grew by {} MiB", extra >> 20);

    assert_eq!(status(&http, &gw, &good).await, 200, "the last good keys stay");
    let log = gw.log();
    assert!(log.contains("larger than 1048576 bytes"), "{log}");
    assert!(!log.contains(FILLER), "no document content in the log");
}

/// A JWKS sent one byte at a time is cut off at `keys.fetch_timeout`, counted over
/// the whole fetch (the headers came at once), as `timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_drip_jwks_is_cut_off_at_the_total_time_cap() {
    let (key, echo) = (key(), testkit::EchoServer::start().await);
    let server = KeyServer::start(Mode::Good(testkit::jwks(&[&key]))).await;
    let keys = format!("{{ url: \"{}\" }}", server.url());
    let gw = Gateway::start(&config("  fetch_timeout: 1s", &keys, echo.addr)).await;
    let http = reqwest::Client::new();
    server.set(Mode::Drip);
    let unknown = stranger().mint(&claims("t1", "u-1", json!("doctor")));
    let started = Instant::now();
    assert_eq!(status(&http, &gw, &unknown).await, 401);
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(3), "the request waited {waited:?}");

    wait_for("the server to see the connection closed", || async { !server.served().is_empty() }).await;
    let served = server.served();
    assert!(served[0].cut, "{served:?}");
    assert!(
        served[0].lasted >= Duration::from_millis(900) && served[0].lasted < Duration::from_secs(3),
        "cut at the 1 s cap: {served:?}"
    );
    let text = metrics(&http, &gw).await;
    assert!(
        text.contains(r#"gateway_key_fetches_total{result="timeout",tenant="t1",trigger="unknown_kid"} 1"#),
        "{text}"
    );
    let good = key.mint(&claims("t1", "u-1", json!("doctor")));
    assert_eq!(status(&http, &gw, &good).await, 200, "the last good keys stay");
}

/// With no unknown-`kid` cooldown at all, a stream of unknown-`kid` tokens against
/// a failing source does not turn into a fetch per request: after each failure the
/// next fetch waits out a growing backoff (1 s, 2 s, 4 s ...).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_fetches_back_off_instead_of_hammering_the_source() {
    let (key, echo) = (key(), testkit::EchoServer::start().await);
    let server = KeyServer::start(Mode::Good(testkit::jwks(&[&key]))).await;
    let keys = format!("{{ url: \"{}\" }}", server.url());
    let gw = Gateway::start(&config("  unknown_kid_cooldown: 0s", &keys, echo.addr)).await;
    let http = reqwest::Client::new();
    server.set(Mode::Huge);
    let start_fetches = server.fetches();
    let unknown = stranger().mint(&claims("t1", "u-1", json!("doctor")));
    let (started, mut sent) = (Instant::now(), 0);
    while started.elapsed() < Duration::from_millis(2500) {
        assert_eq!(status(&http, &gw, &unknown).await, 401);
        sent += 1;
    }
    let fetched = server.fetches() - start_fetches;
    assert!(sent >= 20, "only {sent} requests sent");
    assert!((1..=3).contains(&fetched), "{fetched} fetches for {sent} unknown-kid requests in 2.5 s");
    let good = key.mint(&claims("t1", "u-1", json!("doctor")));
    assert_eq!(status(&http, &gw, &good).await, 200);
}

/// The tester's case: SIGHUP with the tenant's key file missing, then garbage, then
/// a config naming a missing file. Each reload is refused like `--check` would
/// refuse the file (counted `error`, logged with the field path), and the tenant
/// keeps answering 200 on the old runtime; a good file reloads again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_with_a_missing_or_garbage_key_file_keeps_the_old_runtime() {
    let (key, echo) = (key(), testkit::EchoServer::start().await);
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("t1.pem");
    std::fs::write(&pem, testkit::key_file("ec-a.pub.pem")).unwrap();
    let keys = format!("{{ file: \"{}\", kid: es-1 }}", pem.display());
    let gw = Gateway::start_logging(&config("", &keys, echo.addr), "info").await;
    let http = reqwest::Client::new();
    let token = key.mint(&claims("t1", "u-1", json!("doctor")));
    assert_eq!(status(&http, &gw, &token).await, 200);
    let reloads = |result: &'static str, n: usize| {
        let (http, url) = (http.clone(), gw.admin_url("/metrics"));
        async move {
            let text = http.get(url).send().await.unwrap().text().await.unwrap();
            text.contains(&format!("gateway_config_reloads_total{{result=\"{result}\"}} {n}"))
        }
    };

    std::fs::remove_file(&pem).unwrap();
    gw.hup();
    wait_for("a refused reload (missing file)", || reloads("error", 1)).await;
    assert_eq!(status(&http, &gw, &token).await, 200);

    std::fs::write(&pem, "this is not a key\n").unwrap();
    gw.hup();
    wait_for("a refused reload (garbage file)", || reloads("error", 2)).await;
    assert_eq!(status(&http, &gw, &token).await, 200);

    let original = std::fs::read_to_string(gw.config_path()).unwrap();
    let elsewhere = dir.path().join("missing.pem");
    std::fs::write(gw.config_path(), original.replace(pem.to_str().unwrap(), elsewhere.to_str().unwrap())).unwrap();
    gw.hup();
    wait_for("a refused reload (config naming a missing file)", || reloads("error", 3)).await;
    assert_eq!(status(&http, &gw, &token).await, 200, "the tenant never lost its keys");

    let log = gw.log();
    assert_eq!(log.matches("config reload refused").count(), 3, "{log}");
    assert!(log.contains("tenants.t1.keys.file"), "{log}");
    assert!(log.contains("missing.pem"), "{log}");
    assert!(!log.contains("config reloaded"), "{log}");

    std::fs::write(&elsewhere, testkit::key_file("ec-a.pub.pem")).unwrap();
    gw.hup();
    wait_for("a good reload", || reloads("ok", 1)).await;
    assert_eq!(status(&http, &gw, &token).await, 200);
}

/// The private decryption JWKS from the sidecar channel goes through the same
/// bounded fetch: a huge one is `too_large` for the decryption-key counter too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_decryption_key_set_is_refused_the_same_way() {
    let (key, echo) = (key(), testkit::EchoServer::start().await);
    let jwks = KeyServer::start(Mode::Good(testkit::jwks(&[&key]))).await;
    let channel = KeyServer::start(Mode::Huge).await;
    let dir = tempfile::tempdir().unwrap();
    let credential = dir.path().join("channel.token");
    std::fs::write(&credential, "gateway-channel-credential").unwrap();
    let keys = format!("{{ url: \"{}\" }}\n    encryption: {{ keys: {{ url: \"{}\" }} }}", jwks.url(), channel.url());
    let extra = format!("  startup: not_ready\ndecryption:\n  token_file: {}", credential.display());
    let gw = Gateway::start(&config(&extra, &keys, echo.addr)).await;
    let http = reqwest::Client::new();
    let text = metrics(&http, &gw).await;
    assert!(
        text.contains(r#"gateway_decryption_key_fetches_total{result="too_large",tenant="t1",trigger="startup"} 1"#),
        "{text}"
    );
    wait_for("the channel server to see the connection closed", || async { !channel.served().is_empty() }).await;
    assert!(channel.served()[0].cut && channel.served()[0].sent < 17 << 20, "{:?}", channel.served());
    assert!(!gw.log().contains(FILLER));
}

/// A reload that points a tenant serving now at a key source that fails (here: too
/// large) is refused too, rather than leaving the tenant without keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_to_a_failing_key_url_keeps_the_tenant_serving() {
    let (key, echo) = (key(), testkit::EchoServer::start().await);
    let good = KeyServer::start(Mode::Good(testkit::jwks(&[&key]))).await;
    let huge = KeyServer::start(Mode::Huge).await;
    let keys = format!("{{ url: \"{}\" }}", good.url());
    let gw = Gateway::start(&config("", &keys, echo.addr)).await;
    let http = reqwest::Client::new();
    let token = key.mint(&claims("t1", "u-1", json!("doctor")));
    assert_eq!(status(&http, &gw, &token).await, 200);

    let original = std::fs::read_to_string(gw.config_path()).unwrap();
    std::fs::write(gw.config_path(), original.replace(&good.url(), &huge.url())).unwrap();
    gw.hup();
    wait_for("a refused reload", || {
        let (http, url) = (http.clone(), gw.admin_url("/metrics"));
        async move {
            let text = http.get(url).send().await.unwrap().text().await.unwrap();
            text.contains(r#"gateway_config_reloads_total{result="error"} 1"#)
        }
    })
    .await;
    assert_eq!(status(&http, &gw, &token).await, 200, "the old runtime and its keys stay");
    let log = gw.log();
    assert!(log.contains("tenants.t1.keys: the new key source failed: key set larger than"), "{log}");
}

/// `--check` (the same validation as a reload) refuses a tenant id too long for
/// `<tenant>-...` key ids, and a key file above `keys.max_fetch_bytes`, naming
/// each field path.
#[test]
fn check_refuses_long_tenant_ids_and_oversized_key_files() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.json");
    std::fs::write(&big, format!(r#"{{"keys":[],"pad":"{}"}}"#, "x".repeat(5000))).unwrap();
    let long = "t".repeat(65);
    let yaml = format!(
        "listen: 127.0.0.1:1\nadmin_listen: 127.0.0.1:2\nkeys:\n  max_fetch_bytes: 4096\ntenants:\n\
         \x20 {long}:\n    issuer: i\n    audiences: [a]\n    algorithms: [ES256]\n    keys: {{ file: {} }}\n\
         \x20 ok:\n    issuer: i\n    audiences: [a]\n    algorithms: [ES256]\n    keys: {{ file: {} }}\n\
         upstreams:\n  u:\n    peers: [\"127.0.0.1:3\"]\nroutes:\n  - prefix: /\n    upstream: u\n",
        big.display(),
        big.display()
    );
    let path = dir.path().join("gateway.yaml");
    std::fs::write(&path, &yaml).unwrap();
    let (ok, out) = run_binary(&["--config", path.to_str().unwrap(), "--check"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains(&format!("tenants.{}…: tenant id must be 1 to 64 characters (this one has 65)", &long[..64])),
        "{out}"
    );

    let fixed = yaml.replace(&long, "t1");
    std::fs::write(&path, fixed).unwrap();
    let (ok, out) = run_binary(&["--config", path.to_str().unwrap(), "--check"]);
    assert!(!ok, "{out}");
    assert!(out.contains("tenants.ok.keys.file") && out.contains("larger than 4096 bytes"), "{out}");
    assert!(out.contains("tenants.t1.keys.file"), "{out}");
}
