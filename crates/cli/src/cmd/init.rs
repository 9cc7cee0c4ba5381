//! `ambos init`: create the root and the issuing intermediate CA.
use crate::cmd::ca_passphrase;
use crate::cmd::{duration, key_type};
use crate::Global;
use ambos_ca::{CertificateAuthority, InitOptions};
use ambos_files::{write_atomic, PUBLIC};
use ambos_pki::{format_duration, pem_encode};
use clap::Args;

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

pub fn init(g: &Global, a: InitArgs) -> anyhow::Result<()> {
    let key_type = key_type(&a.key_type)?;
    let root_ttl = duration(&a.root_ttl, "root-ttl")?;
    let intermediate_ttl = duration(&a.intermediate_ttl, "intermediate-ttl")?;
    let crl_url = a.crl_url.clone();
    let mut opts =
        InitOptions { name: a.name.clone(), key_type, root_ttl, intermediate_ttl, passphrase: None, crl_url };
    let store = g.store()?;
    // With PostgreSQL the root and intermediate certificates still go to --dir.
    opts.check_at(&store, &g.dir)?;
    if a.no_passphrase {
        eprintln!("warning: CA keys are stored UNENCRYPTED in {} (--no-passphrase); anyone who can read it can issue certificates", store.shown());
    } else {
        opts.passphrase = Some(ca_passphrase(g, true)?.as_bytes().to_vec());
    }
    let ca = CertificateAuthority::init_at(&store, &opts)?;
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
        println!("created CA '{}' ({}) in {}", a.name, key_type, store.shown());
        println!("  root certificate:         {} (valid {})", root_path.display(), format_duration(root_ttl));
        println!("  intermediate certificate: {} (valid {})", inter_path.display(), format_duration(intermediate_ttl));
        println!("next: ambos issue server NAME --san dns:HOST   |   ambos issue client NAME");
    }
    Ok(())
}
