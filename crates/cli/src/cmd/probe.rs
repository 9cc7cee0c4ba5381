//! `ambos probe HOST:PORT`: flags to `ambos_probe::probe`, then the report as text or JSON.
use ambos_probe::CrlSources;
use ambos_probe::ProbeOptions;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Clone)]
pub struct ProbeArgs {
    /// HOST:PORT of the mTLS server.
    pub target: String,
    /// Our client certificate chain (PEM, leaf first).
    #[arg(long, requires = "key")]
    pub cert: Option<PathBuf>,
    #[arg(long, requires = "cert")]
    pub key: Option<PathBuf>,
    /// CA the server's certificate must chain to (without it the server is not verified).
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// Name to check the server's certificate against (default: HOST).
    #[arg(long)]
    pub server_name: Option<String>,
    /// Offer only this TLS version (1.2 or 1.3), to test a server's versions.
    #[arg(long)]
    pub tls_version: Option<String>,
    /// Stop after the handshake instead of sending `GET /`.
    #[arg(long)]
    pub no_http: bool,
    /// Path of the HTTP request.
    #[arg(long, default_value = "/")]
    pub path: String,
    /// Access token sent as `Authorization: Bearer` (a route with `token = {...}`); says why it is refused.
    #[arg(long, env = "AMBOS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub revocation: CrlSources,
}

pub fn run(a: ProbeArgs) -> anyhow::Result<()> {
    let report = ambos_probe::probe(&ProbeOptions {
        http_path: (!a.no_http).then_some(a.path),
        crls: a.revocation,
        target: a.target,
        cert: a.cert,
        key: a.key,
        ca: a.ca,
        server_name: a.server_name,
        tls_version: a.tls_version,
        token: a.token,
    })?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        // Ticks coloured on a terminal.
        print!("{}", report.render(std::io::IsTerminal::is_terminal(&std::io::stdout())));
    }
    anyhow::ensure!(report.ok, crate::ProbeFailed(report.cause.unwrap_or_default()));
    Ok(())
}
