//! `ambos inspect FILE`: what a certificate, chain, CSR, CRL, key or PKCS#12 holds.
use crate::input::{input_error, read_input};
use ambos_pki::{InspectedCert, Inspection};
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct InspectArgs {
    /// PEM or DER file: certificate(s), CSR, CRL, private key or PKCS#12.
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
        Some(p) => Some(
            String::from_utf8(read_input(p)?)
                .map_err(|_| input_error(format!("{} is not UTF-8", p.display())))?
                .lines()
                .next()
                .unwrap_or("")
                .to_string(),
        ),
        None => std::env::var("AMBOS_P12_PASSWORD").ok(),
    };
    let inspection = ambos_pki::inspect(&bytes, password.as_deref(), ambos_pki::OffsetDateTime::now_utc())
        .with_context(|| a.file.display().to_string())?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&inspection)?);
        return Ok(());
    }
    match &inspection {
        Inspection::Certificates { certificates } => {
            for (i, c) in certificates.iter().enumerate() {
                if certificates.len() > 1 {
                    println!("certificate {} of {}:", i + 1, certificates.len());
                }
                print_cert(c);
            }
        }
        Inspection::Csr(c) => {
            println!("certificate signing request");
            println!("  subject:    {}", c.subject);
            println!("  SANs:       {}", list_or_none(&c.sans));
            println!("  public key: {}", c.public_key);
            println!("  signature:  {}", if c.signature_valid { "valid" } else { "INVALID" });
        }
        Inspection::Crls { crls } => {
            for c in crls {
                println!("certificate revocation list");
                println!("  issuer:      {}", c.issuer);
                println!("  CRL number:  {}", c.crl_number.as_deref().unwrap_or("(none)"));
                println!("  this update: {}", c.this_update);
                println!("  next update: {}", c.next_update.as_deref().unwrap_or("(none)"));
                println!("  revoked:     {}", c.revoked.len());
                for r in &c.revoked {
                    println!("    {}  {}  {}", r.serial, r.revoked_at, r.reason);
                }
            }
        }
        Inspection::PrivateKey { key_type, encrypted } => {
            println!("private key");
            println!("  type:      {}", key_type.as_deref().unwrap_or("(encrypted)"));
            println!("  encrypted: {}", if *encrypted { "yes (PKCS#8 PBES2)" } else { "no" });
        }
        Inspection::Pkcs12 { certificates, private_keys } => {
            println!("PKCS#12 keystore: {private_keys} private key(s), {} certificate(s)", certificates.len());
            for c in certificates {
                print_cert(c);
            }
        }
    }
    Ok(())
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "(none)".into()
    } else {
        items.join(", ")
    }
}

fn print_cert(c: &InspectedCert) {
    println!("  subject:    {}", c.subject);
    println!("  issuer:     {}", c.issuer);
    println!("  serial:     {}", c.serial);
    println!("  validity:   {} .. {} ({})", c.not_before, c.not_after, c.status);
    println!("  SANs:       {}", list_or_none(&c.sans));
    println!("  EKU:        {}", list_or_none(&c.extended_key_usage));
    println!("  key usage:  {}", list_or_none(&c.key_usage));
    match (c.is_ca, c.path_len) {
        (true, Some(n)) => println!("  CA:         yes, path length {n}"),
        (true, None) => println!("  CA:         yes"),
        _ => println!("  CA:         no"),
    }
    println!("  public key: {}  signature: {}", c.public_key, c.signature_algorithm);
    println!("  sha256:     {}", c.sha256);
}
