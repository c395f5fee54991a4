//! The `tenants:` and `decryption:` sections: issuers, audiences, algorithms, key
//! sources and JWE settings, each problem reported with its field path.

use super::file::FileConfig;
use super::{allowlist, check_url, credential, Errors};
use crate::alg::Algorithm;
use crate::jwe::{ContentEncryption, JweAllow, KeyManagement};
use crate::tenant::{DecryptionSource, Encryption, KeySource, Tenant};

/// Validates every tenant of `f`, pushing problems onto `errs`.
pub(super) fn tenants(f: &FileConfig, errs: &mut Errors) -> Vec<Tenant> {
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
    if f.tenants.is_empty() {
        errs.push("tenants", "at least one tenant is required");
    }
    for (id, t) in &f.tenants {
        let p = format!("tenants.{id}");
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
