//! TLS end to end on 127.0.0.1: the real gateway binary with HTTPS listeners
//! (HTTP/1.1 and HTTP/2 by ALPN), certificate reload, SNI, the redirect listener and
//! HSTS, and mutual TLS to the real `upstreams` role services. Certificates are made
//! per test with the openssl crate into temp dirs.

use crate::support::{free_port, Gateway};
use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::ssl::{SslConnector, SslMethod, SslStream, SslVerifyMode, SslVersion};
use openssl::x509::extension::{BasicConstraints, ExtendedKeyUsage, SubjectAlternativeName};
use openssl::x509::{X509NameBuilder, X509};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use testkit::{claims, EchoServer, TestKey};

// ---- certificates ----------------------------------------------------------------

/// A key and its certificate.
pub(crate) struct Issued {
    cert: X509,
    key: PKey<Private>,
}

fn ec_key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

/// A CA, or a leaf signed by `ca` with these DNS/IP names, valid from `from` to `to`
/// days relative to now.
fn issue(cn: &str, ca: Option<&Issued>, names: &[&str], client: bool, days: (i64, i64)) -> Issued {
    let key = ec_key();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", cn).unwrap();
    let name = name.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    let serial = BigNum::from_u32(rand::random::<u32>() >> 1).unwrap();
    b.set_serial_number(&Asn1Integer::from_bn(&serial).unwrap()).unwrap();
    b.set_subject_name(&name).unwrap();
    let now = testkit::now();
    b.set_not_before(&Asn1Time::from_unix(now + days.0 * 86_400).unwrap()).unwrap();
    b.set_not_after(&Asn1Time::from_unix(now + days.1 * 86_400).unwrap()).unwrap();
    b.set_pubkey(&key).unwrap();
    match ca {
        None => {
            b.set_issuer_name(&name).unwrap();
            b.append_extension(BasicConstraints::new().critical().ca().build().unwrap()).unwrap();
            b.sign(&key, MessageDigest::sha256()).unwrap();
        }
        Some(ca) => {
            b.set_issuer_name(ca.cert.subject_name()).unwrap();
            b.append_extension(BasicConstraints::new().critical().build().unwrap()).unwrap();
            let eku = if client {
                ExtendedKeyUsage::new().client_auth().build()
            } else {
                ExtendedKeyUsage::new().server_auth().build()
            };
            b.append_extension(eku.unwrap()).unwrap();
            if !names.is_empty() {
                let mut san = SubjectAlternativeName::new();
                for n in names {
                    if n.parse::<std::net::IpAddr>().is_ok() {
                        san.ip(n);
                    } else {
                        san.dns(n);
                    }
                }
                let ext = san.build(&b.x509v3_context(Some(&ca.cert), None)).unwrap();
                b.append_extension(ext).unwrap();
            }
            b.sign(&ca.key, MessageDigest::sha256()).unwrap();
        }
    }
    Issued { cert: b.build(), key }
}

fn server_cert(ca: &Issued, cn: &str, names: &[&str]) -> Issued {
    issue(cn, Some(ca), names, false, (-1, 30))
}

/// Writes `<name>.pem` and `<name>.key` into `dir`; returns their paths.
fn write(dir: &Path, name: &str, c: &Issued) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
    write_pair(&cert, &key, c);
    (cert, key)
}

/// Replaces the files atomically (a rename), as a deploy tool would.
fn write_pair(cert: &Path, key: &Path, c: &Issued) {
    let tmp = cert.with_extension("tmp");
    std::fs::write(&tmp, c.key.private_key_to_pem_pkcs8().unwrap()).unwrap();
    std::fs::rename(&tmp, key).unwrap();
    std::fs::write(&tmp, c.cert.to_pem().unwrap()).unwrap();
    std::fs::rename(&tmp, cert).unwrap();
}

fn cn_of(cert: &openssl::x509::X509Ref) -> String {
    let e = cert.subject_name().entries_by_nid(Nid::COMMONNAME).next().unwrap();
    String::from_utf8_lossy(e.data().as_slice()).into_owned()
}

// ---- clients ---------------------------------------------------------------------

