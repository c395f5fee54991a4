//! The kms-sidecar's integration tests, one binary: the real `kms-sidecar` process on
//! ephemeral loopback ports, driven over real HTTP and raw sockets through the
//! [`support`] harness. [`modules`] checks that the crate's module graph has no cycle.

mod api;
mod limits;
mod modules;
mod revocation;
mod support;
