//! The gateway's background services, each a Pingora `BackgroundService` driving the
//! current runtime. They depend on `crate::runtime` and the modules below it; nothing
//! below depends on them.
//!
//! | service name | module | what it does |
//! |---|---|---|
//! | "jwks refresh" | [`key_refresh`] | scheduled refresh of tenant signing and decryption keys |
//! | "upstream health" | [`health`] | upstream pools' HTTP health checks |
//! | "revocation feed" | [`revocation`] | follows the sidecar's revocation feed |
//! | "tenant discovery" | [`discovery`] | polls the sidecar's tenant list, rebuilds through [`reload`] |
//! | "config reload" | [`reload`] | re-reads and swaps the config on SIGHUP |

pub mod cert_watch;
pub mod discovery;
pub mod health;
pub mod key_refresh;
pub mod reload;
pub mod revocation;
