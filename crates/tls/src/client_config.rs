//! The one way to build a root store and a rustls client configuration
//! (CA client, tunnel, probe, load generator, CRL pull).
use crate::{load_certs, provider, ServerVerifier, TlsError, Trust};
use rustls::client::danger::ServerCertVerifier;
use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, RootCertStore, SupportedProtocolVersion};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A root store of `certs`, which came from `source` (named in errors).
pub fn root_store_of(
    certs: impl IntoIterator<Item = CertificateDer<'static>>,
    source: &Path,
) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(|e| TlsError::BadFile {
            path: source.to_path_buf(),
            why: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok(roots)
}

/// A root store of every certificate in the PEM or DER files `paths`.
pub fn root_store(paths: &[PathBuf]) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for path in paths {
        roots.roots.extend(root_store_of(load_certs(path)?, path)?.roots);
    }
    Ok(roots)
}

/// How a client judges the server's certificate.
#[derive(Debug)]
pub enum ServerAuth {
    /// Our path verifier ([`ServerVerifier`]): name, path, RFC 5280 rules, CRLs.
    Trust(Arc<Trust>),
    /// rustls's webpki verifier with these roots.
    Roots(RootCertStore),
    /// A verifier of the caller's (probe's recorder, the load generator's cheap client).
    Custom(Arc<dyn ServerCertVerifier>),
}

/// What a client answers a CertificateRequest with.
#[derive(Debug)]
pub enum ClientCert {
    None,
    /// A chain (leaf first) and its key.
    Chain(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>),
    Resolver(Arc<dyn ResolvesClientCert>),
}

/// A client configuration with [`provider`] and rustls's default protocol versions.
pub fn client_config(server: ServerAuth, client: ClientCert) -> Result<ClientConfig, TlsError> {
    client_config_with(provider(), rustls::DEFAULT_VERSIONS, server, client)
}

/// A client configuration with the given provider and protocol versions.
/// A key that does not fit its certificate is [`TlsError::Config`].
pub fn client_config_with(
    provider: Arc<CryptoProvider>,
    versions: &[&'static SupportedProtocolVersion],
    server: ServerAuth,
    client: ClientCert,
) -> Result<ClientConfig, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider).with_protocol_versions(versions)?;
    let builder = match server {
        ServerAuth::Trust(trust) => {
            builder.dangerous().with_custom_certificate_verifier(Arc::new(ServerVerifier::new(trust)))
        }
        ServerAuth::Roots(roots) => builder.with_root_certificates(roots),
        ServerAuth::Custom(verifier) => builder.dangerous().with_custom_certificate_verifier(verifier),
    };
    Ok(match client {
        ClientCert::None => builder.with_no_client_auth(),
        ClientCert::Chain(chain, key) => builder.with_client_auth_cert(chain, key)?,
        ClientCert::Resolver(resolver) => builder.with_client_cert_resolver(resolver),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_store_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let e = root_store(&[missing]).unwrap_err().to_string();
        assert!(e.contains("missing.pem"), "{e}");
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "no certificate here").unwrap();
        let e = root_store(&[junk]).unwrap_err().to_string();
        assert!(e.contains("junk.pem") && e.contains("no CERTIFICATE"), "{e}");
        // Parses as X.509 for the reader, but is no trust anchor for webpki.
        let e = root_store_of([CertificateDer::from(vec![0x30, 0x00])], Path::new("odd.der")).unwrap_err().to_string();
        assert!(e.contains("odd.der") && e.contains("not a usable CA certificate"), "{e}");
    }
}

/// A server certificate verifier that passes any chain: the server must
/// still prove it holds the key of the certificate it sent. For the load
/// generator's cheap client and for `ambos bootstrap`'s first contact,
/// whose answer is judged by a fingerprint instead.
#[derive(Debug)]
pub struct UnverifiedServer;

impl ServerCertVerifier for UnverifiedServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    crate::handshake_signatures!();
}
