//! The contract between the gateway and the kms-sidecar: every document that crosses
//! the sidecar's internal listener (the "gateway channel"), its paths, and the one
//! parser of `Authorization: Bearer` credentials that both processes use. The
//! sidecar serves these types and the gateway reads them, so renaming a field on
//! one side is a compile error on the other, and each type's JSON shape is pinned by
//! a test in this crate. Pure data and serde: no sockets, no runtime, no clock.
//!
//! ```ignore
//! let page: FeedPage = client.get(format!("{base}{}", path::REVOCATIONS)).query(&query).send().await?.json().await?;
//! ```
//!
//! Storage records (the sidecar's stored revocation, its tenant record) are separate
//! types that convert into these.

pub mod bearer;
pub mod decryption;
pub mod one_time;
pub mod path;
pub mod revocation;
pub mod tenant;

pub use bearer::BearerError;
pub use decryption::{DecryptionKeys, PrivateJwk};
pub use one_time::{OneTimeAnswer, OneTimeClaim};
pub use revocation::{FeedPage, FeedQuery, RevocationEvent};
pub use tenant::{ListedTenant, TenantList};
