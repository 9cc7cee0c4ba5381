//! `ambos bench`: a small mTLS load generator, to measure what a TLS
//! endpoint (the ambos proxy, nginx, ...) costs per handshake and per request.
//!
//! `handshake`: every operation is a new TCP connection, a full TLS handshake
//! with the client certificate (no session resumption), one
//! `GET PATH` with `Connection: close`, and the response read to EOF.
//! `http`: every worker keeps one TLS connection and sends keep-alive
//! HTTP/1.1 (or, with `--http2`, HTTP/2) requests over it, one at a time;
//! every operation is one request and response.
//! `enroll`: against `ambos serve`, every operation generates a P-256 key and
//! a CSR and spends one token from `--tokens` (keep-alive, no client certificate).
//!
//! Latencies go into an HDR histogram (3 significant digits), so a run of
//! millions of operations costs the generator kilobytes, not a sample each.
//! Failures are counted by kind (connect, tls, protocol, send, read, timeout,
//! `status NNN`), so a run that half-fails says how.
use crate::files::input_error;
use anyhow::Context;
use bytes::Bytes;
use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// One operation that takes longer than this counts as an error.
const OP_TIMEOUT: Duration = Duration::from_secs(30);
/// The histogram's range in µs: longer operations are recorded as this.
const MAX_LATENCY_US: u64 = 60_000_000;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// New connection + full handshake + one request per operation.
    Handshake,
    /// Keep-alive requests (HTTP/1.1, or HTTP/2 with --http2) over one connection per worker.
    Http,
    /// Enrollments against `ambos serve` (POST /v1/enroll), one token each.
    Enroll,
    /// Open --count mTLS connections (each with one keep-alive request),
    /// hold them idle for --duration, then close: the server's memory per connection.
    Hold,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Handshake => "handshake",
            Mode::Http => "http",
            Mode::Enroll => "enroll",
            Mode::Hold => "hold",
        }
    }
}

#[derive(Args)]
pub struct BenchArgs {
    /// What one operation is.
    #[arg(value_enum)]
    mode: Mode,
    /// HOST:PORT of the TLS endpoint.
    #[arg(long)]
    target: String,
    /// Client certificate chain (PEM, leaf first); not for enroll.
    #[arg(long, required_unless_present = "tokens")]
    cert: Option<PathBuf>,
    /// Client private key (PEM, unencrypted); not for enroll.
    #[arg(long, required_unless_present = "tokens")]
    key: Option<PathBuf>,
    /// enroll: file of tokens, one per line (`ambos token create NAME --count N`).
    #[arg(long)]
    tokens: Option<PathBuf>,
    /// CA certificate(s) the server certificate must chain to.
    #[arg(long, required_unless_present = "cheap_client")]
    ca: Option<PathBuf>,
    /// Name to verify the server certificate against (SNI and Host header).
    #[arg(long, default_value = "localhost")]
    server_name: String,
    /// Concurrent workers (connections).
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// How long to run, e.g. 10s, 1m.
    #[arg(long, default_value = "10s")]
    duration: String,
    /// Stop after this many operations in total (overrides --duration).
    #[arg(long)]
    count: Option<u64>,
    /// Request path.
    #[arg(long, default_value = "/")]
    path: String,
    /// http, hold: speak HTTP/2 (ALPN h2) instead of HTTP/1.1.
    #[arg(long)]
    http2: bool,
    /// Do not verify the server's certificate chain (the handshake signature
    /// still is): the client then costs less than the server, so the server
    /// is the bottleneck. Never for anything but benchmarks.
    #[arg(long)]
    cheap_client: bool,
    /// Key exchange groups to offer, in preference order (repeat the flag);
    /// default: ambos's own list, X25519MLKEM768 first. `--kx-group x25519`
    /// is what an OpenSSL 3.0 client such as Debian 12's curl offers.
    #[arg(long, value_enum)]
    kx_group: Vec<KxGroup>,
    /// One JSON object instead of the human summary.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum KxGroup {
    X25519,
    X25519mlkem768,
    P256,
    P384,
}

