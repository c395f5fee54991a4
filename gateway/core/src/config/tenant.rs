//! The `tenants:` and `decryption:` sections: issuers, audiences, algorithms, key
//! sources and JWE settings, each problem reported with its field path.

use super::file::FileConfig;
use super::load::Gaps;
use super::{allowlist, check_url, credential, Errors};
use crate::alg::Algorithm;
use crate::jwe::{ContentEncryption, JweAllow, KeyManagement};
use crate::tenant::{DecryptionSource, Encryption, KeySource, Tenant};

/// Longest tenant id: `<tenant>-<rest>` key ids (the sidecar's) then fit well under
/// the 256-byte `kid` cap.
pub const MAX_TENANT_ID_LEN: usize = 64;

/// A tenant id is 1..=64 of `[A-Za-z0-9._-]`: it names metric labels, log fields and
/// `kid` prefixes, and is substituted into key URLs, so nothing else is allowed.
pub(crate) fn check_tenant_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_TENANT_ID_LEN {
        return Err(format!(
            "tenant id must be 1 to {MAX_TENANT_ID_LEN} characters (this one has {})",
            id.chars().count()
        ));
    }
    if let Some(c) = id.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return Err(format!("tenant id may hold only A-Z, a-z, 0-9, '.', '_' and '-', not {c:?}"));
    }
    Ok(())
}

/// The id as shown in a field path: escaped, and cut after 64 characters.
fn shown_id(id: &str) -> String {
    let mut shown: String = id.chars().take(MAX_TENANT_ID_LEN).collect::<String>().escape_debug().collect();
    if id.chars().count() > MAX_TENANT_ID_LEN {
        shown.push('…');
    }
    shown
}

