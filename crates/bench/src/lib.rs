//! A small mTLS load generator (`ambos bench`), to measure what a TLS
//! endpoint (the ambos proxy, nginx, ...) costs per handshake and per request.
//!
//! [`Mode::Handshake`]: every operation is a new TCP connection, a full TLS
//! handshake with the client certificate (no session resumption), one
//! `GET PATH` with `Connection: close`, and the response read to EOF.
//! [`Mode::Http`]: every worker keeps one TLS connection and sends keep-alive
//! HTTP/1.1 (or HTTP/2) requests over it, one at a time; every operation is
//! one request and response.
//! [`Mode::Enroll`]: against `ambos serve`, every operation generates a P-256
//! key and a CSR and spends one token (keep-alive, no client certificate).
//! [`Mode::Hold`]: open connections, hold them idle, close: the server's memory per connection.
//! [`Mode::Grpc`]: unary gRPC calls (HTTP/2 POST to `--path`), one at a time
//! over one connection per worker; a call counts when it ends in `grpc-status: 0`.
//! [`Mode::Websocket`]: open connections upgraded to WebSocket, hold them,
//! close: the server's memory per open WebSocket.
//!
//! Latencies go into an HDR histogram (3 significant digits), so a run of
//! millions of operations costs the generator kilobytes, not a sample each.
//! Failures are counted by kind (connect, tls, protocol, send, read, timeout,
//! `status NNN`), so a run that half-fails says how.
#![forbid(unsafe_code)]

mod flags;
mod grpc;
mod tally;
mod websocket;
mod workers;

pub use flags::BenchFlags;
pub use tally::Summary;

use ambos_tls::{ClientCert, ServerAuth};
use rustls::pki_types::ServerName;
use serde::Serialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tally::Tally;
use thiserror::Error;
use tokio_rustls::TlsConnector;

/// What a plan or a run can fail with; messages name `ambos bench`'s flags.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum BenchError {
    /// A flag value or a file the user named.
    #[error("{0}")]
    Input(String),
    #[error("TLS client configuration")]
    Tls(#[from] rustls::Error),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("benchmark worker panicked: {0}")]
    Worker(String),
}

impl BenchError {
    /// Whether the plan was wrong (exit code 2), not the run (1).
    pub fn is_input(&self) -> bool {
        matches!(self, BenchError::Input(_))
    }
}

fn input(msg: impl Into<String>) -> BenchError {
    BenchError::Input(msg.into())
}

/// What one operation is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
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
    /// Unary gRPC calls (HTTP/2 POST to --path, e.g. /bench.Echo/Call) over one
    /// connection per worker; a call succeeds on grpc-status 0.
    Grpc,
    /// Open --count connections upgraded to WebSocket (HTTP/1.1 GET --path,
    /// 101 expected), hold them for --duration, then close: the server's memory per WebSocket.
    Websocket,
    /// Access tokens from `ambos serve` (POST /v1/oauth/token, client
    /// credentials) over one keep-alive mTLS connection per worker.
    Token,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Handshake => "handshake",
            Mode::Http => "http",
            Mode::Enroll => "enroll",
            Mode::Hold => "hold",
            Mode::Grpc => "grpc",
            Mode::Websocket => "websocket",
            Mode::Token => "token",
        }
    }
}

/// A key exchange group to offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum KxGroup {
    X25519,
    #[cfg_attr(feature = "cli", value(name = "x25519mlkem768"))]
    X25519Mlkem768,
    P256,
    P384,
}

impl KxGroup {
    fn group(self) -> &'static dyn rustls::crypto::SupportedKxGroup {
        use rustls::crypto::aws_lc_rs::kx_group;
        match self {
            KxGroup::X25519 => kx_group::X25519,
            KxGroup::X25519Mlkem768 => kx_group::X25519MLKEM768,
            KxGroup::P256 => kx_group::SECP256R1,
            KxGroup::P384 => kx_group::SECP384R1,
        }
    }
}

