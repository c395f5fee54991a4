//! The sidecar's module graph has no cycle: no module names, through `crate::`,
//! `super::` or a child's relative path, a module that names it back (a parent that
//! re-exports a child while the child uses the parent's items counts too). Test
//! modules and comments are left out. A cycle fails with the modules on it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Every module of `src` (`""` for the crate root, `a::b` for `src/a/b.rs`) and its
/// source without comments and without its trailing `#[cfg(test)]` module.
fn modules(src: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![src.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let rel = path.strip_prefix(src).unwrap().with_extension("");
            let name = rel.to_str().unwrap().replace('/', "::");
            let name = if name == "main" || name == "lib" { String::new() } else { name };
            let text = std::fs::read_to_string(&path).unwrap();
            let text = text.split("#[cfg(test)]\nmod tests").next().unwrap();
            let code: Vec<&str> = text.lines().map(|l| l.split("//").next().unwrap()).collect();
            out.insert(name, code.join("\n"));
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The `a::b::c` path segments that follow each occurrence of `prefix` in `code`.
fn paths_after<'a>(code: &'a str, prefix: &str) -> Vec<Vec<&'a str>> {
    let mut found = Vec::new();
    for (at, _) in code.match_indices(prefix) {
        if code[..at].chars().next_back().is_some_and(|c| is_ident(c) || c == ':') {
            continue;
        }
        let mut rest = &code[at + prefix.len()..];
        let mut segments = Vec::new();
        loop {
            let end = rest.find(|c: char| !is_ident(c)).unwrap_or(rest.len());
            if end == 0 {
                break;
            }
            segments.push(&rest[..end]);
            match rest[end..].strip_prefix("::") {
                Some(r) => rest = r,
                None => break,
            }
        }
        found.push(segments);
    }
    found
}

fn parent(m: &str) -> &str {
    m.rsplit_once("::").map_or("", |(p, _)| p)
}

/// The longest module that `base` + `segments` names.
fn resolve(mods: &BTreeMap<String, String>, base: &str, segments: &[&str]) -> String {
    let mut best = base.to_owned();
    let mut path = base.to_owned();
    for s in segments {
        path = if path.is_empty() { (*s).to_owned() } else { format!("{path}::{s}") };
        if mods.contains_key(&path) {
            best = path.clone();
        }
    }
    best
}

fn edges(mods: &BTreeMap<String, String>) -> BTreeMap<&str, BTreeSet<String>> {
    let mut edges: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for (m, code) in mods {
        let set = edges.entry(m.as_str()).or_default();
        for segs in paths_after(code, "crate::") {
            set.insert(resolve(mods, "", &segs));
        }
        for segs in paths_after(code, "super::") {
            set.insert(resolve(mods, parent(m), &segs));
        }
        let children = mods.keys().filter(|c| !c.is_empty() && parent(c) == m.as_str() && *c != m);
        for child in children {
            let name = child.rsplit("::").next().unwrap();
            if !paths_after(code, &format!("{name}::")).is_empty() {
                set.insert(child.clone());
            }
        }
        set.remove(m.as_str());
    }
    edges
}

/// A cycle through `from`, if any (depth-first search).
fn cycle(edges: &BTreeMap<&str, BTreeSet<String>>, from: &str) -> Option<Vec<String>> {
    fn walk(edges: &BTreeMap<&str, BTreeSet<String>>, at: &str, stack: &mut Vec<String>) -> bool {
        for next in edges.get(at).into_iter().flatten() {
            if next == &stack[0] {
                return true;
            }
            if !stack.contains(next) {
                stack.push(next.clone());
                if walk(edges, next, stack) {
                    return true;
                }
                stack.pop();
            }
        }
        false
    }
    let mut stack = vec![from.to_owned()];
    walk(edges, from, &mut stack).then_some(stack)
}

#[test]
fn the_module_graph_has_no_cycle() {
    let mods = modules(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(mods.len() > 20 && mods.contains_key("http::state"), "{:?}", mods.keys());
    let edges = edges(&mods);
    assert!(edges["cli::serve"].contains("service"), "the scan sees imports: {:?}", edges["cli::serve"]);
    let cycles: Vec<Vec<String>> = mods.keys().filter_map(|m| cycle(&edges, m)).collect();
    assert!(cycles.is_empty(), "module cycles: {cycles:?}");
}

#[test]
fn the_scan_finds_a_cycle_where_there_is_one() {
    let mods: BTreeMap<String, String> = [
        ("".to_owned(), "mod a; mod b;".to_owned()),
        ("a".to_owned(), "use crate::b::Thing;".to_owned()),
        ("b".to_owned(), "pub mod c; pub use c::Thing;".to_owned()),
        ("b::c".to_owned(), "use crate::a::Other;".to_owned()),
    ]
    .into();
    let edges = edges(&mods);
    assert_eq!(cycle(&edges, "a"), Some(vec!["a".to_owned(), "b".to_owned(), "b::c".to_owned()]));
}
