//! Reading the YAML into [`FileConfig`] without stopping at the first error: the text
//! becomes a YAML value, each route is read on its own, and after each error the
//! entry at fault is left out and the rest read again, so one misspelled field does
//! not hide the problems after it. What was left out is recorded in [`Gaps`], so
//! validation neither repeats an error nor reports what only follows from it (a
//! route naming an upstream that had an error of its own).

use super::file::{FileConfig, RouteFile};
use super::{Errors, FieldError};
use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;
use serde_yaml_ng::{Mapping, Value};
use std::collections::BTreeSet;

/// Errors reported for one entry before it is given up, so a hostile file cannot
/// make the loop run long.
const MAX_ERRORS_PER_ENTRY: usize = 50;

/// What the lenient read left out, by field path.
#[derive(Debug, Default)]
pub(super) struct Gaps {
    /// How each route of `FileConfig::routes` is named in messages, e.g.
    /// `routes[5] (name: lab-results)` (the index is its place in the file).
    pub route_labels: Vec<String>,
    /// Field paths of entries left out for an error (`upstreams.u`, `tenants`, `routes[3]`).
    pub left_out: BTreeSet<String>,
}

impl Gaps {
    /// Gaps of a config read whole: none, with each route labelled by its place.
    pub fn none(f: &FileConfig) -> Gaps {
        let route_labels = f.routes.iter().enumerate().map(|(i, r)| route_label(i, r.name.as_deref())).collect();
        Gaps { route_labels, left_out: BTreeSet::new() }
    }

    /// The label of the `i`th parsed route.
    pub fn route(&self, i: usize) -> String {
        self.route_labels.get(i).cloned().unwrap_or_else(|| format!("routes[{i}]"))
    }

    /// Whether `section` (`tenants`, `upstreams`, `routes`) or its entry `name` was left out.
    pub fn lost(&self, section: &str, name: Option<&str>) -> bool {
        self.left_out.contains(section)
            || match name {
                Some(n) => self.left_out.contains(&format!("{section}.{n}")),
                None => self.left_out.iter().any(|p| p.starts_with(section)),
            }
    }
}

/// `routes[5] (name: lab-results)`, or `routes[5]` for an unnamed route.
pub(super) fn route_label(i: usize, name: Option<&str>) -> String {
    match name {
        Some(n) => format!("routes[{i}] (name: {})", n.escape_debug()),
        None => format!("routes[{i}]"),
    }
}

/// Top-level fields without a default, and what stands in for one that is missing
/// or unreadable (its error is reported, and validation goes on with the rest).
fn placeholder(field: &str) -> Option<Value> {
    match field {
        "listen" | "admin_listen" => Some(Value::String("127.0.0.1:0".into())),
        "tenants" | "upstreams" => Some(Value::Mapping(Mapping::new())),
        "routes" => Some(Value::Sequence(Vec::new())),
        _ => None,
    }
}

/// Reads `text` as far as it goes. `None` only when the text is not YAML at all or
/// its top level not a mapping; otherwise the config holds every entry that read
/// cleanly, and the errors every entry that did not.
pub(super) fn read(text: &str) -> (Option<(FileConfig, Gaps)>, Vec<FieldError>) {
    let mut errs = Errors(Vec::new());
    let root: Value = match serde_yaml_ng::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            errs.push("(root)", e.to_string());
            return (None, errs.0);
        }
    };
    let mut root = match root {
        Value::Mapping(m) => m,
        Value::Null => Mapping::new(),
        other => {
            errs.push("(root)", format!("expected a mapping of settings, found {}", kind(&other)));
            return (None, errs.0);
        }
    };
    let mut gaps = Gaps::default();
    for field in ["listen", "admin_listen", "tenants", "upstreams", "routes"] {
        if !root.contains_key(field) {
            errs.push(field, "missing: this field is required");
            gaps.left_out.insert(field.into());
            root.insert(field.into(), placeholder(field).expect("required fields have placeholders"));
        }
    }

    // Each route on its own, so a bad one neither hides nor renumbers the others.
    let mut routes = Vec::new();
    match root.insert("routes".into(), Value::Sequence(Vec::new())) {
        Some(Value::Sequence(list)) => {
            for (i, v) in list.into_iter().enumerate() {
                let label = route_label(i, v.get("name").and_then(Value::as_str));
                match lenient::<RouteFile>(v, &label, &mut errs, &mut gaps.left_out, &|_| None) {
                    Some(r) => {
                        routes.push(r);
                        gaps.route_labels.push(label);
                    }
                    None => {
                        gaps.left_out.insert(format!("routes[{i}]"));
                    }
                }
            }
        }
        Some(other) if !gaps.left_out.contains("routes") => {
            errs.push("routes", format!("expected a list of routes, found {}", kind(&other)));
            gaps.left_out.insert("routes".into());
        }
        _ => {}
    }

    let file = lenient::<FileConfig>(Value::Mapping(root), "", &mut errs, &mut gaps.left_out, &placeholder);
    (
        file.map(|mut f| {
            f.routes = routes;
            (f, gaps)
        }),
        errs.0,
    )
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// `prefix` followed by `segs`, as a field path (`routes[2].allow[0].role`).
fn show(prefix: &str, segs: &[Segment]) -> String {
    let mut s = prefix.to_owned();
    for seg in segs {
        match seg {
            Segment::Seq { index } => s.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.extend(key.escape_debug());
            }
            Segment::Unknown => {}
        }
    }
    if s.is_empty() {
        "(root)".into()
    } else {
        s
    }
}

