//! The records the store holds, separate from the wire types they convert into
//! (the feed serves a stored [`Revocation`] as a [`medgate_channel::RevocationEvent`]).

use crate::rotation::keyring::Timeline;
use serde::{Deserialize, Serialize};

/// What a one-time claim found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// First use: recorded durably until its expiry.
    First,
    /// Already used and not yet expired.
    Replayed,
    /// The store holds `capacity` unexpired ids: refused rather than forgetting one.
    Full,
}

impl Claim {
    /// Metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Claim::First => "first",
            Claim::Replayed => "replayed",
            Claim::Full => "full",
        }
    }
}

/// One entry of the revocation feed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// Position in the feed (assigned on append, from 1).
    #[serde(default)]
    pub seq: u64,
    /// Tenant.
    pub tenant: String,
    /// One token: its `jti` ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// ... and `exp` (the entry is needed until then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// Every token of this subject issued before `before`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Watermark: tokens with `iat` up to this are refused (with `subject`, or tenant-wide).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<i64>,
    /// Set the watermark to `before` even when lower (an explicit correction).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lower: bool,
    /// The tenant was deleted (with a tenant-wide `before`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
    /// A key removed by an emergency rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// When it was recorded.
    #[serde(default)]
    pub at: i64,
}

impl From<&Revocation> for medgate_channel::RevocationEvent {
    /// The stored record as the feed serves it (`at` is the sidecar's own).
    fn from(r: &Revocation) -> Self {
        Self {
            seq: r.seq,
            tenant: r.tenant.clone(),
            jti: r.jti.clone(),
            exp: r.exp,
            subject: r.subject.clone(),
            before: r.before,
            lower: r.lower,
            deleted: r.deleted,
            kid: r.kid.clone(),
        }
    }
}

/// A stored tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantRecord {
    /// Tenant id.
    pub id: String,
    /// Signing algorithm.
    pub alg: String,
    /// `iss` of issued tokens.
    pub issuer: String,
    /// Default `aud`.
    pub audience: String,
    /// Rotation interval, seconds.
    pub interval: i64,
    /// Longest token lifetime, seconds.
    pub max_token_ttl: i64,
    /// Clock skew, seconds.
    pub clock_skew: i64,
    /// Key management of encryption keys (`RSA-OAEP-256` when absent).
    #[serde(default)]
    pub enc_alg: Option<String>,
    /// RSA signing key size (2048 when absent).
    #[serde(default)]
    pub rsa_bits: Option<u32>,
}

/// A stored key: timeline, public JWK, and the sealed private key (absent for an
/// imported public-only key, or once destroyed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// Owning tenant.
    pub tenant: String,
    /// JOSE algorithm.
    pub alg: String,
    /// Rotation instants.
    pub timeline: Timeline,
    /// Public JWK.
    pub public_jwk: serde_json::Value,
    /// `nonce || AES-256-GCM(private PKCS#8)`, AAD = kid.
    pub sealed: Option<Vec<u8>>,
}
