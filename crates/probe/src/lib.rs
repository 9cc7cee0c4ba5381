//! `ambos probe`: walk a real mTLS handshake step by step and say in plain
//! words why it fails. Checks what can be checked locally first (our
//! certificate's dates, key, EKU, issuer against the CAs the server names),
//! then connects with rustls, records what each side sent, sends one HTTP
//! request (so a rejection after a TLS 1.3 handshake is seen), and ends with
//! one verdict. The server is verified by `ambos_tls::ServerVerifier` (the
//! proxy's path verifier), against CRLs when given; why a handshake failed is
//! `ambos_tls::HandshakeFailure`'s classification, as in the proxy's audit log.
#![forbid(unsafe_code)]

mod diagnosis;
mod local;
mod recorder;
mod report;

pub use report::{Report, ServerCert, Step};

use diagnosis::{diagnose_http, diagnose_io, handshake_detail};
use recorder::{Recorder, RecordingResolver, RecordingVerifier};
use rustls::pki_types::ServerName;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;

/// Errors in what probe was given (messages name `ambos probe`'s flags) or
/// in setting it up; a failed handshake is a [`Report`], never an error.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// A flag value or a file the user named.
    #[error("{0}")]
    Input(String),
    #[error("--key: unsupported key")]
    UnsupportedKey(#[source] rustls::Error),
    #[error(transparent)]
    Tls(#[from] rustls::Error),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl ProbeError {
    /// Whether the options were wrong (exit code 2), not the probe (1).
    pub fn is_input(&self) -> bool {
        matches!(self, ProbeError::Input(_))
    }
}

/// The CRLs a client checks a server's chain against: files and an
/// `ambos serve` URL (whose server is verified against the same CA). With
/// either, revocation fails closed: every CA level below the root needs a
/// usable CRL from its issuer. With the `cli` feature: `--crl` / `--crl-url`
/// of tunnel, probe, enroll, renew and agent.
#[derive(Clone, Debug, Default)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct CrlSources {
    /// CRL file(s) (PEM or DER) to check the server's certificate chain against
    /// (repeatable). Every CA level needs its CRL: use `ambos crl --all`.
    #[cfg_attr(feature = "cli", arg(long = "crl", value_name = "FILE"))]
    pub files: Vec<PathBuf>,
    /// Fetch the CRLs over HTTPS, e.g. https://ca:9443/v1/crl from `ambos serve`
    /// (that server is verified against the same CA file).
    #[cfg_attr(feature = "cli", arg(long = "crl-url", value_name = "URL"))]
    pub url: Option<String>,
}

impl CrlSources {
    /// Whether the server's chain is checked against CRLs.
    pub fn enabled(&self) -> bool {
        !self.files.is_empty() || self.url.is_some()
    }

    /// Reads the files and pulls the URL once; an unreadable CRL is an input
    /// error naming the file (`--crl: ...`) or the URL.
    pub async fn load(&self, ca: &[PathBuf]) -> Result<ambos_proxy::tunnel::SourcedCrls, ProbeError> {
        let mut crls =
            ambos_proxy::tunnel::load_crl_files(&self.files).map_err(|e| ProbeError::Input(format!("--crl: {e}")))?;
        if let Some(url) = &self.url {
            // The message names the URL (`--crl-url URL: why`).
            let pulled = ambos_proxy::tunnel::fetch_crl_url(url, ca, None)
                .await
                .map_err(|e| ProbeError::Input(e.to_string()))?;
            crls.extend(pulled.map(|(c, _)| c).unwrap_or_default());
        }
        Ok(crls)
    }

    /// [`CrlSources::load`] outside an async runtime.
    fn load_blocking(&self, ca: &[PathBuf]) -> Result<ambos_proxy::tunnel::SourcedCrls, ProbeError> {
        if self.url.is_none() {
            return ambos_proxy::tunnel::load_crl_files(&self.files)
                .map_err(|e| ProbeError::Input(format!("--crl: {e}")));
        }
        tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(self.load(ca))
    }

