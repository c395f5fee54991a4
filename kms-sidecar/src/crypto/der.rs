//! A minimal DER reader for the few structures the sidecar needs to look inside:
//! PKCS#8 `PrivateKeyInfo` (algorithm, and RSA private components for private JWKs)
//! and SPKI public keys. Returns `None` on anything unexpected; never panics.

use gateway_core::b64;
use serde_json::{json, Value};
use zeroize::Zeroizing;

const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];

/// One TLV: (tag, contents, rest).
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |acc, b| (acc << 8) | *b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (t, body, rest) = tlv(input)?;
    (t == tag).then_some((body, rest))
}

fn uint(v: &[u8]) -> &[u8] {
    let skip = v.iter().take_while(|b| **b == 0).count().min(v.len().saturating_sub(1));
    &v[skip..]
}

/// Key types found in PKCS#8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// RSA.
    Rsa,
    /// EC on P-256.
    P256,
    /// EC on another curve.
    OtherEc,
    /// Ed25519.
    Ed25519,
    /// Anything else.
    Other,
}

impl Kind {
    /// Words for error messages.
    pub fn describe(self) -> &'static str {
        match self {
            Kind::Rsa => "an RSA key",
            Kind::P256 => "a P-256 EC key",
            Kind::OtherEc => "an EC key on an unsupported curve",
            Kind::Ed25519 => "an Ed25519 key",
            Kind::Other => "a key of an unsupported type",
        }
    }
}

fn algorithm(alg_id: &[u8]) -> Kind {
    let Some((oid, rest)) = expect(alg_id, 0x06) else {
        return Kind::Other;
    };
    match oid {
        o if o == OID_RSA => Kind::Rsa,
        o if o == OID_ED25519 => Kind::Ed25519,
        o if o == OID_EC => match expect(rest, 0x06) {
            Some((curve, _)) if curve == OID_P256 => Kind::P256,
            _ => Kind::OtherEc,
        },
        _ => Kind::Other,
    }
}

/// The key type of a PKCS#8 `PrivateKeyInfo`.
pub fn pkcs8_kind(der: &[u8]) -> Option<Kind> {
    let (info, _) = expect(der, 0x30)?;
    let (_, rest) = expect(info, 0x02)?;
    let (alg_id, _) = expect(rest, 0x30)?;
    Some(algorithm(alg_id))
}

/// RSA private components.
pub struct RsaPrivate {
    /// Modulus.
    pub n: Vec<u8>,
    /// Public exponent.
    pub e: Vec<u8>,
    /// Private exponent.
    pub d: Zeroizing<Vec<u8>>,
    /// First prime.
    pub p: Zeroizing<Vec<u8>>,
    /// Second prime.
    pub q: Zeroizing<Vec<u8>>,
    /// d mod (p-1).
    pub dp: Zeroizing<Vec<u8>>,
    /// d mod (q-1).
    pub dq: Zeroizing<Vec<u8>>,
    /// q^-1 mod p.
    pub qi: Zeroizing<Vec<u8>>,
}

/// The RSA components of a PKCS#8 RSA private key.
pub fn rsa_private(pkcs8: &[u8]) -> Option<RsaPrivate> {
    let (info, _) = expect(pkcs8, 0x30)?;
    let (_, rest) = expect(info, 0x02)?;
    let (alg_id, rest) = expect(rest, 0x30)?;
    if algorithm(alg_id) != Kind::Rsa {
        return None;
    }
    let (octets, _) = expect(rest, 0x04)?;
    let (seq, _) = expect(octets, 0x30)?;
    // Every component is copied straight into a wiped-on-drop buffer, so an early
    // return leaves no private bytes behind.
    let mut ints: Vec<Zeroizing<Vec<u8>>> = Vec::with_capacity(9);
    let mut cur = seq;
    while !cur.is_empty() && ints.len() < 9 {
        let (v, rest) = expect(cur, 0x02)?;
        ints.push(Zeroizing::new(uint(v).to_vec()));
        cur = rest;
    }
    if ints.len() != 9 {
        return None;
    }
    let mut it = ints.into_iter().skip(1);
    let mut next = || it.next().unwrap_or_default();
    Some(RsaPrivate {
        n: next().to_vec(),
        e: next().to_vec(),
        d: next(),
        p: next(),
        q: next(),
        dp: next(),
        dq: next(),
        qi: next(),
    })
}

/// The public JWK members of an SPKI public key (RSA, P-256 or Ed25519).
pub fn spki_jwk(der: &[u8]) -> Option<Value> {
    let (spki, _) = expect(der, 0x30)?;
    let (alg_id, rest) = expect(spki, 0x30)?;
    let (bits, _) = expect(rest, 0x03)?;
    let (&unused, key) = bits.split_first()?;
    if unused != 0 {
        return None;
    }
    match algorithm(alg_id) {
        Kind::Rsa => {
            let (seq, _) = expect(key, 0x30)?;
            let (n, rest) = expect(seq, 0x02)?;
            let (e, _) = expect(rest, 0x02)?;
            Some(json!({"kty": "RSA", "n": b64::encode(uint(n)), "e": b64::encode(uint(e))}))
        }
        Kind::P256 if key.len() == 65 && key[0] == 4 => {
            Some(json!({"kty": "EC", "crv": "P-256", "x": b64::encode(&key[1..33]), "y": b64::encode(&key[33..])}))
        }
        Kind::Ed25519 if key.len() == 32 => Some(json!({"kty": "OKP", "crv": "Ed25519", "x": b64::encode(key)})),
        _ => None,
    }
}
