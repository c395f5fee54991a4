//! `kms-sidecar`: the per-tenant key service beside the gateway. It stores every
//! tenant's keys durably in an embedded database, sealed under a master key; serves
//! JWKS; issues tokens; hands decryption keys to the gateway over an authenticated
//! loopback channel; and rotates keys on schedule and on demand with overlaps so no
//! valid token fails during a normal rotation.

mod api;
mod config;
mod crypto;
mod der;
mod ecdh;
mod keyring;
mod listener;
mod metrics;
mod one_time;
mod permission;
mod secret;
mod service;
mod store;
mod tenant;

use base64::Engine as _;
use clap::{Parser, Subcommand};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(name = "kms-sidecar", about = "Per-tenant key service for the gateway")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the service (its key store must exist: see `init`).
    Serve {
        /// YAML config.
        #[arg(long)]
        config: std::path::PathBuf,
    },
    /// Create the key store of this config (refuses if one exists), or with
    /// `--accept-restore` accept the store in place as this sidecar's own after a
    /// restore from a backup (revocations recorded since the backup are not in it).
    Init {
        /// YAML config.
        #[arg(long)]
        config: std::path::PathBuf,
        /// Accept the existing store instead of creating one.
        #[arg(long)]
        accept_restore: bool,
    },
    /// Mint a token through a running sidecar; prints only the token.
    Mint {
        /// Tenant id.
        #[arg(long)]
        tenant: String,
        /// Subject.
        #[arg(long)]
        sub: String,
        /// Role (repeat for several).
        #[arg(long)]
        role: Vec<String>,
        /// Audience (default: the tenant's).
        #[arg(long)]
        aud: Option<String>,
        /// Lifetime, e.g. 5m (default 15m).
        #[arg(long)]
        ttl: Option<String>,
        /// Wrap in a JWE to the tenant's encryption key.
        #[arg(long)]
        encrypt: bool,
        /// Extra claim `key=value` (repeatable).
        #[arg(long = "claim")]
        claims: Vec<String>,
        /// Sidecar base URL.
        #[arg(long, default_value = "http://127.0.0.1:8081")]
        url: String,
        /// File holding the admin token (default: env KMS_ADMIN_TOKEN).
        #[arg(long)]
        token_file: Option<std::path::PathBuf>,
    },
    /// Print a fresh base64 master key.
    GenMasterKey,
}

