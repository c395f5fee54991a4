//! `gateway`: the Pingora edge gateway. Loads and validates the YAML config
//! (`--check`/`-t` only validates), loads tenant keys (failing fast if configured),
//! then runs the proxy, the admin listener, the key refresher and the upstream
//! health checks as Pingora services.

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod access_log;
mod admin;
mod audit;
mod background;
mod clock;
mod credential;
mod edge;
mod keys;
mod metrics;
mod proxy;
mod replay;
mod runtime;
mod tls;
mod traffic;
mod upstream;

use clap::Parser;
use gateway_core::config::Startup;
use gateway_core::Config;
use pingora::prelude::*;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::services::background::background_service;
use pingora::services::listening::Service;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Command line.
#[derive(Parser, Debug)]
#[command(name = "gateway", about = "Multi-tenant JWT edge gateway on Pingora")]
struct Cli {
    /// The gateway's YAML config.
    #[arg(long, env = "GATEWAY_CONFIG")]
    config: PathBuf,
    /// Validate the config, print every error with its field path, and exit.
    #[arg(long)]
    check: bool,
    /// Pingora server config file (`upgrade_sock`, `pid_file`, grace periods, ...).
    #[arg(short, long, value_name = "PINGORA_YAML")]
    conf: Option<String>,
    /// Graceful upgrade: take the listening sockets over from the running gateway
    /// (both need `-c` with the same `upgrade_sock`; then send SIGQUIT to the old one).
    #[arg(short, long)]
    upgrade: bool,
    /// Run in the background (Pingora's daemon mode).
    #[arg(short, long)]
    daemon: bool,
    /// Same as `--check` (Pingora's spelling).
    #[arg(short, long)]
    test: bool,
}

impl Cli {
    /// Pingora's own options, from the flags above.
    fn pingora(&self) -> Opt {
        Opt { upgrade: self.upgrade, daemon: self.daemon, nocapture: false, test: self.test, conf: self.conf.clone() }
    }
}

