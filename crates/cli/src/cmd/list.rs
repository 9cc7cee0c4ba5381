//! `ambos list`: the certificates the CA issued.
use crate::cmd::duration;
use crate::Global;
use ambos_ca::{Listing, OffsetDateTime};
use ambos_store::CertFilter;
use clap::Args;

#[derive(Args)]
pub struct ListArgs {
    /// Only valid, unrevoked certificates expiring within this duration (e.g. 7d).
    #[arg(long)]
    expiring: Option<String>,
    /// Only revoked certificates.
    #[arg(long)]
    revoked: bool,
    #[arg(long)]
    json: bool,
}

pub fn list(g: &Global, a: ListArgs) -> anyhow::Result<()> {
    let ca = g.open()?;
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let mut filter = CertFilter { revoked_only: a.revoked, ..CertFilter::default() };
    if let Some(e) = &a.expiring {
        let d = duration(e, "expiring")?;
        filter.expiring_before = Some((now, now + d.as_secs() as i64));
    }
    let listing = Listing { certs: ca.list(&filter)?, now };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&listing.json())?);
    } else {
        print!("{listing}");
    }
    Ok(())
}
