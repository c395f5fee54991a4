//! Table-driven verification tests with fixed test keys and a fixed clock: every
//! accepted algorithm, and every refusal JOSE-PITFALLS.md lists.

use gateway_core::alg::Algorithm as A;
use gateway_core::keystore::KeyStore;
use gateway_core::verify::{Refetch, Verifier, VerifyOptions};
use gateway_core::{AuthError, KeySet};
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use testkit::fixture::{self, tenant, NOW, POLICY};
use testkit::{b64, TestKey};

struct Fixture {
    verifier: Verifier,
    store: KeyStore,
    rs: TestKey,
    ps: TestKey,
    es: TestKey,
    ed: TestKey,
    other: TestKey,
}

fn fixture() -> Fixture {
    let rs = TestKey::load("rsa-a.pem", "rs-1", Algorithm::RS256);
    let ps = TestKey::load("rsa-b.pem", "ps-1", Algorithm::PS256);
    let es = TestKey::load("ec-a.pem", "es-1", Algorithm::ES256);
    let ed = TestKey::load("ed-a.pem", "ed-1", Algorithm::EdDSA);
    let other = TestKey::load("ec-b.pem", "other-1", Algorithm::ES256);
    let verifier = fixture::verifier(vec![tenant("t1", A::ALL.to_vec()), tenant("t2", vec![A::ES256])], 0);
    let store = KeyStore::new(["t1", "t2"], POLICY);
    store.install("t1", fixture::key_set(&[&rs, &ps, &es, &ed]), NOW, None);
    store.install("t2", fixture::key_set(&[&other]), NOW, None);
    Fixture { verifier, store, rs, ps, es, ed, other }
}

fn good(tenant: &str) -> Value {
    json!({"iss": format!("https://issuer.test/{tenant}"), "aud": "api", "sub": "u1", "tenant_id": tenant,
           "iat": NOW - 10, "nbf": NOW - 10, "exp": NOW + 600, "jti": "j1"})
}

fn with(mut v: Value, k: &str, x: Value) -> Value {
    if x.is_null() {
        v.as_object_mut().unwrap().remove(k);
    } else {
        v[k] = x;
    }
    v
}

fn check(f: &Fixture, token: &str) -> Result<(), AuthError> {
    f.verifier.verify(token, &f.store, &fixture::no_decryption(), NOW).map(|_| ()).map_err(|r| r.error)
}

#[test]
fn every_algorithm_verifies() {
    let f = fixture();
    for k in [&f.rs, &f.ps, &f.es, &f.ed] {
        let t = f
            .verifier
            .verify(&k.mint(&good("t1")), &f.store, &fixture::no_decryption(), NOW)
            .unwrap_or_else(|e| panic!("{:?}: {e:?}", k.alg));
        assert_eq!(t.tenant().id, "t1");
        assert_eq!(t.kid(), Some(k.kid.as_str()));
        assert_eq!(t.claims().str("sub"), Some("u1"));
    }
}

#[test]
fn claim_refusals() {
    let f = fixture();
    let cases: Vec<(Value, AuthError)> = vec![
        (with(good("t1"), "exp", json!(NOW - 31)), AuthError::TokenExpired),
        (with(good("t1"), "exp", Value::Null), AuthError::ClaimMissing("exp".into())),
        (with(good("t1"), "nbf", json!(NOW + 31)), AuthError::TokenNotYetValid),
        (with(good("t1"), "iat", json!(NOW + 31)), AuthError::TokenNotYetValid),
        (with(good("t1"), "iss", json!("https://evil.test/t1")), AuthError::IssuerInvalid),
        (with(good("t1"), "iss", Value::Null), AuthError::IssuerInvalid),
        (with(good("t1"), "aud", json!("other")), AuthError::AudienceInvalid),
        (with(good("t1"), "aud", Value::Null), AuthError::AudienceInvalid),
        (with(good("t1"), "tenant_id", json!("nope")), AuthError::TenantUnknown),
        (with(good("t1"), "tenant_id", Value::Null), AuthError::TenantUnknown),
        (with(good("t1"), "sub", Value::Null), AuthError::ClaimMissing("sub".into())),
        (with(good("t1"), "exp", json!(1e19)), AuthError::ClaimInvalid("exp".into())),
        (with(good("t1"), "exp", json!(u64::MAX)), AuthError::ClaimInvalid("exp".into())),
        (with(good("t1"), "nbf", json!("soon")), AuthError::ClaimInvalid("nbf".into())),
    ];
    for (claims, want) in cases {
        assert_eq!(check(&f, &f.rs.mint(&claims)), Err(want.clone()), "{claims}");
    }
    assert!(check(&f, &f.rs.mint(&with(good("t1"), "exp", json!(NOW - 30)))).is_ok(), "leeway");
}

