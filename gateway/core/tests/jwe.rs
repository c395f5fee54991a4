//! JWE decryption against an independent implementation: josekit produces tokens
//! for every supported (alg, enc) pair, and hostile variants of them must be refused
//! before or during decryption with the exact error, never a panic.

use gateway_core::b64;
use gateway_core::jwe::keys::DecryptionKeySet;
use gateway_core::jwe::{decrypt, peek_header, JweAllow, JweError};
use josekit::jwe::{self, JweHeader};
use josekit::jwk::{alg::ec::EcCurve, Jwk};
use serde_json::{json, Value};

const ALGS: [&str; 4] = ["RSA-OAEP-256", "ECDH-ES", "ECDH-ES+A128KW", "ECDH-ES+A256KW"];
const ENCS: [&str; 4] = ["A128GCM", "A256GCM", "A128CBC-HS256", "A256CBC-HS512"];

struct Keys {
    rsa: Jwk,
    ec: Jwk,
    set: DecryptionKeySet,
}

fn keys() -> Keys {
    let mut rsa = Jwk::generate_rsa_key(2048).unwrap();
    rsa.set_key_id("rsa-enc-1");
    rsa.set_key_use("enc");
    let mut ec = Jwk::generate_ec_key(EcCurve::P256).unwrap();
    ec.set_key_id("ec-enc-1");
    ec.set_key_use("enc");
    let doc =
        json!({"keys": [serde_json::to_value(rsa.as_ref()).unwrap(), serde_json::to_value(ec.as_ref()).unwrap()]});
    let set = DecryptionKeySet::from_jwks(doc.to_string().as_bytes()).unwrap();
    assert_eq!(set.len(), 2, "{:?}", set.skipped);
    Keys { rsa, ec, set }
}

fn encrypt(k: &Keys, alg: &str, enc: &str, payload: &[u8]) -> String {
    let mut header = JweHeader::new();
    header.set_content_encryption(enc);
    header.set_content_type("JWT");
    let public_rsa = k.rsa.to_public_key().unwrap();
    let public_ec = k.ec.to_public_key().unwrap();
    let encrypter: Box<dyn jwe::JweEncrypter> = match alg {
        "RSA-OAEP-256" => {
            header.set_key_id("rsa-enc-1");
            Box::new(jwe::RSA_OAEP_256.encrypter_from_jwk(&public_rsa).unwrap())
        }
        "ECDH-ES" => {
            header.set_key_id("ec-enc-1");
            Box::new(jwe::ECDH_ES.encrypter_from_jwk(&public_ec).unwrap())
        }
        "ECDH-ES+A128KW" => {
            header.set_key_id("ec-enc-1");
            Box::new(jwe::ECDH_ES_A128KW.encrypter_from_jwk(&public_ec).unwrap())
        }
        _ => {
            header.set_key_id("ec-enc-1");
            Box::new(jwe::ECDH_ES_A256KW.encrypter_from_jwk(&public_ec).unwrap())
        }
    };
    jwe::serialize_compact(payload, &header, encrypter.as_ref()).unwrap()
}

fn parts(t: &str) -> Vec<String> {
    t.split('.').map(str::to_owned).collect()
}

