//! `ambos`: mTLS for real services — an internal CA, its HTTPS API, an mTLS
//! proxy and tunnel, a handshake probe and a load generator in one binary.
//! Each command (one file under `cmd/`) maps its flags to a library call
//! (`ambos_ca`, `ambos_agent`, `ambos_proxy`, `ambos_probe`, `ambos_bench`,
//! `ambos_quickstart`, `ambos_pki`; files through `ambos_files`) and prints;
//! `main` dispatches and turns errors into exit codes (2: bad input, 1:
//! failed operation).
#![forbid(unsafe_code)]

mod cmd;
mod input;
mod process;

use ambos_agent::AgentError;
use ambos_bench::BenchError;
use ambos_ca::CaError;
use ambos_files::FilesError;
use ambos_pki::PkiError;
use ambos_probe::ProbeError;
use ambos_proxy::ProxyError;
use ambos_quickstart::QuickstartError;
use ambos_store::StoreError;
use ambos_tls::TlsError;
use clap::{CommandFactory, Parser, Subcommand};
use input::InputError;
use std::path::PathBuf;
use std::process::ExitCode;

/// mimalloc: the proxy allocates per handshake and per request (rustls,
/// hyper); it costs measurably less CPU than glibc malloc on both paths
/// (docs/benchmarks.md).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EXAMPLES: &str = "\
Examples:
  ambos init --name acme --no-passphrase
  ambos issue server api --san dns:api.acme.test --san ip:127.0.0.1 --out certs
  ambos issue client checkout --spiffe spiffe://acme.test/checkout --ou payments --out certs
  ambos revoke checkout --reason key-compromise && ambos crl --out crl.pem
  ambos inspect certs/api.crt";

