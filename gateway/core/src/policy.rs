//! Route policy: which tenants a route serves, which roles may call it with which
//! methods (optionally only for some tenants), and owner rules ("a patient reads only
//! their own records"). [`authorize`] is the only way to get
//! a [`Permit`], so forwarding code cannot skip it.

use crate::error::{Denial, PolicyError};
use crate::route::RouteMatch;
pub use crate::route::{AllowRule, OwnerRule};
use crate::verify::VerifiedToken;
use std::sync::Arc;

/// Evidence that a request passed authentication (unless public) and policy.
#[derive(Debug, Clone)]
pub struct Permit {
    route: RouteMatch,
    token: Option<Arc<VerifiedToken>>,
}

impl Permit {
    /// The matched route.
    pub fn route(&self) -> &RouteMatch {
        &self.route
    }

    /// The verified token, `None` on a public route.
    pub fn token(&self) -> Option<&Arc<VerifiedToken>> {
        self.token.as_ref()
    }
}

/// A permit for a public route: no token involved. Crate-private: only the engine,
/// having checked that the matched route is public, grants one.
pub(crate) fn permit_public(route: RouteMatch) -> Permit {
    debug_assert!(route.route.public, "a public permit for a protected route");
    Permit { route, token: None }
}

/// Applies the route's lifetime cap, tenant list and allow rules to a verified token.
/// A rule passes when it names one of the caller's roles and, where set, the token's
/// tenant, the method and the owner; when none passes, the refusal is that of the
/// rule that got furthest (owner over method over tenant over role).
pub fn authorize(
    route: RouteMatch,
    token: Arc<VerifiedToken>,
    method: &str,
    role_claim: &str,
) -> Result<Permit, Denial> {
    let r = &route.route;
    if let Some(max) = r.max_token_lifetime {
        token.claims().check_lifetime(max).map_err(Denial::Auth)?;
    }
    let tenant = token.tenant().id.as_str();
    let serves = |tenants: &[String]| tenants.is_empty() || tenants.iter().any(|t| t == tenant);
    if !serves(&r.tenants) {
        return Err(Denial::Policy(PolicyError::Tenant));
    }
    if r.allow.is_empty() {
        return Ok(Permit { route, token: Some(token) });
    }
    let caller_roles = token.claims().roles(role_claim);
    let has_role = |role: &str| caller_roles.clone().is_some_and(|mut roles| roles.any(|r| r == role));
    let mut best = PolicyError::Role;
    for rule in r.allow.iter().filter(|rule| has_role(&rule.role)) {
        if !serves(&rule.tenants) {
            best = best.max_progress(PolicyError::Tenant);
            continue;
        }
        if !rule.methods.is_empty() && !rule.methods.iter().any(|m| m == method) {
            best = best.max_progress(PolicyError::Method);
            continue;
        }
        if let Some(owner) = &rule.owner {
            let claim = token.claims().str(&owner.claim);
            if claim.is_none() || claim != route.param(&owner.param) {
                best = best.max_progress(PolicyError::Owner);
                continue;
            }
        }
        return Ok(Permit { route, token: Some(token) });
    }
    Err(Denial::Policy(best))
}

