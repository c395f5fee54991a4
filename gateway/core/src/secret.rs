//! Where a credential comes from (`token_env` or `token_file` in the YAML): the one
//! type every credential of the gateway is named by (the admin credential and the
//! sidecar channel's for the revocation feed, the shared one-time store, decryption
//! keys and tenant discovery). Plain data: reading it is the glue's job
//! (`gateway/src/credential.rs`), and neither the value nor its source's contents
//! ever appear here.

use std::fmt;

/// Where one credential is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// An environment variable (`token_env`).
    Env(String),
    /// A file (`token_file`); its contents are trimmed.
    File(String),
}

impl SecretSource {
    /// From exactly one of `token_env` and `token_file`; `None` for neither or both.
    pub fn from_fields(env: &Option<String>, file: &Option<String>) -> Option<SecretSource> {
        match (env, file) {
            (Some(e), None) => Some(SecretSource::Env(e.clone())),
            (None, Some(p)) => Some(SecretSource::File(p.clone())),
            _ => None,
        }
    }

    /// The YAML field naming it under `section`: `section.token_env` or `section.token_file`.
    pub fn field(&self, section: &str) -> String {
        match self {
            SecretSource::Env(_) => format!("{section}.token_env"),
            SecretSource::File(_) => format!("{section}.token_file"),
        }
    }
}

/// `environment variable X` or `file /p`: where it is expected, never what it holds.
impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Env(var) => write!(f, "environment variable {var}"),
            SecretSource::File(path) => write!(f, "file {path}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_descriptions() {
        let env = SecretSource::from_fields(&Some("T".into()), &None).unwrap();
        let file = SecretSource::from_fields(&None, &Some("/run/t".into())).unwrap();
        assert_eq!((env.to_string(), env.field("admin")), ("environment variable T".into(), "admin.token_env".into()));
        assert_eq!(
            (file.to_string(), file.field("decryption")),
            ("file /run/t".into(), "decryption.token_file".into())
        );
        assert_eq!(SecretSource::from_fields(&None, &None), None);
        assert_eq!(SecretSource::from_fields(&Some("T".into()), &Some("/t".into())), None);
    }
}
