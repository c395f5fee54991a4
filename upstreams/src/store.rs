//! The shared in-memory record store, partitioned by tenant.

use std::collections::HashMap;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use serde::Serialize;

/// One medical record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Record {
    /// Record id, unique within its tenant (`r-<n>`).
    pub id: String,
    /// Owning patient.
    pub patient_id: String,
    /// Record kind, e.g. `visit` or `lab_result`.
    pub kind: String,
    /// Free-text clinical note.
    pub note: String,
    /// Subject that last wrote the record.
    pub updated_by: String,
}

/// Everything behind the lock.
#[derive(Debug, Default)]
struct Inner {
    /// Records keyed by `(tenant, patient_id)`; a key exists iff the patient exists.
    records: HashMap<(String, String), Vec<Record>>,
    /// Last record number handed out per tenant.
    last_id: HashMap<String, u64>,
}

/// Thread-safe record store shared by all services.
///
/// Every lookup is keyed by the caller's tenant, so a patient id that exists
/// only in another tenant is simply not found.
#[derive(Debug, Default)]
pub struct Store {
    inner: RwLock<Inner>,
}

impl Store {
    /// An empty store.
    pub fn new() -> Store {
        Store::default()
    }

    /// The demo data set: `hospital-a` with `p-100` and `p-101`,
    /// `hospital-b` with `p-200`.
    pub fn seeded() -> Store {
        let store = Store::new();
        let seed = [
            ("hospital-a", "p-100", "visit", "Annual check-up; blood pressure 120/80.", "d-1"),
            ("hospital-a", "p-100", "prescription", "Metformin 500mg twice daily.", "d-1"),
            ("hospital-a", "p-101", "visit", "Sprained left ankle; rest and ice.", "d-2"),
            ("hospital-b", "p-200", "visit", "Follow-up after appendectomy; healing well.", "d-9"),
            ("hospital-b", "p-200", "imaging", "Chest X-ray clear.", "d-9"),
        ];
        for (tenant, patient, kind, note, by) in seed {
            store.add_patient(tenant, patient);
            store.insert(tenant, patient, kind, note, by);
        }
        store
    }

    /// Registers a patient (with no records) in `tenant`; idempotent.
    pub fn add_patient(&self, tenant: &str, patient_id: &str) {
        self.write().records.entry((tenant.to_owned(), patient_id.to_owned())).or_default();
    }

    /// All records of `patient_id` in `tenant`, or `None` if the patient is
    /// not known in that tenant.
    pub fn records(&self, tenant: &str, patient_id: &str) -> Option<Vec<Record>> {
        self.read().records.get(&key(tenant, patient_id)).cloned()
    }

    /// Creates a record with a fresh tenant-unique id; `None` if the patient
    /// is not known in `tenant`.
    pub fn insert(&self, tenant: &str, patient_id: &str, kind: &str, note: &str, updated_by: &str) -> Option<Record> {
        let mut inner = self.write();
        let k = key(tenant, patient_id);
        if !inner.records.contains_key(&k) {
            return None;
        }
        let n = inner.last_id.entry(tenant.to_owned()).or_insert(0);
        *n += 1;
        let record = Record {
            id: format!("r-{n}"),
            patient_id: patient_id.to_owned(),
            kind: kind.to_owned(),
            note: note.to_owned(),
            updated_by: updated_by.to_owned(),
        };
        inner.records.get_mut(&k)?.push(record.clone());
        Some(record)
    }

    /// Replaces the note of `record_id` (which must belong to `patient_id` in
    /// `tenant`) and stamps `updated_by`; `None` if there is no such record.
    pub fn update_note(
        &self,
        tenant: &str,
        patient_id: &str,
        record_id: &str,
        note: &str,
        updated_by: &str,
    ) -> Option<Record> {
        let mut inner = self.write();
        let record = inner.records.get_mut(&key(tenant, patient_id))?.iter_mut().find(|r| r.id == record_id)?;
        record.note = note.to_owned();
        record.updated_by = updated_by.to_owned();
        Some(record.clone())
    }

    /// Read guard; a poisoned lock is recovered since every write leaves the
    /// map consistent.
    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Write guard, recovering from poisoning like [`Store::read`].
    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// Map key for `(tenant, patient_id)`.
fn key(tenant: &str, patient_id: &str) -> (String, String) {
    (tenant.to_owned(), patient_id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_per_tenant_and_tenants_are_isolated() {
        let s = Store::seeded();
        let a = s.records("hospital-a", "p-100").unwrap();
        assert_eq!(a.len(), 2);
        assert!(s.records("hospital-b", "p-100").is_none());
        let new = s.insert("hospital-a", "p-101", "lab_result", "x", "l-1").unwrap();
        assert_eq!(new.id, "r-4");
        assert!(s.insert("hospital-b", "p-101", "lab_result", "x", "l-1").is_none());
        assert!(s.update_note("hospital-b", "p-200", "r-1", "n", "d").is_some());
        assert_eq!(s.records("hospital-a", "p-100").unwrap()[0].note, a[0].note);
        // A record of another patient cannot be edited through this patient.
        assert!(s.update_note("hospital-a", "p-101", "r-1", "n", "d").is_none());
    }
}
