//! One file per command: its flags (clap), mapped to a library call, and
//! what it prints. Below: the flags and steps several commands share.
pub mod audit;
pub mod bench;
pub mod crl;
pub mod enroll;
pub mod export;
pub mod init;
pub mod inspect;
pub mod issue;
pub mod list;
pub mod oauth;
pub mod p12;
pub mod probe;
pub mod proxy;
pub mod quickstart;
pub mod renew;
pub mod revoke;
pub mod serve;
pub mod sign;
pub mod store;
pub mod token;
pub mod tunnel;

use crate::Global;
use ambos_agent::CaEndpoint;
use ambos_ca::CertificateAuthority;
use ambos_pki::{parse_duration, Authority, KeyType};
use ambos_probe::CrlSources;
use ambos_store::{AuthorityRole, StoreLocation};
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

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
    pub fn sources(&self) -> CrlSources {
        CrlSources { files: self.crl.clone(), url: self.crl_url.clone() }
    }
}

/// The names a certificate carries besides its CN (issue, token create).
#[derive(Args)]
pub struct NameArgs {
    /// Subject alternative name: dns:H, ip:A, uri:U or email:E (repeatable).
    #[arg(long = "san", value_name = "KIND:VALUE")]
    pub sans: Vec<String>,
    /// SPIFFE ID as URI SAN, e.g. spiffe://acme.test/checkout.
    #[arg(long)]
    pub spiffe: Option<String>,
    /// Organizational unit (repeatable); allow lists can match it with ou:NAME.
    #[arg(long = "ou")]
    pub ous: Vec<String>,
}

/// `--p12 [--p12-password-file F]` (issue, enroll, renew, agent).
#[derive(Args)]
pub struct P12Out {
    /// Also write NAME.p12 beside NAME.crt (AES-256, HMAC-SHA256), kept in step with it.
    #[arg(long)]
    p12: bool,
    /// File with the PKCS#12 password (else $AMBOS_P12_PASSWORD, else a prompt).
    #[arg(long, requires = "p12")]
    p12_password_file: Option<PathBuf>,
}

impl P12Out {
    pub fn password(&self) -> anyhow::Result<Option<ambos_pki::P12Password>> {
        let pw = || ambos_files::secret::p12_password(self.p12_password_file.as_deref());
        Ok(if self.p12 { Some(ambos_pki::P12Password(pw()?)) } else { None })
    }
}

#[derive(Args)]
pub struct CaConnection {
    /// Base URL of `ambos serve`, e.g. https://ca.internal:9443 (several nodes: comma-separated, tried in order)
    #[arg(long, env = "AMBOS_CA_URL")]
    pub ca_url: String,
    /// The CA root certificate (PEM) the API's certificate must chain to.
    #[arg(long)]
    pub root: PathBuf,
    #[command(flatten)]
    pub revocation: CrlArgs,
}

impl CaConnection {
    pub fn endpoint(&self) -> CaEndpoint {
        CaEndpoint { url: self.ca_url.clone(), root: self.root.clone(), crls: self.revocation.sources() }
    }
}

pub fn duration(text: &str, flag: &str) -> anyhow::Result<Duration> {
    parse_duration(text).with_context(|| format!("--{flag}"))
}

pub fn key_type(text: &str) -> anyhow::Result<KeyType> {
    text.parse::<KeyType>().context("--key-type")
}

impl Global {
    /// Where the CA is: `--store` (a PostgreSQL URL) or SQLite in `--dir`.
    pub fn store(&self) -> anyhow::Result<StoreLocation> {
        Ok(StoreLocation::new(&self.dir, self.store.as_deref())?)
    }

    pub fn open(&self) -> anyhow::Result<CertificateAuthority> {
        Ok(CertificateAuthority::open_at(&self.store()?)?)
    }
}

/// Opens the CA and unlocks the key of `role`, asking for the passphrase only if needed.
pub fn open_authority(g: &Global, role: AuthorityRole) -> anyhow::Result<(CertificateAuthority, Authority)> {
    let ca = g.open()?;
    let signer = unlock(g, &ca, role)?;
    Ok((ca, signer))
}

/// The CA key passphrase from --passphrase-file, $AMBOS_PASSPHRASE or a prompt.
pub fn ca_passphrase(g: &Global, confirm: bool) -> anyhow::Result<ambos_files::secret::Secret> {
    Ok(ambos_files::secret::ca_passphrase(g.passphrase_file.as_deref(), confirm)?)
}

pub fn unlock(g: &Global, ca: &CertificateAuthority, role: AuthorityRole) -> anyhow::Result<Authority> {
    let pass = if ca.keys_encrypted() { Some(ca_passphrase(g, false)?) } else { None };
    ca.authority(role, pass.as_ref().map(|p| p.as_bytes())).with_context(|| {
        format!("cannot unlock the {role} CA key in {}", g.store().map(|s| s.shown()).unwrap_or_default())
    })
}
