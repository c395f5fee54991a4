//! The `routes:` section: paths or prefixes, methods, upstream, and the policy of each
//! route (public, tenants, allow rules, lifetime cap, JWE-only, one-time). Routes are
//! named in messages by place and name (`routes[5] (name: lab-results)`); a reference
//! to an unknown upstream, tenant or parameter lists the ones there are.

use super::file::FileConfig;
use super::load::Gaps;
use super::{methods, Errors};
use crate::policy::{AllowRule, OwnerRule};
use crate::route::{parse_template, Route, Segment};

/// `a, b, c`, or `none` for an empty list.
fn choices<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let list: Vec<&str> = names.map(String::as_str).collect();
    if list.is_empty() {
        "none".into()
    } else {
        list.join(", ")
    }
}

/// Checks a `tenants:` list against the configured tenants (a tenant left out for
/// an error of its own is not reported again). With `tenant_discovery`, a list may
/// also name a tenant only the sidecar's list has (any well-formed id: the list is not
/// known before start-up); each rebuild of the runtime warns about a named tenant
/// that neither the file nor the sidecar has (`unknown_route_tenants`).
fn tenant_list(list: &Option<Vec<String>>, path: &str, f: &FileConfig, gaps: &Gaps, errs: &mut Errors) -> Vec<String> {
    let Some(list) = list else {
        return Vec::new();
    };
    if list.is_empty() {
        errs.push(path, "must name at least one tenant (leave the field out to accept every tenant)");
    }
    let discovered = f.tenant_discovery.is_some();
    for (k, t) in list.iter().enumerate() {
        let configured = f.tenants.contains_key(t) || gaps.lost("tenants", Some(t));
        if !configured && discovered {
            if let Err(e) = super::tenant::check_tenant_id(t) {
                errs.push(format!("{path}[{k}]"), e);
            }
        } else if !configured {
            errs.push(
                format!("{path}[{k}]"),
                format!(
                    "no tenant named {t:?}; configured tenants: {} (with tenant_discovery, tenants of the sidecar's list may be named too)",
                    choices(f.tenants.keys())
                ),
            );
        }
        if list[..k].contains(t) {
            errs.push(format!("{path}[{k}]"), format!("{t:?} is listed twice"));
        }
    }
    list.clone()
}

/// A segment as matching sees it: parameter names do not matter.
fn shape(s: &Segment) -> Option<&str> {
    match s {
        Segment::Literal(l) => Some(l),
        Segment::Param(_) => None,
    }
}

/// The methods two routes both answer (empty: every method), if any.
fn shared_methods(a: &[String], b: &[String]) -> Option<String> {
    match (a.is_empty(), b.is_empty()) {
        (true, true) => Some("every method".into()),
        (true, false) => Some(b.join(", ")),
        (false, true) => Some(a.join(", ")),
        (false, false) => {
            let both: Vec<&str> = a.iter().filter(|m| b.contains(m)).map(String::as_str).collect();
            (!both.is_empty()).then(|| both.join(", "))
        }
    }
}