#[test]
fn tenant_isolation_and_keys() {
    let f = fixture();
    // t2's key signing a t1 token: t1's set has no such kid.
    assert_eq!(check(&f, &f.other.mint(&good("t1"))), Err(AuthError::KeyUnknown));
    // t1's kid in a t2 token: looked up only in t2's set, and ES256 only.
    assert_eq!(check(&f, &f.es.mint(&good("t2"))), Err(AuthError::KeyUnknown));
    assert_eq!(check(&f, &f.rs.mint(&good("t2"))), Err(AuthError::AlgorithmNotAllowed));
    // Unknown kid asks for a refetch of that tenant only.
    let unknown = TestKey { kid: "rotated-2".into(), ..f.rs.clone() };
    let r = f.verifier.verify(&unknown.mint(&good("t1")), &f.store, &fixture::no_decryption(), NOW).unwrap_err();
    assert_eq!((r.error, r.refetch), (AuthError::KeyUnknown, Some(Refetch::Signing("t1".into()))));
    // A kid naming another key of the right tenant: signature fails.
    let wrong = TestKey { kid: "ps-1".into(), alg: Algorithm::PS256, ..f.rs.clone() };
    assert_eq!(check(&f, &wrong.mint(&good("t1"))), Err(AuthError::SignatureInvalid));
    // alg must fit the key type: ES256 header naming the RSA key.
    let h = json!({"alg":"ES256","kid":"rs-1"}).to_string();
    assert_eq!(check(&f, &f.es.mint_raw(&h, &good("t1").to_string())), Err(AuthError::AlgorithmNotAllowed));
    // kid is only a lookup key: path-like kids just miss.
    let h = json!({"alg":"RS256","kid":"../../etc/passwd"}).to_string();
    assert_eq!(check(&f, &f.rs.mint_raw(&h, &good("t1").to_string())), Err(AuthError::KeyUnknown));
    // Keys not loaded for a tenant: 503-class, not a forgery verdict.
    let empty = KeyStore::new(["t1"], POLICY);
    let r = f.verifier.verify(&f.rs.mint(&good("t1")), &empty, &fixture::no_decryption(), NOW).unwrap_err();
    assert_eq!(r.error, AuthError::KeysUnavailable);
}

