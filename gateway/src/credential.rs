//! Credentials: the one way the gateway reads every credential its config names (the
//! admin bearer credential, and the sidecar channel's for the revocation feed, the
//! shared one-time store, decryption keys and tenant discovery), each a
//! [`SecretSource`] (`token_env` or `token_file`). [`read`] reads one afresh (the
//! background services do so on every poll or fetch, so a rotated file is picked up);
//! [`Credential`] keeps one read for the request path and reads it again only when
//! asked (after the sidecar refused it). [`problems`] is what `--check` and start-up
//! verify: each problem names the field and the variable or file it expected. The
//! value itself is held in wiped memory and never logged or put in an error.

use gateway_core::config::Config;
pub use gateway_core::secret::SecretSource;
use gateway_core::tenant::DecryptionSource;
use std::sync::RwLock;
use zeroize::Zeroizing;

/// Shortest admin credential accepted.
pub const ADMIN_MIN_LEN: usize = 16;

/// Reads a credential, trimmed; `Err` says why, naming the variable or file.
pub fn read(source: &SecretSource) -> Result<Zeroizing<String>, String> {
    let value = match source {
        SecretSource::Env(var) => std::env::var(var).map_err(|_| format!("environment variable {var} is not set"))?,
        SecretSource::File(path) => std::fs::read_to_string(path).map_err(|e| format!("file {path}: {e}"))?,
    };
    let value = Zeroizing::new(value);
    let trimmed = Zeroizing::new(value.trim().to_owned());
    if trimmed.is_empty() {
        return Err(format!("{source} is empty"));
    }
    Ok(trimmed)
}

/// A credential read once and kept (for the request path: no read per request), read
/// again on [`Credential::reread`] (when the sidecar refused the one kept, so a
/// rotated credential is picked up).
#[derive(Debug)]
pub struct Credential {
    source: SecretSource,
    kept: RwLock<Option<Zeroizing<String>>>,
}

impl Credential {
    /// A credential read from `source` on first use.
    pub fn new(source: SecretSource) -> Credential {
        Credential { source, kept: RwLock::new(None) }
    }

    /// The credential kept, or (none kept yet) a fresh read.
    pub fn get(&self) -> Result<Zeroizing<String>, String> {
        if let Some(value) = self.kept.read().unwrap_or_else(|p| p.into_inner()).as_ref() {
            return Ok(value.clone());
        }
        self.reread()
    }

    /// Reads the credential afresh and keeps it.
    pub fn reread(&self) -> Result<Zeroizing<String>, String> {
        let value = read(&self.source)?;
        *self.kept.write().unwrap_or_else(|p| p.into_inner()) = Some(value.clone());
        Ok(value)
    }
}

/// The admin credential of `config`, read once at start-up (`None`: `/audit` is off).
pub fn admin(config: &Config) -> anyhow::Result<Option<Zeroizing<String>>> {
    let Some(source) = &config.admin_token else {
        return Ok(None);
    };
    let value = read(source).map_err(|why| anyhow::anyhow!("{}: {why}", source.field("admin")))?;
    if value.chars().count() < ADMIN_MIN_LEN {
        anyhow::bail!("admin token must be at least {ADMIN_MIN_LEN} characters");
    }
    Ok(Some(value))
}

/// Every credential `config` needs that cannot be read, one `field: problem` each.
pub fn problems(config: &Config) -> Vec<String> {
    let mut needed: Vec<(&str, &SecretSource)> = Vec::new();
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
            Err(why) => out.push(format!("{}: {why}", t.field(section))),
            Ok(v) if section == "admin" && v.chars().count() < ADMIN_MIN_LEN => {
                out.push(format!("{}: {t} holds fewer than {ADMIN_MIN_LEN} characters", t.field(section)))
            }
            Ok(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_credential_is_kept_until_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "first-credential\n").unwrap();
        let credential = Credential::new(SecretSource::File(path.to_str().unwrap().into()));
        assert_eq!(credential.get().unwrap().as_str(), "first-credential");
        std::fs::write(&path, "second-credential").unwrap();
        assert_eq!(credential.get().unwrap().as_str(), "first-credential", "kept, not read per use");
        assert_eq!(credential.reread().unwrap().as_str(), "second-credential");
        assert_eq!(credential.get().unwrap().as_str(), "second-credential");
        std::fs::write(&path, "  \n").unwrap();
        let err = read(&SecretSource::File(path.to_str().unwrap().into())).unwrap_err();
        assert!(err.ends_with("is empty") && !err.contains("second"), "{err}");
        let missing = read(&SecretSource::Env("MEDGATE_TEST_SURELY_UNSET_VARIABLE".into())).unwrap_err();
        assert_eq!(missing, "environment variable MEDGATE_TEST_SURELY_UNSET_VARIABLE is not set");
    }
}
