//! `ambos enroll`: a first certificate from `ambos serve` for a one-time token;
//! `ambos bootstrap`: the root to give it as `--root`, checked by its fingerprint.
use crate::cmd::key_type;
use crate::process::runtime;
use ambos_agent::EnrollOptions;
use ambos_agent::{CaConnection, P12Out};
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
    #[command(flatten)]
    p12: P12Out,
    /// Print the result as JSON: name, serial, not_after, cert (the file written).
    #[arg(long)]
    json: bool,
}

pub fn enroll(a: EnrollArgs) -> anyhow::Result<()> {
    let opts = EnrollOptions {
        token: a.token,
        name: a.name,
        key_type: key_type(&a.key_type)?,
        out: a.out,
        p12: a.p12.password()?,
    };
    let done = runtime()?.block_on(ambos_agent::enroll(&a.ca.endpoint(), &opts))?;
    let (i, cert) = (&done.issued, done.cert.display());
    match a.json {
        true => println!(
            "{}",
            serde_json::json!({"name": i.name, "serial": i.serial, "not_after": i.not_after, "cert": cert.to_string()})
        ),
        false => println!("enrolled '{}' serial {} valid until {} -> {cert}", i.name, i.serial, i.not_after),
    }
    Ok(())
}

pub fn bootstrap(a: ambos_agent::BootstrapFlags) -> anyhow::Result<()> {
    let path = runtime()?.block_on(ambos_agent::bootstrap(&a.options()))?;
    println!("the root of {} has the fingerprint given -> {}", a.ca_url, path.display());
    Ok(())
}
