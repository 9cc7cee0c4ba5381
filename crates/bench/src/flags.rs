//! The flags of `ambos bench`, unparsed (with the `cli` feature, the
//! binary's own flags: clap reads them into this), and the plan they make.
use crate::{BenchError, BenchPlan, KxGroup, Mode};
use std::path::PathBuf;

#[derive(Clone, Debug)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct BenchFlags {
    /// What one operation is.
    #[cfg_attr(feature = "cli", arg(value_enum))]
    pub mode: Mode,
    /// HOST:PORT of the TLS endpoint; enroll: several, comma-separated (CA
    /// nodes: workers spread over them, and an enrollment that gets no
    /// answer or a 503 is sent again to the next one).
    #[cfg_attr(feature = "cli", arg(long))]
    pub target: String,
    /// Client certificate chain (PEM, leaf first); not for enroll.
    #[cfg_attr(feature = "cli", arg(long, required_unless_present = "tokens"))]
    pub cert: Option<PathBuf>,
    /// Client private key (PEM, unencrypted); not for enroll.
    #[cfg_attr(feature = "cli", arg(long, required_unless_present = "tokens"))]
    pub key: Option<PathBuf>,
    /// enroll: file of tokens, one per line (`ambos token create NAME --count N`).
    #[cfg_attr(feature = "cli", arg(long))]
    pub tokens: Option<PathBuf>,
    /// enroll: write the serial of every certificate received to this file, one per line.
    #[cfg_attr(feature = "cli", arg(long, requires = "tokens"))]
    pub serials: Option<PathBuf>,
    /// CA certificate(s) the server certificate must chain to.
    #[cfg_attr(feature = "cli", arg(long, required_unless_present = "cheap_client"))]
    pub ca: Option<PathBuf>,
    /// Name to verify the server certificate against (SNI and Host header).
    #[cfg_attr(feature = "cli", arg(long, default_value = "localhost"))]
    pub server_name: String,
    /// Concurrent workers (connections).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 4))]
    pub concurrency: usize,
    /// How long to run, e.g. 10s, 1m.
    #[cfg_attr(feature = "cli", arg(long, default_value = "10s"))]
    pub duration: String,
    /// Stop after this many operations in total (overrides --duration).
    #[cfg_attr(feature = "cli", arg(long))]
    pub count: Option<u64>,
    /// Request path (grpc: the method, e.g. /bench.Echo/Call).
    #[cfg_attr(feature = "cli", arg(long, default_value = "/"))]
    pub path: String,
    /// http, hold: speak HTTP/2 (ALPN h2) instead of HTTP/1.1.
    #[cfg_attr(feature = "cli", arg(long))]
    pub http2: bool,
    /// Do not verify the server's certificate chain (the handshake signature
    /// still is): the client then costs less than the server, so the server
    /// is the bottleneck. Never for anything but benchmarks.
    #[cfg_attr(feature = "cli", arg(long))]
    pub cheap_client: bool,
    /// Key exchange groups to offer, in preference order (repeat the flag);
    /// default: ambos's own list, X25519MLKEM768 first. `--kx-group x25519`
    /// is what an OpenSSL 3.0 client such as Debian 12's curl offers.
    #[cfg_attr(feature = "cli", arg(long, value_enum))]
    pub kx_group: Vec<KxGroup>,
    /// http: access token sent as `Authorization: Bearer` (a route with `token = {...}`).
    #[cfg_attr(feature = "cli", arg(long, env = "AMBOS_TOKEN", hide_env_values = true))]
    pub token: Option<String>,
    /// One JSON object instead of the human summary.
    #[cfg_attr(feature = "cli", arg(long))]
    pub json: bool,
}

impl BenchFlags {
    /// The run these flags ask for (`--duration` read only where it counts).
    pub fn plan(&self) -> Result<BenchPlan, BenchError> {
        Ok(BenchPlan {
            mode: self.mode,
            target: self.target.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
            tokens: self.tokens.clone(),
            serials: self.serials.clone(),
            ca: self.ca.clone(),
            server_name: self.server_name.clone(),
            concurrency: self.concurrency,
            duration: crate::duration_flag(self.mode, self.count, &self.duration)?,
            count: self.count,
            path: self.path.clone(),
            http2: self.http2,
            cheap_client: self.cheap_client,
            kx_groups: self.kx_group.clone(),
            bearer: self.token.clone(),
        })
    }
}
