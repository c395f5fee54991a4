//! In-process HTTP tests: all four services on ephemeral ports over one
//! shared store, exercised with a real HTTP client.

mod access;
mod flows;
mod support;
mod tenancy;