/// A run as asked for, before any file is read.
#[derive(Clone, Debug)]
pub struct BenchPlan {
    pub mode: Mode,
    /// HOST:PORT, resolved once so DNS is not part of the measurement;
    /// enroll: several, comma-separated (failover between CA nodes).
    pub target: String,
    /// Client certificate chain and key (PEM); not for enroll.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// enroll: file of tokens, one per line.
    pub tokens: Option<PathBuf>,
    /// enroll: where to write the serials of the certificates received.
    pub serials: Option<PathBuf>,
    /// CA certificate(s) the server certificate must chain to.
    pub ca: Option<PathBuf>,
    /// SNI, Host header, and the name the server certificate is verified against.
    pub server_name: String,
    pub concurrency: usize,
    /// How long to run (unless `count`); hold: how long to hold.
    pub duration: Duration,
    /// Operations in total (hold: connections to open).
    pub count: Option<u64>,
    pub path: String,
    /// http, hold: HTTP/2 instead of HTTP/1.1 (grpc always speaks HTTP/2).
    pub http2: bool,
    /// Do not verify the server's chain (its handshake signature still is), so the server is the bottleneck.
    pub cheap_client: bool,
    /// Key exchange groups in preference order; empty: ambos's own list.
    pub kx_groups: Vec<KxGroup>,
    /// http: an access token sent as `Authorization: Bearer` with each request.
    pub bearer: Option<String>,
}

/// When the workers stop.
#[derive(Clone, Copy, Debug)]
enum Limit {
    Count(u64),
    Until(Instant),
}

/// A checked plan with its TLS client configuration: what every worker shares.
pub struct Plan {
    mode: Mode,
    /// The first target (the only one but for enroll).
    addr: SocketAddr,
    /// enroll: every target; worker N starts at target N mod len.
    addrs: Vec<SocketAddr>,
    workers_started: std::sync::atomic::AtomicUsize,
    /// enroll: requests sent again to the next target.
    resent: AtomicU64,
    serials: Option<(PathBuf, Mutex<Vec<String>>)>,
    connector: TlsConnector,
    server_name: ServerName<'static>,
    host: String,
    path: String,
    http2: bool,
    /// The request target as HTTP/2 sends it (`https://host/path`).
    h2_uri: http::Uri,
    limit: Limit,
    concurrency: usize,
    server_verified: bool,
    started: AtomicU64,
    first_error: Mutex<Option<String>>,
    tokens: Vec<String>,
    /// hold: how long to keep the connections open once all are.
    hold_for: Duration,
    /// hold: connection attempts finished so far (all workers).
    opened: AtomicU64,
    /// http: `Authorization: Bearer TOKEN`, made once.
    authorization: Option<http::HeaderValue>,
}

/// The `--json` output, fields in this order.
#[derive(Serialize, Clone, Debug)]
pub struct Report {
    pub mode: &'static str,
    /// http/1.1 or h2 (handshake and enroll: http/1.1).
    pub protocol: &'static str,
    /// false with `cheap_client`: the server's chain was not checked.
    pub server_verified: bool,
    #[serde(flatten)]
    pub summary: Summary,
    /// enroll with several targets: requests sent again to the next one
    /// (no answer, or 503) before they succeeded or failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resent: Option<u64>,
}

/// A finished run: the report and what the summary line needs.
pub struct Outcome {
    pub report: Report,
    pub addr: SocketAddr,
    pub workers: usize,
    /// The first failed operation, as `kind: detail`.
    pub first_error: Option<String>,
}

/// The human summary `ambos bench` prints (`--json` is the report's serde form).
impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (r, s) = (&self.report, &self.report.summary);
        writeln!(f, "{} ({}) against {}: {} workers, {:.2} s", r.mode, r.protocol, self.addr, self.workers, s.seconds)?;
        writeln!(f, "  ops {}, {:.0} ops/s", s.ops, s.ops_per_sec)?;
        writeln!(f, "  latency p50 {} µs, p90 {} µs, p99 {} µs, max {} µs", s.p50_us, s.p90_us, s.p99_us, s.max_us)?;
        if s.errors == 0 {
            writeln!(f, "  errors 0")?;
        } else {
            let kinds: Vec<String> = s.errors_by_kind.iter().map(|(k, n)| format!("{k} {n}")).collect();
            writeln!(f, "  errors {} ({})", s.errors, kinds.join(", "))?;
        }
        if !r.server_verified {
            writeln!(f, "  note: --cheap-client: the server's certificate chain was NOT verified")?;
        }
        Ok(())
    }
}

