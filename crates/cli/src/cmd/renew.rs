//! `ambos renew` (once) and `ambos agent` (forever, on the schedule of
//! `ambos_ca::renewer`): renewal over mTLS with the current certificate,
//! by `ambos_agent`.
use crate::process::{daemon, runtime};
use ambos_agent::{CaConnection, P12Out};
use ambos_ca::renewer::RenewOptions;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct RenewArgs {
    #[command(flatten)]
    ca: CaConnection,
    /// Current certificate chain (replaced in place, atomically).
    #[arg(long)]
    cert: PathBuf,
    /// Current key (replaced in place, atomically, unless --keep-key).
    #[arg(long)]
    key: PathBuf,
    /// Keep the current key instead of generating a new one.
    #[arg(long)]
    keep_key: bool,
    #[command(flatten)]
    p12: P12Out,
}

#[derive(Args)]
pub struct RenewCmd {
    #[command(flatten)]
    renew: RenewArgs,
    /// Print the result as JSON: name, serial, not_after.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct AgentArgs {
    #[command(flatten)]
    renew: RenewArgs,
    /// Command run (via sh -c) after each successful renewal, e.g. a reload.
    #[arg(long)]
    exec: Option<String>,
    /// Fraction of the lifetime after which to renew.
    #[arg(long, default_value_t = 2.0 / 3.0, hide = true)]
    renew_at: f64,
}

/// `--cert`, `--key`, `--keep-key` (and for the agent `--exec`, `--renew-at`) as plain options.
fn renew_options(a: &RenewArgs, exec: Option<String>, renew_at: f64) -> anyhow::Result<RenewOptions> {
    let p12 = a.p12.password()?;
    Ok(RenewOptions { cert: a.cert.clone(), key: a.key.clone(), keep_key: a.keep_key, renew_at, exec, p12 })
}

pub fn renew(c: RenewCmd) -> anyhow::Result<()> {
    let o = renew_options(&c.renew, None, 2.0 / 3.0)?;
    let i = runtime()?.block_on(ambos_agent::renew(&c.renew.ca.endpoint(), &o))?;
    match c.json {
        true => println!("{}", serde_json::json!({"name": i.name, "serial": i.serial, "not_after": i.not_after})),
        false => println!("renewed '{}' serial {} valid until {}", i.name, i.serial, i.not_after),
    }
    Ok(())
}

pub fn agent(a: AgentArgs) -> anyhow::Result<()> {
    let opts = renew_options(&a.renew, a.exec, a.renew_at)?;
    daemon(|control| ambos_agent::run_agent(a.renew.ca.endpoint(), opts, control))
}
