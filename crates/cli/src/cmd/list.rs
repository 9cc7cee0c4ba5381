//! `ambos list`: the certificates the CA issued.
use crate::Global;
use ambos_ca::{ListQuery, Listing, OffsetDateTime};
use clap::Args;

#[derive(Args)]
pub struct ListArgs {
    #[command(flatten)]
    query: ListQuery,
    #[arg(long)]
    json: bool,
}

pub fn list(g: &Global, a: ListArgs) -> anyhow::Result<()> {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let filter = a.query.filter(now)?;
    let listing = Listing { certs: g.open()?.list(&filter)?, now };
    match (a.query.summary, a.json) {
        (true, true) => println!("{}", serde_json::to_string_pretty(&listing.summary())?),
        (true, false) => print!("{}", listing.summary()),
        (false, true) => println!("{}", serde_json::to_string_pretty(&listing.json())?),
        (false, false) => print!("{listing}"),
    }
    Ok(())
}
