use rustls::{CertificateError, Error, PeerIncompatible};
use std::fmt;

/// Why a TLS handshake failed, in words an operator can act on. One place
/// classifies; the audit log, the metric label and `probe` all use it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeFailure {
    NoClientCertificate,
    UnknownCa,
    Expired,
    NotYetValid,
    Revoked,
    WrongExtendedKeyUsage,
    /// The peer's CertificateVerify does not verify with its certificate's key.
    ProofOfPossession,
    /// A certificate in the path does not verify with the key of a CA of the
    /// right name (a decoy, or a CA re-keyed under the same name); the name.
    ChainSignature(String),
    /// The leaf's issuer (named) was neither sent nor configured.
    IncompleteChain(String),
    /// With CRLs configured, no CRL of this CA (named) was loaded.
    CrlMissing(String),
    /// A CRL for a CA of the path exists but must not be used (why).
    CrlUnusable(String),
    /// The newest CRL of a CA of the path is past nextUpdate + grace (details).
    CrlStale(String),
    /// The server's certificate is not for the name asked for.
    WrongName,
    BadCertificate(String),
    ProtocolVersion,
    NoSharedCipher,
    PeerRejectedUs(String),
    Timeout,
    PeerClosed,
    NotTls,
    Other(String),
}

impl HandshakeFailure {
    /// Short stable label for metrics and JSON (`reason` field).
    pub fn label(&self) -> &'static str {
        match self {
            HandshakeFailure::NoClientCertificate => "no_client_certificate",
            HandshakeFailure::UnknownCa => "unknown_ca",
            HandshakeFailure::Expired => "expired",
            HandshakeFailure::NotYetValid => "not_yet_valid",
            HandshakeFailure::Revoked => "revoked",
            HandshakeFailure::WrongExtendedKeyUsage => "wrong_eku",
            HandshakeFailure::ProofOfPossession => "proof_of_possession",
            HandshakeFailure::ChainSignature(_) => "bad_chain_signature",
            HandshakeFailure::IncompleteChain(_) => "incomplete_chain",
            HandshakeFailure::CrlMissing(_) => "crl_missing",
            HandshakeFailure::CrlUnusable(_) => "crl_unusable",
            HandshakeFailure::CrlStale(_) => "crl_stale",
            HandshakeFailure::WrongName => "wrong_name",
            HandshakeFailure::BadCertificate(_) => "bad_certificate",
            HandshakeFailure::ProtocolVersion => "protocol_version",
            HandshakeFailure::NoSharedCipher => "no_shared_cipher",
            HandshakeFailure::PeerRejectedUs(_) => "peer_alert",
            HandshakeFailure::Timeout => "timeout",
            HandshakeFailure::PeerClosed => "peer_closed",
            HandshakeFailure::NotTls => "not_tls",
            HandshakeFailure::Other(_) => "other",
        }
    }

    /// Classifies a rustls error (from either side of the handshake).
    pub fn from_rustls(err: &Error) -> HandshakeFailure {
        match err {
            Error::NoCertificatesPresented => HandshakeFailure::NoClientCertificate,
            Error::InvalidCertificate(c) => match c {
                CertificateError::UnknownIssuer => HandshakeFailure::UnknownCa,
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => HandshakeFailure::Expired,
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                    HandshakeFailure::NotYetValid
                }
                CertificateError::Revoked => HandshakeFailure::Revoked,
                CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                    HandshakeFailure::WrongExtendedKeyUsage
                }
                // Chain signatures come as `ChainSignature` from our verifiers;
                // a bare BadSignature is the CertificateVerify check.
                CertificateError::BadSignature => HandshakeFailure::ProofOfPossession,
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                    HandshakeFailure::WrongName
                }
                CertificateError::Other(o) => match o.0.downcast_ref::<HandshakeFailure>() {
                    Some(f) => f.clone(),
                    None => HandshakeFailure::BadCertificate(o.to_string()),
                },
                other => HandshakeFailure::BadCertificate(format!("{other:?}")),
            },
            Error::PeerIncompatible(p) => match p {
                PeerIncompatible::NoCipherSuitesInCommon => HandshakeFailure::NoSharedCipher,
                PeerIncompatible::NoKxGroupsInCommon => HandshakeFailure::NoSharedCipher,
                PeerIncompatible::SupportedVersionsExtensionRequired
                | PeerIncompatible::ServerDoesNotSupportTls12Or13
                | PeerIncompatible::Tls12NotOffered
                | PeerIncompatible::Tls12NotOfferedOrEnabled
                | PeerIncompatible::Tls13RequiredForQuic => HandshakeFailure::ProtocolVersion,
                other => HandshakeFailure::Other(format!("{other:?}")),
            },
            Error::AlertReceived(alert) => HandshakeFailure::PeerRejectedUs(format!("{alert:?}")),
            Error::InvalidMessage(_)
            | Error::InappropriateHandshakeMessage { .. }
            | Error::InappropriateMessage { .. } => HandshakeFailure::NotTls,
            other => HandshakeFailure::Other(other.to_string()),
        }
    }

    /// Classifies the `io::Error` tokio-rustls returns from `accept`/`connect`.
    pub fn from_io(err: &std::io::Error) -> HandshakeFailure {
        if let Some(e) = err.get_ref().and_then(|e| e.downcast_ref::<Error>()) {
            return HandshakeFailure::from_rustls(e);
        }
        match err.kind() {
            std::io::ErrorKind::UnexpectedEof
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::BrokenPipe
            | std::io::ErrorKind::ConnectionAborted => HandshakeFailure::PeerClosed,
            std::io::ErrorKind::TimedOut => HandshakeFailure::Timeout,
            _ => HandshakeFailure::Other(err.to_string()),
        }
    }
}

