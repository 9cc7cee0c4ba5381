//! From what failed and what the server sent to one verdict. The TLS part
//! is `ambos_tls::HandshakeFailure`'s; this adds what only probe saw (the
//! CertificateRequest, the CA names, our own issuers, the HTTP answer).
use crate::recorder::Seen;
use crate::report::Report;
use ambos_tls::{Direction, HandshakeFailure};
use rustls::AlertDescription;

const SEND_A_CERT: &str = "pass --cert and --key with a client certificate from a CA the server trusts";

/// Our chain names none of the CAs the server said it accepts.
pub fn not_listed(our_issuers: Option<&[String]>, r: &Report) -> bool {
    our_issuers.is_some_and(|l| !r.acceptable_cas.is_empty() && !l.iter().any(|i| r.acceptable_cas.contains(i)))
}

/// The handshake or the first read failed with `e`.
pub fn diagnose_io(r: Report, e: &std::io::Error, our_issuers: Option<&[String]>, seen: &Seen) -> Report {
    if let Some(err) = e.get_ref().and_then(|x| x.downcast_ref::<rustls::Error>()) {
        return diagnose_tls(r, &HandshakeFailure::from_rustls(err), our_issuers, seen);
    }
    match e.kind() {
        std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset => {
            if seen.requested && !seen.sent {
                r.fail(
                    "the server closed the connection: it requires a client certificate and we sent none",
                    SEND_A_CERT,
                )
            } else {
                r.fail_with(&HandshakeFailure::PeerClosed.client_verdict())
            }
        }
        _ => r.fail(&format!("connection failed: {e}"), "check the address, firewall and that the server speaks TLS"),
    }
}

/// A TLS failure, refined by what we saw: a bare handshake_failure alert
/// after a CertificateRequest we could not answer is a missing certificate.
pub fn diagnose_tls(r: Report, f: &HandshakeFailure, our_issuers: Option<&[String]>, seen: &Seen) -> Report {
    let alert = f.received_alert();
    // A server that refuses a TLS 1.2-only hello can only want 1.3.
    if seen.offered_tls12_only
        && (alert == Some(AlertDescription::ProtocolVersion) || *f == HandshakeFailure::ProtocolVersion)
    {
        return r.fail(
            "the server requires TLS 1.3 (we offered only TLS 1.2: --tls-version 1.2)",
            "offer TLS 1.3 (drop --tls-version 1.2); a client that cannot needs the server's min_version = \"1.2\"",
        );
    }
    if alert == Some(AlertDescription::HandshakeFailure) && seen.requested && !seen.sent {
        return r.fail_with(&HandshakeFailure::NoClientCertificate.client_verdict());
    }
    if alert == Some(AlertDescription::BadCertificate) && not_listed(our_issuers, &r) {
        return r.fail(
            "our client certificate is not from a CA the server trusts",
            "use a client certificate from one of the CAs the server lists",
        );
    }
    let mut r = r.fail_with(&f.client_verdict());
    if f.direction() == Direction::Local {
        r.reason = Some(f.label().to_string());
    }
    r
}

/// A handshake error in words: ours for a refused certificate.
pub fn handshake_detail(e: &std::io::Error) -> String {
    match e.get_ref().and_then(|x| x.downcast_ref::<rustls::Error>()) {
        Some(err @ rustls::Error::InvalidCertificate(_)) => {
            let f = HandshakeFailure::from_rustls(err);
            format!("we refused the server's certificate ({}): {f}", f.label())
        }
        _ => e.to_string(),
    }
}

/// The handshake worked: the HTTP answer decides.
pub fn diagnose_http(
    r: Report,
    status: Option<u16>,
    body: &str,
    our_issuers: Option<&[String]>,
    seen: &Seen,
) -> Report {
    match status {
        Some(s) if s < 400 => {
            let verdict = format!(
                "OK: mTLS works ({}{}), HTTP {s}",
                r.protocol.clone().unwrap_or_default(),
                if seen.sent { ", client certificate accepted" } else { "" }
            );
            r.pass(verdict)
        }
        Some(403) if !seen.sent => r.fail(
            "denied by route policy (HTTP 403): we presented no client certificate and the route does not let anonymous clients in",
            "present a client certificate (--cert and --key) whose identity is on the route's allow list",
        ),
        Some(403) => r.fail(
            &format!(
                "authorized by TLS but denied by route policy (HTTP 403): our identity{} is not on the route's allow list",
                presented(seen)
            ),
            "add our identity (spiffe://..., cn:, ou:...) to the route's allow list, or use an allowed certificate",
        ),
        Some(400) if body.contains("No required SSL certificate was sent") => r.fail(
            "no client certificate sent: the server (nginx) requires one and answered 400 after the handshake",
            SEND_A_CERT,
        ),
        Some(400) if body.contains("The SSL certificate error") => {
            // nginx does not say which check failed: reason it out locally.
            if not_listed(our_issuers, &r) {
                r.fail(
                    "the server (nginx) rejected our client certificate: it is from a CA the server does not trust",
                    "use a client certificate from one of the CAs the server lists (see 'accepted CAs')",
                )
            } else {
                r.fail(
                    "the server (nginx) rejected our client certificate after the handshake: it is in date, a client certificate and from a CA the server lists, so it is most likely revoked (in the server's CRL)",
                    "check the server's error log ('certificate revoked'); get a new certificate",
                )
            }
        }
        Some(s) => r.fail(&format!("the server answered HTTP {s}"), "the TLS part works; look at the application"),
        None => r.fail("the server's answer is not HTTP", "use --no-http for non-HTTP services"),
    }
}