    /// The trust a client verifies servers with: the CA file(s) `ca` (named
    /// by `flag` in errors) and these CRLs, `crls` as loaded.
    pub fn server_trust(
        &self,
        ca: &[PathBuf],
        flag: &str,
        crls: ambos_proxy::tunnel::SourcedCrls,
    ) -> Result<Arc<ambos_tls::Trust>, ProbeError> {
        ambos_proxy::tunnel::server_trust(ca, crls, self.enabled())
            .map_err(|e| ProbeError::Input(format!("{flag}: {e}")))
    }
}

/// What to probe and with what.
#[derive(Clone, Debug, Default)]
pub struct ProbeOptions {
    /// HOST:PORT of the mTLS server.
    pub target: String,
    /// Our client certificate chain and key (PEM), if any.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// CA the server's certificate must chain to (without it the server is not verified).
    pub ca: Option<PathBuf>,
    /// Name to check the server's certificate against (default: HOST).
    pub server_name: Option<String>,
    /// Offer only this TLS version, "1.2" or "1.3".
    pub tls_version: Option<String>,
    /// The path of the one HTTP request; `None` stops after the handshake.
    pub http_path: Option<String>,
    /// CRLs to check the server's chain against (needs `ca`).
    pub crls: CrlSources,
    /// An access token sent as `Authorization: Bearer` with the request.
    pub token: Option<String>,
}

