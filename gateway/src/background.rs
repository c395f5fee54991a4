//! The gateway's background services, each a Pingora `BackgroundService` driving the
//! current runtime (they depend on `crate::runtime`; nothing below them depends on
//! them): the revocation feed follower, tenant discovery and the config reload watcher.

pub mod discovery;
pub mod reload;
pub mod revocation;
