//! The CA commands: init, issue, sign, list, revoke, crl, export, p12.
use crate::files::{ensure_dir, input_error, read_input, write_atomic, write_atomic_if_changed, PRIVATE, PUBLIC};
use crate::secrets::{self, Secret};
use crate::Global;
use ambos_ca::{CertSelector, CertificateAuthority, InitOptions, OffsetDateTime};
use ambos_pki::{
    format_duration, parse_duration, pem_encode, Authority, IssuedCert, KeyType, LeafRequest, LeafSpec, PrivateKey,
    Profile, RevocationReason, Serial,
};
use ambos_store::{AuthorityRole, CertFilter, CertRecord};
use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;
use time::format_description::well_known::Rfc3339;

#[derive(Args)]
pub struct InitArgs {
    /// Organisation name; the CAs become "NAME Root CA" and "NAME Intermediate CA".
    #[arg(long, default_value = "ambos")]
    name: String,
    /// ec-p256 | ec-p384 | ed25519 | rsa-2048 | rsa-3072 | rsa-4096
    #[arg(long, default_value = "ec-p256")]
    key_type: String,
    #[arg(long, default_value = "10y")]
    root_ttl: String,
    #[arg(long, default_value = "5y")]
    intermediate_ttl: String,
    /// Store the CA keys unencrypted (for tests and throwaway CAs only).
    #[arg(long)]
    no_passphrase: bool,
    /// Where `ambos serve` publishes the CRL (https://HOST:PORT/v1/crl): every
    /// certificate issued names it as CRL distribution point, and the
    /// intermediate names URL/root, where the root's CRL is published.
    #[arg(long, value_name = "URL")]
    crl_url: Option<String>,
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
pub enum IssueKind {
    /// A TLS server certificate (EKU serverAuth); NAME, if a host name or IP, is its first SAN.
    Server(LeafArgs),
    /// A TLS client certificate (EKU clientAuth).
    Client(LeafArgs),
}

#[derive(Args)]
pub struct LeafArgs {
    /// Common name and file stem: writes NAME.crt, NAME.key, ca.crt.
    #[arg(required_unless_present = "batch")]
    name: Option<String>,
    /// Subject alternative name: dns:H, ip:A, uri:U or email:E (repeatable).
    #[arg(long = "san", value_name = "KIND:VALUE")]
    sans: Vec<String>,
    /// SPIFFE ID as URI SAN, e.g. spiffe://acme.test/checkout.
    #[arg(long)]
    spiffe: Option<String>,
    /// Organizational unit (repeatable); allow lists can match it with ou:NAME.
    #[arg(long = "ou")]
    ous: Vec<String>,
    /// Organization (defaults to the CA's name).
    #[arg(long = "o")]
    organization: Option<String>,
    /// Lifetime (default 30d for servers, 24h for clients), capped by the intermediate's.
    #[arg(long)]
    ttl: Option<String>,
    /// Key type of the new key (default ec-p256).
    #[arg(long, default_value = "ec-p256")]
    key_type: String,
    /// Output directory.
    #[arg(long, default_value = ".")]
    out: PathBuf,
    /// Also write NAME.p12 (AES-256, HMAC-SHA256).
    #[arg(long)]
    p12: bool,
    /// File with the PKCS#12 password (else $AMBOS_P12_PASSWORD, else a prompt).
    #[arg(long)]
    p12_password_file: Option<PathBuf>,
    /// Issue many: CSV lines `name,profile,sans` (sans separated by spaces) or JSON lines.
    #[arg(long, conflicts_with_all = ["name", "sans", "spiffe"])]
    batch: Option<PathBuf>,
    /// Replace existing NAME.crt / NAME.key files.
    #[arg(long)]
    force: bool,
    /// Start of validity instead of now: +DURATION from now (e.g. +1h) or RFC 3339.
    #[arg(long, value_name = "WHEN")]
    not_before: Option<String>,
    /// Client certificate that may use the CA API's admin endpoints (revoke, list).
    #[arg(long, conflicts_with = "batch")]
    admin: bool,
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ProfileArg {
    Server,
    Client,
}

impl From<ProfileArg> for Profile {
    fn from(p: ProfileArg) -> Profile {
        match p {
            ProfileArg::Server => Profile::Server,
            ProfileArg::Client => Profile::Client,
        }
    }
}

#[derive(Args)]
pub struct SignArgs {
    /// The CSR, PEM or DER.
    csr: PathBuf,
    #[arg(long, value_enum)]
    profile: ProfileArg,
    #[arg(long)]
    ttl: Option<String>,
    /// Where to write the chain (leaf + intermediate); stdout if absent.
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct ListArgs {
    /// Only valid, unrevoked certificates expiring within this duration (e.g. 7d).
    #[arg(long)]
    expiring: Option<String>,
    /// Only revoked certificates.
    #[arg(long)]
    revoked: bool,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct RevokeArgs {
    /// Serial (hex, any case, colons allowed) or certificate name.
    target: String,
    /// Revoke through a remote `ambos serve` (needs an admin certificate) instead of the local store.
    #[arg(long, requires_all = ["root", "cert", "key"])]
    ca_url: Option<String>,
    /// CA root (PEM) for --ca-url.
    #[arg(long)]
    root: Option<PathBuf>,
    /// Admin client certificate for --ca-url.
    #[arg(long)]
    cert: Option<PathBuf>,
    /// Its key.
    #[arg(long)]
    key: Option<PathBuf>,
    /// unspecified | key-compromise | affiliation-changed | superseded | cessation-of-operation
    #[arg(long, default_value = "unspecified")]
    reason: String,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct CrlArgs {
    /// Write here (atomically) instead of stdout.
    #[arg(long)]
    out: Option<PathBuf>,
    /// DER instead of PEM.
    #[arg(long, conflicts_with = "all")]
    der: bool,
    /// Also the root's CRL (covering the intermediate), after the intermediate's.
    #[arg(long)]
    all: bool,
    /// Time until nextUpdate.
    #[arg(long, default_value = "7d")]
    validity: String,
    /// Load tests only: add N random serials that belong to no certificate.
    #[arg(long, hide = true, default_value_t = 0)]
    synthetic_entries: usize,
    /// Instead of publishing a CRL: set the CRL distribution point named in
    /// certificates issued from now on (`none` removes it).
    #[arg(long, value_name = "URL|none", conflicts_with_all = ["out", "der", "all"])]
    set_url: Option<String>,
}

/// A CRL URL for a distribution point: http:// or https:// with a host.
fn crl_url_arg(url: &str, flag: &str) -> anyhow::Result<String> {
    let ok = url
        .split_once("://")
        .is_some_and(|(scheme, rest)| matches!(scheme, "http" | "https") && !rest.is_empty() && !rest.starts_with('/'));
    if !ok || url.contains(char::is_whitespace) {
        return Err(input_error(format!("{flag} '{url}' is not an http:// or https:// URL")));
    }
    Ok(url.to_string())
}

#[derive(Subcommand)]
pub enum ExportKind {
    /// The root certificate as PEM or as a PKCS#12 truststore (Java trustedCertEntry).
    #[command(
        after_help = "Examples:\n  ambos export truststore --out ca.pem\n  ambos export truststore --format p12 --out truststore.p12 --password-file pw.txt"
    )]
    Truststore(TruststoreArgs),
}

#[derive(Clone, Copy, ValueEnum)]
pub enum TrustFormat {
    Pem,
    P12,
}

#[derive(Args)]
pub struct TruststoreArgs {
    #[arg(long)]
    out: PathBuf,
    #[arg(long, value_enum, default_value = "pem")]
    format: TrustFormat,
    /// File with the PKCS#12 password (else $AMBOS_P12_PASSWORD, else a prompt).
    #[arg(long)]
    password_file: Option<PathBuf>,
}

#[derive(Args)]
pub struct P12Args {
    /// Certificate chain, PEM (leaf first).
    #[arg(long)]
    cert: PathBuf,
    /// Private key, PEM (PKCS#8, SEC1 or PKCS#1).
    #[arg(long)]
    key: PathBuf,
    #[arg(long)]
    out: PathBuf,
    /// Entry alias (default: the file stem of --cert).
    #[arg(long)]
    alias: Option<String>,
    /// File with the PKCS#12 password (else $AMBOS_P12_PASSWORD, else a prompt).
    #[arg(long)]
    password_file: Option<PathBuf>,
}

fn duration(text: &str, flag: &str) -> anyhow::Result<Duration> {
    parse_duration(text).with_context(|| format!("--{flag}"))
}

fn key_type(text: &str) -> anyhow::Result<KeyType> {
    text.parse::<KeyType>().context("--key-type")
}

fn rfc3339(ts: i64) -> String {
    OffsetDateTime::from_unix_timestamp(ts).ok().and_then(|t| t.format(&Rfc3339).ok()).unwrap_or_default()
}

pub(crate) fn ca_passphrase(g: &Global, confirm: bool) -> anyhow::Result<Secret> {
    secrets::resolve(
        g.passphrase_file.as_deref(),
        "AMBOS_PASSPHRASE",
        "CA key passphrase",
        confirm,
        "CA passphrase (--passphrase-file)",
    )
}

fn p12_password(file: Option<&Path>) -> anyhow::Result<Secret> {
    secrets::resolve(
        file,
        "AMBOS_P12_PASSWORD",
        "PKCS#12 password",
        true,
        "PKCS#12 password (--p12-password-file / --password-file)",
    )
}

/// Opens the CA and unlocks the key of `role`, asking for the passphrase only if needed.
fn open_authority(g: &Global, role: AuthorityRole) -> anyhow::Result<(CertificateAuthority, Authority)> {
    let ca = CertificateAuthority::open(&g.dir)?;
    let signer = unlock(g, &ca, role)?;
    Ok((ca, signer))
}

fn unlock(g: &Global, ca: &CertificateAuthority, role: AuthorityRole) -> anyhow::Result<Authority> {
    let pass = if ca.keys_encrypted() { Some(ca_passphrase(g, false)?) } else { None };
    ca.authority(role, pass.as_ref().map(|p| p.as_bytes()))
        .with_context(|| format!("cannot unlock the {role} CA key in {}", g.dir.display()))
}

pub fn init(g: &Global, a: InitArgs) -> anyhow::Result<()> {
    let key_type = key_type(&a.key_type)?;
    let root_ttl = duration(&a.root_ttl, "root-ttl")?;
    let intermediate_ttl = duration(&a.intermediate_ttl, "intermediate-ttl")?;
    if a.name.trim().is_empty() || a.name.len() > 48 {
        return Err(input_error(format!("--name '{}' must be 1-48 characters", a.name)));
    }
    if g.dir.join(ambos_store::SqliteStore::FILE_NAME).exists() {
        return Err(ambos_store::StoreError::AlreadyInitialised(g.dir.clone()).into());
    }
    let passphrase = if a.no_passphrase {
        eprintln!("warning: CA keys are stored UNENCRYPTED in {} (--no-passphrase); anyone who can read it can issue certificates", g.dir.display());
        None
    } else {
        Some(ca_passphrase(g, true)?.as_bytes().to_vec())
    };
    let crl_url = a.crl_url.as_deref().map(|u| crl_url_arg(u, "--crl-url")).transpose()?;
    let opts = InitOptions { name: a.name.clone(), key_type, root_ttl, intermediate_ttl, passphrase, crl_url };
    let ca = CertificateAuthority::init(&g.dir, &opts)?;
    let root_path = g.dir.join("root.crt");
    let inter_path = g.dir.join("intermediate.crt");
    write_atomic(&root_path, pem_encode("CERTIFICATE", ca.root_der()).as_bytes(), PUBLIC, true)?;
    write_atomic(&inter_path, pem_encode("CERTIFICATE", ca.intermediate_der()).as_bytes(), PUBLIC, true)?;
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "dir": g.dir, "name": a.name, "key_type": key_type.as_str(),
                "root": root_path, "intermediate": inter_path, "encrypted": opts.passphrase.is_some(),
            })
        );
    } else {
        println!("created CA '{}' ({}) in {}", a.name, key_type, g.dir.display());
        println!("  root certificate:         {} (valid {})", root_path.display(), format_duration(root_ttl));
        println!("  intermediate certificate: {} (valid {})", inter_path.display(), format_duration(intermediate_ttl));
        println!("next: ambos issue server NAME --san dns:HOST   |   ambos issue client NAME");
    }
    Ok(())
}

