//! The sidecar's operations over the store: [`Kms`] and its snapshot of tenants and
//! keys, by concern: [`tenant`] (create, delete, the gateways' tenant list), [`key`]
//! (the rotation plan applied at a given time, JWKS, decryption keys, PEM import),
//! [`mint`] (token issuing), [`feed`] (revocations and the feed), [`one_time`]
//! (one-time ids and their group-committing writer) and [`ticker`] (the "key
//! rotation" task). Writes are serialised and committed durably before they are
//! visible; `now` is always passed in.

pub mod feed;
pub mod key;
pub mod mint;
pub mod one_time;
pub mod tenant;
pub mod ticker;

use crate::crypto::{self, Alg};
use crate::rotation::keyring::{self, Schedule, State, Timeline, Use};
use crate::store::{KeyRecord, Store, StoreError, TenantRecord};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use std::collections::BTreeMap;
use std::sync::{Mutex, RwLock};

/// An operation's refusal, mapped to an HTTP status by the API layer.
#[derive(Debug, thiserror::Error)]
pub enum KmsError {
    /// 404.
    #[error("unknown tenant")]
    UnknownTenant,
    /// 400, with what is wrong.
    #[error("{0}")]
    BadRequest(String),
    /// 409.
    #[error("{0}")]
    Conflict(String),
    /// 503: overloaded, try again.
    #[error("{0}")]
    Busy(String),
    /// 500 (store or crypto failure).
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for KmsError {
    fn from(e: StoreError) -> Self {
        KmsError::Internal(e.to_string())
    }
}

impl From<crypto::KeyError> for KmsError {
    fn from(e: crypto::KeyError) -> Self {
        match e {
            crypto::KeyError::Crypto(m) => KmsError::Internal(m.into()),
            other => KmsError::BadRequest(other.to_string()),
        }
    }
}

#[derive(Default)]
struct Snapshot {
    tenants: BTreeMap<String, TenantRecord>,
    keys: Vec<KeyRecord>,
}

/// The key service.
pub struct Kms {
    store: Store,
    epoch: String,
    snap: RwLock<Snapshot>,
    write: Mutex<()>,
    max_age: i64,
    keep_retired: bool,
}

/// The tenant's encryption key management (`RSA-OAEP-256` by default).
fn enc_alg(t: &TenantRecord) -> Result<Alg, KmsError> {
    match t.enc_alg.as_deref() {
        None => Ok(Alg::RsaOaep256),
        Some(a) => match Alg::parse(a) {
            Some(alg @ (Alg::RsaOaep256 | Alg::EcdhEsA256Kw)) => Ok(alg),
            _ => Err(KmsError::BadRequest(format!("enc_alg {a:?} is not RSA-OAEP-256 or ECDH-ES+A256KW"))),
        },
    }
}

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    let _ = SystemRandom::new().fill(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Kms {
    /// Loads the store's contents.
    pub fn new(store: Store, max_age: i64, keep_retired: bool) -> Result<Kms, KmsError> {
        // The feed's numbering is only meaningful within one store and one run of it:
        // a gateway that sees another epoch reads the whole feed again.
        let epoch = format!("{}.{}", store.id(), random_hex(8));
        let kms = Kms { store, epoch, snap: RwLock::default(), write: Mutex::new(()), max_age, keep_retired };
        kms.reload()?;
        Ok(kms)
    }

    fn reload(&self) -> Result<(), KmsError> {
        let tenants = self.store.tenants()?.into_iter().map(|t| (t.id.clone(), t)).collect();
        let keys = self.store.keys()?;
        *self.snap.write().unwrap_or_else(|p| p.into_inner()) = Snapshot { tenants, keys };
        Ok(())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Snapshot> {
        self.snap.read().unwrap_or_else(|p| p.into_inner())
    }

    /// JWKS `max-age`, kept below the publish-ahead time so verifiers always see a
    /// new signing key before it signs.
    pub fn max_age(&self) -> i64 {
        self.max_age
    }

    /// The rotation schedule of a tenant.
    pub fn schedule(&self, t: &TenantRecord) -> Schedule {
        Schedule {
            interval: t.interval,
            publish_ahead: (2 * self.max_age).min(t.interval / 2).max(self.max_age),
            max_age: self.max_age,
            max_token_ttl: t.max_token_ttl,
            clock_skew: t.clock_skew,
        }
    }

    /// Tenant ids.
    pub fn tenants(&self) -> Vec<TenantRecord> {
        self.read().tenants.values().cloned().collect()
    }

    fn timelines(&self, tenant: &str) -> Vec<Timeline> {
        self.read().keys.iter().filter(|k| k.tenant == tenant).map(|k| k.timeline.clone()).collect()
    }

    fn current_key(&self, tenant: &str, key_use: Use, now: i64) -> Option<KeyRecord> {
        self.read()
            .keys
            .iter()
            .filter(|k| k.tenant == tenant && k.timeline.key_use == key_use && k.sealed.is_some())
            .filter(|k| keyring::state(&k.timeline, now) == State::Current)
            .max_by_key(|k| k.timeline.activates_at)
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::mint::MintRequest;
    use super::*;
    use crate::crypto::Sealer;
    use crate::default;
    use crate::rotation::Change;
    use crate::store::Revocation;
    use serde_json::json;

    fn kms(dir: &std::path::Path) -> Kms {
        let store = match Store::open(dir, Sealer::new(&[7; 32]).unwrap()) {
            Ok(s) => s,
            Err(StoreError::Missing(_)) => Store::create(dir, Sealer::new(&[7; 32]).unwrap()).unwrap(),
            Err(e) => panic!("{e}"),
        };
        Kms::new(store, 60, false).unwrap()
    }

    fn tenant(id: &str) -> TenantRecord {
        TenantRecord {
            id: id.into(),
            alg: "ES256".into(),
            issuer: format!("https://kms.test/{id}"),
            audience: "api".into(),
            interval: 86_400,
            max_token_ttl: 900,
            clock_skew: 60,
            enc_alg: Some("ECDH-ES+A256KW".into()),
            rsa_bits: None,
        }
    }

    fn spec(id: &str) -> crate::tenant::TenantSpec {
        crate::tenant::TenantSpec::validate(crate::tenant::TenantInput::from(&tenant(id))).unwrap()
    }

    fn revoked(kms: &Kms, kid: &str) -> bool {
        kms.store.keys().unwrap().iter().find(|k| k.timeline.kid == kid).unwrap().timeline.revoked
    }

    /// The key removal of an emergency rotation and its feed event are one redb
    /// transaction: a failure injected between the two writes leaves neither, and a
    /// success leaves both (read back from disk after reopening).
    #[test]
    fn emergency_rotation_and_tenant_deletion_write_their_feed_events_in_the_same_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let kms = kms(dir.path());
        kms.ensure_tenant(spec("t"), 1_000).unwrap();
        kms.ensure_tenant(spec("gone"), 1_000).unwrap();
        let current = kms.current_key("t", Use::Sig, 1_000).unwrap().timeline.kid;

        kms.store.inject_failure_before_events(true);
        assert!(kms.rotate("t", Use::Sig, true, 1_001).is_err());
        assert!(!revoked(&kms, &current), "the removal was not committed without its event");
        assert_eq!(kms.last_revocation().unwrap(), 0, "nor the event");
        assert!(kms.delete_tenant("gone", 1_001).is_err());
        assert!(kms.tenants().iter().any(|t| t.id == "gone"), "the deletion was not committed without its event");
        assert!(kms.store.keys().unwrap().iter().any(|k| k.tenant == "gone"));
        assert_eq!(kms.last_revocation().unwrap(), 0);

        kms.store.inject_failure_before_events(false);
        let (changes, events) = kms.rotate("t", Use::Sig, true, 1_002).unwrap();
        assert!(changes.contains(&Change::Revoke { kid: current.clone() }));
        assert_eq!(events.len(), 1);
        assert_eq!((events[0].seq, events[0].kid.as_deref()), (1, Some(current.as_str())));
        let deleted = kms.delete_tenant("gone", 1_003).unwrap().unwrap();
        assert_eq!((deleted.seq, deleted.before, deleted.deleted), (2, Some(1_003), true));
        assert_eq!(kms.delete_tenant("gone", 1_004).unwrap(), None, "already gone");
        drop(kms);

        let kms = self::kms(dir.path());
        assert!(revoked(&kms, &current), "durable");
        assert!(!kms.store.keys().unwrap().iter().any(|k| k.tenant == "gone"));
        let page = kms.feed_page(0, 1_005).unwrap();
        assert_eq!(page.events.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(page.events[0].kid.as_deref(), Some(current.as_str()));
        assert!(page.events[1].deleted && page.events[1].tenant == "gone");
    }

    #[test]
    fn feed_pages_carry_the_epoch_and_skip_expired_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let kms = kms(dir.path());
        kms.ensure_tenant(spec("t"), 1_000).unwrap();
        let ev = |jti: &str, exp| Revocation {
            tenant: "t".into(),
            jti: Some(jti.into()),
            exp: Some(exp),
            ..Default::default()
        };
        kms.revoke(vec![ev("old", 1_100), ev("live", 5_000)]).unwrap();
        let page = kms.feed_page(0, 2_000).unwrap();
        assert_eq!((page.cursor, page.last), (2, 2));
        assert_eq!(page.events.len(), 1, "the expired token's entry is left out");
        assert_eq!(page.events[0].jti.as_deref(), Some("live"));
        assert!(page.epoch.starts_with(kms.store.id()), "{}", page.epoch);
        let after = kms.feed_page(5, 2_000).unwrap();
        assert_eq!(
            (after.cursor, after.last, after.events.len()),
            (5, 2, 0),
            "a reader ahead of the feed sees last < cursor"
        );
        let epoch = page.epoch.clone();
        drop(kms);
        let again = self::kms(dir.path());
        assert_ne!(again.feed_page(0, 2_000).unwrap().epoch, epoch, "every run has its own epoch");
    }

    #[test]
    fn watermarks_must_be_seconds_near_now() {
        assert!(Kms::check_watermark(1_000, 1_000).is_ok());
        assert!(Kms::check_watermark(1_060, 1_000).is_ok(), "clock skew");
        assert!(Kms::check_watermark(0, 1_000).is_ok());
        let ms = Kms::check_watermark(1_000_000, 1_000).unwrap_err().to_string();
        assert!(ms.starts_with("before:") && ms.contains("milliseconds"), "{ms}");
        assert!(Kms::check_watermark(-1, 1_000).unwrap_err().to_string().starts_with("before:"));
    }

    #[test]
    fn one_time_ids_are_held_past_expiry_for_clock_skew() {
        assert_eq!(Kms::one_time_until(1_000, 900), 1_000 + default::ONE_TIME_SKEW, "until, plus the skew allowance");
        assert_eq!(
            Kms::one_time_until(900, 1_000),
            1_000 + default::ONE_TIME_SKEW,
            "already past by our clock: from now"
        );
        assert_eq!(Kms::one_time_until(i64::MAX, 0), i64::MAX, "no overflow");
    }

    /// A tenant stored before ranges were checked (here `max_token_ttl` i64::MAX)
    /// still never yields a wrapped, negative `exp`: the mint is a 400.
    #[test]
    fn mint_exp_never_overflows_even_for_an_unvalidated_stored_tenant() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create(dir.path(), crate::crypto::Sealer::new(&[7u8; 32]).unwrap()).unwrap();
        let legacy = TenantRecord {
            id: "legacy".into(),
            alg: "ES256".into(),
            issuer: "i".into(),
            audience: "a".into(),
            interval: 86_400,
            max_token_ttl: i64::MAX,
            clock_skew: 60,
            enc_alg: None,
            rsa_bits: None,
        };
        store.commit(&[legacy], &[], &[], &[], Vec::new()).unwrap();
        let kms = Kms::new(store, 60, false).unwrap();
        let req = |ttl: i64| serde_json::from_value::<MintRequest>(json!({"sub": "u", "ttl_secs": ttl})).unwrap();
        match kms.mint("legacy", req(i64::MAX), 1_700_000_000) {
            Err(KmsError::BadRequest(m)) => assert!(m.starts_with("ttl_secs: "), "{m}"),
            other => panic!("expected a 400, got {other:?}"),
        }
    }
}
