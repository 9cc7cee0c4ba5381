//! `ambos audit`: the CA's audit trail, from either store.
use crate::cmd::duration;
use crate::Global;
use ambos_ca::audit::Trail;
use clap::Args;

#[derive(Args)]
pub struct AuditArgs {
    /// Only entries of this last while (e.g. 1h, 7d).
    #[arg(long)]
    since: Option<String>,
    #[arg(long)]
    json: bool,
}

pub fn audit(g: &Global, a: AuditArgs) -> anyhow::Result<()> {
    let within = a.since.as_deref().map(|d| duration(d, "since")).transpose()?;
    let trail = Trail(g.open()?.audit_within(within)?);
    match a.json {
        true => println!("{}", serde_json::to_string_pretty(&trail.0)?),
        false => print!("{trail}"),
    }
    Ok(())
}
