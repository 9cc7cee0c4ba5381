//! `ambos bench`: flags to an `ambos_bench::BenchPlan`, then the run's
//! summary (or `--json`); the load generator is the `ambos-bench` crate.
use ambos_bench::{KxGroup, Mode};
use clap::Args;
use std::path::PathBuf;

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
    /// Request path (grpc: the method, e.g. /bench.Echo/Call).
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
    /// http: access token sent as `Authorization: Bearer` (a route with `token = {...}`).
    #[arg(long, env = "AMBOS_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// One JSON object instead of the human summary.
    #[arg(long)]
    json: bool,
}

pub fn run(a: BenchArgs) -> anyhow::Result<()> {
    ambos_tls::install_default_provider();
    let plan = ambos_bench::plan(&ambos_bench::BenchPlan {
        mode: a.mode,
        target: a.target,
        cert: a.cert,
        key: a.key,
        tokens: a.tokens,
        ca: a.ca,
        server_name: a.server_name,
        concurrency: a.concurrency,
        duration: ambos_bench::duration_flag(a.mode, a.count, &a.duration)?,
        count: a.count,
        path: a.path,
        http2: a.http2,
        cheap_client: a.cheap_client,
        kx_groups: a.kx_group,
        bearer: a.token,
    })?;
    let out = plan.run()?;
    let r = &out.report;
    let s = &r.summary;
    if a.json {
        println!("{}", serde_json::to_string(r)?);
    } else {
        print!("{out}");
    }
    if s.errors > 0 {
        let why = out.first_error.unwrap_or_default();
        if s.ops == 0 {
            anyhow::bail!("all {} operations failed; first error: {why}", s.errors);
        }
        eprintln!("warning: {} operations failed; first error: {why}", s.errors);
    }
    Ok(())
}
