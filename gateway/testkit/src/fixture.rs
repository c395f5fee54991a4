//! Tenant and key fixtures shared by gateway-core's tests and benchmarks: the fixed
//! clock, key refresh policies, the standard test tenant (issuer
//! `https://issuer.test/<id>`, audience `api`, `sub` required, keys from nowhere), a
//! verifier over such tenants and key sets of the fixed test keys.
//!
//! ```ignore
//! let verifier = fixture::verifier(vec![fixture::tenant("t1", vec![Algorithm::ES256])], 0);
//! let store = KeyStore::new(["t1"], fixture::POLICY);
//! store.install("t1", fixture::key_set(&[&key]), fixture::NOW, None);
//! ```

use crate::TestKey;
use gateway_core::jwe::store::DecryptionStore;
use gateway_core::jwe::JweAllow;
use gateway_core::keystore::RefreshPolicy;
use gateway_core::tenant::{DecryptionSource, Encryption, KeySource, Tenant};
use gateway_core::verify::{Verifier, VerifyOptions};
use gateway_core::{Algorithm, KeySet};

/// The head of a test config that the core reads but never connects to: listener
/// addresses and a JWKS URL template (nothing listens there). Tenants, upstreams and
/// routes follow it.
pub const CONFIG_HEAD: &str =
    "listen: 127.0.0.1:1\nadmin_listen: 127.0.0.1:2\nkeys: { url_template: \"http://127.0.0.1:3/jwk/{tenant}\" }\n";

/// The fixed clock of the core's tests (seconds since the epoch).
pub const NOW: i64 = 1_800_000_000;

/// Key refresh bounds as the config defaults set them, keys stale after a day.
pub const POLICY: RefreshPolicy =
    RefreshPolicy { floor: 30, ceiling: 3600, default_max_age: 300, unknown_kid_cooldown: 10, max_stale: 86400 };

/// As [`POLICY`], with keys that never go stale (benchmarks run for a while).
pub const NEVER_STALE: RefreshPolicy = RefreshPolicy { max_stale: i64::MAX / 4, ..POLICY };

/// The standard test tenant `id`: issuer `https://issuer.test/<id>`, audience `api`,
/// `sub` required, these algorithms, no JWE.
pub fn tenant(id: &str, algorithms: Vec<Algorithm>) -> Tenant {
    Tenant {
        id: id.into(),
        issuer: format!("https://issuer.test/{id}"),
        audiences: vec!["api".into()],
        algorithms,
        required: true,
        required_claims: vec!["sub".into()],
        keys: KeySource::Url("http://unused".into()),
        encryption: None,
    }
}

/// `tenant` accepting nested JWE under `allow` (bare claims too with `bare`).
pub fn encrypted(tenant: Tenant, allow: JweAllow, bare: bool) -> Tenant {
    let encryption = Encryption { allow, allow_bare_claims: bare, keys: DecryptionSource::File("unused".into()) };
    Tenant { encryption: Some(encryption), ..tenant }
}

/// A verifier of `tenants` (tenant claim `tenant_id`, 30 s leeway, 8 KiB tokens) with
/// a verified-token cache of `cache` entries.
pub fn verifier(tenants: Vec<Tenant>, cache: usize) -> Verifier {
    let options = VerifyOptions { tenant_claim: "tenant_id".into(), leeway: 30, max_token_size: 8192 };
    Verifier::new(options, tenants, cache)
}

/// A decryption store no tenant uses (no tenant accepts JWE).
pub fn no_decryption() -> DecryptionStore {
    DecryptionStore::new(
        std::iter::empty(),
        RefreshPolicy { floor: 1, ceiling: 1, default_max_age: 1, unknown_kid_cooldown: 1, max_stale: 1 },
    )
}

/// The key set of these test keys' public JWKs.
pub fn key_set(keys: &[&TestKey]) -> KeySet {
    KeySet::from_jwks(crate::jwks(keys).as_bytes()).expect("test keys make a key set")
}
