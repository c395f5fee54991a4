//! Key rotation as a pure function of time: [`keyring`] holds each key's timeline
//! (next, current, retired, expired) and plans the changes a schedule calls for at
//! a given `now`. The service applies the plan; the "key rotation" task
//! ([`crate::service::ticker`]) drives it every second.

pub mod keyring;

pub use keyring::{Change, Use};
