use rustls::{AlertDescription, CertificateError, Error, PeerIncompatible};
use std::fmt;

/// Why a TLS handshake failed, in words an operator can act on. One place
/// classifies; the audit log, the metric label and `probe`'s verdict and fix
/// all come from it.
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
    /// This side accepts TLS 1.3 only and the peer offered older versions.
    Tls13Required,
    NoSharedCipher,
    /// Another incompatibility rustls names (labelled `other`, as before it had a variant).
    Incompatible(String),
    /// The peer refused us with this alert.
    PeerRejectedUs(AlertDescription),
    Timeout,
    PeerClosed,
    NotTls,
    Other(String),
}

impl HandshakeFailure {
    /// Every value [`label`](Self::label) returns other than `none`, so metrics can start at 0.
    pub const LABELS: [&'static str; 21] = [
        "no_client_certificate",
        "unknown_ca",
        "expired",
        "not_yet_valid",
        "revoked",
        "wrong_eku",
        "proof_of_possession",
        "bad_chain_signature",
        "incomplete_chain",
        "crl_missing",
        "crl_unusable",
        "crl_stale",
        "wrong_name",
        "bad_certificate",
        "protocol_version",
        "no_shared_cipher",
        "other",
        "peer_alert",
        "timeout",
        "peer_closed",
        "not_tls",
    ];

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
            HandshakeFailure::ProtocolVersion | HandshakeFailure::Tls13Required => "protocol_version",
            HandshakeFailure::NoSharedCipher => "no_shared_cipher",
            HandshakeFailure::Incompatible(_) => "other",
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
                other => HandshakeFailure::Incompatible(format!("{other:?}")),
            },
            Error::AlertReceived(alert) => HandshakeFailure::PeerRejectedUs(*alert),
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

/// Which side refused: it decides whose certificate a verdict talks about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// This side refused the peer's certificate (our verifier said why).
    Local,
    /// The peer sent an alert: it refused this side.
    Received,
    /// No certificate was refused: versions, ciphers, transport, protocol.
    Neither,
}

/// What a person at the client end of a failed handshake is told (`ambos
/// probe`): the cause, and the fix in the flags of ambos's client commands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub cause: String,
    pub fix: &'static str,
}

// (cause, fix) pairs that both sides of the verdict give.
const NO_CERT_SENT: (&str, &str) = (
    "no client certificate sent: the server requires one",
    "pass --cert and --key with a client certificate from a CA the server trusts",
);
const VERSION_MISMATCH: (&str, &str) = (
    "TLS version or cipher mismatch: no protocol version, cipher suite or group in common",
    "enable TLS 1.2 or 1.3 with AEAD suites on the server (ambos accepts nothing weaker)",
);

impl HandshakeFailure {
    pub fn direction(&self) -> Direction {
        use HandshakeFailure as F;
        match self {
            F::PeerRejectedUs(_) => Direction::Received,
            F::ProtocolVersion
            | F::Tls13Required
            | F::NoSharedCipher
            | F::Incompatible(_)
            | F::Timeout
            | F::PeerClosed
            | F::NotTls => Direction::Neither,
            F::Other(_) => Direction::Neither,
            _ => Direction::Local,
        }
    }

    /// The alert the peer refused us with, if it did.
    pub fn received_alert(&self) -> Option<AlertDescription> {
        match self {
            HandshakeFailure::PeerRejectedUs(a) => Some(*a),
            _ => None,
        }
    }

