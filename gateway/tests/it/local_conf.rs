//! The shipped sidecar-free config (`conf/gateway-local.yaml`) through the real
//! gateway binary: its file key sources (TEST PEM public keys, TEST private JWKS)
//! verify and decrypt, and its insurance route is JWE-only and one-time, as in
//! `conf/gateway.yaml`. Only the listeners and upstream peers are rewritten.

use crate::support::Gateway;
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use testkit::jwe::EncKey;
use testkit::{EchoServer, TestKey};

/// `conf/gateway-local.yaml` with our ports, every upstream on `echo` and the key
/// paths made absolute (the file's paths are relative to the repo root).
fn local_config(echo: &EchoServer) -> String {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let text = std::fs::read_to_string(format!("{root}/conf/gateway-local.yaml")).unwrap();
    let mut body: String = text
        .lines()
        .filter(|l| !["listen:", "admin_listen:", "threads:"].iter().any(|k| l.starts_with(k)))
        .map(|l| format!("{l}\n"))
        .collect();
    body = body.replace("file: gateway/testkit/keys/", &format!("file: {root}/gateway/testkit/keys/"));
    for port in 9101..=9104 {
        body = body.replace(&format!("127.0.0.1:{port}"), &echo.addr.to_string());
    }
    assert!(body.contains("require_encrypted: true") && body.contains("enc-ec.jwks"), "{body}");
    body
}

/// The TEST private encryption key in `gateway/testkit/keys/<file>`.
fn enc_key(file: &str) -> EncKey {
    let jwks: Value = serde_json::from_slice(&testkit::key_file(file)).unwrap();
    EncKey::from_jwk(&jwks["keys"][0])
}

fn claims(tenant: &str, sub: &str, role: &str, ttl: i64) -> Value {
    let now = testkit::now();
    json!({
        "iss": format!("https://kms.local/{tenant}"), "aud": "medapi", "sub": sub, "role": role,
        "tenant_id": tenant, "iat": now, "nbf": now, "exp": now + ttl, "jti": format!("{sub}-{now}-{ttl}"),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_local_config_verifies_decrypts_and_guards_the_insurance_route() {
    let echo = EchoServer::start().await;
    let gw = Gateway::start(&local_config(&echo)).await;
    let a_sig = TestKey::load("rsa-a.pem", "hospital-a-test", Algorithm::RS256);
    let b_sig = TestKey::load("ec-a.pem", "hospital-b-test", Algorithm::ES256);
    let (a_enc, b_enc) = (enc_key("enc-rsa.jwks"), enc_key("enc-ec.jwks"));
    let http = reqwest::Client::new();
    let get = |path: &str, token: String| {
        let (http, url) = (http.clone(), gw.url(path));
        async move {
            let r = http.get(url).bearer_auth(token).header("x-user-id", "spoofed").send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let summary = "/insurance/patients/p-100/summary";

    let (status, body) =
        get("/patients/p-100/records", a_sig.mint(&claims("hospital-a", "p-100", "patient", 600))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["headers"]["x-user-id"], "p-100", "spoofed copy removed: {body}");

    // hospital-a: RSA-OAEP-256 around RS256; once only.
    let sealed = a_enc.wrap("RSA-OAEP-256", "A256GCM", &a_sig.mint(&claims("hospital-a", "ins-1", "insurer", 300)));
    let (status, body) = get(summary, sealed.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["headers"]["x-user-role"], "insurer", "{body}");
    assert_eq!(get(summary, sealed).await.1["reason"], "token_replayed");

    // hospital-b: ECDH-ES+A256KW around ES256.
    let sealed = b_enc.wrap("ECDH-ES+A256KW", "A256GCM", &b_sig.mint(&claims("hospital-b", "ins-2", "insurer", 300)));
    let (status, body) = get(summary, sealed).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["headers"]["x-tenant-id"], "hospital-b", "{body}");

    let refusals = [
        (a_sig.mint(&claims("hospital-a", "ins-3", "insurer", 300)), "encryption_required"),
        // hospital-b's content-encryption allowlist has only A256GCM.
        (
            b_enc.wrap("ECDH-ES", "A128GCM", &b_sig.mint(&claims("hospital-b", "ins-4", "insurer", 300))),
            "algorithm_not_allowed",
        ),
        // Decrypted with hospital-b's key, but the inner token is hospital-a's.
        (
            b_enc.wrap("ECDH-ES", "A256GCM", &a_sig.mint(&claims("hospital-a", "ins-5", "insurer", 300))),
            "tenant_mismatch",
        ),
        // Longer than the route's 5-minute maximum lifetime.
        (
            a_enc.wrap("RSA-OAEP-256", "A256GCM", &a_sig.mint(&claims("hospital-a", "ins-6", "insurer", 3600))),
            "lifetime_exceeded",
        ),
    ];
    for (token, reason) in refusals {
        let (status, body) = get(summary, token).await;
        assert_eq!((status, body["reason"].as_str()), (401, Some(reason)), "{body}");
    }
}
