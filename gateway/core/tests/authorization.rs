//! Route policy through the engine, as a table: every kind of route rule (public,
//! `tenants`, `allow` roles, `methods` per rule, `owner` rules, rule `tenants`,
//! `max_token_lifetime`, `require_encrypted`, `one_time`), each allowed and refused,
//! with the reason the refusal carries. Fixed keys, a fixed clock, no sockets.

use gateway_core::jwe::keys::DecryptionKeySet;
use gateway_core::{Config, Decision, Engine, KeySet};
use serde_json::{json, Value};
use std::future::Future;
use std::task::{Context, Poll, Waker};
use testkit::jwe::EncKey;
use testkit::TestKey;

const NOW: i64 = 1_800_000_000;

struct Fixture {
    engine: Engine,
    key: TestKey,
    enc: EncKey,
}

fn fixture() -> Fixture {
    let key = TestKey::load("ec-a.pem", "es-1", jsonwebtoken::Algorithm::ES256);
    let enc_jwks = testkit::keys_dir().join("enc-rsa.jwks");
    let yaml = format!(
        r#"{head}tenants:
  h-a:
    issuer: https://issuer.test/h-a
    audiences: [api]
    algorithms: [ES256]
    encryption: {{ keys: {{ file: "{enc}" }} }}
  h-b: {{ issuer: https://issuer.test/h-b, audiences: [api], algorithms: [ES256] }}
upstreams:
  u: {{ peers: ["127.0.0.1:4"] }}
routes:
  - {{ name: public, path: /public, methods: [GET], upstream: u, public: true }}
  - name: records
    path: /patients/{{patient_id}}/records
    methods: [GET, PUT]
    upstream: u
    allow:
      - {{ role: patient, methods: [GET], owner: {{ claim: sub, param: patient_id }} }}
      - {{ role: doctor }}
  - {{ name: lab, path: /lab, upstream: u, tenants: [h-b], allow: [{{ role: lab }}] }}
  - name: results
    path: /results
    upstream: u
    allow:
      - {{ role: lab, tenants: [h-b] }}
      - {{ role: doctor, methods: [GET] }}
  - {{ name: any, path: /any, upstream: u }}
  - {{ name: short, path: /short, upstream: u, max_token_lifetime: 5m }}
  - {{ name: sealed, path: /sealed, upstream: u, require_encrypted: true }}
  - {{ name: once, path: /once, upstream: u, one_time: true }}
  - {{ name: once-doctor, path: /once-doctor, upstream: u, one_time: true, allow: [{{ role: doctor }}] }}
"#,
        enc = enc_jwks.display(),
        head = testkit::fixture::CONFIG_HEAD
    );
    let engine = Engine::new(Config::from_yaml(&yaml).expect("the config is valid"));
    let jwks = testkit::jwks(&[&key]);
    for tenant in ["h-a", "h-b"] {
        engine.keys.install(tenant, KeySet::from_jwks(jwks.as_bytes()).unwrap(), NOW, None);
    }
    let private = std::fs::read(&enc_jwks).unwrap();
    engine.dkeys.install("h-a", DecryptionKeySet::from_jwks(&private).unwrap(), NOW, None);
    let jwk: Value = serde_json::from_slice(&private).unwrap();
    let enc = EncKey::from_jwk(&jwk["keys"][0]);
    Fixture { engine, key, enc }
}

/// How a token of the table is made.
#[derive(Clone, Copy)]
enum Token {
    /// No `Authorization` header.
    None,
    /// A JWS of `tenant` with `role`, `sub: p-1`, a 10-minute lifetime and a `jti`.
    Jws(&'static str, &'static str),
    /// As `Jws`, issued for `lifetime` seconds.
    Lifetime(&'static str, &'static str, i64),
    /// As `Jws`, without `jti`.
    NoJti(&'static str, &'static str),
    /// As `Jws`, wrapped in a JWE to the tenant's decryption key.
    Jwe(&'static str, &'static str),
}

fn mint(f: &Fixture, token: Token, jti: &str) -> Option<String> {
    let claims = |tenant: &str, role: &str, lifetime: i64| {
        json!({"iss": format!("https://issuer.test/{tenant}"), "aud": "api", "sub": "p-1", "tenant_id": tenant,
               "role": role, "iat": NOW - 10, "exp": NOW - 10 + lifetime, "jti": jti})
    };
    match token {
        Token::None => None,
        Token::Jws(t, r) => Some(f.key.mint(&claims(t, r, 600))),
        Token::Lifetime(t, r, lifetime) => Some(f.key.mint(&claims(t, r, lifetime))),
        Token::NoJti(t, r) => {
            let mut c = claims(t, r, 600);
            c.as_object_mut().unwrap().remove("jti");
            Some(f.key.mint(&c))
        }
        Token::Jwe(t, r) => Some(f.enc.wrap("RSA-OAEP-256", "A256GCM", &f.key.mint(&claims(t, r, 600)))),
    }
}

/// Runs a future that never waits (the in-memory replay store answers at once).
fn ready<T>(fut: impl Future<Output = T>) -> T {
    let mut fut = std::pin::pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("the in-memory replay store does not wait"),
    }
}

/// `Ok("allowed")` or `Err(reason)`; a one-time request is admitted once.
fn outcome(f: &Fixture, token: Option<&str>, method: &str, path: &str) -> Result<&'static str, &'static str> {
    let header = token.map(|t| format!("Bearer {t}"));
    let values: Vec<&[u8]> = header.iter().map(|h| h.as_bytes()).collect();
    let allowed = match f.engine.decide(method, path, &values, NOW).map_err(|r| r.denial.reason())? {
        Decision::Allowed(allowed) => allowed,
        Decision::OneTime(once) => ready(f.engine.admit(once, NOW)).map_err(|r| r.denial.reason())?,
    };
    let route = allowed.permit.route().route();
    assert_eq!(allowed.permit.token().is_none(), route.public, "{method} {path}: a token unless public");
    Ok("allowed")
}

#[test]
fn every_route_rule_allows_and_refuses_with_its_reason() {
    let f = fixture();
    use Token::*;
    let table: &[(Token, &str, &str, Result<&str, &str>)] = &[
        // public: no token needed, none looked at.
        (None, "GET", "/public", Ok("allowed")),
        (Jws("h-a", "nobody"), "GET", "/public", Ok("allowed")),
        (None, "POST", "/public", Err("method_not_allowed")),
        (None, "GET", "/nowhere", Err("route_not_found")),
        // A protected route without rules: any verified token of any tenant.
        (None, "GET", "/any", Err("token_missing")),
        (Jws("h-b", "anyone"), "DELETE", "/any", Ok("allowed")),
        // allow roles, methods per rule, owner rules.
        (Jws("h-a", "patient"), "GET", "/patients/p-1/records", Ok("allowed")),
        (Jws("h-a", "patient"), "GET", "/patients/p-2/records", Err("forbidden_owner")),
        (Jws("h-a", "patient"), "PUT", "/patients/p-1/records", Err("forbidden_method")),
        (Jws("h-a", "doctor"), "PUT", "/patients/p-2/records", Ok("allowed")),
        (Jws("h-a", "nurse"), "GET", "/patients/p-1/records", Err("forbidden_role")),
        (Jws("h-a", "doctor"), "DELETE", "/patients/p-1/records", Err("method_not_allowed")),
        // Route tenants.
        (Jws("h-b", "lab"), "POST", "/lab", Ok("allowed")),
        (Jws("h-a", "lab"), "POST", "/lab", Err("forbidden_tenant")),
        (Jws("h-b", "nurse"), "POST", "/lab", Err("forbidden_role")),
        // Rule tenants, and rule methods beside them.
        (Jws("h-b", "lab"), "DELETE", "/results", Ok("allowed")),
        (Jws("h-a", "lab"), "GET", "/results", Err("forbidden_tenant")),
        (Jws("h-a", "doctor"), "GET", "/results", Ok("allowed")),
        (Jws("h-a", "doctor"), "PUT", "/results", Err("forbidden_method")),
        // max_token_lifetime (5 minutes).
        (Lifetime("h-a", "x", 300), "GET", "/short", Ok("allowed")),
        (Lifetime("h-a", "x", 301), "GET", "/short", Err("lifetime_exceeded")),
        // require_encrypted: a nested JWE only.
        (Jws("h-a", "x"), "GET", "/sealed", Err("encryption_required")),
        (Jwe("h-a", "x"), "GET", "/sealed", Ok("allowed")),
        (Jwe("h-a", "x"), "GET", "/any", Ok("allowed")),
        // one_time: a jti is required (and see the replay case below).
        (Jws("h-a", "x"), "GET", "/once", Ok("allowed")),
        (NoJti("h-a", "x"), "GET", "/once", Err("claim_missing")),
    ];
    for (i, (token, method, path, want)) in table.iter().enumerate() {
        let token = mint(&f, *token, &format!("jti-{i}"));
        assert_eq!(&outcome(&f, token.as_deref(), method, path), want, "row {i}: {method} {path}");
    }
}

#[test]
fn a_one_time_token_passes_once_and_a_refused_request_does_not_use_it_up() {
    let f = fixture();
    // Two tokens with one jti: the refused one must not record it.
    let nurse = mint(&f, Token::Jws("h-a", "nurse"), "once-1").unwrap();
    let doctor = mint(&f, Token::Jws("h-a", "doctor"), "once-1").unwrap();
    assert_eq!(outcome(&f, Some(&nurse), "GET", "/once-doctor"), Err("forbidden_role"));
    assert_eq!(outcome(&f, Some(&doctor), "GET", "/once-doctor"), Ok("allowed"));
    assert_eq!(outcome(&f, Some(&doctor), "GET", "/once-doctor"), Err("token_replayed"));
    assert_eq!(outcome(&f, Some(&doctor), "GET", "/any"), Ok("allowed"), "other routes are not one-time");
}

/// A key fetcher that installs `keys` for the tenant asked for, or finds nothing.
struct FakeFetch<'a> {
    engine: &'a Engine,
    keys: Option<String>,
    calls: std::sync::Mutex<Vec<gateway_core::verify::Refetch>>,
}

