//! The sidecar's operations over the store: tenants, the rotation plan applied at a
//! given time, JWKS documents, token issuing, the gateway's decryption keys and PEM
//! import. Writes are serialised and committed durably before they are visible.

use crate::crypto::{self, Alg, Imported};
use crate::default;
use crate::rotation::keyring::{self, Change, Schedule, State, Timeline, Use};
use crate::store::{Claim, KeyRecord, Revocation, Store, StoreError, TenantRecord};
use crate::tenant::TenantSpec;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use medgate_channel::{FeedPage, ListedTenant, TenantList};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::{Mutex, RwLock};

pub mod one_time;
pub mod ticker;

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

/// A token request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MintRequest {
    /// `sub`.
    pub sub: String,
    /// Role(s).
    #[serde(default)]
    pub role: Option<Value>,
    /// `aud` (default: the tenant's).
    #[serde(default)]
    pub aud: Option<String>,
    /// Lifetime in seconds: 1 to the tenant's maximum (default 15 minutes or that maximum).
    #[serde(default)]
    pub ttl_secs: Option<i64>,
    /// Extra claims (registered claims are refused here).
    #[serde(default)]
    pub claims: Option<Map<String, Value>>,
    /// Wrap in a JWE to the tenant's encryption key (nested JWT).
    #[serde(default)]
    pub encrypt: bool,
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

    /// Every tenant as gateways discover it, with a version that changes whenever
    /// the list does (a digest of it).
    pub fn tenant_list(&self) -> TenantList {
        let tenants: Vec<ListedTenant> = self
            .read()
            .tenants
            .values()
            .map(|t| ListedTenant {
                id: t.id.clone(),
                issuer: t.issuer.clone(),
                audiences: vec![t.audience.clone()],
                algorithms: vec![t.alg.clone()],
                // Every tenant has encryption keys; the alg of those it holds.
                enc_alg: enc_alg(t).ok().map(|a| a.as_str().to_owned()),
            })
            .collect();
        let body = serde_json::to_vec(&tenants).unwrap_or_default();
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &body);
        let version = digest.as_ref()[..16].iter().map(|b| format!("{b:02x}")).collect();
        TenantList { version, tenants }
    }

    /// Creates a tenant (and its first keys) unless it exists; true if created. Only
    /// a validated spec is stored, exactly as validated.
    pub fn ensure_tenant(&self, spec: TenantSpec, now: i64) -> Result<bool, KmsError> {
        let t = spec.record();
        let _w = self.write.lock().unwrap_or_else(|p| p.into_inner());
        if self.read().tenants.contains_key(&t.id) {
            return Ok(false);
        }
        let changes = keyring::plan(&[], &self.schedule(t), now);
        self.apply_locked(t, changes, now, true)?;
        Ok(true)
    }

    /// Removes a tenant and all its keys and, in the same transaction, puts a
    /// tenant-wide revocation (`deleted`, every token issued up to `now`) on the feed;
    /// returns that event, or `None` if the tenant is unknown.
    pub fn delete_tenant(&self, id: &str, now: i64) -> Result<Option<Revocation>, KmsError> {
        let _w = self.write.lock().unwrap_or_else(|p| p.into_inner());
        if !self.read().tenants.contains_key(id) {
            return Ok(None);
        }
        let kids: Vec<String> =
            self.read().keys.iter().filter(|k| k.tenant == id).map(|k| k.timeline.kid.clone()).collect();
        let event =
            Revocation { tenant: id.to_owned(), before: Some(now), deleted: true, at: now, ..Default::default() };
        let mut events = self.store.commit(&[], &[], &kids, &[id.to_owned()], vec![event])?;
        self.reload()?;
        Ok(events.pop())
    }

    fn timelines(&self, tenant: &str) -> Vec<Timeline> {
        self.read().keys.iter().filter(|k| k.tenant == tenant).map(|k| k.timeline.clone()).collect()
    }

    /// Applies the scheduled plan to every tenant; returns the changes made.
    pub fn tick(&self, now: i64) -> Result<Vec<(String, Change)>, KmsError> {
        let _w = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let mut done = Vec::new();
        for t in self.tenants() {
            let changes = keyring::plan(&self.timelines(&t.id), &self.schedule(&t), now);
            if !changes.is_empty() {
                let _ = self.apply_locked(&t, changes.clone(), now, false)?;
                done.extend(changes.into_iter().map(|c| (t.id.clone(), c)));
            }
        }
        Ok(done)
    }

    /// Manual rotation; returns the changes made and the feed events of the keys an
    /// emergency rotation removed (committed in the same transaction as the removal).
    pub fn rotate(
        &self,
        tenant: &str,
        key_use: Use,
        emergency: bool,
        now: i64,
    ) -> Result<(Vec<Change>, Vec<Revocation>), KmsError> {
        let _w = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let t = self.read().tenants.get(tenant).cloned().ok_or(KmsError::UnknownTenant)?;
        let changes = keyring::rotate_now(&self.timelines(tenant), &self.schedule(&t), key_use, emergency, now);
        let events = self.apply_locked(&t, changes.clone(), now, false)?;
        Ok((changes, events))
    }

    fn new_key(&self, t: &TenantRecord, key_use: Use, activates_at: i64, now: i64) -> Result<KeyRecord, KmsError> {
        let alg = match key_use {
            Use::Sig => Alg::parse(&t.alg).ok_or_else(|| KmsError::Internal("tenant alg".into()))?,
            Use::Enc => enc_alg(t)?,
        };
        let kid = format!("{}-{}-{}", t.id, key_use.as_str(), random_hex(8));
        let pkcs8 = crypto::generate(alg, t.rsa_bits.unwrap_or(default::RSA_BITS))?;
        let public_jwk = crypto::public_jwk(alg, &pkcs8, &kid, key_use.as_str())?;
        let sealed = Some(self.store.seal(&kid, &pkcs8)?);
        Ok(KeyRecord {
            tenant: t.id.clone(),
            alg: alg.as_str().into(),
            timeline: Timeline::new(kid, key_use, now, activates_at),
            public_jwk,
            sealed,
        })
    }

    /// Applies key changes in one transaction; a removed key (`Revoke`) is put on the
    /// revocation feed in that same transaction, so gateways refuse its tokens at once
    /// and no crash can commit the removal without its event. Returns the events.
    fn apply_locked(
        &self,
        t: &TenantRecord,
        changes: Vec<Change>,
        now: i64,
        new_tenant: bool,
    ) -> Result<Vec<Revocation>, KmsError> {
        let existing: Vec<KeyRecord> = self.read().keys.iter().filter(|k| k.tenant == t.id).cloned().collect();
        let find = |kid: &str| existing.iter().find(|k| k.timeline.kid == kid).cloned();
        let mut upserts: Vec<KeyRecord> = Vec::new();
        let mut deletes = Vec::new();
        let mut events = Vec::new();
        for c in changes {
            match c {
                Change::Create { key_use, activates_at } => {
                    upserts.push(self.new_key(t, key_use, activates_at, now)?)
                }
                Change::Retire { kid, retires_at, expires_at } => {
                    if let Some(mut k) = find(&kid) {
                        k.timeline.retires_at = Some(retires_at);
                        k.timeline.expires_at = Some(expires_at);
                        upserts.push(k);
                    }
                }
                Change::Revoke { kid } => {
                    events.push(Revocation {
                        tenant: t.id.clone(),
                        kid: Some(kid.clone()),
                        at: now,
                        ..Default::default()
                    });
                    if let Some(mut k) = find(&kid) {
                        k.timeline.revoked = true;
                        if !self.keep_retired {
                            k.sealed = None;
                        }
                        upserts.push(k);
                    }
                }
                Change::Destroy { kid } => {
                    if self.keep_retired {
                        if let Some(mut k) = find(&kid) {
                            k.timeline.revoked = true;
                            upserts.push(k);
                        }
                    } else {
                        deletes.push(kid);
                    }
                }
            }
        }
        let tenants: Vec<TenantRecord> = if new_tenant { vec![t.clone()] } else { Vec::new() };
        let events = self.store.commit(&tenants, &upserts, &deletes, &[], events)?;
        self.reload()?;
        Ok(events)
    }

    /// The public JWKS of one tenant, or of all (each key then carries `tenant`).
    pub fn jwks(&self, tenant: Option<&str>, now: i64) -> Option<Value> {
        let snap = self.read();
        if let Some(t) = tenant {
            snap.tenants.get(t)?;
        }
        let keys: Vec<Value> = snap
            .keys
            .iter()
            .filter(|k| tenant.is_none_or(|t| k.tenant == t) && keyring::published(&k.timeline, now))
            .map(|k| {
                let mut jwk = k.public_jwk.clone();
                if tenant.is_none() {
                    jwk["tenant"] = json!(k.tenant);
                }
                jwk
            })
            .collect();
        Some(json!({ "keys": keys }))
    }

    /// Age in seconds of each tenant's current keys, for metrics.
    pub fn current_ages(&self, now: i64) -> Vec<(String, &'static str, i64)> {
        self.read()
            .keys
            .iter()
            .filter(|k| keyring::state(&k.timeline, now) == State::Current)
            .map(|k| (k.tenant.clone(), k.timeline.key_use.as_str(), now - k.timeline.activates_at))
            .collect()
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

    /// Issues a token for `tenant`.
    pub fn mint(&self, tenant: &str, req: MintRequest, now: i64) -> Result<String, KmsError> {
        let t = self.read().tenants.get(tenant).cloned().ok_or(KmsError::UnknownTenant)?;
        let ttl = req.ttl_secs.unwrap_or(default::TOKEN_TTL.min(t.max_token_ttl));
        if ttl < 1 || ttl > t.max_token_ttl {
            return Err(KmsError::BadRequest(format!("ttl_secs: must be between 1 and {}", t.max_token_ttl)));
        }
        // A tenant stored before its ranges were checked may allow any TTL.
        let exp = now.checked_add(ttl).ok_or_else(|| KmsError::BadRequest("ttl_secs: exp would overflow".into()))?;
        if req.sub.is_empty() {
            return Err(KmsError::BadRequest("sub must not be empty".into()));
        }
        let mut claims = Map::new();
        for (k, v) in req.claims.unwrap_or_default() {
            if ["iss", "aud", "sub", "iat", "nbf", "exp", "jti", "tenant_id"].contains(&k.as_str()) {
                return Err(KmsError::BadRequest(format!("claim {k:?} is set by the sidecar")));
            }
            claims.insert(k, v);
        }
        claims.insert("iss".into(), json!(t.issuer));
        claims.insert("aud".into(), json!(req.aud.unwrap_or(t.audience.clone())));
        claims.insert("sub".into(), json!(req.sub));
        if let Some(role) = req.role {
            claims.insert("role".into(), role);
        }
        claims.insert("tenant_id".into(), json!(t.id));
        claims.insert("iat".into(), json!(now));
        claims.insert("nbf".into(), json!(now));
        claims.insert("exp".into(), json!(exp));
        claims.insert("jti".into(), json!(random_hex(16)));
        let key = self
            .current_key(tenant, Use::Sig, now)
            .ok_or_else(|| KmsError::Internal("no current signing key".into()))?;
        let alg = Alg::parse(&key.alg).ok_or_else(|| KmsError::Internal("key alg".into()))?;
        let pkcs8 = self.store.private(&key)?;
        let jws = crypto::jws(alg, &pkcs8, &key.timeline.kid, &Value::Object(claims))?;
        if !req.encrypt {
            return Ok(jws);
        }
        let enc = self
            .current_key(tenant, Use::Enc, now)
            .ok_or_else(|| KmsError::Internal("no current encryption key".into()))?;
        let enc_pkcs8 = self.store.private(&enc)?;
        let alg = Alg::parse(&enc.alg).ok_or_else(|| KmsError::Internal("key alg".into()))?;
        Ok(crypto::jwe_wrap(alg, &enc_pkcs8, &enc.timeline.kid, &jws)?)
    }

    /// Records revocations durably (one transaction) and returns them numbered.
    pub fn revoke(&self, events: Vec<Revocation>) -> Result<Vec<Revocation>, KmsError> {
        for e in &events {
            if !self.read().tenants.contains_key(&e.tenant) {
                return Err(KmsError::UnknownTenant);
            }
        }
        Ok(self.store.append_revocations(events)?)
    }

    /// The feed's epoch: the store's id and this run's, so that a gateway never
    /// mistakes positions of a replaced, restored or re-opened store for its own.
    pub fn feed_epoch(&self) -> &str {
        &self.epoch
    }

    /// One page of the feed after `after` (the gateway's cursor); single-token entries
    /// whose token has expired by `now` are left out (the cursor still passes them).
    pub fn feed_page(&self, after: u64, now: i64) -> Result<FeedPage, KmsError> {
        let (rows, last) = self.store.revocations_after(after, 10_000)?;
        let cursor = rows.last().map_or(after, |r| r.seq);
        let events = rows.iter().filter(|r| !(r.jti.is_some() && r.exp.is_some_and(|e| e < now))).map(Into::into);
        Ok(FeedPage { epoch: self.epoch.clone(), events: events.collect(), cursor, last })
    }

    /// Checks a subject or tenant watermark: seconds since the epoch, not negative and
    /// not beyond [`default::WATERMARK_AHEAD`] from `now` (a value in milliseconds would
    /// otherwise revoke every future token for good).
    pub fn check_watermark(before: i64, now: i64) -> Result<(), KmsError> {
        if before < 0 {
            return Err(KmsError::BadRequest(format!("before: {before} must not be negative")));
        }
        if before > now.saturating_add(default::WATERMARK_AHEAD) {
            return Err(KmsError::BadRequest(format!(
                "before: {before} is more than {} s in the future (now is {now}); give seconds since the epoch, not milliseconds",
                default::WATERMARK_AHEAD
            )));
        }
        Ok(())
    }

    /// The feed's last sequence number.
    pub fn last_revocation(&self) -> Result<u64, KmsError> {
        Ok(self.store.last_revocation()?)
    }

    /// Checks a one-time claim and returns the id it is stored under
    /// (`tenant \0 issuer \0 jti`).
    pub fn one_time_key(&self, tenant: &str, issuer: &str, jti: &str) -> Result<String, KmsError> {
        if !self.read().tenants.contains_key(tenant) {
            return Err(KmsError::UnknownTenant);
        }
        if [tenant, issuer, jti].iter().any(|s| s.is_empty() || s.len() > 512 || s.contains('\0')) {
            return Err(KmsError::BadRequest("tenant, issuer and jti: 1 to 512 bytes, no NUL".into()));
        }
        Ok(format!("{tenant}\0{issuer}\0{jti}"))
    }

    /// How long a one-time id is held: the gateway's `until` (the token's `exp` plus
    /// leeway, by the gateway's clock), or now if that has passed by ours, plus
    /// [`default::ONE_TIME_SKEW`]: a gateway whose clock lags ours by up to that much, and so
    /// still accepts the token, can never replay an id we already let go.
    pub fn one_time_until(until: i64, now: i64) -> i64 {
        until.max(now).saturating_add(default::ONE_TIME_SKEW)
    }

    /// Records one-time ids for gateways side by side, in one durable transaction:
    /// the first claim of an id wins until its `until`; later ones are replays.
    pub fn claim_one_time_batch(
        &self,
        claims: &[(&str, i64)],
        now: i64,
        capacity: u64,
    ) -> Result<Vec<Claim>, KmsError> {
        Ok(self.store.claim_one_time_batch(claims, now, capacity)?)
    }

    /// One-time ids the store holds.
    pub fn one_time_held(&self) -> Result<u64, KmsError> {
        Ok(self.store.one_time_held()?)
    }

    /// The private decryption JWKs the gateway must hold now.
    pub fn decryption_keys(&self, tenant: &str, now: i64) -> Result<Vec<crypto::PrivateJwk>, KmsError> {
        let held: Vec<KeyRecord> = {
            let snap = self.read();
            snap.tenants.get(tenant).ok_or(KmsError::UnknownTenant)?;
            snap.keys
                .iter()
                .filter(|k| k.tenant == tenant && k.sealed.is_some() && keyring::held_by_gateway(&k.timeline, now))
                .cloned()
                .collect()
        };
        let mut keys = Vec::new();
        for k in held {
            let pkcs8 = self.store.private(&k)?;
            let alg = Alg::parse(&k.alg).ok_or_else(|| KmsError::Internal("key alg".into()))?;
            keys.push(crypto::private_jwk(alg, &pkcs8, &k.timeline.kid)?);
        }
        Ok(keys)
    }

    /// Imports a PEM key for `tenant` as its next key for `key_use` (a public-only
    /// key is published for verification during a migration window).
    pub fn import(
        &self,
        tenant: &str,
        pem: &str,
        key_use: Use,
        format: Option<&str>,
        now: i64,
    ) -> Result<String, KmsError> {
        let _w = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let t = self.read().tenants.get(tenant).cloned().ok_or(KmsError::UnknownTenant)?;
        let alg = match key_use {
            Use::Sig => Alg::parse(&t.alg).ok_or_else(|| KmsError::Internal("tenant alg".into()))?,
            Use::Enc => enc_alg(&t)?,
        };
        if alg == Alg::EcdhEsA256Kw {
            return Err(KmsError::BadRequest("import of ECDH-ES+A256KW encryption keys is not supported".into()));
        }
        let s = self.schedule(&t);
        let kid = format!("{}-{}-import-{}", t.id, key_use.as_str(), random_hex(6));
        let (public_jwk, sealed, timeline) = match crypto::import_pem(pem, alg, format)? {
            Imported::Private(pkcs8) => {
                let jwk = crypto::public_jwk(alg, &pkcs8, &kid, key_use.as_str())?;
                let sealed = self.store.seal(&kid, &pkcs8)?;
                let timelines = self.timelines(tenant);
                if timelines.iter().any(|k| k.key_use == key_use && keyring::state(k, now) == State::Next) {
                    return Err(KmsError::Conflict("a next key is already planned; rotate first".into()));
                }
                let activates_at = now + s.publish_ahead;
                let tl = Timeline::new(kid.clone(), key_use, now, activates_at);
                (jwk, Some(sealed), tl)
            }
            Imported::Public(mut jwk) => {
                if key_use == Use::Enc {
                    return Err(KmsError::BadRequest(
                        "found a public key, expected a private key for an encryption key".into(),
                    ));
                }
                jwk["kid"] = json!(kid);
                jwk["use"] = json!("sig");
                jwk["alg"] = json!(alg.as_str());
                let tl = Timeline {
                    kid: kid.clone(),
                    key_use,
                    created_at: now,
                    activates_at: now,
                    retires_at: Some(now),
                    expires_at: Some(now + s.interval),
                    revoked: false,
                };
                (jwk, None, tl)
            }
        };
        let rec = KeyRecord { tenant: t.id.clone(), alg: alg.as_str().into(), timeline, public_jwk, sealed };
        let mut upserts = vec![rec];
        // A private import takes over from the current key like a normal rotation.
        if upserts[0].sealed.is_some() {
            if let Some(mut cur) = self.current_key(tenant, key_use, now) {
                let at = upserts[0].timeline.activates_at;
                cur.timeline.retires_at = Some(at);
                cur.timeline.expires_at = Some(at + s.overlap(key_use));
                upserts.push(cur);
            }
        }
        self.store.commit(&[], &upserts, &[], &[], Vec::new())?;
        self.reload()?;
        Ok(kid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Sealer;

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
