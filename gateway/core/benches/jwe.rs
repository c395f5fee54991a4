//! Decryption cost per key-management algorithm (A256GCM content), and the whole
//! nested-JWT path (decrypt, then verify the inner RS256 JWS, cache off), beside the
//! raw private-key operation of the same library (one RSA-OAEP decryption of a 32-byte
//! key; one P-256 ECDH agreement) and a plain JWS verification, so the overhead of
//! parsing and checks is visible.

use aws_lc_rs::agreement::{self, PrivateKey, UnparsedPublicKey, ECDH_P256};
use criterion::{criterion_group, criterion_main, Criterion};
use gateway_core::jwe::keys::DecryptionKeySet;
use gateway_core::jwe::{decrypt, JweAllow};
use josekit::jwe::{self, JweHeader};
use josekit::jwk::{alg::ec::EcCurve, Jwk};
use serde_json::json;
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let mut rsa = Jwk::generate_rsa_key(2048).unwrap();
    rsa.set_key_id("rsa");
    rsa.set_key_use("enc");
    let mut ec = Jwk::generate_ec_key(EcCurve::P256).unwrap();
    ec.set_key_id("ec");
    ec.set_key_use("enc");
    let doc =
        json!({"keys": [serde_json::to_value(rsa.as_ref()).unwrap(), serde_json::to_value(ec.as_ref()).unwrap()]});
    let set = DecryptionKeySet::from_jwks(doc.to_string().as_bytes()).unwrap();
    let allow = JweAllow::default();
    let payload = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJwLTEwMCJ9.".repeat(8);
    let mut g = c.benchmark_group("jwe");
    for (name, kid) in [("RSA-OAEP-256", "rsa"), ("ECDH-ES", "ec"), ("ECDH-ES+A128KW", "ec"), ("ECDH-ES+A256KW", "ec")]
    {
        let mut h = JweHeader::new();
        h.set_content_encryption("A256GCM");
        h.set_key_id(kid);
        let public = if kid == "rsa" { rsa.to_public_key().unwrap() } else { ec.to_public_key().unwrap() };
        let enc: Box<dyn jwe::JweEncrypter> = match name {
            "RSA-OAEP-256" => Box::new(jwe::RSA_OAEP_256.encrypter_from_jwk(&public).unwrap()),
            "ECDH-ES" => Box::new(jwe::ECDH_ES.encrypter_from_jwk(&public).unwrap()),
            "ECDH-ES+A128KW" => Box::new(jwe::ECDH_ES_A128KW.encrypter_from_jwk(&public).unwrap()),
            _ => Box::new(jwe::ECDH_ES_A256KW.encrypter_from_jwk(&public).unwrap()),
        };
        let token = jwe::serialize_compact(payload.as_bytes(), &h, enc.as_ref()).unwrap();
        assert!(decrypt(&token, &set, &allow).is_ok());
        g.bench_function(format!("decrypt/{name}"), |b| b.iter(|| decrypt(black_box(&token), &set, &allow).unwrap()));
    }
    // Raw private-key operations of the same library.
    let oaep_key = aws_lc_rs::rsa::PrivateDecryptingKey::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let oaep = aws_lc_rs::rsa::OaepPrivateDecryptingKey::new(oaep_key.clone()).unwrap();
    let public = aws_lc_rs::rsa::OaepPublicEncryptingKey::new(oaep_key.public_key()).unwrap();
    let mut ct = vec![0u8; public.ciphertext_size()];
    let ct = public.encrypt(&aws_lc_rs::rsa::OAEP_SHA256_MGF1SHA256, &[7u8; 32], &mut ct, None).unwrap().to_vec();
    g.bench_function("raw/RSA-OAEP-256 decrypt", |b| {
        let mut out = vec![0u8; ct.len()];
        b.iter(|| oaep.decrypt(&aws_lc_rs::rsa::OAEP_SHA256_MGF1SHA256, black_box(&ct), &mut out, None).unwrap().len())
    });
    let mine = PrivateKey::generate(&ECDH_P256).unwrap();
    let peer = PrivateKey::generate(&ECDH_P256).unwrap().compute_public_key().unwrap();
    let peer = peer.as_ref().to_vec();
    g.bench_function("raw/P-256 ECDH", |b| {
        b.iter(|| {
            agreement::agree(&mine, UnparsedPublicKey::new(&ECDH_P256, black_box(&peer)), (), |z| Ok(z.len())).unwrap()
        })
    });
    nested(&mut g);
    g.finish();
}

/// Decrypt-and-verify through the `Verifier` (token cache off), beside a plain JWS.
fn nested(g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    use gateway_core::jwe::store::DecryptionStore;
    use gateway_core::keystore::KeyStore;
    use gateway_core::tenant::Tenant;
    use testkit::fixture::{self, NOW};
    use testkit::jwe::EncKey;
    let policy = fixture::NEVER_STALE;
    let rs = testkit::TestKey::load("rsa-a.pem", "rs-1", jsonwebtoken::Algorithm::RS256);
    let (rsa, ec) = (EncKey::rsa("enc-rsa"), EncKey::p256("enc-ec"));
    let tenant =
        fixture::encrypted(fixture::tenant("t1", vec![gateway_core::Algorithm::RS256]), JweAllow::default(), false);
    let tenant = Tenant { required_claims: vec![], ..tenant };
    let verifier = fixture::verifier(vec![tenant], 0);
    let keys = KeyStore::new(["t1"], policy);
    keys.install("t1", fixture::key_set(&[&rs]), NOW, None);
    let dkeys = DecryptionStore::new(["t1"], policy);
    let set = DecryptionKeySet::from_jwks(testkit::jwe::private_jwks(&[&rsa, &ec]).as_bytes()).unwrap();
    dkeys.install("t1", set, NOW, None);
    let claims = json!({"iss":"https://issuer.test/t1","aud":"api","sub":"ins-1","role":"insurer","tenant_id":"t1",
                        "iat":NOW,"exp":NOW+300,"jti":"2f1c7a5e-9b7d-4c1e-8f3a-0d6b2e4a9c11"});
    let jws = rs.mint(&claims);
    assert!(verifier.verify(&jws, &keys, &dkeys, NOW).is_ok());
    g.bench_function("verify/JWS RS256", |b| b.iter(|| verifier.verify(black_box(&jws), &keys, &dkeys, NOW).unwrap()));
    for (alg, key) in [("RSA-OAEP-256", &rsa), ("ECDH-ES", &ec), ("ECDH-ES+A128KW", &ec), ("ECDH-ES+A256KW", &ec)] {
        let token = key.wrap(alg, "A256GCM", &jws);
        assert!(verifier.verify(&token, &keys, &dkeys, NOW).is_ok());
        g.bench_function(format!("decrypt_and_verify/{alg}"), |b| {
            b.iter(|| verifier.verify(black_box(&token), &keys, &dkeys, NOW).unwrap())
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
