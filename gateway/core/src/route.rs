//! Routes: method and path matching against exact templates (`/patients/{id}/records`)
//! or segment-wise prefixes, returning the route and its captured path parameters.
//! Paths that a backend could normalise differently (`..`, `.`, `//`, encoded dots or
//! slashes) are refused before matching.

use std::sync::Arc;

/// Owner rule: the claim's value must equal the path parameter's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerRule {
    /// Claim name, e.g. `sub`.
    pub claim: String,
    /// Route parameter name, e.g. `patient_id`.
    pub param: String,
}

/// One allow rule of a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowRule {
    /// Role granted.
    pub role: String,
    /// Tenants this rule applies to; empty means every tenant the route serves.
    pub tenants: Vec<String>,
    /// Methods for this role; empty means every method of the route.
    pub methods: Vec<String>,
    /// Optional owner rule.
    pub owner: Option<OwnerRule>,
}

/// One path segment of a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Must equal this text.
    Literal(String),
    /// Captures one segment under this name.
    Param(String),
}

/// A validated route.
#[derive(Debug)]
pub struct Route {
    /// Name for logs and metrics.
    pub name: String,
    /// Path segments.
    pub segments: Vec<Segment>,
    /// Prefix route: more segments may follow.
    pub prefix: bool,
    /// Upper-case methods; empty means all.
    pub methods: Vec<String>,
    /// Upstream pool name.
    pub upstream: String,
    /// No token needed.
    pub public: bool,
    /// Tenants whose tokens this route accepts; empty means every configured tenant.
    pub tenants: Vec<String>,
    /// Allow rules; empty on a protected route means any valid token of the tenant.
    pub allow: Vec<AllowRule>,
    /// Maximum `exp - iat` in seconds.
    pub max_token_lifetime: Option<i64>,
    /// Only encrypted (JWE) tokens are accepted.
    pub require_encrypted: bool,
    /// Each `jti` passes once.
    pub one_time: bool,
    /// Largest request body, when the route sets its own (else `http.max_body_bytes`).
    pub max_body_bytes: Option<u64>,
    /// Rate limits, CORS and response headers.
    pub traffic: crate::traffic::RouteTraffic,
}

/// A matched route with its path parameters. Only [`Router::find`] makes one, and its
/// fields are read-only outside the core, so a permit can never carry a route the
/// request did not match.
#[derive(Debug, Clone)]
pub struct RouteMatch {
    /// The route.
    pub(crate) route: Arc<Route>,
    /// Captured `(name, value)` pairs, raw (not percent-decoded).
    pub(crate) params: Vec<(String, String)>,
}

impl RouteMatch {
    /// The matched route.
    pub fn route(&self) -> &Arc<Route> {
        &self.route
    }

    /// The captured `(name, value)` pairs, raw (not percent-decoded).
    pub fn params(&self) -> &[(String, String)] {
        &self.params
    }

    /// The value of a captured parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Why no route was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoMatch {
    /// The path is ambiguous or hostile (`..`, `//`, encoded `.` or `/`).
    BadPath,
    /// No route matches the path.
    NotFound,
    /// A route matches the path, but not the method.
    Method,
}

/// Parses a route template into segments; `Err` names the problem.
pub fn parse_template(template: &str) -> Result<Vec<Segment>, String> {
    let rest = template.strip_prefix('/').ok_or("must start with '/'")?;
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for seg in rest.split('/') {
        if seg.is_empty() {
            return Err("empty segment".into());
        }
        if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("invalid parameter name {name:?}"));
            }
            if out.iter().any(|s| matches!(s, Segment::Param(n) if n == name)) {
                return Err(format!("parameter {name:?} appears twice"));
            }
            out.push(Segment::Param(name.into()));
        } else if seg.contains(['{', '}']) {
            return Err(format!("segment {seg:?} mixes text and a parameter"));
        } else {
            out.push(Segment::Literal(seg.into()));
        }
    }
    Ok(out)
}

/// The ordered route table.
#[derive(Debug, Default)]
pub struct Router {
    routes: Vec<Arc<Route>>,
}

fn hostile(seg: &str) -> bool {
    if seg.is_empty() || seg == "." || seg == ".." {
        return true;
    }
    // `%2e`, `%2f` or `%5c` in any case (an encoded dot, slash or backslash), or a
    // backslash: one pass, no lower-case copy.
    let b = seg.as_bytes();
    b.contains(&b'\\')
        || (b.contains(&b'%')
            && b.windows(3).any(|w| w[0] == b'%' && matches!((w[1], w[2] | 0x20), (b'2', b'e' | b'f') | (b'5', b'c'))))
}

impl Router {
    /// Builds a router over routes in match order.
    pub fn new(routes: Vec<Route>) -> Self {
        Self { routes: routes.into_iter().map(Arc::new).collect() }
    }

    /// All routes.
    pub fn routes(&self) -> &[Arc<Route>] {
        &self.routes
    }