fn main() -> ExitCode {
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let result = match Cli::parse().cmd {
        Cmd::Serve { config } => serve(&config),
        Cmd::Init { config, accept_restore } => init(&config, accept_restore),
        Cmd::Mint { tenant, sub, role, aud, ttl, encrypt, claims, url, token_file } => {
            mint(tenant, sub, role, aud, ttl, encrypt, claims, url, token_file)
        }
        Cmd::GenMasterKey => {
            let mut key = [0u8; 32];
            aws_lc_rs::rand::fill(&mut key).map_err(|_| anyhow::anyhow!("rng failure")).map(|_| {
                println!("{}", base64::engine::general_purpose::STANDARD.encode(key));
            })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kms-sidecar: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Reads and validates the config and builds the sealer from its master key.
fn load(path: &std::path::Path) -> anyhow::Result<(config::KmsConfig, crypto::Sealer)> {
    let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let cfg =
        config::KmsConfig::from_yaml(&text).map_err(|e| anyhow::anyhow!("invalid config {}:\n{e}", path.display()))?;
    let master = cfg.master_key.read("master_key")?;
    let master = zeroize::Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(master.trim())
            .map_err(|_| anyhow::anyhow!("master_key: not base64 (use `kms-sidecar gen-master-key`)"))?,
    );
    let sealer = crypto::Sealer::new(&master).map_err(|e| anyhow::anyhow!("master_key: {e}"))?;
    Ok((cfg, sealer))
}

fn init(path: &std::path::Path, accept_restore: bool) -> anyhow::Result<()> {
    let (cfg, sealer) = load(path)?;
    let dir = std::path::Path::new(&cfg.data_dir);
    if accept_restore {
        let store = store::Store::open(dir, sealer)?;
        if let Err(e) = store.check_last_run() {
            tracing::warn!(reason = %e, "accepting the store as it is");
        }
        store.record_last_run()?;
        println!("accepted the key store at {} (store id {}) as this sidecar's", dir.display(), store.id());
    } else {
        let store = store::Store::create(dir, sealer)?;
        println!("created a new key store at {} (store id {})", dir.display(), store.id());
    }
    Ok(())
}

fn serve(path: &std::path::Path) -> anyhow::Result<()> {
    let (cfg, sealer) = load(path)?;
    let admin_token = cfg.admin_token.read("admin_token")?;
    let gateway_token = cfg.gateway_token.read("gateway_token")?;
    for (name, t) in [("admin_token", &admin_token), ("gateway_token", &gateway_token)] {
        if t.len() < 16 {
            anyhow::bail!("{name}: must be at least 16 characters");
        }
    }
    if bool::from(subtle::ConstantTimeEq::ct_eq(admin_token.as_bytes(), gateway_token.as_bytes())) {
        anyhow::bail!(
            "admin_token and gateway_token: must differ (the gateway channel must not hold the admin credential)"
        );
    }
    let store = store::Store::open(std::path::Path::new(&cfg.data_dir), sealer)?;
    store.check_last_run()?;
    store.record_last_run()?;
    let kms = Arc::new(service::Kms::new(store, cfg.max_age(), cfg.keep_retired).map_err(|e| anyhow::anyhow!("{e}"))?);
    for t in kms.tenants() {
        if let Err(e) = tenant::TenantSpec::validate(tenant::TenantInput::from(&t)) {
            let problems = tenant::TenantSpec::describe(&e, tenant::Source::Api);
            tracing::warn!(tenant = %t.id, %problems, "stored tenant is outside the validated ranges; delete and re-create it");
        }
    }
    let now = api::now();
    for spec in &cfg.specs {
        let id = spec.id().to_owned();
        if kms.ensure_tenant(spec.clone(), now).map_err(|e| anyhow::anyhow!("tenant {id}: {e}"))? {
            tracing::info!(tenant = %id, "tenant created");
        }
    }
    let metrics = metrics::Metrics::new()?;
    let (feed, _) = tokio::sync::watch::channel(kms.last_revocation().map_err(|e| anyhow::anyhow!("{e}"))?);
    let state = Arc::new(api::AppState {
        kms: kms.clone(),
        admin_token,
        gateway_token,
        metrics: metrics.clone(),
        feed,
        one_time: one_time::OneTimeWriter::start(kms.clone(), cfg.one_time_capacity.unwrap_or(1_000_000))?,
    });
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async move {
        let public = tokio::net::TcpListener::bind(cfg.listen).await?;
        let internal = tokio::net::TcpListener::bind(cfg.internal_listen).await?;
        tracing::info!(listen = %cfg.listen, internal = %cfg.internal_listen, "kms-sidecar serving");
        let rotation = tokio::spawn(rotation_loop(kms, metrics));
        let limits = cfg.http_limits;
        let a = listener::serve(public, api::public(state.clone()), &limits, shutdown());
        let b = listener::serve(internal, api::internal(state), &limits, shutdown());
        let (ra, rb) = tokio::join!(a, b);
        rotation.abort();
        ra?;
        rb?;
        anyhow::Ok(())
    })
}

async fn shutdown() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("signal");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// The "key rotation" task: applies the timeline every second.
async fn rotation_loop(kms: Arc<service::Kms>, metrics: metrics::Metrics) {
    loop {
        let k = kms.clone();
        match tokio::task::spawn_blocking(move || k.tick(api::now())).await {
            Ok(Ok(changes)) => {
                for (tenant, change) in changes {
                    if let keyring::Change::Create { key_use, .. } = change {
                        metrics.rotations.with_label_values(&[&tenant, key_use.as_str(), "scheduled"]).inc();
                        tracing::info!(%tenant, key_use = key_use.as_str(), "scheduled rotation: next key created");
                    }
                }
            }
            Ok(Err(e)) => tracing::error!(error = %e, "rotation failed; will retry"),
            Err(e) => tracing::error!(error = %e, "rotation task failed"),
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

#[allow(clippy::too_many_arguments)]
fn mint(
    tenant: String,
    sub: String,
    roles: Vec<String>,
    aud: Option<String>,
    ttl: Option<String>,
    encrypt: bool,
    claims: Vec<String>,
    url: String,
    token_file: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    let token = match token_file {
        Some(p) => {
            let raw = zeroize::Zeroizing::new(
                std::fs::read_to_string(&p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?,
            );
            zeroize::Zeroizing::new(raw.trim().to_owned())
        }
        None => zeroize::Zeroizing::new(
            std::env::var("KMS_ADMIN_TOKEN").map_err(|_| anyhow::anyhow!("set KMS_ADMIN_TOKEN or --token-file"))?,
        ),
    };
    let ttl_secs = ttl
        .map(|t| gateway_core::duration::parse(&t).map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)))
        .transpose()
        .map_err(|e| anyhow::anyhow!("--ttl: {e}"))?;
    let mut extra = serde_json::Map::new();
    for c in claims {
        let (k, v) = c.split_once('=').ok_or_else(|| anyhow::anyhow!("--claim {c:?}: expected key=value"))?;
        extra.insert(k.to_owned(), serde_json::Value::String(v.to_owned()));
    }
    let role = match roles.len() {
        0 => serde_json::Value::Null,
        1 => serde_json::json!(roles[0]),
        _ => serde_json::json!(roles),
    };
    let mut body = serde_json::json!({"sub": sub, "encrypt": encrypt});
    if !role.is_null() {
        body["role"] = role;
    }
    if let Some(a) = aud {
        body["aud"] = serde_json::json!(a);
    }
    if let Some(t) = ttl_secs {
        body["ttl_secs"] = serde_json::json!(t);
    }
    if !extra.is_empty() {
        body["claims"] = serde_json::Value::Object(extra);
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let out: serde_json::Value = rt.block_on(async {
        let resp = reqwest::Client::new()
            .post(format!("{}/v1/tenants/{tenant}/tokens", url.trim_end_matches('/')))
            .bearer_auth(token.as_str())
            .json(&body)
            .send()
            .await?;
        let status = resp.status();
        let v: serde_json::Value = resp.json().await.unwrap_or(serde_json::Value::Null);
        if !status.is_success() {
            anyhow::bail!("HTTP {status}: {v}");
        }
        anyhow::Ok(v)
    })?;
    println!("{}", out["token"].as_str().ok_or_else(|| anyhow::anyhow!("no token in the answer"))?);
    Ok(())
}
