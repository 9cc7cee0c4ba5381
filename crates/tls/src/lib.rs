//! rustls configurations for ambos: server configs that verify clients
//! against CAs and CRLs, the `Identity` of a verified peer, and plain-words
//! names for handshake failures. No routes, no CA storage.
#![forbid(unsafe_code)]

mod client_config;
mod crl;
pub mod daemon;
mod failure;
mod files;
mod identity;
pub mod net;
mod server;
mod signatures;
mod strict;
mod verifier;

pub use client_config::{
    client_config, client_config_with, root_store, root_store_of, ClientCert, ServerAuth, UnverifiedServer,
};
pub use crl::{CrlSet, CrlSummary};
pub use failure::{Direction, HandshakeFailure, Verdict};
pub use files::{load_cert_and_key, load_certs, load_crls, load_key, parse_crls};
pub use identity::Identity;
pub use server::{ClientAuth, LoadedServerTls, ServerTlsConfig, TlsVersion};
#[doc(hidden)]
pub use signatures::__private;
pub use signatures::signature_algorithms;
pub use verifier::{
    ClientVerifier, CrlScope, Peer, RevocationPolicy, RevocationSubject, ServerVerifier, Trust, TrustOptions,
    UnknownStatus, VerifiedChain,
};

use std::path::PathBuf;
use thiserror::Error;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TlsError {
    // The OS error is in the text, not a `source`: joiners print it once.
    #[error("cannot read {path}: {why}")]
    Read { path: PathBuf, why: std::io::Error },
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

impl TlsError {
    /// Every TLS setup error is about the files or settings the caller gave.
    pub fn is_input(&self) -> bool {
        true
    }
}

/// The crypto provider every ambos TLS endpoint uses: aws-lc-rs, whose
/// defaults offer X25519MLKEM768 first and only AEAD suites with ECDHE.
/// AES-128-GCM suites come first (servers use this order): as strong for
/// TLS, and their SHA-256 key schedule is cheaper than AES-256's SHA-384.
pub fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    let mut p = rustls::crypto::aws_lc_rs::default_provider();
    let first = |s: &rustls::SupportedCipherSuite| {
        !matches!(
            s.suite(),
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
                | rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                | rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        )
    };
    p.cipher_suites.sort_by_key(|s| (s.version() != &rustls::version::TLS13, first(s)));
    std::sync::Arc::new(p)
}

/// Installs [`provider`] as the process default (idempotent).
pub fn install_default_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// An error and its sources on one line (`a: b: c`): hyper and rustls keep
/// the useful part of a connection failure in the sources.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = String::new();
    let mut cur = Some(e);
    while let Some(c) = cur {
        let text = c.to_string().replace('\n', " ");
        // A wrapper that already ends with its cause's text says it once.
        if !s.ends_with(&text) {
            if !s.is_empty() {
                s.push_str(": ");
            }
            s.push_str(&text);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_os_error_is_said_once_in_the_chain() {
        let e = crate::load_key(std::path::Path::new("/nonexistent/x.key")).unwrap_err();
        let chain = super::error_chain(&e);
        assert_eq!(chain, "cannot read /nonexistent/x.key: No such file or directory (os error 2)");
        // Wrapped as an io::Error (as hyper and tokio do), still once.
        let wrapped = std::io::Error::other(e);
        assert_eq!(super::error_chain(&wrapped).matches("os error 2").count(), 1);
    }
}
