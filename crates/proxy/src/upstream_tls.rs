//! TLS to an `https://` upstream: built from `[upstream.tls]` by
//! `Runtime::build`, used by the HTTP upstream pool and the HTTP/2
//! upstream. A module of its own so that `runtime` need not import `http`.
use crate::config::UpstreamProtocol;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// How to reach an `https://` upstream: our client config (the one path
/// verifier, our client certificate if any) and the name its certificate
/// must carry. Built by `Runtime::build`, so a reload reloads the files.
#[derive(Clone)]
pub struct UpstreamTls {
    /// ALPN http/1.1 only: for the HTTP/1.1 pool.
    pub(crate) connector: tokio_rustls::TlsConnector,
    /// ALPN h2 (and http/1.1 with `protocol = "auto"`): for HTTP/2.
    pub(crate) h2_connector: tokio_rustls::TlsConnector,
    pub(crate) server_name: rustls::pki_types::ServerName<'static>,
    /// A hash of what the connectors were built from (files' contents,
    /// server name, ALPN): a shared HTTP/2 connection made before a reload
    /// that changed any of it is not used after it; one made with the same
    /// files is (a reload comes with every CRL refresh).
    pub(crate) fingerprint: u64,
}

impl UpstreamTls {
    pub fn build(
        cfg: &crate::config::UpstreamTlsConfig,
        protocol: UpstreamProtocol,
    ) -> Result<UpstreamTls, crate::ProxyError> {
        let trust = crate::trust::server_trust(&cfg.ca, Vec::new(), false)?;
        let client = match &cfg.client {
            Some((cert, key)) => ambos_tls::ClientCert::Chain(ambos_tls::load_certs(cert)?, ambos_tls::load_key(key)?),
            None => ambos_tls::ClientCert::None,
        };
        let mut config = ambos_tls::client_config(ambos_tls::ServerAuth::Trust(trust), client)?;
        let h2_alpn = match protocol {
            UpstreamProtocol::Auto => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            _ => vec![b"h2".to_vec()],
        };
        let mut hash = std::collections::hash_map::DefaultHasher::new();
        (&cfg.server_name, &h2_alpn).hash(&mut hash);
        for file in cfg.ca.iter().chain(cfg.client.iter().flat_map(|(c, k)| [c, k])) {
            std::fs::read(file).ok().hash(&mut hash);
        }
        let mut h2_config = config.clone();
        h2_config.alpn_protocols = h2_alpn;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let server_name = rustls::pki_types::ServerName::try_from(cfg.server_name.clone())
            .map_err(|_| crate::ProxyError::Invalid(format!("upstream.tls.server_name: '{}'", cfg.server_name)))?;
        Ok(UpstreamTls {
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
            h2_connector: tokio_rustls::TlsConnector::from(Arc::new(h2_config)),
            server_name,
            fingerprint: hash.finish(),
        })
    }
}