impl std::error::Error for HandshakeFailure {}

impl fmt::Display for HandshakeFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeFailure::NoClientCertificate => f.write_str("the client sent no certificate"),
            HandshakeFailure::UnknownCa => f.write_str("the certificate was issued by a CA this side does not trust"),
            HandshakeFailure::Expired => f.write_str("the certificate has expired"),
            HandshakeFailure::NotYetValid => f.write_str("the certificate is not valid yet (check clocks)"),
            HandshakeFailure::Revoked => f.write_str("the certificate is revoked (listed in the CRL)"),
            HandshakeFailure::WrongExtendedKeyUsage => {
                f.write_str("the certificate is not for this purpose (wrong extended key usage, e.g. a server certificate used as a client one)")
            }
            HandshakeFailure::ProofOfPossession => f.write_str(
                "the peer's handshake signature does not verify with its certificate's key (failed proof of possession: the private key does not match the certificate)",
            ),
            HandshakeFailure::ChainSignature(ca) => write!(
                f,
                "a certificate in the chain does not verify with the key of the CA named '{ca}' (a decoy CA with the same name but another key, or a tampered certificate)"
            ),
            HandshakeFailure::IncompleteChain(ca) => write!(
                f,
                "the chain is incomplete: the certificate's issuer '{ca}' is neither a trusted CA nor an intermediate sent by the peer or configured (the peer must send its intermediate CA, or add it to the trusted CA file)"
            ),
            HandshakeFailure::CrlMissing(ca) => write!(
                f,
                "revocation status unknown: no CRL of CA '{ca}' is loaded (add it, e.g. `ambos crl --all`, or allow unknown status / check only the leaf)"
            ),
            HandshakeFailure::CrlUnusable(why) => write!(f, "revocation status unknown: {why}"),
            HandshakeFailure::CrlStale(why) => write!(f, "revocation status unknown: {why}; publish a new CRL"),
            HandshakeFailure::WrongName => f.write_str("the certificate is not valid for the name asked for"),
            HandshakeFailure::BadCertificate(d) => write!(f, "the certificate is invalid ({d})"),
            HandshakeFailure::ProtocolVersion => f.write_str("no TLS version in common (TLS 1.2 or 1.3 required)"),
            HandshakeFailure::NoSharedCipher => f.write_str("no cipher suite or key exchange in common"),
            HandshakeFailure::PeerRejectedUs(a) => write!(f, "the peer aborted the handshake with alert {a}"),
            HandshakeFailure::Timeout => f.write_str("the handshake timed out"),
            HandshakeFailure::PeerClosed => f.write_str("the peer closed the connection during the handshake"),
            HandshakeFailure::NotTls => f.write_str("the peer did not speak TLS (malformed handshake)"),
            HandshakeFailure::Other(d) => write!(f, "handshake failed: {d}"),
        }
    }
}
