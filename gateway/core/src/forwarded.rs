//! Who the client is, and what the upstream is told about it: the one rule that turns
//! the TCP peer and the `X-Forwarded-*` headers a request arrived with into the client
//! address (for the audit trail, logs and rate limits) and the `X-Forwarded-For`,
//! `-Proto` and `-Host` values sent upstream.
//!
//! The peer is trusted when it is inside `http.trusted_proxies` or `http.trusted_hops`
//! is at least 1. An untrusted peer's forwarding headers are discarded: the client is
//! the peer. From a trusted peer, `X-Forwarded-For` is walked from the right (the
//! entry the nearest proxy appended) past every trusted entry, where the first
//! `trusted_hops` positions (the peer counts as the first) and every address inside
//! `trusted_proxies` are trusted, like nginx's `set_real_ip_from` with
//! `real_ip_recursive on` and Envoy's `xff_num_trusted_hops`; the first untrusted (or
//! unparseable) step ends the walk.

use ipnet::IpNet;
use std::net::IpAddr;

/// Which hops in front of the gateway are believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    /// Networks whose addresses are proxies of ours.
    pub nets: Vec<IpNet>,
    /// Hops counted from the peer that are trusted whatever their address.
    pub hops: usize,
}

impl TrustedProxies {
    fn contains(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// Whether the TCP peer's forwarding headers are believed.
    pub fn trusts_peer(&self, peer: IpAddr) -> bool {
        self.hops > 0 || self.contains(peer.to_canonical())
    }
}

/// What the upstream is told about the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarding {
    /// The client address by the rule above.
    pub client_ip: IpAddr,
    /// The `X-Forwarded-For` value sent upstream when the peer is trusted: its chain
    /// and the peer. `None` when it is the peer alone (then `client_ip`), which the
    /// caller can render once per address instead of once per request.
    pub xff: Option<String>,
    /// Whether the peer is trusted (its `X-Forwarded-Proto`/`-Host` are then kept).
    pub peer_trusted: bool,
}

/// One `X-Forwarded-For` element as an address: `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`,
/// `[2001:db8::1]` or `[2001:db8::1]:80`; anything else (`unknown`, obfuscated ids) is `None`.
pub fn parse_element(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (addr, tail) = rest.split_once(']')?;
        if !(tail.is_empty() || tail.strip_prefix(':').is_some_and(|p| p.parse::<u16>().is_ok())) {
            return None;
        }
        return addr.parse::<std::net::Ipv6Addr>().ok().map(|a| IpAddr::V6(a).to_canonical());
    }
    s.parse::<std::net::SocketAddrV4>().ok().map(|a| IpAddr::V4(*a.ip()))
}

impl Forwarding {
    /// The `X-Forwarded-For` value as text.
    pub fn xff_text(&self) -> std::borrow::Cow<'_, str> {
        match &self.xff {
            Some(list) => list.as_str().into(),
            None => self.client_ip.to_string().into(),
        }
    }
}

/// The client address and upstream `X-Forwarded-For` for a request from `peer` that
/// carried these `X-Forwarded-For` header values (in order).
pub fn forwarding(peer: IpAddr, xff_values: &[&[u8]], trust: &TrustedProxies) -> Forwarding {
    let peer = peer.to_canonical();
    if !trust.trusts_peer(peer) {
        return Forwarding { client_ip: peer, xff: None, peer_trusted: false };
    }
    let elements: Vec<&str> = xff_values
        .iter()
        .filter_map(|v| std::str::from_utf8(v).ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect();
    // Walk right to left: position 0 is the peer, position i the i-th element from the right.
    let mut client = peer;
    for (i, element) in elements.iter().rev().enumerate() {
        let trusted = i < trust.hops || trust.contains(client);
        if !trusted {
            break;
        }
        match parse_element(element) {
            Some(ip) => client = ip,
            None => break,
        }
    }
    let mut xff = String::with_capacity(elements.iter().map(|e| e.len() + 2).sum::<usize>() + 40);
    for e in &elements {
        // A trusted proxy's elements are forwarded as given, minus anything that could
        // not be a header value.
        if e.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
            xff.push_str(e);
            xff.push_str(", ");
        }
    }
    xff.push_str(&peer.to_string());
    Forwarding { client_ip: client, xff: Some(xff), peer_trusted: true }
}

/// The `X-Forwarded-Proto` sent upstream: a trusted peer's `http`/`https`, else the
/// scheme the gateway itself was reached by.
pub fn proto(peer_trusted: bool, given: Option<&[u8]>, tls: bool) -> &'static str {
    match given {
        Some(v) if peer_trusted && v.eq_ignore_ascii_case(b"https") => "https",
        Some(v) if peer_trusted && v.eq_ignore_ascii_case(b"http") => "http",
        _ if tls => "https",
        _ => "http",
    }
}

fn host_like(v: &[u8]) -> bool {
    !v.is_empty() && v.len() <= 255 && v.iter().all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(b))
}