#[derive(Serialize)]
struct IssuedJson<'a> {
    serial: String,
    name: &'a str,
    profile: &'a str,
    subject: &'a str,
    sans: Vec<String>,
    not_before: String,
    not_after: String,
    sha256: &'a str,
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    p12: Option<PathBuf>,
}

struct Outputs {
    dir: PathBuf,
    p12_password: Option<Secret>,
    durable: bool,
}

impl Outputs {
    fn paths(&self, name: &str) -> (PathBuf, PathBuf, PathBuf) {
        (
            self.dir.join(format!("{name}.crt")),
            self.dir.join(format!("{name}.key")),
            self.dir.join(format!("{name}.p12")),
        )
    }

    /// Writes NAME.key first: a .crt on disk always has its key beside it.
    fn write<'c>(&self, signer: &Authority, c: &'c IssuedCert) -> anyhow::Result<IssuedJson<'c>> {
        let (crt, key_path, p12_path) = self.paths(&c.name);
        let key = c.key.as_ref().context("issued certificate without a key")?;
        write_atomic(&key_path, key.pkcs8_pem().as_bytes(), PRIVATE, self.durable)?;
        write_atomic(&crt, signer.chain_pem(&c.cert_der).as_bytes(), PUBLIC, self.durable)?;
        let p12 = match &self.p12_password {
            Some(pw) => {
                let chain = vec![c.cert_der.clone(), signer.cert_der().to_vec()];
                let bytes = ambos_pki::keystore(&c.name, key, &chain, pw)?;
                write_atomic(&p12_path, &bytes, PRIVATE, self.durable)?;
                Some(p12_path)
            }
            None => None,
        };
        Ok(IssuedJson {
            serial: c.serial.to_hex(),
            name: &c.name,
            profile: c.profile.as_str(),
            subject: &c.subject,
            sans: c.sans.iter().map(ToString::to_string).collect(),
            not_before: c.not_before.format(&Rfc3339).unwrap_or_default(),
            not_after: c.not_after.format(&Rfc3339).unwrap_or_default(),
            sha256: &c.sha256,
            cert: crt,
            key: key_path,
            ca: self.dir.join("ca.crt"),
            p12,
        })
    }
}

