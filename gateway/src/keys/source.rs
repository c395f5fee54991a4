//! Reading key sources within bounds: the size cap (`keys.max_fetch_bytes`) on a
//! streamed body or a key file, the errors a fetch can end in (each with its metric
//! label), and the file checks `--check` and a reload share.

use bytes::Bytes;
use gateway_core::config::Config;
use gateway_core::jwe::keys::DecryptionKeySet;
use gateway_core::tenant::{DecryptionSource, KeySource};
use gateway_core::KeySet;
use std::io::Read;
use std::path::Path;
use std::time::Duration;
use zeroize::{Zeroize, Zeroizing};

/// Why a key source could not be loaded. Messages name the source and the problem,
/// never key material or document content.
#[derive(Debug, thiserror::Error)]
pub enum KeySourceError {
    /// The key set is larger than `keys.max_fetch_bytes` (announced or streamed).
    #[error("key set larger than {limit} bytes (keys.max_fetch_bytes)")]
    TooLarge {
        /// The cap.
        limit: usize,
    },
    /// The whole fetch did not finish within `keys.fetch_timeout`.
    #[error("no complete answer within {0:?} (keys.fetch_timeout)")]
    Timeout(Duration),
    /// The source answered with a non-success status.
    #[error("HTTP {0}")]
    Status(reqwest::StatusCode),
    /// Connecting, sending or receiving failed.
    #[error("{0}")]
    Transport(String),
    /// A local file could not be read.
    #[error("{path}: {error}")]
    File {
        /// The file.
        path: String,
        /// Why.
        error: String,
    },
    /// The sidecar channel credential could not be read from where it is expected
    /// (`environment variable X`, `file /p`).
    #[error("channel credential not available: {0} (decryption.token_env or token_file)")]
    Credential(String),
    /// The document is not a usable key set.
    #[error("{0}")]
    Invalid(String),
}

impl KeySourceError {
    /// The `result` label of the fetch counters.
    pub fn label(&self) -> &'static str {
        match self {
            KeySourceError::TooLarge { .. } => "too_large",
            KeySourceError::Timeout(_) => "timeout",
            _ => "error",
        }
    }

    pub(super) fn transport(e: reqwest::Error, timeout: Duration) -> Self {
        if e.is_timeout() {
            KeySourceError::Timeout(timeout)
        } else {
            KeySourceError::Transport(e.to_string())
        }
    }
}

/// A response body collected under a size cap into wiped memory. It grows by copying
/// into a fresh `Zeroizing` buffer (the old one is wiped), never by reallocating in
/// place, so no copy of the key set is left behind in freed memory. The received
/// chunks are kept until the body is dropped and wiped then where no one else holds
/// them (the HTTP client's own receive buffers are out of reach).
pub(super) struct CappedBody {
    buf: Zeroizing<Vec<u8>>,
    limit: usize,
    spent: Vec<Bytes>,
}

impl CappedBody {
    pub(super) fn new(limit: usize, announced: Option<u64>) -> Self {
        let capacity = announced.map_or(16 << 10, |l| usize::try_from(l).unwrap_or(usize::MAX)).min(limit);
        Self { buf: Zeroizing::new(Vec::with_capacity(capacity)), limit, spent: Vec::new() }
    }

    /// Appends a chunk, or fails as soon as the total passes the cap.
    pub(super) fn push(&mut self, chunk: Bytes) -> Result<(), KeySourceError> {
        let needed = self.buf.len().saturating_add(chunk.len());
        if needed > self.limit {
            self.spent.push(chunk);
            return Err(KeySourceError::TooLarge { limit: self.limit });
        }
        if needed > self.buf.capacity() {
            let capacity = needed.max(self.buf.capacity().saturating_mul(2)).min(self.limit);
            let mut bigger = Zeroizing::new(Vec::with_capacity(capacity));
            bigger.extend_from_slice(&self.buf);
            self.buf = bigger;
        }
        self.buf.extend_from_slice(&chunk);
        self.spent.push(chunk);
        Ok(())
    }

    pub(super) fn into_inner(mut self) -> Zeroizing<Vec<u8>> {
        std::mem::take(&mut self.buf)
    }
}

impl Drop for CappedBody {
    fn drop(&mut self) {
        for chunk in self.spent.drain(..) {
            if let Ok(mut owned) = chunk.try_into_mut() {
                owned.as_mut().zeroize();
            }
        }
    }
}

