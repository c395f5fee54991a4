//! Config validation through the real binary: every shipped file in `conf/` passes
//! `--check`, and a bad file is refused with every error and its field path, file
//! errors and validation errors in one run; missing credentials are named; a taken
//! port fails start-up at once.

use crate::support::run_binary;
use gateway_core::Config;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The credentials `conf/gateway.yaml` reads from the environment.
const CONF_ENV: [(&str, &str); 2] =
    [("KMS_GATEWAY_TOKEN", "gateway-channel-credential"), ("GATEWAY_ADMIN_TOKEN", "gateway-admin-credential")];

/// Runs the binary to completion with these args and environment (the conf
/// credentials removed first); returns (exit ok, stdout+stderr).
fn run_with_env(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gateway"));
    cmd.args(args).current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).env("RUST_LOG", "warn");
    for (k, _) in CONF_ENV {
        cmd.env_remove(k);
    }
    let out = cmd.envs(env.iter().copied()).output().unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

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
        let (ok, out) = run_with_env(&["--config", path.to_str().unwrap(), "--check"], &CONF_ENV);
        assert!(ok, "{name}: {out}");
        let (ok, out) = run_with_env(&["--config", path.to_str().unwrap(), "-t"], &CONF_ENV);
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

/// `conf/gateway.yaml` without its credentials in the environment: `--check` names
/// each variable and the field that expects it, and start-up refuses the same way
/// (not "channel credential not available" after a key fetch).
#[test]
fn missing_credentials_are_named_by_check_and_start_up() {
    let conf = conf_dir().join("gateway.yaml");
    let conf = conf.to_str().unwrap();
    let (ok, out) = run_with_env(&["--config", conf, "--check"], &[]);
    assert!(!ok, "{out}");
    for want in [
        "revocation.token_env: environment variable KMS_GATEWAY_TOKEN is not set",
        "replay_store.token_env: environment variable KMS_GATEWAY_TOKEN is not set",
        "decryption.token_env: environment variable KMS_GATEWAY_TOKEN is not set",
        "admin.token_env: environment variable GATEWAY_ADMIN_TOKEN is not set",
    ] {
        assert!(out.contains(want), "missing {want:?} in {out}");
    }
    let (ok, out) = run_with_env(&["--config", conf, "--check"], &[CONF_ENV[0], ("GATEWAY_ADMIN_TOKEN", "short")]);
    assert!(
        !ok && out.contains("admin.token_env: environment variable GATEWAY_ADMIN_TOKEN holds fewer than 16"),
        "{out}"
    );
    assert!(!out.contains("KMS_GATEWAY_TOKEN"), "{out}");

    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-token");
    let cfg = dir.path().join("g.yaml");
    std::fs::write(
        &cfg,
        format!(
            "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\ndecryption: {{ url_template: \"http://127.0.0.1:1/{{tenant}}\", token_file: {} }}\n\
             tenants:\n  t1: {{ issuer: i, audiences: [a], algorithms: [ES256], keys: {{ url: \"http://127.0.0.1:1/j\" }}, encryption: {{}} }}\n\
             upstreams:\n  u: {{ peers: [\"127.0.0.1:3\"] }}\nroutes:\n  - {{ prefix: /, upstream: u }}\n",
            missing.display()
        ),
    )
    .unwrap();
    let (ok, out) = run_with_env(&["--config", cfg.to_str().unwrap(), "--check"], &[]);
    assert!(!ok && out.contains(&format!("decryption.token_file: file {}", missing.display())), "{out}");
    let (ok, out) = run_with_env(&["--config", cfg.to_str().unwrap()], &[]);
    assert!(!ok && out.contains(&format!("decryption.token_file: file {}", missing.display())), "{out}");
}

/// Errors of the file (unknown field, wrong type, missing field) and of validation
/// (unknown upstream and tenant, duplicates) all come out of one `--check`, each
/// route named by place and name, unknown references listing the valid choices.
#[test]
fn check_reports_file_and_validation_errors_in_one_run() {
    let bad = r#"
listen: 127.0.0.1:8080
admin_listen: 127.0.0.1:8081
keys: { url_template: "http://127.0.0.1:1/{tenant}" }
auth: { leway: 30s }
tenants:
  hospital-a: { issuer: a, audiences: [api], algorithms: [ES256] }
  hospital-b: { issuer: b, audiences: [api], algorithms: [ES256] }
upstreams:
  labs: { peers: ["127.0.0.1:3"] }
  records: { peers: ["127.0.0.1:4"] }
routes:
  - { name: typo, path: /a, upstream: labs, tenant: hospital-a }
  - { name: lab-results, path: "/labs/{id}", methods: [GET], upstream: lab }
  - { name: lab-upload, path: "/labs/{lab_id}", methods: [GET, POST], upstream: labs }
  - { name: b-labs, path: /b, upstream: labs, tenants: [hospital-b, hospital-c], allow: [{ role: lab, tenants: [hospital-a] }] }
  - { name: b-labs, path: /c, upstream: records, allow: [{ role: x, owner: { claim: sub, param: pid } }] }
  - { name: late, path: /d, upstream: labs, methods: GET }
"#;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, bad).unwrap();
    let (ok, out) = run_binary(&["--config", path.to_str().unwrap(), "--check"]);
    assert!(!ok, "{out}");
    for want in [
        "auth.leway: unknown field `leway`",
        "routes[0] (name: typo).tenant: unknown field `tenant`",
        "routes[5] (name: late).methods: invalid type",
        "routes[1] (name: lab-results).upstream: no upstream named \"lab\"; configured upstreams: labs, records",
        "routes[2] (name: lab-upload).path: same path and method (GET) as routes[1] (name: lab-results), which is matched first",
        "routes[3] (name: b-labs).tenants[1]: no tenant named \"hospital-c\"; configured tenants: hospital-a, hospital-b",
        "routes[3] (name: b-labs).allow[0].tenants[0]: \"hospital-a\" is not one of the route's tenants",
        "routes[4] (name: b-labs).name: \"b-labs\" is already the name of routes[3] (name: b-labs)",
        "routes[4] (name: b-labs).allow[0].owner.param: the route has no parameter \"pid\"; its parameters: none",
    ] {
        assert!(out.contains(want), "missing {want:?} in {out}");
    }
}

/// A gateway whose listen (or admin) port is taken exits at once naming the field
/// and address, instead of retrying the bind forever.
#[test]
fn a_taken_port_fails_start_up_at_once() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = held.local_addr().unwrap();
    let free = crate::support::free_port();
    let dir = tempfile::tempdir().unwrap();
    for (field, listen, admin) in [
        ("listen", taken.to_string(), format!("127.0.0.1:{free}")),
        ("admin_listen", format!("127.0.0.1:{free}"), taken.to_string()),
    ] {
        let cfg = dir.path().join("g.yaml");
        std::fs::write(
            &cfg,
            format!(
                "listen: {listen}\nadmin_listen: {admin}\ntenants:\n  t1: {{ issuer: i, audiences: [a], algorithms: [RS256], keys: {{ file: {}/rsa-a.pub.pem }} }}\n\
                 upstreams:\n  u: {{ peers: [\"127.0.0.1:3\"] }}\nroutes:\n  - {{ prefix: /, upstream: u }}\n",
                testkit::keys_dir().display()
            ),
        )
        .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_gateway"))
            .args(["--config", cfg.to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                child.kill().unwrap();
                panic!("{field}: the gateway still runs with {taken} taken");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(!status.success());
        assert!(text.contains(&format!("{field}: {taken} is in use")), "{field}: {text}");
    }
    drop(held);
}