fn main() -> ExitCode {
    // Pingora logs whole request headers at debug level, which would put tokens and
    // identities in the log: its crates are capped at info whatever RUST_LOG says.
    let filter = match tracing_subscriber::EnvFilter::try_from_default_env() {
        Ok(user) => ["pingora_proxy", "pingora_core", "pingora_load_balancing"]
            .into_iter()
            .fold(user, |f, krate| f.add_directive(format!("{krate}=info").parse().expect("static directive"))),
        Err(_) => "info,pingora_core=warn,pingora_proxy=warn,pingora_load_balancing=warn".into(),
    };
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(filter)
        .init();
    let cli = Cli::parse();
    if cli.check || cli.test {
        // The same validation a SIGHUP reload runs, then the credentials start-up reads.
        let problems = match keys::load_checked(&cli.config) {
            Ok(config) => credential::problems(&config).into_iter().chain(tls::problems(&config)).collect(),
            Err(e) => {
                let mut problems = vec![e];
                if let Ok(config) = Config::from_file(&cli.config) {
                    problems.extend(credential::problems(&config));
                    problems.extend(tls::problems(&config));
                }
                problems
            }
        };
        if !problems.is_empty() {
            eprintln!("invalid config {}:\n{}", cli.config.display(), problems.join("\n"));
            return ExitCode::from(2);
        }
        println!("config {} is valid", cli.config.display());
        return ExitCode::SUCCESS;
    }
    let config = match Config::from_file(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("invalid config {}:\n{e}", cli.config.display());
            return ExitCode::from(2);
        }
    };
    let problems = credential::problems(&config);
    if !problems.is_empty() {
        eprintln!("gateway: credentials not available:\n{}", problems.join("\n"));
        return ExitCode::from(2);
    }
    let problems = tls::problems(&config);
    if !problems.is_empty() {
        eprintln!("gateway: TLS files refused:\n{}", problems.join("\n"));
        return ExitCode::from(2);
    }
    // Pingora retries a taken port forever; a graceful upgrade (`-u`) takes the
    // listening sockets over from the old process, so there is nothing to check.
    if !cli.upgrade {
        let mut addrs = vec![("listen", config.listen), ("admin_listen", config.admin_listen)];
        if let Some(t) = &config.tls {
            addrs.extend(t.listen.iter().map(|a| ("tls.listen", *a)));
            addrs.extend(t.redirect_listen.map(|a| ("tls.redirect_listen", a)));
        }
        if let Err(e) = ports_free(&addrs) {
            eprintln!("gateway: {e}");
            return ExitCode::FAILURE;
        }
    }
    match run(cli, config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gateway: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Binds each listener address once (and lets go) so a taken port fails start-up at
/// once, naming the field and address, instead of Pingora's endless bind retries.
fn ports_free(addrs: &[(&str, std::net::SocketAddr)]) -> Result<(), String> {
    for (field, addr) in addrs {
        if let Err(e) = std::net::TcpListener::bind(addr) {
            return Err(match e.kind() {
                std::io::ErrorKind::AddrInUse => format!("{field}: {addr} is in use"),
                _ => format!("{field}: {addr} cannot be bound: {e}"),
            });
        }
    }
    Ok(())
}

fn run(cli: Cli, config: Config) -> anyhow::Result<()> {
    let metrics = metrics::Metrics::new()?;
    let listen = config.listen.to_string();
    let admin_listen = config.admin_listen.to_string();
    let threads = config.threads;
    let startup = config.keys.startup;
    let edge_tls = tls::EdgeTls::start(config.tls.as_ref(), &metrics)?;
    let first = runtime::Runtime::build(config, None, &metrics)?;

    let failed = tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(first.fetcher.load_all());
    for (tenant, why) in &failed {
        tracing::warn!(tenant, error = %why, "tenant keys not loaded at start-up");
    }
    let failed_required: Vec<String> =
        failed.iter().filter(|(t, _)| first.required.contains(t)).map(|(t, e)| format!("{t} ({e})")).collect();
    if startup == Startup::FailFast && !failed_required.is_empty() {
        anyhow::bail!(
            "keys.startup is fail_fast and required tenant keys could not be loaded: {}",
            failed_required.join(", ")
        );
    }
    let audit = match &first.engine.config.audit {
        Some(settings) => Some(Arc::new(audit::AuditLog::start(settings, &metrics)?)),
        None => None,
    };
    let access_log = Arc::new(access_log::AccessLog::start(&first.engine.config.access_log, &metrics)?);
    let admin_token = credential::admin(&first.engine.config)?;
    let feed_status = Arc::new(background::revocation::FeedStatus::default());
    if let Some(settings) = &first.engine.config.revocation {
        background::revocation::load_state(settings, &first.engine.revocations, &feed_status);
    }
    let rt = runtime::shared(first);

    // Pingora's defaults wait 5 minutes after SIGTERM; without a Pingora conf file
    // (`-c`), drain for 5 s and stop.
    let mut server = if cli.conf.is_some() {
        Server::new(Some(cli.pingora()))?
    } else {
        let conf = ServerConf {
            grace_period_seconds: Some(5),
            graceful_shutdown_timeout_seconds: Some(5),
            ..ServerConf::default()
        };
        Server::new_with_opt_and_conf(Some(cli.pingora()), conf)
    };
    server.bootstrap();

    let gateway = proxy::Gateway {
        rt: rt.clone(),
        metrics: metrics.clone(),
        audit: audit.clone(),
        access_log: access_log.clone(),
    };
    let mut http_proxy = pingora::proxy::http_proxy(&server.configuration, gateway);
    edge_tls.configure_proxy(&mut http_proxy);
    let app = edge::EdgeApp { proxy: Arc::new(http_proxy), rt: rt.clone() };
    let mut proxy = Service::new("gateway proxy".to_string(), app);
    proxy.threads = Some(threads);
    proxy.add_tcp(&listen);
    edge_tls.add_listeners(&mut proxy)?;
    if let Some(redirect) = edge_tls.redirect_service() {
        server.add_service(redirect);
    }

    let mut admin = Service::new(
        "gateway admin".to_string(),
        admin::Admin {
            rt: rt.clone(),
            metrics: metrics.clone(),
            audit: audit.clone(),
            token: admin_token,
            feed: feed_status.clone(),
        },
    );
    admin.threads = Some(1);
    admin.add_tcp(&admin_listen);

    server.add_service(proxy);
    server.add_service(admin);
    server.add_service(background_service("jwks refresh", background::key_refresh::KeyRefresher(rt.clone())));
    server.add_service(background_service("upstream health", background::health::HealthChecks(rt.clone())));
    server.add_service(background_service(
        "tls certificates",
        background::cert_watch::CertWatch::new(&edge_tls, rt.clone()),
    ));
    // Always running: it follows the feed of the current config (a reload may add one).
    let follower = background::revocation::Follower {
        rt: rt.clone(),
        status: feed_status,
        metrics: metrics.clone(),
        saved_at: Default::default(),
    };
    server.add_service(background_service("revocation feed", follower));
    let reloader = Arc::new(background::reload::Reloader::new(cli.config, rt, metrics.clone()));
    server.add_service(background_service(
        "tenant discovery",
        background::discovery::Discovery::new(reloader.clone(), &metrics)?,
    ));
    server.add_service(background_service("config reload", background::reload::OnHangup(reloader)));
    tracing::info!(%listen, %admin_listen, "gateway starting");
    server.run(pingora::server::RunArgs::default());
    // Every request has finished: let the access log and audit writers finish what is queued.
    access_log.drain(std::time::Duration::from_secs(2));
    if let Some(audit) = audit {
        audit.drain(std::time::Duration::from_secs(5));
    }
    Ok(())
}