/// The `X-Forwarded-Host` sent upstream: a trusted peer's value, else the request's
/// own `Host`; nothing when neither is a plausible host (`name[:port]`, `[v6]:port`).
pub fn host<'a>(peer_trusted: bool, given: Option<&'a [u8]>, request_host: Option<&'a [u8]>) -> Option<&'a str> {
    let pick = match given {
        Some(v) if peer_trusted && host_like(v) => Some(v),
        _ => request_host.filter(|v| host_like(v)),
    };
    pick.and_then(|v| std::str::from_utf8(v).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn trust(nets: &[&str], hops: usize) -> TrustedProxies {
        TrustedProxies { nets: nets.iter().map(|n| n.parse().unwrap()).collect(), hops }
    }

    #[test]
    fn client_address_rule() {
        let none = trust(&[], 0);
        let lb = trust(&["10.0.0.0/8"], 0);
        let one_hop = trust(&[], 1);
        let two_hops = trust(&[], 2);
        let lb_v6 = trust(&["fd00::/8"], 0);
        // (peer, X-Forwarded-For values, trust, expected client, expected upstream XFF)
        let table: Vec<(&str, Vec<&str>, &TrustedProxies, &str, &str)> = vec![
            // Untrusted peer: the client's claims are discarded, the client is the peer.
            ("203.0.113.9", vec![], &none, "203.0.113.9", "203.0.113.9"),
            ("203.0.113.9", vec!["6.6.6.6"], &none, "203.0.113.9", "203.0.113.9"),
            ("203.0.113.9", vec!["6.6.6.6"], &lb, "203.0.113.9", "203.0.113.9"),
            // Trusted load balancer: its appended element is the client.
            ("10.1.2.3", vec!["198.51.100.7"], &lb, "198.51.100.7", "198.51.100.7, 10.1.2.3"),
            // The client's own spoofed element sits left of the real one and is not believed.
            ("10.1.2.3", vec!["6.6.6.6, 198.51.100.7"], &lb, "198.51.100.7", "6.6.6.6, 198.51.100.7, 10.1.2.3"),
            // Recursive: trusted proxies in the chain are skipped.
            ("10.1.2.3", vec!["198.51.100.7, 10.9.9.9"], &lb, "198.51.100.7", "198.51.100.7, 10.9.9.9, 10.1.2.3"),
            // Several header lines are one list, in order.
            ("10.1.2.3", vec!["6.6.6.6", "198.51.100.7"], &lb, "198.51.100.7", "6.6.6.6, 198.51.100.7, 10.1.2.3"),
            // Trusted peer without a header: the peer is the client.
            ("10.1.2.3", vec![], &lb, "10.1.2.3", "10.1.2.3"),
            // All trusted: the leftmost parseable element.
            ("10.1.2.3", vec!["10.0.0.1, 10.0.0.2"], &lb, "10.0.0.1", "10.0.0.1, 10.0.0.2, 10.1.2.3"),
            // An unparseable element stops the walk at the last trusted address.
            ("10.1.2.3", vec!["198.51.100.7, unknown"], &lb, "10.1.2.3", "198.51.100.7, unknown, 10.1.2.3"),
            // Ports and brackets.
            ("10.1.2.3", vec!["198.51.100.7:4711"], &lb, "198.51.100.7", "198.51.100.7:4711, 10.1.2.3"),
            ("10.1.2.3", vec!["[2001:db8::7]:443"], &lb, "2001:db8::7", "[2001:db8::7]:443, 10.1.2.3"),
            // Hop counting: one hop trusts the peer's appended element whatever its address.
            ("192.0.2.1", vec!["6.6.6.6, 198.51.100.7"], &one_hop, "198.51.100.7", "6.6.6.6, 198.51.100.7, 192.0.2.1"),
            ("192.0.2.1", vec!["6.6.6.6, 198.51.100.7"], &two_hops, "6.6.6.6", "6.6.6.6, 198.51.100.7, 192.0.2.1"),
            ("192.0.2.1", vec![], &one_hop, "192.0.2.1", "192.0.2.1"),
            // IPv6 networks, and an IPv4-mapped peer is its IPv4 address.
            ("fd00::5", vec!["2001:db8::1"], &lb_v6, "2001:db8::1", "2001:db8::1, fd00::5"),
            ("::ffff:10.1.2.3", vec!["198.51.100.7"], &lb, "198.51.100.7", "198.51.100.7, 10.1.2.3"),
        ];
        for (peer, xff, t, client, upstream) in table {
            let values: Vec<&[u8]> = xff.iter().map(|v| v.as_bytes()).collect();
            let f = forwarding(ip(peer), &values, t);
            assert_eq!(f.client_ip, ip(client), "{peer} {xff:?}");
            assert_eq!(f.xff_text(), upstream, "{peer} {xff:?}");
        }
    }

    #[test]
    fn elements() {
        assert_eq!(parse_element(" 1.2.3.4 "), Some(ip("1.2.3.4")));
        assert_eq!(parse_element("1.2.3.4:80"), Some(ip("1.2.3.4")));
        assert_eq!(parse_element("[::1]"), Some(ip("::1")));
        assert_eq!(parse_element("[::1]:8080"), Some(ip("::1")));
        assert_eq!(parse_element("[::1]x"), None);
        assert_eq!(parse_element("unknown"), None);
        assert_eq!(parse_element("_hidden"), None);
        assert_eq!(parse_element("1.2.3.4:99999"), None);
    }

    #[test]
    fn proto_and_host() {
        assert_eq!(proto(false, Some(b"https"), false), "http");
        assert_eq!(proto(true, Some(b"HTTPS"), false), "https");
        assert_eq!(proto(true, Some(b"gopher"), false), "http");
        assert_eq!(proto(false, None, true), "https");
        assert_eq!(host(false, Some(b"evil.example"), Some(b"api.example")), Some("api.example"));
        assert_eq!(host(true, Some(b"public.example"), Some(b"gw:8080")), Some("public.example"));
        assert_eq!(host(true, Some(b"bad host\r"), Some(b"gw:8080")), Some("gw:8080"));
        assert_eq!(host(false, None, Some(b"a b")), None);
        assert_eq!(host(false, None, Some(b"[::1]:8080")), Some("[::1]:8080"));
    }
}
