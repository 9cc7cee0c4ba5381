//! `ambos p12`: a certificate chain and its key as a PKCS#12 keystore.
use crate::input::read_input;
use ambos_files::secret::{key_passphrase, p12_password};
use ambos_files::{write_atomic, PRIVATE};
use ambos_pki::{PkiError, PrivateKey};
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct P12Args {
    /// Certificate chain, PEM (leaf first) or one DER certificate.
    #[arg(long)]
    cert: PathBuf,
    /// Private key, PEM or DER: PKCS#8 (plain or encrypted), SEC1 or PKCS#1.
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
    /// File with the passphrase of an encrypted --key (else $AMBOS_KEY_PASSPHRASE, else a prompt).
    #[arg(long, env = "AMBOS_KEY_PASSPHRASE_FILE")]
    key_passphrase_file: Option<PathBuf>,
}

pub fn p12(a: P12Args) -> anyhow::Result<()> {
    let chain =
        ambos_pki::certs_from_pem_or_der(&read_input(&a.cert)?).with_context(|| a.cert.display().to_string())?;
    let key_bytes = read_input(&a.key)?;
    let key = match PrivateKey::from_pem_or_der(&key_bytes, None) {
        Err(PkiError::PassphraseRequired) => {
            let pass = key_passphrase(a.key_passphrase_file.as_deref())?;
            PrivateKey::from_pem_or_der(&key_bytes, Some(pass.as_bytes()))
        }
        other => other,
    }
    .with_context(|| a.key.display().to_string())?;
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
