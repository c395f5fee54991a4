//! Mints a token with one of the fixed TEST keys, for load tests and manual tries
//! without the sidecar: `mint-test-token --key rsa-a.pem --kid rs-1 --alg RS256
//! --tenant t1 --issuer https://issuer.test/t1 --aud api --sub u-1 --role doctor --ttl 3600`.

use clap::Parser;
use jsonwebtoken::Algorithm;
use serde_json::json;

#[derive(Parser)]
struct Args {
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
    #[arg(long, default_value_t = 3600)]
    ttl: i64,
}

fn main() {
    let a = Args::parse();
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
    let now = testkit::now();
    let claims = json!({
        "iss": a.issuer.unwrap_or_else(|| format!("https://issuer.test/{}", a.tenant)),
        "aud": a.aud, "sub": a.sub, "role": a.role, "tenant_id": a.tenant,
        "iat": now, "nbf": now, "exp": now + a.ttl, "jti": format!("test-{now}-{}", std::process::id()),
    });
    println!("{}", key.mint(&claims));
}