impl KxGroup {
    fn group(self) -> &'static dyn rustls::crypto::SupportedKxGroup {
        use rustls::crypto::aws_lc_rs::kx_group;
        match self {
            KxGroup::X25519 => kx_group::X25519,
            KxGroup::X25519mlkem768 => kx_group::X25519MLKEM768,
            KxGroup::P256 => kx_group::SECP256R1,
            KxGroup::P384 => kx_group::SECP384R1,
        }
    }
}

/// When the workers stop.
#[derive(Clone, Copy)]
enum Limit {
    Count(u64),
    Until(Instant),
}

/// What every worker shares.
struct Plan {
    mode: Mode,
    addr: SocketAddr,
    connector: TlsConnector,
    server_name: ServerName<'static>,
    host: String,
    path: String,
    /// http, hold: HTTP/2 instead of HTTP/1.1.
    http2: bool,
    /// The request target as HTTP/2 sends it (`https://host/path`).
    h2_uri: http::Uri,
    limit: Limit,
    started: AtomicU64,
    first_error: Mutex<Option<String>>,
    tokens: Vec<String>,
    /// hold: how long to keep the connections open once all are.
    hold_for: Duration,
    /// hold: connection attempts finished so far (all workers).
    opened: AtomicU64,
}

impl Plan {
    /// Claims the next operation; false once the run is over.
    fn next(&self) -> bool {
        match self.limit {
            Limit::Count(n) => self.started.fetch_add(1, Ordering::Relaxed) < n,
            Limit::Until(deadline) => Instant::now() < deadline,
        }
    }

    fn error(&self, why: String) {
        let mut first = self.first_error.lock().unwrap_or_else(|e| e.into_inner());
        if first.is_none() {
            *first = Some(why);
        }
    }

    async fn connect(&self) -> Result<tokio_rustls::client::TlsStream<TcpStream>, Failure> {
        let tcp =
            TcpStream::connect(self.addr).await.with_context(|| format!("connect {}", self.addr)).kind("connect")?;
        tcp.set_nodelay(true).context("TCP_NODELAY").kind("connect")?;
        self.connector.connect(self.server_name.clone(), tcp).await.context("TLS handshake").kind("tls")
    }
}

/// Why one operation failed: the kind is counted, the detail of the first shown.
struct Failure {
    kind: Cow<'static, str>,
    detail: anyhow::Error,
}

impl Failure {
    fn new(kind: impl Into<Cow<'static, str>>, detail: anyhow::Error) -> Failure {
        Failure { kind: kind.into(), detail }
    }
}

/// `.kind("tls")`: files an error under a kind.
trait Kind<T> {
    fn kind(self, kind: &'static str) -> Result<T, Failure>;
}

impl<T, E: Into<anyhow::Error>> Kind<T> for Result<T, E> {
    fn kind(self, kind: &'static str) -> Result<T, Failure> {
        self.map_err(|e| {
            let e = e.into();
            // In TLS 1.3 the server refuses a client certificate after the
            // client thinks the handshake is done: that alert is still a TLS failure.
            let kind = if is_tls_error(&e) { "tls" } else { kind };
            Failure::new(kind, e)
        })
    }
}

/// Whether a TLS error (an alert, a bad record) is somewhere in the chain.
/// tokio-rustls reports every rustls error as `InvalidData`, and h2 keeps
/// only that kind and the message, so the kind is what is checked.
fn is_tls_error(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause.is::<rustls::Error>()
            || cause.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::InvalidData)
    })
}

/// What one worker measured.
struct Tally {
    latency_us: Histogram<u64>,
    errors: BTreeMap<Cow<'static, str>, u64>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            latency_us: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds"),
            errors: BTreeMap::new(),
        }
    }

    fn record(&mut self, plan: &Plan, started: Instant, outcome: Result<(), Failure>) {
        match outcome {
            Ok(()) => {
                let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                self.latency_us.saturating_record(us.min(MAX_LATENCY_US));
            }
            Err(f) => {
                plan.error(format!("{}: {:#}", f.kind, f.detail));
                *self.errors.entry(f.kind).or_default() += 1;
            }
        }
    }

    fn merge(&mut self, other: Tally) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.latency_us.add(&other.latency_us);
        for (kind, n) in other.errors {
            *self.errors.entry(kind).or_default() += n;
        }
    }
}

