//! The command line: `serve` (the service), `init` (create or accept the key store),
//! `mint` (a token through a running sidecar: an HTTP client of the admin API) and
//! `gen-master-key`. Each subcommand has its own module.

pub mod init;
pub mod load;
pub mod mint;
pub mod serve;

use base64::Engine as _;
use clap::{Parser, Subcommand};

/// The command line.
#[derive(Parser)]
#[command(name = "kms-sidecar", about = "Per-tenant key service for the gateway")]
pub struct Cli {
    #[command(subcommand)]
    /// What to do.
    pub cmd: Cmd,
}

/// The subcommands.
#[derive(Subcommand)]
pub enum Cmd {
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

impl Cmd {
    /// Runs the subcommand.
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            Cmd::Serve { config } => serve::serve(&config),
            Cmd::Init { config, accept_restore } => init::init(&config, accept_restore),
            Cmd::Mint { tenant, sub, role, aud, ttl, encrypt, claims, url, token_file } => {
                mint::mint(tenant, sub, role, aud, ttl, encrypt, claims, url, token_file)
            }
            Cmd::GenMasterKey => {
                let mut key = [0u8; 32];
                aws_lc_rs::rand::fill(&mut key).map_err(|_| anyhow::anyhow!("rng failure")).map(|_| {
                    println!("{}", base64::engine::general_purpose::STANDARD.encode(key));
                })
            }
        }
    }
}
