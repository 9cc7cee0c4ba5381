//! `ambos serve`: the CA's HTTPS API (`ambos_ca::api`).
use crate::cmd::ca_passphrase;
use crate::process::{init_logging, runtime, shutdown_signal};
use crate::Global;
use ambos_ca::api::{ServeFlags, ServeOptions};
use ambos_ca::CertificateAuthority;
use clap::Args;

#[derive(Args)]
pub struct ServeArgs {
    /// Address of the HTTPS API.
    #[arg(long, default_value = "127.0.0.1:9443")]
    listen: String,
    /// Extra SANs for the API's own certificate (localhost, 127.0.0.1, ::1 and the host name are always in).
    #[arg(long = "san", value_name = "KIND:VALUE")]
    sans: Vec<String>,
    /// nextUpdate of the published CRLs (re-signed at half of it and on every revocation).
    #[arg(long, default_value = "24h")]
    crl_validity: String,
    /// Lifetime of the API's own certificate (renewed by itself at 2/3).
    #[arg(long, default_value = "24h")]
    server_cert_ttl: String,
    /// Connections open at once; at the cap the oldest idle or handshaking one is closed for a new one.
    #[arg(long, default_value_t = 1000)]
    max_connections: usize,
    /// Connections open at once from one address (IPv6: one /64).
    #[arg(long, default_value_t = 256)]
    max_connections_per_source: usize,
    /// Time for a request head, from when the connection waits for a request (also the keep-alive idle time).
    #[arg(long, default_value = "10s")]
    header_timeout: String,
    /// Failed enrollment tokens from one address within --token-failure-window before it gets 429.
    #[arg(long, default_value_t = 10)]
    token_failure_limit: usize,
    #[arg(long, default_value = "1m")]
    token_failure_window: String,
}

pub fn serve(g: &Global, a: ServeArgs) -> anyhow::Result<()> {
    let opts = ServeOptions::from_flags(&ServeFlags {
        listen: a.listen,
        sans: a.sans,
        crl_validity: a.crl_validity,
        server_cert_ttl: a.server_cert_ttl,
        max_connections: a.max_connections,
        max_connections_per_source: a.max_connections_per_source,
        header_timeout: a.header_timeout,
        token_failure_limit: a.token_failure_limit,
        token_failure_window: a.token_failure_window,
    })?;
    let ca = CertificateAuthority::open(&g.dir)?;
    let pass = if ca.keys_encrypted() { Some(ca_passphrase(g, false)?) } else { None };
    drop(ca);
    init_logging();
    runtime()?.block_on(ambos_ca::api::serve(&g.dir, pass.as_ref().map(|p| p.as_bytes()), opts, shutdown_signal()))?;
    Ok(())
}