/// Validates every tenant of `f`, pushing problems onto `errs`.
pub(super) fn tenants(f: &FileConfig, gaps: &Gaps, errs: &mut Errors) -> Vec<Tenant> {
    let k = &f.keys;
    if let Some(t) = &k.url_template {
        if !t.contains("{tenant}") {
            errs.push("keys.url_template", "must contain {tenant}");
        }
        check_url(t, "keys.url_template", errs);
    }

    let decryption_token = f.decryption.as_ref().and_then(|d| {
        if let Some(t) = &d.url_template {
            if !t.contains("{tenant}") {
                errs.push("decryption.url_template", "must contain {tenant}");
            }
            check_url(t, "decryption.url_template", errs);
        }
        credential(&d.token_env, &d.token_file, "decryption", errs)
    });

    let mut tenants = Vec::new();
    if f.tenants.is_empty() && !gaps.lost("tenants", None) {
        errs.push("tenants", "at least one tenant is required");
    }
    for (id, t) in &f.tenants {
        let p = format!("tenants.{id}");
        if let Err(why) = check_tenant_id(id) {
            errs.push(format!("tenants.{}", shown_id(id)), why);
        }
        if t.issuer.is_empty() {
            errs.push(format!("{p}.issuer"), "must not be empty");
        }
        if t.audiences.is_empty() {
            errs.push(format!("{p}.audiences"), "at least one audience is required");
        }
        let mut algorithms = Vec::new();
        if t.algorithms.is_empty() {
            errs.push(format!("{p}.algorithms"), "at least one algorithm is required");
        }
        for (i, a) in t.algorithms.iter().enumerate() {
            match a.parse::<Algorithm>() {
                Ok(a) => algorithms.push(a),
                Err(()) => errs.push(
                    format!("{p}.algorithms[{i}]"),
                    format!("{a:?} is not allowed: use RS256, PS256, ES256 or EdDSA"),
                ),
            }
        }
        let keys = match &t.keys {
            Some(src) => match (&src.url, &src.file) {
                (Some(u), None) => {
                    check_url(u, &format!("{p}.keys.url"), errs);
                    KeySource::Url(u.clone())
                }
                (None, Some(path)) => KeySource::File { path: path.clone(), kid: src.kid.clone() },
                _ => {
                    errs.push(format!("{p}.keys"), "set exactly one of url or file");
                    KeySource::Url(String::new())
                }
            },
            None => match &k.url_template {
                Some(tpl) => KeySource::Url(tpl.replace("{tenant}", id)),
                None => {
                    errs.push(format!("{p}.keys"), "no key source: set keys here or keys.url_template");
                    KeySource::Url(String::new())
                }
            },
        };
        let encryption = t.encryption.as_ref().map(|e| {
            let ep = format!("{p}.encryption");
            let mut allow = JweAllow::default();
            if !e.key_management.is_empty() {
                let names = KeyManagement::ALL.map(KeyManagement::as_str);
                let path = format!("{ep}.key_management");
                allow.key_management = allowlist(&e.key_management, &path, KeyManagement::parse, &names, errs);
            }
            if !e.content_encryption.is_empty() {
                let names = ContentEncryption::ALL.map(ContentEncryption::as_str);
                let path = format!("{ep}.content_encryption");
                allow.content = allowlist(&e.content_encryption, &path, ContentEncryption::parse, &names, errs);
            }
            let url_source = |url: String, errs: &mut Errors| match &decryption_token {
                Some(token) => DecryptionSource::Url { url, token: token.clone() },
                None => {
                    errs.push(
                        format!("{ep}.keys"),
                        "a decryption key URL needs the decryption section's token_env or token_file",
                    );
                    DecryptionSource::File(String::new())
                }
            };
            let keys = match e.keys.as_ref().map(|k| (&k.url, &k.file)) {
                Some((Some(u), None)) => {
                    check_url(u, &format!("{ep}.keys.url"), errs);
                    url_source(u.clone(), errs)
                }
                Some((None, Some(path))) => DecryptionSource::File(path.clone()),
                Some(_) => {
                    errs.push(format!("{ep}.keys"), "set exactly one of url or file");
                    DecryptionSource::File(String::new())
                }
                None => match f.decryption.as_ref().and_then(|d| d.url_template.as_ref()) {
                    Some(tpl) => url_source(tpl.replace("{tenant}", id), errs),
                    None => {
                        errs.push(
                            format!("{ep}.keys"),
                            "no decryption key source: set keys here or decryption.url_template",
                        );
                        DecryptionSource::File(String::new())
                    }
                },
            };
            Encryption { allow, allow_bare_claims: e.allow_bare_claims, keys }
        });
        tenants.push(Tenant {
            id: id.clone(),
            issuer: t.issuer.clone(),
            audiences: t.audiences.clone(),
            algorithms,
            required: t.required,
            required_claims: t.required_claims.clone(),
            keys,
            encryption,
        });
    }
    tenants
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, DEFAULT_MAX_FETCH_BYTES};

    fn config(tenant: &str, keys: &str) -> String {
        format!(
            "listen: 127.0.0.1:1\nadmin_listen: 127.0.0.1:2\nkeys:\n  url_template: http://k/{{tenant}}\n{keys}\
             tenants:\n  {tenant:?}:\n    issuer: i\n    audiences: [a]\n    algorithms: [ES256]\n\
             upstreams:\n  u:\n    peers: [\"127.0.0.1:3\"]\nroutes:\n  - prefix: /\n    upstream: u\n"
        )
    }

    fn errors(yaml: &str) -> Vec<(String, String)> {
        match Config::from_yaml(yaml) {
            Ok(_) => Vec::new(),
            Err(e) => e.0.into_iter().map(|f| (f.path, f.message)).collect(),
        }
    }

    #[test]
    fn tenant_ids_of_the_allowed_shape_pass() {
        let longest = "a".repeat(64);
        for id in ["t1", "hospital-a", "Hospital_B.eu", "0", longest.as_str()] {
            assert_eq!(errors(&config(id, "")), Vec::new(), "{id}");
        }
    }

    /// A tenant id longer than 64 characters (so `<tenant>-...` kids would not fit
    /// the 256-byte `kid` cap), empty, or with other characters is refused, named
    /// by its field path.
    #[test]
    fn long_empty_or_odd_tenant_ids_are_refused_with_their_path() {
        let long = "a".repeat(65);
        let errs = errors(&config(&long, ""));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].0, format!("tenants.{}…", "a".repeat(64)));
        assert_eq!(errs[0].1, "tenant id must be 1 to 64 characters (this one has 65)");
        let huge = "b".repeat(1000); // YAML caps implicit keys at 1024 characters
        let errs = errors(&config(&huge, ""));
        assert!(errs[0].0.len() < 80 && errs[0].1.contains("1000"), "{errs:?}");
        assert_eq!(errors(&config("", ""))[0].1, "tenant id must be 1 to 64 characters (this one has 0)");
        for (id, bad) in [("a/b", '/'), ("a b", ' '), ("t{x}", '{'), ("é", 'é'), ("a\nb", '\n'), ("a?x=1", '?')] {
            let errs = errors(&config(id, ""));
            assert_eq!(errs.len(), 1, "{id:?}: {errs:?}");
            assert_eq!(errs[0].1, format!("tenant id may hold only A-Z, a-z, 0-9, '.', '_' and '-', not {bad:?}"));
            assert!(!errs[0].0.contains('\n'), "the path is escaped: {:?}", errs[0].0);
        }
    }

    #[test]
    fn fetch_size_and_time_caps() {
        let ok = Config::from_yaml(&config("t1", "")).unwrap();
        assert_eq!(ok.keys.max_fetch_bytes, DEFAULT_MAX_FETCH_BYTES);
        assert_eq!(ok.keys.fetch_timeout, std::time::Duration::from_secs(2));
        let set = Config::from_yaml(&config("t1", "  max_fetch_bytes: 4096\n  fetch_timeout: 300ms\n")).unwrap();
        assert_eq!((set.keys.max_fetch_bytes, set.keys.fetch_timeout.as_millis()), (4096, 300));
        for (keys, path) in [
            ("  max_fetch_bytes: 10\n", "keys.max_fetch_bytes"),
            ("  max_fetch_bytes: 1000000000\n", "keys.max_fetch_bytes"),
            ("  fetch_timeout: 0s\n", "keys.fetch_timeout"),
            ("  fetch_timeout: 10m\n", "keys.fetch_timeout"),
        ] {
            let errs = errors(&config("t1", keys));
            assert_eq!(errs.iter().map(|e| e.0.as_str()).collect::<Vec<_>>(), [path], "{keys}");
        }
    }
}
