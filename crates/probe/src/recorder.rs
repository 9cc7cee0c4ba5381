//! What the server sent during the handshake, recorded by our verifier and
//! our client-certificate resolver.
use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
use rustls::client::ResolvesClientCert;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{Error, SignatureScheme};
use std::sync::{Arc, Mutex};

/// The server's side of the handshake as far as it got.
#[derive(Debug, Default)]
pub struct Seen {
    pub chain: Vec<Vec<u8>>,
    /// The server sent a CertificateRequest.
    pub requested: bool,
    pub ca_names: Vec<Vec<u8>>,
    /// We answered it with a certificate.
    pub sent: bool,
    /// Filled in by `probe`, not the recorder: we offered TLS 1.2 alone.
    pub offered_tls12_only: bool,
    /// Filled in by `probe`: the identity our certificate presents, as an
    /// allow list names it (`spiffe://...`, `cn:...`).
    pub presented: Option<String>,
}

#[derive(Debug, Default)]
pub struct Recorder {
    seen: Mutex<Seen>,
}

impl Recorder {
    pub fn take(&self) -> Seen {
        std::mem::take(&mut *self.seen.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Records the server's chain, then verifies it with `ambos_tls::ServerVerifier` if we have a CA.
#[derive(Debug)]
pub struct RecordingVerifier {
    pub inner: Option<Arc<ambos_tls::ServerVerifier>>,
    pub rec: Arc<Recorder>,
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        if let Ok(mut s) = self.rec.seen.lock() {
            s.chain = std::iter::once(end_entity).chain(intermediates).map(|c| c.to_vec()).collect();
        }
        match &self.inner {
            Some(v) => v.verify_server_cert(end_entity, intermediates, server_name, ocsp, now),
            None => Ok(ServerCertVerified::assertion()),
        }
    }

    ambos_tls::handshake_signatures!();
}

/// Records the CertificateRequest (and its CA names) and answers with our certificate, if any.
#[derive(Debug)]
pub struct RecordingResolver {
    pub key: Option<Arc<rustls::sign::CertifiedKey>>,
    pub rec: Arc<Recorder>,
}

impl ResolvesClientCert for RecordingResolver {
    fn resolve(&self, hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<rustls::sign::CertifiedKey>> {
        if let Ok(mut s) = self.rec.seen.lock() {
            s.requested = true;
            s.ca_names = hints.iter().map(|h| h.to_vec()).collect();
            s.sent = self.key.is_some();
        }
        self.key.clone()
    }

    fn has_certs(&self) -> bool {
        true // always be asked, to record the request
    }
}