/// Checks the plan before any file is read.
fn check(p: &BenchPlan) -> Result<(), BenchError> {
    if p.concurrency == 0 {
        return Err(input("--concurrency must be at least 1"));
    }
    if p.http2 && !matches!(p.mode, Mode::Http | Mode::Hold | Mode::Grpc) {
        return Err(input(format!("--http2 is for http and hold, not {}", p.mode.name())));
    }
    if matches!(p.mode, Mode::Hold | Mode::Websocket) && p.count.is_none() {
        return Err(input(format!("{} needs --count (connections to open)", p.mode.name())));
    }
    if p.target.contains(',') && p.mode != Mode::Enroll {
        return Err(input(format!("--target: several targets are for enroll, not {}", p.mode.name())));
    }
    if p.count == Some(0) {
        return Err(input("--count must be at least 1"));
    }
    if !p.path.starts_with('/') || p.path.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
        return Err(input(format!("--path {:?}: must start with / and hold no spaces", p.path)));
    }
    Ok(())
}

/// `--duration` as given, read only where it counts: hold and websocket,
/// or a run without `--count` (else zero).
pub fn duration_flag(mode: Mode, count: Option<u64>, text: &str) -> Result<Duration, BenchError> {
    if matches!(mode, Mode::Hold | Mode::Websocket) || count.is_none() {
        return ambos_pki::parse_duration(text).map_err(|e| input(format!("--duration: {e}")));
    }
    Ok(Duration::ZERO)
}

