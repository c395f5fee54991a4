//! Test fixtures shared by the gateway's tests and benchmarks: fixed test keys,
//! token minting with arbitrary headers, and in-process JWKS and echo servers on
//! 127.0.0.1 ephemeral ports; tenant and key fixtures for gateway-core ([`fixture`]).

pub mod fixture;
pub mod jwe;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::routing::{any, get};
use axum::{Json, Router};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// A free loopback port never handed out before in this process: a process stopped
/// and restarted on its port must not find that port taken by another test's listener
/// started in between (the kernel readily hands a port just released back to the next
/// `bind(0)`). The one port picker of every test harness.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// Directory of the fixed test keys.
pub fn keys_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("keys")
}

/// Reads a test key file by name.
pub fn key_file(name: &str) -> Vec<u8> {
    // A bare file name is one of the fixed test keys; anything with a `/` is a path.
    let path = if name.contains('/') { std::path::PathBuf::from(name) } else { keys_dir().join(name) };
    std::fs::read(&path).unwrap_or_else(|e| panic!("test key {}: {e}", path.display()))
}

/// A private test key with its `kid` and algorithm.
#[derive(Clone)]
pub struct TestKey {
    /// Key id.
    pub kid: String,
    /// Algorithm it signs with.
    pub alg: Algorithm,
    pub enc: EncodingKey,
    /// The key file name.
    pub file: String,
}

impl TestKey {
    /// Loads `keys/<file>` for `alg` under `kid`.
    pub fn load(file: &str, kid: &str, alg: Algorithm) -> Self {
        let pem = key_file(file);
        let enc = match alg {
            Algorithm::RS256 | Algorithm::PS256 => EncodingKey::from_rsa_pem(&pem),
            Algorithm::ES256 => EncodingKey::from_ec_pem(&pem),
            Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem),
            other => panic!("unsupported test alg {other:?}"),
        }
        .expect("test key parses");
        Self { kid: kid.into(), alg, enc, file: file.into() }
    }

    /// The public JWK (with `kid`, `alg`, `use: sig`).
    pub fn jwk(&self) -> Value {
        if self.alg == Algorithm::EdDSA {
            // jsonwebtoken cannot export Ed25519 JWKs: the SPKI's last 32 bytes are `x`.
            let spki = pem_body(&key_file(&self.file.replace(".pem", ".pub.pem")));
            let x = b64(&spki[spki.len() - 32..]);
            return json!({"kty":"OKP","crv":"Ed25519","x": x,"kid": self.kid,"alg":"EdDSA","use":"sig"});
        }
        let jwk = Jwk::from_encoding_key(&self.enc, self.alg).expect("jwk");
        let mut v = serde_json::to_value(jwk).expect("jwk json");
        let o = v.as_object_mut().unwrap();
        o.insert("kid".into(), json!(self.kid));
        o.insert("use".into(), json!("sig"));
        o.retain(|k, _| !["d", "p", "q", "dp", "dq", "qi", "key_ops"].contains(&k.as_str()));
        v
    }

    /// A compact JWS with the standard header `{"alg","typ":"JWT","kid"}`.
    pub fn mint(&self, claims: &Value) -> String {
        let alg = match self.alg {
            Algorithm::RS256 => "RS256",
            Algorithm::PS256 => "PS256",
            Algorithm::ES256 => "ES256",
            Algorithm::EdDSA => "EdDSA",
            _ => unreachable!(),
        };
        self.mint_raw(&json!({"alg": alg, "typ": "JWT", "kid": self.kid}).to_string(), &claims.to_string())
    }

    /// A compact JWS over exactly these header and payload texts, signed with this key.
    pub fn mint_raw(&self, header: &str, payload: &str) -> String {
        let input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
        let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &self.enc, self.alg).expect("sign");
        format!("{input}.{sig}")
    }
}

fn pem_body(pem: &[u8]) -> Vec<u8> {
    use base64::Engine;
    let text = String::from_utf8_lossy(pem);
    let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD.decode(body).expect("pem body")
}

/// Unpadded base64url.
pub fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes unpadded base64url (test input is trusted).
pub fn b64_decode(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text).expect("base64url")
}

/// A JWKS document holding these keys' public halves.
pub fn jwks(keys: &[&TestKey]) -> String {
    json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()}).to_string()
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// Valid claims for `tenant` issued by `https://issuer.test/<tenant>` for audience `api`.
pub fn claims(tenant: &str, sub: &str, role: Value) -> Value {
    let now = now();
    json!({
        "iss": format!("https://issuer.test/{tenant}"),
        "aud": "api",
        "sub": sub,
        "role": role,
        "tenant_id": tenant,
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": format!("jti-{sub}-{now}"),
    })
}

