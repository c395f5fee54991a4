//! The `audit:` section: the authenticated trail's files, the anonymous trail's own
//! files and rate, and the recorded path's cap, each problem reported with its path.

use super::file::AuditFile;
use super::{AuditFiles, AuditSettings, Errors};

/// Smallest `max_bytes`: room for several records of the longest path.
const MIN_FILE_BYTES: u64 = 4096;

/// Validates `a`, pushing problems onto `errs`.
pub(super) fn settings(a: &AuditFile, errs: &mut Errors) -> AuditSettings {
    if a.file.is_empty() {
        errs.push("audit.file", "must not be empty");
    }
    let authenticated = AuditFiles {
        file: a.file.clone(),
        max_bytes: a.max_bytes.unwrap_or(10 << 20),
        keep: a.keep.unwrap_or(5),
        queue: a.queue.unwrap_or(10_000),
    };
    let anon = a.anonymous.as_ref();
    let anonymous = AuditFiles {
        file: anon.and_then(|x| x.file.clone()).unwrap_or_else(|| format!("{}.anonymous", a.file)),
        max_bytes: anon.and_then(|x| x.max_bytes).unwrap_or(authenticated.max_bytes),
        keep: anon.and_then(|x| x.keep).unwrap_or(authenticated.keep),
        queue: anon.and_then(|x| x.queue).unwrap_or(1000),
    };
    let s = AuditSettings {
        anonymous_rate: anon.and_then(|x| x.rate).unwrap_or(20),
        anonymous_burst: anon.and_then(|x| x.burst).unwrap_or(100),
        max_path_bytes: a.max_path_bytes.unwrap_or(1024),
        authenticated,
        anonymous,
    };
    for (files, at) in [(&s.authenticated, "audit"), (&s.anonymous, "audit.anonymous")] {
        if files.max_bytes < MIN_FILE_BYTES {
            errs.push(format!("{at}.max_bytes"), format!("must be at least {MIN_FILE_BYTES}"));
        }
        if files.queue == 0 {
            errs.push(format!("{at}.queue"), "must be at least 1");
        }
    }
    if s.anonymous.file.is_empty() {
        errs.push("audit.anonymous.file", "must not be empty");
    }
    if clash(&s.authenticated, &s.anonymous) || clash(&s.anonymous, &s.authenticated) {
        errs.push("audit.anonymous.file", "must differ from audit.file and its rotated files");
    }
    if s.anonymous_rate == 0 {
        errs.push("audit.anonymous.rate", "must be at least 1");
    }
    if s.anonymous_burst == 0 {
        errs.push("audit.anonymous.burst", "must be at least 1");
    }
    // A record is well under 1 KiB besides its path: with the path at most a quarter
    // of the smallest file, every record fits a file.
    let smallest = s.authenticated.max_bytes.min(s.anonymous.max_bytes);
    if s.max_path_bytes < 64 || s.max_path_bytes as u64 > smallest / 4 {
        errs.push("audit.max_path_bytes", format!("must be between 64 and a quarter of max_bytes ({})", smallest / 4));
    }
    s
}

/// Whether `b`'s file is `a`'s file or one of its rotated names.
fn clash(a: &AuditFiles, b: &AuditFiles) -> bool {
    b.file == a.file || (1..=a.keep).any(|i| b.file == format!("{}.{i}", a.file))
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn config(audit: &str) -> Result<Config, String> {
        let yaml = format!(
            "listen: 127.0.0.1:1\nadmin_listen: 127.0.0.1:2\ntenants:\n  t:\n    issuer: https://i\n    audiences: [a]\n    algorithms: [ES256]\n    keys: {{ url: \"http://127.0.0.1:4/jwks\" }}\nupstreams:\n  u:\n    peers: [\"127.0.0.1:3\"]\n\
             routes:\n  - {{ path: /p, upstream: u, public: true }}\naudit:\n{audit}"
        );
        Config::from_yaml(&yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_give_the_anonymous_trail_its_own_files() {
        let c = config("  file: /var/log/a.jsonl\n").unwrap();
        let a = c.audit.unwrap();
        assert_eq!(a.authenticated.file, "/var/log/a.jsonl");
        assert_eq!(a.anonymous.file, "/var/log/a.jsonl.anonymous");
        assert_eq!((a.anonymous.max_bytes, a.anonymous.keep), (10 << 20, 5));
        assert_eq!((a.anonymous_rate, a.anonymous_burst, a.max_path_bytes), (20, 100, 1024));
    }

    #[test]
    fn bad_settings_name_their_field() {
        for (audit, field) in [
            ("  file: a\n  max_bytes: 100\n", "audit.max_bytes"),
            ("  file: a\n  anonymous: { max_bytes: 100 }\n", "audit.anonymous.max_bytes"),
            ("  file: a\n  anonymous: { file: a }\n", "audit.anonymous.file"),
            ("  file: a\n  anonymous: { file: a.2 }\n", "audit.anonymous.file"),
            ("  file: a.anonymous.1\n  anonymous: { file: a.anonymous }\n", "audit.anonymous.file"),
            ("  file: a\n  anonymous: { rate: 0 }\n", "audit.anonymous.rate"),
            ("  file: a\n  anonymous: { burst: 0 }\n", "audit.anonymous.burst"),
            ("  file: a\n  anonymous: { queue: 0 }\n", "audit.anonymous.queue"),
            ("  file: a\n  max_path_bytes: 10\n", "audit.max_path_bytes"),
            ("  file: a\n  max_bytes: 4096\n  max_path_bytes: 2048\n", "audit.max_path_bytes"),
            ("  file: a\n  anonymous: { sample: 1 }\n", "sample"),
        ] {
            let e = config(audit).unwrap_err();
            assert!(e.contains(field), "{audit}: {e}");
        }
    }
}
