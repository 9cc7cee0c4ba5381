//! `ambos tunnel`: a local plaintext listener that connects out with mTLS.
use crate::cmd::CrlArgs;
use crate::process;
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
    use crate::input::input_error;
    let listen = a.listen.parse().map_err(|_| input_error(format!("--listen '{}' is not an address", a.listen)))?;
    let host = a
        .server_name
        .clone()
        .unwrap_or_else(|| a.connect.rsplit_once(':').map(|(h, _)| h).unwrap_or(&a.connect).to_string());
    let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
    let server_name = rustls::pki_types::ServerName::try_from(host.clone())
        .map_err(|_| input_error(format!("--server-name '{host}' is not a DNS name or IP")))?;
    let cfg = ambos_proxy::tunnel::TunnelConfig {
        listen,
        connect: a.connect.clone(),
        cert: a.cert.clone(),
        key: a.key.clone(),
        ca: a.ca.clone(),
        server_name,
        expect: a.expect.clone(),
        crl: a.revocation.crl.clone(),
        crl_url: a.revocation.crl_url.clone(),
    };
    process::init_logging();
    process::runtime()?.block_on(ambos_proxy::tunnel::run(cfg, process::shutdown_signal()))?;
    Ok(())
}
