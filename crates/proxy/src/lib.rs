//! The ambos mTLS proxy. One flow, one module per step:
//! accept and handshake (`server`) → identity (`ambos_tls::Identity`) →
//! authorize (`policy`) → identity headers (`headers`) → forward (`http`,
//! `tcp`) → audit and metrics (`audit`, `telemetry`). `runtime` builds the
//! swappable state and reloads it.
#![forbid(unsafe_code)]

mod admission;
pub mod audit;
pub mod config;
mod crl_pull;
mod headers;
mod http;
mod idle;
pub mod policy;
pub mod runtime;
pub mod server;
pub mod target;
mod tcp;
pub mod telemetry;
pub mod tunnel;
mod upstream;

pub use config::{Mode, ProxyConfig, ProxyFlags};
pub use server::run;

use std::path::PathBuf;
use thiserror::Error;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ProxyError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}:{line}: {message}", path.display())]
    Toml { path: PathBuf, line: usize, message: String },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Tls(#[from] ambos_tls::TlsError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("cannot open audit log {path}: {source}")]
    Audit { path: PathBuf, source: std::io::Error },
    #[error("cannot watch {path} for changes: {why}")]
    Watch { path: PathBuf, why: String },
}
