//! Certificate lifecycle without a human: `serve`, `token create`,
//! `enroll`, `renew` and `agent`.
use crate::files::{input_error, read_input, write_atomic, write_atomic_if_changed, PRIVATE, PUBLIC};
use crate::process::{init_logging, runtime, shutdown_signal};
use crate::Global;
use ambos_ca::client::CaClient;
use ambos_ca::server::{ServeLimits, ServeOptions};
use ambos_ca::{CertificateAuthority, TokenOptions};
use ambos_pki::{parse_duration, KeyType, PrivateKey, Profile, San};
use anyhow::Context;
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Args)]
pub struct ServeArgs {
    /// Address of the HTTPS API.
    #[arg(long, default_value = "127.0.0.1:9443")]
    listen: String,
    /// Extra SANs for the API's own certificate (localhost, 127.0.0.1, ::1 and the host name are always in).
    #[arg(long = "san", value_name = "KIND:VALUE")]
    sans: Vec<String>,
    /// nextUpdate of the published CRLs (re-signed at half of it and on every revocation).
    #[arg(long, default_value = "24h")]
    crl_validity: String,
    /// Lifetime of the API's own certificate (renewed by itself at 2/3).
    #[arg(long, default_value = "24h")]
    server_cert_ttl: String,
    /// Connections open at once; at the cap the oldest idle or handshaking one is closed for a new one.
    #[arg(long, default_value_t = 1000)]
    max_connections: usize,
    /// Connections open at once from one address (IPv6: one /64).
    #[arg(long, default_value_t = 256)]
    max_connections_per_source: usize,
    /// Time for a request head, from when the connection waits for a request (also the keep-alive idle time).
    #[arg(long, default_value = "10s")]
    header_timeout: String,
    /// Failed enrollment tokens from one address within --token-failure-window before it gets 429.
    #[arg(long, default_value_t = 10)]
    token_failure_limit: usize,
    #[arg(long, default_value = "1m")]
    token_failure_window: String,
}

#[derive(Subcommand)]
pub enum TokenKind {
    /// Create a one-time enrollment token bound to a name; prints the token alone.
    #[command(
        after_help = "Examples:\n  ambos token create web --spiffe spiffe://acme.test/web\n  ambos token create api.acme.test --profile server --san ip:10.0.0.5 --ttl 1h"
    )]
    Create(TokenCreateArgs),
}

#[derive(Args)]
pub struct TokenCreateArgs {
    /// Name the certificate will carry (CN; for servers also the first DNS SAN).
    name: String,
    #[arg(long, value_enum, default_value = "client")]
    profile: crate::ca_cmds::ProfileArg,
    #[arg(long = "san", value_name = "KIND:VALUE")]
    sans: Vec<String>,
    #[arg(long)]
    spiffe: Option<String>,
    #[arg(long = "ou")]
    ous: Vec<String>,
    /// How long the token can be used.
    #[arg(long, default_value = "10m")]
    ttl: String,
    /// Lifetime of the certificate it buys (default 30d servers, 24h clients).
    #[arg(long)]
    cert_ttl: Option<String>,
    /// Create this many tokens with the same terms (one per line), e.g. for a fleet.
    #[arg(long, default_value_t = 1)]
    count: usize,
}

#[derive(Args)]
pub struct CaConnection {
    /// Base URL of `ambos serve`, e.g. https://ca.internal:9443
    #[arg(long, env = "AMBOS_CA_URL")]
    ca_url: String,
    /// The CA root certificate (PEM) the API's certificate must chain to.
    #[arg(long)]
    root: PathBuf,
    #[command(flatten)]
    revocation: crate::probe_cmd::CrlArgs,
}

impl CaConnection {
    /// The CRLs of --crl / --crl-url (the URL's server verified against --root).
    async fn crls(&self) -> anyhow::Result<ambos_proxy::tunnel::SourcedCrls> {
        Ok(self.revocation.sources().load(std::slice::from_ref(&self.root)).await?)
    }