#[derive(Parser)]
#[command(name = "ambos", version, about = "mTLS for real services: an internal CA and an mTLS proxy", after_help = EXAMPLES)]
struct Cli {
    /// The CA's home directory (database with certificates and encrypted CA keys).
    #[arg(long, global = true, env = "AMBOS_DIR", default_value = "ambos-data")]
    dir: PathBuf,
    /// File whose first line is the CA key passphrase (else $AMBOS_PASSPHRASE, else a prompt).
    #[arg(long, global = true, env = "AMBOS_PASSPHRASE_FILE")]
    passphrase_file: Option<PathBuf>,
    /// The CA's store instead of SQLite in --dir: postgres://USER@HOST/DB (several CA nodes on one database).
    #[arg(long, global = true, env = "AMBOS_STORE", value_name = "URL")]
    store: Option<String>,
    /// Log lines of serve, proxy, tunnel and agent: text, or one JSON object per line.
    #[arg(long, global = true, env = "AMBOS_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a root CA and an issuing intermediate CA.
    #[command(
        after_help = "Examples:\n  ambos init --name acme --key-type ec-p256 --passphrase-file pass.txt\n  ambos init --name acme --crl-url https://ca.acme.test:9443/v1/crl   # CRL distribution point in issued certificates"
    )]
    Init(cmd::init::InitArgs),
    /// Issue a server or client certificate with a locally generated key.
    #[command(
        after_help = "Examples:\n  ambos issue server api --san dns:api.acme.test\n  ambos issue client web --spiffe spiffe://acme.test/web --p12\n  ambos issue client --batch devices.csv --out fleet\n  ambos issue --profile server,client mesh.acme.test --spiffe spiffe://acme.test/mesh   # both EKUs"
    )]
    Issue(Box<cmd::issue::IssueArgs>),
    /// Sign an external certificate signing request (CSR).
    #[command(after_help = "Example:\n  ambos sign app.csr --profile server --ttl 30d --out app.crt")]
    Sign(cmd::sign::SignArgs),
    /// List issued certificates.
    #[command(
        after_help = "Examples:\n  ambos list\n  ambos list --current --expiring 7d --json\n  ambos list --name web   # every renewal of web\n  ambos list --summary"
    )]
    List(cmd::list::ListArgs),
    /// Revoke a certificate by serial (hex, colons allowed) or by name.
    #[command(after_help = "Example:\n  ambos revoke 4A:1F:...:09 --reason key-compromise\n  ambos revoke checkout")]
    Revoke(cmd::revoke::RevokeArgs),
    /// Publish the CRL of the issuing CA (and with --all the root's).
    #[command(
        after_help = "Examples:\n  ambos crl --out crl.pem\n  ambos crl --all --out crls.pem   # for nginx ssl_crl / openssl -crl_check_all\n  ambos crl --set-url https://ca.acme.test:9443/v1/crl   # distribution point for certificates issued from now on\n  ambos crl --set-url none"
    )]
    Crl(cmd::crl::CrlArgs),
    /// Export the CA's trust anchors for clients and servers.
    #[command(subcommand)]
    Export(cmd::export::ExportKind),
    /// Bundle a certificate chain and key into a PKCS#12 keystore.
    #[command(
        after_help = "Examples:\n  ambos p12 --cert api.crt --key api.key --out api.p12 --password-file pw.txt\n  ambos p12 --cert dev.crt --key dev-enc.der --key-passphrase-file key-pw.txt --out dev.p12"
    )]
    P12(cmd::p12::P12Args),
    /// Show what a certificate, chain, CSR, CRL, key, PKCS#12 file or JWT holds.
    #[command(
        after_help = "Examples:\n  ambos inspect api.crt\n  ambos inspect crl.pem --json\n  ambos inspect web.p12 --password-file pw.txt"
    )]
    Inspect(cmd::inspect::InspectArgs),
    /// Run the CA's HTTPS API: enrollment with tokens, renewal over mTLS, revocation, CRL, OAuth access tokens.
    #[command(after_help = "Example:\n  ambos serve --listen 0.0.0.0:9443 --san dns:ca.acme.test")]
    Serve(ambos_ca::api::ServeFlags),
    /// Enrollment tokens.
    #[command(subcommand)]
    Token(cmd::token::TokenKind),
    /// The CA's audit trail: every issuance, enrollment, renewal, revocation, token and refusal, by whom.
    #[command(
        after_help = "Examples:\n  ambos audit --since 24h\n  ambos audit --json --store postgres://ambos@db/ambos"
    )]
    Audit(cmd::audit::AuditArgs),
    /// The CA's store: schema migrations of a PostgreSQL store (--store), a copy to another store.
    #[command(subcommand)]
    Store(cmd::store::StoreKind),
    /// Access tokens bound to certificates: grants, the signing key, a token for scripts.
    #[command(subcommand)]
    Oauth(cmd::oauth::OauthKind),
    /// Get a first certificate from `ambos serve` with a one-time token (key made locally).
    #[command(
        after_help = "Examples:\n  ambos enroll --ca-url https://ca:9443 --root ca.crt --token $TOKEN --out /etc/ambos web\n  ambos enroll --ca-url https://ca:9443 --root ca.crt --crl-url https://ca:9443/v1/crl --token $TOKEN web   # refuse a revoked CA server"
    )]
    Enroll(cmd::enroll::EnrollArgs),
    /// Renew a certificate over mTLS with the current one (new key by default).
    #[command(
        after_help = "Examples:\n  ambos renew --ca-url https://ca:9443 --root ca.crt --cert web.crt --key web.key --p12 --p12-password-file pw.txt\n  ambos renew --ca-url https://ca:9443 --root ca.crt --crl crls.pem --cert web.crt --key web.key   # crls.pem: ambos crl --all"
    )]
    Renew(cmd::renew::RenewArgs),
    /// Keep a certificate renewed: at 2/3 of its lifetime, with retries; runs --exec after each renewal.
    #[command(
        after_help = "Examples:\n  ambos agent --ca-url https://ca:9443 --root ca.crt --cert web.crt --key web.key --exec 'systemctl reload app'\n  ambos agent --ca-url https://ca:9443 --root ca.crt --crl-url https://ca:9443/v1/crl --cert web.crt --key web.key"
    )]
    Agent(cmd::renew::AgentArgs),
    /// Fetch the CA's root from `ambos serve` and keep it only if its SHA-256 fingerprint matches.
    #[command(
        after_help = "Example:\n  ambos bootstrap --ca-url https://ca:9443 --fingerprint 3f:a9:...:0c --out /etc/ambos"
    )]
    Bootstrap(ambos_agent::BootstrapFlags),
    /// Terminate mTLS in front of an HTTP or TCP service, authorizing each client identity.
    #[command(
        after_help = "Examples:\n  ambos proxy --config proxy.toml\n  ambos proxy --listen 127.0.0.1:8443 --upstream http://127.0.0.1:8080 \\\n      --cert certs/api.crt --key certs/api.key --client-ca certs/ca.crt --crl crl.pem \\\n      --allow spiffe://acme.test/web --allow ou:payments\n  ambos proxy --tcp --listen 127.0.0.1:5433 --upstream 127.0.0.1:5432 --cert ... --key ... --client-ca ..."
    )]
    Proxy(Box<cmd::proxy::ProxyArgs>),
    /// See the whole system work on this machine: CA, certificates, proxy, and six calls.
    #[command(after_help = "Examples:\n  ambos quickstart\n  ambos quickstart --dir /tmp/demo --exit")]
    Quickstart(cmd::quickstart::QuickstartArgs),
    /// Walk a real mTLS handshake step by step and say why it fails.
    #[command(
        after_help = "Examples:\n  ambos probe localhost:8443 --cert alice.crt --key alice.key --ca ca.crt\n  ambos probe api.acme.test:443 --ca ca.crt --json\n  ambos probe localhost:8443 --cert alice.crt --key alice.key --ca ca.crt --crl crls.pem   # is the server revoked? (crls.pem: ambos crl --all)"
    )]
    Probe(cmd::probe::ProbeArgs),
    /// Local plaintext listener that connects out with mTLS, for clients without certificates.
    #[command(
        after_help = "Examples:\n  ambos tunnel --listen 127.0.0.1:8080 --connect api.acme.test:8443 \\\n      --cert web.crt --key web.key --ca ca.crt --expect dns:api.acme.test\n  curl http://127.0.0.1:8080/\n  ambos tunnel --listen 127.0.0.1:8080 --connect api.acme.test:8443 --cert web.crt --key web.key \\\n      --ca ca.crt --crl crls.pem   # refuse a revoked server; crls.pem (ambos crl --all) re-read when it changes\n  ambos tunnel ... --crl-url https://ca:9443/v1/crl   # pulled every 60 s"
    )]
    Tunnel(ambos_proxy::tunnel::TunnelConfig),
    /// Load generator: mTLS handshakes or keep-alive requests per second against a TLS endpoint.
    #[command(
        after_help = "Examples:\n  ambos bench handshake --target 127.0.0.1:8443 --cert certs/alice.crt --key certs/alice.key \\\n      --ca certs/ca.crt --concurrency 8 --duration 10s\n  ambos bench http --target 127.0.0.1:8443 --cert ... --key ... --ca ... --count 100000 --json\n  ambos bench http --http2 --cheap-client --target 127.0.0.1:8443 --cert ... --key ... --duration 30s"
    )]
    Bench(ambos_bench::BenchFlags),
    /// Shell completions for bash, zsh, fish (or elvish, powershell) on stdout.
    #[command(
        after_help = "Examples:\n  source <(ambos completions bash)\n  ambos completions fish > ~/.config/fish/completions/ambos.fish"
    )]
    Completions { shell: clap_complete::Shell },
    /// The manual page (roff) on stdout.
    #[command(after_help = "Example:\n  ambos man > ambos.1 && man -l ambos.1")]
    Man,
}

