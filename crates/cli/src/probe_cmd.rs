//! `ambos probe HOST:PORT`: walk a real mTLS handshake step by step and say
//! in plain words why it fails. Checks what can be checked locally first
//! (our certificate's dates, key, EKU, issuer against the CAs the server
//! names), then connects with rustls, records what each side sent, sends one
//! HTTP request (so a rejection after a TLS 1.3 handshake is seen), and ends
//! with one verdict line. The server is verified by `ambos_tls::ServerVerifier`
//! (the proxy's path verifier), against `--crl`/`--crl-url` when given.
use crate::files::input_error;
use ambos_tls::HandshakeFailure;
use anyhow::Context;
use clap::Args;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::ResolvesClientCert;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{AlertDescription, DigitallySignedStruct, Error, SignatureScheme};
use serde::Serialize;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Args, Clone)]
pub struct ProbeArgs {
    /// HOST:PORT of the mTLS server.
    pub target: String,
    /// Our client certificate chain (PEM, leaf first).
    #[arg(long, requires = "key")]
    pub cert: Option<PathBuf>,
    #[arg(long, requires = "cert")]
    pub key: Option<PathBuf>,
    /// CA the server's certificate must chain to (without it the server is not verified).
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// Name to check the server's certificate against (default: HOST).
    #[arg(long)]
    pub server_name: Option<String>,
    /// Offer only this TLS version (1.2 or 1.3), to test a server's versions.
    #[arg(long)]
    pub tls_version: Option<String>,
    /// Stop after the handshake instead of sending `GET /`.
    #[arg(long)]
    pub no_http: bool,
    /// Path of the HTTP request.
    #[arg(long, default_value = "/")]
    pub path: String,
    #[arg(long)]
    pub json: bool,
}

/// `ambos probe`'s flags: [`ProbeArgs`] and the CRLs to check the server against.
#[derive(Args, Clone)]
pub struct ProbeCmd {
    #[command(flatten)]
    pub probe: ProbeArgs,
    #[command(flatten)]
    pub revocation: CrlArgs,
}

/// `--crl` / `--crl-url`: check the server's chain against CRLs (tunnel,
/// probe, enroll, renew, agent). With either, revocation fails closed: every
/// CA level below the root needs a usable CRL from its issuer.
#[derive(Args, Clone, Default)]
pub struct CrlArgs {
    /// CRL file(s) (PEM or DER) to check the server's certificate chain against
    /// (repeatable). Every CA level needs its CRL: use `ambos crl --all`.
    #[arg(long = "crl", value_name = "FILE")]
    pub crl: Vec<PathBuf>,
    /// Fetch the CRLs over HTTPS, e.g. https://ca:9443/v1/crl from `ambos serve`
    /// (that server is verified against the same CA file).
    #[arg(long, value_name = "URL")]
    pub crl_url: Option<String>,
}

impl CrlArgs {
    /// Whether the server's chain is checked against CRLs.
    pub fn enabled(&self) -> bool {
        !self.crl.is_empty() || self.crl_url.is_some()
    }

    /// Reads the files and pulls the URL (its server verified against `ca`)
    /// once; an unreadable CRL is an input error naming the file or URL.
    pub async fn load(&self, ca: &[PathBuf]) -> anyhow::Result<ambos_proxy::tunnel::SourcedCrls> {
        let mut crls =
            ambos_proxy::tunnel::load_crl_files(&self.crl).map_err(|e| input_error(format!("--crl: {e}")))?;
        if let Some(url) = &self.crl_url {
            // The message names the URL (`--crl-url URL: why`).
            let pulled =
                ambos_proxy::tunnel::fetch_crl_url(url, ca, None).await.map_err(|e| input_error(e.to_string()))?;
            crls.extend(pulled.map(|(c, _)| c).unwrap_or_default());
        }
        Ok(crls)
    }

    /// [`CrlArgs::load`] outside an async runtime.
    pub fn load_blocking(&self, ca: &[PathBuf]) -> anyhow::Result<ambos_proxy::tunnel::SourcedCrls> {
        if self.crl_url.is_none() {
            return ambos_proxy::tunnel::load_crl_files(&self.crl).map_err(|e| input_error(format!("--crl: {e}")));
        }
        crate::process::small_runtime()?.block_on(self.load(ca))
    }
}