pub fn issue(g: &Global, kind: IssueKind) -> anyhow::Result<()> {
    let (profile, a) = match kind {
        IssueKind::Server(a) => (Profile::Server, a),
        IssueKind::Client(a) => (Profile::Client, a),
    };
    let key_type = key_type(&a.key_type)?;
    let not_before = match &a.not_before {
        None => None,
        Some(w) => Some(match w.strip_prefix('+') {
            Some(d) => OffsetDateTime::now_utc() + duration(d, "not-before")?,
            None => OffsetDateTime::parse(w, &Rfc3339)
                .map_err(|_| input_error(format!("--not-before '{w}': expected +DURATION or an RFC 3339 time")))?,
        }),
    };
    let spec = LeafSpec {
        name: a.name.clone().unwrap_or_default(),
        profile,
        sans: a.sans.clone(),
        spiffe: a.spiffe.clone(),
        ous: a.ous.clone(),
        organization: a.organization.clone(),
        ttl: a.ttl.clone(),
        key_type,
    };
    let mut requests = match &a.batch {
        Some(file) => {
            let text = String::from_utf8(read_input(file)?)
                .map_err(|_| input_error(format!("{} is not UTF-8 text", file.display())))?;
            ambos_pki::parse_batch(&text, &file.display().to_string(), &spec)?
        }
        None => vec![LeafRequest::from_spec(&spec)?],
    };
    if a.admin && profile != Profile::Client {
        return Err(input_error("--admin is for client certificates"));
    }
    for r in &mut requests {
        r.not_before = not_before;
    }
    let outputs = Outputs {
        dir: a.out.clone(),
        p12_password: if a.p12 { Some(p12_password(a.p12_password_file.as_deref())?) } else { None },
        durable: a.batch.is_none(),
    };
    if !a.force {
        for r in &requests {
            let (crt, key, _) = outputs.paths(&r.name);
            for p in [crt, key] {
                if p.exists() {
                    return Err(input_error(format!("{} exists; use --force to replace it", p.display())));
                }
            }
        }
    }
    // Unlock (and fail on a wrong passphrase) before anything is issued.
    let (mut ca, signer) = open_authority(g, AuthorityRole::Intermediate)?;
    ensure_dir(&a.out)?;
    write_atomic_if_changed(
        &a.out.join("ca.crt"),
        pem_encode("CERTIFICATE", ca.root_der()).as_bytes(),
        PUBLIC,
        outputs.durable,
    )?;
    if a.batch.is_none() {
        let issued = ca.issue(&signer, &requests)?;
        let c = &issued[0];
        if a.admin {
            ca.set_admin(&c.serial)?;
        }
        let out = outputs.write(&signer, c)?;
        if a.json {
            println!("{}", serde_json::to_string_pretty(&out)?);
        } else {
            println!("issued {} certificate '{}' serial {}", c.profile, c.name, out.serial);
            println!("  subject:  {}", c.subject);
            if !out.sans.is_empty() {
                println!("  SANs:     {}", out.sans.join(", "));
            }
            println!("  valid:    {} .. {}", out.not_before, out.not_after);
            println!("  sha256:   {}", c.sha256);
            println!(
                "  wrote:    {} (chain), {} (key, 0600), {} (root CA)",
                out.cert.display(),
                out.key.display(),
                out.ca.display()
            );
            if let Some(p) = &out.p12 {
                println!("            {} (PKCS#12)", p.display());
            }
        }
        return Ok(());
    }

    // Batch: keys and signatures per certificate, one durable transaction per chunk.
    const CHUNK: usize = 500;
    let bar = indicatif::ProgressBar::new(requests.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} issuing [{bar:40}] {pos}/{len} {per_sec} eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let mut count = 0usize;
    for chunk in requests.chunks(CHUNK) {
        let issued = ca.issue(&signer, chunk)?;
        for c in &issued {
            let out = outputs.write(&signer, c)?;
            if a.json {
                println!("{}", serde_json::to_string(&out)?);
            }
        }
        count += issued.len();
        bar.inc(issued.len() as u64);
    }
    bar.finish_and_clear();
    if let Ok(d) = std::fs::File::open(&a.out) {
        let _ = d.sync_all();
    }
    if !a.json {
        println!("issued {count} certificates into {}", a.out.display());
    }
    Ok(())
}

