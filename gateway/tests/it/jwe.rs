//! End-to-end encrypted tokens: the real gateway binary decrypts nested JWTs made by
//! an independent implementation (josekit) for every supported (alg, enc) pair,
//! refuses every hostile variant with a 401 and its reason (never a 5xx), enforces
//! JWE-only and one-time routes, and follows the sidecar's decryption keys over the
//! authenticated channel, including an emergency rotation.

use crate::support::{Gateway, Sidecar, SIDECAR_GATEWAY};
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use testkit::jwe::{edit_header, private_jwks, tamper, EncKey, ALGS, ENCS};
use testkit::{claims, jwks, EchoServer, JwksServer, TestKey};

const ADMIN: &str = "jwe-test-admin-token-0123456789";

struct Stack {
    gw: Gateway,
    rs: TestKey,
    t2_es: TestKey,
    t1_rsa: EncKey,
    t1_ec: EncKey,
    t2_ec: EncKey,
    _jwks: JwksServer,
    _echo: EchoServer,
    _dir: tempfile::TempDir,
    http: reqwest::Client,
}

fn routes() -> &'static str {
    r#"
routes:
  - name: echo
    prefix: /echo
    upstream: echo
  - name: sealed
    prefix: /sealed
    methods: [GET]
    upstream: echo
    require_encrypted: true
  - name: insurance
    path: /insurance/patients/{patient_id}/summary
    methods: [GET]
    upstream: echo
    require_encrypted: true
    one_time: true
    max_token_lifetime: 5m
    allow:
      - role: insurer
"#
}

async fn stack() -> Stack {
    let rs = TestKey::load("rsa-a.pem", "rs-1", Algorithm::RS256);
    let t2_es = TestKey::load("ec-b.pem", "t2-es-1", Algorithm::ES256);
    let jwks_server = JwksServer::start(300).await;
    jwks_server.set("t1", jwks(&[&rs]));
    jwks_server.set("t2", jwks(&[&t2_es]));
    let echo = EchoServer::start().await;
    let (t1_rsa, t1_ec, t2_ec) = (EncKey::rsa("t1-enc-rsa"), EncKey::p256("t1-enc-ec"), EncKey::p256("t2-enc-ec"));
    let dir = tempfile::tempdir().unwrap();
    let (f1, f2) = (dir.path().join("t1.jwks"), dir.path().join("t2.jwks"));
    std::fs::write(&f1, private_jwks(&[&t1_rsa, &t1_ec])).unwrap();
    std::fs::write(&f2, private_jwks(&[&t2_ec])).unwrap();
    let admin_token = dir.path().join("admin.token");
    std::fs::write(&admin_token, ADMIN).unwrap();
    let body = format!(
        r#"
keys:
  url_template: "{}"
  unknown_kid_cooldown: 60s
tenants:
  t1:
    issuer: https://issuer.test/t1
    audiences: [api]
    algorithms: [RS256, ES256]
    encryption:
      keys: {{ file: "{}" }}
  t2:
    issuer: https://issuer.test/t2
    audiences: [api]
    algorithms: [ES256]
    encryption:
      key_management: [ECDH-ES+A256KW]
      content_encryption: [A256GCM]
      keys: {{ file: "{}" }}
headers:
  - {{ claim: sub, header: X-User-Id }}
  - {{ claim: tenant_id, header: X-Tenant-Id }}
upstreams:
  echo:
    peers: ["{}"]
audit:
  file: {}
admin:
  token_file: {}
{}"#,
        jwks_server.url_template(),
        f1.display(),
        f2.display(),
        echo.addr,
        dir.path().join("audit.jsonl").display(),
        admin_token.display(),
        routes()
    );
    let gw = Gateway::start(&body).await;
    Stack {
        gw,
        rs,
        t2_es,
        t1_rsa,
        t1_ec,
        t2_ec,
        _jwks: jwks_server,
        _echo: echo,
        _dir: dir,
        http: reqwest::Client::new(),
    }
}

