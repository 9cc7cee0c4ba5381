//! `ambos list`: the certificates the CA issued.
use crate::cmd::duration;
use crate::Global;
use ambos_ca::{CertificateAuthority, OffsetDateTime};
use ambos_pki::{rfc3339_unix as rfc3339, RevocationReason};
use ambos_store::{CertFilter, CertRecord};
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

fn status(c: &CertRecord, now: i64) -> &'static str {
    if c.revocation.is_some() {
        "revoked"
    } else if c.not_after < now {
        "expired"
    } else {
        "valid"
    }
}

pub fn list(g: &Global, a: ListArgs) -> anyhow::Result<()> {
    let ca = CertificateAuthority::open(&g.dir)?;
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let mut filter = CertFilter { revoked_only: a.revoked, ..CertFilter::default() };
    if let Some(e) = &a.expiring {
        let d = duration(e, "expiring")?;
        filter.expiring_before = Some((now, now + d.as_secs() as i64));
    }
    let certs = ca.list(&filter)?;
    if a.json {
        let rows: Vec<_> = certs
            .iter()
            .map(|c| {
                serde_json::json!({
                    "serial": c.serial, "name": c.name, "profile": c.profile, "issuer": c.issuer,
                    "subject": c.subject, "sans": c.sans, "not_before": rfc3339(c.not_before),
                    "not_after": rfc3339(c.not_after), "sha256": c.sha256, "status": status(c, now),
                    "revoked_at": c.revocation.map(|r| rfc3339(r.revoked_at)),
                    "revocation_reason": c.revocation.and_then(|r| RevocationReason::from_code(r.reason)).map(|r| r.as_str()),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if certs.is_empty() {
        println!("no certificates");
        return Ok(());
    }
    let w = certs.iter().map(|c| c.name.len()).max().unwrap_or(4).max(4);
    println!("{:<32}  {:<w$}  {:<7}  {:<20}  STATUS", "SERIAL", "NAME", "PROFILE", "NOT AFTER");
    for c in &certs {
        println!(
            "{:<32}  {:<w$}  {:<7}  {:<20}  {}",
            c.serial,
            c.name,
            c.profile,
            rfc3339(c.not_after),
            status(c, now)
        );
    }
    Ok(())
}
