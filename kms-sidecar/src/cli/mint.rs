//! `kms-sidecar mint`: asks a running sidecar for a token
//! (`POST /v1/tenants/{tenant}/tokens` with the admin credential) and prints only the
//! token.

/// Mints through the sidecar at `url`; the credential comes from `token_file` or the
/// environment variable `KMS_ADMIN_TOKEN`.
#[allow(clippy::too_many_arguments)]
pub fn mint(
    tenant: String,
    sub: String,
    roles: Vec<String>,
    aud: Option<String>,
    ttl: Option<String>,
    encrypt: bool,
    claims: Vec<String>,
    url: String,
    token_file: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    let token = match token_file {
        Some(p) => {
            let raw = zeroize::Zeroizing::new(
                std::fs::read_to_string(&p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?,
            );
            zeroize::Zeroizing::new(raw.trim().to_owned())
        }
        None => zeroize::Zeroizing::new(
            std::env::var("KMS_ADMIN_TOKEN").map_err(|_| anyhow::anyhow!("set KMS_ADMIN_TOKEN or --token-file"))?,
        ),
    };
    let ttl_secs = ttl
        .map(|t| gateway_core::duration::parse(&t).map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)))
        .transpose()
        .map_err(|e| anyhow::anyhow!("--ttl: {e}"))?;
    let mut extra = serde_json::Map::new();
    for c in claims {
        let (k, v) = c.split_once('=').ok_or_else(|| anyhow::anyhow!("--claim {c:?}: expected key=value"))?;
        extra.insert(k.to_owned(), serde_json::Value::String(v.to_owned()));
    }
    let role = match roles.len() {
        0 => serde_json::Value::Null,
        1 => serde_json::json!(roles[0]),
        _ => serde_json::json!(roles),
    };
    let mut body = serde_json::json!({"sub": sub, "encrypt": encrypt});
    if !role.is_null() {
        body["role"] = role;
    }
    if let Some(a) = aud {
        body["aud"] = serde_json::json!(a);
    }
    if let Some(t) = ttl_secs {
        body["ttl_secs"] = serde_json::json!(t);
    }
    if !extra.is_empty() {
        body["claims"] = serde_json::Value::Object(extra);
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let out: serde_json::Value = rt.block_on(async {
        let resp = reqwest::Client::new()
            .post(format!("{}/v1/tenants/{tenant}/tokens", url.trim_end_matches('/')))
            .bearer_auth(token.as_str())
            .json(&body)
            .send()
            .await?;
        let status = resp.status();
        let v: serde_json::Value = resp.json().await.unwrap_or(serde_json::Value::Null);
        if !status.is_success() {
            anyhow::bail!("HTTP {status}: {v}");
        }
        anyhow::Ok(v)
    })?;
    println!("{}", out["token"].as_str().ok_or_else(|| anyhow::anyhow!("no token in the answer"))?);
    Ok(())
}