/// `timeout(OP_TIMEOUT, op)` with the timeout filed as a kind of failure.
async fn timed(op: impl std::future::Future<Output = Result<(), Failure>>) -> Result<(), Failure> {
    match tokio::time::timeout(OP_TIMEOUT, op).await {
        Ok(r) => r,
        Err(_) => Err(Failure::new("timeout", anyhow::anyhow!("no response within {OP_TIMEOUT:?}"))),
    }
}

/// The `--json` output, fields in this order.
#[derive(serde::Serialize)]
struct Report<'a> {
    mode: &'static str,
    /// http/1.1 or h2 (handshake and enroll: http/1.1).
    protocol: &'static str,
    /// false with --cheap-client: the server's chain was not checked.
    server_verified: bool,
    ops: u64,
    errors: u64,
    errors_by_kind: &'a BTreeMap<Cow<'static, str>, u64>,
    seconds: f64,
    ops_per_sec: f64,
    p50_us: u64,
    p90_us: u64,
    p99_us: u64,
    max_us: u64,
}

pub fn run(a: BenchArgs) -> anyhow::Result<()> {
    ambos_tls::install_default_provider();
    let plan = Arc::new(plan(&a)?);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let began = Instant::now();
    let total = runtime.block_on(async {
        let workers: Vec<_> = (0..a.concurrency)
            .map(|_| {
                let plan = plan.clone();
                tokio::spawn(async move {
                    match plan.mode {
                        Mode::Handshake => handshake_worker(&plan).await,
                        Mode::Http => http_worker(&plan).await,
                        Mode::Enroll => enroll_worker(&plan).await,
                        Mode::Hold => hold_worker(&plan).await,
                    }
                })
            })
            .collect();
        let mut total = Tally::new();
        for w in workers {
            total.merge(w.await.context("benchmark worker panicked")?);
        }
        anyhow::Ok(total)
    })?;
    let seconds = began.elapsed().as_secs_f64();
    drop(runtime);

    let errors: u64 = total.errors.values().sum();
    let h = &total.latency_us;
    let ops = h.len();
    let ops_per_sec = if seconds > 0.0 { ops as f64 / seconds } else { 0.0 };
    let at = |q: f64| if ops == 0 { 0 } else { h.value_at_quantile(q) };
    let report = Report {
        mode: a.mode.name(),
        protocol: if plan.http2 { "h2" } else { "http/1.1" },
        server_verified: !a.cheap_client,
        ops,
        errors,
        errors_by_kind: &total.errors,
        seconds: (seconds * 1000.0).round() / 1000.0,
        ops_per_sec: ops_per_sec.round(),
        p50_us: at(0.50),
        p90_us: at(0.90),
        p99_us: at(0.99),
        max_us: if ops == 0 { 0 } else { h.max() },
    };
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_summary(&report, plan.addr, a.concurrency);
    }
    let first_error = plan.first_error.lock().unwrap_or_else(|e| e.into_inner()).take();
    if errors > 0 {
        let why = first_error.unwrap_or_default();
        if ops == 0 {
            anyhow::bail!("all {errors} operations failed; first error: {why}");
        }
        eprintln!("warning: {errors} operations failed; first error: {why}");
    }
    Ok(())
}

fn print_summary(r: &Report, addr: SocketAddr, workers: usize) {
    println!("{} ({}) against {addr}: {workers} workers, {:.2} s", r.mode, r.protocol, r.seconds);
    println!("  ops {}, {:.0} ops/s", r.ops, r.ops_per_sec);
    println!("  latency p50 {} µs, p90 {} µs, p99 {} µs, max {} µs", r.p50_us, r.p90_us, r.p99_us, r.max_us);
    if r.errors == 0 {
        println!("  errors 0");
    } else {
        let kinds: Vec<String> = r.errors_by_kind.iter().map(|(k, n)| format!("{k} {n}")).collect();
        println!("  errors {} ({})", r.errors, kinds.join(", "));
    }
    if !r.server_verified {
        println!("  note: --cheap-client: the server's certificate chain was NOT verified");
    }
}

