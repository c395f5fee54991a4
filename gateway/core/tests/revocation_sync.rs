//! The engine's revocation gate: with a feed configured and `require_sync` (the
//! default), a verified token on a protected route is refused with 503
//! `revocations_unavailable` until the revocation state is synced; public routes and
//! refusals that need no revocation state are unaffected; `require_sync: false`
//! serves on the empty state.

use gateway_core::{AuthError, Config, Decision, Engine, KeySet};
use serde_json::json;
use testkit::TestKey;

const NOW: i64 = 1_800_000_000;

fn engine(require_sync: &str) -> (Engine, TestKey) {
    let key = TestKey::load("ec-a.pem", "es-1", jsonwebtoken::Algorithm::ES256);
    let yaml = format!(
        r#"{head}tenants:
  t1: {{ issuer: https://issuer.test/t1, audiences: [api], algorithms: [ES256] }}
upstreams:
  echo: {{ peers: ["127.0.0.1:4"] }}
routes:
  - {{ name: public, path: /public, methods: [GET], upstream: echo, public: true }}
  - {{ name: echo, prefix: /echo, upstream: echo }}
revocation:
  feed_url: http://127.0.0.1:5/internal/v1/revocations
  token_env: NOT_READ_BY_THE_CORE
{require_sync}
"#,
        head = testkit::fixture::CONFIG_HEAD
    );
    let engine = Engine::new(Config::from_yaml(&yaml).unwrap());
    let jwks = testkit::jwks(&[&key]);
    engine.keys.install("t1", KeySet::from_jwks(jwks.as_bytes()).unwrap(), NOW, None);
    (engine, key)
}

fn token(key: &TestKey) -> String {
    key.mint(&json!({"iss": "https://issuer.test/t1", "aud": "api", "sub": "u", "tenant_id": "t1",
                     "iat": NOW - 10, "exp": NOW + 300, "jti": "j-1"}))
}

fn reason(e: &Engine, path: &str, auth: Option<&str>) -> &'static str {
    let header = auth.map(|t| format!("Bearer {t}"));
    let values: Vec<&[u8]> = header.iter().map(|h| h.as_bytes()).collect();
    match e.decide("GET", path, &values, NOW) {
        Ok(Decision::Allowed(_)) => "allowed",
        Ok(Decision::OneTime(_)) => "one_time",
        Err(r) => r.denial.reason(),
    }
}

#[test]
fn protected_routes_wait_for_the_first_sync() {
    let (e, key) = engine("");
    let t = token(&key);
    assert_eq!(reason(&e, "/echo", Some(&t)), "revocations_unavailable");
    assert_eq!(gateway_core::Denial::from(AuthError::RevocationsUnavailable).response().status, 503);
    assert_eq!(reason(&e, "/public", None), "allowed", "public routes need no revocation state");
    assert_eq!(reason(&e, "/echo", None), "token_missing");
    assert_eq!(reason(&e, "/echo", Some("a.b.c")), "token_malformed", "a bad token is still a 401");
    e.revocations.mark_synced();
    assert_eq!(reason(&e, "/echo", Some(&t)), "allowed");
}

#[test]
fn require_sync_false_serves_on_the_empty_state() {
    let (e, key) = engine("  require_sync: false");
    assert_eq!(reason(&e, "/echo", Some(&token(&key))), "allowed");
}
