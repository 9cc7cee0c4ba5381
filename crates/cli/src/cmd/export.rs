//! `ambos export truststore`: the root as PEM or as a PKCS#12 truststore.
use crate::Global;
use ambos_files::secret::p12_password;
use ambos_files::{write_atomic, PUBLIC};
use ambos_pki::pem_encode;
use clap::{Args, Subcommand, ValueEnum};
use std::path::PathBuf;

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

pub fn export(g: &Global, kind: ExportKind) -> anyhow::Result<()> {
    let ExportKind::Truststore(a) = kind;
    let ca = g.open()?;
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
