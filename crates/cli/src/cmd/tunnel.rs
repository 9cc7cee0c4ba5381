//! `ambos tunnel`: a local plaintext listener that connects out with mTLS.
use crate::process;
use ambos_proxy::tunnel::TunnelConfig;

pub fn tunnel(cfg: TunnelConfig) -> anyhow::Result<()> {
    process::daemon(|control| ambos_proxy::tunnel::run(cfg, control))
}