pub fn sign(g: &Global, a: SignArgs) -> anyhow::Result<()> {
    let bytes = read_input(&a.csr)?;
    let der = ambos_pki::csr_from_pem_or_der(&bytes).with_context(|| a.csr.display().to_string())?;
    let profile: Profile = a.profile.into();
    let ttl = match &a.ttl {
        Some(t) => duration(t, "ttl")?,
        None => profile.default_ttl(),
    };
    // Check the request before asking for the passphrase.
    ambos_pki::inspect(&der, None, OffsetDateTime::now_utc()).with_context(|| a.csr.display().to_string())?;
    let (mut ca, signer) = open_authority(g, AuthorityRole::Intermediate)?;
    let issued = ca.sign_csr(&signer, &der, profile, ttl).with_context(|| a.csr.display().to_string())?;
    let chain = signer.chain_pem(&issued.cert_der);
    match &a.out {
        Some(p) => write_atomic(p, chain.as_bytes(), PUBLIC, true)?,
        None if !a.json => print!("{chain}"),
        None => {}
    }
    if a.json {
        println!(
            "{}",
            serde_json::json!({"serial": issued.serial.to_hex(), "name": issued.name, "subject": issued.subject,
                "sans": issued.sans.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "not_after": issued.not_after.format(&Rfc3339).unwrap_or_default(), "sha256": issued.sha256,
                "cert": a.out, "pem": if a.out.is_none() { Some(chain) } else { None }})
        );
    } else if let Some(p) = &a.out {
        println!("signed {} certificate '{}' serial {} -> {}", profile, issued.name, issued.serial, p.display());
    }
    Ok(())
}

