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
use ambos_ca::CertificateAuthority;
use ambos_pki::{parse_duration, Authority, KeyType};
use ambos_store::{AuthorityRole, StoreLocation};
use anyhow::Context;
use clap::Args;
use std::time::Duration;

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
