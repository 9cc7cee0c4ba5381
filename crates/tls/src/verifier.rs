//! A client-certificate verifier that remembers chains it has verified.
//!
//! Security argument. A hit requires the exact bytes of the end-entity
//! certificate and every intermediate the client sent (SHA-256 over each,
//! length-prefixed) to equal bytes that webpki already verified *with this
//! verifier's trust anchors* (the cache lives inside one `ServerConfig`; a
//! reload builds a new one and so an empty cache). Path building, signatures,
//! name constraints and EKU depend only on those bytes and anchors, so they
//! hold again. What depends on the moment is re-checked on every hit: the
//! validity window of every certificate in the chain against the current
//! time, and each certificate's (issuer, serial) against the current CRLs.
//! Proof of possession — the CertificateVerify signature over this
//! handshake's transcript — is never cached: it goes to webpki every time.
use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Most chains kept; past this the cache starts over (cheap, and bounded).
const CAPACITY: usize = 16_384;

/// Revoked certificates from every configured CRL: serial → issuer DNs (DER)
/// that revoked it. Lookups borrow the serial: O(1), no allocation.
#[derive(Debug, Default)]
pub struct RevokedSet(HashMap<Box<[u8]>, Vec<Box<[u8]>>>);

impl RevokedSet {
    pub fn from_crls(crls: &[CertificateRevocationListDer<'_>]) -> RevokedSet {
        use x509_parser::prelude::FromDer;
        let mut set: HashMap<Box<[u8]>, Vec<Box<[u8]>>> = HashMap::new();
        for der in crls {
            if let Ok((_, crl)) = x509_parser::revocation_list::CertificateRevocationList::from_der(der) {
                let issuer: Box<[u8]> = crl.issuer().as_raw().into();
                for r in crl.iter_revoked_certificates() {
                    let issuers = set.entry(r.raw_serial().into()).or_default();
                    if !issuers.contains(&issuer) {
                        issuers.push(issuer.clone());
                    }
                }
            }
        }
        RevokedSet(set)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn contains(&self, issuer: &[u8], serial: &[u8]) -> bool {
        self.0.get(serial).is_some_and(|issuers| issuers.iter().any(|i| **i == *issuer))
    }
}

#[derive(Debug)]
struct VerifiedChain {
    /// Latest notBefore and earliest notAfter over the chain (Unix seconds).
    not_before: u64,
    not_after: u64,
    /// (issuer DN DER, serial) of every certificate the client sent.
    ids: Vec<(Vec<u8>, Vec<u8>)>,
}

#[derive(Debug)]
pub struct CachingClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    revoked: RevokedSet,
    chains: Mutex<HashMap<[u8; 32], Arc<VerifiedChain>>>,
}

impl CachingClientVerifier {
    pub fn new(inner: Arc<dyn ClientCertVerifier>, revoked: RevokedSet) -> CachingClientVerifier {
        CachingClientVerifier { inner, revoked, chains: Mutex::new(HashMap::new()) }
    }

    fn key(end_entity: &[u8], intermediates: &[CertificateDer<'_>]) -> [u8; 32] {
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        for der in std::iter::once(end_entity).chain(intermediates.iter().map(|c| c.as_ref())) {
            ctx.update(&(der.len() as u64).to_be_bytes());
            ctx.update(der);
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(ctx.finish().as_ref());
        key
    }

    fn describe(end_entity: &[u8], intermediates: &[CertificateDer<'_>]) -> Option<VerifiedChain> {
        let mut chain = VerifiedChain { not_before: 0, not_after: u64::MAX, ids: Vec::new() };
        for der in std::iter::once(end_entity).chain(intermediates.iter().map(|c| c.as_ref())) {
            let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
            let v = cert.validity();
            chain.not_before = chain.not_before.max(u64::try_from(v.not_before.timestamp()).unwrap_or(0));
            chain.not_after = chain.not_after.min(u64::try_from(v.not_after.timestamp()).unwrap_or(0));
            chain.ids.push((cert.issuer().as_raw().to_vec(), cert.raw_serial().to_vec()));
        }
        Some(chain)
    }
}

impl ClientCertVerifier for CachingClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let key = Self::key(end_entity, intermediates);
        let hit = self.chains.lock().map(|c| c.get(&key).cloned()).unwrap_or(None);
        if let Some(chain) = hit {
            let t = now.as_secs();
            if t < chain.not_before {
                return Err(Error::InvalidCertificate(rustls::CertificateError::NotValidYet));
            }
            if t > chain.not_after {
                return Err(Error::InvalidCertificate(rustls::CertificateError::Expired));
            }
            if chain.ids.iter().any(|(issuer, serial)| self.revoked.contains(issuer, serial)) {
                return Err(Error::InvalidCertificate(rustls::CertificateError::Revoked));
            }
            return Ok(ClientCertVerified::assertion());
        }
        let verified = self.inner.verify_client_cert(end_entity, intermediates, now)?;
        if let Some(chain) = Self::describe(end_entity, intermediates) {
            if let Ok(mut c) = self.chains.lock() {
                if c.len() >= CAPACITY {
                    c.clear();
                }
                c.insert(key, Arc::new(chain));
            }
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