/// ` (cn:bob)`: who we are, for a verdict about our identity.
fn presented(seen: &Seen) -> String {
    seen.presented.as_ref().map(|p| format!(" ({p})")).unwrap_or_default()
}

/// The handshake worked, then the server closed without a byte: what an
/// `ambos proxy` in TCP mode does to an identity no route allows.
pub fn closed_after_handshake(r: Report, seen: &Seen) -> Report {
    let (who, fix) = if seen.sent {
        (
            format!("our identity{}", presented(seen)),
            "add our identity to the allow list of the proxy's route (the proxy's audit log has event \"connection\", decision \"deny\" and why), or use an allowed certificate",
        )
    } else {
        ("an anonymous client (we presented no certificate)".to_string(), SEND_A_CERT)
    };
    r.fail(
        &format!("the TLS handshake succeeded, then the server closed the connection without answering: most likely a TCP-mode proxy (listen.mode = \"tcp\") refusing {who}"),
        fix,
    )
}

/// The `WWW-Authenticate: Bearer ...` value of an HTTP response head, if any.
pub fn bearer_challenge(response: &str) -> Option<String> {
    let head = response.split("\r\n\r\n").next().unwrap_or(response);
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(n, v)| n.trim().eq_ignore_ascii_case("www-authenticate") && v.trim_start().starts_with("Bearer"))
        .map(|(_, v)| v.trim().to_string())
}

