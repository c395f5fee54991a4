//! Per-request cost of the edge checks on a typical browser-sized head (15 fields, two
//! of them with `_`): the header-name screen, the head limits and the client-address
//! rule from a trusted proxy, i.e. what `request_filter` adds before the token work.

use criterion::{criterion_group, criterion_main, Criterion};
use gateway_core::forwarded::{forwarding, TrustedProxies};
use gateway_core::header::{InboundPolicy, UnderscoreAction};
use gateway_core::http_limits::{check_head, Limits};
use std::hint::black_box;

const NAMES: [&str; 15] = [
    "host",
    "user-agent",
    "accept",
    "accept-language",
    "accept-encoding",
    "authorization",
    "content-type",
    "content-length",
    "x-forwarded-for",
    "x_user_id",
    "x_custom",
    "cookie",
    "origin",
    "referer",
    "x-request-id",
];

fn edge(c: &mut Criterion) {
    let policy = InboundPolicy {
        underscore: UnderscoreAction::Allow,
        owned: vec!["x-user-id".into(), "x-tenant-id".into(), "x-user-role".into(), "x-token-id".into()],
        strip: vec!["x-http-method-override".into(), "x-http-method".into(), "x-method-override".into()],
    };
    let limits = Limits::default();
    let trust = TrustedProxies { nets: vec!["10.0.0.0/8".parse().unwrap()], hops: 0 };
    let peer = "10.1.2.3".parse().unwrap();
    let xff: [&[u8]; 1] = [b"6.6.6.6, 198.51.100.7"];
    c.bench_function("edge/screen_15_headers", |b| {
        b.iter(|| {
            NAMES
                .iter()
                .map(|n| policy.inbound(black_box(n)))
                .filter(|v| *v != gateway_core::header::Inbound::Keep)
                .count()
        })
    });
    c.bench_function("edge/check_head", |b| {
        b.iter(|| check_head(&limits, black_box(40), black_box(900), 15, NAMES.iter().map(|n| (n.len(), 40))))
    });
    c.bench_function("edge/forwarding_trusted", |b| b.iter(|| forwarding(black_box(peer), black_box(&xff), &trust)));
}

criterion_group!(benches, edge);
criterion_main!(benches);
