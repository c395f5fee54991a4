//! The HTTPS listener's HTTP/2 limits (`tls.http2`), as a client sees them on the wire:
//! the server's SETTINGS advertise them, a stream beyond `max_concurrent_streams` is
//! refused with RST_STREAM(REFUSED_STREAM) while the others are answered, and a header
//! list above `max_header_list_size` gets a 431 on its stream (a far larger one ends
//! the connection with GOAWAY), never a 5xx, and the gateway keeps serving. Answers to
//! HEAD reach HTTP/2 clients.
//!
//! A well-behaved HTTP/2 client (hyper's) holds back streams beyond the server's limit,
//! so the concurrency test speaks raw frames: a blocking TLS connection with ALPN `h2`,
//! requests encoded with HPACK literals (no Huffman, no dynamic table).

use crate::tls::{edge, https_client};
use openssl::ssl::{SslConnector, SslMethod, SslStream, SslVerifyMode};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use testkit::claims;

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const ACK: u8 = 0x1;
const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
const SETTINGS_MAX_HEADER_LIST_SIZE: u16 = 0x6;
const REFUSED_STREAM: u32 = 0x7;

/// One frame read: type, flags, stream id, payload.
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend(stream.to_be_bytes());
    out.extend(payload);
    out
}

fn read_frame(s: &mut SslStream<TcpStream>) -> Frame {
    let mut head = [0u8; 9];
    s.read_exact(&mut head).expect("a frame (the connection stayed open and answered)");
    let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).unwrap();
    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    Frame { kind: head[3], flags: head[4], stream, payload }
}

/// HPACK integer with an `n`-bit prefix, the first byte's high bits `flags`.
fn hpack_int(out: &mut Vec<u8>, n: u32, flags: u8, v: usize) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(flags | v as u8);
        return;
    }
    out.push(flags | max as u8);
    let mut rest = v - max;
    while rest >= 128 {
        out.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    out.push(rest as u8);
}

fn hpack_str(out: &mut Vec<u8>, s: &str) {
    hpack_int(out, 7, 0, s.len());
    out.extend(s.as_bytes());
}

/// The header block of `GET https://localhost<path>` with these extra headers.
fn get_block(path: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    // :method GET (static 2), :scheme https (static 7), both indexed.
    let mut b = vec![0x82, 0x87];
    // :path (static 4) and :authority (static 1): literals without indexing, indexed name.
    hpack_int(&mut b, 4, 0, 4);
    hpack_str(&mut b, path);
    hpack_int(&mut b, 4, 0, 1);
    hpack_str(&mut b, "localhost");
    for (name, value) in extra {
        b.push(0);
        hpack_str(&mut b, name);
        hpack_str(&mut b, value);
    }
    b
}

/// A TLS connection with ALPN h2 that has exchanged the preface and SETTINGS; returns
/// it and the server's settings.
fn h2_connect(port: u16) -> (SslStream<TcpStream>, HashMap<u16, u32>) {
    let mut b = SslConnector::builder(SslMethod::tls()).unwrap();
    b.set_verify(SslVerifyMode::NONE);
    b.set_alpn_protos(b"\x02h2").unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut s = b.build().connect("localhost", tcp).unwrap();
    assert_eq!(s.ssl().selected_alpn_protocol(), Some(&b"h2"[..]), "ALPN picks h2");
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
    s.write_all(&frame(SETTINGS, 0, 0, &[])).unwrap();
    let settings = loop {
        let f = read_frame(&mut s);
        if f.kind == SETTINGS && f.flags & ACK == 0 {
            break f
                .payload
                .chunks(6)
                .map(|c| (u16::from_be_bytes([c[0], c[1]]), u32::from_be_bytes([c[2], c[3], c[4], c[5]])))
                .collect();
        }
    };
    s.write_all(&frame(SETTINGS, ACK, 0, &[])).unwrap();
    (s, settings)
}

/// What the server did with each stream, read until every stream in `streams` ended
/// (END_STREAM or RST_STREAM).
#[derive(Default, Debug)]
struct Outcome {
    /// First byte of each stream's response header block (0x88: `:status 200`).
    status_byte: HashMap<u32, u8>,
    /// Streams the server ended normally.
    ended: HashSet<u32>,
    /// RST_STREAM error codes.
    reset: HashMap<u32, u32>,
}

fn read_until_done(s: &mut SslStream<TcpStream>, streams: &[u32]) -> Outcome {
    let mut o = Outcome::default();
    while !streams.iter().all(|id| o.ended.contains(id) || o.reset.contains_key(id)) {
        let f = read_frame(s);
        match f.kind {
            HEADERS => {
                o.status_byte.entry(f.stream).or_insert(f.payload[0]);
            }
            DATA | RST_STREAM | GOAWAY => {}
            _ => continue,
        }
        assert_ne!(f.kind, GOAWAY, "the connection was ended: {:?}", f.payload);
        if f.kind == RST_STREAM {
            o.reset.insert(f.stream, u32::from_be_bytes([f.payload[0], f.payload[1], f.payload[2], f.payload[3]]));
        } else if f.flags & END_STREAM != 0 {
            o.ended.insert(f.stream);
        }
    }
    o
}