/// Checks every setting and file, and builds the TLS client configuration.
pub fn plan(p: &BenchPlan) -> Result<Plan, BenchError> {
    check(p)?;
    let hold_for = if matches!(p.mode, Mode::Hold | Mode::Websocket) { p.duration } else { Duration::ZERO };
    let http2 = p.http2 || p.mode == Mode::Grpc;
    let limit = match p.count {
        Some(n) => Limit::Count(n),
        None => Limit::Until(Instant::now() + p.duration),
    };
    let addrs = p.target.split(',').map(|t| resolve(t.trim())).collect::<Result<Vec<_>, _>>()?;
    let addr = addrs[0];
    let server_name = ServerName::try_from(p.server_name.clone())
        .map_err(|e| input(format!("--server-name {:?}: {e}", p.server_name)))?;
    let h2_uri = http::Uri::try_from(format!("https://{}{}", p.server_name, p.path))
        .map_err(|e| input(format!("--server-name {:?} with --path {:?}: {e}", p.server_name, p.path)))?;

    let mut provider = ambos_tls::provider();
    if !p.kx_groups.is_empty() {
        Arc::make_mut(&mut provider).kx_groups = p.kx_groups.iter().map(|g| g.group()).collect();
    }
    let server = match (&p.ca, p.cheap_client) {
        (_, true) => ServerAuth::Custom(Arc::new(ambos_tls::UnverifiedServer)),
        (Some(ca_file), false) => ServerAuth::Roots(
            ambos_tls::root_store(std::slice::from_ref(ca_file)).map_err(|e| input(format!("--ca: {e}")))?,
        ),
        (None, false) => return Err(input("--ca is required (or --cheap-client)")),
    };
    let mut tokens = Vec::new();
    let client = match (p.mode, &p.cert, &p.key, &p.tokens) {
        (Mode::Enroll, _, _, Some(file)) => {
            let text = std::fs::read_to_string(file).map_err(|e| input(format!("--tokens {}: {e}", file.display())))?;
            tokens = parse_tokens(&text);
            if tokens.is_empty() {
                return Err(input(format!("--tokens {}: no tokens", file.display())));
            }
            ClientCert::None
        }
        (Mode::Enroll, _, _, None) => return Err(input("enroll needs --tokens FILE")),
        (_, Some(cert), Some(key), _) => {
            let chain = ambos_tls::load_certs(cert).map_err(|e| input(format!("--cert: {e}")))?;
            let k = ambos_tls::load_key(key).map_err(|e| input(format!("--key: {e}")))?;
            ClientCert::Chain(chain, k)
        }
        _ => return Err(input(format!("--cert and --key are required for {}", p.mode.name()))),
    };
    let key_pair = match (&client, &p.cert, &p.key) {
        (ClientCert::Chain(..), Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
        _ => None,
    };
    let mut config =
        ambos_tls::client_config_with(provider, rustls::DEFAULT_VERSIONS, server, client).map_err(|e| {
            match (e, &key_pair) {
                (ambos_tls::TlsError::Config(e), Some((cert, key))) => key_error(cert, key, e),
                (ambos_tls::TlsError::Config(e), None) => BenchError::Tls(e),
                (e, _) => input(e.to_string()),
            }
        })?;
    // Every handshake full: a benchmark of resumed handshakes would measure something else.
    config.resumption = rustls::client::Resumption::disabled();
    config.alpn_protocols = vec![if http2 { b"h2".to_vec() } else { b"http/1.1".to_vec() }];

    Ok(Plan {
        mode: p.mode,
        addr,
        resent: AtomicU64::new(0),
        workers_started: Default::default(),
        serials: p.serials.clone().map(|f| (f, Mutex::new(Vec::new()))),
        addrs,
        connector: TlsConnector::from(Arc::new(config)),
        server_name,
        host: p.server_name.clone(),
        path: p.path.clone(),
        http2,
        h2_uri,
        limit,
        concurrency: p.concurrency,
        server_verified: !p.cheap_client,
        started: AtomicU64::new(0),
        first_error: Mutex::new(None),
        tokens,
        hold_for,
        opened: AtomicU64::new(0),
        authorization: match &p.bearer {
            Some(t) => Some(
                http::HeaderValue::try_from(format!("Bearer {}", t.trim()))
                    .map_err(|_| input("--token: not a token (header-safe text)"))?,
            ),
            None => None,
        },
    })
}

/// One token a line; blank lines and surrounding spaces ignored.
fn parse_tokens(text: &str) -> Vec<String> {
    text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect()
}

fn key_error(cert: &Path, key: &Path, e: rustls::Error) -> BenchError {
    input(format!("--key {} does not fit --cert {}: {e}", key.display(), cert.display()))
}

/// HOST:PORT to one address, resolved once so DNS is not part of the measurement.
fn resolve(target: &str) -> Result<SocketAddr, BenchError> {
    use std::net::ToSocketAddrs;
    let mut addrs = target.to_socket_addrs().map_err(|e| input(format!("--target {target:?}: {e}")))?;
    addrs.next().ok_or_else(|| input(format!("--target {target:?}: no address")))
}

impl Plan {
    /// Claims the next operation; false once the run is over.
    fn next(&self) -> bool {
        match self.limit {
            Limit::Count(n) => self.started.fetch_add(1, Ordering::Relaxed) < n,
            Limit::Until(deadline) => Instant::now() < deadline,
        }
    }

    /// Runs the workers to the end (on a runtime of its own) and sums up.
    pub fn run(self) -> Result<Outcome, BenchError> {
        let plan = Arc::new(self);
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        let began = Instant::now();
        let total = runtime.block_on(async {
            let workers: Vec<_> = (0..plan.concurrency).map(|_| tokio::spawn(workers::work(plan.clone()))).collect();
            let mut total = Tally::new();
            for w in workers {
                total.merge(w.await.map_err(|e| BenchError::Worker(e.to_string()))?);
            }
            Ok::<_, BenchError>(total)
        })?;
        let seconds = began.elapsed().as_secs_f64();
        drop(runtime);
        if let Some((file, got)) = &plan.serials {
            let got = got.lock().unwrap_or_else(|e| e.into_inner());
            let text: String = got.iter().map(|s| format!("{s}\n")).collect();
            std::fs::write(file, text).map_err(|e| input(format!("--serials {}: {e}", file.display())))?;
        }
        let first_error = plan.first_error.lock().unwrap_or_else(|e| e.into_inner()).take();
        Ok(Outcome {
            report: Report {
                mode: plan.mode.name(),
                protocol: if plan.http2 { "h2" } else { "http/1.1" },
                server_verified: plan.server_verified,
                summary: total.summary(seconds),
                resent: (plan.addrs.len() > 1).then(|| plan.resent.load(Ordering::Relaxed)),
            },
            addr: plan.addr,
            workers: plan.concurrency,
            first_error,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(mode: Mode) -> BenchPlan {
        BenchPlan {
            mode,
            target: "127.0.0.1:1".into(),
            cert: None,
            key: None,
            tokens: None,
            serials: None,
            ca: None,
            server_name: "localhost".into(),
            concurrency: 4,
            duration: Duration::from_secs(10),
            count: None,
            path: "/".into(),
            http2: false,
            cheap_client: true,
            kx_groups: Vec::new(),
            bearer: None,
        }
    }

    fn refused(p: BenchPlan) -> String {
        match plan(&p) {
            Err(BenchError::Input(why)) => why,
            Err(e) => panic!("not an input error: {e}"),
            Ok(_) => panic!("accepted"),
        }
    }

    #[test]
    fn plans_that_make_no_sense_are_refused_before_any_file_is_read() {
        assert_eq!(refused(BenchPlan { concurrency: 0, ..base(Mode::Http) }), "--concurrency must be at least 1");
        assert_eq!(
            refused(BenchPlan { http2: true, ..base(Mode::Handshake) }),
            "--http2 is for http and hold, not handshake"
        );
        assert_eq!(refused(base(Mode::Hold)), "hold needs --count (connections to open)");
        assert_eq!(refused(base(Mode::Websocket)), "websocket needs --count (connections to open)");
        assert_eq!(
            refused(BenchPlan { http2: true, count: Some(1), ..base(Mode::Websocket) }),
            "--http2 is for http and hold, not websocket"
        );
        assert_eq!(refused(BenchPlan { count: Some(0), ..base(Mode::Http) }), "--count must be at least 1");
        assert_eq!(
            refused(BenchPlan { target: "127.0.0.1:1,127.0.0.1:2".into(), ..base(Mode::Http) }),
            "--target: several targets are for enroll, not http"
        );
        assert_eq!(duration_flag(Mode::Http, Some(5), "junk").unwrap(), Duration::ZERO, "--count decides");
        assert_eq!(duration_flag(Mode::Hold, Some(5), "2s").unwrap(), Duration::from_secs(2), "hold holds");
        assert!(duration_flag(Mode::Http, None, "junk").unwrap_err().to_string().starts_with("--duration: "));
        assert_eq!(
            refused(BenchPlan { path: "/a b".into(), ..base(Mode::Http) }),
            "--path \"/a b\": must start with / and hold no spaces"
        );
        assert!(refused(BenchPlan { path: "x".into(), ..base(Mode::Http) }).starts_with("--path"));
    }

    #[test]
    fn client_identity_ca_and_tokens_are_required_per_mode() {
        assert_eq!(
            refused(BenchPlan { cheap_client: false, ..base(Mode::Http) }),
            "--ca is required (or --cheap-client)"
        );
        assert_eq!(refused(base(Mode::Handshake)), "--cert and --key are required for handshake");
        assert_eq!(refused(base(Mode::Grpc)), "--cert and --key are required for grpc");
        assert_eq!(refused(base(Mode::Enroll)), "enroll needs --tokens FILE");
        assert!(refused(BenchPlan { server_name: "bad name".into(), ..base(Mode::Http) }).starts_with("--server-name"));
        assert!(refused(BenchPlan { target: "no-port".into(), ..base(Mode::Http) }).starts_with("--target \"no-port\""));
    }

    #[test]
    fn a_count_limits_operations_and_a_duration_limits_time() {
        let dir = std::env::temp_dir().join(format!("ambos-bench-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let tokens = dir.join("tokens");
        std::fs::write(&tokens, "a\n\n  b  \n").unwrap();
        let p = plan(&BenchPlan { tokens: Some(tokens), count: Some(2), ..base(Mode::Enroll) }).unwrap();
        assert_eq!(p.tokens, vec!["a", "b"]);
        assert!(p.next() && p.next() && !p.next(), "exactly --count operations");
        let p = plan(&BenchPlan { tokens: Some(dir.join("tokens")), duration: Duration::ZERO, ..base(Mode::Enroll) })
            .unwrap();
        assert!(!p.next(), "a zero duration is already over");
        assert_eq!(p.hold_for, Duration::ZERO, "only hold holds");
        std::fs::write(dir.join("empty"), "\n").unwrap();
        let why = refused(BenchPlan { tokens: Some(dir.join("empty")), ..base(Mode::Enroll) });
        assert!(why.ends_with(": no tokens"), "{why}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_summary_names_errors_by_kind_and_an_unverified_server() {
        let summary = tally::Summary {
            ops: 10,
            errors: 3,
            errors_by_kind: [("connect".to_string(), 2), ("tls".to_string(), 1)].into(),
            seconds: 2.0,
            ops_per_sec: 5.0,
            p50_us: 100,
            p90_us: 200,
            p99_us: 300,
            max_us: 400,
        };
        let report = Report { mode: "http", protocol: "h2", server_verified: false, summary, resent: None };
        let out = Outcome { report, addr: ([127, 0, 0, 1], 8443).into(), workers: 4, first_error: None };
        assert_eq!(
            out.to_string(),
            "http (h2) against 127.0.0.1:8443: 4 workers, 2.00 s\n  ops 10, 5 ops/s\n  \
             latency p50 100 µs, p90 200 µs, p99 300 µs, max 400 µs\n  errors 3 (connect 2, tls 1)\n  \
             note: --cheap-client: the server's certificate chain was NOT verified\n"
        );
    }
}
