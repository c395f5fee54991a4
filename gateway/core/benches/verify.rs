//! Verification cost per algorithm, beside the raw signature-verify cost of the same
//! crypto library (aws-lc-rs) on the same bytes, so the overhead of our parsing and
//! checks is visible; plus the verified-token cache hit path.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use gateway_core::alg::Algorithm as A;
use gateway_core::jwe::store::DecryptionStore;
use gateway_core::keystore::{KeyStore, RefreshPolicy};
use gateway_core::tenant::{KeySource, Tenant};
use gateway_core::verify::{Verifier, VerifyOptions};
use gateway_core::KeySet;
use jsonwebtoken::Algorithm;
use serde_json::json;
use std::hint::black_box;
use testkit::TestKey;

/// No tenant accepts JWE here.
fn nod() -> DecryptionStore {
    DecryptionStore::new(
        std::iter::empty(),
        RefreshPolicy { floor: 1, ceiling: 1, default_max_age: 1, unknown_kid_cooldown: 1, max_stale: 1 },
    )
}

const NOW: i64 = 1_800_000_000;

fn setup(cache: usize) -> (Verifier, KeyStore, Vec<(A, TestKey)>) {
    let keys = vec![
        (A::RS256, TestKey::load("rsa-a.pem", "rs-1", Algorithm::RS256)),
        (A::PS256, TestKey::load("rsa-b.pem", "ps-1", Algorithm::PS256)),
        (A::ES256, TestKey::load("ec-a.pem", "es-1", Algorithm::ES256)),
        (A::EdDSA, TestKey::load("ed-a.pem", "ed-1", Algorithm::EdDSA)),
    ];
    let tenant = Tenant {
        id: "t1".into(),
        issuer: "https://issuer.test/t1".into(),
        audiences: vec!["api".into()],
        algorithms: A::ALL.to_vec(),
        required: true,
        required_claims: vec!["sub".into()],
        keys: KeySource::Url("http://unused".into()),
        encryption: None,
    };
    let verifier = Verifier::new(
        VerifyOptions { tenant_claim: "tenant_id".into(), leeway: 30, max_token_size: 8192 },
        vec![tenant],
        cache,
    );
    let policy = RefreshPolicy {
        floor: 30,
        ceiling: 3600,
        default_max_age: 300,
        unknown_kid_cooldown: 10,
        max_stale: i64::MAX / 4,
    };
    let store = KeyStore::new(["t1"], policy);
    let refs: Vec<&TestKey> = keys.iter().map(|(_, k)| k).collect();
    store.install("t1", KeySet::from_jwks(testkit::jwks(&refs).as_bytes()).unwrap(), NOW, None);
    (verifier, store, keys)
}

fn claims() -> serde_json::Value {
    json!({"iss":"https://issuer.test/t1","aud":"api","sub":"patient-12345","role":["patient"],
           "tenant_id":"t1","iat":NOW,"nbf":NOW,"exp":NOW+900,"jti":"2f1c7a5e-9b7d-4c1e-8f3a-0d6b2e4a9c11"})
}

fn bench(c: &mut Criterion) {
    let (verifier, store, keys) = setup(0);
    let no_jwe = nod();
    let mut group = c.benchmark_group("verify");
    for (alg, key) in &keys {
        let token = key.mint(&claims());
        let (input, sig) = token.rsplit_once('.').unwrap();
        let sig = gateway_core::b64::decode(sig.as_bytes()).unwrap();
        let set = store.get("t1", NOW).unwrap();
        let raw_key = set.get(&key.kid).unwrap().clone();
        assert!(verifier.verify(&token, &store, &no_jwe, NOW).is_ok());
        group.bench_with_input(BenchmarkId::new("raw_signature", alg.as_str()), &(), |b, _| {
            b.iter(|| assert!(raw_key.verify(*alg, black_box(input.as_bytes()), black_box(&sig))))
        });
        group.bench_with_input(BenchmarkId::new("full_verify", alg.as_str()), &(), |b, _| {
            b.iter(|| verifier.verify(black_box(&token), &store, &no_jwe, NOW).unwrap())
        });
    }
    let (cached, cstore, ckeys) = setup(10_000);
    let token = ckeys[0].1.mint(&claims());
    cached.verify(&token, &cstore, &no_jwe, NOW).unwrap();
    group.bench_function("cache_hit/RS256", |b| {
        b.iter(|| cached.verify(black_box(&token), &cstore, &no_jwe, NOW).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