    /// A client of the CA API whose server is verified by `ambos_tls::ServerVerifier`
    /// against --root and, when given, the CRLs (fail closed).
    fn client(
        &self,
        crls: ambos_proxy::tunnel::SourcedCrls,
        identity: Option<(Vec<rustls_pki_types::CertificateDer<'static>>, rustls_pki_types::PrivateKeyDer<'static>)>,
    ) -> anyhow::Result<CaClient> {
        let trust = self.revocation.sources().server_trust(std::slice::from_ref(&self.root), "--root", crls)?;
        Ok(CaClient::with_trust(&self.ca_url, trust, identity)?)
    }
}

#[derive(Args)]
pub struct EnrollArgs {
    #[command(flatten)]
    ca: CaConnection,
    /// The one-time token (or $AMBOS_TOKEN).
    #[arg(long, env = "AMBOS_TOKEN", hide_env_values = true)]
    token: String,
    /// Output directory for NAME.crt, NAME.key (0600) and ca.crt.
    #[arg(long, default_value = ".")]
    out: PathBuf,
    /// File stem and CN to ask for (default: the token's name).
    name: Option<String>,
    #[arg(long, default_value = "ec-p256")]
    key_type: String,
}

#[derive(Args)]
pub struct RenewArgs {
    #[command(flatten)]
    ca: CaConnection,
    /// Current certificate chain (replaced in place, atomically).
    #[arg(long)]
    cert: PathBuf,
    /// Current key (replaced in place, atomically, unless --keep-key).
    #[arg(long)]
    key: PathBuf,
    /// Keep the current key instead of generating a new one.
    #[arg(long)]
    keep_key: bool,
}

#[derive(Args)]
pub struct AgentArgs {
    #[command(flatten)]
    renew: RenewArgs,
    /// Command run (via sh -c) after each successful renewal, e.g. a reload.
    #[arg(long)]
    exec: Option<String>,
    /// Fraction of the lifetime after which to renew.
    #[arg(long, default_value_t = 2.0 / 3.0, hide = true)]
    renew_at: f64,
}

fn duration(text: &str, flag: &str) -> anyhow::Result<Duration> {
    parse_duration(text).with_context(|| format!("--{flag}"))
}

/// A duration between 1 s and 24 h (0 would close every connection or
/// never count a failure; a huge one would overflow the timers).
fn bounded(text: &str, flag: &str) -> anyhow::Result<Duration> {
    let d = duration(text, flag)?;
    if d < Duration::from_secs(1) || d > Duration::from_secs(86_400) {
        return Err(input_error(format!("--{flag} '{text}' must be between 1s and 24h")));
    }
    Ok(d)
}

fn positive(n: usize, flag: &str) -> anyhow::Result<usize> {
    if n == 0 {
        return Err(input_error(format!("--{flag} must be at least 1")));
    }
    Ok(n)
}

pub fn serve(g: &Global, a: ServeArgs) -> anyhow::Result<()> {
    let listen = a.listen.parse().map_err(|_| input_error(format!("--listen '{}' is not an address", a.listen)))?;
    let sans = a.sans.iter().map(|s| s.parse::<San>()).collect::<Result<Vec<_>, _>>()?;
    let opts = ServeOptions {
        listen,
        sans,
        crl_validity: duration(&a.crl_validity, "crl-validity")?,
        server_cert_ttl: duration(&a.server_cert_ttl, "server-cert-ttl")?,
        limits: ServeLimits {
            max_connections: positive(a.max_connections, "max-connections")?,
            max_connections_per_source: positive(a.max_connections_per_source, "max-connections-per-source")?,
            header_timeout: bounded(&a.header_timeout, "header-timeout")?,
            token_failure_limit: positive(a.token_failure_limit, "token-failure-limit")?,
            token_failure_window: bounded(&a.token_failure_window, "token-failure-window")?,
            ..ServeLimits::default()
        },
    };
    let ca = CertificateAuthority::open(&g.dir)?;
    let pass = if ca.keys_encrypted() { Some(crate::ca_cmds::ca_passphrase(g, false)?) } else { None };
    drop(ca);
    init_logging();
    runtime()?.block_on(ambos_ca::server::serve(
        &g.dir,
        pass.as_ref().map(|p| p.as_bytes()),
        opts,
        shutdown_signal(),
    ))?;
    Ok(())
}

