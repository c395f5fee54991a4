//! The one harness of the sidecar's integration tests: credentials and tenant
//! fixtures, free ports never handed out twice, a config written on those ports, the
//! `kms-sidecar` binary run as `init` / `serve`, a running sidecar waited for on both
//! listeners' `/healthz` (killed, SIGKILL, when dropped), and [`eventually`], the
//! deadline-bounded wait every test uses instead of a fixed sleep.
//!
//! ```ignore
//! let dir = tempfile::tempdir().unwrap();
//! let s = Sidecar::new(dir.path(), &tenants(&[T_EC]));
//! s.init();
//! let kms = s.start().await;
//! ```

use serde_json::Value;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Admin and issuing credential of every test sidecar.
pub const ADMIN: &str = "admin-token-for-tests-0001";
/// Gateway channel credential of every test sidecar.
pub const GATEWAY: &str = "gateway-token-for-tests-01";
/// Master key of every test sidecar.
pub const MASTER: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
/// Another valid master key (opens no test store).
pub const OTHER_MASTER: &str = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";
/// How long a sidecar may take to come up.
pub const STARTUP: Duration = Duration::from_secs(20);

/// An RS256 tenant with 3072-bit keys and RSA-OAEP-256 encryption keys.
pub const T_RSA: &str = "{ id: t-rsa, alg: RS256, rsa_bits: 3072, issuer: https://kms.test/t-rsa, audience: api, rotation: { interval: 1d } }";
/// An ES256 tenant with ECDH-ES+A256KW encryption keys.
pub const T_EC: &str = "{ id: t-ec, alg: ES256, enc_alg: ECDH-ES+A256KW, issuer: https://kms.test/t-ec, audience: api, rotation: { interval: 1d } }";
/// Two plain ES256 tenants.
pub const T1: &str = "{ id: t1, alg: ES256, issuer: https://kms.test/t1, audience: api, rotation: { interval: 1d } }";
/// See [`T1`].
pub const T2: &str = "{ id: t2, alg: ES256, issuer: https://kms.test/t2, audience: api, rotation: { interval: 1d } }";

/// A `tenants:` section of these fixtures.
pub fn tenants(list: &[&str]) -> String {
    list.iter().fold("tenants:\n".to_owned(), |acc, t| format!("{acc}  - {t}\n"))
}

pub use testkit::free_port;

/// Seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// Polls `check` every 20 ms until it gives a value, which is returned; panics
/// naming `what` once `within` has passed.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the wall clock (whole seconds) is past `instant`.
pub async fn clock_past(instant: i64) {
    eventually("the clock passing an instant", Duration::from_secs(5), || async { (now() > instant).then_some(()) })
        .await
}

/// A sidecar's config in a directory, on two fresh ports, and how to run it.
pub struct Sidecar {
    /// The config file.
    pub cfg: PathBuf,
    /// Public + admin listener port.
    pub port: u16,
    /// Gateway channel port.
    pub internal: u16,
    admin: String,
    gateway: String,
    master: String,
}

impl Sidecar {
    /// Writes `dir/kms.yaml` (store in `dir/data`, secrets from the environment) with
    /// `yaml` (tenants and any other settings) appended.
    pub fn new(dir: &Path, yaml: &str) -> Sidecar {
        let (port, internal) = (free_port(), free_port());
        let cfg = dir.join("kms.yaml");
        std::fs::write(
            &cfg,
            format!(
                "listen: 127.0.0.1:{port}\ninternal_listen: 127.0.0.1:{internal}\ndata_dir: {}\n\
                 master_key: {{ env: KMS_MASTER_KEY }}\nadmin_token: {{ env: KMS_ADMIN_TOKEN }}\ngateway_token: {{ env: KMS_GATEWAY_TOKEN }}\n{yaml}",
                dir.join("data").display()
            ),
        )
        .unwrap();
        Sidecar { cfg, port, internal, admin: ADMIN.into(), gateway: GATEWAY.into(), master: MASTER.into() }
    }

    /// The same sidecar with other credentials.
    pub fn credentials(mut self, admin: &str, gateway: &str) -> Sidecar {
        (self.admin, self.gateway) = (admin.into(), gateway.into());
        self
    }

    /// The same sidecar with another master key.
    pub fn master(mut self, master: &str) -> Sidecar {
        self.master = master.into();
        self
    }

    /// `kms-sidecar <args> --config <cfg>` with this sidecar's secrets.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_kms-sidecar"));
        c.args(args)
            .arg("--config")
            .arg(&self.cfg)
            .env("KMS_MASTER_KEY", &self.master)
            .env("KMS_ADMIN_TOKEN", &self.admin)
            .env("KMS_GATEWAY_TOKEN", &self.gateway)
            .env("RUST_LOG", "warn");
        c
    }

    /// Runs a subcommand to its end: whether it succeeded, and stdout + stderr.
    pub fn run(&self, args: &[&str]) -> (bool, String) {
        let Output { status, stdout, stderr } = self.command(args).output().unwrap();
        (status.success(), format!("{}{}", String::from_utf8_lossy(&stdout), String::from_utf8_lossy(&stderr)))
    }

    /// `init`, which must succeed.
    pub fn init(&self) {
        let (ok, out) = self.run(&["init"]);
        assert!(ok, "init: {out}");
    }

    /// `serve` in the background, stderr piped (for a start that must fail).
    pub fn spawn(&self) -> Child {
        self.command(&["serve"]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap()
    }

    /// `serve`, once both listeners answer `/healthz`.
    pub async fn start(&self) -> Kms {
        let child = self.command(&["serve"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let mut kms = Kms { child, port: self.port, internal: self.internal };
        let http = reqwest::Client::new();
        eventually("kms-sidecar coming up", STARTUP, || {
            if let Some(st) = kms.child.try_wait().unwrap() {
                panic!("kms-sidecar exited: {st}");
            }
            let up = |p: u16| http.get(format!("http://127.0.0.1:{p}/healthz")).send();
            let (port, internal) = (up(kms.port), up(kms.internal));
            async move {
                let ok = |r: reqwest::Result<reqwest::Response>| r.is_ok_and(|r| r.status() == 200);
                (ok(port.await) && ok(internal.await)).then_some(())
            }
        })
        .await;
        kms
    }
}

/// A running sidecar, killed (SIGKILL, no clean shutdown) when dropped.
pub struct Kms {
    /// The process.
    pub child: Child,
    /// Public + admin listener port.
    pub port: u16,
    /// Gateway channel port.
    pub internal: u16,
}

impl Drop for Kms {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Kms {
    /// A URL on the public listener.
    pub fn url(&self, p: &str) -> String {
        format!("http://127.0.0.1:{}{p}", self.port)
    }

    /// A URL on the gateway channel.
    pub fn internal_url(&self, p: &str) -> String {
        format!("http://127.0.0.1:{}{p}", self.internal)
    }

    /// `POST` to the admin API: status and JSON body (null if none).
    pub async fn admin(&self, path: &str, body: Value) -> (u16, Value) {
        let r = reqwest::Client::new().post(self.url(path)).bearer_auth(ADMIN).json(&body).send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// One page of the revocation feed (`query`: its query string), which must be a 200.
    pub async fn feed(&self, query: &str) -> Value {
        let url = self.internal_url(&format!("/internal/v1/revocations?{query}"));
        let r = reqwest::Client::new().get(url).bearer_auth(GATEWAY).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }
}
