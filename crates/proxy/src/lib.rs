//! The ambos mTLS proxy. One flow, one module per step:
//! `listener` (accept loop, `admission` limits, graceful stop) → `conn`
//! (TLS handshake, the per-connection `ConnCtx` with the verified
//! `ambos_tls::Identity`) → `authorize` (routes and allow rules, the
//! request target) → `headers` (identity headers) → `http` (with its
//! parking and upstream pool) or `tcp` (forwarding) → `audit` and
//! `telemetry`. `config` turns proxy.toml or flags into pure data;
//! `dial` connects to the upstream (TCP, TLS) for both; `forward_error`
//! says why a forward failed (client body, slots or the
//! upstream, with the upstream's kind of failure).
//! `runtime` builds from it what connections use (TLS config, verifier,
//! route table with its counters) and reloads it; `crl_pull` keeps pulled
//! CRLs fresh and `jwks_pull` the JWKS of token routes, both through `pull`. `tunnel` is `ambos tunnel`, the client side; `check` is what
//! `ambos proxy --check` loads and says, `certs` what the certificate
//! files say (for it and the expiry gauges).
#![forbid(unsafe_code)]

mod admission;
pub mod audit;
pub mod authorize;
pub mod certs;
pub mod check;
pub mod config;
mod conn;
mod crl_pull;
mod dial;
mod forward_error;
mod gate;
mod headers;
mod http;
pub mod jwks_pull;
mod listener;
mod pull;
pub mod runtime;
mod tcp;
pub mod telemetry;
mod trust;
pub mod tunnel;
mod upstream_tls;

pub use ambos_tls::daemon::{Control, Trigger};
pub use config::{Mode, ProxyConfig, ProxyFlags};
pub use listener::run;

use std::path::PathBuf;
use thiserror::Error;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ProxyError {
    // OS errors are in the text, not a `source`: joiners print them once.
    #[error("cannot read {path}: {why}")]
    Read { path: PathBuf, why: std::io::Error },
    #[error("{}:{line}: {message}", path.display())]
    Toml { path: PathBuf, line: usize, message: String },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Tls(#[from] ambos_tls::TlsError),
    #[error("cannot listen on {addr}: {why}")]
    Bind { addr: std::net::SocketAddr, why: std::io::Error },
    #[error("cannot open audit log {path}: {why}")]
    Audit { path: PathBuf, why: std::io::Error },
    #[error("cannot watch {path} for changes: {why}")]
    Watch { path: PathBuf, why: String },
    /// `--check`'s findings, one line each.
    #[error("{}", .0.join("\n"))]
    Check(Vec<String>),
}

impl ProxyError {
    /// Whether the configuration or its files are wrong (exit code 2), not
    /// the machine (1: a port taken, a watch that failed).
    pub fn is_input(&self) -> bool {
        !matches!(self, ProxyError::Bind { .. } | ProxyError::Watch { .. })
    }
}