/// A blocking TLS connection to 127.0.0.1:`port` with this SNI (none if empty),
/// versions and verification off (the tests read the certificate served).
fn tls_connect(port: u16, sni: &str, max: SslVersion) -> Result<SslStream<TcpStream>, String> {
    let mut b = SslConnector::builder(SslMethod::tls()).unwrap();
    b.set_verify(SslVerifyMode::NONE);
    b.set_min_proto_version(Some(SslVersion::TLS1)).unwrap();
    b.set_max_proto_version(Some(max)).unwrap();
    // Let this client offer TLS 1.0/1.1 at all (OpenSSL 3 refuses them at level 1).
    b.set_cipher_list("DEFAULT:@SECLEVEL=0").unwrap();
    b.set_alpn_protos(b"\x08http/1.1").unwrap();
    let connector = b.build();
    let tcp = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut cfg = connector.configure().unwrap();
    cfg.set_verify_hostname(false);
    cfg.set_use_server_name_indication(!sni.is_empty());
    cfg.connect(if sni.is_empty() { "none" } else { sni }, tcp).map_err(|e| e.to_string())
}

fn served_cn(port: u16, sni: &str) -> String {
    let s = tls_connect(port, sni, SslVersion::TLS1_3).expect("handshake");
    cn_of(&s.ssl().peer_certificate().unwrap())
}

/// One keep-alive HTTP/1.1 GET on `s`; returns (status, body).
fn get_on<S: Read + Write>(s: &mut S, path: &str, token: Option<&str>) -> (u16, String) {
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n{auth}\r\n").unwrap();
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).unwrap(), 1, "connection closed mid-head");
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
    let status = head[9..12].parse().unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse().unwrap())
        .expect("content-length");
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

pub(crate) fn https_client(ca: &Issued, port: u16) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca.cert.to_pem().unwrap()).unwrap())
        .resolve("gateway.medgate.test", ([127, 0, 0, 1], port).into())
        .timeout(Duration::from_secs(10))
}

/// Polls `cond` every 50 ms for up to 10 s.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn metrics(gw: &Gateway) -> String {
    reqwest::get(gw.admin_url("/metrics")).await.unwrap().text().await.unwrap()
}

// ---- config ----------------------------------------------------------------------

const TENANT: &str = r#"
tenants:
  t1:
    issuer: https://issuer.test/t1
    audiences: [api]
    algorithms: [ES256]
    keys: { url: "JWKS" }
headers:
  - { claim: sub, header: X-User-Id }
  - { claim: tenant_id, header: X-Tenant-Id }
  - { claim: role, header: X-User-Role }
"#;

/// A gateway with an HTTPS listener in front of an echo upstream (see [`edge`]).
pub(crate) struct Edge {
    pub(crate) gw: Gateway,
    pub(crate) https: u16,
    pub(crate) ca: Issued,
    pub(crate) key: TestKey,
    _jwks: testkit::JwksServer,
    _echo: EchoServer,
    dir: tempfile::TempDir,
}

/// A gateway with one HTTPS listener (certificate `gateway` for localhost and
/// gateway.medgate.test) in front of an echo upstream; `tls_extra` is appended to
/// the `tls:` section.
pub(crate) async fn edge(tls_extra: &str) -> Edge {
    let dir = tempfile::tempdir().unwrap();
    let ca = issue("test CA", None, &[], false, (-1, 30));
    let (cert, key) =
        write(dir.path(), "gateway", &server_cert(&ca, "gateway", &["localhost", "gateway.medgate.test"]));
    let k = TestKey::load("ec-a.pem", "es-1", jsonwebtoken::Algorithm::ES256);
    let jwks = testkit::JwksServer::start(60).await;
    jwks.set("t1", testkit::jwks(&[&k]));
    let echo = EchoServer::start().await;
    let https = free_port();
    let body = format!(
        "{}upstreams:\n  echo:\n    peers: [\"{}\"]\nroutes:\n  - {{ name: echo, prefix: /echo, upstream: echo }}\n  - {{ name: ping, path: /public/ping, upstream: echo, public: true }}\n\
         tls:\n  listen: [\"127.0.0.1:{https}\"]\n  certificates:\n    - {{ cert: {}, key: {} }}\n{tls_extra}",
        TENANT.replace("JWKS", &jwks.url_template().replace("{tenant}", "t1")),
        echo.addr,
        cert.display(),
        key.display(),
    );
    let gw = Gateway::start_logging(&body, "info").await;
    Edge { gw, https, ca, key: k, _jwks: jwks, _echo: echo, dir }
}

// ---- tests -----------------------------------------------------------------------