/// A route that wants an access token (RFC 6750 challenge) said no: why,
/// in plain words; a token bound to another certificate is named by whom
/// it was issued to (its `sub`) and whom this connection presents.
pub fn token_refused(
    r: Report,
    status: u16,
    challenge: &str,
    token: Option<&str>,
    ours: Option<&ambos_tls::Identity>,
) -> Report {
    let Some(token) = token else {
        return r.fail(
            &format!("the route needs an access token (HTTP {status}, WWW-Authenticate: {challenge})"),
            "get a token bound to our certificate and pass it with --token",
        );
    };
    let description = challenge
        .split("error_description=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or("no reason given");
    if description.contains("bound to another certificate") {
        let claims = match ambos_pki::inspect(token.as_bytes(), None, ambos_pki::OffsetDateTime::now_utc()) {
            Ok(ambos_pki::Inspection::Jwt(j)) => Some(j.claims),
            _ => None,
        };
        let issued_to = claims.as_ref().and_then(|c| c["sub"].as_str()).unwrap_or("someone else").to_string();
        let presents = ours.map(|id| id.spiffe.clone().or(id.cn.clone()).unwrap_or(id.subject.clone()));
        let presents = presents.unwrap_or_else(|| "no certificate".into());
        return r.fail(
            &format!("the token is bound to another certificate: it was issued to {issued_to}, this connection presents {presents}"),
            "use the certificate the token was issued for, or get a token for this certificate",
        );
    }
    let fix = if description.contains("expired") {
        "get a new token (tokens are short-lived)"
    } else if status == 403 {
        "ask the issuer for a token with the scope this route needs"
    } else {
        "get a token from the issuer and for the audience the route trusts"
    };
    r.fail(&format!("the proxy refused the token (HTTP {status}): {description}"), fix)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_bearer_challenge_is_read_from_the_head_only() {
        let resp = "HTTP/1.1 401 Unauthorized\r\nwww-authenticate: Bearer error=\"invalid_token\", error_description=\"the token has expired\"\r\n\r\nbody: WWW-Authenticate: Bearer x";
        let c = super::bearer_challenge(resp).unwrap();
        assert!(c.ends_with("error_description=\"the token has expired\""), "{c}");
        let r = super::token_refused(crate::Report::default(), 401, &c, Some("t"), None);
        assert_eq!(r.cause.as_deref(), Some("the proxy refused the token (HTTP 401): the token has expired"));
        assert_eq!(super::bearer_challenge("HTTP/1.1 403 Forbidden\r\n\r\nWWW-Authenticate: Bearer"), None);
    }

    use super::*;
    use rustls::{CertificateError, Error};

    fn seen(requested: bool, sent: bool) -> Seen {
        Seen { requested, sent, ..Seen::default() }
    }

    fn tls(err: Error, requested: bool, sent: bool) -> Report {
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, err);
        diagnose_io(Report::default(), &io, None, &seen(requested, sent))
    }

    #[test]
    fn handshake_failure_alert_after_an_unanswered_request_is_a_missing_certificate() {
        let r = tls(Error::AlertReceived(AlertDescription::HandshakeFailure), true, false);
        assert_eq!(r.cause.as_deref(), Some("no client certificate sent: the server requires one"));
        assert_eq!(r.fix.as_deref(), Some(SEND_A_CERT));
        assert_eq!(r.reason, None);
        let r = tls(Error::AlertReceived(AlertDescription::HandshakeFailure), true, true);
        assert!(r.verdict.starts_with("FAIL: TLS version or cipher mismatch"), "{}", r.verdict);
    }

    #[test]
    fn certificate_required_alert_is_a_missing_certificate() {
        let r = tls(Error::AlertReceived(AlertDescription::CertificateRequired), true, false);
        assert_eq!(r.verdict, "FAIL: no client certificate sent: the server requires one");
    }

    #[test]
    fn received_alerts_are_about_our_certificate() {
        for (alert, cause) in [
            (AlertDescription::UnknownCA, "the server does not trust the CA that issued our client certificate"),
            (AlertDescription::DecryptError, "the server does not trust the CA that issued our client certificate"),
            (AlertDescription::CertificateRevoked, "our client certificate is revoked (listed in the server's CRL)"),
            (
                AlertDescription::CertificateExpired,
                "the server says our client certificate has expired (or is not valid yet)",
            ),
            (
                AlertDescription::UnsupportedCertificate,
                "the server rejects our certificate's purpose: it lacks the clientAuth extended key usage",
            ),
            (AlertDescription::AccessDenied, "the server aborted the handshake with alert AccessDenied"),
        ] {
            let r = tls(Error::AlertReceived(alert), true, true);
            assert_eq!(r.cause.as_deref(), Some(cause), "{alert:?}");
            assert_eq!(r.reason, None, "a received alert is not our verifier's reason");
        }
    }

    #[test]
    fn bad_certificate_alert_from_a_server_that_does_not_list_our_ca() {
        let mut r = Report { acceptable_cas: vec!["CN=Other".into()], ..Report::default() };
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            Error::AlertReceived(AlertDescription::BadCertificate),
        );
        let ours = vec!["CN=Ours".to_string()];
        r = diagnose_io(r, &io, Some(&ours), &seen(true, true));
        assert_eq!(r.cause.as_deref(), Some("our client certificate is not from a CA the server trusts"));
        let listed = Report { acceptable_cas: vec!["CN=Ours".into()], ..Report::default() };
        let r = diagnose_io(listed, &io, Some(&ours), &seen(true, true));
        assert_eq!(r.cause.as_deref(), Some("the server aborted the handshake with alert BadCertificate"));
    }

    #[test]
    fn refused_server_certificates_carry_the_label_as_reason() {
        for (err, label, cause) in [
            (CertificateError::Expired, "expired", "the server's certificate has expired"),
            (CertificateError::NotValidYet, "not_yet_valid", "the server's certificate is not valid yet"),
            (
                CertificateError::UnknownIssuer,
                "unknown_ca",
                "the server's certificate is not trusted by --ca (issued by another CA)",
            ),
            (
                CertificateError::NotValidForName,
                "wrong_name",
                "server name mismatch: the server's certificate does not name the host we asked for",
            ),
            (
                CertificateError::Revoked,
                "revoked",
                "the server's certificate is revoked (listed in the CRL given with --crl/--crl-url), or one of its CAs is",
            ),
            (
                CertificateError::InvalidPurpose,
                "wrong_eku",
                "the server's certificate is not a server certificate (no serverAuth extended key usage)",
            ),
        ] {
            let r = tls(Error::InvalidCertificate(err), false, false);
            assert_eq!(r.reason.as_deref(), Some(label));
            assert_eq!(r.cause.as_deref(), Some(cause));
            assert!(!r.ok);
        }
    }

    #[test]
    fn crl_failures_name_the_ca() {
        let err = Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(std::sync::Arc::new(
            HandshakeFailure::CrlMissing("CN=Issuing".into()),
        ))));
        let r = tls(err, false, false);
        assert_eq!(r.reason.as_deref(), Some("crl_missing"));
        assert!(r.cause.as_deref().is_some_and(|c| c.contains("no CRL of CA 'CN=Issuing'")));
    }

    #[test]
    fn transport_and_protocol_failures() {
        let r = tls(Error::PeerIncompatible(rustls::PeerIncompatible::NoCipherSuitesInCommon), false, false);
        assert!(r.verdict.starts_with("FAIL: TLS version or cipher mismatch"));
        let r = tls(Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType), false, false);
        assert_eq!(r.cause.as_deref(), Some("the server did not answer in TLS"));
        let eof = std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
        let r = diagnose_io(Report::default(), &eof, None, &seen(true, false));
        assert!(r.verdict.contains("it requires a client certificate and we sent none"));
        let r = diagnose_io(Report::default(), &eof, None, &seen(false, false));
        assert!(r.verdict.contains("closed the connection during the handshake without saying why"));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let r = diagnose_io(Report::default(), &refused, None, &seen(false, false));
        assert!(r.verdict.starts_with("FAIL: connection failed:"));
    }

    #[test]
    fn a_protocol_version_alert_to_a_tls12_only_hello_means_the_server_requires_tls13() {
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            Error::AlertReceived(AlertDescription::ProtocolVersion),
        );
        let only12 = Seen { offered_tls12_only: true, ..seen(false, false) };
        let r = diagnose_io(Report::default(), &io, None, &only12);
        assert!(r.verdict.starts_with("FAIL: the server requires TLS 1.3"), "{}", r.verdict);
        // Offering both, the same alert is a plain mismatch.
        let r = diagnose_io(Report::default(), &io, None, &seen(false, false));
        assert!(r.verdict.starts_with("FAIL: TLS version or cipher mismatch"), "{}", r.verdict);
    }

    #[test]
    fn a_403_to_an_anonymous_client_asks_for_a_certificate_not_an_allow_list_entry() {
        let r = diagnose_http(Report::default(), Some(403), "", None, &seen(true, false));
        assert!(r.verdict.contains("we presented no client certificate"), "{}", r.verdict);
        assert!(r.fix.as_deref().is_some_and(|f| f.starts_with("present a client certificate")), "{:?}", r.fix);
        let bob = Seen { presented: Some("cn:bob".into()), ..seen(true, true) };
        let r = diagnose_http(Report::default(), Some(403), "", None, &bob);
        assert!(r.verdict.contains("our identity (cn:bob) is not on the route's allow list"), "{}", r.verdict);
        assert!(r.fix.as_deref().is_some_and(|f| f.starts_with("add our identity")));
    }

    #[test]
    fn a_close_after_the_handshake_names_the_identity_a_tcp_proxy_refused() {
        let bob = Seen { presented: Some("cn:bob".into()), ..seen(true, true) };
        let r = closed_after_handshake(Report::default(), &bob);
        assert!(!r.ok);
        let cause = r.cause.unwrap();
        assert!(cause.starts_with("the TLS handshake succeeded, then the server closed the connection"), "{cause}");
        assert!(cause.contains("TCP-mode proxy") && cause.contains("(cn:bob)"), "{cause}");
        let r = closed_after_handshake(Report::default(), &seen(true, false));
        assert!(r.cause.unwrap().contains("we presented no certificate"));
        assert_eq!(r.fix.as_deref(), Some(SEND_A_CERT));
    }

    #[test]
    fn http_answers() {
        let ok = Report { protocol: Some("TLS 1.3".into()), ..Report::default() };
        let r = diagnose_http(ok, Some(200), "", None, &seen(true, true));
        assert!(r.ok);
        assert_eq!(r.verdict, "OK: mTLS works (TLS 1.3, client certificate accepted), HTTP 200");
        let r = diagnose_http(Report::default(), Some(403), "", None, &seen(true, true));
        assert!(!r.ok && r.verdict.contains("denied by route policy"));
        let r = diagnose_http(
            Report::default(),
            Some(400),
            "No required SSL certificate was sent",
            None,
            &seen(true, false),
        );
        assert!(r.verdict.contains("(nginx) requires one"));
        let r = diagnose_http(Report::default(), Some(400), "The SSL certificate error", None, &seen(true, true));
        assert!(r.verdict.contains("most likely revoked"));
        let r = diagnose_http(Report::default(), Some(502), "", None, &seen(true, true));
        assert_eq!(r.verdict, "FAIL: the server answered HTTP 502");
        let r = diagnose_http(Report::default(), None, "", None, &seen(true, true));
        assert_eq!(r.verdict, "FAIL: the server's answer is not HTTP");
    }
}