/// Checks every flag and file, and builds the TLS client configuration.
fn plan(a: &BenchArgs) -> anyhow::Result<Plan> {
    if a.concurrency == 0 {
        return Err(input_error("--concurrency must be at least 1"));
    }
    if a.http2 && !matches!(a.mode, Mode::Http | Mode::Hold) {
        return Err(input_error(format!("--http2 is for http and hold, not {}", a.mode.name())));
    }
    if a.mode == Mode::Hold && a.count.is_none() {
        return Err(input_error("hold needs --count (connections to open)"));
    }
    let hold_for = if a.mode == Mode::Hold {
        ambos_pki::parse_duration(&a.duration).context("--duration")?
    } else {
        Duration::ZERO
    };
    let limit = match a.count {
        Some(0) => return Err(input_error("--count must be at least 1")),
        Some(n) => Limit::Count(n),
        None => {
            let d = ambos_pki::parse_duration(&a.duration).context("--duration")?;
            Limit::Until(Instant::now() + d)
        }
    };
    if !a.path.starts_with('/') || a.path.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
        return Err(input_error(format!("--path {:?}: must start with / and hold no spaces", a.path)));
    }
    let addr = resolve(&a.target)?;
    let server_name = ServerName::try_from(a.server_name.clone())
        .map_err(|e| input_error(format!("--server-name {:?}: {e}", a.server_name)))?;

    let h2_uri = http::Uri::try_from(format!("https://{}{}", a.server_name, a.path))
        .map_err(|e| input_error(format!("--server-name {:?} with --path {:?}: {e}", a.server_name, a.path)))?;

    let mut provider = ambos_tls::provider();
    if !a.kx_group.is_empty() {
        Arc::make_mut(&mut provider).kx_groups = a.kx_group.iter().map(|g| g.group()).collect();
    }
    let versions = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS client configuration")?;
    let builder = match (&a.ca, a.cheap_client) {
        (_, true) => versions.dangerous().with_custom_certificate_verifier(Arc::new(UnverifiedChain(provider))),
        (Some(ca_file), false) => {
            let mut roots = rustls::RootCertStore::empty();
            for ca in ambos_tls::load_certs(ca_file).map_err(|e| flag_error("--ca", e))? {
                roots.add(ca).map_err(|e| input_error(format!("--ca {}: {e}", ca_file.display())))?;
            }
            versions.with_root_certificates(roots)
        }
        (None, false) => return Err(input_error("--ca is required (or --cheap-client)")),
    };
    let mut tokens = Vec::new();
    let mut config = match (a.mode, &a.cert, &a.key, &a.tokens) {
        (Mode::Enroll, _, _, Some(file)) => {
            let text =
                std::fs::read_to_string(file).map_err(|e| input_error(format!("--tokens {}: {e}", file.display())))?;
            tokens = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect();
            if tokens.is_empty() {
                return Err(input_error(format!("--tokens {}: no tokens", file.display())));
            }
            builder.with_no_client_auth()
        }
        (Mode::Enroll, _, _, None) => return Err(input_error("enroll needs --tokens FILE")),
        (_, Some(cert), Some(key), _) => {
            let chain = ambos_tls::load_certs(cert).map_err(|e| flag_error("--cert", e))?;
            let k = ambos_tls::load_key(key).map_err(|e| flag_error("--key", e))?;
            builder.with_client_auth_cert(chain, k).map_err(|e| key_error(cert, key, e))?
        }
        _ => return Err(input_error("--cert and --key are required for handshake and http")),
    };
    // Every handshake full: a benchmark of resumed handshakes would measure something else.
    config.resumption = rustls::client::Resumption::disabled();
    config.alpn_protocols = vec![if a.http2 { b"h2".to_vec() } else { b"http/1.1".to_vec() }];

    Ok(Plan {
        mode: a.mode,
        addr,
        connector: TlsConnector::from(Arc::new(config)),
        server_name,
        host: a.server_name.clone(),
        path: a.path.clone(),
        http2: a.http2,
        h2_uri,
        limit,
        started: AtomicU64::new(0),
        first_error: Mutex::new(None),
        tokens,
        hold_for,
        opened: AtomicU64::new(0),
    })
}

