//! The sidecar over real HTTP: JWKS content and caching headers, no private members,
//! admin auth, tenant CRUD, PEM import (and each wrong-format error), the gateway
//! channel, durability across a restart, and refusal to start with a wrong master key.

use crate::support::{clock_past, tenants, Kms, Sidecar, ADMIN, GATEWAY, MASTER, OTHER_MASTER, T_EC, T_RSA};
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Child, Command};

/// This file's sidecar in `dir`, on fresh ports: two tenants, JWKS max-age 30 s.
fn sidecar(dir: &Path, master: &str) -> Sidecar {
    Sidecar::new(dir, &format!("jwks_max_age: 30s\n{}", tenants(&[T_RSA, T_EC]))).master(master)
}

/// Starts `serve` (stderr piped); with `create`, first runs `init` if the store does
/// not exist yet.
fn spawn(dir: &Path, master: &str, create: bool) -> (Child, u16, u16) {
    let s = sidecar(dir, master);
    if create && !dir.join("data/keys.redb").exists() {
        s.init();
    }
    (s.spawn(), s.port, s.internal)
}

/// The sidecar of `dir` running, its store created on first use.
async fn start(dir: &Path) -> Kms {
    let s = sidecar(dir, MASTER);
    if !dir.join("data/keys.redb").exists() {
        s.init();
    }
    s.start().await
}

