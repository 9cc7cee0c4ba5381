//! TLS to the upstream: built from `[upstream.tls]` by `Runtime::build`,
//! used by the HTTP upstream pool, the HTTP/2 upstream and TCP mode. A
//! module of its own so that `runtime` need not import `http`.
use crate::authorize::Expected;
use crate::config::UpstreamProtocol;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use tokio::net::TcpStream;

/// How to reach a TLS upstream: our client config (the one path verifier,
/// our client certificate if any), the name its certificate must carry and
/// the identity it must also carry. Built by `Runtime::build`, so a reload
/// reloads the files.
#[derive(Clone)]
pub struct UpstreamTls {
    /// HTTP mode: ALPN http/1.1 only, for the HTTP/1.1 pool. TCP mode:
    /// `[upstream.tls] alpn` (none by default).
    pub(crate) connector: tokio_rustls::TlsConnector,
    /// ALPN h2 (and http/1.1 with `protocol = "auto"`): for HTTP/2.
    pub(crate) h2_connector: tokio_rustls::TlsConnector,
    pub(crate) server_name: rustls::pki_types::ServerName<'static>,
    expect: Option<Expected>,
    /// A hash of what the connectors were built from (files' contents,
    /// server name, ALPN, expected identity): a shared HTTP/2 connection
    /// made before a reload that changed any of it is not used after it;
    /// one made with the same files is (a reload comes with every CRL
    /// refresh).
    pub(crate) fingerprint: u64,
}

impl UpstreamTls {
    /// `protocol`: the HTTP mode upstream's; `None` in TCP mode.
    pub fn build(
        cfg: &crate::config::UpstreamTlsConfig,
        protocol: Option<UpstreamProtocol>,
    ) -> Result<UpstreamTls, crate::ProxyError> {
        let trust = crate::trust::server_trust(&cfg.ca, Vec::new(), false)?;
        let client = match &cfg.client {
            Some((cert, key)) => {
                let (chain, key) = ambos_tls::load_cert_and_key(cert, key)?;
                ambos_tls::ClientCert::Chain(chain, key)
            }
            None => ambos_tls::ClientCert::None,
        };
        let mut config = ambos_tls::client_config(ambos_tls::ServerAuth::Trust(trust), client)?;
        let (alpn, h2_alpn) = match protocol {
            None => (cfg.alpn.clone(), cfg.alpn.clone()),
            Some(UpstreamProtocol::Auto) => (vec![b"http/1.1".to_vec()], vec![b"h2".to_vec(), b"http/1.1".to_vec()]),
            Some(_) => (vec![b"http/1.1".to_vec()], vec![b"h2".to_vec()]),
        };
        let mut hash = std::collections::hash_map::DefaultHasher::new();
        (&cfg.server_name, &alpn, &h2_alpn, cfg.expect.as_ref().map(|e| &e.text)).hash(&mut hash);
        for file in cfg.ca.iter().chain(cfg.client.iter().flat_map(|(c, k)| [c, k])) {
            std::fs::read(file).ok().hash(&mut hash);
        }
        let mut h2_config = config.clone();
        h2_config.alpn_protocols = h2_alpn;
        config.alpn_protocols = alpn;
        let server_name = rustls::pki_types::ServerName::try_from(cfg.server_name.clone())
            .map_err(|_| crate::ProxyError::Invalid(format!("upstream.tls.server_name: '{}'", cfg.server_name)))?;
        Ok(UpstreamTls {
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
            h2_connector: tokio_rustls::TlsConnector::from(Arc::new(h2_config)),
            server_name,
            expect: cfg.expect.clone(),
            fingerprint: hash.finish(),
        })
    }

    /// The TLS handshake over `stream` with `connector` (one of ours), then
    /// the `expect` check; the error says which failed and why.
    pub(crate) async fn handshake(
        &self,
        connector: &tokio_rustls::TlsConnector,
        stream: TcpStream,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
        let tls = connector.connect(self.server_name.clone(), stream).await.map_err(|e| {
            let why = ambos_tls::HandshakeFailure::from_io(&e);
            format!("TLS handshake failed: {why}")
        })?;
        if let Some(expect) = &self.expect {
            expect.check(tls.get_ref().1)?;
        }
        Ok(tls)
    }
}