/// A file the user named is missing or malformed: exit code 2, one line naming flag and file.
fn flag_error(flag: &str, e: ambos_tls::TlsError) -> anyhow::Error {
    input_error(format!("{flag}: {e}"))
}

fn key_error(cert: &Path, key: &Path, e: rustls::Error) -> anyhow::Error {
    input_error(format!("--key {} does not fit --cert {}: {e}", key.display(), cert.display()))
}

/// HOST:PORT to one address, resolved once so DNS is not part of the measurement.
fn resolve(target: &str) -> anyhow::Result<SocketAddr> {
    use std::net::ToSocketAddrs;
    let mut addrs = target.to_socket_addrs().map_err(|e| input_error(format!("--target {target:?}: {e}")))?;
    addrs.next().ok_or_else(|| input_error(format!("--target {target:?}: no address")))
}

/// A server certificate verifier for `--cheap-client`: any chain passes,
/// but the server must still prove it holds the key of the certificate it
/// sent, so the handshake does the same key-exchange and signature work.
#[derive(Debug)]
struct UnverifiedChain(Arc<CryptoProvider>);

impl ServerCertVerifier for UnverifiedChain {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

async fn handshake_worker(plan: &Plan) -> Tally {
    let mut tally = Tally::new();
    let request = format!("GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", plan.path, plan.host);
    while plan.next() {
        let started = Instant::now();
        let outcome = timed(one_handshake(plan, request.as_bytes())).await;
        tally.record(plan, started, outcome);
    }
    tally
}

async fn one_handshake(plan: &Plan, request: &[u8]) -> Result<(), Failure> {
    let mut tls = plan.connect().await?;
    tls.write_all(request).await.context("send request").kind("send")?;
    let mut response = Vec::with_capacity(512);
    match tls.read_to_end(&mut response).await {
        Ok(_) => {}
        // A server that closes without close_notify after a complete response is fine here.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !response.is_empty() => {}
        Err(e) => return Err(e).context("read response").kind("read"),
    }
    let line = response.split(|&b| b == b'\r' || b == b'\n').next().unwrap_or_default();
    match line.split(|&b| b == b' ').nth(1) {
        Some(b"200") if line.starts_with(b"HTTP/1.1 ") => Ok(()),
        Some(code) if line.starts_with(b"HTTP/1.") && code.len() == 3 && code.iter().all(u8::is_ascii_digit) => {
            Err(Failure::new(
                format!("status {}", String::from_utf8_lossy(code)),
                anyhow::anyhow!("unexpected response: {:?}", String::from_utf8_lossy(line)),
            ))
        }
        _ => Err(Failure::new(
            "protocol",
            anyhow::anyhow!("not an HTTP/1.1 response: {:?}", String::from_utf8_lossy(line)),
        )),
    }
}

/// One keep-alive connection's request sender.
enum Sender {
    Http1(hyper::client::conn::http1::SendRequest<Empty<Bytes>>),
    Http2(hyper::client::conn::http2::SendRequest<Empty<Bytes>>),
}

async fn http_connect(plan: &Plan) -> Result<Sender, Failure> {
    let tls = plan.connect().await?;
    if plan.http2 {
        if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
            return Err(Failure::new("protocol", anyhow::anyhow!("the server did not agree to HTTP/2 (ALPN h2)")));
        }
        let (sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .context("HTTP/2 handshake")
            .kind("protocol")?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Sender::Http2(sender))
    } else {
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .context("HTTP/1.1 handshake")
            .kind("protocol")?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Sender::Http1(sender))
    }
}

async fn http_worker(plan: &Plan) -> Tally {
    let mut tally = Tally::new();
    let mut sender: Option<Sender> = None;
    while plan.next() {
        let started = Instant::now();
        let outcome = timed(one_request(plan, &mut sender)).await;
        if outcome.is_err() {
            // Start over on a fresh connection.
            sender = None;
        }
        tally.record(plan, started, outcome);
    }
    tally
}

