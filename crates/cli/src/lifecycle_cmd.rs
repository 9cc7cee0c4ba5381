//! Certificate lifecycle without a human: `serve`, `token create`,
//! `enroll`, `renew` and `agent`.
use crate::files::{input_error, read_input, write_atomic, write_atomic_if_changed, PRIVATE, PUBLIC};
use crate::process::{init_logging, runtime, shutdown_signal};
use crate::Global;
use ambos_ca::client::CaClient;
use ambos_ca::renewer::{Renew, RenewOptions, Renewed, Renewer, Validity, RENEW_AT};
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

/// `--cert`, `--key`, `--keep-key` (and for the agent `--exec`, `--renew-at`) as plain options.
fn renew_options(a: &RenewArgs, exec: Option<String>, renew_at: f64) -> RenewOptions {
    RenewOptions { cert: a.cert.clone(), key: a.key.clone(), keep_key: a.keep_key, renew_at, exec }
}

/// One renewal over mTLS with the current files and `crls`; files change only on success.
async fn renew_once(
    o: &RenewOptions,
    ca: &CaConnection,
    crls: &ambos_proxy::tunnel::SourcedCrls,
) -> anyhow::Result<ambos_ca::client::Issued> {
    let chain = ambos_tls::load_certs(&o.cert)?;
    let current_key = ambos_tls::load_key(&o.key)?;
    let key_text =
        String::from_utf8(read_input(&o.key)?).map_err(|_| input_error(format!("{} is not PEM", o.key.display())))?;
    let old = PrivateKey::from_pem(&key_text, None).with_context(|| o.key.display().to_string())?;
    let id = ambos_tls::Identity::from_der(&chain[0])?;
    let client = ca.client(crls.clone(), Some((chain, current_key)))?;
    let (key, csr) = if o.keep_key {
        (old, None)
    } else {
        let key = old.key_type().generate()?;
        let csr = ambos_pki::create_csr(&key, id.cn.as_deref(), &[])?;
        (key, Some(ambos_pki::pem_encode("CERTIFICATE REQUEST", &csr)))
    };
    let issued = client.renew(csr.as_deref()).await?;
    write_identity(&o.key, &key, &o.cert, &issued.certificate)?;
    Ok(issued)
}

pub fn renew(a: RenewArgs) -> anyhow::Result<()> {
    let o = renew_options(&a, None, 2.0 / 3.0);
    let issued = runtime()?.block_on(async {
        let crls = a.ca.crls().await?;
        renew_once(&o, &a.ca, &crls).await
    })?;
    println!("renewed '{}' serial {} valid until {}", issued.name, issued.serial, issued.not_after);
    Ok(())
}

/// The agent's side of `ambos_ca::renewer`: files, CRLs, the CA client, signals.
struct Agent {
    opts: RenewOptions,
    ca: CaConnection,
    crls: ambos_proxy::tunnel::SourcedCrls,
}

impl Renew for Agent {
    type Error = anyhow::Error;

    fn validity(&self) -> anyhow::Result<Validity> {
        let chain = ambos_tls::load_certs(&self.opts.cert)?;
        let (_, cert) = x509_parser::parse_x509_certificate(&chain[0])
            .map_err(|e| input_error(format!("{}: {e}", self.opts.cert.display())))?;
        Ok(Validity {
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
        })
    }

    async fn refresh(&mut self) {
        if self.ca.revocation.sources().enabled() {
            match self.ca.crls().await {
                Ok(c) => self.crls = c,
                Err(e) => tracing::warn!("cannot read the CRLs again, using the previous ones: {e:#}"),
            }
        }
    }

    async fn renew(&mut self) -> anyhow::Result<Renewed> {
        let issued = renew_once(&self.opts, &self.ca, &self.crls).await?;
        Ok(Renewed { serial: issued.serial, not_after: issued.not_after })
    }

    async fn pause(&mut self, d: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => true,
            _ = shutdown_signal() => false,
        }
    }
}

pub fn agent(a: AgentArgs) -> anyhow::Result<()> {
    if !RENEW_AT.contains(&a.renew_at) {
        return Err(input_error("--renew-at must be between 0.1 and 0.95"));
    }
    init_logging();
    let opts = renew_options(&a.renew, a.exec, a.renew_at);
    runtime()?.block_on(async move {
        // Bad CRL files or URL: an error now. Later they are read again
        // before each renewal (a failure then keeps the previous ones).
        let crls = a.renew.ca.crls().await?;
        let mut agent = Agent { opts: opts.clone(), ca: a.renew.ca, crls };
        Renewer::new(opts).run(&mut agent).await
    })
}
