//! `ambos crl`: publish the CRLs, or set the distribution point named in new certificates.
use crate::cmd::{duration, open_authority, unlock};
use crate::Global;
use ambos_files::{write_atomic, PUBLIC};
use ambos_pki::pem_encode;
use ambos_store::AuthorityRole;
use clap::Args;
use std::path::PathBuf;

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

pub fn crl(g: &Global, a: CrlArgs) -> anyhow::Result<()> {
    if let Some(url) = &a.set_url {
        let url = (url != "none").then_some(url);
        if let Some(u) = url {
            ambos_pki::check_crl_url(u, "--set-url")?;
        }
        let mut ca = g.open()?;
        ca.set_crl_url(url.map(String::as_str))?;
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
        None => std::io::Write::write_all(&mut std::io::stdout(), &bytes)?,
    }
    Ok(())
}