pub fn token(g: &Global, kind: TokenKind) -> anyhow::Result<()> {
    let TokenKind::Create(a) = kind;
    let profile: Profile = a.profile.into();
    let mut sans = a.sans.iter().map(|s| s.parse::<San>()).collect::<Result<Vec<_>, _>>()?;
    if let Some(id) = &a.spiffe {
        ambos_pki::validate_spiffe_id(id).map_err(|why| input_error(format!("--spiffe '{id}': {why}")))?;
        sans.push(San::Uri(id.clone()));
    }
    let opts = TokenOptions {
        name: a.name.clone(),
        profile,
        sans,
        ous: a.ous.clone(),
        cert_ttl: match &a.cert_ttl {
            Some(t) => duration(t, "cert-ttl")?,
            None => profile.default_ttl(),
        },
        ttl: duration(&a.ttl, "ttl")?,
    };
    if a.count == 0 || a.count > 1_000_000 {
        return Err(input_error("--count must be between 1 and 1000000"));
    }
    let mut ca = CertificateAuthority::open(&g.dir)?;
    let secrets = ca.create_tokens(&opts, a.count)?;
    let mut out = String::with_capacity(secrets.len() * 72);
    for s in secrets {
        out.push_str(&s);
        out.push('\n');
    }
    print!("{out}");
    Ok(())
}

/// Writes key then chain (then the root), each atomically: a reader that
/// sees the new certificate always finds its key.
fn write_identity(key_path: &Path, key: &PrivateKey, cert_path: &Path, chain_pem: &str) -> anyhow::Result<()> {
    write_atomic(key_path, key.pkcs8_pem().as_bytes(), PRIVATE, true)?;
    write_atomic(cert_path, chain_pem.as_bytes(), PUBLIC, true)?;
    Ok(())
}

pub fn enroll(a: EnrollArgs) -> anyhow::Result<()> {
    let key_type: KeyType = a.key_type.parse().context("--key-type")?;
    if let Some(n) = &a.name {
        ambos_pki::validate_name(n)?;
    }
    let rt = runtime()?;
    let crls = rt.block_on(a.ca.crls())?;
    let client = a.ca.client(crls, None)?;
    let key = key_type.generate()?;
    let csr = ambos_pki::create_csr(&key, a.name.as_deref(), &[])?;
    let issued = rt.block_on(client.enroll(&a.token, &ambos_pki::pem_encode("CERTIFICATE REQUEST", &csr)))?;
    let name = a.name.clone().unwrap_or_else(|| issued.name.clone());
    ambos_pki::validate_name(&name)?;
    crate::files::ensure_dir(&a.out)?;
    let cert_path = a.out.join(format!("{name}.crt"));
    write_identity(&a.out.join(format!("{name}.key")), &key, &cert_path, &issued.certificate)?;
    write_atomic_if_changed(&a.out.join("ca.crt"), issued.ca.as_bytes(), PUBLIC, true)?;
    println!(
        "enrolled '{}' serial {} valid until {} -> {}",
        issued.name,
        issued.serial,
        issued.not_after,
        cert_path.display()
    );
    Ok(())
}

