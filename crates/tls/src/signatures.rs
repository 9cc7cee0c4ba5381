//! The handshake-signature half of a rustls certificate verifier, which is
//! the same for every verifier of ours: checked with [`crate::provider`]'s
//! algorithms. Chain checks differ; this does not. Client verifiers also
//! share the rest of their trait's shape ([`client_cert_verifier!`]).
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

/// Writes a whole `impl ClientCertVerifier` body: clients are always asked
/// for a certificate, and only what differs between our verifiers is given,
/// as closures of `self` (`verify` gets the end entity, the intermediates and
/// the time, and returns `Result<ClientCertVerified, rustls::Error>`).
#[macro_export]
macro_rules! client_cert_verifier {
    (
        mandatory: |$s1:ident| $mandatory:expr,
        hints: |$s2:ident| $hints:expr,
        verify: |$s3:ident, $end_entity:ident, $intermediates:ident, $now:ident| $verify:expr $(,)?
    ) => {
        fn offer_client_auth(&self) -> bool {
            true
        }

        fn client_auth_mandatory(&$s1) -> bool {
            $mandatory
        }

        fn root_hint_subjects(&$s2) -> &[$crate::__private::DistinguishedName] {
            $hints
        }

        fn verify_client_cert(
            &$s3,
            $end_entity: &$crate::__private::CertificateDer<'_>,
            $intermediates: &[$crate::__private::CertificateDer<'_>],
            $now: $crate::__private::UnixTime,
        ) -> ::std::result::Result<$crate::__private::ClientCertVerified, $crate::__private::Error> {
            $verify
        }

        $crate::handshake_signatures!();
    };
}

#[doc(hidden)]
pub mod __private {
    pub use rustls::client::danger::HandshakeSignatureValid;
    pub use rustls::crypto::{verify_tls12_signature, verify_tls13_signature};
    pub use rustls::server::danger::ClientCertVerified;
    pub use rustls::{DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};
    pub use rustls_pki_types::{CertificateDer, UnixTime};
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