/// `message` without its ` at line L column C`: the place is in the text read
/// again, not the file, and the field path says where it is.
fn without_location(mut message: String) -> String {
    if let Some(i) = message.rfind(" at line ") {
        let rest = &message[i + " at line ".len()..];
        if rest.split(" column ").all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())) {
            message.truncate(i);
        }
    }
    message
}

/// The field a serde message names: `` missing field `x` `` or `` unknown field `x` ``.
fn named_field<'a>(message: &'a str, kind: &str) -> Option<&'a str> {
    message.strip_prefix(kind)?.strip_prefix(" field `")?.split('`').next()
}

/// Deserializes `value` as `T`, reporting each error under `prefix` and leaving out
/// the mapping entry at fault (or putting `placeholder`'s stand-in for a top-level
/// one), until it reads or nothing is left to leave out. A "missing field" that
/// follows from an entry left out is not reported again.
fn lenient<T: DeserializeOwned>(
    mut value: Value,
    prefix: &str,
    errs: &mut Errors,
    left_out: &mut BTreeSet<String>,
    placeholder: &dyn Fn(&str) -> Option<Value>,
) -> Option<T> {
    for _ in 0..MAX_ERRORS_PER_ENTRY {
        // Through YAML text rather than from the value, so a plain scalar reads as a
        // string where one is wanted (`issuer: 2024`), as it does from the file.
        let text = serde_yaml_ng::to_string(&value).ok()?;
        let e = match serde_path_to_error::deserialize::<_, T>(serde_yaml_ng::Deserializer::from_str(&text)) {
            Ok(t) => return Some(t),
            Err(e) => e,
        };
        let mut segs: Vec<Segment> = e.path().iter().cloned().collect();
        // The YAML reader puts its own path in front (the struct's, or the field's):
        // ours, with the prefix, replaces it.
        let mut message = without_location(e.into_inner().to_string());
        if let Some(rest) =
            (1..=segs.len()).rev().find_map(|k| message.strip_prefix(&format!("{}: ", show("", &segs[..k]))))
        {
            message = rest.to_owned();
        }
        if let Some(field) = named_field(&message, "unknown") {
            if !matches!(segs.last(), Some(Segment::Map { key }) if key == field) {
                segs.push(Segment::Map { key: field.to_owned() });
            }
        }
        let at = show(prefix, &segs);
        let follows = named_field(&message, "missing").is_some_and(|f| {
            left_out.contains(&show(prefix, &[segs.clone(), vec![Segment::Map { key: f.into() }]].concat()))
        });
        if !follows {
            errs.push(at, message);
        }
        // Leave out the innermost mapping entry on the path (a list is cut whole, so
        // later indexes keep their meaning).
        let cut = segs.iter().rposition(|s| matches!(s, Segment::Map { .. }))?;
        left_out.insert(show(prefix, &segs[..=cut]));
        if !remove(&mut value, &segs[..=cut], placeholder) {
            return None;
        }
    }
    None
}

