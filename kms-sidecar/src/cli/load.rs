//! Reading a config file for `serve` and `init`: the validated config and the sealer
//! built from its master key.

use base64::Engine as _;

/// Reads and validates the config and builds the sealer from its master key.
pub fn load(path: &std::path::Path) -> anyhow::Result<(crate::config::KmsConfig, crate::crypto::Sealer)> {
    let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let cfg = crate::config::KmsConfig::from_yaml(&text)
        .map_err(|e| anyhow::anyhow!("invalid config {}:\n{e}", path.display()))?;
    let master = cfg.master_key.read("master_key")?;
    let master = zeroize::Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(master.trim())
            .map_err(|_| anyhow::anyhow!("master_key: not base64 (use `kms-sidecar gen-master-key`)"))?,
    );
    let sealer = crate::crypto::Sealer::new(&master).map_err(|e| anyhow::anyhow!("master_key: {e}"))?;
    Ok((cfg, sealer))
}