#[derive(Default)]
struct JwksState {
    docs: Mutex<HashMap<String, String>>,
    fetches: Mutex<HashMap<String, usize>>,
    total: AtomicUsize,
    max_age: AtomicUsize,
}

/// An in-process JWKS server: `GET /jwk/{tenant}` serves the document set for the
/// tenant (404 if none) with `Cache-Control: max-age`, and counts fetches.
pub struct JwksServer {
    /// Bound address.
    pub addr: SocketAddr,
    state: Arc<JwksState>,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    /// Starts on 127.0.0.1:0 with `max-age` seconds.
    pub async fn start(max_age: usize) -> Self {
        let state = Arc::new(JwksState::default());
        state.max_age.store(max_age, Ordering::SeqCst);
        let app = Router::new().route("/jwk/{tenant}", get(serve_jwks)).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.ok();
        });
        Self { addr, state, task }
    }

    /// Sets the JWKS served for `tenant`.
    pub fn set(&self, tenant: &str, jwks: String) {
        self.state.docs.lock().unwrap().insert(tenant.into(), jwks);
    }

    /// Fetches of `tenant` so far.
    pub fn fetches(&self, tenant: &str) -> usize {
        self.state.fetches.lock().unwrap().get(tenant).copied().unwrap_or(0)
    }

    /// `http://addr/jwk/{tenant}`.
    pub fn url_template(&self) -> String {
        format!("http://{}/jwk/{{tenant}}", self.addr)
    }

    /// Stops serving: later connections are refused.
    pub fn stop(&self) {
        self.task.abort();
    }
}

async fn serve_jwks(State(st): State<Arc<JwksState>>, Path(tenant): Path<String>) -> impl IntoResponse {
    st.total.fetch_add(1, Ordering::SeqCst);
    *st.fetches.lock().unwrap().entry(tenant.clone()).or_default() += 1;
    let doc = st.docs.lock().unwrap().get(&tenant).cloned();
    let cc = format!("public, max-age={}", st.max_age.load(Ordering::SeqCst));
    match doc {
        Some(d) => (StatusCode::OK, [("cache-control", cc), ("content-type", "application/json".into())], d),
        None => (StatusCode::NOT_FOUND, [("cache-control", cc), ("content-type", "text/plain".into())], String::new()),
    }
}

/// An in-process echo upstream: answers every request with a JSON of its method,
/// path and headers (names lower-cased, repeated headers joined), plus `GET /healthz`;
/// `?sleep_ms=N` delays the answer.
pub struct EchoServer {
    /// Bound address.
    pub addr: SocketAddr,
    /// Requests received.
    pub hits: Arc<AtomicUsize>,
}

impl EchoServer {
    /// Starts on 127.0.0.1:0.
    pub async fn start() -> Self {
        let hits = Arc::new(AtomicUsize::new(0));
        let app = Router::new().route("/healthz", get(|| async { "ok" })).fallback(any(echo)).with_state(hits.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.ok();
        });
        Self { addr, hits }
    }
}

async fn echo(State(hits): State<Arc<AtomicUsize>>, method: Method, uri: Uri, headers: HeaderMap) -> Json<Value> {
    hits.fetch_add(1, Ordering::SeqCst);
    if let Some(ms) = uri.query().and_then(|q| q.strip_prefix("sleep_ms=")).and_then(|v| v.parse().ok()) {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    let mut h = serde_json::Map::new();
    for name in headers.keys() {
        let values: Vec<String> =
            headers.get_all(name).iter().map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()).collect();
        h.insert(name.as_str().into(), json!(values.join(" | ")));
    }
    Json(json!({"method": method.as_str(), "path": uri.path(), "headers": h}))
}

/// Runs `promtool check metrics` on `text`; `None` when promtool is not installed
/// outside CI (CI installs Debian's `prometheus` package, so there it must exist).
pub fn promtool_check(text: &str) -> Option<(bool, String)> {
    use std::io::Write;
    let child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(_) if std::env::var("CI").as_deref() != Ok("true") => return None,
        Err(e) => panic!("promtool is required in CI: {e}"),
    };
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let msg = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Some((out.status.success() && msg.trim().is_empty(), msg))
}
