//! TLS to an `https://` upstream: built from `[upstream.tls]` by
//! `Runtime::build`, used by the HTTP upstream pool. A module of its own so
//! that `runtime` need not import `http`.
use std::sync::Arc;

/// How to reach an `https://` upstream: our client config (the one path
/// verifier, our client certificate if any) and the name its certificate
/// must carry. Built by `Runtime::build`, so a reload reloads the files.
#[derive(Clone)]
pub struct UpstreamTls {
    pub(crate) connector: tokio_rustls::TlsConnector,
    pub(crate) server_name: rustls::pki_types::ServerName<'static>,
}

impl UpstreamTls {
    pub fn build(cfg: &crate::config::UpstreamTlsConfig) -> Result<UpstreamTls, crate::ProxyError> {
        let trust = crate::trust::server_trust(&cfg.ca, Vec::new(), false)?;
        let client = match &cfg.client {
            Some((cert, key)) => ambos_tls::ClientCert::Chain(ambos_tls::load_certs(cert)?, ambos_tls::load_key(key)?),
            None => ambos_tls::ClientCert::None,
        };
        let mut config = ambos_tls::client_config(ambos_tls::ServerAuth::Trust(trust), client)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let server_name = rustls::pki_types::ServerName::try_from(cfg.server_name.clone())
            .map_err(|_| crate::ProxyError::Invalid(format!("upstream.tls.server_name: '{}'", cfg.server_name)))?;
        Ok(UpstreamTls { connector: tokio_rustls::TlsConnector::from(Arc::new(config)), server_name })
    }
}
