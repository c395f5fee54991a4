//! Credentials the gateway reads from the environment or a file (the admin bearer
//! credential and the sidecar channel's for revocation, decryption keys and the
//! shared one-time store): what `--check` and start-up verify is there, each problem
//! naming the field, and the variable or file it expected. Never the value.

use gateway_core::config::{AdminToken, Config};
use gateway_core::tenant::DecryptionSource;

/// Shortest admin credential accepted.
pub const ADMIN_MIN_LEN: usize = 16;

/// Where a credential is expected: `environment variable X` or `file /p`.
pub fn source(t: &AdminToken) -> String {
    match t {
        AdminToken::Env(var) => format!("environment variable {var}"),
        AdminToken::File(path) => format!("file {path}"),
    }
}

/// `section.token_env` or `section.token_file`.
fn field(section: &str, t: &AdminToken) -> String {
    match t {
        AdminToken::Env(_) => format!("{section}.token_env"),
        AdminToken::File(_) => format!("{section}.token_file"),
    }
}

/// Reads a credential, trimmed; `Err` says why, naming the variable or file.
pub fn read(t: &AdminToken) -> Result<zeroize::Zeroizing<String>, String> {
    let value = match t {
        AdminToken::Env(var) => std::env::var(var).map_err(|_| format!("environment variable {var} is not set"))?,
        AdminToken::File(path) => std::fs::read_to_string(path).map_err(|e| format!("file {path}: {e}"))?,
    };
    let value = zeroize::Zeroizing::new(value);
    let trimmed = zeroize::Zeroizing::new(value.trim().to_owned());
    if trimmed.is_empty() {
        return Err(format!("{} is empty", source(t)));
    }
    Ok(trimmed)
}

/// Every credential `config` needs that cannot be read, one `field: problem` each.
pub fn problems(config: &Config) -> Vec<String> {
    let mut needed: Vec<(&str, &AdminToken)> = Vec::new();
    if let Some(t) = &config.admin_token {
        needed.push(("admin", t));
    }
    if let Some(r) = &config.revocation {
        needed.push(("revocation", &r.token));
    }
    if let Some(r) = &config.replay_store {
        needed.push(("replay_store", &r.token));
    }
    if let Some(d) = &config.tenant_discovery {
        needed.push(("tenant_discovery", &d.token));
    }
    // Every tenant's decryption key URL uses the `decryption:` section's credential.
    let decryption = config.tenants.iter().find_map(|t| match t.encryption.as_ref().map(|e| &e.keys) {
        Some(DecryptionSource::Url { token, .. }) => Some(token),
        _ => None,
    });
    if let Some(t) = decryption {
        needed.push(("decryption", t));
    }
    let mut out = Vec::new();
    for (section, t) in needed {
        match read(t) {
            Err(why) => out.push(format!("{}: {why}", field(section, t))),
            Ok(v) if section == "admin" && v.chars().count() < ADMIN_MIN_LEN => {
                out.push(format!("{}: {} holds fewer than {ADMIN_MIN_LEN} characters", field(section, t), source(t)))
            }
            Ok(_) => {}
        }
    }
    out
}
