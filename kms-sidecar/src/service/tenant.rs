//! Tenants: created from a validated spec with their first keys, deleted with a
//! tenant-wide revocation in the same transaction, and listed for gateways.

use super::{enc_alg, Kms, KmsError};
use crate::rotation::keyring;
use crate::store::Revocation;
use crate::tenant::TenantSpec;
use medgate_channel::{ListedTenant, TenantList};

impl Kms {
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
}