fn status(c: &CertRecord, now: i64) -> &'static str {
    if c.revocation.is_some() {
        "revoked"
    } else if c.not_after < now {
        "expired"
    } else {
        "valid"
    }
}

pub fn list(g: &Global, a: ListArgs) -> anyhow::Result<()> {
    let ca = CertificateAuthority::open(&g.dir)?;
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let mut filter = CertFilter { revoked_only: a.revoked, ..CertFilter::default() };
    if let Some(e) = &a.expiring {
        let d = duration(e, "expiring")?;
        filter.expiring_before = Some((now, now + d.as_secs() as i64));
    }
    let certs = ca.list(&filter)?;
    if a.json {
        let rows: Vec<_> = certs
            .iter()
            .map(|c| {
                serde_json::json!({
                    "serial": c.serial, "name": c.name, "profile": c.profile, "issuer": c.issuer,
                    "subject": c.subject, "sans": c.sans, "not_before": rfc3339(c.not_before),
                    "not_after": rfc3339(c.not_after), "sha256": c.sha256, "status": status(c, now),
                    "revoked_at": c.revocation.map(|r| rfc3339(r.revoked_at)),
                    "revocation_reason": c.revocation.and_then(|r| RevocationReason::from_code(r.reason)).map(|r| r.as_str()),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if certs.is_empty() {
        println!("no certificates");
        return Ok(());
    }
    let w = certs.iter().map(|c| c.name.len()).max().unwrap_or(4).max(4);
    println!("{:<32}  {:<w$}  {:<7}  {:<20}  STATUS", "SERIAL", "NAME", "PROFILE", "NOT AFTER");
    for c in &certs {
        println!(
            "{:<32}  {:<w$}  {:<7}  {:<20}  {}",
            c.serial,
            c.name,
            c.profile,
            rfc3339(c.not_after),
            status(c, now)
        );
    }
    Ok(())
}

pub fn revoke(g: &Global, a: RevokeArgs) -> anyhow::Result<()> {
    let reason: RevocationReason = a.reason.parse().map_err(|e: String| input_error(format!("--reason: {e}")))?;
    if let (Some(url), Some(root), Some(cert), Some(key)) = (&a.ca_url, &a.root, &a.cert, &a.key) {
        let serial: Serial = a.target.parse().context("with --ca-url, give a serial")?;
        let root = ambos_pki::certs_from_pem(&read_input(root)?).with_context(|| root.display().to_string())?;
        let chain = ambos_tls_load(cert, key)?;
        let client =
            ambos_ca::client::CaClient::new(url, root.last().map(Vec::as_slice).unwrap_or_default(), Some(chain))?;
        let v = crate::process::small_runtime()?.block_on(client.revoke(&serial.to_hex(), reason.as_str()))?;
        if a.json {
            println!("{v}");
        } else {
            println!("revoked {} '{}' ({}) at {url}", serial, v["name"].as_str().unwrap_or(""), reason);
        }
        return Ok(());
    }
    let mut ca = CertificateAuthority::open(&g.dir)?;
    let selector = match a.target.parse::<Serial>() {
        Ok(s) if ca.resolve(&CertSelector::Serial(s.clone())).is_ok() => CertSelector::Serial(s),
        _ => CertSelector::Name(a.target.clone()),
    };
    let rec = ca.revoke(&selector, reason).map_err(|e| match e {
        ambos_ca::CaError::Store(ambos_store::StoreError::UnknownCertificate(_)) => {
            ambos_store::StoreError::UnknownCertificate(a.target.clone()).into()
        }
        other => anyhow::Error::from(other),
    })?;
    if a.json {
        println!("{}", serde_json::json!({"serial": rec.serial, "name": rec.name, "reason": reason.as_str()}));
    } else {
        println!("revoked {} '{}' ({}); publish it with: ambos crl --out crl.pem", rec.serial, rec.name, reason);
    }
    Ok(())
}

type Identity = (Vec<rustls_pki_types::CertificateDer<'static>>, rustls_pki_types::PrivateKeyDer<'static>);

fn ambos_tls_load(cert: &Path, key: &Path) -> anyhow::Result<Identity> {
    Ok((ambos_tls::load_certs(cert)?, ambos_tls::load_key(key)?))
}

pub fn crl(g: &Global, a: CrlArgs) -> anyhow::Result<()> {
    if let Some(url) = &a.set_url {
        let url = if url == "none" { None } else { Some(crl_url_arg(url, "--set-url")?) };
        let mut ca = CertificateAuthority::open(&g.dir)?;
        ca.set_crl_url(url.as_deref())?;
        match url {
            Some(u) => eprintln!("certificates issued from now on name {u} as CRL distribution point"),
            None => eprintln!("certificates issued from now on name no CRL distribution point"),
        }
        return Ok(());
    }
    let validity = duration(&a.validity, "validity")?;
    let (mut ca, signer) = open_authority(g, AuthorityRole::Intermediate)?;
    let der = ca.crl_with_synthetic(AuthorityRole::Intermediate, &signer, validity, a.synthetic_entries)?;
    let bytes = if a.der {
        der
    } else {
        let mut pem = pem_encode("X509 CRL", &der);
        if a.all {
            let root = unlock(g, &ca, AuthorityRole::Root)?;
            pem.push_str(&pem_encode("X509 CRL", &ca.crl(AuthorityRole::Root, &root, validity)?));
        }
        pem.into_bytes()
    };
    match &a.out {
        Some(p) => {
            write_atomic(p, &bytes, PUBLIC, true)?;
            eprintln!("wrote {}", p.display());
        }
        None => {
            use std::io::Write;
            std::io::stdout().write_all(&bytes)?;
        }
    }
    Ok(())
}

pub fn export(g: &Global, kind: ExportKind) -> anyhow::Result<()> {
    let ExportKind::Truststore(a) = kind;
    let ca = CertificateAuthority::open(&g.dir)?;
    match a.format {
        TrustFormat::Pem => write_atomic(&a.out, pem_encode("CERTIFICATE", ca.root_der()).as_bytes(), PUBLIC, true)?,
        TrustFormat::P12 => {
            let pw = p12_password(a.password_file.as_deref())?;
            let alias = format!("{}-root-ca", ca.name().to_ascii_lowercase().replace(' ', "-"));
            let bytes = ambos_pki::truststore(&[(alias, ca.root_der().to_vec())], &pw)?;
            write_atomic(&a.out, &bytes, PUBLIC, true)?;
        }
    }
    eprintln!("wrote {}", a.out.display());
    Ok(())
}

pub fn p12(a: P12Args) -> anyhow::Result<()> {
    let chain = ambos_pki::certs_from_pem(&read_input(&a.cert)?).with_context(|| a.cert.display().to_string())?;
    let key_text = String::from_utf8(read_input(&a.key)?)
        .map_err(|_| input_error(format!("{} is not PEM text", a.key.display())))?;
    let key = PrivateKey::from_pem(&key_text, None).with_context(|| a.key.display().to_string())?;
    let alias = a.alias.clone().unwrap_or_else(|| {
        a.cert.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "key".into())
    });
    let pw = p12_password(a.password_file.as_deref())?;
    let bytes = ambos_pki::keystore(&alias, &key, &chain, &pw)
        .with_context(|| format!("{} and {}", a.cert.display(), a.key.display()))?;
    write_atomic(&a.out, &bytes, PRIVATE, true)?;
    eprintln!("wrote {} (alias '{alias}', {} certificates)", a.out.display(), chain.len());
    Ok(())
}