/// Runs the probe; the report says what happened (never an Err for a failed handshake).
pub fn probe(a: &ProbeOptions) -> Result<Report, ProbeError> {
    ambos_tls::install_default_provider();
    let revocation = &a.crls;
    let mut r = Report { target: a.target.clone(), ..Report::default() };
    let host = a
        .server_name
        .clone()
        .unwrap_or_else(|| a.target.rsplit_once(':').map(|(h, _)| h).unwrap_or(&a.target).to_string());
    let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
    let server_name = ServerName::try_from(host.clone())
        .map_err(|_| ProbeError::Input(format!("server name '{host}' is not valid")))?;

    // 1. Local checks: the trusted CAs and CRLs (bad input is an error), our certificate.
    let trust = match &a.ca {
        Some(ca) => {
            let cas = std::slice::from_ref(ca);
            let crls = revocation.load_blocking(cas)?;
            let trust = revocation.server_trust(cas, "--ca", crls)?;
            if revocation.enabled() {
                let summaries = trust.crls().summaries();
                let usable = summaries.iter().all(|c| c.problem.is_none());
                let list: Vec<String> = summaries
                    .iter()
                    .map(|c| match &c.problem {
                        None => format!("'{}' ({} entries, from {})", c.issuer, c.entries, c.source),
                        Some(p) => format!("'{}' from {} UNUSABLE: {p}", c.issuer, c.source),
                    })
                    .collect();
                r.step(
                    "local: CRLs",
                    usable,
                    format!(
                        "{} CRL(s): {}; every CA level of the server's chain needs one",
                        list.len(),
                        list.join(", ")
                    ),
                );
            }
            Some(trust)
        }
        None if revocation.enabled() => {
            return Err(ProbeError::Input(
                "--crl and --crl-url need --ca (the CA the server's chain and the CRLs are checked against)".into(),
            ))
        }
        None => None,
    };
    let local = match (&a.cert, &a.key) {
        (Some(c), Some(k)) => match local::load_local(c, k, &mut r)? {
            Some(l) => Some(l),
            None => {
                return Ok(r.fail(
                    "our private key does not match our certificate",
                    "pass the key that was generated with this certificate (--key)",
                ))
            }
        },
        _ => None,
    };
    if let Some(l) = &local {
        if l.leaf_expired {
            return Ok(r.fail(
                "our client certificate has expired",
                "renew it: ambos renew ... or ambos issue client NAME --force",
            ));
        }
        if l.not_yet_valid {
            return Ok(r.fail(
                "our client certificate is not valid yet",
                "check this machine's clock, or wait until its notBefore",
            ));
        }
        if !l.client_auth_eku {
            return Ok(r.fail(
                "our certificate is not a client certificate (no clientAuth extended key usage)",
                "issue a client certificate: ambos issue client NAME",
            ));
        }
    }
    let issuers = local.as_ref().map(|l| l.issuers.as_slice());

    // 2. TCP.
    let started = Instant::now();
    let mut addrs = std::net::ToSocketAddrs::to_socket_addrs(&a.target)
        .map_err(|e| ProbeError::Input(format!("{}: {e}", a.target)))?;
    let addr = addrs.next().ok_or_else(|| ProbeError::Input(format!("{}: no address", a.target)))?;
    let mut sock = match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
        Ok(s) => s,
        Err(e) => {
            r.step("TCP connect", false, format!("{addr}: {e}"));
            return Ok(
                r.fail(&format!("cannot connect to {addr}: {e}"), "check the address and that the server is running")
            );
        }
    };
    sock.set_read_timeout(Some(Duration::from_secs(5)))?;
    sock.set_write_timeout(Some(Duration::from_secs(5)))?;
    r.step("TCP connect", true, format!("{addr} in {:.1} ms", started.elapsed().as_secs_f64() * 1000.0));

    // 3. TLS handshake.
    let rec = Arc::new(Recorder::default());
    let inner = trust.map(|t| Arc::new(ambos_tls::ServerVerifier::new(t)));
    let verifier = Arc::new(RecordingVerifier { inner, rec: rec.clone() });
    let resolver = Arc::new(RecordingResolver { key: local.as_ref().map(|l| l.key.clone()), rec: rec.clone() });
    let versions: &[&rustls::SupportedProtocolVersion] = match a.tls_version.as_deref() {
        None => rustls::DEFAULT_VERSIONS,
        Some("1.2") => &[&rustls::version::TLS12],
        Some("1.3") => &[&rustls::version::TLS13],
        Some(v) => return Err(ProbeError::Input(format!("--tls-version '{v}': expected 1.2 or 1.3"))),
    };
    let mut config = ambos_tls::client_config_with(
        ambos_tls::provider(),
        versions,
        ambos_tls::ServerAuth::Custom(verifier),
        ambos_tls::ClientCert::Resolver(resolver),
    )
    .map_err(|e| match e {
        ambos_tls::TlsError::Config(e) => ProbeError::Tls(e),
        e => ProbeError::Input(e.to_string()),
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.resumption = rustls::client::Resumption::disabled();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), server_name)?;
    let mut handshake_error = None;
    while conn.is_handshaking() {
        if let Err(e) = conn.complete_io(&mut sock) {
            handshake_error = Some(e);
            break;
        }
    }
    let mut seen = rec.take();
    seen.offered_tls12_only = a.tls_version.as_deref() == Some("1.2");
    seen.presented =
        local.as_ref().and_then(|l| l.key.cert.first()).and_then(|c| ambos_tls::Identity::from_der(c).ok()).map(|id| {
            match (id.spiffe, id.cn) {
                (Some(s), _) => s,
                (None, Some(cn)) => format!("cn:{cn}"),
                (None, None) => id.subject,
            }
        });
    r.server_chain = seen.chain.iter().map(|d| local::describe_cert(d)).collect();
    r.client_cert_requested = seen.requested;
    r.acceptable_cas = seen.ca_names.iter().map(|n| local::dn_to_string(n)).collect();
    r.sent_client_cert = seen.sent;
    if let Some(v) = conn.protocol_version() {
        r.protocol = Some(format!("{v:?}").replace("TLSv1_", "TLS 1."));
    }
    if let Some(s) = conn.negotiated_cipher_suite() {
        r.cipher_suite = Some(format!("{:?}", s.suite()));
    }
    if let Some(g) = conn.negotiated_key_exchange_group() {
        let name = format!("{:?}", g.name());
        r.post_quantum = name.contains("MLKEM");
        r.key_exchange = Some(name);
    }
    if !r.server_chain.is_empty() {
        let leaf = &r.server_chain[0];
        r.step(
            "server certificate",
            true,
            format!(
                "{} (issuer {}), SANs {}, valid until {}",
                leaf.subject,
                leaf.issuer,
                leaf.sans.join(", "),
                leaf.not_after
            ),
        );
    }
    if seen.requested {
        let cas = if r.acceptable_cas.is_empty() { "any CA".to_string() } else { r.acceptable_cas.join("; ") };
        r.step("server asks for a client certificate", true, format!("accepted CAs: {cas}"));
        r.step(
            "we sent",
            seen.sent,
            if seen.sent {
                local.as_ref().map(|l| l.subject.clone()).unwrap_or_default()
            } else {
                "no certificate (none given: --cert/--key)".into()
            },
        );
    } else {
        r.step("server asks for a client certificate", true, "no (this server does not use mTLS)");
    }

    if let Some(e) = handshake_error {
        r.step("TLS handshake", false, handshake_detail(&e));
        return Ok(diagnose_io(r, &e, issuers, &seen));
    }
    let tls_line = format!(
        "{}, {}, key exchange {}{}",
        r.protocol.clone().unwrap_or_default(),
        r.cipher_suite.clone().unwrap_or_default(),
        r.key_exchange.clone().unwrap_or_default(),
        if r.post_quantum { " (post-quantum hybrid)" } else { "" }
    );
    r.step("TLS handshake", true, tls_line);
    match (&a.ca, revocation.enabled()) {
        (None, _) => r.step("server verified", false, "not checked: pass --ca to verify the server"),
        (Some(_), true) => r.step(
            "server verified",
            true,
            "chain to --ca, name, and revocation of every certificate of the path: not revoked in the CRLs",
        ),
        (Some(_), false) => r.step(
            "server verified",
            true,
            "chain to --ca and name; revocation not checked (pass --crl or --crl-url to check it)",
        ),
    }
    // Our certificate is not from a CA the server names: say so even if the server lets it pass.
    if seen.requested && diagnosis::not_listed(issuers, &r) {
        r.step("local: issuer", false, "our certificate chain names none of the server's accepted CAs");
    }

    // 4. One request: TLS 1.3 servers reject a client certificate only now.
    let Some(path) = &a.http_path else {
        // Still read briefly: a post-handshake alert arrives here.
        let _ = conn.complete_io(&mut sock);
        let mut buf = [0u8; 1];
        sock.set_read_timeout(Some(Duration::from_millis(300)))?;
        let mut stream = rustls::Stream::new(&mut conn, &mut sock);
        match stream.read(&mut buf) {
            Ok(0) => return Ok(diagnosis::closed_after_handshake(r, &seen)),
            Err(e) if closed(&e) => return Ok(diagnosis::closed_after_handshake(r, &seen)),
            Err(e) if e.kind() != std::io::ErrorKind::WouldBlock && e.kind() != std::io::ErrorKind::TimedOut => {
                return Ok(diagnose_io(r, &e, issuers, &seen));
            }
            _ => {}
        }
        return Ok(r.pass("OK: mTLS handshake completed".into()));
    };
    let auth = a.token.as_deref().map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{auth}Connection: close\r\nUser-Agent: ambos-probe\r\n\r\n");
    let mut stream = rustls::Stream::new(&mut conn, &mut sock);
    let mut response = Vec::new();
    let io = stream.write_all(request.as_bytes()).and_then(|_| {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => response.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !response.is_empty() => return Ok(()),
                Err(e) => return Err(e),
            }
            if response.len() > 64 * 1024 {
                return Ok(());
            }
        }
    });
    match io {
        Err(e) if response.is_empty() => {
            r.step("HTTP GET", false, e.to_string());
            if closed(&e) {
                return Ok(diagnosis::closed_after_handshake(r, &seen));
            }
            return Ok(diagnose_io(r, &e, issuers, &seen));
        }
        Ok(()) if response.is_empty() => {
            r.step("HTTP GET", false, "the server closed the connection without a byte");
            return Ok(diagnosis::closed_after_handshake(r, &seen));
        }
        _ => {}
    }
    let text = String::from_utf8_lossy(&response).to_string();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse::<u16>().ok());
    r.http_status = status;
    let first = text.lines().next().unwrap_or("").to_string();
    r.step("HTTP GET", status.is_some_and(|s| s < 400), first);
    if let (Some(s @ (401 | 403)), Some(challenge)) = (status, diagnosis::bearer_challenge(&text)) {
        let ours = local.as_ref().and_then(|l| l.key.cert.first()).and_then(|c| ambos_tls::Identity::from_der(c).ok());
        return Ok(diagnosis::token_refused(r, s, &challenge, a.token.as_deref(), ours.as_ref()));
    }
    Ok(diagnose_http(r, status, &text, issuers, &seen))
}

/// The peer ended the connection without an alert (a close_notify is `Ok(0)`).
fn closed(e: &std::io::Error) -> bool {
    matches!(e.kind(), std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset)
}
