//! `kms-sidecar`: the per-tenant key service beside the gateway. It stores every
//! tenant's keys durably in an embedded database, sealed under a master key; serves
//! JWKS; issues tokens; hands decryption keys to the gateway over an authenticated
//! loopback channel; and rotates keys on schedule and on demand with overlaps so no
//! valid token fails during a normal rotation.
//!
//! The modules, bottom-up (each imports only those above it in this list):

/// The subcommands.
mod cli;
/// Seconds since the epoch, read in one place.
mod clock;
/// The YAML config.
mod config;
/// Key material: algorithms, sealing, JWKs, JWE wrapping, PEM import.
mod crypto;
/// Every default value.
mod default;
/// Routers and handlers by audience, the listener and its limits.
mod http;
/// Prometheus metrics.
mod metrics;
/// The rotation timeline as a pure function of time.
mod rotation;
/// Operations over the store, the one-time writer and the "key rotation" task.
mod service;
/// The durable store (redb) and its records.
mod store;
/// The validated tenant spec, from the YAML and the admin API alike.
mod tenant;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    match cli::Cli::parse().cmd.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kms-sidecar: {e:#}");
            ExitCode::FAILURE
        }
    }
}
