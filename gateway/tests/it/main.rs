//! The gateway's integration tests, one binary: each module is one concern, run
//! against the real `gateway` binary (and, where the channel matters, the real
//! `kms-sidecar`) on ephemeral 127.0.0.1 ports; `support` is the shared harness.

mod support;

mod audit;
mod config;
mod dependencies;
mod edge;
mod jwe;
mod keys_bounds;
mod local_conf;
mod onboarding;
mod ops;
mod proxy;
mod reload;
mod revocation;
mod revocation_lifecycle;
mod rotation;
mod shared_replay;
mod tenant_routes;
mod tls;
mod tls_h2;
mod traffic;
mod upgrade;
