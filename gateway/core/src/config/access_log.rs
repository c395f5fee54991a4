//! The `access_log:` section: one JSON line per finished request, written off the
//! request path by a writer thread, to stdout (the default), stderr or a file, or off.

use super::file::AccessLogFile;
use super::Errors;

/// Where access log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogTarget {
    /// No access log.
    Off,
    /// The process's standard output (the default: the container convention).
    Stdout,
    /// The process's standard error, beside the operational log.
    Stderr,
    /// This file, opened for appending (created `0600`).
    File(String),
}

/// The validated `access_log:` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogSettings {
    /// Where lines go.
    pub target: AccessLogTarget,
    /// Lines queued between the proxy threads and the writer; past it lines are
    /// dropped and counted, never waited for.
    pub queue: usize,
}

impl Default for AccessLogSettings {
    fn default() -> Self {
        Self { target: AccessLogTarget::Stdout, queue: DEFAULT_QUEUE }
    }
}

const DEFAULT_QUEUE: usize = 16_384;
const MAX_QUEUE: usize = 1 << 20;

/// Validates `a` (absent: the default), pushing problems onto `errs`.
pub(super) fn settings(a: Option<&AccessLogFile>, errs: &mut Errors) -> AccessLogSettings {
    let Some(a) = a else { return AccessLogSettings::default() };
    let target = match (a.target.as_deref(), &a.path) {
        (None | Some("stdout"), None) => AccessLogTarget::Stdout,
        (Some("stderr"), None) => AccessLogTarget::Stderr,
        (Some("off"), None) => AccessLogTarget::Off,
        (Some("file"), Some(p)) if !p.is_empty() => AccessLogTarget::File(p.clone()),
        (Some("file"), _) => {
            errs.push("access_log.path", "a file path is required with target: file");
            AccessLogTarget::Off
        }
        (None | Some("stdout" | "stderr" | "off"), Some(_)) => {
            errs.push("access_log.path", "only with target: file");
            AccessLogTarget::Off
        }
        (Some(other), _) => {
            errs.push("access_log.target", format!("{other:?} is not off, stdout, stderr or file"));
            AccessLogTarget::Off
        }
    };
    if let Some(f) = a.format.as_deref().filter(|f| *f != "json") {
        errs.push("access_log.format", format!("{f:?} is not json"));
    }
    let queue = a.queue.unwrap_or(DEFAULT_QUEUE);
    if queue == 0 || queue > MAX_QUEUE {
        errs.push("access_log.queue", format!("must be between 1 and {MAX_QUEUE}"));
    }
    AccessLogSettings { target, queue }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn config(section: &str) -> Result<Config, String> {
        let yaml = format!(
            "listen: 127.0.0.1:1\nadmin_listen: 127.0.0.1:2\ntenants:\n  t:\n    issuer: https://i\n    audiences: [a]\n    algorithms: [ES256]\n    keys: {{ url: \"http://127.0.0.1:4/jwks\" }}\nupstreams:\n  u:\n    peers: [\"127.0.0.1:3\"]\n\
             routes:\n  - {{ path: /p, upstream: u, public: true }}\n{section}"
        );
        Config::from_yaml(&yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn targets() {
        assert_eq!(config("").unwrap().access_log, AccessLogSettings::default());
        assert_eq!(config("").unwrap().access_log.target, AccessLogTarget::Stdout);
        for (section, target) in [
            ("access_log: { target: off }", AccessLogTarget::Off),
            ("access_log: { target: stderr, format: json }", AccessLogTarget::Stderr),
            (
                "access_log: { target: file, path: /var/log/gw.jsonl }",
                AccessLogTarget::File("/var/log/gw.jsonl".into()),
            ),
        ] {
            assert_eq!(config(section).unwrap().access_log.target, target, "{section}");
        }
        assert_eq!(config("access_log: { queue: 10 }").unwrap().access_log.queue, 10);
    }

    #[test]
    fn bad_settings_name_their_field() {
        for (section, field) in [
            ("access_log: { target: syslog }", "access_log.target"),
            ("access_log: { target: file }", "access_log.path"),
            ("access_log: { target: file, path: \"\" }", "access_log.path"),
            ("access_log: { target: stdout, path: /x }", "access_log.path"),
            ("access_log: { format: text }", "access_log.format"),
            ("access_log: { queue: 0 }", "access_log.queue"),
            ("access_log: { level: info }", "level"),
        ] {
            let e = config(section).unwrap_err();
            assert!(e.contains(field), "{section}: {e}");
        }
    }
}
