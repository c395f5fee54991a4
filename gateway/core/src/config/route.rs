//! The `routes:` section: paths or prefixes, methods, upstream, and the policy of each
//! route (public, allow rules, lifetime cap, JWE-only, one-time).

use super::file::FileConfig;
use super::{methods, Errors};
use crate::policy::{AllowRule, OwnerRule};
use crate::route::{parse_template, Route};

/// Validates every route of `f`, pushing problems onto `errs`.
pub(super) fn routes(f: &FileConfig, errs: &mut Errors) -> Vec<Route> {
    let mut routes = Vec::new();
    if f.routes.is_empty() {
        errs.push("routes", "at least one route is required");
    }
    for (i, r) in f.routes.iter().enumerate() {
        let p = format!("routes[{i}]");
        let (template, prefix) = match (&r.path, &r.prefix) {
            (Some(t), None) => (t.as_str(), false),
            (None, Some(t)) => (t.as_str(), true),
            _ => {
                errs.push(&p, "set exactly one of path or prefix");
                ("/", false)
            }
        };
        let segments = parse_template(template).unwrap_or_else(|e| {
            errs.push(format!("{p}.{}", if prefix { "prefix" } else { "path" }), e);
            Vec::new()
        });
        if !f.upstreams.contains_key(&r.upstream) {
            errs.push(format!("{p}.upstream"), format!("no upstream named {:?}", r.upstream));
        }
        let route_methods = methods(&r.methods, &format!("{p}.methods"), errs);
        if r.public && (!r.allow.is_empty() || r.max_token_lifetime.is_some() || r.require_encrypted || r.one_time) {
            errs.push(
                format!("{p}.public"),
                "a public route cannot have allow rules, max_token_lifetime, require_encrypted or one_time",
            );
        }
        if r.require_encrypted && !f.tenants.values().any(|t| t.encryption.is_some()) {
            errs.push(format!("{p}.require_encrypted"), "no tenant has an encryption section, so nothing could pass");
        }
        let mut allow = Vec::new();
        for (j, a) in r.allow.iter().enumerate() {
            let ap = format!("{p}.allow[{j}]");
            if a.role.is_empty() {
                errs.push(format!("{ap}.role"), "must not be empty");
            }
            let rule_methods = methods(&a.methods, &format!("{ap}.methods"), errs);
            for (k, m) in rule_methods.iter().enumerate() {
                if !route_methods.is_empty() && !route_methods.contains(m) {
                    errs.push(format!("{ap}.methods[{k}]"), format!("{m} is not one of the route's methods"));
                }
            }
            let owner = a.owner.as_ref().map(|o| {
                let has_param = segments.iter().any(|s| matches!(s, crate::route::Segment::Param(n) if *n == o.param));
                if !has_param {
                    errs.push(format!("{ap}.owner.param"), format!("the route has no parameter {:?}", o.param));
                }
                OwnerRule { claim: o.claim.clone(), param: o.param.clone() }
            });
            allow.push(AllowRule { role: a.role.clone(), methods: rule_methods, owner });
        }
        routes.push(Route {
            name: r.name.clone().unwrap_or_else(|| format!("route-{i}")),
            segments,
            prefix,
            methods: route_methods,
            upstream: r.upstream.clone(),
            public: r.public,
            allow,
            max_token_lifetime: r.max_token_lifetime.map(|d| d.secs()),
            require_encrypted: r.require_encrypted,
            one_time: r.one_time,
            max_body_bytes: r.max_body_bytes,
        });
    }
    routes
}