/// The trust a client verifies servers with: the CA file(s) `ca` (named by
/// `flag` in errors) and, when given, the CRLs (fail closed).
pub fn server_trust(
    ca: &[PathBuf],
    flag: &str,
    crls: ambos_proxy::tunnel::SourcedCrls,
    revocation: &CrlArgs,
) -> anyhow::Result<Arc<ambos_tls::Trust>> {
    ambos_proxy::tunnel::server_trust(ca, crls, revocation.enabled()).map_err(|e| input_error(format!("{flag}: {e}")))
}

/// One line of the walk-through.
#[derive(Serialize, Clone)]
pub struct Step {
    pub step: String,
    pub ok: bool,
    pub detail: String,
}

#[derive(Serialize, Default, Clone)]
pub struct ServerCert {
    pub subject: String,
    pub issuer: String,
    pub sans: Vec<String>,
    pub not_before: String,
    pub not_after: String,
}

/// Everything probe saw, for humans and for `--json`.
#[derive(Serialize, Default, Clone)]
pub struct Report {
    pub target: String,
    pub steps: Vec<Step>,
    pub protocol: Option<String>,
    pub cipher_suite: Option<String>,
    pub key_exchange: Option<String>,
    pub post_quantum: bool,
    pub server_chain: Vec<ServerCert>,
    pub client_cert_requested: bool,
    pub acceptable_cas: Vec<String>,
    pub sent_client_cert: bool,
    pub http_status: Option<u16>,
    pub ok: bool,
    pub verdict: String,
    /// Stable label of a certificate failure on our side (`revoked`,
    /// `crl_missing`, `incomplete_chain`, ...: `HandshakeFailure::label`).
    pub reason: Option<String>,
    pub cause: Option<String>,
    pub fix: Option<String>,
}

impl Report {
    fn step(&mut self, step: &str, ok: bool, detail: impl Into<String>) {
        self.steps.push(Step { step: step.into(), ok, detail: detail.into() });
    }

    fn fail(mut self, cause: &str, fix: &str) -> Report {
        self.ok = false;
        self.verdict = format!("FAIL: {cause}");
        self.cause = Some(cause.into());
        self.fix = Some(fix.into());
        self
    }
}

#[derive(Default)]
struct Seen {
    chain: Vec<Vec<u8>>,
    requested: bool,
    ca_names: Vec<Vec<u8>>,
    sent: bool,
}

#[derive(Debug)]
struct Recorder {
    seen: Mutex<SeenCell>,
}

#[derive(Debug, Default)]
struct SeenCell {
    chain: Vec<Vec<u8>>,
    requested: bool,
    ca_names: Vec<Vec<u8>>,
    sent: bool,
}