/// Removes the mapping entry `path` leads to; a top-level one with a placeholder is
/// replaced instead. `false` if the path leads nowhere.
fn remove(value: &mut Value, path: &[Segment], placeholder: &dyn Fn(&str) -> Option<Value>) -> bool {
    let Some((Segment::Map { key }, parents)) = path.split_last() else {
        return false;
    };
    let mut node = value;
    for seg in parents {
        node = match (seg, node) {
            (Segment::Seq { index }, Value::Sequence(list)) => match list.get_mut(*index) {
                Some(n) => n,
                None => return false,
            },
            (Segment::Map { key }, Value::Mapping(m)) => match m.get_mut(key.as_str()) {
                Some(n) => n,
                None => return false,
            },
            (_, Value::Tagged(t)) => &mut t.value,
            _ => return false,
        };
    }
    let Value::Mapping(m) = node else {
        return false;
    };
    match (parents.is_empty(), placeholder(key)) {
        (true, Some(stand_in)) => m.insert(key.as_str().into(), stand_in).is_some(),
        _ => m.remove(key.as_str()).is_some(),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    const BASE: &str =
        "listen: 127.0.0.1:1\nadmin_listen: 127.0.0.1:2\nkeys: { url_template: \"http://k/{tenant}\" }\n";

    fn errors(yaml: &str) -> Vec<String> {
        match Config::from_yaml(yaml) {
            Ok(_) => Vec::new(),
            Err(e) => e.0.into_iter().map(|f| format!("{}: {}", f.path, f.message)).collect(),
        }
    }

    /// With `tenant_discovery`, a route may name a tenant only the sidecar's list will
    /// have (a well-formed id); the config shows it missing until the list has it.
    /// Without discovery the same name is an error.
    #[test]
    fn routes_may_name_discovered_tenants_only_with_discovery() {
        let body = "tenants:\n  h1: { issuer: i, audiences: [a], algorithms: [ES256] }\n\
                    upstreams:\n  u: { peers: [\"127.0.0.1:3\"] }\n\
                    routes:\n  - { name: lab, path: /l, upstream: u, tenants: [lab-9], allow: [ { role: d, tenants: [lab-9] } ] }\n";
        let discovery = "tenant_discovery: { url: \"http://k/tenants\", token_env: GW_TOKEN }\n";
        let with = Config::from_yaml(&format!("{BASE}{discovery}{body}")).unwrap();
        assert_eq!(with.unknown_route_tenants(), vec![("lab", "lab-9")]);
        let without = errors(&format!("{BASE}{body}"));
        assert!(without[0].starts_with("routes[0] (name: lab).tenants[0]: no tenant named \"lab-9\""), "{without:?}");
        let malformed = errors(&format!("{BASE}{discovery}{}", body.replace("[lab-9]", "[\"lab 9\"]")));
        assert!(
            malformed.iter().any(|e| e.starts_with("routes[0] (name: lab).tenants[0]: tenant id may hold only")),
            "{malformed:?}"
        );
    }

    /// A misspelled field, a wrong type and a missing field each leave out only their
    /// entry: the errors after them, of the file or of validation, are still found,
    /// and none is reported twice.
    #[test]
    fn every_error_is_found_in_one_read() {
        let yaml = format!(
            "{BASE}auth: {{ leway: 30s, leeway: 30 parsecs }}\nthreads: many\n\
             tenants:\n  hospital-a: {{ issuer: 2024, audiences: [a], algorithms: [ES256] }}\n  \
             hospital-b: {{ issuer: i, audiences: [a], algorithms: ES256 }}\n\
             upstreams:\n  labs: {{ peers: [\"127.0.0.1:3\"] }}\n  records: {{ peers: [\"127.0.0.1:4\"], retries: lots }}\n\
             routes:\n  \
             - {{ name: typo, path: /a, upstream: labs, tenant: hospital-a }}\n  \
             - {{ name: lab-results, path: /b, upstream: lab }}\n  \
             - {{ name: b-labs, path: /c, upstream: labs, tenants: [hospital-b, hospital-c] }}\n  \
             - {{ name: no-upstream, path: /d }}\n  \
             - {{ name: records, path: /e, upstream: records }}\n"
        );
        let errs = errors(&yaml);
        let want = [
            "routes[0] (name: typo).tenant: unknown field `tenant`",
            "routes[3] (name: no-upstream): missing field `upstream`",
            "auth.leway: unknown field `leway`",
            "auth.leeway: ",
            "threads: invalid type",
            "tenants.hospital-b.algorithms: invalid type",
            "upstreams.records.retries: invalid type",
            "routes[1] (name: lab-results).upstream: no upstream named \"lab\"; configured upstreams: labs",
            "routes[2] (name: b-labs).tenants[1]: no tenant named \"hospital-c\"; configured tenants: hospital-a",
        ];
        for w in want {
            assert!(errs.iter().any(|e| e.starts_with(w)), "missing {w:?} in {errs:#?}");
        }
        assert_eq!(errs.len(), want.len(), "{errs:#?}");
        assert!(errs.iter().all(|e| !e.contains(" at line ")), "{errs:#?}");
    }
}