/// Reads a local key file into wiped memory, refusing one larger than `limit` bytes.
pub fn read_capped(path: &str, limit: usize) -> Result<Zeroizing<Vec<u8>>, KeySourceError> {
    let fail = |error: String| KeySourceError::File { path: path.to_owned(), error };
    let file = std::fs::File::open(path).map_err(|e| fail(e.to_string()))?;
    let len = file.metadata().map_err(|e| fail(e.to_string()))?.len();
    if len > limit as u64 {
        return Err(KeySourceError::TooLarge { limit });
    }
    // Room for the whole file and one byte more, so reading never reallocates
    // (unless the file grows meanwhile, which the cap then catches).
    let mut buf = Zeroizing::new(Vec::with_capacity(len as usize + 1));
    file.take(limit as u64 + 1).read_to_end(&mut buf).map_err(|e| fail(e.to_string()))?;
    if buf.len() > limit {
        return Err(KeySourceError::TooLarge { limit });
    }
    Ok(buf)
}

/// Parses a local key file: JWKS when it looks like JSON, PEM otherwise.
pub(super) fn parse_file(bytes: &[u8], kid: Option<&str>) -> Result<KeySet, gateway_core::KeyError> {
    if bytes.trim_ascii_start().starts_with(b"{") {
        KeySet::from_jwks(bytes)
    } else {
        KeySet::from_pem(bytes, kid)
    }
}

/// Loads every file key source now (JWKS, PEM keys and certificates, private JWKS),
/// as start-up would, returning `field path: problem` lines.
pub fn check_files(config: &Config) -> Vec<String> {
    let limit = config.keys.max_fetch_bytes;
    let mut out = Vec::new();
    for t in &config.tenants {
        if let KeySource::File { path, kid } = &t.keys {
            let field = format!("tenants.{}.keys.file", t.id);
            match read_capped(path, limit) {
                Err(KeySourceError::File { error, .. }) => out.push(format!("{field}: {path}: {error}")),
                Err(e) => out.push(format!("{field}: {path}: {e}")),
                Ok(bytes) => match parse_file(&bytes, kid.as_deref()) {
                    Err(e) => out.push(format!("{field}: {path}: {e}")),
                    Ok(set) if set.is_empty() => out.push(format!("{field}: {path}: no usable signing key")),
                    Ok(_) => {}
                },
            }
        }
        if let Some(DecryptionSource::File(path)) = t.encryption.as_ref().map(|e| &e.keys) {
            let field = format!("tenants.{}.encryption.keys.file", t.id);
            match read_capped(path, limit) {
                Err(KeySourceError::File { error, .. }) => out.push(format!("{field}: {path}: {error}")),
                Err(e) => out.push(format!("{field}: {path}: {e}")),
                Ok(bytes) => match DecryptionKeySet::from_jwks(&bytes) {
                    Err(e) => out.push(format!("{field}: {path}: {e}")),
                    Ok(set) if set.is_empty() => out.push(format!("{field}: {path}: no usable decryption key")),
                    Ok(_) => {}
                },
            }
        }
    }
    out
}

/// Reads and validates a config file the way `--check` does and a reload must: the
/// YAML with every field error, then every key file it names. `Err` lists every
/// problem, one `field path: problem` per line.
pub fn load_checked(path: &Path) -> Result<Config, String> {
    let config = Config::from_file(path).map_err(|e| e.to_string())?;
    let problems = check_files(&config);
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(problems.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_capped_body_takes_chunks_up_to_the_cap_and_no_further() {
        let mut body = CappedBody::new(64 << 10, None);
        assert_eq!(body.buf.capacity(), 16 << 10);
        body.push(Bytes::from(vec![b'a'; 20 << 10])).unwrap();
        assert_eq!(body.buf.capacity(), 32 << 10, "doubled");
        body.push(Bytes::from(vec![b'b'; 40 << 10])).unwrap();
        assert_eq!(body.buf.capacity(), 64 << 10, "grown to the cap, never past it");
        let err = body.push(Bytes::from(vec![b'c'; 5 << 10])).unwrap_err();
        assert_eq!(err.label(), "too_large");
        assert_eq!(err.to_string(), "key set larger than 65536 bytes (keys.max_fetch_bytes)");

        let mut body = CappedBody::new(10, Some(1 << 40));
        assert_eq!(body.buf.capacity(), 10, "an announced length never sizes past the cap");
        body.push(Bytes::from(b"{\"keys\":[]}"[..10].to_vec())).unwrap();
        assert_eq!(&body.into_inner()[..], b"{\"keys\":[]");
    }

    #[test]
    fn key_files_are_read_up_to_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.json");
        std::fs::write(&path, [b'x'; 100]).unwrap();
        let path = path.to_str().unwrap();
        assert_eq!(read_capped(path, 100).unwrap().len(), 100);
        assert!(matches!(read_capped(path, 99), Err(KeySourceError::TooLarge { limit: 99 })));
        let missing = dir.path().join("none").to_str().unwrap().to_owned();
        let err = read_capped(&missing, 100).unwrap_err();
        assert!(matches!(err, KeySourceError::File { .. }) && err.label() == "error", "{err}");
    }
}
