//! `ambos proxy`: the mTLS proxy, from proxy.toml or from flags; `--check` says what it loaded.
use crate::process;
use ambos_proxy::{ProxyConfig, ProxyFlags};
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct ProxyArgs {
    /// proxy.toml (see docs/proxy.md); the flags below are the simple alternative.
    #[arg(long, conflicts_with_all = ["listen", "upstream", "cert", "key", "client_ca", "crl", "allow", "tcp", "crl_url", "revocation", "unknown_revocation", "crl_grace", "crl_from_distribution_points", "upstream_ca", "upstream_cert", "upstream_key", "upstream_server_name", "upstream_expect"])]
    config: Option<PathBuf>,
    /// Address to listen on, e.g. 127.0.0.1:8443.
    #[arg(long, required_unless_present = "config")]
    listen: Option<String>,
    /// http://, h2c:// (HTTP/2) or https://host:port (HTTP mode), or host:port (with --tcp).
    #[arg(long, required_unless_present = "config")]
    upstream: Option<String>,
    /// Server certificate chain (PEM, leaf first).
    #[arg(long, required_unless_present = "config")]
    cert: Option<PathBuf>,
    /// Server private key (PEM, unencrypted).
    #[arg(long, required_unless_present = "config")]
    key: Option<PathBuf>,
    /// CA certificate(s) client certificates must chain to (repeatable).
    #[arg(long = "client-ca", required_unless_present = "config")]
    client_ca: Vec<PathBuf>,
    /// CRL file(s), reloaded when they change (repeatable).
    #[arg(long)]
    crl: Vec<PathBuf>,
    /// Pull the CRL from `ambos serve` (https://ca:9443/v1/crl) and refresh it.
    #[arg(long)]
    crl_url: Option<String>,
    /// Fetch CRLs from the distribution points that verified client chains
    /// (and the --client-ca certificates) name, and refresh them.
    #[arg(long)]
    crl_from_distribution_points: bool,
    /// How often to refresh --crl-url and distribution points (default 60s).
    #[arg(long)]
    crl_refresh: Option<String>,
    /// Which certificates need a CRL: `chain` (default: every certificate
    /// below the root, as nginx's ssl_crl) or `leaf` (the client's own only).
    #[arg(long, value_name = "chain|leaf")]
    revocation: Option<String>,
    /// Clients whose revocation status is unknown (no usable or fresh CRL for
    /// a CA of their chain): `deny` (default) or `allow`.
    #[arg(long, value_name = "deny|allow")]
    unknown_revocation: Option<String>,
    /// How long past its nextUpdate a CRL is still enforced before the status
    /// becomes unknown (default 1h).
    #[arg(long)]
    crl_grace: Option<String>,
    #[command(flatten)]
    upstream_tls: Box<UpstreamTlsArgs>,
    /// Identity allowed through, e.g. spiffe://acme.test/web, cn:web, ou:payments (repeatable; default any).
    #[arg(long)]
    allow: Vec<String>,
    /// Raw TCP instead of HTTP: pipe bytes after the handshake and the allow check.
    #[arg(long)]
    tcp: bool,
    /// Audit log (JSON lines) path.
    #[arg(long)]
    audit: Option<PathBuf>,
    /// Metrics listener address for /metrics and /healthz.
    #[arg(long)]
    metrics: Option<String>,
    /// Validate the configuration and its files, then exit.
    #[arg(long)]
    check: bool,
}

/// Boxed in `ProxyArgs`: keeps the command enum's variants of similar size.
#[derive(Args)]
struct UpstreamTlsArgs {
    /// TLS to the upstream (https://, or with --tcp): CA certificate(s) its certificate must chain to (repeatable).
    #[arg(long = "upstream-ca")]
    upstream_ca: Vec<PathBuf>,
    /// For a TLS upstream: the proxy's own client certificate chain (mTLS to the upstream).
    #[arg(long, requires = "upstream_key")]
    upstream_cert: Option<PathBuf>,
    /// The key of --upstream-cert (PEM, unencrypted).
    #[arg(long, requires = "upstream_cert")]
    upstream_key: Option<PathBuf>,
    /// For a TLS upstream: the name its certificate must carry (default: the host of --upstream).
    #[arg(long)]
    upstream_server_name: Option<String>,
    /// For a TLS upstream: an identity its certificate must also carry, as `ambos tunnel --expect`.
    #[arg(long)]
    upstream_expect: Option<String>,
}

pub fn run(a: ProxyArgs) -> anyhow::Result<()> {
    let config = match &a.config {
        Some(path) => ProxyConfig::from_file(path)?,
        None => ProxyConfig::from_flags(&ProxyFlags {
            listen: a.listen.clone().unwrap_or_default(),
            upstream: a.upstream.clone().unwrap_or_default(),
            cert: a.cert.clone().unwrap_or_default(),
            key: a.key.clone().unwrap_or_default(),
            client_ca: a.client_ca.clone(),
            crl: a.crl.clone(),
            allow: a.allow.clone(),
            tcp: a.tcp,
            optional_client_auth: false,
            audit: a.audit.clone(),
            metrics: a.metrics.clone(),
            crl_url: a.crl_url.clone(),
            crl_refresh: a.crl_refresh.clone(),
            crl_from_distribution_points: a.crl_from_distribution_points,
            revocation: a.revocation.clone(),
            unknown_revocation: a.unknown_revocation.clone(),
            crl_grace: a.crl_grace.clone(),
            upstream_ca: a.upstream_tls.upstream_ca.clone(),
            upstream_cert: a.upstream_tls.upstream_cert.clone(),
            upstream_key: a.upstream_tls.upstream_key.clone(),
            upstream_server_name: a.upstream_tls.upstream_server_name.clone(),
            upstream_expect: a.upstream_tls.upstream_expect.clone(),
        })?,
    };
    // Every file is loaded now, so a bad one is reported before we listen.
    let report = ambos_proxy::check::describe(&config)?;
    if a.check {
        print!("{report}");
        return Ok(());
    }
    process::init_logging();
    process::runtime()?.block_on(ambos_proxy::run(config, process::shutdown_signal()))?;
    Ok(())
}