fn with_header(t: &str, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> String {
    let mut p = parts(t);
    let mut h: Value = serde_json::from_slice(&b64::decode(p[0].as_bytes()).unwrap()).unwrap();
    edit(h.as_object_mut().unwrap());
    p[0] = b64::encode(h.to_string());
    p.join(".")
}

#[test]
fn every_supported_pair_decrypts() {
    let k = keys();
    let allow = JweAllow::default();
    for alg in ALGS {
        for enc in ENCS {
            let payload = format!("inner.jws.for-{alg}-{enc}");
            let t = encrypt(&k, alg, enc, payload.as_bytes());
            let d = decrypt(&t, &k.set, &allow).unwrap_or_else(|e| panic!("{alg}/{enc}: {e}"));
            assert_eq!(d.payload.as_slice(), payload.as_bytes(), "{alg}/{enc}");
            assert_eq!(d.cty.as_deref(), Some("JWT"));
        }
    }
}

#[test]
fn hostile_tokens_are_refused_with_the_exact_error() {
    let k = keys();
    let allow = JweAllow::default();
    let gcm = encrypt(&k, "RSA-OAEP-256", "A256GCM", b"payload");
    let ecdh = encrypt(&k, "ECDH-ES+A256KW", "A128GCM", b"payload");
    let cbc = encrypt(&k, "ECDH-ES", "A128CBC-HS256", b"payload");
    let set = |t: &str, i: usize, v: Vec<u8>| {
        let mut p = parts(t);
        p[i] = b64::encode(v);
        p.join(".")
    };
    let flip = |t: &str, i: usize| {
        let mut v = b64::decode(parts(t)[i].as_bytes()).unwrap();
        v[0] ^= 1;
        set(t, i, v)
    };
    let other = keys(); // same kids, different keys
    let cases: Vec<(&str, String, JweError)> = vec![
        (
            "RSA1_5",
            with_header(&gcm, |h| {
                h.insert("alg".into(), json!("RSA1_5"));
            }),
            JweError::AlgorithmNotAllowed("alg"),
        ),
        (
            "PBES2 huge p2c",
            with_header(&gcm, |h| {
                h.insert("alg".into(), json!("PBES2-HS256+A128KW"));
                h.insert("p2c".into(), json!(10_000_000));
                h.insert("p2s".into(), json!("AAAA"));
            }),
            JweError::HeaderUnsupported("p2s"),
        ),
        (
            "PBES2",
            with_header(&gcm, |h| {
                h.insert("alg".into(), json!("PBES2-HS256+A128KW"));
            }),
            JweError::AlgorithmNotAllowed("alg"),
        ),
        (
            "dir",
            with_header(&gcm, |h| {
                h.insert("alg".into(), json!("dir"));
            }),
            JweError::AlgorithmNotAllowed("alg"),
        ),
        (
            "A128KW",
            with_header(&gcm, |h| {
                h.insert("alg".into(), json!("A128KW"));
            }),
            JweError::AlgorithmNotAllowed("alg"),
        ),
        (
            "bad enc",
            with_header(&gcm, |h| {
                h.insert("enc".into(), json!("A192GCM"));
            }),
            JweError::AlgorithmNotAllowed("enc"),
        ),
        (
            "zip",
            with_header(&gcm, |h| {
                h.insert("zip".into(), json!("DEF"));
            }),
            JweError::HeaderUnsupported("zip"),
        ),
        (
            "crit",
            with_header(&gcm, |h| {
                h.insert("crit".into(), json!(["exp"]));
            }),
            JweError::HeaderUnsupported("crit"),
        ),
        (
            "jku",
            with_header(&gcm, |h| {
                h.insert("jku".into(), json!("http://127.0.0.1:1/"));
            }),
            JweError::HeaderUnsupported("jku"),
        ),
        (
            "jwk",
            with_header(&gcm, |h| {
                h.insert("jwk".into(), json!({"kty":"EC"}));
            }),
            JweError::HeaderUnsupported("jwk"),
        ),
        (
            "no kid",
            with_header(&gcm, |h| {
                h.remove("kid");
            }),
            JweError::Malformed("kid"),
        ),
        (
            "off-curve epk",
            with_header(&ecdh, |h| {
                h["epk"]["y"] = json!(b64::encode([1u8; 32]));
            }),
            JweError::DecryptionFailed,
        ),
        (
            "P-384 epk",
            with_header(&ecdh, |h| {
                h["epk"]["crv"] = json!("P-384");
            }),
            JweError::AlgorithmNotAllowed("epk curve"),
        ),
        ("empty iv", set(&gcm, 2, vec![]), JweError::Malformed("iv length")),
        ("1-byte iv", set(&cbc, 2, vec![1]), JweError::Malformed("iv length")),
        ("8-byte iv", set(&gcm, 2, vec![0; 8]), JweError::Malformed("iv length")),
        ("truncated tag", set(&gcm, 4, vec![0; 4]), JweError::Malformed("tag length")),
        ("tampered ciphertext", flip(&gcm, 3), JweError::DecryptionFailed),
        ("tampered tag", flip(&gcm, 4), JweError::DecryptionFailed),
        ("tampered iv", flip(&gcm, 2), JweError::DecryptionFailed),
        ("tampered key", flip(&gcm, 1), JweError::DecryptionFailed),
        ("tampered cbc tag", flip(&cbc, 4), JweError::DecryptionFailed),
        ("tampered wrapped key", flip(&ecdh, 1), JweError::DecryptionFailed),
        (
            "tampered header",
            with_header(&gcm, |h| {
                h.insert("cty".into(), json!("jwt"));
            }),
            JweError::DecryptionFailed,
        ),
        ("wrong key length", set(&ecdh, 1, vec![0; 40]), JweError::Malformed("encrypted key length")),
        (
            "unknown kid",
            with_header(&gcm, |h| {
                h.insert("kid".into(), json!("nope"));
            }),
            JweError::KeyUnknown,
        ),
        ("4 segments", parts(&gcm)[..4].join("."), JweError::Malformed("segment count")),
        ("6 segments", format!("{gcm}.x"), JweError::Malformed("segment count")),
        ("padding", gcm.replacen('.', "=.", 1), JweError::Malformed("header")),
        (
            "dup member",
            {
                let mut p = parts(&gcm);
                p[0] = b64::encode(r#"{"alg":"RSA-OAEP-256","alg":"dir","enc":"A256GCM","kid":"rsa-enc-1"}"#);
                p.join(".")
            },
            JweError::Malformed("header json"),
        ),
    ];
    for (name, token, want) in cases {
        assert_eq!(decrypt(&token, &k.set, &allow).unwrap_err(), want, "{name}");
    }
    // Same kid, another tenant's key: opaque failure.
    assert_eq!(decrypt(&gcm, &other.set, &allow).unwrap_err(), JweError::DecryptionFailed);
    assert_eq!(decrypt(&ecdh, &other.set, &allow).unwrap_err(), JweError::DecryptionFailed);
    // Per-tenant allowlists.
    let only_rsa_gcm = JweAllow {
        key_management: vec![gateway_core::jwe::KeyManagement::RsaOaep256],
        content: vec![gateway_core::jwe::ContentEncryption::A256Gcm],
    };
    assert!(decrypt(&gcm, &k.set, &only_rsa_gcm).is_ok());
    assert_eq!(decrypt(&ecdh, &k.set, &only_rsa_gcm).unwrap_err(), JweError::AlgorithmNotAllowed("alg"));
    assert_eq!(peek_header(&ecdh, &allow).unwrap().kid, "ec-enc-1");
}
