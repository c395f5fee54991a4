//! Tenant discovery: the `tenant_discovery:` section, the tenant list the sidecar
//! serves on its gateway channel (`GET /internal/v1/tenants`, one contract type both
//! sides use), and the pure merge of a listed set into the YAML tenants.
//!
//! ```ignore
//! let list: TenantList = serde_json::from_slice(&body)?;
//! let merged = discovery::merge(&mut config.tenants, &list.tenants, &settings);
//! ```
//!
//! A listed tenant becomes a [`Tenant`] whose keys come from `keys.url_template` and,
//! when it has encryption keys, whose decryption keys come from
//! `decryption.url_template`. A YAML tenant with the same id wins.

use super::file::FileConfig;
use super::tenant::check_tenant_id;
use super::{check_url, credential, Errors};
use crate::alg::Algorithm;
use crate::jwe::{JweAllow, KeyManagement};
use crate::secret::SecretSource;
use crate::tenant::{DecryptionSource, Encryption, KeySource, Tenant};
use std::time::Duration;

/// Validated `tenant_discovery:` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoverySettings {
    /// Tenant list URL.
    pub url: String,
    /// Where the channel credential comes from.
    pub token: SecretSource,
    /// Poll interval.
    pub interval: Duration,
    /// `keys.url_template`: where a listed tenant's JWKS comes from.
    pub keys_url_template: String,
    /// `decryption.url_template` and its credential, for listed tenants with
    /// encryption keys (absent: they accept no JWE).
    pub decryption: Option<(String, SecretSource)>,
}

/// The tenant list the sidecar serves (`GET /internal/v1/tenants`): the contract
/// type of `medgate-channel`, which both sides use.
pub use medgate_channel::tenant::{ListedTenant, TenantList};

/// Shortest accepted poll interval.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// Validates `tenant_discovery:` (it needs `keys.url_template`).
pub(super) fn settings(f: &FileConfig, errs: &mut Errors) -> Option<DiscoverySettings> {
    let d = f.tenant_discovery.as_ref()?;
    check_url(&d.url, "tenant_discovery.url", errs);
    let interval = d.interval.map_or(Duration::from_secs(5), |d| d.0);
    if !(MIN_INTERVAL..=Duration::from_secs(3600)).contains(&interval) {
        errs.push("tenant_discovery.interval", "between 100ms and 1h");
    }
    let Some(keys_url_template) = f.keys.url_template.clone() else {
        errs.push("tenant_discovery", "discovered tenants take their keys from keys.url_template: set it");
        return None;
    };
    let token = credential(&d.token_env, &d.token_file, "tenant_discovery", errs)?;
    let decryption = f.decryption.as_ref().and_then(|dec| {
        let tpl = dec.url_template.clone()?;
        // Neither or both is reported by the decryption section's own check.
        let token = SecretSource::from_fields(&dec.token_env, &dec.token_file)?;
        Some((tpl, token))
    });
    Some(DiscoverySettings { url: d.url.clone(), token, interval, keys_url_template, decryption })
}

/// A listed tenant as a gateway tenant, or why it cannot be one.
pub fn tenant(t: &ListedTenant, s: &DiscoverySettings) -> Result<Tenant, String> {
    check_tenant_id(&t.id)?;
    if t.issuer.is_empty() || t.audiences.is_empty() || t.audiences.iter().any(String::is_empty) {
        return Err("an empty issuer or audience".into());
    }
    let algorithms = t
        .algorithms
        .iter()
        .map(|a| a.parse::<Algorithm>().map_err(|()| format!("algorithm {a:?} is not supported")))
        .collect::<Result<Vec<_>, _>>()?;
    if algorithms.is_empty() {
        return Err("no signing algorithm".into());
    }
    let encryption = match (&t.enc_alg, &s.decryption) {
        (Some(alg), Some((tpl, token))) => {
            let km = KeyManagement::parse(alg).ok_or_else(|| format!("enc_alg {alg:?} is not supported"))?;
            Some(Encryption {
                allow: JweAllow { key_management: vec![km], ..JweAllow::default() },
                allow_bare_claims: false,
                keys: DecryptionSource::Url { url: tpl.replace("{tenant}", &t.id), token: token.clone() },
            })
        }
        _ => None,
    };
    Ok(Tenant {
        id: t.id.clone(),
        issuer: t.issuer.clone(),
        audiences: t.audiences.clone(),
        algorithms,
        // Readiness never waits on a tenant the gateway was not configured with.
        required: false,
        required_claims: Vec::new(),
        keys: KeySource::Url(s.keys_url_template.replace("{tenant}", &t.id)),
        encryption,
    })
}