    /// The verdict at the client end: a local failure is about the server's
    /// certificate, a received alert about ours.
    pub fn client_verdict(&self) -> Verdict {
        use HandshakeFailure as F;
        let (cause, fix) = match self {
            F::PeerRejectedUs(alert) => return alert_verdict(*alert),
            F::NoClientCertificate => NO_CERT_SENT,
            F::UnknownCa => (
                "the server's certificate is not trusted by --ca (issued by another CA)",
                "pass the CA that issued the server's certificate with --ca (ambos export truststore)",
            ),
            F::WrongName => (
                "server name mismatch: the server's certificate does not name the host we asked for",
                "connect with a name from its SANs (--server-name), or reissue it with --san for this name",
            ),
            F::Expired => ("the server's certificate has expired", "renew the server's certificate"),
            F::NotYetValid => ("the server's certificate is not valid yet", "check the clocks of both machines"),
            F::Revoked => (
                "the server's certificate is revoked (listed in the CRL given with --crl/--crl-url), or one of its CAs is",
                "the server needs a new certificate (ambos issue server NAME --force, or ambos enroll)",
            ),
            F::CrlMissing(_) => (
                "revocation of the server's chain cannot be checked: no CRL of CA '{}' among --crl/--crl-url (the missing CRL: every CA level needs its issuer's CRL)",
                "give the CRLs of every CA level: ambos crl --all --out crls.pem, or --crl-url https://CA:9443/v1/crl",
            ),
            F::CrlUnusable(_) => (
                "revocation of the server's chain cannot be checked: {}",
                "give a CRL signed by the CA in the server's chain (ambos crl --all from the same CA)",
            ),
            F::CrlStale(_) => (
                "revocation of the server's chain cannot be checked (stale CRL): {}",
                "publish a new CRL (ambos crl --all) and pass it, or use --crl-url",
            ),
            F::IncompleteChain(_) => (
                "the server's chain is incomplete: it did not send its issuer '{}', which --ca does not hold either",
                "configure the server with its full chain (NAME.crt holds leaf + intermediate), or add the intermediate to the --ca file",
            ),
            F::ChainSignature(_) => (
                "a certificate in the server's chain does not verify with the key of the CA named '{}' (a decoy CA with the same name, or a CA re-keyed under the same name)",
                "check that --ca is the CA that issued the server's certificate (same name is not enough)",
            ),
            F::ProofOfPossession => (
                "the server's handshake signature does not verify with its certificate's key (failed proof of possession: the server's key does not match its certificate)",
                "configure the server with the key of its certificate",
            ),
            F::WrongExtendedKeyUsage => (
                "the server's certificate is not a server certificate (no serverAuth extended key usage)",
                "issue a server certificate: ambos issue server NAME",
            ),
            F::BadCertificate(_) => ("the server's certificate is invalid: {}", "reissue the server's certificate"),
            F::ProtocolVersion | F::NoSharedCipher | F::Incompatible(_) => VERSION_MISMATCH,
            F::Tls13Required => ("the server requires TLS 1.3", "offer TLS 1.3 (drop --tls-version 1.2)"),
            F::NotTls => ("the server did not answer in TLS", "check the port: is this the TLS port (not plain HTTP)?"),
            F::Timeout | F::PeerClosed => (
                "the server closed the connection during the handshake without saying why",
                "look at the server's log; check the TLS version and that this is a TLS port",
            ),
            F::Other(_) => ("TLS failed: {}", "look at the server's log for the reason"),
        };
        Verdict { cause: cause.replace("{}", &self.detail()), fix }
    }

    /// What a `{}` in a verdict's cause stands for.
    fn detail(&self) -> String {
        use HandshakeFailure as F;
        match self {
            F::CrlMissing(d) | F::CrlUnusable(d) | F::CrlStale(d) | F::IncompleteChain(d) | F::ChainSignature(d) => {
                d.clone()
            }
            F::Other(d) => d.clone(),
            F::BadCertificate(_) => self.to_string(),
            _ => String::new(),
        }
    }
}