const PRIVATE: [&str; 7] = ["d", "p", "q", "dp", "dq", "qi", "k"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_headers_and_no_private_members() {
    let dir = tempfile::tempdir().unwrap();
    let kms = start(dir.path()).await;
    let http = reqwest::Client::new();
    let r = http.get(kms.url("/jwk/t-rsa")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert_eq!(h["cache-control"], "public, max-age=30");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["access-control-allow-origin"], "*");
    let etag = h["etag"].to_str().unwrap().to_owned();
    let doc: Value = r.json().await.unwrap();
    let keys = doc["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "one signing and one encryption key: {doc}");
    let sig = keys.iter().find(|k| k["use"] == "sig").unwrap();
    assert_eq!((sig["kty"].as_str(), sig["alg"].as_str()), (Some("RSA"), Some("RS256")));
    let enc = keys.iter().find(|k| k["use"] == "enc").unwrap();
    assert_eq!(enc["alg"], "RSA-OAEP-256");
    let r = http.get(kms.url("/jwk/t-rsa")).header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(r.status(), 304);
    assert_eq!(r.headers()["etag"].to_str().unwrap(), etag);
    assert_eq!(http.get(kms.url("/jwk/nope")).send().await.unwrap().status(), 404);
    let all: Value = http.get(kms.url("/.well-known/jwks.json")).send().await.unwrap().json().await.unwrap();
    let all = all["keys"].as_array().unwrap();
    assert_eq!(all.len(), 4);
    assert!(all.iter().all(|k| k["tenant"] == "t-rsa" || k["tenant"] == "t-ec"));
    let ec = all.iter().find(|k| k["tenant"] == "t-ec" && k["use"] == "sig").unwrap();
    assert_eq!((ec["crv"].as_str(), ec["alg"].as_str()), (Some("P-256"), Some("ES256")));
    let kids: std::collections::HashSet<&str> = all.iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert_eq!(kids.len(), 4, "kids are unique across tenants");
    for k in all.iter().chain(keys) {
        for m in PRIVATE {
            assert!(k.get(m).is_none(), "private member {m} in {k}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_auth_mint_channel_and_import() {
    let dir = tempfile::tempdir().unwrap();
    let kms = start(dir.path()).await;
    let http = reqwest::Client::new();
    let mint = |auth: Option<&str>, body: Value| {
        let mut req = http.post(kms.url("/v1/tenants/t-ec/tokens")).json(&body);
        if let Some(a) = auth {
            req = req.bearer_auth(a);
        }
        req.send()
    };
    assert_eq!(mint(None, json!({"sub": "u"})).await.unwrap().status(), 401);
    assert_eq!(mint(Some("wrong-wrong-wrong-wrong"), json!({"sub": "u"})).await.unwrap().status(), 401);
    let metrics = http.get(kms.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"kms_auth_failures_total{channel="admin"} 2"#), "{metrics}");
    assert!(metrics.contains("kms_current_key_age_seconds"), "{metrics}");
    if let Some((ok, msg)) = testkit::promtool_check(&metrics) {
        assert!(ok, "promtool: {msg}");
    }

    let r = mint(Some(ADMIN), json!({"sub": "p-1", "role": "patient", "ttl_secs": 300})).await.unwrap();
    assert_eq!(r.status(), 201);
    let token = r.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned();
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    let claims: Value = serde_json::from_slice(&gateway_core::b64::decode(parts[1].as_bytes()).unwrap()).unwrap();
    assert_eq!(claims["iss"], "https://kms.test/t-ec");
    assert_eq!(claims["tenant_id"], "t-ec");
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 300);
    assert!(claims["jti"].as_str().unwrap().len() >= 16);
    // The token verifies with the published key (through gateway-core).
    let jwks = http.get(kms.url("/jwk/t-ec")).send().await.unwrap().bytes().await.unwrap();
    let set = gateway_core::KeySet::from_jwks(&jwks).unwrap();
    let header: Value = serde_json::from_slice(&gateway_core::b64::decode(parts[0].as_bytes()).unwrap()).unwrap();
    let key = set.get(header["kid"].as_str().unwrap()).unwrap();
    let input = format!("{}.{}", parts[0], parts[1]);
    assert!(key.verify(
        gateway_core::Algorithm::ES256,
        input.as_bytes(),
        &gateway_core::b64::decode(parts[2].as_bytes()).unwrap()
    ));
    assert_eq!(mint(Some(ADMIN), json!({"sub": "u", "ttl_secs": 999999})).await.unwrap().status(), 400);
    assert_eq!(mint(Some(ADMIN), json!({"sub": "u", "claims": {"iss": "evil"}})).await.unwrap().status(), 400);
    let jwe = mint(Some(ADMIN), json!({"sub": "u", "encrypt": true})).await.unwrap().json::<Value>().await.unwrap();
    assert_eq!(jwe["token"].as_str().unwrap().split('.').count(), 5, "nested JWT is a compact JWE");

    // The gateway channel: its own credential, private keys only here.
    let chan = format!("http://127.0.0.1:{}/internal/v1/tenants/t-ec/decryption-keys", kms.internal);
    assert_eq!(http.get(&chan).send().await.unwrap().status(), 401);
    assert_eq!(http.get(&chan).bearer_auth(ADMIN).send().await.unwrap().status(), 401);
    let keys: Value = http.get(&chan).bearer_auth(GATEWAY).send().await.unwrap().json().await.unwrap();
    let k = &keys["keys"][0];
    assert!(k["d"].is_string() && k["x"].is_string() && k["kid"].as_str().unwrap().contains("-enc-"));
    assert_eq!((k["crv"].as_str(), k["alg"].as_str()), (Some("P-256"), Some("ECDH-ES+A256KW")));
    assert_eq!(
        http.get(kms.url("/internal/v1/tenants/t-ec/decryption-keys"))
            .bearer_auth(GATEWAY)
            .send()
            .await
            .unwrap()
            .status(),
        404,
        "not on the public listener"
    );

    // PEM import: success, and wrong types/formats named.
    let import = |tenant: &str, body: Value| {
        http.post(kms.url(&format!("/admin/tenants/{tenant}/keys/import"))).bearer_auth(ADMIN).json(&body).send()
    };
    let pem = |f: &str| String::from_utf8(testkit::key_file(f)).unwrap();
    let r = import("t-rsa", json!({"pem": pem("rsa-a.pem"), "use": "sig", "format": "pkcs8"})).await.unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    let pkcs1 = Command::new("openssl")
        .args(["rsa", "-traditional", "-in", testkit::keys_dir().join("rsa-b.pem").to_str().unwrap()])
        .output()
        .unwrap();
    let pkcs1 = String::from_utf8(pkcs1.stdout).unwrap();
    let cases = [
        (
            "t-rsa",
            json!({"pem": pkcs1, "use": "sig", "format": "pkcs8"}),
            "found a PKCS#1 RSA private key (RSA PRIVATE KEY), expected a PKCS#8 private key (PRIVATE KEY)",
        ),
        ("t-ec", json!({"pem": pem("rsa-a.pem"), "use": "sig"}), "found an RSA key, expected a P-256 EC key for ES256"),
        ("t-rsa", json!({"pem": pem("ec-a.pem"), "use": "sig"}), "found a P-256 EC key, expected an RSA key for RS256"),
        ("t-rsa", json!({"pem": pem("rsa-a.cert.pem"), "use": "sig"}), "found an X.509 certificate (CERTIFICATE)"),
        ("t-rsa", json!({"pem": "not a pem", "use": "sig"}), "cannot decode PEM"),
    ];
    for (tenant, body, want) in cases {
        let r = import(tenant, body).await.unwrap();
        assert_eq!(r.status(), 400);
        let detail = r.json::<Value>().await.unwrap()["detail"].as_str().unwrap().to_owned();
        assert!(detail.contains(want), "{detail}  !~  {want}");
    }
    let r = import("t-ec", json!({"pem": pem("ec-a.pub.pem"), "use": "sig", "format": "spki"})).await.unwrap();
    assert_eq!(r.status(), 201, "public SPKI import for a migration window");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_everything_and_a_wrong_master_key_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let (before, tenants_before) = {
        let kms = start(dir.path()).await;
        let r = http
            .post(kms.url("/admin/tenants"))
            .bearer_auth(ADMIN)
            .json(&json!({"id": "lab-9", "alg": "EdDSA", "issuer": "https://kms.test/lab-9", "audience": "api"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let r = http
            .post(kms.url("/admin/rotate-key"))
            .bearer_auth(ADMIN)
            .json(&json!({"tenant": "t-rsa", "use": "sig"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let jwks: Value = http.get(kms.url("/.well-known/jwks.json")).send().await.unwrap().json().await.unwrap();
        let t: Value =
            http.get(kms.url("/admin/tenants")).bearer_auth(ADMIN).send().await.unwrap().json().await.unwrap();
        (jwks, t)
        // Dropped: the process is killed (SIGKILL), no clean shutdown.
    };
    assert_eq!(before["keys"].as_array().unwrap().len(), 7, "2 tenants x 2 + rotated next + lab-9 x 2");
    let kms = start(dir.path()).await;
    let after: Value = http.get(kms.url("/.well-known/jwks.json")).send().await.unwrap().json().await.unwrap();
    assert_eq!(before, after, "every key survives a crash and restart");
    let t: Value = http.get(kms.url("/admin/tenants")).bearer_auth(ADMIN).send().await.unwrap().json().await.unwrap();
    assert_eq!(t, tenants_before);
    drop(kms);

    let (child, _, _) = spawn(dir.path(), OTHER_MASTER, true);
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("wrong KMS master key"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let empty = tempfile::tempdir().unwrap();
    let (child, _, _) = spawn(empty.path(), MASTER, false);
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no key store"), "{}", String::from_utf8_lossy(&out.stderr));
    // A corrupted store refuses to start too.
    std::fs::write(dir.path().join("data/keys.redb"), b"garbage garbage garbage").unwrap();
    let (child, _, _) = spawn(dir.path(), MASTER, false);
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("key store"), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Nested JWTs from the sidecar decrypt with an independent implementation (josekit)
/// using the private JWKs of the gateway channel, for both key-management algorithms;
/// the inner token is a JWS signed by the tenant's published signing key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_jwe_interoperates_for_both_key_management_algorithms() {
    let dir = tempfile::tempdir().unwrap();
    let kms = start(dir.path()).await;
    let http = reqwest::Client::new();
    for (tenant, alg, sig) in [
        ("t-rsa", "RSA-OAEP-256", gateway_core::Algorithm::RS256),
        ("t-ec", "ECDH-ES+A256KW", gateway_core::Algorithm::ES256),
    ] {
        let r = http
            .post(kms.url(&format!("/v1/tenants/{tenant}/tokens")))
            .bearer_auth(ADMIN)
            .json(&json!({"sub": "p-1", "role": "insurer", "encrypt": true, "ttl_secs": 300}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let jwe = r.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned();
        let chan = format!("http://127.0.0.1:{}/internal/v1/tenants/{tenant}/decryption-keys", kms.internal);
        let keys: Value = http.get(&chan).bearer_auth(GATEWAY).send().await.unwrap().json().await.unwrap();
        let private = keys["keys"].as_array().unwrap().iter().find(|k| k["alg"] == alg).unwrap().clone();
        let jwk = josekit::jwk::Jwk::from_bytes(private.to_string().as_bytes()).unwrap();
        let decrypter: Box<dyn josekit::jwe::JweDecrypter> = if alg == "RSA-OAEP-256" {
            Box::new(josekit::jwe::RSA_OAEP_256.decrypter_from_jwk(&jwk).unwrap())
        } else {
            Box::new(josekit::jwe::ECDH_ES_A256KW.decrypter_from_jwk(&jwk).unwrap())
        };
        let (payload, header) = josekit::jwe::deserialize_compact(&jwe, decrypter.as_ref()).unwrap();
        assert_eq!(header.content_type(), Some("JWT"));
        assert_eq!(header.algorithm(), Some(alg));
        let inner = String::from_utf8(payload).unwrap();
        let parts: Vec<&str> = inner.split('.').collect();
        assert_eq!(parts.len(), 3, "the payload is a signed JWS");
        let jwks = http.get(kms.url(&format!("/jwk/{tenant}"))).send().await.unwrap().bytes().await.unwrap();
        let set = gateway_core::KeySet::from_jwks(&jwks).unwrap();
        let h: Value = serde_json::from_slice(&gateway_core::b64::decode(parts[0].as_bytes()).unwrap()).unwrap();
        let key = set.get(h["kid"].as_str().unwrap()).unwrap();
        let sig_bytes = gateway_core::b64::decode(parts[2].as_bytes()).unwrap();
        assert!(key.verify(sig, format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig_bytes));
        if tenant == "t-rsa" {
            let n = keys["keys"][0]["n"].as_str().unwrap();
            assert!(!n.is_empty());
            let sig_n = serde_json::from_slice::<Value>(&jwks).unwrap()["keys"]
                .as_array()
                .unwrap()
                .iter()
                .find(|k| k["use"] == "sig")
                .unwrap()["n"]
                .as_str()
                .unwrap()
                .len();
            assert_eq!(sig_n, 512, "rsa_bits: 3072 gives a 384-byte modulus");
        }
    }
}

/// The shared one-time store on the gateway channel: only the gateway credential
/// claims; of many concurrent claims of one id exactly one is first; a claim is
/// durable before its answer (it survives SIGKILL and restart); ids are held past
/// their expiry for the clock-skew allowance; malformed and unknown-tenant claims get a clear 4xx.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_time_claims_are_atomic_and_survive_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let now = crate::support::now();
    let claim = |kms: &Kms, body: Value, token: &'static str| {
        let (http, url) = (http.clone(), format!("http://127.0.0.1:{}/internal/v1/one-time", kms.internal));
        async move {
            let r = http.post(url).bearer_auth(token).json(&body).send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let id = |jti: &str, until: i64| json!({"tenant": "t-ec", "issuer": "https://kms.test/t-ec", "jti": jti, "until": until});
    {
        let kms = start(dir.path()).await;
        assert_eq!(claim(&kms, id("a", now + 60), ADMIN).await.0, 401, "the admin credential is not the channel's");
        let racers: Vec<_> = (0..16).map(|_| claim(&kms, id("raced", now + 60), GATEWAY)).collect();
        let answers = futures_util::future::join_all(racers).await;
        assert!(answers.iter().all(|(s, _)| *s == 200), "{answers:?}");
        let firsts = answers.iter().filter(|(_, b)| b["first_use"] == true).count();
        assert_eq!(firsts, 1, "exactly one concurrent claim is first: {answers:?}");
        assert_eq!(claim(&kms, id("kept", now + 60), GATEWAY).await.1["first_use"], true);
        assert_eq!(claim(&kms, id("short", now + 1), GATEWAY).await.1["first_use"], true);
        let unknown = json!({"tenant": "nope", "issuer": "i", "jti": "j", "until": now + 60});
        assert_eq!(claim(&kms, unknown, GATEWAY).await.0, 404);
        assert_eq!(claim(&kms, id("", now + 60), GATEWAY).await.0, 400, "an empty jti");
        // Already expired by our clock (a gateway whose clock lags): held for the skew allowance.
        assert_eq!(claim(&kms, id("lagging", now - 10), GATEWAY).await.1["first_use"], true);
        assert_eq!(claim(&kms, id("lagging", now - 10), GATEWAY).await.1["first_use"], false);
        assert_eq!(claim(&kms, json!({"tenant": "t-ec"}), GATEWAY).await.0, 400);
        // Dropped: SIGKILL, no clean shutdown.
    }
    let kms = start(dir.path()).await;
    assert_eq!(claim(&kms, id("kept", now + 60), GATEWAY).await.1["first_use"], false, "durable across a crash");
    assert_eq!(claim(&kms, id("raced", now + 60), GATEWAY).await.1["first_use"], false);
    // Held past its own expiry for the clock-skew allowance (60 s; expiry itself: the
    // store's unit test).
    clock_past(now + 1).await;
    assert_eq!(claim(&kms, id("short", now + 60), GATEWAY).await.1["first_use"], false);
    let metrics = http.get(kms.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"kms_one_time_claims_total{result="replayed"} 3"#), "{metrics}");
    assert!(metrics.contains("kms_one_time_ids 4"), "raced, kept, short, lagging: {metrics}");
}