impl PolicyError {
    /// The refusal that got furthest through the rules: owner over method over tenant
    /// over role.
    fn max_progress(self, other: PolicyError) -> PolicyError {
        let rank = |e: PolicyError| match e {
            PolicyError::Role => 0,
            PolicyError::Tenant => 1,
            PolicyError::Method => 2,
            PolicyError::Owner => 3,
        };
        if rank(other) > rank(self) {
            other
        } else {
            self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alg::Algorithm;
    use crate::jwe::store::DecryptionStore;
    use crate::keystore::{KeyStore, RefreshPolicy};
    use crate::route::{parse_template, Route, Router};
    use crate::tenant::{KeySource, Tenant};
    use crate::verify::{Verifier, VerifyOptions};
    use crate::KeySet;
    use serde_json::{json, Value};
    use testkit::TestKey;

    const NOW: i64 = 1_800_000_000;
    const POLICY: RefreshPolicy =
        RefreshPolicy { floor: 30, ceiling: 3600, default_max_age: 300, unknown_kid_cooldown: 10, max_stale: 86400 };

    fn rule(role: &str, tenants: &[&str], methods: &[&str], owner: Option<(&str, &str)>) -> AllowRule {
        AllowRule {
            role: role.into(),
            tenants: tenants.iter().map(|t| t.to_string()).collect(),
            methods: methods.iter().map(|m| m.to_string()).collect(),
            owner: owner.map(|(claim, param)| OwnerRule { claim: claim.into(), param: param.into() }),
        }
    }

    fn route(name: &str, template: &str, tenants: &[&str], allow: Vec<AllowRule>) -> Route {
        Route {
            name: name.into(),
            segments: parse_template(template).unwrap(),
            prefix: false,
            methods: vec![],
            upstream: "u".into(),
            public: false,
            tenants: tenants.iter().map(|t| t.to_string()).collect(),
            allow,
            max_token_lifetime: None,
            require_encrypted: false,
            one_time: false,
            max_body_bytes: None,
            traffic: Default::default(),
        }
    }

    struct Fixture {
        verifier: Verifier,
        keys: KeyStore,
        dkeys: DecryptionStore,
        key: TestKey,
        router: Router,
    }

    fn fixture() -> Fixture {
        let key = TestKey::load("ec-a.pem", "es-1", jsonwebtoken::Algorithm::ES256);
        let tenant = |id: &str| Tenant {
            id: id.into(),
            issuer: format!("https://issuer.test/{id}"),
            audiences: vec!["api".into()],
            algorithms: vec![Algorithm::ES256],
            required: true,
            required_claims: vec![],
            keys: KeySource::Url("http://unused".into()),
            encryption: None,
        };
        let ids = ["hospital-a", "hospital-b"];
        let verifier = Verifier::new(
            VerifyOptions { tenant_claim: "tenant_id".into(), leeway: 30, max_token_size: 8192 },
            ids.iter().map(|id| tenant(id)).collect(),
            0,
        );
        let keys = KeyStore::new(ids, POLICY);
        for id in ids {
            keys.install(id, KeySet::from_jwks(testkit::jwks(&[&key]).as_bytes()).unwrap(), NOW, None);
        }
        let router = Router::new(vec![
            route("open", "/open", &[], vec![]),
            route("b-only", "/b-only", &["hospital-b"], vec![]),
            route("b-lab", "/b-lab", &["hospital-b"], vec![rule("lab", &[], &[], None)]),
            route(
                "results",
                "/results/{patient_id}",
                &[],
                vec![
                    rule("lab", &["hospital-b"], &[], None),
                    rule("doctor", &[], &["GET"], None),
                    rule("patient", &[], &["GET"], Some(("sub", "patient_id"))),
                ],
            ),
        ]);
        Fixture { verifier, keys, dkeys: DecryptionStore::new(std::iter::empty(), POLICY), key, router }
    }

    fn decide(f: &Fixture, tenant: &str, role: Value, method: &str, path: &str) -> Result<(), &'static str> {
        let claims = json!({"iss": format!("https://issuer.test/{tenant}"), "aud": "api", "sub": "p-1",
            "tenant_id": tenant, "role": role, "iat": NOW - 10, "exp": NOW + 600});
        let token = f.verifier.verify(&f.key.mint(&claims), &f.keys, &f.dkeys, NOW).expect("verifies");
        let matched = f.router.find(method, path).expect("a route");
        authorize(matched, token, method, "role").map(|_| ()).map_err(|d| d.reason())
    }

    /// Every policy outcome: route tenant lists, rule tenant lists, roles (string or
    /// array), methods and owner rules, and which refusal wins when several rules fail.
    #[test]
    fn authorization_table() {
        let f = fixture();
        type Case = (&'static str, Value, &'static str, &'static str, Result<(), &'static str>);
        let table: &[Case] = &[
            // No tenant list, no rules: any verified token of any tenant.
            ("hospital-a", json!("anyone"), "GET", "/open", Ok(())),
            // A tenant-scoped route refuses other tenants, whatever the role.
            ("hospital-b", json!("x"), "GET", "/b-only", Ok(())),
            ("hospital-a", json!("x"), "GET", "/b-only", Err("forbidden_tenant")),
            ("hospital-a", json!("lab"), "POST", "/b-lab", Err("forbidden_tenant")),
            ("hospital-b", json!("lab"), "POST", "/b-lab", Ok(())),
            ("hospital-b", json!("nurse"), "POST", "/b-lab", Err("forbidden_role")),
            // A rule scoped to one tenant: a lab of another tenant is refused for its tenant.
            ("hospital-b", json!("lab"), "DELETE", "/results/p-9", Ok(())),
            ("hospital-a", json!("lab"), "GET", "/results/p-9", Err("forbidden_tenant")),
            // Unscoped rules serve every tenant; methods and owners still apply.
            ("hospital-a", json!("doctor"), "GET", "/results/p-9", Ok(())),
            ("hospital-a", json!("doctor"), "PUT", "/results/p-9", Err("forbidden_method")),
            ("hospital-a", json!("patient"), "GET", "/results/p-1", Ok(())),
            ("hospital-a", json!("patient"), "GET", "/results/p-9", Err("forbidden_owner")),
            ("hospital-a", json!("patient"), "PUT", "/results/p-1", Err("forbidden_method")),
            ("hospital-a", json!("visitor"), "GET", "/results/p-1", Err("forbidden_role")),
            ("hospital-a", json!(null), "GET", "/results/p-1", Err("forbidden_role")),
            // Several roles: the rule that got furthest names the refusal.
            ("hospital-a", json!(["lab", "patient"]), "GET", "/results/p-9", Err("forbidden_owner")),
            ("hospital-a", json!(["lab", "doctor"]), "PUT", "/results/p-9", Err("forbidden_method")),
            ("hospital-a", json!(["visitor", "lab"]), "GET", "/results/p-9", Err("forbidden_tenant")),
            ("hospital-a", json!(["lab", "doctor"]), "GET", "/results/p-9", Ok(())),
        ];
        for (tenant, role, method, path, want) in table {
            let got = decide(&f, tenant, role.clone(), method, path);
            assert_eq!(&got, want, "{tenant} {role} {method} {path}");
        }
    }
}
