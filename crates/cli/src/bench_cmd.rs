//! `ambos bench`: a small mTLS load generator, to measure what a TLS
//! endpoint (the ambos proxy, nginx, ...) costs per handshake and per request.
//!
//! `handshake`: every operation is a new TCP connection, a full TLS handshake
//! with the client certificate (no session resumption), one
//! `GET PATH` with `Connection: close`, and the response read to EOF.
//! `http`: every worker keeps one TLS connection and sends keep-alive
//! HTTP/1.1 requests over it; every operation is one request and response.
//! `enroll`: against `ambos serve`, every operation generates a P-256 key and
//! a CSR and spends one token from `--tokens` (keep-alive, no client certificate).
use crate::files::input_error;
use anyhow::Context;
use bytes::Bytes;
use clap::{Args, ValueEnum};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
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

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// New connection + full handshake + one request per operation.
    Handshake,
    /// Keep-alive HTTP/1.1 requests over one connection per worker.
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
    #[arg(long)]
    ca: PathBuf,
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
    /// One JSON object instead of the human summary.
    #[arg(long)]
    json: bool,
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

    async fn connect(&self) -> anyhow::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(self.addr).await.with_context(|| format!("connect {}", self.addr))?;
        tcp.set_nodelay(true)?;
        let tls = self.connector.connect(self.server_name.clone(), tcp).await.context("TLS handshake")?;
        Ok(tls)
    }
}

/// What one worker measured.
#[derive(Default)]
struct Tally {
    errors: u64,
    latencies_us: Vec<u32>,
}

impl Tally {
    fn record(&mut self, plan: &Plan, started: Instant, outcome: anyhow::Result<()>) {
        match outcome {
            Ok(()) => {
                let us = started.elapsed().as_micros();
                self.latencies_us.push(u32::try_from(us).unwrap_or(u32::MAX));
            }
            Err(e) => {
                self.errors += 1;
                plan.error(format!("{e:#}"));
            }
        }
    }
}

/// The `--json` output, fields in this order.
#[derive(serde::Serialize)]
struct Report {
    mode: &'static str,
    ops: u64,
    errors: u64,
    seconds: f64,
    ops_per_sec: f64,
    p50_us: u32,
    p99_us: u32,
}

