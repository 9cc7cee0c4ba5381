//! `ambos sign CSR`: sign an external certificate signing request.
use crate::cmd::{duration, open_authority};
use crate::input::read_input;
use crate::Global;
use ambos_ca::OffsetDateTime;
use ambos_files::{write_atomic, PUBLIC};
use ambos_pki::Profile;
use ambos_store::AuthorityRole;
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct SignArgs {
    /// The CSR, PEM or DER.
    csr: PathBuf,
    #[arg(long, value_enum)]
    profile: Profile,
    #[arg(long)]
    ttl: Option<String>,
    /// Where to write the chain (leaf + intermediate); stdout if absent.
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

pub fn sign(g: &Global, a: SignArgs) -> anyhow::Result<()> {
    let bytes = read_input(&a.csr)?;
    let der = ambos_pki::csr_from_pem_or_der(&bytes).with_context(|| a.csr.display().to_string())?;
    let profile = a.profile;
    let ttl = a.ttl.as_deref().map(|t| duration(t, "ttl")).transpose()?.unwrap_or(profile.default_ttl());
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
                "not_after": ambos_pki::rfc3339(issued.not_after), "sha256": issued.sha256,
                "cert": a.out, "pem": if a.out.is_none() { Some(chain) } else { None }})
        );
    } else if let Some(p) = &a.out {
        println!("signed {} certificate '{}' serial {} -> {}", profile, issued.name, issued.serial, p.display());
    }
    Ok(())
}