/// What the server's alert says about our client certificate.
fn alert_verdict(alert: AlertDescription) -> Verdict {
    use AlertDescription as A;
    let (cause, fix) = match alert {
        A::CertificateRequired => NO_CERT_SENT,
        A::UnknownCA | A::DecryptError => (
            "the server does not trust the CA that issued our client certificate",
            "use a client certificate from one of the CAs the server lists (see 'accepted CAs'), or add our CA to the server's client_ca",
        ),
        A::CertificateExpired => (
            "the server says our client certificate has expired (or is not valid yet)",
            "renew it (ambos renew) and check both clocks",
        ),
        A::CertificateRevoked => (
            "our client certificate is revoked (listed in the server's CRL)",
            "get a new certificate (ambos enroll / ambos issue client); a revoked one cannot be renewed",
        ),
        A::UnsupportedCertificate => (
            "the server rejects our certificate's purpose: it lacks the clientAuth extended key usage",
            "issue a client certificate: ambos issue client NAME",
        ),
        A::ProtocolVersion | A::HandshakeFailure | A::InsufficientSecurity => VERSION_MISMATCH,
        other => {
            let cause = format!("the server aborted the handshake with alert {other:?}");
            return Verdict { cause, fix: "look at the server's log for the reason" };
        }
    };
    Verdict { cause: cause.to_string(), fix }
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
            HandshakeFailure::Tls13Required => f.write_str(
                "no TLS version in common (TLS 1.3 required: min_version = \"1.3\"; the client offered only older versions)",
            ),
            HandshakeFailure::NoSharedCipher => f.write_str("no cipher suite or key exchange in common"),
            HandshakeFailure::Incompatible(d) => write!(f, "handshake failed: {d}"),
            HandshakeFailure::PeerRejectedUs(a) => write!(f, "the peer aborted the handshake with alert {a:?}"),
            HandshakeFailure::Timeout => f.write_str("the handshake timed out"),
            HandshakeFailure::PeerClosed => f.write_str("the peer closed the connection during the handshake"),
            HandshakeFailure::NotTls => f.write_str("the peer did not speak TLS (malformed handshake)"),
            HandshakeFailure::Other(d) => write!(f, "handshake failed: {d}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_received_alert_keeps_its_label_and_says_who_refused() {
        let f = HandshakeFailure::from_rustls(&Error::AlertReceived(AlertDescription::UnknownCA));
        assert_eq!(f.label(), "peer_alert");
        assert_eq!(f.to_string(), "the peer aborted the handshake with alert UnknownCA");
        assert_eq!(f.direction(), Direction::Received);
        assert_eq!(f.received_alert(), Some(AlertDescription::UnknownCA));
        assert_eq!(f.client_verdict().cause, "the server does not trust the CA that issued our client certificate");
    }

    #[test]
    fn our_verifier_refusals_are_local_and_about_the_peer_certificate() {
        for (err, label) in [
            (CertificateError::Expired, "expired"),
            (CertificateError::NotValidYet, "not_yet_valid"),
            (CertificateError::UnknownIssuer, "unknown_ca"),
            (CertificateError::Revoked, "revoked"),
            (CertificateError::InvalidPurpose, "wrong_eku"),
            (CertificateError::NotValidForName, "wrong_name"),
            (CertificateError::BadSignature, "proof_of_possession"),
        ] {
            let f = HandshakeFailure::from_rustls(&Error::InvalidCertificate(err));
            assert_eq!(f.label(), label);
            assert_eq!(f.direction(), Direction::Local);
            assert_eq!(f.received_alert(), None);
            assert!(f.client_verdict().cause.contains("server's"), "{label}: {}", f.client_verdict().cause);
        }
    }

    #[test]
    fn every_incompatibility_is_a_version_or_cipher_mismatch_for_the_client() {
        for p in [
            PeerIncompatible::NoCipherSuitesInCommon,
            PeerIncompatible::ServerDoesNotSupportTls12Or13,
            PeerIncompatible::NoSignatureSchemesInCommon,
        ] {
            let f = HandshakeFailure::from_rustls(&Error::PeerIncompatible(p));
            assert_eq!(f.direction(), Direction::Neither);
            assert!(f.client_verdict().cause.starts_with("TLS version or cipher mismatch"));
        }
        // Labelled as before the variant existed.
        let f = HandshakeFailure::from_rustls(&Error::PeerIncompatible(PeerIncompatible::NoSignatureSchemesInCommon));
        assert_eq!((f.label(), f.to_string().as_str()), ("other", "handshake failed: NoSignatureSchemesInCommon"));
    }

    #[test]
    fn a_verdict_names_the_detail_of_its_failure() {
        let missing = HandshakeFailure::CrlMissing("Acme Root CA".into()).client_verdict();
        assert!(missing.cause.contains("no CRL of CA 'Acme Root CA' among --crl/--crl-url"), "{}", missing.cause);
        assert_eq!(HandshakeFailure::Other("x".into()).client_verdict().cause, "TLS failed: x");
        let bad = HandshakeFailure::BadCertificate("d".into()).client_verdict();
        assert_eq!(bad.cause, "the server's certificate is invalid: the certificate is invalid (d)");
        assert_eq!(HandshakeFailure::Expired.client_verdict().cause, "the server's certificate has expired");
        let other = HandshakeFailure::PeerRejectedUs(AlertDescription::BadRecordMac).client_verdict();
        assert_eq!(other.cause, "the server aborted the handshake with alert BadRecordMac");
    }

    #[test]
    fn a_tls13_only_refusal_keeps_its_label_and_names_the_version() {
        let f = HandshakeFailure::Tls13Required;
        assert_eq!((f.label(), f.direction()), ("protocol_version", Direction::Neither));
        assert!(f.to_string().contains("TLS 1.3 required"), "{f}");
        assert_eq!(f.client_verdict().cause, "the server requires TLS 1.3");
    }

    #[test]
    fn transport_failures_come_from_io_kinds() {
        let eof = std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
        assert_eq!(HandshakeFailure::from_io(&eof), HandshakeFailure::PeerClosed);
        let slow = std::io::Error::from(std::io::ErrorKind::TimedOut);
        assert_eq!(HandshakeFailure::from_io(&slow).label(), "timeout");
        let wrapped = std::io::Error::new(std::io::ErrorKind::InvalidData, Error::NoCertificatesPresented);
        assert_eq!(HandshakeFailure::from_io(&wrapped), HandshakeFailure::NoClientCertificate);
    }
}
