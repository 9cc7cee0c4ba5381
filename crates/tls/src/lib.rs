//! rustls configurations for ambos: server configs that verify clients
//! against CAs and CRLs, the `Identity` of a verified peer, and plain-words
//! names for handshake failures. No routes, no CA storage.
#![forbid(unsafe_code)]

mod failure;
mod files;
mod identity;
mod server;

pub use failure::HandshakeFailure;
pub use files::{load_certs, load_crls, load_key};
pub use identity::Identity;
pub use server::{ClientAuth, LoadedServerTls, ServerTlsConfig, TlsVersion};

use std::path::PathBuf;
use thiserror::Error;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {why}")]
    BadFile { path: PathBuf, why: String },
    #[error("{0}: the private key does not match the certificate")]
    KeyMismatch(PathBuf),
    #[error("client CA: {0}")]
    ClientCa(String),
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    #[error("malformed peer certificate: {0}")]
    PeerCertificate(String),
}

/// The crypto provider every ambos TLS endpoint uses: aws-lc-rs, whose
/// defaults offer X25519MLKEM768 first and only AEAD suites with ECDHE.
pub fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Installs [`provider`] as the process default (idempotent).
pub fn install_default_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
