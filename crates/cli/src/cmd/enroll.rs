//! `ambos enroll`: a first certificate from `ambos serve` for a one-time token.
use crate::cmd::CaConnection;
use crate::process::runtime;
use ambos_files::{ensure_dir, write_atomic_if_changed, write_identity, PUBLIC};
use ambos_pki::KeyType;
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;

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
    ensure_dir(&a.out)?;
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