/// Validates every route of `f`, pushing problems onto `errs`.
pub(super) fn routes(f: &FileConfig, gaps: &Gaps, errs: &mut Errors) -> Vec<Route> {
    let mut routes: Vec<Route> = Vec::new();
    if f.routes.is_empty() && !gaps.lost("routes", None) {
        errs.push("routes", "at least one route is required");
    }
    let mut labels = Vec::new();
    for (i, r) in f.routes.iter().enumerate() {
        let p = gaps.route(i);
        let (template, prefix) = match (&r.path, &r.prefix) {
            (Some(t), None) => (t.as_str(), false),
            (None, Some(t)) => (t.as_str(), true),
            _ => {
                errs.push(&p, "set exactly one of path or prefix");
                ("/", false)
            }
        };
        let template_field = format!("{p}.{}", if prefix { "prefix" } else { "path" });
        let segments = parse_template(template).unwrap_or_else(|e| {
            errs.push(&template_field, e);
            Vec::new()
        });
        if !f.upstreams.contains_key(&r.upstream) && !gaps.lost("upstreams", Some(&r.upstream)) {
            errs.push(
                format!("{p}.upstream"),
                format!("no upstream named {:?}; configured upstreams: {}", r.upstream, choices(f.upstreams.keys())),
            );
        }
        let route_methods = methods(&r.methods, &format!("{p}.methods"), errs);
        if r.public
            && (!r.allow.is_empty()
                || r.tenants.is_some()
                || r.max_token_lifetime.is_some()
                || r.require_encrypted
                || r.one_time)
        {
            errs.push(
                format!("{p}.public"),
                "a public route cannot have allow rules, tenants, max_token_lifetime, require_encrypted or one_time",
            );
        }
        if r.require_encrypted && !f.tenants.values().any(|t| t.encryption.is_some()) {
            errs.push(format!("{p}.require_encrypted"), "no tenant has an encryption section, so nothing could pass");
        }
        let tenants = tenant_list(&r.tenants, &format!("{p}.tenants"), f, gaps, errs);
        let params: Vec<&String> =
            segments.iter().filter_map(|s| if let Segment::Param(n) = s { Some(n) } else { None }).collect();
        let mut allow = Vec::new();
        for (j, a) in r.allow.iter().enumerate() {
            let ap = format!("{p}.allow[{j}]");
            if a.role.is_empty() {
                errs.push(format!("{ap}.role"), "must not be empty");
            }
            let rule_tenants = tenant_list(&a.tenants, &format!("{ap}.tenants"), f, gaps, errs);
            for (k, t) in rule_tenants.iter().enumerate() {
                let known = f.tenants.contains_key(t) || f.tenant_discovery.is_some();
                if !tenants.is_empty() && !tenants.contains(t) && known {
                    errs.push(format!("{ap}.tenants[{k}]"), format!("{t:?} is not one of the route's tenants"));
                }
            }
            let rule_methods = methods(&a.methods, &format!("{ap}.methods"), errs);
            for (k, m) in rule_methods.iter().enumerate() {
                if !route_methods.is_empty() && !route_methods.contains(m) {
                    errs.push(format!("{ap}.methods[{k}]"), format!("{m} is not one of the route's methods"));
                }
            }
            let owner = a.owner.as_ref().map(|o| {
                if !params.contains(&&o.param) {
                    errs.push(
                        format!("{ap}.owner.param"),
                        format!(
                            "the route has no parameter {:?}; its parameters: {}",
                            o.param,
                            choices(params.iter().copied())
                        ),
                    );
                }
                OwnerRule { claim: o.claim.clone(), param: o.param.clone() }
            });
            allow.push(AllowRule { role: a.role.clone(), tenants: rule_tenants, methods: rule_methods, owner });
        }
        let name = r.name.clone().unwrap_or_else(|| format!("route-{i}"));
        if name.is_empty() {
            errs.push(format!("{p}.name"), "must not be empty");
        } else if let Some(k) = routes.iter().position(|o| o.name == name) {
            errs.push(format!("{p}.name"), format!("{name:?} is already the name of {}", labels[k]));
        }
        if r.path.is_some() != r.prefix.is_some() && (!segments.is_empty() || template == "/") {
            let same = routes.iter().enumerate().find_map(|(k, o)| {
                let same_path = o.prefix == prefix && o.segments.iter().map(shape).eq(segments.iter().map(shape));
                let shared = shared_methods(&o.methods, &route_methods)?;
                same_path.then_some((k, shared))
            });
            if let Some((k, shared)) = same {
                errs.push(
                    template_field,
                    format!("same path and method ({shared}) as {}, which is matched first", labels[k]),
                );
            }
        }
        let fields = super::traffic::RouteFields {
            rate_limits: &r.rate_limits,
            cors: r.cors.as_ref(),
            response_headers: r.response_headers.as_ref(),
            public: r.public,
        };
        let traffic = super::traffic::route(fields, &p, errs);
        labels.push(p);
        routes.push(Route {
            name,
            segments,
            prefix,
            methods: route_methods,
            upstream: r.upstream.clone(),
            public: r.public,
            tenants,
            allow,
            max_token_lifetime: r.max_token_lifetime.map(|d| d.secs()),
            require_encrypted: r.require_encrypted,
            one_time: r.one_time,
            max_body_bytes: r.max_body_bytes,
            traffic,
        });
    }
    routes
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn errors(routes: &str) -> Vec<String> {
        let yaml = format!(
            "listen: 127.0.0.1:1\nadmin_listen: 127.0.0.1:2\nkeys: {{ url_template: \"http://k/{{tenant}}\" }}\n\
             tenants:\n  a: {{ issuer: i, audiences: [x], algorithms: [ES256] }}\n  b: {{ issuer: i, audiences: [x], algorithms: [ES256] }}\n\
             upstreams:\n  u: {{ peers: [\"127.0.0.1:3\"] }}\nroutes:\n{routes}"
        );
        match Config::from_yaml(&yaml) {
            Ok(_) => Vec::new(),
            Err(e) => e.0.into_iter().map(|f| format!("{}: {}", f.path, f.message)).collect(),
        }
    }

    /// Tenant lists, duplicates and names: each case and the errors it must give
    /// (none for the ones that are fine).
    #[test]
    fn route_checks_table() {
        let table: &[(&str, &[&str])] = &[
            ("  - { path: /x, upstream: u, tenants: [a], allow: [{ role: r, tenants: [a] }] }\n", &[]),
            ("  - { path: /x, upstream: u, tenants: [] }\n", &["routes[0].tenants: must name at least one tenant"]),
            (
                "  - { name: n, path: /x, upstream: u, tenants: [a, c, a] }\n",
                &[
                    "routes[0] (name: n).tenants[1]: no tenant named \"c\"; configured tenants: a, b",
                    "routes[0] (name: n).tenants[2]: \"a\" is listed twice",
                ],
            ),
            (
                "  - { path: /x, upstream: u, tenants: [a], allow: [{ role: r, tenants: [b] }] }\n",
                &["routes[0].allow[0].tenants[0]: \"b\" is not one of the route's tenants"],
            ),
            (
                "  - { path: /x, upstream: u, public: true, tenants: [a] }\n",
                &["routes[0].public: a public route cannot"],
            ),
            // Same path and a method in common: the later route is shadowed.
            (
                "  - { path: \"/p/{id}\", upstream: u, methods: [GET] }\n  - { path: \"/p/{pid}\", upstream: u }\n",
                &["routes[1].path: same path and method (GET) as routes[0], which is matched first"],
            ),
            // Other methods, or a prefix beside a path, are not duplicates.
            ("  - { path: /p, upstream: u, methods: [GET] }\n  - { path: /p, upstream: u, methods: [PUT] }\n", &[]),
            ("  - { path: /p, upstream: u }\n  - { prefix: /p, upstream: u }\n", &[]),
            (
                "  - { prefix: /, upstream: u }\n  - { name: all, prefix: /, upstream: u }\n",
                &["routes[1] (name: all).prefix: same path and method (every method) as routes[0]"],
            ),
            (
                "  - { name: n, path: /a, upstream: u }\n  - { name: n, path: /b, upstream: u }\n",
                &["routes[1] (name: n).name: \"n\" is already the name of routes[0] (name: n)"],
            ),
            (
                "  - { name: route-1, path: /a, upstream: u }\n  - { path: /b, upstream: u }\n",
                &["routes[1].name: \"route-1\" is already the name of routes[0] (name: route-1)"],
            ),
        ];
        for (routes, want) in table {
            let errs = errors(routes);
            assert_eq!(errs.len(), want.len(), "{routes}: {errs:#?}");
            for w in *want {
                assert!(errs.iter().any(|e| e.starts_with(w)), "{routes}: missing {w:?} in {errs:#?}");
            }
        }
    }
}