impl Stack {
    async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        let resp = self.http.get(self.gw.url(path)).bearer_auth(token).send().await.expect("gateway answers");
        let status = resp.status().as_u16();
        (status, resp.json::<Value>().await.unwrap_or(Value::Null))
    }

    fn t1_jwe(&self, alg: &str, enc: &str, claims: &Value) -> String {
        let key = if alg == "RSA-OAEP-256" { &self.t1_rsa } else { &self.t1_ec };
        key.wrap(alg, enc, &self.rs.mint(claims))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pair_passes_end_to_end() {
    let s = stack().await;
    for alg in ALGS {
        for enc in ENCS {
            let token = s.t1_jwe(alg, enc, &claims("t1", "u-1", json!("doctor")));
            let (status, body) = s.get("/sealed/x", &token).await;
            assert_eq!(status, 200, "{alg} {enc}: {body}");
            assert_eq!(body["headers"]["x-tenant-id"], "t1");
            assert_eq!(body["headers"]["x-user-id"], "u-1");
        }
    }
    let t2 = s.t2_ec.wrap("ECDH-ES+A256KW", "A256GCM", &s.t2_es.mint(&claims("t2", "u-2", json!("doctor"))));
    assert_eq!(s.get("/sealed/x", &t2).await.0, 200);
    let metrics = s.http.get(s.gw.admin_url("/metrics")).send().await.unwrap().text().await.unwrap();
    for alg in ALGS {
        let line = format!(r#"gateway_token_decrypt_seconds_count{{alg="{alg}"}}"#);
        assert!(metrics.contains(&line), "{line} missing");
    }
    assert!(metrics.contains(r#"gateway_decryption_key_fetches_total{result="ok",tenant="t1",trigger="startup"} 1"#));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_tokens_are_401_with_their_reason_never_5xx() {
    let s = stack().await;
    let c = claims("t1", "u-1", json!("doctor"));
    let good = s.t1_jwe("ECDH-ES+A128KW", "A128CBC-HS256", &c);
    assert_eq!(s.get("/echo", &good).await.0, 200);
    let set = |k: &'static str, v: Value| edit_header(&good, move |h| drop(h.insert(k.into(), v)));
    let off_curve = json!({"kty": "EC", "crv": "P-256", "x": testkit::b64(&[1; 32]), "y": testkit::b64(&[2; 32])});
    let bare = s.t1_ec.encrypt("ECDH-ES", "A256GCM", None, c.to_string().as_bytes());
    let unsigned = {
        let t = s.rs.mint_raw(r#"{"alg":"none","typ":"JWT"}"#, &c.to_string());
        format!("{}.", t.rsplit_once('.').unwrap().0)
    };
    let cases: Vec<(&str, String, &str)> = vec![
        ("RSA1_5", set("alg", json!("RSA1_5")), "algorithm_not_allowed"),
        ("PBES2 huge p2c", set("alg", json!("PBES2-HS512+A256KW")), "algorithm_not_allowed"),
        ("p2c member", set("p2c", json!(10_000_000)), "header_unsupported"),
        ("dir", set("alg", json!("dir")), "algorithm_not_allowed"),
        ("zip", set("zip", json!("DEF")), "header_unsupported"),
        ("crit", set("crit", json!(["urn:x"])), "header_unsupported"),
        ("off-curve epk", set("epk", off_curve), "decryption_failed"),
        (
            "other-curve epk",
            set("epk", json!({"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"})),
            "algorithm_not_allowed",
        ),
        ("tampered header", tamper(&good, 0), "token_malformed"),
        ("tampered key", tamper(&good, 1), "decryption_failed"),
        ("tampered iv", tamper(&good, 2), "decryption_failed"),
        ("tampered ciphertext", tamper(&good, 3), "decryption_failed"),
        ("tampered tag", tamper(&good, 4), "decryption_failed"),
        ("truncated tag", format!("{}.AAAA", good.rsplit_once('.').unwrap().0), "token_malformed"),
        (
            "wrong key length",
            {
                let mut p: Vec<&str> = good.split('.').collect();
                let short = testkit::b64(&[7; 24]);
                p[1] = &short;
                p.join(".")
            },
            "token_malformed",
        ),
        ("encrypted to another tenant", s.t2_ec.wrap("ECDH-ES+A256KW", "A256GCM", &s.rs.mint(&c)), "tenant_mismatch"),
        ("inner unsigned", s.t1_ec.wrap("ECDH-ES", "A256GCM", &unsigned), "token_malformed"),
        (
            "inner alg none",
            s.t1_ec.wrap("ECDH-ES", "A256GCM", &s.rs.mint_raw(r#"{"alg":"none"}"#, &c.to_string())),
            "algorithm_not_allowed",
        ),
        ("inner signed by another tenant", s.t1_ec.wrap("ECDH-ES", "A256GCM", &s.t2_es.mint(&c)), "key_unknown"),
        ("bare claims", bare, "nested_jws_required"),
        (
            "tenant allowlist",
            s.t2_ec.wrap("ECDH-ES", "A256GCM", &s.t2_es.mint(&claims("t2", "u", json!("x")))),
            "algorithm_not_allowed",
        ),
        ("unknown kid", EncKey::p256("nobody").wrap("ECDH-ES", "A256GCM", &s.rs.mint(&c)), "key_unknown"),
    ];
    for (name, token, reason) in cases {
        let (status, body) = s.get("/echo", &token).await;
        assert_eq!((status, body["reason"].as_str()), (401, Some(reason)), "{name}: {body}");
    }
    // A flood of unknown kids costs at most one decryption-key refetch per tenant per
    // cooldown (60 s here): the "unknown kid" case above used it.
    for i in 0..10 {
        let stray = EncKey::p256(&format!("stray-{i}")).wrap("ECDH-ES", "A256GCM", &s.rs.mint(&c));
        assert_eq!(s.get("/echo", &stray).await.1["reason"], "key_unknown");
    }
    let metrics = s.http.get(s.gw.admin_url("/metrics")).send().await.unwrap().text().await.unwrap();
    for t in ["t1", "t2"] {
        let line =
            format!(r#"gateway_decryption_key_fetches_total{{result="ok",tenant="{t}",trigger="unknown_kid"}} 1"#);
        assert!(metrics.contains(&line), "{line}");
    }
    // A plain JWS where only JWE is accepted (and still fine elsewhere).
    let jws = s.rs.mint(&c);
    let (status, body) = s.get("/sealed/x", &jws).await;
    assert_eq!((status, body["reason"].as_str()), (401, Some("encryption_required")));
    assert_eq!(s.get("/echo", &jws).await.0, 200);
    // The gateway is still up and serving after all of that.
    assert_eq!(s.get("/sealed/x", &good).await.0, 200);
    let log = s.gw.log();
    assert!(!log.contains(&good[..40]), "no token in the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_time_tokens_pass_once_even_when_raced() {
    let s = stack().await;
    let path = "/insurance/patients/p-7/summary";
    let mut c = claims("t1", "ins-1", json!("insurer"));
    c["exp"] = json!(testkit::now() + 120);
    c["jti"] = json!("once-1");
    let token = s.t1_jwe("RSA-OAEP-256", "A256GCM", &c);
    assert_eq!(s.get(path, &token).await.0, 200);
    let (status, body) = s.get(path, &token).await;
    assert_eq!((status, body["reason"].as_str()), (401, Some("token_replayed")));
    // The same claims re-encrypted (a different string, same jti) are the same token.
    let again = s.t1_jwe("ECDH-ES", "A128GCM", &c);
    assert_eq!(s.get(path, &again).await.1["reason"], "token_replayed");
    // Audited as a JWE: the allow, then the replay refusal.
    let mut records = Value::Null;
    for _ in 0..100 {
        let r = s.http.get(s.gw.admin_url("/audit?jti=once-1")).bearer_auth(ADMIN).send().await.unwrap();
        records = r.json::<Value>().await.unwrap()["records"].clone();
        if records.as_array().is_some_and(|a| a.len() >= 3) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let records = records.as_array().expect("audit records");
    assert!(records.iter().all(|r| r["token_kind"] == "JWE" && r["kid"] == "rs-1"), "{records:?}");
    let reasons: Vec<&str> = records.iter().map(|r| r["reason"].as_str().unwrap_or("allow")).collect();
    assert_eq!(reasons.iter().filter(|r| **r == "allow").count(), 1, "{reasons:?}");
    assert_eq!(reasons.iter().filter(|r| **r == "token_replayed").count(), 2, "{reasons:?}");
    let m = s.http.get(s.gw.admin_url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(m.contains("gateway_one_time_ids 1\n"), "one id held");
    // A config reload keeps the used ids.
    s.gw.hup();
    let reloaded = r#"gateway_config_reloads_total{result="ok"} 1"#;
    for _ in 0..100 {
        let m = s.http.get(s.gw.admin_url("/metrics")).send().await.unwrap().text().await.unwrap();
        if m.contains(reloaded) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let m = s.http.get(s.gw.admin_url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(m.contains(reloaded), "reload did not happen");
    assert_eq!(s.get(path, &token).await.1["reason"], "token_replayed", "after reload");

    // Eight identical requests at the same moment: exactly one passes.
    for round in 0..3 {
        c["jti"] = json!(format!("race-{round}"));
        let token = s.t1_jwe("ECDH-ES+A256KW", "A256GCM", &c);
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (http, url, token) = (s.http.clone(), s.gw.url(path), token.clone());
                tokio::spawn(async move {
                    let r = http.get(url).bearer_auth(token).send().await.unwrap();
                    let status = r.status().as_u16();
                    (status, r.json::<Value>().await.unwrap_or(Value::Null))
                })
            })
            .collect();
        let mut passed = 0;
        for t in tasks {
            let (status, body) = t.await.unwrap();
            match status {
                200 => passed += 1,
                _ => assert_eq!((status, body["reason"].as_str()), (401, Some("token_replayed"))),
            }
        }
        assert_eq!(passed, 1, "round {round}");
    }

    // The route's other rules: JWE only, a jti, a short lifetime, the insurer role.
    let (status, body) = s.get(path, &s.rs.mint(&c)).await;
    assert_eq!((status, body["reason"].as_str()), (401, Some("encryption_required")));
    let mut no_jti = c.clone();
    no_jti.as_object_mut().unwrap().remove("jti");
    assert_eq!(s.get(path, &s.t1_jwe("ECDH-ES", "A256GCM", &no_jti)).await.1["reason"], "claim_missing");
    let mut long = c.clone();
    (long["jti"], long["exp"]) = (json!("long-1"), json!(testkit::now() + 3600));
    assert_eq!(s.get(path, &s.t1_jwe("ECDH-ES", "A256GCM", &long)).await.1["reason"], "lifetime_exceeded");
    let mut doctor = c.clone();
    (doctor["jti"], doctor["role"]) = (json!("doc-1"), json!("doctor"));
    let token = s.t1_jwe("ECDH-ES", "A256GCM", &doctor);
    assert_eq!(s.get(path, &token).await.0, 403);
    // A policy refusal does not use the token up: it is still unused, so still refused
    // for the same reason rather than as a replay.
    assert_eq!(s.get(path, &token).await.1["reason"], "forbidden_role");
}

/// A gateway whose tenants (`tenants`, YAML lines) take signing keys from the
/// sidecar's JWKS and decryption keys over its authenticated channel; `keys` adds
/// lines to the `keys:` section.
async fn sidecar_gateway(sidecar: &Sidecar, keys: &str, tenants: &str) -> (Gateway, EchoServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("gateway-token");
    std::fs::write(&token_file, SIDECAR_GATEWAY).unwrap();
    let echo = EchoServer::start().await;
    let gw = Gateway::start(&format!(
        r#"
keys:
  url_template: "{base}/jwk/{{tenant}}"
{keys}decryption:
  url_template: "{internal}/internal/v1/tenants/{{tenant}}/decryption-keys"
  token_file: "{token}"
tenants:
{tenants}upstreams:
  echo:
    peers: ["{echo}"]
{routes}"#,
        base = sidecar.base,
        internal = sidecar.internal,
        token = token_file.display(),
        echo = echo.addr,
        routes = routes()
    ))
    .await;
    (gw, echo, dir)
}

/// Decryption keys over the sidecar's authenticated channel: nested tokens minted by
/// the sidecar pass; after an emergency rotation of the encryption key, new tokens
/// pass at once (unknown-kid refetch) and tokens under the withdrawn key are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecar_channel_and_emergency_rotation() {
    let sidecar = Sidecar::start(
        "60s",
        "  - { id: h1, alg: ES256, enc_alg: ECDH-ES+A256KW, issuer: https://kms.test/h1, audience: api, \
         rotation: { interval: 1d } }\n\
         \x20 - { id: h2, alg: RS256, enc_alg: RSA-OAEP-256, issuer: https://kms.test/h2, audience: api, \
         rotation: { interval: 1d } }\n",
    )
    .await;
    let (gw, _echo, _dir) = sidecar_gateway(
        &sidecar,
        "  unknown_kid_cooldown: 1s\n",
        "  h1:\n    issuer: https://kms.test/h1\n    audiences: [api]\n    algorithms: [ES256]\n    encryption: {}\n\
         \x20 h2:\n    issuer: https://kms.test/h2\n    audiences: [api]\n    algorithms: [RS256]\n    \
         encryption: { key_management: [RSA-OAEP-256] }\n",
    )
    .await;
    let http = reqwest::Client::new();
    let mint = |tenant: &'static str| sidecar.mint_encrypted(tenant, "ins-9", "insurer", 120);
    let get = |token: String| {
        let (http, url) = (http.clone(), gw.url("/insurance/patients/p-1/summary"));
        async move {
            let r = http.get(url).bearer_auth(token).send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    for tenant in ["h1", "h2"] {
        let token = mint(tenant).await;
        assert_eq!(token.split('.').count(), 5, "a compact JWE");
        let (status, body) = get(token.clone()).await;
        assert_eq!(status, 200, "{tenant}: {body}");
        assert_eq!(get(token).await.1["reason"], "token_replayed");
    }
    let old = mint("h1").await;
    let status = sidecar.admin("/admin/rotate-key", json!({"tenant": "h1", "use": "enc", "emergency": true})).await;
    assert_eq!(status, 200);
    let fresh = mint("h1").await;
    let (status, body) = get(fresh).await;
    assert_eq!(status, 200, "new key fetched on its unknown kid: {body}");
    let (status, body) = get(old).await;
    assert_eq!(status, 401, "{body}");
    assert!(["key_unknown", "token_revoked"].contains(&body["reason"].as_str().unwrap()), "{body}");

    // Both of h2's keys replaced at once, right after h1's: the first nested token under
    // the new pair needs a decryption-key refetch and then a signing-key refetch, in one
    // request. h1's unknown kids (`h1-enc-...`) refetched h1 alone, so h2's cooldown
    // (1 s) is untouched and nothing has to wait.
    let metrics = || {
        let (http, url) = (http.clone(), gw.admin_url("/metrics"));
        async move { http.get(url).send().await.unwrap().text().await.unwrap() }
    };
    let h2_refetches = r#"gateway_decryption_key_fetches_total{result="ok",tenant="h2",trigger="unknown_kid"}"#;
    assert!(!metrics().await.contains(h2_refetches), "h1's new kids never refetched h2");
    for key_use in ["enc", "sig"] {
        let body = json!({"tenant": "h2", "use": key_use, "emergency": true});
        assert_eq!(sidecar.admin("/admin/rotate-key", body).await, 200);
    }
    let (status, body) = get(mint("h2").await).await;
    assert_eq!(status, 200, "both new keys fetched for one request: {body}");
    assert!(metrics().await.contains(&format!("{h2_refetches} 1")), "one refetch of h2 alone");
}

/// Scheduled rotations of encryption (and signing) keys: every nested token minted
/// before, during and after them keeps passing. The gateway holds each new private key
/// before its public key is published, and keeps retiring keys through the overlap;
/// the unknown-kid refetch is effectively off (1 h cooldown), so this shows the
/// rotation order alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encryption_key_rotations_never_refuse_a_valid_token() {
    // Keys are published 3 s ahead (JWKS max-age 2 s, interval 6 s); the gateway
    // refreshes every 1-2 s, so it holds each key well before first use.
    let sidecar = Sidecar::start(
        "2s",
        "  - { id: h1, alg: ES256, enc_alg: ECDH-ES+A256KW, issuer: https://kms.test/h1, audience: api, \
         rotation: { interval: 6s, max_token_ttl: 30s, clock_skew: 2s } }\n",
    )
    .await;
    let (gw, _echo, _dir) = sidecar_gateway(
        &sidecar,
        "  refresh_floor: 1s\n  refresh_ceiling: 2s\n  default_max_age: 1s\n  unknown_kid_cooldown: 1h\n  max_stale: 1h\n",
        "  h1:\n    issuer: https://kms.test/h1\n    audiences: [api]\n    algorithms: [ES256]\n    encryption: {}\n",
    )
    .await;
    let url = gw.url("/sealed/x");
    let (kids, refused, sent) = crate::support::mint_and_replay_all(13, &url, async |n| {
        sidecar.mint_encrypted("h1", &format!("u{n}"), "doctor", 30).await
    })
    .await;
    let http = reqwest::Client::new();
    assert!(kids.len() >= 3, "several encryption keys were used: {kids:?}");
    assert!(
        refused.is_empty(),
        "{} of {sent} valid requests refused: {:?}",
        refused.len(),
        &refused[..refused.len().min(5)]
    );
    let metrics = http.get(gw.admin_url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(!metrics.contains(r#"trigger="unknown_kid""#), "no refetch was needed");
}
