//! Mints a token with one of the fixed TEST keys, for load tests and manual tries
//! without the sidecar: `mint-test-token --key rsa-a.pem --kid rs-1 --alg RS256
//! --tenant t1 --issuer https://issuer.test/t1 --aud api --sub u-1 --role doctor --ttl 3600`.
//! With `--encrypt-to KEYS.jwks --jwe-alg RSA-OAEP-256 --jwe-enc A256GCM` the token is
//! wrapped in a nested JWE to the first key of that private JWKS (josekit);
//! `--write-enc-keys DIR` writes fresh `enc-rsa.jwks`, `enc-ec.jwks` and both in
//! `enc-all.jwks` there. `--count N` prints N tokens, one per line, each with its own
//! `jti` (one-time load tests).

use clap::Parser;
use jsonwebtoken::Algorithm;
use serde_json::json;
use std::io::Write;
use testkit::jwe::EncKey;

/// `300`, `90s`, `5m`, `1h` or `7d` as seconds; negative (`-3600`) for an expired token.
fn parse_ttl(text: &str) -> Result<i64, String> {
    let (sign, rest) = text.strip_prefix('-').map_or((1, text), |r| (-1, r));
    let split = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
    let (num, unit) = rest.split_at(split);
    let n: i64 = num.parse().map_err(|_| format!("{text:?}: expected seconds or e.g. 90s, 5m, 1h, 7d"))?;
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return Err(format!("{text:?}: unit must be s, m, h or d")),
    };
    n.checked_mul(scale).map(|v| sign * v).ok_or_else(|| format!("{text:?}: too large"))
}

#[derive(Parser)]
struct Args {
    /// Signing key: a file name in gateway/testkit/keys/ (e.g. `rsa-a.pem`) or a path.
    #[arg(long, default_value = "rsa-a.pem")]
    key: String,
    #[arg(long, default_value = "rs-1")]
    kid: String,
    #[arg(long, default_value = "RS256")]
    alg: String,
    #[arg(long, default_value = "t1")]
    tenant: String,
    #[arg(long)]
    issuer: Option<String>,
    #[arg(long, default_value = "api")]
    aud: String,
    #[arg(long, default_value = "u-1")]
    sub: String,
    #[arg(long, default_value = "doctor")]
    role: String,
    /// Lifetime: seconds (`300`) or with a unit, as the sidecar's `mint --ttl` (`90s`, `5m`, `1h`, `7d`).
    #[arg(long, default_value = "3600", value_parser = parse_ttl, allow_hyphen_values = true)]
    ttl: i64,
    /// Private JWKS whose first key the token is encrypted to (nested JWE).
    #[arg(long)]
    encrypt_to: Option<std::path::PathBuf>,
    #[arg(long, default_value = "RSA-OAEP-256")]
    jwe_alg: String,
    #[arg(long, default_value = "A256GCM")]
    jwe_enc: String,
    /// Tokens to print, one per line, each with its own `jti`.
    #[arg(long, default_value_t = 1)]
    count: usize,
    /// Write fresh encryption keys (`enc-rsa.jwks`, kid enc-rsa; `enc-ec.jwks`, kid enc-ec) and exit.
    #[arg(long)]
    write_enc_keys: Option<std::path::PathBuf>,
}

fn main() {
    let a = Args::parse();
    if let Some(dir) = &a.write_enc_keys {
        let (rsa, ec) = (EncKey::rsa("enc-rsa"), EncKey::p256("enc-ec"));
        for (file, keys) in
            [("enc-rsa.jwks", vec![&rsa]), ("enc-ec.jwks", vec![&ec]), ("enc-all.jwks", vec![&rsa, &ec])]
        {
            std::fs::write(dir.join(file), testkit::jwe::private_jwks(&keys)).expect("write key file");
        }
        return;
    }
    let alg = match a.alg.as_str() {
        "RS256" => Algorithm::RS256,
        "PS256" => Algorithm::PS256,
        "ES256" => Algorithm::ES256,
        "EdDSA" => Algorithm::EdDSA,
        other => {
            eprintln!("unsupported alg {other}");
            std::process::exit(2);
        }
    };
    let key = testkit::TestKey::load(&a.key, &a.kid, alg);
    let enc = a.encrypt_to.as_ref().map(|path| {
        let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(path).expect("read JWKS")).expect("JWKS");
        EncKey::from_jwk(&doc["keys"][0])
    });
    let now = testkit::now();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for n in 0..a.count {
        let claims = json!({
            "iss": a.issuer.clone().unwrap_or_else(|| format!("https://issuer.test/{}", a.tenant)),
            "aud": a.aud, "sub": a.sub, "role": a.role, "tenant_id": a.tenant,
            "iat": now, "nbf": now, "exp": now + a.ttl, "jti": format!("test-{now}-{}-{n}", std::process::id()),
        });
        let token = key.mint(&claims);
        let line = match &enc {
            None => token,
            Some(enc) => enc.wrap(&a.jwe_alg, &a.jwe_enc, &token),
        };
        writeln!(out, "{line}").expect("write token");
    }
}