pub fn run(a: BenchArgs) -> anyhow::Result<()> {
    ambos_tls::install_default_provider();
    let plan = Arc::new(plan(&a)?);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let began = Instant::now();
    let tallies = runtime.block_on(async {
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
        let mut tallies = Vec::with_capacity(workers.len());
        for w in workers {
            tallies.push(w.await.context("benchmark worker panicked")?);
        }
        anyhow::Ok(tallies)
    })?;
    let seconds = began.elapsed().as_secs_f64();
    drop(runtime);

    let errors: u64 = tallies.iter().map(|t| t.errors).sum();
    let mut latencies: Vec<u32> = tallies.into_iter().flat_map(|t| t.latencies_us).collect();
    latencies.sort_unstable();
    let ops = latencies.len() as u64;
    let ops_per_sec = if seconds > 0.0 { ops as f64 / seconds } else { 0.0 };
    let (p50, p99) = (percentile(&latencies, 0.50), percentile(&latencies, 0.99));
    if a.json {
        let report = Report {
            mode: a.mode.name(),
            ops,
            errors,
            seconds: (seconds * 1000.0).round() / 1000.0,
            ops_per_sec: ops_per_sec.round(),
            p50_us: p50,
            p99_us: p99,
        };
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "{} against {}: {} workers, {:.2} s\n  ops {ops}, errors {errors}\n  {:.0} ops/s, p50 {p50} µs, p99 {p99} µs",
            a.mode.name(),
            plan.addr,
            a.concurrency,
            seconds,
            ops_per_sec
        );
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

/// Checks every flag and file, and builds the TLS client configuration.
fn plan(a: &BenchArgs) -> anyhow::Result<Plan> {
    if a.concurrency == 0 {
        return Err(input_error("--concurrency must be at least 1"));
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

    let mut roots = rustls::RootCertStore::empty();
    for ca in ambos_tls::load_certs(&a.ca).map_err(|e| flag_error("--ca", e))? {
        roots.add(ca).map_err(|e| input_error(format!("--ca {}: {e}", a.ca.display())))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(ambos_tls::provider())
        .with_safe_default_protocol_versions()
        .context("TLS client configuration")?
        .with_root_certificates(roots);
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
    config.alpn_protocols = vec![b"http/1.1".to_vec()];

    Ok(Plan {
        mode: a.mode,
        addr,
        connector: TlsConnector::from(Arc::new(config)),
        server_name,
        host: a.server_name.clone(),
        path: a.path.clone(),
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

/// The value below which a fraction `p` of the sorted samples lie (nearest rank).
fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (sorted.len() as f64 * p).ceil() as usize;
    sorted[rank.saturating_sub(1).min(sorted.len() - 1)]
}

fn capacity(plan: &Plan) -> usize {
    match plan.limit {
        Limit::Count(n) => usize::try_from(n.min(1 << 20)).unwrap_or(1 << 20),
        Limit::Until(_) => 1 << 16,
    }
}

async fn handshake_worker(plan: &Plan) -> Tally {
    let mut tally = Tally { errors: 0, latencies_us: Vec::with_capacity(capacity(plan)) };
    let request = format!("GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", plan.path, plan.host);
    while plan.next() {
        let started = Instant::now();
        let outcome = match tokio::time::timeout(OP_TIMEOUT, one_handshake(plan, request.as_bytes())).await {
            Ok(r) => r,
            Err(_) => Err(anyhow::anyhow!("no response within {OP_TIMEOUT:?}")),
        };
        tally.record(plan, started, outcome);
    }
    tally
}

async fn one_handshake(plan: &Plan, request: &[u8]) -> anyhow::Result<()> {
    let mut tls = plan.connect().await?;
    tls.write_all(request).await.context("send request")?;
    let mut response = Vec::with_capacity(512);
    match tls.read_to_end(&mut response).await {
        Ok(_) => {}
        // A server that closes without close_notify after a complete response is fine here.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !response.is_empty() => {}
        Err(e) => return Err(anyhow::Error::new(e).context("read response")),
    }
    if !response.starts_with(b"HTTP/1.1 200") {
        let line = response.split(|&b| b == b'\r' || b == b'\n').next().unwrap_or_default();
        anyhow::bail!("unexpected response: {:?}", String::from_utf8_lossy(line));
    }
    Ok(())
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn http_connect(plan: &Plan) -> anyhow::Result<Sender> {
    let tls = plan.connect().await?;
    let (sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.context("HTTP/1.1 handshake")?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

async fn http_worker(plan: &Plan) -> Tally {
    let mut tally = Tally { errors: 0, latencies_us: Vec::with_capacity(capacity(plan)) };
    let mut sender: Option<Sender> = None;
    while plan.next() {
        let started = Instant::now();
        let outcome = match tokio::time::timeout(OP_TIMEOUT, one_request(plan, &mut sender)).await {
            Ok(r) => r,
            Err(_) => Err(anyhow::anyhow!("no response within {OP_TIMEOUT:?}")),
        };
        if outcome.is_err() {
            // Start over on a fresh connection.
            sender = None;
        }
        tally.record(plan, started, outcome);
    }
    tally
}

async fn one_request(plan: &Plan, sender: &mut Option<Sender>) -> anyhow::Result<()> {
    let s = match sender {
        Some(s) => s,
        None => sender.insert(http_connect(plan).await?),
    };
    s.ready().await.context("connection closed")?;
    let request = http::Request::get(plan.path.as_str())
        .header(http::header::HOST, plan.host.as_str())
        .body(Empty::<Bytes>::new())
        .context("build request")?;
    let response = s.send_request(request).await.context("send request")?;
    let status = response.status();
    response.into_body().collect().await.context("read response body")?;
    if status != http::StatusCode::OK {
        anyhow::bail!("unexpected status {status}");
    }
    Ok(())
}

type EnrollSender = hyper::client::conn::http1::SendRequest<http_body_util::Full<Bytes>>;

async fn enroll_worker(plan: &Plan) -> Tally {
    let mut tally = Tally { errors: 0, latencies_us: Vec::with_capacity(plan.tokens.len()) };
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
        let outcome = match tokio::time::timeout(OP_TIMEOUT, one_enrollment(plan, &mut sender, token)).await {
            Ok(r) => r,
            Err(_) => Err(anyhow::anyhow!("no response within {OP_TIMEOUT:?}")),
        };
        if outcome.is_err() {
            sender = None;
        }
        tally.record(plan, started, outcome);
    }
    tally
}

async fn one_enrollment(plan: &Plan, sender: &mut Option<EnrollSender>, token: &str) -> anyhow::Result<()> {
    let s = match sender {
        Some(s) => s,
        None => {
            let tls = plan.connect().await?;
            let (s, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.context("HTTP/1.1 handshake")?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            sender.insert(s)
        }
    };
    let key = ambos_pki::KeyType::EcP256.generate()?;
    let csr = ambos_pki::create_csr(&key, None, &[])?;
    let body =
        serde_json::json!({"token": token, "csr": ambos_pki::pem_encode("CERTIFICATE REQUEST", &csr)}).to_string();
    s.ready().await.context("connection closed")?;
    let request = http::Request::post("/v1/enroll")
        .header(http::header::HOST, plan.host.as_str())
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(http_body_util::Full::new(Bytes::from(body)))
        .context("build request")?;
    let response = s.send_request(request).await.context("send request")?;
    let status = response.status();
    let body = response.into_body().collect().await.context("read response body")?.to_bytes();
    if status != http::StatusCode::CREATED {
        anyhow::bail!("unexpected status {status}: {}", String::from_utf8_lossy(&body));
    }
    Ok(())
}

/// Opens connections (each completes one keep-alive request, so the server
/// has fully set it up), then, once every worker is done opening, keeps them
/// all idle for `hold_for`.
async fn hold_worker(plan: &Plan) -> Tally {
    let mut tally = Tally::default();
    let mut held = Vec::new();
    while plan.next() {
        let started = Instant::now();
        let mut sender: Option<Sender> = None;
        let outcome = match tokio::time::timeout(OP_TIMEOUT, one_request(plan, &mut sender)).await {
            Ok(r) => r,
            Err(_) => Err(anyhow::anyhow!("no response within {OP_TIMEOUT:?}")),
        };
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
