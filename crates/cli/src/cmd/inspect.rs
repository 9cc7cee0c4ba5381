//! `ambos inspect FILE`: what a certificate, chain, CSR, CRL, key or PKCS#12 holds.
use crate::input::read_input;
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct InspectArgs {
    /// PEM or DER file: certificate(s), CSR, CRL, private key or PKCS#12; or a JWT access token.
    file: PathBuf,
    /// Password of a PKCS#12 file (first line of this file; else $AMBOS_P12_PASSWORD, else empty).
    #[arg(long)]
    password_file: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

pub fn run(a: InspectArgs) -> anyhow::Result<()> {
    let bytes = read_input(&a.file)?;
    let password = match &a.password_file {
        Some(p) => Some(ambos_files::secret::first_line(p, true)?.to_string()),
        None => std::env::var("AMBOS_P12_PASSWORD").ok(),
    };
    let inspection = ambos_pki::inspect(&bytes, password.as_deref(), ambos_pki::OffsetDateTime::now_utc())
        .with_context(|| a.file.display().to_string())?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&inspection)?);
        return Ok(());
    }
    print!("{inspection}");
    Ok(())
}