/// Text made from the clap tree; a reader that stops early (`| head`) is no error.
fn print_generated(make: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>) -> anyhow::Result<()> {
    let mut text = Vec::new();
    make(&mut text)?;
    match std::io::Write::write_all(&mut std::io::stdout().lock(), &text) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// `probe` found a failure: the report is printed already; exit 1 quietly.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ProbeFailed(pub String);

/// Settings every CA command shares.
pub struct Global {
    pub dir: PathBuf,
    pub passphrase_file: Option<PathBuf>,
    pub store: Option<String>,
}

fn main() -> ExitCode {
    process::quiet_broken_pipe();
    // With --json (clap refuses it where a command has none), errors are JSON too.
    let json = std::env::args().take_while(|a| a != "--").any(|a| a == "--json");
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if json && e.use_stderr() => return json_error(e.to_string().lines().next().unwrap_or_default(), 2),
        Err(e) => e.exit(),
    };
    let json_logs = cli.log_format == "json";
    process::LOG_FORMAT.get_or_init(|| if json_logs { ambos_tls::daemon::LogFormat::Json } else { Default::default() });
    let global = Global { dir: cli.dir, passphrase_file: cli.passphrase_file, store: cli.store };
    let result = match cli.command {
        Command::Init(a) => cmd::init::init(&global, a),
        Command::Issue(a) => cmd::issue::issue(&global, *a),
        Command::Sign(a) => cmd::sign::sign(&global, a),
        Command::List(a) => cmd::list::list(&global, a),
        Command::Revoke(a) => cmd::revoke::revoke(&global, a),
        Command::Crl(a) => cmd::crl::crl(&global, a),
        Command::Export(k) => cmd::export::export(&global, k),
        Command::P12(a) => cmd::p12::p12(a),
        Command::Inspect(a) => cmd::inspect::run(a),
        Command::Proxy(a) => cmd::proxy::run(*a),
        Command::Tunnel(a) => cmd::tunnel::tunnel(a),
        Command::Probe(a) => cmd::probe::run(a),
        Command::Quickstart(a) => cmd::quickstart::run(a),
        Command::Serve(a) => cmd::serve::serve(&global, a),
        Command::Token(k) => cmd::token::token(&global, k),
        Command::Oauth(k) => cmd::oauth::oauth(&global, k),
        Command::Store(k) => cmd::store::store(&global, k),
        Command::Audit(a) => cmd::audit::audit(&global, a),
        Command::Enroll(a) => cmd::enroll::enroll(a),
        Command::Renew(a) => cmd::renew::renew(a),
        Command::Agent(a) => cmd::renew::agent(a),
        Command::Bootstrap(a) => cmd::enroll::bootstrap(a),
        Command::Bench(a) => cmd::bench::run(a),
        Command::Completions { shell } => print_generated(|out| {
            clap_complete::generate(shell, &mut Cli::command(), "ambos", out);
            Ok(())
        }),
        Command::Man => print_generated(|out| clap_mangen::Man::new(Cli::command()).render(out)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if err.downcast_ref::<ProbeFailed>().is_some() => ExitCode::from(1),
        Err(err) if json => json_error(&ambos_tls::error_chain(err.as_ref()), exit_code(&err)),
        Err(err) => {
            eprintln!("error: {}", ambos_tls::error_chain(err.as_ref()));
            ExitCode::from(exit_code(&err))
        }
    }
}

/// `{"error": "...", "exit_code": N}` on stderr: stdout keeps only the command's data.
fn json_error(message: &str, code: u8) -> ExitCode {
    let message = message.strip_prefix("error: ").unwrap_or(message);
    eprintln!("{}", serde_json::json!({"error": message, "exit_code": code}));
    ExitCode::from(code)
}

/// Exit codes scripts can trust: 2 for bad input or usage, 1 for a failed
/// operation. The outermost error of a type we know decides (each library
/// error says whether it is about the input).
fn exit_code(err: &anyhow::Error) -> u8 {
    fn known(cause: &(dyn std::error::Error + 'static)) -> Option<bool> {
        macro_rules! first_of {
            ($($t:ty),*) => { $(if let Some(e) = cause.downcast_ref::<$t>() { return Some(e.is_input()); })* };
        }
        first_of!(InputError, TlsError, PkiError, StoreError, ProxyError, BenchError, ProbeError, CaError);
        first_of!(FilesError, AgentError, QuickstartError);
        None
    }
    if err.chain().find_map(known) == Some(true) {
        2
    } else {
        1
    }
}
