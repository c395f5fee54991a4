//! The redirect-only plain listener (`tls.redirect_listen`): every request is answered
//! `308 Permanent Redirect` to the same host and path on the first HTTPS listener;
//! nothing is proxied and no token is looked at.

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

/// The redirect app.
pub struct Redirect {
    /// Port of the HTTPS listener to send clients to.
    pub https_port: u16,
}

/// The `Location` for a request with `host` (its `Host` header, if any) and `path`;
/// `None` without a usable host.
pub fn location(host: Option<&str>, path: &str, https_port: u16) -> Option<String> {
    let host = host?.trim();
    // Drop any port the client used for the plain listener; reject what is not a host.
    let name = match host.strip_prefix('[') {
        Some(v6) => format!("[{}]", v6.split(']').next()?),
        None => host.split(':').next()?.to_owned(),
    };
    if name.is_empty() || name.bytes().any(|b| !(b.is_ascii_alphanumeric() || b"-._[]:".contains(&b))) {
        return None;
    }
    let port = if https_port == 443 { String::new() } else { format!(":{https_port}") };
    let path = if path.starts_with('/') { path } else { "/" };
    Some(format!("https://{name}{port}{path}"))
}

#[async_trait]
impl ServeHttp for Redirect {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        let host = req.headers.get("host").and_then(|v| v.to_str().ok()).or(req.uri.host());
        let path = req.uri.path_and_query().map_or("/", |p| p.as_str());
        let target = location(host, path, self.https_port);
        session.set_keepalive(None);
        let answer = match target {
            Some(loc) => Response::builder().status(308).header("location", loc).header("content-length", "0"),
            None => Response::builder().status(400).header("content-length", "0"),
        };
        answer.header("connection", "close").body(Vec::new()).unwrap_or_default()
    }
}

/// The `Strict-Transport-Security` value in force (`tls.hsts`), set once at start-up
/// (the `tls:` section changes on restart).
static HSTS: std::sync::OnceLock<http::HeaderValue> = std::sync::OnceLock::new();

/// Sets the `Strict-Transport-Security` value sent on HTTPS answers.
pub fn set_hsts(value: &str) -> anyhow::Result<()> {
    let _ = HSTS.set(http::HeaderValue::from_str(value)?);
    Ok(())
}

/// Adds `Strict-Transport-Security` to an answer on an HTTPS connection (never on
/// plain HTTP, where RFC 6797 says to ignore it).
pub fn add_hsts(session: &pingora::proxy::Session, resp: &mut pingora::http::ResponseHeader) -> pingora::Result<()> {
    if let Some(v) = HSTS.get() {
        if session.digest().is_some_and(|d| d.ssl_digest.is_some()) {
            resp.insert_header("strict-transport-security", v.clone())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::location;

    #[test]
    fn locations() {
        assert_eq!(location(Some("a.example:8080"), "/x?y=1", 8443).as_deref(), Some("https://a.example:8443/x?y=1"));
        assert_eq!(location(Some("a.example"), "/", 443).as_deref(), Some("https://a.example/"));
        assert_eq!(location(Some("[::1]:80"), "/p", 8443).as_deref(), Some("https://[::1]:8443/p"));
        assert_eq!(location(None, "/", 443), None);
        assert_eq!(location(Some("evil.example/@x"), "/", 443), None);
        assert_eq!(location(Some("a.example"), "*", 443).as_deref(), Some("https://a.example/"));
    }
}
