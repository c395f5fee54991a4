//! Shared harness: runs the real `gateway` binary on free 127.0.0.1 ports with a
//! generated config, waits for its admin listener, and kills it on drop.

#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub use testkit::free_port;

/// Waits until `check` holds, polling every 20 ms; fails the test naming `what` once
/// `within` has passed without it. The tests' one way to wait (never a fixed sleep).
pub async fn eventually<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + within;
    while !check().await {
        assert!(std::time::Instant::now() < deadline, "timed out after {within:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A running gateway process.
pub struct Gateway {
    child: Child,
    /// Proxy port.
    pub port: u16,
    /// Admin port.
    pub admin: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes `yaml` (with `{listen}` and `{admin}` placeholders filled) and returns its path.
pub fn write_config(dir: &tempfile::TempDir, yaml: &str) -> std::path::PathBuf {
    let path = dir.path().join("gateway.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

impl Gateway {
    /// Starts the gateway with this config body (listen addresses are added here)
    /// and waits until `/healthz` answers.
    pub async fn start(body: &str) -> Gateway {
        Self::start_logging(body, "warn").await
    }

    /// Like [`Gateway::start`] with `RUST_LOG` set to `filter`; stderr goes to a file
    /// read back by [`Gateway::log`].
    pub async fn start_logging(body: &str, filter: &str) -> Gateway {
        let (port, admin) = (free_port(), free_port());
        let yaml = format!("listen: 127.0.0.1:{port}\nadmin_listen: 127.0.0.1:{admin}\nthreads: 2\n{body}");
        let dir = tempfile::tempdir().unwrap();
        let path = write_config(&dir, &yaml);
        let log = std::fs::File::create(dir.path().join("gateway.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_gateway"))
            .arg("--config")
            .arg(&path)
            .env("RUST_LOG", filter)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut gw = Gateway { child, port, admin, _dir: dir };
        gw.wait_healthy().await;
        gw
    }

    async fn wait_healthy(&mut self) {
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("gateway exited early: {status}\n{}", self.log());
            }
            if let Ok(r) = client.get(format!("http://127.0.0.1:{}/healthz", self.admin)).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("gateway did not become healthy");
    }

    /// The config file the gateway was started with.
    pub fn config_path(&self) -> std::path::PathBuf {
        self._dir.path().join("gateway.yaml")
    }

    /// Sends SIGHUP to the gateway process.
    pub fn hup(&self) {
        let ok = Command::new("kill").arg("-HUP").arg(self.child.id().to_string()).status().unwrap();
        assert!(ok.success());
    }

    /// The gateway's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the gateway wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("gateway.log")).unwrap_or_default()
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// `http://127.0.0.1:<admin><path>`.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin)
    }
}

/// Runs the binary to completion with these args; returns (exit ok, stdout+stderr).
pub fn run_binary(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Standard tenants/routes config for `t1` (all algorithms) and `t2` (ES256) with keys
/// from `url_template`, and the echo upstream at `echo`.
pub fn standard_config(url_template: &str, echo: std::net::SocketAddr, extra_keys: &str) -> String {
    format!(
        r#"
auth:
  leeway: 30s
keys:
  url_template: "{url_template}"
  unknown_kid_cooldown: 60s
  refresh_floor: 60s
{extra_keys}
tenants:
  t1:
    issuer: https://issuer.test/t1
    audiences: [api]
    algorithms: [RS256, PS256, ES256, EdDSA]
    required_claims: [sub]
  t2:
    issuer: https://issuer.test/t2
    audiences: [api]
    algorithms: [ES256]
headers:
  - {{ claim: sub, header: X-User-Id }}
  - {{ claim: tenant_id, header: X-Tenant-Id }}
  - {{ claim: role, header: X-User-Role }}
  - {{ claim: jti, header: X-Token-Id }}
upstreams:
  echo:
    peers: ["{echo}"]
    health_check: {{ path: /healthz, interval: 1s }}
    connect_timeout: 500ms
    read_timeout: 5s
routes:
  - name: public
    path: /public/ping
    methods: [GET]
    upstream: echo
    public: true
  - name: records
    path: /patients/{{patient_id}}/records
    methods: [GET, PUT]
    upstream: echo
    allow:
      - role: patient
        methods: [GET]
        owner: {{ claim: sub, param: patient_id }}
      - role: doctor
  - name: labs
    path: /labs/results
    methods: [POST]
    upstream: echo
    allow:
      - role: lab
  - name: insurance
    prefix: /insurance
    methods: [GET]
    upstream: echo
    max_token_lifetime: 5m
    allow:
      - role: insurer
  - name: echo
    prefix: /echo
    upstream: echo
"#
    )
}

/// Sends one raw HTTP/1.1 GET with `path` exactly as given (no client normalisation)
/// and returns the whole response text.
pub async fn raw_get(port: u16, path: &str, token: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n");
    conn.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut out)).await.unwrap().unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// A running kms-sidecar (the real binary, built beside the gateway's).
pub struct Sidecar {
    child: Child,
    /// Public/admin base URL.
    pub base: String,
    /// Internal channel base URL.
    pub internal: String,
    cfg: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Admin credential of test sidecars.
pub const SIDECAR_ADMIN: &str = "sidecar-test-admin-token";
/// Gateway channel credential of test sidecars.
pub const SIDECAR_GATEWAY: &str = "sidecar-test-gateway-token";

/// Writes the gateway channel credential ([`SIDECAR_GATEWAY`]) to `name` in `dir`, for
/// a gateway config's `token_file`; returns its path.
pub fn gateway_token_file(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, SIDECAR_GATEWAY).unwrap();
    path
}

fn sidecar_binary() -> std::path::PathBuf {
    let path = std::path::Path::new(env!("CARGO_BIN_EXE_gateway")).with_file_name("kms-sidecar");
    if !path.exists() {
        let ok = Command::new(env!("CARGO")).args(["build", "-q", "-p", "kms-sidecar"]).status().unwrap();
        assert!(ok.success(), "building kms-sidecar failed");
    }
    path
}

fn sidecar_command(args: &[&str], cfg: &std::path::Path) -> Command {
    let mut c = Command::new(sidecar_binary());
    c.args(args)
        .arg("--config")
        .arg(cfg)
        .env("KMS_MASTER_KEY", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")
        .env("KMS_ADMIN_TOKEN", SIDECAR_ADMIN)
        .env("KMS_GATEWAY_TOKEN", SIDECAR_GATEWAY)
        .env("RUST_LOG", "warn");
    c
}

impl Sidecar {
    /// Creates a store (`kms-sidecar init`) and starts a sidecar with `jwks_max_age`
    /// and these tenant lines (YAML list items).
    pub async fn start(max_age: &str, tenants: &str) -> Sidecar {
        let dir = tempfile::tempdir().unwrap();
        let (port, internal) = (free_port(), free_port());
        let cfg = dir.path().join("kms.yaml");
        std::fs::write(
            &cfg,
            format!(
                "listen: 127.0.0.1:{port}\ninternal_listen: 127.0.0.1:{internal}\ndata_dir: {}\n\
                 master_key: {{ env: KMS_MASTER_KEY }}\nadmin_token: {{ env: KMS_ADMIN_TOKEN }}\n\
                 gateway_token: {{ env: KMS_GATEWAY_TOKEN }}\njwks_max_age: {max_age}\ntenants:\n{tenants}",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let (ok, out) = run_sidecar(&["init"], &cfg);
        assert!(ok, "kms-sidecar init: {out}");
        let child = sidecar_command(&["serve"], &cfg).stdout(Stdio::null()).spawn().unwrap();
        let mut sidecar = Sidecar {
            child,
            base: format!("http://127.0.0.1:{port}"),
            internal: format!("http://127.0.0.1:{internal}"),
            cfg,
            _dir: dir,
        };
        sidecar.wait_up().await;
        sidecar
    }

    async fn wait_up(&mut self) {
        let http = reqwest::Client::new();
        for _ in 0..400 {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("kms-sidecar exited: {status}");
            }
            if http.get(format!("{}/healthz", self.base)).send().await.is_ok_and(|r| r.status() == 200) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("kms-sidecar did not come up");
    }

    /// Starts the stopped sidecar again on the same ports, config and data directory.
    pub async fn restart(&mut self) {
        self.stop();
        self.child = sidecar_command(&["serve"], &self.cfg).stdout(Stdio::null()).spawn().unwrap();
        self.wait_up().await;
    }

    /// Runs `kms-sidecar <args> --config <this sidecar's config>` to completion.
    pub fn run(&self, args: &[&str]) -> (bool, String) {
        run_sidecar(args, &self.cfg)
    }

    /// The sidecar's `data_dir`.
    pub fn data_dir(&self) -> std::path::PathBuf {
        self._dir.path().join("data")
    }

    /// Mints a token for `tenant`/`sub` with `role` and `ttl_secs`.
    pub async fn mint(&self, tenant: &str, sub: &str, role: &str, ttl_secs: i64) -> String {
        self.mint_json(tenant, serde_json::json!({"sub": sub, "role": role, "ttl_secs": ttl_secs})).await
    }

    /// Mints a nested JWE (a signed token encrypted to the tenant's encryption key).
    pub async fn mint_encrypted(&self, tenant: &str, sub: &str, role: &str, ttl_secs: i64) -> String {
        let body = serde_json::json!({"sub": sub, "role": role, "ttl_secs": ttl_secs, "encrypt": true});
        self.mint_json(tenant, body).await
    }

    /// Mints a token with this issuing request body.
    pub async fn mint_json(&self, tenant: &str, body: serde_json::Value) -> String {
        let r = reqwest::Client::new()
            .post(format!("{}/v1/tenants/{tenant}/tokens", self.base))
            .bearer_auth(SIDECAR_ADMIN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        r.json::<serde_json::Value>().await.unwrap()["token"].as_str().unwrap().to_owned()
    }

    /// POSTs an admin JSON body; returns the status.
    pub async fn admin(&self, path: &str, body: serde_json::Value) -> u16 {
        reqwest::Client::new()
            .post(format!("{}{path}", self.base))
            .bearer_auth(SIDECAR_ADMIN)
            .json(&body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// Kills the sidecar.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the kms-sidecar binary with `args --config cfg`; returns (exit ok, stdout+stderr).
fn run_sidecar(args: &[&str], cfg: &std::path::Path) -> (bool, String) {
    let out = sidecar_command(args, cfg).output().unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// The claims object of a compact JWS.
pub fn claims_of(token: &str) -> serde_json::Value {
    let p = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&gateway_core::b64::decode(p.as_bytes()).unwrap()).unwrap()
}

/// One ES256 test key (`es-1`) served as both tenants' JWKS, and an echo upstream.
pub async fn keyed_stack() -> (testkit::TestKey, testkit::JwksServer, testkit::EchoServer) {
    let key = testkit::TestKey::load("ec-a.pem", "es-1", jsonwebtoken::Algorithm::ES256);
    let server = testkit::JwksServer::start(60).await;
    server.set("t1", testkit::jwks(&[&key]));
    server.set("t2", testkit::jwks(&[&key]));
    (key, server, testkit::EchoServer::start().await)
}

/// The `kid` in a compact token's protected header (JWS or JWE).
pub fn token_kid(token: &str) -> String {
    let h = token.split('.').next().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&gateway_core::b64::decode(h.as_bytes()).unwrap()).unwrap();
    v["kid"].as_str().unwrap().to_owned()
}

/// For `secs`, mints a token every 100 ms with `mint(n)` and sends it and a sample of
/// every earlier one to `url`; returns the `kid`s seen, the refusals
/// `(kid, status, body)` and the number of requests sent.
pub async fn mint_and_replay_all(
    secs: u64,
    url: &str,
    mut mint: impl AsyncFnMut(usize) -> String,
) -> (std::collections::BTreeSet<String>, Vec<(String, u16, String)>, usize) {
    let http = reqwest::Client::new();
    let mut tokens: Vec<String> = Vec::new();
    let mut kids = std::collections::BTreeSet::new();
    let (mut refused, mut sent) = (Vec::new(), 0);
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(secs) {
        let t = mint(tokens.len()).await;
        kids.insert(token_kid(&t));
        tokens.push(t);
        let sample: Vec<&String> = tokens.iter().rev().step_by(7).chain(tokens.first()).collect();
        for t in sample {
            let r = http.get(url).bearer_auth(t).send().await.unwrap();
            sent += 1;
            if r.status() != 200 {
                refused.push((token_kid(t), r.status().as_u16(), r.text().await.unwrap_or_default()));
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (kids, refused, sent)
}

/// Sends `method url` with a bearer token (if any) and extra headers; returns the
/// status, the JSON body (`Null` when there is none) and the headers.
pub async fn send(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: Option<&str>,
    extra: &[(&str, &str)],
) -> (u16, serde_json::Value, reqwest::header::HeaderMap) {
    let mut req = http.request(method, url);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("gateway answers");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.json::<serde_json::Value>().await.unwrap_or(serde_json::Value::Null);
    (status, body, headers)
}
