//! Nested JWTs through the verifier: josekit encrypts tokens signed with the fixed
//! test keys; the verifier must find the tenant by the JWE `kid`, decrypt, and verify
//! the inner JWS with that same tenant's keys, and refuse every way of breaking that
//! binding with its own reason.

use gateway_core::alg::Algorithm as A;
use gateway_core::jwe::keys::DecryptionKeySet;
use gateway_core::jwe::store::DecryptionStore;
use gateway_core::jwe::{ContentEncryption as C, JweAllow, KeyManagement as K};
use gateway_core::keystore::KeyStore;
use gateway_core::verify::{guard, Refetch, Verifier};
use gateway_core::AuthError;
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use testkit::fixture::{self, NOW, POLICY};
use testkit::jwe::{edit_header, tamper, EncKey, ALGS, ENCS};
use testkit::TestKey;

struct F {
    verifier: Verifier,
    keys: KeyStore,
    dkeys: DecryptionStore,
    rs: TestKey,
    es: TestKey,
    t1_rsa: EncKey,
    t1_ec: EncKey,
    t2_ec: EncKey,
    t3_ec: EncKey,
}

fn claims(tenant: &str) -> Value {
    json!({"iss": format!("https://issuer.test/{tenant}"), "aud": "api", "sub": "u1", "tenant_id": tenant,
           "iat": NOW - 10, "exp": NOW + 300, "jti": "j1"})
}

fn fixture(cache: usize) -> F {
    let rs = TestKey::load("rsa-a.pem", "rs-1", Algorithm::RS256);
    let es = TestKey::load("ec-b.pem", "es-2", Algorithm::ES256);
    let strict = JweAllow { key_management: vec![K::EcdhEsA256Kw], content: vec![C::A256Gcm] };
    let verifier = fixture::verifier(
        vec![
            fixture::encrypted(fixture::tenant("t1", vec![A::RS256, A::ES256]), JweAllow::default(), false),
            fixture::encrypted(fixture::tenant("t2", vec![A::ES256]), strict, false),
            fixture::encrypted(fixture::tenant("t3", vec![A::ES256]), JweAllow::default(), true),
        ],
        cache,
    );
    let keys = KeyStore::new(["t1", "t2", "t3"], POLICY);
    keys.install("t1", fixture::key_set(&[&rs]), NOW, None);
    keys.install("t2", fixture::key_set(&[&es]), NOW, None);
    keys.install("t3", fixture::key_set(&[&es]), NOW, None);
    let (t1_rsa, t1_ec, t2_ec, t3_ec) =
        (EncKey::rsa("t1-rsa"), EncKey::p256("t1-ec"), EncKey::p256("t2-ec"), EncKey::p256("t3-ec"));
    let dkeys = DecryptionStore::new(["t1", "t2", "t3"], POLICY);
    let load = |keys: &[&EncKey]| DecryptionKeySet::from_jwks(testkit::jwe::private_jwks(keys).as_bytes()).unwrap();
    dkeys.install("t1", load(&[&t1_rsa, &t1_ec]), NOW, None);
    dkeys.install("t2", load(&[&t2_ec]), NOW, None);
    dkeys.install("t3", load(&[&t3_ec]), NOW, None);
    F { verifier, keys, dkeys, rs, es, t1_rsa, t1_ec, t2_ec, t3_ec }
}

fn check(f: &F, token: &str) -> Result<(), AuthError> {
    f.verifier.verify(token, &f.keys, &f.dkeys, NOW).map(|_| ()).map_err(|r| r.error)
}

#[test]
fn every_pair_decrypts_and_the_inner_jws_is_verified() {
    let f = fixture(0);
    let inner = f.rs.mint(&claims("t1"));
    for alg in ALGS {
        let key = if alg == "RSA-OAEP-256" { &f.t1_rsa } else { &f.t1_ec };
        for enc in ENCS {
            let t = f.verifier.verify(&key.wrap(alg, enc, &inner), &f.keys, &f.dkeys, NOW);
            let t = t.unwrap_or_else(|e| panic!("{alg} {enc}: {e:?}"));
            let e = t.encrypted().expect("encrypted");
            assert_eq!((e.alg.as_str(), e.enc.as_str(), e.kid.as_str()), (alg, enc, key.kid.as_str()));
            assert_eq!(
                (t.tenant().id.as_str(), t.kind(), t.alg(), t.kid()),
                ("t1", "JWE", Some(A::RS256), Some("rs-1"))
            );
        }
    }
}