#[tokio::test]
async fn a_stream_beyond_max_concurrent_streams_is_refused_the_others_answered() {
    let e = edge("  http2: { max_concurrent_streams: 2, max_header_list_size: 4096 }\n").await;
    let token = e.key.mint(&claims("t1", "u-7", json!("doctor")));
    let port = e.https;
    let (settings, first, after) = tokio::task::spawn_blocking(move || {
        let (mut s, settings) = h2_connect(port);
        let auth = format!("Bearer {token}");
        // Three requests at once; the upstream holds each for a second, so the first
        // two are still open when the third arrives.
        let slow = get_block("/echo/slow?sleep_ms=1000", &[("authorization", &auth)]);
        let mut burst = Vec::new();
        for id in [1, 3, 5] {
            burst.extend(frame(HEADERS, END_STREAM | END_HEADERS, id, &slow));
        }
        s.write_all(&burst).unwrap();
        let first = read_until_done(&mut s, &[1, 3, 5]);
        // With the first two answered, the same connection takes a new stream.
        s.write_all(&frame(HEADERS, END_STREAM | END_HEADERS, 7, &get_block("/public/ping", &[]))).unwrap();
        let after = read_until_done(&mut s, &[7]);
        (settings, first, after)
    })
    .await
    .unwrap();
    assert_eq!(settings.get(&SETTINGS_MAX_CONCURRENT_STREAMS), Some(&2), "{settings:?}");
    assert_eq!(settings.get(&SETTINGS_MAX_HEADER_LIST_SIZE), Some(&4096), "{settings:?}");
    assert_eq!(first.reset.get(&5), Some(&REFUSED_STREAM), "the third stream is refused: {first:?}");
    assert!(!first.status_byte.contains_key(&5), "no response on the refused stream: {first:?}");
    for id in [1, 3] {
        assert!(first.ended.contains(&id) && !first.reset.contains_key(&id), "stream {id} answered: {first:?}");
        assert_eq!(first.status_byte.get(&id), Some(&0x88), "stream {id}: :status 200: {first:?}");
    }
    assert_eq!(after.status_byte.get(&7), Some(&0x88), "{after:?}");
}

#[tokio::test]
async fn a_header_list_above_max_header_list_size_gets_431_not_a_5xx() {
    let e = edge("  http2: { max_concurrent_streams: 10, max_header_list_size: 4096 }\n").await;
    let token = e.key.mint(&claims("t1", "u-7", json!("doctor")));
    let url = format!("https://gateway.medgate.test:{}/echo/x", e.https);
    let client = https_client(&e.ca, e.https).build().unwrap();
    let ok = client.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!((ok.status().as_u16(), ok.version()), (200, reqwest::Version::HTTP_2));

    // Over the limit: the stream is answered 431 by the HTTP/2 layer, before the
    // gateway sees the request; the connection stays usable.
    let big = "a".repeat(5000);
    let r = client.get(&url).bearer_auth(&token).header("x-big", &big).send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.version()), (431, reqwest::Version::HTTP_2));
    let r = client.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200, "the same connection serves the next request");

    // Far above it (more than four times): the connection is ended with GOAWAY; the
    // client sees an error, not a status, and the gateway serves new connections.
    let huge = "a".repeat(20_000);
    let err = client.get(&url).bearer_auth(&token).header("x-big", &huge).send().await.unwrap_err();
    let err = format!("{err:?}");
    assert!(err.contains("GoAway") && err.contains("ENHANCE_YOUR_CALM") && err.contains("Remote"), "{err}");
    let fresh = https_client(&e.ca, e.https).build().unwrap();

    let r = fresh.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let m = reqwest::get(e.gw.admin_url("/metrics")).await.unwrap().text().await.unwrap();
    assert!(!m.lines().any(|l| l.starts_with("gateway_requests_total") && l.contains("status=\"5")), "no 5xx:\n{m}");
}

#[tokio::test]
async fn answers_to_head_reach_http2_clients() {
    let e = edge("").await;
    let client = https_client(&e.ca, e.https).build().unwrap();
    // The gateway's own answers (401, 404) carry no body for HEAD, so HTTP/2 delivers
    // them (a body would end the stream with PROTOCOL_ERROR instead of an answer); a
    // proxied one (200) likewise.
    for (path, status) in [("/echo/x", 401), ("/nowhere", 404), ("/public/ping", 200)] {
        let url = format!("https://gateway.medgate.test:{}{path}", e.https);
        let r = client.head(&url).send().await.unwrap_or_else(|err| panic!("HEAD {path}: {err:?}"));
        assert_eq!((r.status().as_u16(), r.version()), (status, reqwest::Version::HTTP_2), "HEAD {path}");
        assert!(r.headers().contains_key("strict-transport-security"), "HEAD {path}");
        assert!(r.bytes().await.unwrap().is_empty(), "HEAD {path}");
    }
}