impl gateway_core::engine::KeyFetch for FakeFetch<'_> {
    async fn refetch(&self, want: &gateway_core::verify::Refetch) -> bool {
        self.calls.lock().unwrap().push(want.clone());
        match (want, &self.keys) {
            (gateway_core::verify::Refetch::Signing(tenant), Some(jwks)) => {
                self.engine.keys.install(tenant, KeySet::from_jwks(jwks.as_bytes()).unwrap(), NOW, None);
                true
            }
            _ => false,
        }
    }
}

#[test]
fn an_unknown_kid_is_refetched_once_through_the_key_fetcher() {
    let f = fixture();
    let other = TestKey::load("ec-b.pem", "es-2", jsonwebtoken::Algorithm::ES256);
    let token = format!("Bearer {}", mint(&f, Token::Jws("h-a", "x"), "r-1").unwrap());
    let auth: [&[u8]; 1] = [token.as_bytes()];
    let decide = |fetch: &FakeFetch| {
        ready(f.engine.authenticate("GET", "/any", &auth, || NOW, fetch)).map(|_| ()).map_err(|r| r.denial.reason())
    };
    let rotated = testkit::jwks(&[&other]);
    let fetch = |keys: Option<String>| FakeFetch { engine: &f.engine, keys, calls: Default::default() };

    // The tenant's keys rotated away from the token's kid; the source has nothing newer.
    f.engine.keys.install("h-a", KeySet::from_jwks(rotated.as_bytes()).unwrap(), NOW, None);
    let empty = fetch(None);
    assert_eq!(decide(&empty), Err("key_unknown"));
    assert_eq!(empty.calls.lock().unwrap().len(), 1, "one refetch, refused when it finds nothing");

    // The source has the key now: the request is decided again and passes.
    let found = fetch(Some(testkit::jwks(&[&f.key, &other])));
    assert_eq!(decide(&found), Ok(()));
    assert_eq!(*found.calls.lock().unwrap(), vec![gateway_core::verify::Refetch::Signing("h-a".into())]);

    // A refetch that "succeeds" without the key is not repeated.
    f.engine.keys.install("h-a", KeySet::from_jwks(rotated.as_bytes()).unwrap(), NOW, None);
    let useless = fetch(Some(rotated.clone()));
    assert_eq!(decide(&useless), Err("key_unknown"));
    assert_eq!(useless.calls.lock().unwrap().len(), 1, "each kind of key is refetched at most once");
}
