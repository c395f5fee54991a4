//! Golden nested-JWE vectors: tokens made once by josekit (an independent
//! implementation) with the fixed TEST keys, stored in `tests/vectors/nested-jwe.json`
//! with the answer each must get at a fixed clock. The file changes only with review;
//! `cargo test -p gateway-core --test golden -- --ignored` rewrites it.

use gateway_core::error::Denial;
use gateway_core::jwe::keys::DecryptionKeySet;
use gateway_core::jwe::store::DecryptionStore;
use gateway_core::jwe::JweAllow;
use gateway_core::keystore::{KeyStore, RefreshPolicy};
use gateway_core::Algorithm;
use serde_json::{json, Value};
use testkit::fixture::{self, NOW};
use testkit::jwe::{edit_header, tamper, EncKey, ALGS, ENCS};
use testkit::TestKey;

const FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/nested-jwe.json");

fn enc_keys() -> (EncKey, EncKey) {
    let load = |f: &str| {
        let doc: Value = serde_json::from_slice(&testkit::key_file(f)).unwrap();
        EncKey::from_jwk(&doc["keys"][0])
    };
    (load("enc-rsa.jwks"), load("enc-ec.jwks"))
}

fn signer() -> TestKey {
    TestKey::load("rsa-a.pem", "rs-1", jsonwebtoken::Algorithm::RS256)
}

fn claims(exp: i64) -> Value {
    json!({"iss": "https://issuer.test/t1", "aud": "api", "sub": "ins-1", "role": "insurer", "tenant_id": "t1",
           "iat": NOW - 60, "exp": exp, "jti": "golden-1"})
}

#[test]
#[ignore = "rewrites the golden file; run on purpose and review the diff"]
fn regenerate() {
    let (rsa, ec) = enc_keys();
    let inner = signer().mint(&claims(NOW + 3600));
    let mut cases = Vec::new();
    for alg in ALGS {
        for enc in ENCS {
            let key = if alg == "RSA-OAEP-256" { &rsa } else { &ec };
            cases.push(json!({"name": format!("{alg} {enc}"), "token": key.wrap(alg, enc, &inner), "expect": "ok"}));
        }
    }
    let good = ec.wrap("ECDH-ES+A256KW", "A256GCM", &inner);
    let set = |k: &'static str, v: Value| edit_header(&good, move |h| drop(h.insert(k.into(), v)));
    let hostile = [
        ("RSA1_5", set("alg", json!("RSA1_5")), "algorithm_not_allowed"),
        ("PBES2", set("alg", json!("PBES2-HS256+A128KW")), "algorithm_not_allowed"),
        ("p2c", set("p2c", json!(100_000_000)), "header_unsupported"),
        ("dir", set("alg", json!("dir")), "algorithm_not_allowed"),
        ("zip", set("zip", json!("DEF")), "header_unsupported"),
        ("crit", set("crit", json!(["exp"])), "header_unsupported"),
        (
            "epk off curve",
            set("epk", json!({"kty":"EC","crv":"P-256","x":testkit::b64(&[1; 32]),"y":testkit::b64(&[2; 32])})),
            "decryption_failed",
        ),
        ("tampered encrypted key", tamper(&good, 1), "decryption_failed"),
        ("tampered iv", tamper(&good, 2), "decryption_failed"),
        ("tampered ciphertext", tamper(&good, 3), "decryption_failed"),
        ("tampered tag", tamper(&good, 4), "decryption_failed"),
        ("truncated tag", format!("{}.AAAA", good.rsplit_once('.').unwrap().0), "token_malformed"),
        ("unknown kid", EncKey::p256("nobody").wrap("ECDH-ES", "A256GCM", &inner), "key_unknown"),
        (
            "bare claims",
            ec.encrypt("ECDH-ES", "A256GCM", None, claims(NOW + 3600).to_string().as_bytes()),
            "nested_jws_required",
        ),
        ("expired inner", ec.wrap("ECDH-ES", "A256GCM", &signer().mint(&claims(NOW - 3600))), "token_expired"),
    ];
    for (name, token, expect) in hostile {
        cases.push(json!({"name": name, "token": token, "expect": expect}));
    }
    let text = serde_json::to_string_pretty(&json!({"now": NOW, "cases": cases})).unwrap();
    std::fs::write(FILE, text + "\n").unwrap();
}

#[test]
fn golden_vectors_get_their_recorded_answer() {
    let (rsa, ec) = enc_keys();
    let tenant = fixture::encrypted(fixture::tenant("t1", vec![Algorithm::RS256]), JweAllow::default(), false);
    let verifier = fixture::verifier(vec![tenant], 0);
    let policy =
        RefreshPolicy { floor: 30, ceiling: 3600, default_max_age: 300, unknown_kid_cooldown: 10, max_stale: 86400 };
    let keys = KeyStore::new(["t1"], policy);
    keys.install("t1", fixture::key_set(&[&signer()]), NOW, None);
    let dkeys = DecryptionStore::new(["t1"], policy);
    let set = DecryptionKeySet::from_jwks(testkit::jwe::private_jwks(&[&rsa, &ec]).as_bytes()).unwrap();
    dkeys.install("t1", set, NOW, None);

    let doc: Value = serde_json::from_str(&std::fs::read_to_string(FILE).unwrap()).unwrap();
    let now = doc["now"].as_i64().unwrap();
    let cases = doc["cases"].as_array().unwrap();
    assert!(cases.len() >= 30, "the golden set is all there");
    for case in cases {
        let got = match verifier.verify(case["token"].as_str().unwrap(), &keys, &dkeys, now) {
            Ok(t) => {
                assert_eq!((t.kind(), t.tenant().id.as_str()), ("JWE", "t1"));
                "ok"
            }
            Err(r) => Denial::from(r.error).reason(),
        };
        assert_eq!(got, case["expect"].as_str().unwrap(), "{}", case["name"]);
    }
}
