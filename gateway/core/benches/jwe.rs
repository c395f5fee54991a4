//! Decryption cost per key-management algorithm (A256GCM content), beside the raw
//! private-key operation of the same library (one RSA-OAEP decryption of a 32-byte
//! key; one P-256 ECDH agreement), so the overhead of parsing and checks is visible.

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
    for (name, kid) in [("RSA-OAEP-256", "rsa"), ("ECDH-ES", "ec"), ("ECDH-ES+A256KW", "ec")] {
        let mut h = JweHeader::new();
        h.set_content_encryption("A256GCM");
        h.set_key_id(kid);
        let public = if kid == "rsa" { rsa.to_public_key().unwrap() } else { ec.to_public_key().unwrap() };
        let enc: Box<dyn jwe::JweEncrypter> = match name {
            "RSA-OAEP-256" => Box::new(jwe::RSA_OAEP_256.encrypter_from_jwk(&public).unwrap()),
            "ECDH-ES" => Box::new(jwe::ECDH_ES.encrypter_from_jwk(&public).unwrap()),
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
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