async fn one_request(plan: &Plan, sender: &mut Option<Sender>) -> Result<(), Failure> {
    let s = match sender {
        Some(s) => s,
        None => sender.insert(http_connect(plan).await?),
    };
    let response = match s {
        Sender::Http1(s) => {
            s.ready().await.context("connection closed").kind("send")?;
            let request = http::Request::get(plan.path.as_str())
                .header(http::header::HOST, plan.host.as_str())
                .body(Empty::<Bytes>::new())
                .context("build request")
                .kind("protocol")?;
            s.send_request(request).await.context("send request").kind("send")?
        }
        Sender::Http2(s) => {
            s.ready().await.context("connection closed").kind("send")?;
            let request = http::Request::get(plan.h2_uri.clone())
                .version(http::Version::HTTP_2)
                .body(Empty::<Bytes>::new())
                .context("build request")
                .kind("protocol")?;
            s.send_request(request).await.context("send request").kind("send")?
        }
    };
    let status = response.status();
    response.into_body().collect().await.context("read response body").kind("read")?;
    if status != http::StatusCode::OK {
        return Err(Failure::new(format!("status {}", status.as_u16()), anyhow::anyhow!("unexpected status {status}")));
    }
    Ok(())
}

type EnrollSender = hyper::client::conn::http1::SendRequest<http_body_util::Full<Bytes>>;

async fn enroll_worker(plan: &Plan) -> Tally {
    let mut tally = Tally::new();
    let mut sender: Option<EnrollSender> = None;
    loop {
        let i = plan.started.fetch_add(1, Ordering::Relaxed) as usize;
        let Some(token) = plan.tokens.get(i) else { break };
        if let Limit::Until(deadline) = plan.limit {
            if Instant::now() >= deadline {
                break;
            }
        }
        let started = Instant::now();
        let outcome = timed(one_enrollment(plan, &mut sender, token)).await;
        if outcome.is_err() {
            sender = None;
        }
        tally.record(plan, started, outcome);
    }
    tally
}

async fn one_enrollment(plan: &Plan, sender: &mut Option<EnrollSender>, token: &str) -> Result<(), Failure> {
    let s = match sender {
        Some(s) => s,
        None => {
            let tls = plan.connect().await?;
            let (s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .context("HTTP/1.1 handshake")
                .kind("protocol")?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            sender.insert(s)
        }
    };
    let key = ambos_pki::KeyType::EcP256.generate().kind("client")?;
    let csr = ambos_pki::create_csr(&key, None, &[]).kind("client")?;
    let body =
        serde_json::json!({"token": token, "csr": ambos_pki::pem_encode("CERTIFICATE REQUEST", &csr)}).to_string();
    s.ready().await.context("connection closed").kind("send")?;
    let request = http::Request::post("/v1/enroll")
        .header(http::header::HOST, plan.host.as_str())
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(http_body_util::Full::new(Bytes::from(body)))
        .context("build request")
        .kind("protocol")?;
    let response = s.send_request(request).await.context("send request").kind("send")?;
    let status = response.status();
    let body = response.into_body().collect().await.context("read response body").kind("read")?.to_bytes();
    if status != http::StatusCode::CREATED {
        return Err(Failure::new(
            format!("status {}", status.as_u16()),
            anyhow::anyhow!("unexpected status {status}: {}", String::from_utf8_lossy(&body)),
        ));
    }
    Ok(())
}

/// Opens connections (each completes one keep-alive request, so the server
/// has fully set it up), then, once every worker is done opening, keeps them
/// all idle for `hold_for`.
async fn hold_worker(plan: &Plan) -> Tally {
    let mut tally = Tally::new();
    let mut held = Vec::new();
    while plan.next() {
        let started = Instant::now();
        let mut sender: Option<Sender> = None;
        let outcome = timed(one_request(plan, &mut sender)).await;
        if outcome.is_ok() {
            held.extend(sender);
        }
        plan.opened.fetch_add(1, Ordering::Relaxed); // attempts, failed ones too
        tally.record(plan, started, outcome);
    }
    let total = match plan.limit {
        Limit::Count(n) => n,
        Limit::Until(_) => 0,
    };
    while plan.opened.load(Ordering::Relaxed) < total {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(plan.hold_for).await;
    drop(held);
    tally
}