#[test]
fn forgeries_and_malformed_tokens() {
    let f = fixture();
    let claims = good("t1").to_string();
    let valid = f.rs.mint(&good("t1"));
    let (head, rest) = valid.split_once('.').unwrap();
    let (_, sig) = rest.split_once('.').unwrap();
    let unsigned =
        |alg: &str| format!("{}.{}.", b64(json!({"alg": alg}).to_string().as_bytes()), b64(claims.as_bytes()));
    // HMAC with the RSA public key as secret (key confusion).
    let hs_input = format!("{}.{}", b64(br#"{"alg":"HS256","kid":"rs-1"}"#), b64(claims.as_bytes()));
    let hs_sig = jsonwebtoken::crypto::sign(
        hs_input.as_bytes(),
        &jsonwebtoken::EncodingKey::from_secret(&testkit::key_file("rsa-a.pub.pem")),
        Algorithm::HS256,
    )
    .unwrap();
    let tampered = format!("{head}.{}.{sig}", b64(with(good("t1"), "sub", json!("admin")).to_string().as_bytes()));
    let es = f.es.mint(&good("t1"));
    let es_sig_at = es.rfind('.').unwrap();
    let zero_sig = format!("{}.{}", &es[..es_sig_at], b64(&[0u8; 64]));
    let rs_zero = format!("{}.{}", &es[..es_sig_at], b64(&[[0u8; 32], [1u8; 32]].concat()));
    let der_sig = format!("{}.{}", &es[..es_sig_at], b64(&[0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01]));
    let cases: Vec<(String, AuthError)> = vec![
        (format!("{}x", unsigned("none")), AuthError::AlgorithmNotAllowed),
        (format!("{}x", unsigned("nOnE")), AuthError::AlgorithmNotAllowed),
        (format!("{hs_input}.{hs_sig}"), AuthError::AlgorithmNotAllowed),
        (unsigned("RS256"), AuthError::TokenMalformed("empty segment")),
        (tampered, AuthError::SignatureInvalid),
        (zero_sig, AuthError::SignatureInvalid),
        (rs_zero, AuthError::SignatureInvalid),
        (der_sig, AuthError::SignatureInvalid),
        (format!("{valid}="), AuthError::TokenMalformed("signature encoding")),
        (format!("{valid}.x.y"), AuthError::EncryptionUnsupported),
        (format!("{valid}.x"), AuthError::TokenMalformed("segment count")),
        (valid.replacen('.', "..", 1), AuthError::TokenMalformed("segment count")),
        (
            f.rs.mint_raw(r#"{"alg":"RS256","kid":"rs-1","crit":["exp"],"exp":1}"#, &claims),
            AuthError::HeaderUnsupported("crit"),
        ),
        (
            f.rs.mint_raw(r#"{"alg":"RS256","kid":"rs-1","jku":"http://127.0.0.1:1/k"}"#, &claims),
            AuthError::HeaderUnsupported("jku"),
        ),
        (
            f.rs.mint_raw(r#"{"alg":"RS256","kid":"rs-1","x5u":"http://127.0.0.1:1/c"}"#, &claims),
            AuthError::HeaderUnsupported("x5u"),
        ),
        (
            f.rs.mint_raw(&json!({"alg":"RS256","jwk": f.rs.jwk()}).to_string(), &claims),
            AuthError::HeaderUnsupported("jwk"),
        ),
        (
            f.rs.mint_raw(r#"{"alg":"RS256","kid":"rs-1","b64":false,"crit":["b64"]}"#, &claims),
            AuthError::HeaderUnsupported("crit"),
        ),
        (
            f.rs.mint_raw(r#"{"alg":"RS256","kid":"rs-1","kid":"other-1"}"#, &claims),
            AuthError::TokenMalformed("header json"),
        ),
        (
            f.rs.mint_raw(
                r#"{"alg":"RS256","kid":"rs-1"}"#,
                &claims.replacen("\"sub\":\"u1\"", "\"sub\":\"u1\",\"sub\":\"admin\"", 1),
            ),
            AuthError::TokenMalformed("payload json"),
        ),
        (
            format!("{}.{}", &valid[..valid.rfind('.').unwrap()], sig.replace('-', "+").replace('_', "/")),
            AuthError::SignatureInvalid,
        ),
        (f.rs.mint(&with(good("t1"), "pad", json!("x".repeat(9000)))), AuthError::TokenTooLarge),
    ];
    for (token, want) in cases {
        let got = check(&f, &token);
        // '+' or '/' in a signature is a decoding failure, which may surface as either.
        if want == AuthError::SignatureInvalid && got == Err(AuthError::TokenMalformed("signature encoding")) {
            continue;
        }
        assert_eq!(got, Err(want), "{}", &token[..token.len().min(80)]);
    }
}

#[test]
fn kidless_token_uses_the_single_fitting_key() {
    let f = fixture();
    let t2 = good("t2").to_string();
    assert!(check(&f, &f.other.mint_raw(r#"{"alg":"ES256"}"#, &t2)).is_ok());
    // Two keys fit ES256: without a kid none is chosen.
    let es2 = TestKey { kid: "es-2".into(), ..f.es.clone() };
    f.store.install("t2", fixture::key_set(&[&f.other, &es2]), NOW, None);
    assert_eq!(check(&f, &f.other.mint_raw(r#"{"alg":"ES256"}"#, &t2)), Err(AuthError::KeyUnknown));
}

/// A verifier of tenant t1 alone, with one algorithm, a leeway and a token cache size.
fn one_tenant(alg: A, leeway: i64, cache: usize) -> Verifier {
    let opts = VerifyOptions { tenant_claim: "tenant_id".into(), leeway, max_token_size: 8192 };
    Verifier::new(opts, vec![tenant("t1", vec![alg])], cache)
}

#[test]
fn cache_is_invalidated_by_key_refresh_and_rechecks_time() {
    let rs = TestKey::load("rsa-a.pem", "rs-1", Algorithm::RS256);
    let verifier = one_tenant(A::RS256, 0, 100);
    let store = KeyStore::new(["t1"], POLICY);
    store.install("t1", fixture::key_set(&[&rs]), NOW, None);
    let tok = rs.mint(&with(good("t1"), "exp", json!(NOW + 100)));
    let a = verifier.verify(&tok, &store, &fixture::no_decryption(), NOW).unwrap();
    let b = verifier.verify(&tok, &store, &fixture::no_decryption(), NOW).unwrap();
    assert!(std::sync::Arc::ptr_eq(&a, &b), "second use is a cache hit");
    assert_eq!(
        verifier.verify(&tok, &store, &fixture::no_decryption(), NOW + 101).unwrap_err().error,
        AuthError::TokenExpired
    );
    // The key is removed (emergency rotation): the cached token no longer passes.
    let other = TestKey::load("ec-b.pem", "other-1", Algorithm::ES256);
    store.install("t1", fixture::key_set(&[&other]), NOW, None);
    assert_eq!(verifier.verify(&tok, &store, &fixture::no_decryption(), NOW).unwrap_err().error, AuthError::KeyUnknown);
}

#[test]
fn pem_sources() {
    let rs = TestKey::load("rsa-a.pem", "rs-1", Algorithm::RS256);
    let ed = TestKey::load("ed-a.pem", "ed-1", Algorithm::EdDSA);
    let es = TestKey::load("ec-a.pem", "es-1", Algorithm::ES256);
    for (file, key, alg) in [
        ("rsa-a.pub.pem", &rs, A::RS256),
        ("rsa-a.cert.pem", &rs, A::RS256),
        ("ed-a.pub.pem", &ed, A::EdDSA),
        ("ec-a.pub.pem", &es, A::ES256),
    ] {
        let set = KeySet::from_pem(&testkit::key_file(file), Some(&key.kid)).unwrap();
        let k = set.get(&key.kid).unwrap_or_else(|| panic!("{file}"));
        let tok = key.mint(&good("t1"));
        let (input, sig) = tok.rsplit_once('.').unwrap();
        assert!(k.verify(alg, input.as_bytes(), &gateway_core::b64::decode(sig.as_bytes()).unwrap()), "{file}");
    }
    let err = |f: &str| KeySet::from_pem(&testkit::key_file(f), None).unwrap_err().to_string();
    assert!(err("rsa-a.pkcs1.pub.pem")
        .contains("found a PKCS#1 RSA public key (RSA PUBLIC KEY), expected an SPKI public key (PUBLIC KEY)"));
    assert!(err("rsa-a.pem").contains("found a PKCS#8 private key (PRIVATE KEY)"));
    assert!(err("ec-p384.pub.pem").contains("unsupported key type EC curve"));
    assert!(KeySet::from_pem(b"not pem", None).is_err());
}

#[test]
fn jwks_parsing_skips_unusable_keys() {
    let rs = TestKey::load("rsa-a.pem", "rs-1", Algorithm::RS256);
    let doc = json!({"keys": [
        rs.jwk(),
        {"kty":"oct","k":"c2VjcmV0","kid":"hmac"},
        {"kty":"RSA","use":"enc","kid":"enc-1","n":"AQAB","e":"AQAB"},
        {"kty":"EC","crv":"P-384","kid":"p384","x":"AA","y":"AA"},
        {"kty":"RSA","kid":"tiny","n":"AQAB","e":"AQAB"},
        rs.jwk(),
    ]});
    let set = KeySet::from_jwks(doc.to_string().as_bytes()).unwrap();
    assert_eq!(set.len(), 1);
    assert_eq!(set.skipped.len(), 5, "{:?}", set.skipped);
    assert!(KeySet::from_jwks(b"{}").is_err());
    assert!(KeySet::from_jwks(b"not json").is_err());
    // A JWK whose own alg is RS256 cannot verify PS256.
    assert!(!set.get("rs-1").unwrap().allows(A::PS256));
}

#[test]
fn revocation_watermarks_and_kids() {
    use gateway_core::revocation::{RevocationEvent, Revocations};
    let f = fixture();
    let t = f.verifier.verify(&f.es.mint(&good("t1")), &f.store, &fixture::no_decryption(), NOW).unwrap();
    let r = Revocations::default();
    assert!(r.check(&t).is_ok());
    let ev = |sub: Option<&str>, before: Option<i64>, kid: Option<&str>| RevocationEvent {
        seq: 1,
        tenant: "t1".into(),
        subject: sub.map(Into::into),
        before,
        kid: kid.map(Into::into),
        ..Default::default()
    };
    r.apply(&ev(Some("u1"), Some(NOW - 11), None), NOW);
    assert!(r.check(&t).is_ok(), "issued after the watermark");
    r.apply(&ev(Some("u1"), Some(NOW - 10), None), NOW);
    assert_eq!(r.check(&t), Err(AuthError::TokenRevoked), "issued at the watermark");
    let r = Revocations::default();
    r.apply(&ev(None, Some(NOW), None), NOW);
    assert_eq!(r.check(&t), Err(AuthError::TokenRevoked), "tenant watermark");
    let r = Revocations::default();
    r.apply(&ev(None, None, Some("es-1")), NOW);
    assert_eq!(r.check(&t), Err(AuthError::TokenRevoked), "removed key");
}

/// A working set a little above the cache's capacity still hits on most requests: a
/// full cache evicts its coldest entries, never everything at once (which would make
/// every request of a cycling client population a miss and a full signature check).
#[test]
fn cache_slightly_too_small_still_hits() {
    let ed = TestKey::load("ed-a.pem", "ed-1", Algorithm::EdDSA);
    let verifier = one_tenant(A::EdDSA, 0, 1000);
    let store = KeyStore::new(["t1"], POLICY);
    store.install("t1", fixture::key_set(&[&ed]), NOW, None);
    let tokens: Vec<String> = (0..1020).map(|i| ed.mint(&with(good("t1"), "jti", json!(format!("j{i}"))))).collect();
    for _ in 0..2 {
        for t in &tokens {
            verifier.verify(t, &store, &fixture::no_decryption(), NOW).unwrap();
        }
    }
    let (hits0, misses0) = verifier.cache_stats();
    for t in &tokens {
        verifier.verify(t, &store, &fixture::no_decryption(), NOW).unwrap();
    }
    let (hits, misses) = verifier.cache_stats();
    let (hits, misses) = (hits - hits0, misses - misses0);
    assert_eq!(hits + misses, tokens.len() as u64);
    assert!(
        hits * 2 > tokens.len() as u64,
        "a cycle of 1020 tokens over a 1000-token cache: {hits} hits, {misses} misses"
    );
    // An expired token is never cached: it cannot be served again, and would only
    // take a live token's place.
    let expired = ed.mint(&with(good("t1"), "exp", json!(NOW - 5)));
    let lenient = one_tenant(A::EdDSA, 30, 10);
    lenient.verify(&expired, &store, &fixture::no_decryption(), NOW).unwrap();
    lenient.verify(&expired, &store, &fixture::no_decryption(), NOW).unwrap();
    assert_eq!(lenient.cache_stats(), (0, 2), "within the leeway it passes, but is verified in full each time");
}
