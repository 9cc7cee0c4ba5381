use crate::verifier::{ClientVerifier, RevocationPolicy, Trust, TrustOptions};
use crate::{load_cert_and_key, load_certs, load_crls, provider, TlsError};
use rustls::ServerConfig;
use rustls_pki_types::CertificateRevocationListDer;
use std::path::PathBuf;
use std::sync::Arc;

/// Whether a client certificate is needed to finish the handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// No certificate, no connection (rejected in the handshake).
    Required,
    /// Anonymous clients finish the handshake; routes decide (`anonymous`).
    Optional,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

/// Validated server TLS settings: paths, not yet loaded. Loading them again
/// is how a reload picks up changed files.
#[derive(Clone, Debug)]
pub struct ServerTlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Vec<PathBuf>,
    pub crl: Vec<PathBuf>,
    /// Some when CRLs are configured (files or pulled): every client's
    /// revocation status must then be known (see `RevocationPolicy`).
    pub revocation: Option<RevocationPolicy>,
    pub client_auth: ClientAuth,
    pub min_version: TlsVersion,
    /// ALPN protocols in preference order (`h2`, `http/1.1`; none for TCP).
    pub alpn: Vec<Vec<u8>>,
    /// Whether clients may resume sessions (one TLS 1.3 ticket per
    /// handshake, a TLS 1.2 session cache). Off: every handshake is full.
    pub session_resumption: bool,
}

/// A ready rustls config and the facts about it that metrics report.
pub struct LoadedServerTls {
    pub config: Arc<ServerConfig>,
    /// notAfter of the server certificate (Unix seconds).
    pub cert_not_after: i64,
    /// The client verifier inside `config`: open connections are re-judged
    /// against a new one's CRLs.
    pub verifier: Arc<ClientVerifier>,
}

impl ServerTlsConfig {
    /// Every file the config is built from, to watch for changes.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut v = vec![self.cert.clone(), self.key.clone()];
        v.extend(self.client_ca.iter().cloned());
        v.extend(self.crl.iter().cloned());
        v
    }

    /// Reads every file and builds a rustls `ServerConfig`: client chains are
    /// verified to `client_ca` by webpki, with EKU clientAuth, validity and
    /// the CRLs (from files plus `extra_crls`, e.g. pulled by URL).
    pub fn load(
        &self,
        extra_crls: &[(String, CertificateRevocationListDer<'static>)],
    ) -> Result<LoadedServerTls, TlsError> {
        let (chain, key) = load_cert_and_key(&self.cert, &self.key)?;
        let mut ca_certs = Vec::new();
        for path in &self.client_ca {
            ca_certs.extend(load_certs(path)?);
        }
        if ca_certs.is_empty() {
            return Err(TlsError::ClientCa("no client CA certificates configured".into()));
        }
        let mut crls = extra_crls.to_vec();
        for path in &self.crl {
            crls.extend(load_crls(path)?.into_iter().map(|c| (path.display().to_string(), c)));
        }
        let trust = Trust::new(TrustOptions { ca_certs, crls, revocation: self.revocation, eku_if_present: false })?;
        let provider = provider();
        let verifier = Arc::new(ClientVerifier::new(Arc::new(trust), self.client_auth == ClientAuth::Required));
        let versions: &[&rustls::SupportedProtocolVersion] = match self.min_version {
            TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
            TlsVersion::Tls13 => &[&rustls::version::TLS13],
        };
        let cert_not_after = x509_parser::parse_x509_certificate(&chain[0])
            .map(|(_, c)| c.validity().not_after.timestamp())
            .unwrap_or(0);
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)?
            .with_client_cert_verifier(verifier.clone())
            .with_single_cert(chain, key)
            .map_err(|e| match e {
                rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch(self.key.clone()),
                other => TlsError::BadFile { path: self.key.clone(), why: other.to_string() },
            })?;
        config.alpn_protocols = self.alpn.clone();
        // Our suite order (see `provider`) wins over the client's.
        config.ignore_client_order = true;
        if self.session_resumption {
            // One resumption ticket per handshake is enough for a client to resume.
            config.send_tls13_tickets = 1;
        } else {
            // No ticket to derive, store and send: as nginx with
            // ssl_session_tickets off and ssl_session_cache off.
            config.send_tls13_tickets = 0;
            config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        }
        Ok(LoadedServerTls { config: Arc::new(config), cert_not_after, verifier })
    }
}
