//! The CA API's client verifier: a certificate chaining to our root, for
//! client *or* server authentication — servers renew over mTLS with their
//! serverAuth certificate. Whether that certificate may do what it asks
//! (not revoked, admin) is decided by the authority against the store.
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DistinguishedName, Error};
use rustls_pki_types::{CertificateDer, TrustAnchor};

#[derive(Debug)]
pub struct AnyPurposeVerifier {
    anchors: Vec<TrustAnchor<'static>>,
    hints: Vec<DistinguishedName>,
}

impl AnyPurposeVerifier {
    pub fn new(root: &[u8]) -> Result<AnyPurposeVerifier, Error> {
        let der = CertificateDer::from(root.to_vec());
        let anchor = webpki::anchor_from_trusted_cert(&der)
            .map_err(|_| Error::InvalidCertificate(CertificateError::BadEncoding))?
            .to_owned();
        let hints = vec![DistinguishedName::in_sequence(&anchor.subject)];
        Ok(AnyPurposeVerifier { anchors: vec![anchor], hints })
    }
}

fn map(e: webpki::Error) -> Error {
    Error::InvalidCertificate(match e {
        webpki::Error::CertExpired { .. } => CertificateError::Expired,
        webpki::Error::CertNotValidYet { .. } => CertificateError::NotValidYet,
        webpki::Error::UnknownIssuer => CertificateError::UnknownIssuer,
        webpki::Error::InvalidSignatureForPublicKey => CertificateError::BadSignature,
        webpki::Error::CertRevoked => CertificateError::Revoked,
        _ => CertificateError::BadEncoding,
    })
}

impl ClientCertVerifier for AnyPurposeVerifier {
    ambos_tls::client_cert_verifier! {
        // Enrollment, roots and CRL need no certificate.
        mandatory: |self| false,
        hints: |self| &self.hints,
        verify: |self, end_entity, intermediates, now| {
            let cert = webpki::EndEntityCert::try_from(end_entity).map_err(map)?;
            let mut last = Error::InvalidCertificate(CertificateError::InvalidPurpose);
            for usage in [webpki::KeyUsage::client_auth(), webpki::KeyUsage::server_auth()] {
                match cert.verify_for_usage(
                    ambos_tls::signature_algorithms().all,
                    &self.anchors,
                    intermediates,
                    now,
                    usage,
                    None,
                    None,
                ) {
                    Ok(_) => return Ok(ClientCertVerified::assertion()),
                    Err(webpki::Error::RequiredEkuNotFoundContext(_)) => continue,
                    Err(e) => last = map(e),
                }
            }
            Err(last)
        },
    }
}