/// Records the server's chain, then verifies it with `ambos_tls::ServerVerifier` if we have a CA.
#[derive(Debug)]
struct RecordingVerifier {
    inner: Option<Arc<ambos_tls::ServerVerifier>>,
    rec: Arc<Recorder>,
    algs: rustls::crypto::WebPkiSupportedAlgorithms,
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

    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// Records the CertificateRequest (and its CA names) and answers with our certificate, if any.
#[derive(Debug)]
struct RecordingResolver {
    key: Option<Arc<rustls::sign::CertifiedKey>>,
    rec: Arc<Recorder>,
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

fn dn_to_string(der: &[u8]) -> String {
    // CA names arrive as the DN's contents; parse with or without the SEQUENCE wrapper.
    let wrapped;
    let der = if der.first() == Some(&0x30) {
        der
    } else {
        wrapped = [&[0x30, der.len() as u8][..], der].concat();
        &wrapped
    };
    use x509_parser::prelude::FromDer;
    x509_parser::x509::X509Name::from_der(der)
        .map(|(_, n)| n.to_string())
        .unwrap_or_else(|_| "(unparsable name)".into())
}

fn rfc3339(ts: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ts)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

fn describe_cert(der: &[u8]) -> ServerCert {
    match ambos_pki::inspect(der, None, time::OffsetDateTime::now_utc()) {
        Ok(ambos_pki::Inspection::Certificates { mut certificates }) if !certificates.is_empty() => {
            let c = certificates.remove(0);
            ServerCert {
                subject: c.subject,
                issuer: c.issuer,
                sans: c.sans,
                not_before: c.not_before,
                not_after: c.not_after,
            }
        }
        _ => ServerCert { subject: "(unparsable)".into(), ..Default::default() },
    }
}

/// What we know about our own certificate before connecting.
struct Local {
    key: Arc<rustls::sign::CertifiedKey>,
    leaf_expired: bool,
    not_yet_valid: bool,
    client_auth_eku: bool,
    issuers: Vec<String>,
    subject: String,
}

fn load_local(cert: &std::path::Path, key: &std::path::Path, r: &mut Report) -> anyhow::Result<Option<Local>> {
    let chain = ambos_tls::load_certs(cert).map_err(|e| input_error(format!("--cert: {e}")))?;
    let key_der = ambos_tls::load_key(key).map_err(|e| input_error(format!("--key: {e}")))?;
    let signing = ambos_tls::provider().key_provider.load_private_key(key_der).context("--key: unsupported key")?;
    let ck = rustls::sign::CertifiedKey::new(chain.clone(), signing);
    if ck.keys_match().is_err() {
        r.step(
            "local: key matches certificate",
            false,
            format!("{} does not belong to {}", key.display(), cert.display()),
        );
        return Ok(None);
    }
    let (_, leaf) = x509_parser::parse_x509_certificate(&chain[0]).map_err(|e| input_error(format!("--cert: {e}")))?;
    // Sub-second precision: X.509 times are whole seconds, and a certificate
    // is valid up to and including its notAfter second.
    let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as f64 / 1e9;
    let v = leaf.validity();
    let client_auth_eku = match leaf.extended_key_usage() {
        Ok(Some(e)) => e.value.client_auth || e.value.any,
        Ok(None) => true,
        Err(_) => false,
    };
    let mut issuers: Vec<String> = Vec::new();
    for der in &chain {
        if let Ok((_, c)) = x509_parser::parse_x509_certificate(der) {
            issuers.push(c.issuer().to_string());
        }
    }
    let local = Local {
        key: Arc::new(ck),
        leaf_expired: now > v.not_after.timestamp() as f64,
        not_yet_valid: now < v.not_before.timestamp() as f64,
        client_auth_eku,
        issuers,
        subject: leaf.subject().to_string(),
    };
    r.step(
        "local: our certificate",
        !(local.leaf_expired || local.not_yet_valid) && local.client_auth_eku,
        format!(
            "{}, valid {} .. {}{}",
            local.subject,
            rfc3339(v.not_before.timestamp()),
            rfc3339(v.not_after.timestamp()),
            if local.client_auth_eku { "" } else { ", no clientAuth EKU" }
        ),
    );
    Ok(Some(local))
}

/// Runs the probe; the report says what happened (never an Err for a failed handshake).
pub fn probe(a: &ProbeArgs) -> anyhow::Result<Report> {
    probe_with(a, &CrlArgs::default())
}

/// [`probe`], checking the server's chain against the CRLs of `revocation`.
pub fn probe_with(a: &ProbeArgs, revocation: &CrlArgs) -> anyhow::Result<Report> {
    ambos_tls::install_default_provider();
    let mut r = Report { target: a.target.clone(), ..Report::default() };
    let host = a
        .server_name
        .clone()
        .unwrap_or_else(|| a.target.rsplit_once(':').map(|(h, _)| h).unwrap_or(&a.target).to_string());
    let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
    let server_name =
        ServerName::try_from(host.clone()).map_err(|_| input_error(format!("server name '{host}' is not valid")))?;

    // 1. Local checks: the trusted CAs and CRLs (bad input is an error), our certificate.
    let trust = match &a.ca {
        Some(ca) => {
            let cas = std::slice::from_ref(ca);
            let crls = revocation.load_blocking(cas)?;
            let trust = server_trust(cas, "--ca", crls, revocation)?;
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
            return Err(input_error(
                "--crl and --crl-url need --ca (the CA the server's chain and the CRLs are checked against)",
            ))
        }
        None => None,
    };
    let local = match (&a.cert, &a.key) {
        (Some(c), Some(k)) => match load_local(c, k, &mut r)? {
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

    // 2. TCP.
    let started = Instant::now();
    let mut addrs =
        std::net::ToSocketAddrs::to_socket_addrs(&a.target).map_err(|e| input_error(format!("{}: {e}", a.target)))?;
    let addr = addrs.next().ok_or_else(|| input_error(format!("{}: no address", a.target)))?;
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
    let rec = Arc::new(Recorder { seen: Mutex::new(SeenCell::default()) });
    let provider = ambos_tls::provider();
    let inner = trust.map(|t| Arc::new(ambos_tls::ServerVerifier::new(t)));
    let verifier =
        Arc::new(RecordingVerifier { inner, rec: rec.clone(), algs: provider.signature_verification_algorithms });
    let resolver = Arc::new(RecordingResolver { key: local.as_ref().map(|l| l.key.clone()), rec: rec.clone() });
    let versions: &[&rustls::SupportedProtocolVersion] = match a.tls_version.as_deref() {
        None => rustls::DEFAULT_VERSIONS,
        Some("1.2") => &[&rustls::version::TLS12],
        Some("1.3") => &[&rustls::version::TLS13],
        Some(v) => return Err(input_error(format!("--tls-version '{v}': expected 1.2 or 1.3"))),
    };
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_cert_resolver(resolver);
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
    let seen = std::mem::take(&mut *rec.seen.lock().expect("recorder"));
    let seen = Seen { chain: seen.chain, requested: seen.requested, ca_names: seen.ca_names, sent: seen.sent };
    r.server_chain = seen.chain.iter().map(|d| describe_cert(d)).collect();
    r.client_cert_requested = seen.requested;
    r.acceptable_cas = seen.ca_names.iter().map(|n| dn_to_string(n)).collect();
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
        return Ok(diagnose_io(r, &e, local.as_ref(), &seen));
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
    if let Some(l) = &local {
        if seen.requested && !r.acceptable_cas.is_empty() && !l.issuers.iter().any(|i| r.acceptable_cas.contains(i)) {
            r.step("local: issuer", false, "our certificate chain names none of the server's accepted CAs");
        }
    }

    // 4. One request: TLS 1.3 servers reject a client certificate only now.
    if a.no_http {
        // Still read briefly: a post-handshake alert arrives here.
        let _ = conn.complete_io(&mut sock);
        let mut buf = [0u8; 1];
        sock.set_read_timeout(Some(Duration::from_millis(300)))?;
        let mut stream = rustls::Stream::new(&mut conn, &mut sock);
        if let Err(e) = stream.read(&mut buf) {
            if e.kind() != std::io::ErrorKind::WouldBlock && e.kind() != std::io::ErrorKind::TimedOut {
                return Ok(diagnose_io(r, &e, local.as_ref(), &seen));
            }
        }
        r.ok = true;
        r.verdict = "OK: mTLS handshake completed".into();
        return Ok(r);
    }
    let request =
        format!("GET {} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nUser-Agent: ambos-probe\r\n\r\n", a.path);
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
    if let Err(e) = io {
        if response.is_empty() {
            r.step("HTTP GET", false, e.to_string());
            return Ok(diagnose_io(r, &e, local.as_ref(), &seen));
        }
    }
    let text = String::from_utf8_lossy(&response).to_string();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse::<u16>().ok());
    r.http_status = status;
    let first = text.lines().next().unwrap_or("").to_string();
    r.step("HTTP GET", status.is_some_and(|s| s < 400), first.clone());
    Ok(diagnose_http(r, status, &text, local.as_ref(), &seen))
}

fn diagnose_io(r: Report, e: &std::io::Error, local: Option<&Local>, seen: &Seen) -> Report {
    match e.get_ref().and_then(|x| x.downcast_ref::<Error>()) {
        Some(err) => diagnose_tls(r, err, local, seen),
        None => match e.kind() {
            std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset => {
                let r2 = r;
                if seen.requested && !seen.sent {
                    r2.fail(
                        "the server closed the connection: it requires a client certificate and we sent none",
                        "pass --cert and --key with a client certificate from a CA the server trusts",
                    )
                } else {
                    r2.fail(
                        "the server closed the connection during the handshake without saying why",
                        "look at the server's log; check the TLS version and that this is a TLS port",
                    )
                }
            }
            _ => {
                r.fail(&format!("connection failed: {e}"), "check the address, firewall and that the server speaks TLS")
            }
        },
    }
}

fn not_listed(local: Option<&Local>, r: &Report) -> bool {
    local.is_some_and(|l| !r.acceptable_cas.is_empty() && !l.issuers.iter().any(|i| r.acceptable_cas.contains(i)))
}

fn diagnose_tls(r: Report, err: &Error, local: Option<&Local>, seen: &Seen) -> Report {
    use AlertDescription as A;
    match err {
        Error::InvalidCertificate(_) => diagnose_server_cert(r, err),
        Error::AlertReceived(alert) => match alert {
            A::CertificateRequired => r.fail(
                "no client certificate sent: the server requires one",
                "pass --cert and --key with a client certificate from a CA the server trusts",
            ),
            A::HandshakeFailure if seen.requested && !seen.sent => r.fail(
                "no client certificate sent: the server requires one",
                "pass --cert and --key with a client certificate from a CA the server trusts",
            ),
            A::UnknownCA | A::DecryptError => r.fail(
                "the server does not trust the CA that issued our client certificate",
                "use a client certificate from one of the CAs the server lists (see 'accepted CAs'), or add our CA to the server's client_ca",
            ),
            A::CertificateExpired => r.fail(
                "the server says our client certificate has expired (or is not valid yet)",
                "renew it (ambos renew) and check both clocks",
            ),
            A::CertificateRevoked => r.fail(
                "our client certificate is revoked (listed in the server's CRL)",
                "get a new certificate (ambos enroll / ambos issue client); a revoked one cannot be renewed",
            ),
            A::UnsupportedCertificate => r.fail(
                "the server rejects our certificate's purpose: it lacks the clientAuth extended key usage",
                "issue a client certificate: ambos issue client NAME",
            ),
            A::ProtocolVersion | A::HandshakeFailure | A::InsufficientSecurity => r.fail(
                "TLS version or cipher mismatch: no protocol version, cipher suite or group in common",
                "enable TLS 1.2 or 1.3 with AEAD suites on the server (ambos accepts nothing weaker)",
            ),
            A::BadCertificate if not_listed(local, &r) => r.fail(
                "our client certificate is not from a CA the server trusts",
                "use a client certificate from one of the CAs the server lists",
            ),
            other => r.fail(&format!("the server aborted the handshake with alert {other:?}"), "look at the server's log for the reason"),
        },
        Error::PeerIncompatible(_) => r.fail(
            "TLS version or cipher mismatch: no protocol version, cipher suite or group in common",
            "enable TLS 1.2 or 1.3 with AEAD suites on the server (ambos accepts nothing weaker)",
        ),
        Error::InvalidMessage(_) | Error::InappropriateMessage { .. } | Error::InappropriateHandshakeMessage { .. } => {
            r.fail("the server did not answer in TLS", "check the port: is this the TLS port (not plain HTTP)?")
        }
        other => r.fail(&format!("TLS failed: {other}"), "look at the server's log for the reason"),
    }
}

/// Our verifier refused the server's certificate: say why, in its words.
fn diagnose_server_cert(r: Report, err: &Error) -> Report {
    let f = HandshakeFailure::from_rustls(err);
    let label = f.label().to_string();
    let mut r = match &f {
        HandshakeFailure::UnknownCa => r.fail(
            "the server's certificate is not trusted by --ca (issued by another CA)",
            "pass the CA that issued the server's certificate with --ca (ambos export truststore)",
        ),
        HandshakeFailure::WrongName => r.fail(
            "server name mismatch: the server's certificate does not name the host we asked for",
            "connect with a name from its SANs (--server-name), or reissue it with --san for this name",
        ),
        HandshakeFailure::Expired => r.fail("the server's certificate has expired", "renew the server's certificate"),
        HandshakeFailure::NotYetValid => {
            r.fail("the server's certificate is not valid yet", "check the clocks of both machines")
        }
        HandshakeFailure::Revoked => r.fail(
            "the server's certificate is revoked (listed in the CRL given with --crl/--crl-url), or one of its CAs is",
            "the server needs a new certificate (ambos issue server NAME --force, or ambos enroll)",
        ),
        HandshakeFailure::CrlMissing(ca) => r.fail(
            &format!(
                "revocation of the server's chain cannot be checked: no CRL of CA '{ca}' among --crl/--crl-url (the missing CRL: every CA level needs its issuer's CRL)"
            ),
            "give the CRLs of every CA level: ambos crl --all --out crls.pem, or --crl-url https://CA:9443/v1/crl",
        ),
        HandshakeFailure::CrlUnusable(why) => r.fail(
            &format!("revocation of the server's chain cannot be checked: {why}"),
            "give a CRL signed by the CA in the server's chain (ambos crl --all from the same CA)",
        ),
        HandshakeFailure::CrlStale(why) => r.fail(
            &format!("revocation of the server's chain cannot be checked (stale CRL): {why}"),
            "publish a new CRL (ambos crl --all) and pass it, or use --crl-url",
        ),
        HandshakeFailure::IncompleteChain(ca) => r.fail(
            &format!(
                "the server's chain is incomplete: it did not send its issuer '{ca}', which --ca does not hold either"
            ),
            "configure the server with its full chain (NAME.crt holds leaf + intermediate), or add the intermediate to the --ca file",
        ),
        HandshakeFailure::ChainSignature(ca) => r.fail(
            &format!(
                "a certificate in the server's chain does not verify with the key of the CA named '{ca}' (a decoy CA with the same name, or a CA re-keyed under the same name)"
            ),
            "check that --ca is the CA that issued the server's certificate (same name is not enough)",
        ),
        HandshakeFailure::ProofOfPossession => r.fail(
            "the server's handshake signature does not verify with its certificate's key (failed proof of possession: the server's key does not match its certificate)",
            "configure the server with the key of its certificate",
        ),
        HandshakeFailure::WrongExtendedKeyUsage => r.fail(
            "the server's certificate is not a server certificate (no serverAuth extended key usage)",
            "issue a server certificate: ambos issue server NAME",
        ),
        other => r.fail(&format!("the server's certificate is invalid: {other}"), "reissue the server's certificate"),
    };
    r.reason = Some(label);
    r
}

/// A handshake error in words: ours for a refused certificate.
fn handshake_detail(e: &std::io::Error) -> String {
    match e.get_ref().and_then(|x| x.downcast_ref::<Error>()) {
        Some(err @ Error::InvalidCertificate(_)) => {
            let f = HandshakeFailure::from_rustls(err);
            format!("we refused the server's certificate ({}): {f}", f.label())
        }
        _ => e.to_string(),
    }
}

fn diagnose_http(mut r: Report, status: Option<u16>, body: &str, local: Option<&Local>, seen: &Seen) -> Report {
    match status {
        Some(s) if s < 400 => {
            r.ok = true;
            r.verdict = format!(
                "OK: mTLS works ({}{}), HTTP {s}",
                r.protocol.clone().unwrap_or_default(),
                if seen.sent { ", client certificate accepted" } else { "" }
            );
            r
        }
        Some(403) => r.fail(
            "authorized by TLS but denied by route policy (HTTP 403): our identity is not on the route's allow list",
            "add our identity (spiffe://..., cn:, ou:...) to the route's allow list, or use an allowed certificate",
        ),
        Some(400) if body.contains("No required SSL certificate was sent") => r.fail(
            "no client certificate sent: the server (nginx) requires one and answered 400 after the handshake",
            "pass --cert and --key with a client certificate from a CA the server trusts",
        ),
        Some(400) if body.contains("The SSL certificate error") => {
            // nginx does not say which check failed: reason it out locally.
            if not_listed(local, &r) {
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

/// Colours only on a terminal.
struct Paint(bool);

impl Paint {
    fn mark(&self, ok: bool) -> String {
        match (self.0, ok) {
            (true, true) => "\x1b[32m✓\x1b[0m".into(),
            (true, false) => "\x1b[31m✗\x1b[0m".into(),
            (false, true) => "ok ".into(),
            (false, false) => "-- ".into(),
        }
    }
}

/// Wraps `text` to `width` columns with `indent` spaces on continuation lines.
fn wrap(text: &str, width: usize, indent: usize) -> String {
    let mut out = String::new();
    let mut col = 0;
    for word in text.split_whitespace() {
        if col > 0 && col + 1 + word.chars().count() > width {
            out.push('\n');
            out.push_str(&" ".repeat(indent));
            col = indent;
        } else if col > 0 {
            out.push(' ');
            col += 1;
        }
        out.push_str(word);
        col += word.chars().count();
    }
    out
}

pub fn print(r: &Report) {
    let paint = Paint(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    println!("probe {}", r.target);
    for (i, s) in r.steps.iter().enumerate() {
        let head = format!("{:>2}. {} {}: ", i + 1, paint.mark(s.ok), s.step);
        println!("{}", wrap(&format!("{head}{}", s.detail), 78, 7));
    }
    println!("{}", wrap(&r.verdict, 78, 2));
    if let Some(fix) = &r.fix {
        println!("{}", wrap(&format!("fix: {fix}"), 78, 5));
    }
}

pub fn run(cmd: ProbeCmd) -> anyhow::Result<()> {
    let a = cmd.probe;
    let report = probe_with(&a, &cmd.revocation)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print(&report);
    }
    if report.ok {
        Ok(())
    } else {
        Err(crate::ProbeFailed(report.cause.unwrap_or_default()).into())
    }
}
