//! `ambos serve`: the CA's HTTPS API (`ambos_ca::api`).
use crate::cmd::ca_passphrase;
use crate::cmd::duration;
use crate::input::input_error;
use crate::process::{init_logging, runtime, shutdown_signal};
use crate::Global;
use ambos_ca::api::{ServeLimits, ServeOptions};
use ambos_ca::CertificateAuthority;
use ambos_pki::San;
use clap::Args;
use std::time::Duration;

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

/// A duration between 1 s and 24 h (0 would close every connection or
/// never count a failure; a huge one would overflow the timers).
fn bounded(text: &str, flag: &str) -> anyhow::Result<Duration> {
    let d = duration(text, flag)?;
    if d < Duration::from_secs(1) || d > Duration::from_secs(86_400) {
        return Err(input_error(format!("--{flag} '{text}' must be between 1s and 24h")));
    }
    Ok(d)
}

fn positive(n: usize, flag: &str) -> anyhow::Result<usize> {
    if n == 0 {
        return Err(input_error(format!("--{flag} must be at least 1")));
    }
    Ok(n)
}

pub fn serve(g: &Global, a: ServeArgs) -> anyhow::Result<()> {
    let listen = a.listen.parse().map_err(|_| input_error(format!("--listen '{}' is not an address", a.listen)))?;
    let sans = a.sans.iter().map(|s| s.parse::<San>()).collect::<Result<Vec<_>, _>>()?;
    let opts = ServeOptions {
        listen,
        sans,
        crl_validity: duration(&a.crl_validity, "crl-validity")?,
        server_cert_ttl: duration(&a.server_cert_ttl, "server-cert-ttl")?,
        limits: ServeLimits {
            max_connections: positive(a.max_connections, "max-connections")?,
            max_connections_per_source: positive(a.max_connections_per_source, "max-connections-per-source")?,
            header_timeout: bounded(&a.header_timeout, "header-timeout")?,
            token_failure_limit: positive(a.token_failure_limit, "token-failure-limit")?,
            token_failure_window: bounded(&a.token_failure_window, "token-failure-window")?,
            ..ServeLimits::default()
        },
    };
    let ca = CertificateAuthority::open(&g.dir)?;
    let pass = if ca.keys_encrypted() { Some(ca_passphrase(g, false)?) } else { None };
    drop(ca);
    init_logging();
    runtime()?.block_on(ambos_ca::api::serve(&g.dir, pass.as_ref().map(|p| p.as_bytes()), opts, shutdown_signal()))?;
    Ok(())
}
