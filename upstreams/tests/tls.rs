//! The role services over TLS with a client CA, in process on 127.0.0.1, with the PKI
//! that `scripts/demo-ca.sh` makes: the gateway's client certificate is served, a
//! client without a certificate or with one from another CA is refused at the handshake;
//! HTTP/2 is served by ALPN.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use upstreams::tls::{server_config, TlsFiles, TlsListener};
use upstreams::{router, Service, Store};

fn demo_pki() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/demo-ca.sh");
    let ok = std::process::Command::new("bash").arg(script).arg(dir.path().join("tls")).status().unwrap();
    assert!(ok.success(), "scripts/demo-ca.sh failed");
    dir
}

fn client(dir: &Path, identity: Option<&str>) -> reqwest::Client {
    let ca = std::fs::read(dir.join("ca.pem")).unwrap();
    let mut b = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .timeout(Duration::from_secs(5));
    if let Some(name) = identity {
        let mut pem = std::fs::read(dir.join(format!("{name}.pem"))).unwrap();
        pem.extend(std::fs::read(dir.join(format!("{name}.key"))).unwrap());
        b = b.identity(reqwest::Identity::from_pem(&pem).unwrap());
    }
    b.build().unwrap()
}

#[tokio::test]
async fn only_the_gateway_client_certificate_gets_through() {
    let pki = demo_pki();
    let dir = pki.path().join("tls");
    let config = server_config(&TlsFiles {
        cert: dir.join("services.pem"),
        key: dir.join("services.key"),
        client_ca: Some(dir.join("ca.pem")),
    })
    .unwrap();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = tcp.local_addr().unwrap().port();
    let listener = TlsListener::new(tcp, config).unwrap();
    let app = router(Service::Patient, Arc::new(Store::seeded()));
    tokio::spawn(async move { axum::serve(listener, app).await });
    // 127.0.0.1 is in the services certificate.
    let url = format!("https://127.0.0.1:{port}/echo/x");

    let r = client(&dir, Some("gateway-client")).get(&url).header("x-user-id", "p-100").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["service"], "patient");
    assert!(client(&dir, None).get(&url).send().await.is_err(), "no client certificate");
    assert!(client(&dir, Some("foreign-client")).get(&url).send().await.is_err(), "another CA's client certificate");
    // The server answers the gateway again after the refusals.
    let r = client(&dir, Some("gateway-client")).get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // HTTP/2 by ALPN for a client that offers it (the echo reports the version it saw);
    // HTTP/1.1 for one that does not.
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["version"], "HTTP/2.0", "{body}");
    let mut pem = std::fs::read(dir.join("gateway-client.pem")).unwrap();
    pem.extend(std::fs::read(dir.join("gateway-client.key")).unwrap());
    let h1 = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(dir.join("ca.pem")).unwrap()).unwrap())
        .identity(reqwest::Identity::from_pem(&pem).unwrap())
        .http1_only()
        .build()
        .unwrap();
    let body: serde_json::Value = h1.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(body["version"], "HTTP/1.1", "{body}");
}

#[test]
fn bad_files_are_refused_with_the_flag() {
    let pki = demo_pki();
    let dir = pki.path().join("tls");
    let e = server_config(&TlsFiles { cert: dir.join("ca.key"), key: dir.join("services.key"), client_ca: None })
        .err()
        .unwrap();
    assert!(e.starts_with("--tls-cert"), "{e}");
    let e = server_config(&TlsFiles { cert: dir.join("services.pem"), key: dir.join("gateway.key"), client_ca: None })
        .err()
        .unwrap();
    assert!(e.starts_with("--tls-key"), "{e}");
}
