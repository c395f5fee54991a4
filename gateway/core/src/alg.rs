//! The signature algorithms the gateway accepts. `none` and every HMAC algorithm are
//! absent on purpose: they can never be parsed into an [`Algorithm`].

use std::fmt;
use std::str::FromStr;

/// An asymmetric JWS algorithm the gateway can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PSS with SHA-256 and MGF1-SHA-256.
    PS256,
    /// ECDSA P-256 with SHA-256, fixed-width `r||s` signatures.
    ES256,
    /// Ed25519.
    EdDSA,
}

/// The key family an algorithm needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFamily {
    /// `kty: RSA`.
    Rsa,
    /// `kty: EC`, `crv: P-256`.
    P256,
    /// `kty: OKP`, `crv: Ed25519`.
    Ed25519,
}

impl Algorithm {
    /// Every supported algorithm.
    pub const ALL: [Algorithm; 4] = [Self::RS256, Self::PS256, Self::ES256, Self::EdDSA];

    /// The JOSE name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RS256 => "RS256",
            Self::PS256 => "PS256",
            Self::ES256 => "ES256",
            Self::EdDSA => "EdDSA",
        }
    }

    /// The key family this algorithm requires.
    pub fn family(self) -> KeyFamily {
        match self {
            Self::RS256 | Self::PS256 => KeyFamily::Rsa,
            Self::ES256 => KeyFamily::P256,
            Self::EdDSA => KeyFamily::Ed25519,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = ();
    /// Exact, case-sensitive JOSE names only (`"none"`, `"None"`, `"HS256"`... are errors).
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "RS256" => Ok(Self::RS256),
            "PS256" => Ok(Self::PS256),
            "ES256" => Ok(Self::ES256),
            "EdDSA" => Ok(Self::EdDSA),
            _ => Err(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn none_and_hmac_never_parse() {
        for bad in ["none", "None", "NONE", "nOnE", "HS256", "HS384", "HS512", "rs256", "", "RS256 "] {
            assert!(bad.parse::<Algorithm>().is_err(), "{bad}");
        }
        for a in Algorithm::ALL {
            assert_eq!(a.as_str().parse::<Algorithm>(), Ok(a));
        }
    }
}
