//! `kms-sidecar serve`: checks the credentials, opens the store (refusing a restored
//! or replaced one), seeds the YAML tenants, and runs the two listeners and the "key
//! rotation" task until SIGINT or SIGTERM.

use super::load::load;
use crate::clock::now;
use crate::default;
use crate::http::{self, listener, AppState};
use crate::metrics::Metrics;
use crate::service::one_time::OneTimeWriter;
use crate::service::ticker;
use crate::service::Kms;
use crate::store::Store;
use crate::tenant::{Source, TenantInput, TenantSpec};
use std::sync::Arc;

/// Runs the service of the config at `path`.
pub fn serve(path: &std::path::Path) -> anyhow::Result<()> {
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
    let store = Store::open(std::path::Path::new(&cfg.data_dir), sealer)?;
    store.check_last_run()?;
    store.record_last_run()?;
    let kms = Arc::new(Kms::new(store, cfg.max_age(), cfg.keep_retired).map_err(|e| anyhow::anyhow!("{e}"))?);
    for t in kms.tenants() {
        if let Err(e) = TenantSpec::validate(TenantInput::from(&t)) {
            let problems = TenantSpec::describe(&e, Source::Api);
            tracing::warn!(tenant = %t.id, %problems, "stored tenant is outside the validated ranges; delete and re-create it");
        }
    }
    let now = now();
    for spec in &cfg.specs {
        let id = spec.id().to_owned();
        if kms.ensure_tenant(spec.clone(), now).map_err(|e| anyhow::anyhow!("tenant {id}: {e}"))? {
            tracing::info!(tenant = %id, "tenant created");
        }
    }
    let metrics = Metrics::new()?;
    let (feed, _) = tokio::sync::watch::channel(kms.last_revocation().map_err(|e| anyhow::anyhow!("{e}"))?);
    let state = Arc::new(AppState {
        kms: kms.clone(),
        admin_token,
        gateway_token,
        metrics: metrics.clone(),
        feed,
        one_time: OneTimeWriter::start(kms.clone(), cfg.one_time_capacity.unwrap_or(default::ONE_TIME_CAPACITY))?,
    });
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async move {
        let public = tokio::net::TcpListener::bind(cfg.listen).await?;
        let internal = tokio::net::TcpListener::bind(cfg.internal_listen).await?;
        tracing::info!(listen = %cfg.listen, internal = %cfg.internal_listen, "kms-sidecar serving");
        let rotation = tokio::spawn(ticker::run(kms, metrics));
        let limits = cfg.http_limits;
        let a = listener::serve(public, http::public(state.clone()), &limits, shutdown());
        let b = listener::serve(internal, http::internal(state), &limits, shutdown());
        let (ra, rb) = tokio::join!(a, b);
        rotation.abort();
        ra?;
        rb?;
        anyhow::Ok(())
    })
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("signal");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