/// What [`merge`] left out of a tenant list.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Merged {
    /// Listed ids a YAML tenant of the same id took precedence over.
    pub overridden: Vec<String>,
    /// Listed tenants that cannot be served, each with why (named, escaped).
    pub left_out: Vec<String>,
}

/// Adds the listed tenants to `tenants` (the YAML ones); a YAML tenant with the same
/// id wins. Returns what was left out.
pub fn merge(tenants: &mut Vec<Tenant>, listed: &[ListedTenant], s: &DiscoverySettings) -> Merged {
    let mut merged = Merged::default();
    for l in listed {
        if tenants.iter().any(|t| t.id == l.id) {
            merged.overridden.push(l.id.clone());
            continue;
        }
        match tenant(l, s) {
            Ok(t) => tenants.push(t),
            Err(why) => merged.left_out.push(format!("tenant {:?}: {why}", l.id.escape_debug().to_string())),
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn yaml(section: &str, decryption: &str) -> String {
        format!(
            "listen: 127.0.0.1:1\nadmin_listen: 127.0.0.1:2\nkeys:\n  url_template: http://k/{{tenant}}\n\
             {decryption}tenants:\n  a:\n    issuer: i\n    audiences: [x]\n    algorithms: [ES256]\n\
             upstreams:\n  u:\n    peers: [\"127.0.0.1:3\"]\nroutes:\n  - prefix: /\n    upstream: u\n{section}"
        )
    }

    fn listed(id: &str, enc: Option<&str>) -> ListedTenant {
        ListedTenant {
            id: id.into(),
            issuer: format!("https://kms/{id}"),
            audiences: vec!["api".into()],
            algorithms: vec!["ES256".into()],
            enc_alg: enc.map(Into::into),
        }
    }

    #[test]
    fn the_section_is_validated_with_field_paths() {
        let ok = "tenant_discovery:\n  url: http://s/internal/v1/tenants\n  token_env: T\n  interval: 1s\n";
        let c = Config::from_yaml(&yaml(ok, "")).unwrap();
        let s = c.tenant_discovery.unwrap();
        assert_eq!((s.interval, s.keys_url_template.as_str()), (Duration::from_secs(1), "http://k/{tenant}"));
        let bad = "tenant_discovery:\n  url: s\n  interval: 1ms\n";
        let errs: Vec<String> = Config::from_yaml(&yaml(bad, "")).unwrap_err().0.into_iter().map(|e| e.path).collect();
        assert_eq!(errs, ["tenant_discovery.url", "tenant_discovery.interval", "tenant_discovery"]);
        let unknown = "tenant_discovery:\n  url: http://s\n  token_env: T\n  every: 1s\n";
        assert!(Config::from_yaml(&yaml(unknown, "")).unwrap_err().to_string().starts_with("tenant_discovery"));
    }

    #[test]
    fn listed_tenants_join_the_yaml_ones_which_win_on_a_clash() {
        let dec = "decryption:\n  url_template: http://s/d/{tenant}\n  token_env: T\n";
        let section = "tenant_discovery:\n  url: http://s/t\n  token_env: T\n";
        let mut c = Config::from_yaml(&yaml(section, dec)).unwrap();
        let s = c.tenant_discovery.clone().unwrap();
        let mut clash = listed("a", None);
        clash.issuer = "evil".into();
        let bad = ListedTenant { algorithms: vec!["HS256".into()], ..listed("b", None) };
        let merged = merge(&mut c.tenants, &[clash, listed("lab", Some("RSA-OAEP-256")), bad], &s);
        assert_eq!(merged.overridden, ["a"]);
        assert_eq!(merged.left_out.len(), 1);
        assert!(merged.left_out[0].starts_with("tenant \"b\"") && merged.left_out[0].contains("HS256"), "{merged:?}");
        let ids: Vec<&str> = c.tenants.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["a", "lab"]);
        assert_eq!(c.tenants[0].issuer, "i", "the YAML tenant is kept as configured");
        let lab = &c.tenants[1];
        assert_eq!(lab.keys, KeySource::Url("http://k/lab".into()));
        assert!(!lab.required);
        let enc = lab.encryption.as_ref().expect("enc keys: accepts JWE");
        assert_eq!(enc.allow.key_management, [KeyManagement::RsaOaep256]);
        assert!(matches!(&enc.keys, DecryptionSource::Url { url, .. } if url == "http://s/d/lab"));
        assert!(tenant(&listed("x/y", None), &s).is_err(), "ids are checked as YAML ones are");
    }
}
