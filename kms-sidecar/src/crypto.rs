//! Key material, bottom-up: [`alg`] (algorithms and the one key error), [`der`]
//! (the DER the sidecar reads), [`seal`] (AES-256-GCM at rest and in JWEs), [`ecdh`]
//! (P-256 encryption keys), [`key`] (generation, signing, public and private JWKs,
//! nested-JWE wrapping) and [`import`] (PEM import). All primitives come from
//! aws-lc-rs; private key bytes live only in `Zeroizing` buffers.

pub mod alg;
pub mod der;
pub mod ecdh;
pub mod import;
pub mod key;
pub mod seal;

pub use alg::{Alg, KeyError};
pub use import::{import_pem, Imported};
pub use key::{generate, jwe_wrap, jws, private_jwk, private_jwks_json, public_jwk, PrivateJwk};
pub use seal::Sealer;