/// One renewal over mTLS with the current files and `crls`; files change only on success.
async fn renew_once(
    a: &RenewArgs,
    crls: &ambos_proxy::tunnel::SourcedCrls,
) -> anyhow::Result<ambos_ca::client::Issued> {
    let chain = ambos_tls::load_certs(&a.cert)?;
    let current_key = ambos_tls::load_key(&a.key)?;
    let key_text =
        String::from_utf8(read_input(&a.key)?).map_err(|_| input_error(format!("{} is not PEM", a.key.display())))?;
    let old = PrivateKey::from_pem(&key_text, None).with_context(|| a.key.display().to_string())?;
    let id = ambos_tls::Identity::from_der(&chain[0])?;
    let client = a.ca.client(crls.clone(), Some((chain, current_key)))?;
    let (key, csr) = if a.keep_key {
        (old, None)
    } else {
        let key = old.key_type().generate()?;
        let csr = ambos_pki::create_csr(&key, id.cn.as_deref(), &[])?;
        (key, Some(ambos_pki::pem_encode("CERTIFICATE REQUEST", &csr)))
    };
    let issued = client.renew(csr.as_deref()).await?;
    write_identity(&a.key, &key, &a.cert, &issued.certificate)?;
    Ok(issued)
}

pub fn renew(a: RenewArgs) -> anyhow::Result<()> {
    let issued = runtime()?.block_on(async {
        let crls = a.ca.crls().await?;
        renew_once(&a, &crls).await
    })?;
    println!("renewed '{}' serial {} valid until {}", issued.name, issued.serial, issued.not_after);
    Ok(())
}

fn validity(path: &Path) -> anyhow::Result<(i64, i64)> {
    let chain = ambos_tls::load_certs(path)?;
    let (_, cert) =
        x509_parser::parse_x509_certificate(&chain[0]).map_err(|e| input_error(format!("{}: {e}", path.display())))?;
    Ok((cert.validity().not_before.timestamp(), cert.validity().not_after.timestamp()))
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Small jitter from the clock's nanoseconds: enough to spread a fleet.
fn jitter(max: Duration) -> Duration {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    max.mul_f64(f64::from(nanos % 1000) / 1000.0)
}

pub fn agent(a: AgentArgs) -> anyhow::Result<()> {
    if !(0.1..=0.95).contains(&a.renew_at) {
        return Err(input_error("--renew-at must be between 0.1 and 0.95"));
    }
    init_logging();
    let rt = runtime()?;
    rt.block_on(async move {
        // Bad CRL files or URL: an error now. Later they are read again
        // before each renewal (a failure then keeps the previous ones).
        let mut crls = a.renew.ca.crls().await?;
        loop {
            let (nb, na) = validity(&a.renew.cert)?;
            let lifetime = (na - nb).max(1) as f64;
            let due = nb + (lifetime * a.renew_at) as i64;
            let wait = Duration::from_secs((due - unix_now()).max(0) as u64) + jitter(Duration::from_secs_f64(lifetime * 0.02));
            tracing::info!(cert = %a.renew.cert.display(), "certificate valid until {na} (unix); next renewal in {:.0}s", wait.as_secs_f64());
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown_signal() => return Ok(()),
            }
            let max_backoff = Duration::from_secs_f64((lifetime / 10.0).clamp(1.0, 60.0));
            let mut backoff = Duration::from_secs(1).min(max_backoff);
            loop {
                if a.renew.ca.revocation.sources().enabled() {
                    match a.renew.ca.crls().await {
                        Ok(c) => crls = c,
                        Err(e) => tracing::warn!("cannot read the CRLs again, using the previous ones: {e:#}"),
                    }
                }
                match renew_once(&a.renew, &crls).await {
                    Ok(issued) => {
                        tracing::info!(serial = %issued.serial, "renewed; new certificate valid until {}", issued.not_after);
                        if let Some(cmd) = &a.exec {
                            match tokio::process::Command::new("sh").arg("-c").arg(cmd).status().await {
                                Ok(s) if s.success() => {}
                                Ok(s) => tracing::warn!("--exec '{cmd}' exited with {s}"),
                                Err(e) => tracing::warn!("--exec '{cmd}' failed to start: {e}"),
                            }
                        }
                        break;
                    }
                    Err(e) => {
                        tracing::warn!("renewal failed, keeping the current files, retrying in {:?}: {e:#}", backoff);
                        tokio::select! {
                            _ = tokio::time::sleep(backoff) => {}
                            _ = shutdown_signal() => return Ok(()),
                        }
                        backoff = (backoff * 2).min(max_backoff);
                    }
                }
            }
        }
    })
}
