//! The gateway's core: strict compact-JWS parsing and verification against
//! per-tenant key sets, claim validation, routing, route policy and the
//! claims-to-headers plan. It has no Pingora, no sockets and no wall clock (time
//! is passed in as seconds), so any Pingora application can use it as a library
//! and everything here is unit-tested and benchmarked on its own.

pub mod alg;
pub mod audit;
pub mod b64;
pub mod cache;
pub mod claims;
pub mod config;
pub mod duration;
pub mod engine;
pub mod error;
pub mod forwarded;
pub mod header;
pub mod http_limits;
pub mod jose;
pub mod json;
pub mod jwe;
pub mod key;
pub mod keystore;
mod pem_key;
pub mod policy;
pub mod replay;
pub mod request_id;
pub mod revocation;
pub mod route;
pub mod tenant;
pub mod verify;

pub use alg::Algorithm;
pub use config::{Config, ConfigError};
pub use engine::{Allowed, Decision, Engine, OneTime, Refusal};
pub use error::{AuthError, Denial, EdgeError, PolicyError, UpstreamError};
pub use key::{KeyError, KeySet, VerifyingKey};
pub use keystore::KeyStore;
pub use verify::{VerifiedToken, Verifier};
