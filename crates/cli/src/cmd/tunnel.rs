//! `ambos tunnel`: a local plaintext listener that connects out with mTLS.
use crate::cmd::CrlArgs;
use crate::process;
use ambos_proxy::tunnel::TunnelConfig;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct TunnelArgs {
    /// Local plaintext address, e.g. 127.0.0.1:8080.
    #[arg(long)]
    listen: String,
    /// The mTLS server, HOST:PORT.
    #[arg(long)]
    connect: String,
    /// Our client certificate chain (re-read when it changes).
    #[arg(long)]
    cert: PathBuf,
    #[arg(long)]
    key: PathBuf,
    /// CA the server's certificate must chain to.
    #[arg(long)]
    ca: PathBuf,
    /// Name to verify the server's certificate against (default: HOST of --connect).
    #[arg(long)]
    server_name: Option<String>,
    /// Required server identity, e.g. spiffe://acme.test/api or dns:api.acme.test.
    #[arg(long)]
    expect: Option<String>,
    // --crl files are re-read when they change; --crl-url is pulled every 60 s.
    #[command(flatten)]
    revocation: CrlArgs,
}

pub fn tunnel(a: TunnelArgs) -> anyhow::Result<()> {
    let cfg = TunnelConfig {
        listen: a.listen,
        connect: a.connect,
        cert: a.cert,
        key: a.key,
        ca: a.ca,
        server_name: a.server_name,
        expect: a.expect,
        crl: a.revocation.crl,
        crl_url: a.revocation.crl_url,
    };
    process::init_logging();
    process::runtime()?.block_on(ambos_proxy::tunnel::run(cfg, process::shutdown_signal()))?;
    Ok(())
}
