//! Keys: the rotation plan applied at a given time (scheduled, manual, emergency),
//! each removal put on the revocation feed in the same transaction; the public JWKS;
//! the private decryption keys handed to the gateway; PEM import.

use super::{enc_alg, random_hex, Kms, KmsError};
use crate::crypto::{self, Alg, Imported};
use crate::default;
use crate::rotation::keyring::{self, Change, State, Timeline, Use};
use crate::store::{KeyRecord, Revocation, TenantRecord};
use serde_json::{json, Value};

impl Kms {
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
    pub(super) fn apply_locked(
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