#[test]
fn the_encryption_and_the_signature_must_name_one_tenant() {
    let f = fixture(0);
    // Signed by t2 for t2, but encrypted to t1's key.
    let t2_inner = f.es.mint(&claims("t2"));
    assert_eq!(check(&f, &f.t1_ec.wrap("ECDH-ES+A256KW", "A256GCM", &t2_inner)), Err(AuthError::TenantMismatch));
    // Claims t1 but signed with t2's key: t1 has no such kid.
    let forged = f.es.mint(&claims("t1"));
    let r = f.verifier.verify(&f.t1_ec.wrap("ECDH-ES", "A128GCM", &forged), &f.keys, &f.dkeys, NOW).unwrap_err();
    assert_eq!((r.error, r.refetch), (AuthError::KeyUnknown, Some(Refetch::Signing("t1".into()))));
    // Unsigned inner token.
    let none = f.rs.mint_raw(r#"{"alg":"none"}"#, &claims("t1").to_string());
    assert_eq!(check(&f, &f.t1_ec.wrap("ECDH-ES", "A128GCM", &none)), Err(AuthError::AlgorithmNotAllowed));
    let unsigned = format!("{}.", none.rsplit_once('.').unwrap().0);
    assert_eq!(
        check(&f, &f.t1_ec.wrap("ECDH-ES", "A128GCM", &unsigned)),
        Err(AuthError::TokenMalformed("empty segment"))
    );
    // A valid signature with the wrong inner kid's key bytes: signature check.
    let bad_sig = {
        let t = f.rs.mint(&claims("t1"));
        let (input, _) = t.rsplit_once('.').unwrap();
        let other = f.rs.mint(&json!({"x": 1}));
        format!("{input}.{}", other.rsplit_once('.').unwrap().1)
    };
    assert_eq!(check(&f, &f.t1_rsa.wrap("RSA-OAEP-256", "A256GCM", &bad_sig)), Err(AuthError::SignatureInvalid));
}

#[test]
fn bare_claims_only_where_a_tenant_allows_them() {
    let f = fixture(0);
    let bare = claims("t1").to_string();
    let no_cty = f.t1_ec.encrypt("ECDH-ES", "A256GCM", None, bare.as_bytes());
    assert_eq!(check(&f, &no_cty), Err(AuthError::NestedJwsRequired));
    let as_jwt = f.t1_ec.encrypt("ECDH-ES", "A256GCM", Some("JWT"), bare.as_bytes());
    assert_eq!(check(&f, &as_jwt), Err(AuthError::NestedJwsRequired), "cty JWT but not a JWS");
    // t3 opts in: bare claims naming t3 pass (no signature), naming another tenant do not.
    let t3 = f.t3_ec.encrypt("ECDH-ES", "A256GCM", None, claims("t3").to_string().as_bytes());
    let v = f.verifier.verify(&t3, &f.keys, &f.dkeys, NOW).unwrap();
    assert_eq!((v.tenant().id.as_str(), v.alg(), v.kind()), ("t3", None, "JWE"));
    let t3_other = f.t3_ec.encrypt("ECDH-ES", "A256GCM", None, claims("t1").to_string().as_bytes());
    assert_eq!(check(&f, &t3_other), Err(AuthError::TenantMismatch));
    let mut expired = claims("t3");
    expired["exp"] = json!(NOW - 100);
    let t3_exp = f.t3_ec.encrypt("ECDH-ES", "A256GCM", None, expired.to_string().as_bytes());
    assert_eq!(check(&f, &t3_exp), Err(AuthError::TokenExpired));
    // A JWE inside a JWE is not a signed JWT.
    let inner = f.t1_ec.wrap("ECDH-ES", "A256GCM", &f.rs.mint(&claims("t1")));
    assert_eq!(check(&f, &f.t1_ec.wrap("ECDH-ES", "A256GCM", &inner)), Err(AuthError::NestedJwsRequired));
}

#[test]
fn keys_and_algorithms_are_the_tenants_own() {
    let f = fixture(0);
    let inner = f.es.mint(&claims("t2"));
    assert!(check(&f, &f.t2_ec.wrap("ECDH-ES+A256KW", "A256GCM", &inner)).is_ok());
    // t2 allows only ECDH-ES+A256KW with A256GCM, although t1 allows everything.
    assert_eq!(check(&f, &f.t2_ec.wrap("ECDH-ES", "A256GCM", &inner)), Err(AuthError::AlgorithmNotAllowed));
    assert_eq!(check(&f, &f.t2_ec.wrap("ECDH-ES+A256KW", "A128GCM", &inner)), Err(AuthError::AlgorithmNotAllowed));
    // An unknown kid: a decryption-key refetch may help.
    let stranger = EncKey::p256("nobody");
    let r = f.verifier.verify(&stranger.wrap("ECDH-ES", "A128GCM", &inner), &f.keys, &f.dkeys, NOW).unwrap_err();
    assert_eq!((r.error, r.refetch), (AuthError::KeyUnknown, Some(Refetch::Decryption("nobody".into()))));
    // Another key under t1's kid: decryption fails, one opaque reason.
    let impostor = EncKey::p256("t1-ec");
    let inner1 = f.rs.mint(&claims("t1"));
    assert_eq!(check(&f, &impostor.wrap("ECDH-ES", "A128GCM", &inner1)), Err(AuthError::DecryptionFailed));
}

#[test]
fn hostile_jwes_get_their_reason_before_any_work() {
    let f = fixture(0);
    let good = f.t1_ec.wrap("ECDH-ES+A128KW", "A128CBC-HS256", &f.rs.mint(&claims("t1")));
    assert!(check(&f, &good).is_ok());
    let set = |k: &'static str, v: Value| edit_header(&good, move |h| drop(h.insert(k.into(), v)));
    let cases: Vec<(String, AuthError)> = vec![
        (set("alg", json!("RSA1_5")), AuthError::AlgorithmNotAllowed),
        (set("alg", json!("PBES2-HS256+A128KW")), AuthError::AlgorithmNotAllowed),
        (set("p2c", json!(100_000_000)), AuthError::HeaderUnsupported("p2c")),
        (set("alg", json!("dir")), AuthError::AlgorithmNotAllowed),
        (set("zip", json!("DEF")), AuthError::HeaderUnsupported("zip")),
        (set("crit", json!(["exp"])), AuthError::HeaderUnsupported("crit")),
        (set("jku", json!("https://evil.test/jwks")), AuthError::HeaderUnsupported("jku")),
        (set("enc", json!("A192GCM")), AuthError::AlgorithmNotAllowed),
        (
            set("epk", json!({"kty":"EC","crv":"P-256","x":testkit::b64(&[1; 32]),"y":testkit::b64(&[2; 32])})),
            AuthError::DecryptionFailed,
        ),
        (set("epk", json!({"kty":"EC","crv":"P-384","x":"AA","y":"AA"})), AuthError::AlgorithmNotAllowed),
        (tamper(&good, 0), AuthError::TokenMalformed("header json")),
        (tamper(&good, 1), AuthError::DecryptionFailed),
        (tamper(&good, 2), AuthError::DecryptionFailed),
        (tamper(&good, 3), AuthError::DecryptionFailed),
        (tamper(&good, 4), AuthError::DecryptionFailed),
        (format!("{}.", good.rsplit_once('.').unwrap().0), AuthError::TokenMalformed("tag length")),
        (good.replacen('.', "..", 1), AuthError::TokenMalformed("segment count")),
    ];
    for (token, want) in cases {
        assert_eq!(check(&f, &token), Err(want.clone()), "{want:?}");
    }
}

#[test]
fn cache_follows_the_decryption_keys() {
    let f = fixture(100);
    let token = f.t1_ec.wrap("ECDH-ES", "A256GCM", &f.rs.mint(&claims("t1")));
    let a = f.verifier.verify(&token, &f.keys, &f.dkeys, NOW).unwrap();
    let b = f.verifier.verify(&token, &f.keys, &f.dkeys, NOW).unwrap();
    assert!(std::sync::Arc::ptr_eq(&a, &b), "second use is a cache hit");
    // The decryption key is withdrawn (emergency rotation): the cached token stops passing.
    let only_rsa = DecryptionKeySet::from_jwks(testkit::jwe::private_jwks(&[&f.t1_rsa]).as_bytes()).unwrap();
    f.dkeys.install("t1", only_rsa, NOW, None);
    let r = f.verifier.verify(&token, &f.keys, &f.dkeys, NOW).unwrap_err();
    assert_eq!(r.error, AuthError::KeyUnknown);
    let _ = (&f.t2_ec, &f.t3_ec);
}

#[test]
fn a_panic_in_a_library_call_becomes_a_refusal() {
    assert_eq!(guard(|| 7), Ok(7));
    let silenced = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let r: Result<(), AuthError> = guard(|| panic!("library bug on hostile input"));
    std::panic::set_hook(silenced);
    assert_eq!(r, Err(AuthError::DecryptionFailed));
    // catch_unwind only works while panics unwind: no profile may abort on panic.
    for manifest in ["/../../Cargo.toml", "/../Cargo.toml", "/Cargo.toml"] {
        let text = std::fs::read_to_string(format!("{}{manifest}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        assert!(!compact.contains("panic=\"abort\""), "{manifest} sets panic = \"abort\"");
    }
}
