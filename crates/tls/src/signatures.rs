//! The handshake-signature half of a rustls certificate verifier, which is
//! the same for every verifier of ours: checked with [`crate::provider`]'s
//! algorithms. Chain checks differ; this does not.
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::{DigitallySignedStruct, Error, SignatureScheme};
use rustls_pki_types::CertificateDer;
use std::sync::LazyLock;

/// The signature algorithms of [`crate::provider`], built once.
pub fn signature_algorithms() -> &'static WebPkiSupportedAlgorithms {
    static ALGS: LazyLock<WebPkiSupportedAlgorithms> =
        LazyLock::new(|| crate::provider().signature_verification_algorithms);
    &ALGS
}

#[doc(hidden)]
pub fn tls12(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, Error> {
    rustls::crypto::verify_tls12_signature(message, cert, dss, signature_algorithms())
}

#[doc(hidden)]
pub fn tls13(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, Error> {
    rustls::crypto::verify_tls13_signature(message, cert, dss, signature_algorithms())
}

#[doc(hidden)]
pub fn schemes() -> Vec<SignatureScheme> {
    signature_algorithms().supported_schemes()
}

/// Writes `verify_tls12_signature`, `verify_tls13_signature` and
/// `supported_verify_schemes` inside an `impl ServerCertVerifier` or
/// `impl ClientCertVerifier` block, checked with
/// [`signature_algorithms`](crate::signature_algorithms).
#[macro_export]
macro_rules! handshake_signatures {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &$crate::__private::CertificateDer<'_>,
            dss: &$crate::__private::DigitallySignedStruct,
        ) -> ::std::result::Result<$crate::__private::HandshakeSignatureValid, $crate::__private::Error> {
            $crate::__private::tls12(message, cert, dss)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &$crate::__private::CertificateDer<'_>,
            dss: &$crate::__private::DigitallySignedStruct,
        ) -> ::std::result::Result<$crate::__private::HandshakeSignatureValid, $crate::__private::Error> {
            $crate::__private::tls13(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> ::std::vec::Vec<$crate::__private::SignatureScheme> {
            $crate::__private::schemes()
        }
    };
}

#[doc(hidden)]
pub mod __private {
    pub use super::{schemes, tls12, tls13};
    pub use rustls::client::danger::HandshakeSignatureValid;
    pub use rustls::{DigitallySignedStruct, Error, SignatureScheme};
    pub use rustls_pki_types::CertificateDer;
}
