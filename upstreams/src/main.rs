//! `upstreams`: runs the patient, doctor, lab and insurance demo services,
//! each on its own address, over one shared in-memory store.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tracing_subscriber::EnvFilter;
use upstreams::{router, Service, Store};

/// Command-line options: one listen address per service.
#[derive(Debug, Parser)]
#[command(name = "upstreams", version, about)]
struct Cli {
    /// Listen address of the patient service.
    #[arg(long, env = "UPSTREAMS_PATIENT", default_value = "127.0.0.1:9101")]
    patient: SocketAddr,
    /// Listen address of the doctor service.
    #[arg(long, env = "UPSTREAMS_DOCTOR", default_value = "127.0.0.1:9102")]
    doctor: SocketAddr,
    /// Listen address of the lab service.
    #[arg(long, env = "UPSTREAMS_LAB", default_value = "127.0.0.1:9103")]
    lab: SocketAddr,
    /// Listen address of the insurance service.
    #[arg(long, env = "UPSTREAMS_INSURANCE", default_value = "127.0.0.1:9104")]
    insurance: SocketAddr,
    /// Serve HTTPS with this PEM certificate chain (with `--tls-key`).
    #[arg(long, env = "UPSTREAMS_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// PEM private key of `--tls-cert`.
    #[arg(long, env = "UPSTREAMS_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// Require a client certificate signed by a CA in this PEM bundle (mutual TLS;
    /// with `--tls-cert`): callers without the gateway's certificate are refused.
    #[arg(long, env = "UPSTREAMS_CLIENT_CA", requires = "tls_cert")]
    client_ca: Option<std::path::PathBuf>,
}

impl Cli {
    /// The configured address of `service`.
    fn addr(&self, service: Service) -> SocketAddr {
        match service {
            Service::Patient => self.patient,
            Service::Doctor => self.doctor,
            Service::Lab => self.lab,
            Service::Insurance => self.insurance,
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .init();
    match run(&cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err}");
            ExitCode::FAILURE
        }
    }
}

/// Binds every listener first (so a busy port fails fast), then serves all
/// four services until Ctrl-C or until one of them fails.
async fn run(cli: &Cli) -> Result<(), String> {
    let store = Arc::new(Store::seeded());
    let mut bound = Vec::new();
    for service in Service::ALL {
        let addr = cli.addr(service);
        let listener =
            TcpListener::bind(addr).await.map_err(|e| format!("cannot bind service={service} addr={addr}: {e}"))?;
        let local = listener.local_addr().map_err(|e| format!("service={service}: {e}"))?;
        println!("listening service={service} addr={local}");
        tracing::debug!(%service, addr = %local, "listening");
        bound.push((service, listener));
    }

    let tls = match (&cli.tls_cert, &cli.tls_key) {
        (Some(cert), Some(key)) => Some(upstreams::tls::server_config(&upstreams::tls::TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: cli.client_ca.clone(),
        })?),
        _ => None,
    };
    let mut tasks = JoinSet::new();
    for (service, listener) in bound {
        let app = router(service, Arc::clone(&store));
        let tls = tls.clone();
        tasks.spawn(async move {
            let served = match tls {
                Some(config) => {
                    let listener = upstreams::tls::TlsListener::new(listener, config)
                        .map_err(|e| format!("service={service}: {e}"))?;
                    axum::serve(listener, app).with_graceful_shutdown(shutdown()).await
                }
                None => axum::serve(listener, app).with_graceful_shutdown(shutdown()).await,
            };
            served.map_err(|e| format!("service={service} stopped: {e}"))
        });
    }
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(e) => return Err(format!("service task failed: {e}")),
        }
    }
    tracing::info!("shut down");
    Ok(())
}

/// Resolves on Ctrl-C; never resolves if the signal cannot be watched.
async fn shutdown() {
    if let Err(e) = tokio::signal::ctrl_c().await {
        tracing::warn!("cannot watch Ctrl-C: {e}");
        std::future::pending::<()>().await;
    }
}
