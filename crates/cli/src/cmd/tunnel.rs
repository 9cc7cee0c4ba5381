//! `ambos tunnel`: a local plaintext listener that connects out with mTLS.
use crate::process;
use ambos_proxy::tunnel::TunnelConfig;

pub fn tunnel(cfg: TunnelConfig) -> anyhow::Result<()> {
    process::init_logging();
    process::runtime()?.block_on(ambos_proxy::tunnel::run(cfg, process::shutdown_signal()))?;
    Ok(())
}
