//! Config validation through the real binary: every shipped file in `conf/` passes
//! `--check`, and a bad file is refused with every error and its field path.

mod support;

use gateway_core::Config;
use support::run_binary;

fn conf_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf")
}

#[test]
fn every_shipped_gateway_config_is_valid() {
    let mut checked = 0;
    for entry in std::fs::read_dir(conf_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("gateway") || !name.ends_with(".yaml") {
            continue;
        }
        Config::from_file(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let (ok, out) = run_binary(&["--config", path.to_str().unwrap(), "--check"]);
        assert!(ok, "{name}: {out}");
        let (ok, out) = run_binary(&["--config", path.to_str().unwrap(), "-t"]);
        assert!(ok, "{name} with -t: {out}");
        checked += 1;
    }
    assert!(checked >= 1, "no gateway config found in conf/");
}

const BAD: &str = r#"
listen: 127.0.0.1:8080
admin_listen: nowhere
keys:
  startup: sometimes
tenants:
  t1:
    issuer: https://a
    audiences: []
    algorithms: [RS256, HS256, none]
headers:
  - { claim: sub, header: "X Bad" }
upstreams:
  u:
    peers: ["127.0.0.1:1", "localhost"]
routes:
  - path: /a/{id}
    upstream: missing
    methods: [GET, FETCH]
    allow:
      - role: patient
        owner: { claim: sub, param: patient_id }
  - prefix: /b
    path: /c
    upstream: u
"#;

#[test]
fn a_bad_config_lists_every_error_with_its_field_path() {
    let err = Config::from_yaml(BAD).unwrap_err();
    let paths: Vec<&str> = err.0.iter().map(|e| e.path.as_str()).collect();
    for want in [
        "admin_listen",
        "keys.startup",
        "tenants.t1.audiences",
        "tenants.t1.algorithms[1]",
        "tenants.t1.algorithms[2]",
        "tenants.t1.keys",
        "headers[0].header",
        "upstreams.u.peers[1]",
        "routes[0].upstream",
        "routes[0].methods[1]",
        "routes[0].allow[0].owner.param",
        "routes[1]",
    ] {
        assert!(paths.contains(&want), "missing {want} in {paths:?}");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, BAD).unwrap();
    let (ok, out) = run_binary(&["--config", path.to_str().unwrap(), "--check"]);
    assert!(!ok);
    assert!(out.contains("routes[0].allow[0].owner.param") && out.contains("tenants.t1.algorithms[1]"), "{out}");
}

#[test]
fn unknown_fields_and_type_errors_name_the_field() {
    let text = std::fs::read_to_string(conf_dir().join("gateway.yaml")).unwrap();
    let typo = text.replacen("  leeway: 30s", "  leway: 30s", 1);
    let err = Config::from_yaml(&typo).unwrap_err().to_string();
    assert!(err.contains("auth") && err.contains("leway"), "{err}");
    let bad_type = text.replacen("threads: 2", "threads: many", 1);
    let err = Config::from_yaml(&bad_type).unwrap_err().to_string();
    assert!(err.starts_with("threads"), "{err}");
    let bad_dur = text.replacen("leeway: 30s", "leeway: 30 parsecs", 1);
    let err = Config::from_yaml(&bad_dur).unwrap_err().to_string();
    assert!(err.contains("auth.leeway"), "{err}");
}

#[test]
fn check_mode_loads_pem_key_files_and_names_the_wrong_type() {
    let keys = testkit::keys_dir();
    let cfg = |file: &str| {
        format!(
            "listen: 127.0.0.1:1\nadmin_listen: 127.0.0.1:2\ntenants:\n  t1:\n    issuer: i\n    audiences: [a]\n    algorithms: [RS256]\n    keys: {{ file: {}/{file} }}\nupstreams:\n  u: {{ peers: [\"127.0.0.1:3\"] }}\nroutes:\n  - {{ prefix: /, upstream: u }}\n",
            keys.display()
        )
    };
    let dir = tempfile::tempdir().unwrap();
    for (file, ok, needle) in [
        ("rsa-a.pub.pem", true, "is valid"),
        ("rsa-a.cert.pem", true, "is valid"),
        ("rsa-a.pkcs1.pub.pem", false, "found a PKCS#1 RSA public key (RSA PUBLIC KEY), expected an SPKI public key (PUBLIC KEY) or an X.509 certificate (CERTIFICATE)"),
        ("rsa-a.pem", false, "found a PKCS#8 private key (PRIVATE KEY)"),
        ("missing.pem", false, "tenants.t1.keys.file"),
    ] {
        let path = dir.path().join("g.yaml");
        std::fs::write(&path, cfg(file)).unwrap();
        let (got, out) = run_binary(&["--config", path.to_str().unwrap(), "--check"]);
        assert_eq!(got, ok, "{file}: {out}");
        assert!(out.contains(needle), "{file}: {out}");
    }
}

#[test]
fn encryption_settings_are_validated_with_their_field_paths() {
    let bad = r#"
listen: 127.0.0.1:1
admin_listen: 127.0.0.1:2
auth: { replay_cache_size: 0 }
decryption: { url_template: "http://127.0.0.1:3/keys" }
replay_store: { url: "127.0.0.1:8082/internal/v1/one-time", token_env: T, token_file: /t, timeout: 1m }
tenants:
  t1:
    issuer: i
    audiences: [a]
    algorithms: [RS256]
    keys: { url: "http://127.0.0.1:3/jwks" }
    encryption:
      key_management: [RSA-OAEP-256, RSA1_5]
      content_encryption: [A256GCM, A192GCM]
  t2:
    issuer: i
    audiences: [a]
    algorithms: [ES256]
    keys: { url: "http://127.0.0.1:3/jwks" }
    encryption: { keys: { url: "ftp://x", file: "/y" } }
upstreams:
  u: { peers: ["127.0.0.1:3"] }
routes:
  - { prefix: /, upstream: u, public: true, one_time: true }
"#;
    let err = Config::from_yaml(bad).unwrap_err();
    let paths: Vec<&str> = err.0.iter().map(|e| e.path.as_str()).collect();
    for want in [
        "auth.replay_cache_size",
        "replay_store.url",
        "replay_store",
        "replay_store.timeout",
        "decryption.url_template",
        "decryption",
        "tenants.t1.encryption.key_management[1]",
        "tenants.t1.encryption.content_encryption[1]",
        "tenants.t2.encryption.keys",
        "routes[0].public",
    ] {
        assert!(paths.contains(&want), "missing {want} in {paths:?}");
    }
    assert!(err.to_string().contains("\"RSA1_5\" is not allowed: use RSA-OAEP-256, ECDH-ES"), "{err}");

    // require_encrypted with no JWE-enabled tenant could never pass.
    let plain = "listen: 127.0.0.1:1\nadmin_listen: 127.0.0.1:2\ntenants:\n  t1: { issuer: i, audiences: [a], algorithms: [RS256], keys: { url: \"http://127.0.0.1:3/j\" } }\nupstreams:\n  u: { peers: [\"127.0.0.1:3\"] }\nroutes:\n  - { prefix: /, upstream: u, require_encrypted: true }\n";
    let err = Config::from_yaml(plain).unwrap_err();
    assert_eq!(err.0[0].path, "routes[0].require_encrypted", "{err}");

    // --check loads decryption key files too.
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("enc.jwks");
    std::fs::write(&keys, r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"k","use":"enc","x":"AA","y":"AA","d":"AA"}]}"#)
        .unwrap();
    let cfg = dir.path().join("g.yaml");
    std::fs::write(
        &cfg,
        format!(
            "listen: 127.0.0.1:1\nadmin_listen: 127.0.0.1:2\ntenants:\n  t1:\n    issuer: i\n    audiences: [a]\n    algorithms: [RS256]\n    keys: {{ file: {}/rsa-a.pub.pem }}\n    encryption: {{ keys: {{ file: {} }} }}\nupstreams:\n  u: {{ peers: [\"127.0.0.1:3\"] }}\nroutes:\n  - {{ prefix: /, upstream: u }}\n",
            testkit::keys_dir().display(),
            keys.display()
        ),
    )
    .unwrap();
    let (ok, out) = run_binary(&["--config", cfg.to_str().unwrap(), "--check"]);
    assert!(
        !ok && out.contains("tenants.t1.encryption.keys.file") && out.contains("no usable decryption key"),
        "{out}"
    );
}
