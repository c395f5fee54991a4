//! The dependency rules of JOSE-PITFALLS.md, checked against the lock file CI builds
//! with. `cargo audit` needs the RustSec database from GitHub, which this CI cannot
//! reach, so these are the advisories that concern us, checked directly:
//! Pingora at 0.8.0 or later (request smuggling and cache-key advisories), every
//! `pingora-*` crate on one release, jsonwebtoken at 10.3.0 or later
//! (CVE-2026-25537), and no `rsa` crate (Marvin timing side channel,
//! RUSTSEC-2023-0071). And no build profile aborts on panic: a library panic on
//! hostile input must stay catchable and become a 401.

fn packages() -> Vec<(String, (u64, u64, u64))> {
    let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock")).unwrap();
    let mut out = Vec::new();
    for block in lock.split("[[package]]").skip(1) {
        let field = |name: &str| {
            block.lines().find_map(|l| l.strip_prefix(&format!("{name} = \"")).and_then(|v| v.strip_suffix('"')))
        };
        let (Some(name), Some(version)) = (field("name"), field("version")) else { continue };
        let mut v = version.split(['.', '-', '+']).map(|p| p.parse::<u64>().unwrap_or(0));
        out.push((name.to_owned(), (v.next().unwrap_or(0), v.next().unwrap_or(0), v.next().unwrap_or(0))));
    }
    out
}

#[test]
fn locked_dependencies_avoid_the_known_advisories() {
    let pkgs = packages();
    assert!(pkgs.len() > 100, "the lock file was read");
    let versions = |name: &str| pkgs.iter().filter(|(n, _)| n == name).map(|(_, v)| *v).collect::<Vec<_>>();

    let pingora: Vec<_> = pkgs.iter().filter(|(n, _)| n == "pingora" || n.starts_with("pingora-")).collect();
    assert!(!pingora.is_empty());
    for (name, v) in &pingora {
        assert!(*v >= (0, 8, 0), "{name} {v:?} is older than 0.8.0");
        assert_eq!(*v, pingora[0].1, "{name} is not on the same release as the other pingora crates");
    }
    for v in versions("jsonwebtoken") {
        assert!(v >= (10, 3, 0), "jsonwebtoken {v:?} carries CVE-2026-25537");
    }
    assert!(versions("rsa").is_empty(), "the rsa crate (RUSTSEC-2023-0071) must not be in the build");
}

#[test]
fn no_profile_aborts_on_panic() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let manifest = std::fs::read_to_string(format!("{root}/Cargo.toml")).unwrap();
    assert!(manifest.contains("[profile.release]"), "the workspace manifest was read");
    let config = std::fs::read_to_string(format!("{root}/.cargo/config.toml")).unwrap_or_default();
    for line in manifest.lines().chain(config.lines()).map(|l| l.split('#').next().unwrap_or("").replace(' ', "")) {
        assert!(
            !line.contains("panic=\"abort\"") && !line.contains("panic=abort"),
            "{line}: with panic = abort, catch_unwind cannot turn a library panic into a 401"
        );
    }
}
