//! Verification cost per algorithm, beside the raw signature-verify cost of the same
//! crypto library (aws-lc-rs) on the same bytes, so the overhead of our parsing and
//! checks is visible; the verified-token cache hit path, on one thread and with a
//! second thread hitting the same token, beside a bare map lookup of the same token;
//! and the per-request cost with 100 and with 10,000 configured tenants.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use gateway_core::alg::Algorithm as A;
use gateway_core::keystore::KeyStore;
use gateway_core::verify::{Verifier, VerifyOptions};
use gateway_core::KeySet;
use jsonwebtoken::Algorithm;
use serde_json::json;
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use testkit::fixture::{self, tenant, NOW};
use testkit::TestKey;

fn setup(cache: usize) -> (Verifier, KeyStore, Vec<(A, TestKey)>) {
    let keys = vec![
        (A::RS256, TestKey::load("rsa-a.pem", "rs-1", Algorithm::RS256)),
        (A::PS256, TestKey::load("rsa-b.pem", "ps-1", Algorithm::PS256)),
        (A::ES256, TestKey::load("ec-a.pem", "es-1", Algorithm::ES256)),
        (A::EdDSA, TestKey::load("ed-a.pem", "ed-1", Algorithm::EdDSA)),
    ];
    let tenant = tenant("t1", A::ALL.to_vec());
    let verifier = fixture::verifier(vec![tenant], cache);
    let policy = fixture::NEVER_STALE;
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
    let no_jwe = fixture::no_decryption();
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

/// Runs `op` `iters` times on this thread, timed, while (when `contended`) another
/// thread runs it in a loop; the time per call on the measured thread.
fn timed<F: Fn() + Sync>(iters: u64, contended: bool, op: &F) -> Duration {
    let stop = AtomicBool::new(false);
    let started = AtomicBool::new(!contended);
    std::thread::scope(|s| {
        if contended {
            s.spawn(|| {
                started.store(true, Ordering::Release);
                while !stop.load(Ordering::Relaxed) {
                    op();
                }
            });
        }
        while !started.load(Ordering::Acquire) {
            std::hint::spin_loop();
        }
        let t = Instant::now();
        for _ in 0..iters {
            op();
        }
        let elapsed = t.elapsed();
        stop.store(true, Ordering::Relaxed);
        elapsed
    })
}

/// The verified-token cache hit (through `Verifier::verify`, so with the dot count
/// and time re-check), beside a bare `DashMap` and `HashMap` lookup of the same token.
fn cache(c: &mut Criterion) {
    let no_jwe = fixture::no_decryption();
    let (cached, cstore, ckeys) = setup(10_000);
    let token = ckeys[0].1.mint(&claims());
    cached.verify(&token, &cstore, &no_jwe, NOW).unwrap();
    let dash: dashmap::DashMap<Box<str>, u64> = dashmap::DashMap::new();
    let mut std_map: HashMap<Box<str>, u64> = HashMap::new();
    for i in 0..1000u64 {
        dash.insert(format!("{token}{i}").into(), i);
        std_map.insert(format!("{token}{i}").into(), i);
    }
    dash.insert(token.as_str().into(), 1);
    std_map.insert(token.as_str().into(), 1);
    let mut group = c.benchmark_group("cache");
    for (threads, contended) in [("1thread", false), ("2threads", true)] {
        let hit = || {
            black_box(cached.verify(black_box(&token), &cstore, &no_jwe, NOW).unwrap());
        };
        let dash_get = || {
            black_box(dash.get(black_box(token.as_str())).map(|v| *v));
        };
        let std_get = || {
            black_box(std_map.get(black_box(token.as_str())).copied());
        };
        group.bench_function(BenchmarkId::new("hit", threads), |b| b.iter_custom(|n| timed(n, contended, &hit)));
        group.bench_function(BenchmarkId::new("bare_dashmap_get", threads), |b| {
            b.iter_custom(|n| timed(n, contended, &dash_get))
        });
        group.bench_function(BenchmarkId::new("bare_hashmap_get", threads), |b| {
            b.iter_custom(|n| timed(n, contended, &std_get))
        });
    }
    group.finish();
}

/// Full RS256 verification and a cache hit with 100 and with 10,000 configured
/// tenants (each with its own keys loaded): the lookups by tenant id must not scan.
fn tenants(c: &mut Criterion) {
    let no_jwe = fixture::no_decryption();
    let key = TestKey::load("rsa-a.pem", "rs-1", Algorithm::RS256);
    let jwks = testkit::jwks(&[&key]);
    let mut group = c.benchmark_group("tenants");
    for n in [100usize, 10_000] {
        let ids: Vec<String> = (0..n).map(|i| format!("t{i}")).collect();
        let policy = fixture::NEVER_STALE;
        let store = KeyStore::new(ids.iter().map(String::as_str), policy);
        for id in &ids {
            store.install(id, KeySet::from_jwks(jwks.as_bytes()).unwrap(), NOW, None);
        }
        let opts = VerifyOptions { tenant_claim: "tenant_id".into(), leeway: 30, max_token_size: 8192 };
        let plain = Verifier::new(opts.clone(), ids.iter().map(|id| tenant(id, A::ALL.to_vec())).collect(), 0);
        let cached = Verifier::new(opts, ids.iter().map(|id| tenant(id, A::ALL.to_vec())).collect(), 10_000);
        // The last tenant configured, so a scan would be as long as possible.
        let id = &ids[n - 1];
        let mut claims = claims();
        claims["tenant_id"] = id.as_str().into();
        claims["iss"] = format!("https://issuer.test/{id}").into();
        let token = key.mint(&claims);
        cached.verify(&token, &store, &no_jwe, NOW).unwrap();
        group.bench_with_input(BenchmarkId::new("full_verify/RS256", n), &(), |b, _| {
            b.iter(|| plain.verify(black_box(&token), &store, &no_jwe, NOW).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("cache_hit/RS256", n), &(), |b, _| {
            b.iter(|| cached.verify(black_box(&token), &store, &no_jwe, NOW).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, bench, cache, tenants);
criterion_main!(benches);