    /// Finds the first route matching `method` and `path` (query string excluded).
    pub fn find(&self, method: &str, path: &str) -> Result<RouteMatch, NoMatch> {
        let path = path.split_once('?').map_or(path, |(p, _)| p);
        let rest = path.strip_prefix('/').ok_or(NoMatch::BadPath)?;
        // Inline for the usual few segments: no allocation per request.
        let mut segs: smallvec::SmallVec<[&str; 8]> =
            if rest.is_empty() { smallvec::SmallVec::new() } else { rest.split('/').collect() };
        // A single trailing slash is tolerated; every other segment must be sound.
        if segs.last() == Some(&"") {
            segs.pop();
        }
        if segs.iter().any(|s| hostile(s)) {
            return Err(NoMatch::BadPath);
        }
        let mut path_matched = false;
        for route in &self.routes {
            let Some(params) = match_segments(route, &segs) else {
                continue;
            };
            if !route.methods.is_empty() && !route.methods.iter().any(|m| m == method) {
                path_matched = true;
                continue;
            }
            return Ok(RouteMatch { route: route.clone(), params });
        }
        Err(if path_matched { NoMatch::Method } else { NoMatch::NotFound })
    }
}

fn match_segments(route: &Route, segs: &[&str]) -> Option<Vec<(String, String)>> {
    if segs.len() < route.segments.len() || (!route.prefix && segs.len() != route.segments.len()) {
        return None;
    }
    let mut params = Vec::new();
    for (want, got) in route.segments.iter().zip(segs) {
        match want {
            Segment::Literal(l) if l == got => {}
            Segment::Literal(_) => return None,
            Segment::Param(name) => params.push((name.clone(), (*got).to_owned())),
        }
    }
    Some(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(name: &str, template: &str, prefix: bool, methods: &[&str]) -> Route {
        Route {
            name: name.into(),
            segments: parse_template(template).unwrap(),
            prefix,
            methods: methods.iter().map(|m| m.to_string()).collect(),
            upstream: "u".into(),
            public: false,
            tenants: vec![],
            allow: vec![],
            max_token_lifetime: None,
            require_encrypted: false,
            one_time: false,
            max_body_bytes: None,
            traffic: Default::default(),
        }
    }

    #[test]
    fn matching_table() {
        let r = Router::new(vec![
            route("records", "/patients/{patient_id}/records", false, &["GET"]),
            route("update", "/patients/{patient_id}/records/{record_id}", false, &["PUT"]),
            route("echo", "/echo", true, &[]),
        ]);
        let m = r.find("GET", "/patients/p-1/records?x=1").unwrap();
        assert_eq!((m.route.name.as_str(), m.param("patient_id")), ("records", Some("p-1")));
        assert_eq!(r.find("GET", "/patients/p-1/records/").unwrap().route.name, "records");
        assert_eq!(r.find("PUT", "/patients/p-1/records/r-2").unwrap().param("record_id"), Some("r-2"));
        assert_eq!(r.find("POST", "/patients/p-1/records").unwrap_err(), NoMatch::Method);
        assert_eq!(r.find("GET", "/patients/p-1").unwrap_err(), NoMatch::NotFound);
        assert_eq!(r.find("GET", "/echo").unwrap().route.name, "echo");
        assert_eq!(r.find("DELETE", "/echo/a/b").unwrap().route.name, "echo");
        assert_eq!(r.find("GET", "/echoes").unwrap_err(), NoMatch::NotFound);
        for bad in [
            "/echo/../patients/p-2/records",
            "/echo/./x",
            "/echo//x",
            "/echo/%2e%2e/x",
            "/echo/a%2Fb",
            "/echo/%2E%2e",
            "/echo/a%5Cb",
            "/echo/a%5cb",
            "/echo/%%2f",
            "echo",
            "/echo/a\\b",
        ] {
            assert_eq!(r.find("GET", bad).unwrap_err(), NoMatch::BadPath, "{bad}");
        }
    }

    #[test]
    fn hostile_segments_are_exactly_the_encoded_dot_slash_and_backslash() {
        // Every `%` followed by two printable characters, alone and inside a segment,
        // judged as the plain rule says: a lower-cased `%2e`, `%2f` or `%5c`.
        let printable: Vec<char> = (b' '..=b'~').map(char::from).collect();
        for &x in &printable {
            for &y in &printable {
                for seg in [format!("%{x}{y}"), format!("a%{x}{y}b"), format!("%%{x}{y}")] {
                    let lower = seg.to_ascii_lowercase();
                    let want = ["%2e", "%2f", "%5c"].iter().any(|e| lower.contains(e)) || seg.contains('\\');
                    assert_eq!(hostile(&seg), want, "{seg:?}");
                }
            }
        }
        for seg in ["", ".", ".."] {
            assert!(hostile(seg), "{seg:?}");
        }
        assert!(!hostile("..."));
    }

    #[test]
    fn template_errors() {
        assert!(parse_template("patients").is_err());
        assert!(parse_template("/a//b").is_err());
        assert!(parse_template("/a/{}").is_err());
        assert!(parse_template("/a/x{id}").is_err());
        assert!(parse_template("/a/{id}/{id}").is_err());
        assert_eq!(parse_template("/").unwrap(), vec![]);
    }
}
