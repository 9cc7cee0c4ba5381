//! The handshake-signature half of a rustls certificate verifier, which is
//! the same for every verifier of ours: checked with [`crate::provider`]'s
//! algorithms. Chain checks differ; this does not.
use rustls::crypto::WebPkiSupportedAlgorithms;
use std::sync::LazyLock;

/// The signature algorithms of [`crate::provider`], built once.
pub fn signature_algorithms() -> &'static WebPkiSupportedAlgorithms {
    static ALGS: LazyLock<WebPkiSupportedAlgorithms> =
        LazyLock::new(|| crate::provider().signature_verification_algorithms);
    &ALGS
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
            $crate::__private::verify_tls12_signature(message, cert, dss, $crate::signature_algorithms())
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &$crate::__private::CertificateDer<'_>,
            dss: &$crate::__private::DigitallySignedStruct,
        ) -> ::std::result::Result<$crate::__private::HandshakeSignatureValid, $crate::__private::Error> {
            $crate::__private::verify_tls13_signature(message, cert, dss, $crate::signature_algorithms())
        }

        fn supported_verify_schemes(&self) -> ::std::vec::Vec<$crate::__private::SignatureScheme> {
            $crate::signature_algorithms().supported_schemes()
        }
    };
}

#[doc(hidden)]
pub mod __private {
    pub use rustls::client::danger::HandshakeSignatureValid;
    pub use rustls::crypto::{verify_tls12_signature, verify_tls13_signature};
    pub use rustls::{DigitallySignedStruct, Error, SignatureScheme};
    pub use rustls_pki_types::CertificateDer;
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_algorithms_are_the_providers() {
        let provider = crate::provider().signature_verification_algorithms;
        assert_eq!(super::signature_algorithms().supported_schemes(), provider.supported_schemes());
        assert_eq!(super::signature_algorithms().all.len(), provider.all.len());
    }
}