#[tokio::test]
async fn https_over_http1_and_http2_reaches_the_upstream_with_mapped_headers() {
    let e = edge("  hsts: { max_age: 1d, include_subdomains: true }\n").await;
    let token = e.key.mint(&claims("t1", "u-7", json!("doctor")));
    let url = format!("https://gateway.medgate.test:{}/echo/x", e.https);
    for (client, version) in [
        (https_client(&e.ca, e.https).http1_only().build().unwrap(), reqwest::Version::HTTP_11),
        (https_client(&e.ca, e.https).build().unwrap(), reqwest::Version::HTTP_2),
    ] {
        let r = client.get(&url).bearer_auth(&token).header("x-user-id", "spoofed").send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.version(), version, "ALPN picks the protocol");
        assert_eq!(r.headers()["strict-transport-security"], "max-age=86400; includeSubDomains");
        let body: Value = r.json().await.unwrap();
        let h = &body["headers"];
        assert_eq!(h["x-user-id"], "u-7", "{body}");
        assert_eq!(h["x-tenant-id"], "t1");
        assert_eq!(h["x-user-role"], "doctor");
        assert_eq!(h["x-forwarded-proto"], "https");
        // A refusal written by the gateway itself carries HSTS too.
        let r = client.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 401);
        assert!(r.headers().contains_key("strict-transport-security"));
    }
    // Plain HTTP never gets HSTS.
    let r = reqwest::get(e.gw.url("/public/ping")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(!r.headers().contains_key("strict-transport-security"));
    let m = metrics(&e.gw).await;
    assert!(m.contains(r#"gateway_tls_handshakes_total{result="ok",version="TLSv1.3"}"#), "{m}");
    assert!(
        m.contains(r#"gateway_tls_certificate_expiry_timestamp_seconds{certificate="tls.certificates[0]"}"#),
        "{m}"
    );
}

#[tokio::test]
async fn old_protocol_versions_and_plaintext_are_refused_cleanly() {
    let e = edge("").await;
    let port = e.https;
    let (old, new) = tokio::task::spawn_blocking(move || {
        let old: Vec<_> =
            [SslVersion::TLS1, SslVersion::TLS1_1].into_iter().map(|v| tls_connect(port, "localhost", v)).collect();
        let new = tls_connect(port, "localhost", SslVersion::TLS1_2).map(|s| s.ssl().version_str().to_owned());
        (old, new)
    })
    .await
    .unwrap();
    for r in old {
        assert!(r.is_err(), "a TLS 1.0/1.1 handshake must fail");
    }
    assert_eq!(new.unwrap(), "TLSv1.2", "the same client with TLS 1.2 gets through");
    // Plain HTTP to the TLS port: the connection ends (no hang, no HTTP answer).
    let answer = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET /public/ping HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
        let mut out = Vec::new();
        let started = Instant::now();
        let _ = s.read_to_end(&mut out);
        (out, started.elapsed())
    })
    .await
    .unwrap();
    assert!(answer.1 < Duration::from_secs(5), "the gateway closes the connection, not a read timeout");
    assert!(!String::from_utf8_lossy(&answer.0).contains("200"), "no HTTP answer on the TLS port");
    let m = metrics(&e.gw).await;
    assert!(m.contains(r#"gateway_tls_handshakes_total{result="old_protocol",version="TLSv1"}"#), "{m}");
}

#[tokio::test]
async fn certificates_reload_on_file_change_keeping_open_connections_and_refusing_bad_files() {
    let e = edge("  watch_interval: 200ms\n").await;
    let port = e.https;
    let (cert, key) = (e.dir.path().join("gateway.pem"), e.dir.path().join("gateway.key"));
    // An open connection, before the swap.
    // (Blocking client I/O runs off the test's runtime, which also runs the echo upstream.)
    let (mut open, status) = tokio::task::spawn_blocking(move || {
        let mut open = tls_connect(port, "localhost", SslVersion::TLS1_3).unwrap();
        let (status, _) = get_on(&mut open, "/public/ping", None);
        (open, status)
    })
    .await
    .unwrap();
    assert_eq!(cn_of(&open.ssl().peer_certificate().unwrap()), "gateway");
    assert_eq!(status, 200);

    let next = server_cert(&e.ca, "gateway-next", &["localhost"]);
    write_pair(&cert, &key, &next);
    let mut served = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while served != "gateway-next" {
        assert!(Instant::now() < deadline, "the new certificate was never served");
        tokio::time::sleep(Duration::from_millis(50)).await;
        served = tokio::task::spawn_blocking(move || served_cn(port, "localhost")).await.unwrap();
    }
    // The connection opened before the swap still works, on its certificate.
    let (status, _) = tokio::task::spawn_blocking(move || {
        let r = get_on(&mut open, "/public/ping", None);
        assert_eq!(cn_of(&open.ssl().peer_certificate().unwrap()), "gateway");
        r
    })
    .await
    .unwrap();
    assert_eq!(status, 200);

    // A key that does not match, then an expired certificate: both refused, counted,
    // logged with the reason, and the certificate in force stays.
    let other = server_cert(&e.ca, "mismatch", &["localhost"]);
    std::fs::write(&key, other.key.private_key_to_pem_pkcs8().unwrap()).unwrap();
    std::fs::write(&cert, next.cert.to_pem().unwrap()).unwrap();
    eventually("a refused reload is logged", || e.gw.log().contains("does not match the certificate")).await;
    let expired = issue("expired", Some(&e.ca), &["localhost"], false, (-10, -1));
    write_pair(&cert, &key, &expired);
    eventually("an expired certificate is refused", || e.gw.log().contains("the certificate expired")).await;
    let m = metrics(&e.gw).await;
    // At least the two bad contents (a poll may also catch a pair half replaced).
    let errors = m
        .lines()
        .find_map(|l| l.strip_prefix(r#"gateway_tls_certificate_reloads_total{result="error"} "#))
        .and_then(|v| v.trim().parse::<u64>().ok());
    assert!(errors.is_some_and(|n| n >= 2), "{m}");
    assert!(m.contains(r#"gateway_tls_certificate_reloads_total{result="ok"} 1"#), "{m}");
    let served = tokio::task::spawn_blocking(move || served_cn(port, "localhost")).await.unwrap();
    assert_eq!(served, "gateway-next", "a bad file keeps the certificate in force");
}

#[tokio::test]
async fn sighup_reloads_certificates() {
    let e = edge("  watch_interval: 1h\n").await;
    let port = e.https;
    let (cert, key) = (e.dir.path().join("gateway.pem"), e.dir.path().join("gateway.key"));
    write_pair(&cert, &key, &server_cert(&e.ca, "after-hup", &["localhost"]));
    // Not picked up until the signal (the poll is an hour away).
    assert_eq!(tokio::task::spawn_blocking(move || served_cn(port, "localhost")).await.unwrap(), "gateway");
    e.gw.hup();
    eventually("the reload is logged", || e.gw.log().contains("TLS certificates reloaded")).await;
    assert_eq!(tokio::task::spawn_blocking(move || served_cn(port, "localhost")).await.unwrap(), "after-hup");
}

#[tokio::test]
async fn sni_selects_the_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = issue("sni CA", None, &[], false, (-1, 30));
    let (api_cert, api_key) = write(dir.path(), "api", &server_cert(&ca, "api", &["api.example.test"]));
    let (wild_cert, wild_key) = write(dir.path(), "wild", &server_cert(&ca, "wild", &["*.tenants.test"]));
    let e = edge(&format!(
        "    - {{ cert: {}, key: {}, server_names: [api.example.test] }}\n    - {{ cert: {}, key: {}, server_names: [\"*.tenants.test\"] }}\n",
        api_cert.display(),
        api_key.display(),
        wild_cert.display(),
        wild_key.display()
    ))
    .await;
    let port = e.https;
    let picks = tokio::task::spawn_blocking(move || {
        ["api.example.test", "API.EXAMPLE.TEST", "a.tenants.test", "other.test", ""].map(|sni| served_cn(port, sni))
    })
    .await
    .unwrap();
    assert_eq!(picks, ["api", "api", "wild", "gateway", "gateway"]);
}

#[tokio::test]
async fn redirect_listener_only_redirects_to_https() {
    let plain = free_port();
    let e = edge(&format!("  redirect_listen: \"127.0.0.1:{plain}\"\n")).await;
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = client
        .get(format!("http://127.0.0.1:{plain}/echo/x?a=1"))
        .header("host", "gw.example:80")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 308);
    assert_eq!(r.headers()["location"], format!("https://gw.example:{}/echo/x?a=1", e.https));
    assert_eq!(e._echo.hits.load(std::sync::atomic::Ordering::SeqCst), 0, "nothing is proxied");
}

#[test]
fn check_reports_tls_file_errors_with_field_paths() {
    let dir = tempfile::tempdir().unwrap();
    let ca = issue("check CA", None, &[], false, (-1, 30));
    let (good, good_key) = write(dir.path(), "good", &server_cert(&ca, "good", &["localhost"]));
    let (expired, expired_key) = write(dir.path(), "expired", &issue("old", Some(&ca), &[], false, (-9, -1)));
    let (_, other_key) = write(dir.path(), "other", &server_cert(&ca, "other", &["localhost"]));
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, ca.cert.to_pem().unwrap()).unwrap();
    let yaml = format!(
        "listen: 127.0.0.1:1\nadmin_listen: 127.0.0.1:2\ntenants:\n  t:\n    issuer: https://i\n    audiences: [a]\n    algorithms: [ES256]\n    keys: {{ url: \"http://127.0.0.1:4/jwks\" }}\n\
         upstreams:\n  u:\n    peers: [\"127.0.0.1:3\"]\n    tls: {{ ca: {good_key}, server_name: u.test, client_cert: {good}, client_key: {other_key} }}\n\
         routes:\n  - {{ path: /p, upstream: u, public: true }}\n\
         tls:\n  listen: [\"127.0.0.1:5\"]\n  certificates:\n    - {{ cert: {good}, key: {other_key} }}\n    - {{ cert: {expired}, key: {expired_key}, server_names: [a.test] }}\n    - {{ cert: {good_key}, key: {good_key}, server_names: [b.test] }}\n    - {{ cert: {good}, key: {good}, server_names: [c.test] }}\n",
        good = good.display(),
        good_key = good_key.display(),
        other_key = other_key.display(),
        expired = expired.display(),
        expired_key = expired_key.display(),
    );
    let path = dir.path().join("gw.yaml");
    std::fs::write(&path, yaml).unwrap();
    let (ok, out) = crate::support::run_binary(&["--check", "--config", path.to_str().unwrap()]);
    assert!(!ok, "{out}");
    for expected in [
        "tls.certificates[0]: ",
        "does not match the certificate",
        "tls.certificates[1]: ",
        "the certificate expired",
        "tls.certificates[2]: ",
        "not a PEM certificate chain",
        "tls.certificates[3]: ",
        "not a PEM private key",
        "upstreams.u.tls.ca: ",
        "upstreams.u.tls.client_cert: ",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    // The same files, good: the check passes.
    let fixed = std::fs::read_to_string(&path).unwrap();
    let fixed = fixed.replace(&format!("ca: {}", good_key.display()), &format!("ca: {}", ca_path.display()));
    let fixed = fixed.split("  certificates:\n").next().unwrap().to_owned()
        + &format!("  certificates:\n    - {{ cert: {}, key: {} }}\n", good.display(), good_key.display());
    let fixed =
        fixed.replace(&format!("client_key: {}", other_key.display()), &format!("client_key: {}", good_key.display()));
    std::fs::write(&path, fixed).unwrap();
    let (ok, out) = crate::support::run_binary(&["--check", "--config", path.to_str().unwrap()]);
    assert!(ok, "{out}");
}

// ---- mutual TLS to the role services ---------------------------------------------

struct Upstreams(std::process::Child);

impl Drop for Upstreams {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The real `upstreams` binary serving TLS with a client CA, on four free ports.
fn start_upstreams(cert: &Path, key: &Path, client_ca: &Path) -> (Upstreams, [u16; 4]) {
    let bin = Path::new(env!("CARGO_BIN_EXE_gateway")).with_file_name("upstreams");
    let ok = std::process::Command::new(env!("CARGO")).args(["build", "-q", "-p", "upstreams"]).status().unwrap();
    assert!(ok.success(), "building upstreams failed");
    let ports = [free_port(), free_port(), free_port(), free_port()];
    let child = std::process::Command::new(bin)
        .args(["--patient", &format!("127.0.0.1:{}", ports[0])])
        .args(["--doctor", &format!("127.0.0.1:{}", ports[1])])
        .args(["--lab", &format!("127.0.0.1:{}", ports[2])])
        .args(["--insurance", &format!("127.0.0.1:{}", ports[3])])
        .arg("--tls-cert")
        .arg(cert)
        .arg("--tls-key")
        .arg(key)
        .arg("--client-ca")
        .arg(client_ca)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    (Upstreams(child), ports)
}

fn identity(c: &Issued) -> reqwest::Identity {
    let mut pem = c.cert.to_pem().unwrap();
    pem.extend(c.key.private_key_to_pem_pkcs8().unwrap());
    reqwest::Identity::from_pem(&pem).unwrap()
}

/// A demo CA and a foreign one, the role services' certificate, the gateway's client
/// pair from the demo CA (written to files), and the role services started with them,
/// requiring that CA's client certificates.
struct Mtls {
    dir: tempfile::TempDir,
    ca: Issued,
    foreign: Issued,
    client: Issued,
    client_cert: std::path::PathBuf,
    client_key: std::path::PathBuf,
    ca_path: std::path::PathBuf,
    svc: Upstreams,
    ports: [u16; 4],
}

fn mtls() -> Mtls {
    let dir = tempfile::tempdir().unwrap();
    let ca = issue("demo CA", None, &[], false, (-1, 30));
    let foreign = issue("foreign CA", None, &[], false, (-1, 30));
    let (svc_cert, svc_key) = write(dir.path(), "services", &server_cert(&ca, "services", &["patient.medgate.test"]));
    let client = issue("medgate gateway", Some(&ca), &[], true, (-1, 30));
    let (client_cert, client_key) = write(dir.path(), "client", &client);
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, ca.cert.to_pem().unwrap()).unwrap();
    let (svc, ports) = start_upstreams(&svc_cert, &svc_key, &ca_path);
    Mtls { dir, ca, foreign, client, client_cert, client_key, ca_path, svc, ports }
}

#[tokio::test]
async fn mutual_tls_to_the_role_services() {
    let Mtls { dir: _dir, ca, foreign, client, client_cert, client_key, ca_path, svc: _svc, ports } = mtls();
    let foreign_client = issue("medgate gateway", Some(&foreign), &[], true, (-1, 30));
    let direct = |id: Option<&Issued>| {
        let mut b = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&ca.cert.to_pem().unwrap()).unwrap())
            .resolve("patient.medgate.test", ([127, 0, 0, 1], ports[0]).into())
            .timeout(Duration::from_secs(5));
        if let Some(c) = id {
            b = b.identity(identity(c));
        }
        b.build().unwrap()
    };
    let url = format!("https://patient.medgate.test:{}/public/ping", ports[0]);
    // Wait for the service with the gateway's certificate (readiness, and it is accepted).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match direct(Some(&client)).get(&url).send().await {
            Ok(r) if r.status() == 200 => break,
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
            other => panic!("role service not ready: {other:?}"),
        }
    }
    assert!(direct(None).get(&url).send().await.is_err(), "no client certificate: refused at the handshake");
    assert!(direct(Some(&foreign_client)).get(&url).send().await.is_err(), "another CA's certificate: refused");

    // Through the gateway, which presents its client certificate; and a pool whose
    // server_name is not in the service's certificate is a 502 with a reason.
    let k = TestKey::load("ec-a.pem", "es-1", jsonwebtoken::Algorithm::ES256);
    let jwks = testkit::JwksServer::start(60).await;
    jwks.set("t1", testkit::jwks(&[&k]));
    let tls = |name: &str| {
        format!(
            "{{ ca: {}, server_name: {name}, client_cert: {}, client_key: {} }}",
            ca_path.display(),
            client_cert.display(),
            client_key.display()
        )
    };
    let body = format!(
        "{}upstreams:\n  patient:\n    peers: [\"127.0.0.1:{p}\"]\n    health_check: {{ path: /healthz, interval: 1s }}\n    tls: {}\n  wrong:\n    peers: [\"127.0.0.1:{p}\"]\n    retries: 0\n    tls: {}\n\
         routes:\n  - {{ name: echo, prefix: /echo, upstream: patient }}\n  - {{ name: wrong, prefix: /wrong, upstream: wrong, public: true }}\n",
        TENANT.replace("JWKS", &jwks.url_template().replace("{tenant}", "t1")),
        tls("patient.medgate.test"),
        tls("lab.medgate.test"),
        p = ports[0],
    );
    let gw = Gateway::start(&body).await;
    let token = k.mint(&claims("t1", "u-9", json!("doctor")));
    let http = reqwest::Client::new();
    let mut last = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let r = http.get(gw.url("/echo/me")).bearer_auth(&token).send().await.unwrap();
        if r.status() == 200 {
            last = Some(r.json::<Value>().await.unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let body = last.expect("the gateway reaches the role service over mTLS");
    assert_eq!(body["service"], "patient");
    assert_eq!(body["headers"]["x-user-id"], "u-9");
    let r = http.get(gw.url("/wrong/x")).send().await.unwrap();
    assert_eq!(r.status(), 502);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["reason"], "upstream_tls_failed", "{v}");

    // The gateway's client certificate reloads like the listener's: a new pair (valid
    // 60 days) is taken from its files, shown in the expiry gauge, and used upstream.
    let series = r#"gateway_tls_certificate_expiry_timestamp_seconds{certificate="upstreams.patient.tls.client_cert"}"#;
    let expiry = |m: &str| -> Option<i64> {
        m.lines().find_map(|l| l.strip_prefix(series)).and_then(|v| v.trim().parse::<f64>().ok()).map(|v| v as i64)
    };
    let next = issue("medgate gateway", Some(&ca), &[], true, (-1, 60));
    write_pair(&client_cert, &client_key, &next);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let m = metrics(&gw).await;
        if expiry(&m).is_some_and(|e| e > testkit::now() + 45 * 86_400) {
            break;
        }
        assert!(Instant::now() < deadline, "the new client certificate was not loaded:\n{m}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = http.get(gw.url("/echo/me")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200, "the role service accepts the new client certificate");
}

#[tokio::test]
async fn upstream_http2_reaches_the_role_service_over_h2_with_the_identity_headers() {
    let dir = tempfile::tempdir().unwrap();
    let ca = issue("demo CA", None, &[], false, (-1, 30));
    let (svc_cert, svc_key) = write(dir.path(), "services", &server_cert(&ca, "services", &["patient.medgate.test"]));
    let (client_cert, client_key) =
        write(dir.path(), "client", &issue("medgate gateway", Some(&ca), &[], true, (-1, 30)));
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, ca.cert.to_pem().unwrap()).unwrap();
    let (_svc, ports) = start_upstreams(&svc_cert, &svc_key, &ca_path);
    let k = TestKey::load("ec-a.pem", "es-1", jsonwebtoken::Algorithm::ES256);
    let jwks = testkit::JwksServer::start(60).await;
    jwks.set("t1", testkit::jwks(&[&k]));
    let tls = |http2: bool| {
        format!(
            "{{ ca: {}, server_name: patient.medgate.test, client_cert: {}, client_key: {}, http2: {http2} }}",
            ca_path.display(),
            client_cert.display(),
            client_key.display()
        )
    };
    // The same role service twice: `h2` offers HTTP/2 by ALPN, `h1` does not (and the
    // service, offering h2 and http/1.1, takes what the gateway offers).
    let body = format!(
        "{}upstreams:\n  h2:\n    peers: [\"127.0.0.1:{p}\"]\n    tls: {}\n  h1:\n    peers: [\"127.0.0.1:{p}\"]\n    tls: {}\n\
         routes:\n  - {{ name: h1, prefix: /echo/h1, upstream: h1 }}\n  - {{ name: h2, prefix: /echo, upstream: h2 }}\n",
        TENANT.replace("JWKS", &jwks.url_template().replace("{tenant}", "t1")),
        tls(true),
        tls(false),
        p = ports[0],
    );
    let gw = Gateway::start(&body).await;
    let token = k.mint(&claims("t1", "u-42", json!("doctor")));
    let http = reqwest::Client::new();
    // Several requests: the first opens the HTTP/2 connection, the next reuse it.
    for (path, version) in [("/echo/me", "HTTP/2.0"), ("/echo/h1/me", "HTTP/1.1")] {
        until_answer(&http, &gw.url(path), &token, (200, "")).await;
        for _ in 0..3 {
            let r = http.get(gw.url(path)).bearer_auth(&token).header("x-user-id", "spoofed").send().await.unwrap();
            assert_eq!(r.status(), 200);
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["service"], "patient", "{v}");
            assert_eq!(v["version"], version, "the protocol the role service saw on {path}: {v}");
            let h = &v["headers"];
            assert_eq!(h["x-user-id"], "u-42", "{v}");
            assert_eq!(h["x-tenant-id"], "t1", "{v}");
            assert_eq!(h["x-user-role"], "doctor", "{v}");
        }
    }
}

/// The status and `reason` of a GET through the gateway.
async fn status_reason(http: &reqwest::Client, url: &str, token: &str) -> (u16, String) {
    let r = http.get(url).bearer_auth(token).send().await.unwrap();
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    (status, v["reason"].as_str().unwrap_or_default().to_owned())
}

/// Polls `url` until it answers `want` (status, reason), for up to 30 s; returns every
/// distinct answer seen on the way.
async fn until_answer(http: &reqwest::Client, url: &str, token: &str, want: (u16, &str)) -> Vec<(u16, String)> {
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = status_reason(http, url, token).await;
        if !seen.contains(&got) {
            seen.push(got.clone());
        }
        if got.0 == want.0 && got.1 == want.1 {
            return seen;
        }
        assert!(Instant::now() < deadline, "{url} never answered {want:?}; seen {seen:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn health_checks_and_requests_follow_a_replaced_client_certificate() {
    let Mtls { dir: _dir, ca, foreign, client: _, client_cert, client_key, ca_path, svc: _svc, ports } = mtls();

    let k = TestKey::load("ec-a.pem", "es-1", jsonwebtoken::Algorithm::ES256);
    let jwks = testkit::JwksServer::start(60).await;
    jwks.set("t1", testkit::jwks(&[&k]));
    // `checked` has a health check, `direct` (the same service) none: its requests
    // always go to the peer, so they show what the request path presents.
    let tls = format!(
        "{{ ca: {}, server_name: patient.medgate.test, client_cert: {}, client_key: {} }}",
        ca_path.display(),
        client_cert.display(),
        client_key.display()
    );
    let body = format!(
        "{}upstreams:\n  checked:\n    peers: [\"127.0.0.1:{p}\"]\n    retries: 0\n    health_check: {{ path: /healthz, interval: 200ms }}\n    tls: {tls}\n  \
         direct:\n    peers: [\"127.0.0.1:{p}\"]\n    retries: 0\n    tls: {tls}\n\
         routes:\n  - {{ name: checked, prefix: /echo, upstream: checked }}\n  - {{ name: direct, path: /public/ping, upstream: direct, public: true }}\n",
        TENANT.replace("JWKS", &jwks.url_template().replace("{tenant}", "t1")),
        p = ports[0],
    );
    let gw = Gateway::start_logging(&body, "info").await;
    let token = k.mint(&claims("t1", "u-9", json!("doctor")));
    let http = reqwest::Client::new();
    let (checked, direct) = (gw.url("/echo/me"), gw.url("/public/ping"));
    until_answer(&http, &checked, &token, (200, "")).await;
    until_answer(&http, &direct, &token, (200, "")).await;

    // A client certificate from another CA, which the role service refuses: once the
    // watcher takes it (no config reload, no SIGHUP), requests present it and fail,
    // and so do the health checks, which turn the checked pool's peer unhealthy.
    let stranger = issue("medgate gateway", Some(&foreign), &[], true, (-1, 30));
    write_pair(&client_cert, &client_key, &stranger);
    let seen = until_answer(&http, &direct, &token, (502, "upstream_tls_failed")).await;
    assert!(seen.iter().all(|(s, _)| *s == 200 || *s == 502), "{seen:?}");
    let seen = until_answer(&http, &checked, &token, (503, "upstream_unavailable")).await;
    assert!(seen.iter().all(|(s, _)| [200, 502, 503].contains(s)), "{seen:?}");

    // A good pair again (a new one from the right CA): healthy and answered, no restart.
    write_pair(&client_cert, &client_key, &issue("medgate gateway", Some(&ca), &[], true, (-1, 30)));
    until_answer(&http, &checked, &token, (200, "")).await;
    until_answer(&http, &direct, &token, (200, "")).await;
    assert!(!gw.log().contains("config reloaded"), "no config reload was involved:\n{}", gw.log());
}

#[test]
fn shipped_tls_config_checks_with_the_demo_pki() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let work = tempfile::tempdir().unwrap();
    let ok = std::process::Command::new("bash")
        .arg(root.join("scripts/demo-ca.sh"))
        .arg(work.path().join(".demo/tls"))
        .status()
        .unwrap();
    assert!(ok.success(), "scripts/demo-ca.sh failed");
    let conf = root.join("conf/tls/gateway.yaml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .arg("--config")
        .arg(&conf)
        .arg("--check")
        .current_dir(work.path())
        .env("KMS_GATEWAY_TOKEN", "gateway-channel-credential")
        .env("GATEWAY_ADMIN_TOKEN", "gateway-admin-credential")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    // Without the PKI the same check names the missing files by field path.
    let empty = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .arg("--config")
        .arg(&conf)
        .arg("--check")
        .current_dir(empty.path())
        .env("KMS_GATEWAY_TOKEN", "gateway-channel-credential")
        .env("GATEWAY_ADMIN_TOKEN", "gateway-admin-credential")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(text.contains("tls.certificates[0]: .demo/tls/gateway.pem: cannot be read"), "{text}");
    assert!(text.contains("upstreams.patient.tls.ca: "), "{text}");
}

/// `scripts/demo.sh` runs `conf/tls/gateway.yaml`, most users and tests read
/// `conf/gateway.yaml`: apart from its opening comment, the `tls:` section and the
/// `tls:` line of each upstream, the TLS file is the plain one line for line, so the
/// demo shows what the plain config does (CORS, rate limits, response headers...).
#[test]
fn shipped_tls_config_is_the_plain_one_plus_tls() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf");
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
    let body = |text: &str| -> Vec<String> {
        let mut out = Vec::new();
        let mut in_tls = false;
        for line in text.lines().skip_while(|l| l.starts_with('#')) {
            if line.starts_with("# HTTPS listener") {
                in_tls = true;
            }
            if in_tls {
                in_tls = !line.is_empty();
                continue;
            }
            if !line.starts_with("    tls: ") {
                out.push(line.to_owned());
            }
        }
        out
    };
    let (plain, tls) = (read("gateway.yaml"), read("tls/gateway.yaml"));
    assert!(tls.contains("\ntls:\n") && tls.matches("\n    tls: { ca: ").count() == 4, "the TLS parts are there");
    let (plain, tls) = (body(&plain), body(&tls));
    for (i, (p, t)) in plain.iter().zip(&tls).enumerate() {
        assert_eq!(p, t, "conf/tls/gateway.yaml differs from conf/gateway.yaml at body line {i}");
    }
    assert_eq!(plain.len(), tls.len(), "conf/tls/gateway.yaml and conf/gateway.yaml differ in length");
}
