//! `bare-hop`: a minimal Pingora reverse proxy for `load-tests/peers.sh`, the floor
//! Medgate's pass-through route is compared with. Its `ProxyHttp` has only
//! `upstream_peer`; everything else is as the gateway runs Pingora: the same Pingora
//! version, worker threads, grace periods (5 s), Pingora's default upstream
//! keep-alive pool, the same peer timeouts as a default gateway upstream (connect 1 s,
//! read/write 30 s) and the same global allocator.
//! `bare-hop --listen 127.0.0.1:6190 --upstream 127.0.0.1:8000 --threads 2`

use async_trait::async_trait;
use clap::Parser;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;
use std::net::SocketAddr;
use std::time::Duration;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(name = "bare-hop", about = "A bare Pingora proxy hop (load-test floor)")]
struct Cli {
    /// Address to listen on.
    #[arg(long)]
    listen: SocketAddr,
    /// The one upstream every request goes to.
    #[arg(long)]
    upstream: SocketAddr,
    /// Worker threads of the proxy service (the gateway's `threads`).
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

struct Hop {
    upstream: SocketAddr,
}

#[async_trait]
impl ProxyHttp for Hop {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        let mut peer = HttpPeer::new(self.upstream, false, String::new());
        peer.options.connection_timeout = Some(Duration::from_secs(1));
        peer.options.total_connection_timeout = Some(Duration::from_secs(1));
        peer.options.read_timeout = Some(Duration::from_secs(30));
        peer.options.write_timeout = Some(Duration::from_secs(30));
        Ok(Box::new(peer))
    }
}

fn main() {
    let cli = Cli::parse();
    let conf = ServerConf {
        grace_period_seconds: Some(5),
        graceful_shutdown_timeout_seconds: Some(5),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy =
        pingora::proxy::http_proxy_service_with_name(&server.configuration, Hop { upstream: cli.upstream }, "bare hop");
    proxy.threads = Some(cli.threads);
    proxy.add_tcp(&cli.listen.to_string());
    server.add_service(proxy);
    server.run_forever();
}
