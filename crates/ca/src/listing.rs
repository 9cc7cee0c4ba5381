//! `ambos list` and `GET /v1/certs`: which certificates (one [`ListQuery`]
//! for both), as a table, JSON rows or counts per status.
use ambos_pki::{parse_duration, rfc3339_unix as rfc3339, PkiError, RevocationReason};
use ambos_store::{CertFilter, CertRecord};
use std::fmt;

/// Which certificates to show: `ambos list`'s flags (with the `cli`
/// feature) and `/v1/certs`'s query parameters, by the same names.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only certificates issued to NAME (every renewal of it).
    #[cfg_attr(feature = "cli", arg(long))]
    pub name: Option<String>,
    /// Only the newest unrevoked certificate of each name (hides the ones renewals replaced).
    #[cfg_attr(feature = "cli", arg(long))]
    #[serde(default)]
    pub current: bool,
    /// Only valid, unrevoked certificates expiring within this duration (e.g. 7d).
    #[cfg_attr(feature = "cli", arg(long, value_name = "DURATION"))]
    pub expiring: Option<String>,
    /// Only revoked certificates.
    #[cfg_attr(feature = "cli", arg(long))]
    #[serde(default)]
    pub revoked: bool,
    /// Counts per status (valid, expired, revoked) instead of the certificates.
    #[cfg_attr(feature = "cli", arg(long))]
    #[serde(default)]
    pub summary: bool,
}

impl ListQuery {
    /// The store's filter as of `now` (unix seconds); a bad duration names `expiring`.
    pub fn filter(&self, now: i64) -> Result<CertFilter, PkiError> {
        let expiring = self
            .expiring
            .as_deref()
            .map(parse_duration)
            .transpose()
            .map_err(|e| PkiError::InvalidRequest(format!("--expiring / expiring=: {e}")))?;
        Ok(CertFilter {
            expiring_before: expiring.map(|d| (now, now.saturating_add(d.as_secs().min(i64::MAX as u64) as i64))),
            revoked_only: self.revoked,
            name: self.name.clone(),
            current: self.current,
            ..CertFilter::default()
        })
    }
}

/// Certificates as of `now` (unix seconds), which decides valid or expired.
pub struct Listing {
    pub certs: Vec<CertRecord>,
    pub now: i64,
}

impl Listing {
    fn status(&self, c: &CertRecord) -> &'static str {
        if c.revocation.is_some() {
            "revoked"
        } else if c.not_after < self.now {
            "expired"
        } else {
            "valid"
        }
    }

    /// How many certificates are valid, expired and revoked.
    pub fn summary(&self) -> Summary {
        let mut s = Summary { valid: 0, expired: 0, revoked: 0, total: self.certs.len() };
        for c in &self.certs {
            match self.status(c) {
                "revoked" => s.revoked += 1,
                "expired" => s.expired += 1,
                _ => s.valid += 1,
            }
        }
        s
    }

    /// One JSON object per certificate (`ambos list --json`).
    pub fn json(&self) -> serde_json::Value {
        let rows = self.certs.iter().map(|c| {
            serde_json::json!({
                "serial": c.serial, "name": c.name, "profile": c.profile, "issuer": c.issuer,
                "subject": c.subject, "sans": c.sans, "not_before": rfc3339(c.not_before),
                "not_after": rfc3339(c.not_after), "sha256": c.sha256, "status": self.status(c),
                "revoked_at": c.revocation.map(|r| rfc3339(r.revoked_at)),
                "revocation_reason": c.revocation.and_then(|r| RevocationReason::from_code(r.reason)).map(|r| r.as_str()),
            })
        });
        serde_json::Value::Array(rows.collect())
    }
}

/// Counts per status (`ambos list --summary`, `/v1/certs?summary=true`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    pub valid: usize,
    pub expired: usize,
    pub revoked: usize,
    pub total: usize,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Summary { valid, expired, revoked, total } = self;
        writeln!(f, "valid {valid}  expired {expired}  revoked {revoked}  total {total}")
    }
}

/// A table with a header line, names padded to the longest.
impl fmt::Display for Listing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.certs.is_empty() {
            return writeln!(f, "no certificates");
        }
        let w = self.certs.iter().map(|c| c.name.len()).max().unwrap_or(4).max(4);
        let pw = self.certs.iter().map(|c| c.profile.len()).max().unwrap_or(7).max(7);
        writeln!(f, "{:<32}  {:<w$}  {:<pw$}  {:<20}  STATUS", "SERIAL", "NAME", "PROFILE", "NOT AFTER")?;
        for c in &self.certs {
            let (serial, name, profile, status) = (&c.serial, &c.name, &c.profile, self.status(c));
            writeln!(f, "{serial:<32}  {name:<w$}  {profile:<pw$}  {:<20}  {status}", rfc3339(c.not_after))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ambos_store::{AuthorityRole, Revocation};

    fn record(name: &str, not_after: i64, revoked: bool) -> CertRecord {
        CertRecord {
            serial: format!("{:032x}", not_after),
            name: name.into(),
            profile: "client".into(),
            issuer: AuthorityRole::Intermediate,
            subject: format!("CN={name}"),
            sans: vec![],
            not_before: 0,
            not_after,
            sha256: String::new(),
            cert_der: vec![],
            issued_at: 0,
            revocation: revoked.then_some(Revocation { revoked_at: 50, reason: 1 }),
            admin: false,
        }
    }

    #[test]
    fn status_is_revoked_then_expired_then_valid() {
        let l = Listing {
            certs: vec![record("old", 10, false), record("gone", 10, true), record("checkout", 200, false)],
            now: 100,
        };
        let table = l.to_string();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert!(lines[0].starts_with("SERIAL") && lines[0].ends_with("STATUS"), "{table}");
        assert!(lines[1].ends_with("  expired") && lines[2].ends_with("  revoked"), "{table}");
        assert!(lines[3].contains("  checkout  client ") && lines[3].ends_with("  valid"), "{table}");
        let json = l.json();
        assert_eq!(json[1]["status"], "revoked");
        assert_eq!(json[1]["revocation_reason"], "key-compromise");
        assert_eq!(json[2]["revoked_at"], serde_json::Value::Null);
        assert_eq!(Listing { certs: vec![], now: 0 }.to_string(), "no certificates\n");
        let summary = l.summary();
        assert_eq!(summary, Summary { valid: 1, expired: 1, revoked: 1, total: 3 });
        assert_eq!(summary.to_string(), "valid 1  expired 1  revoked 1  total 3\n");
    }

    #[test]
    fn a_query_becomes_the_store_filter() {
        let q =
            ListQuery { name: Some("web".into()), current: true, expiring: Some("7d".into()), ..Default::default() };
        let f = q.filter(1000).unwrap();
        assert_eq!(
            (f.name.as_deref(), f.current, f.expiring_before),
            (Some("web"), true, Some((1000, 1000 + 7 * 86_400)))
        );
        let bad = ListQuery { expiring: Some("soon".into()), ..Default::default() }.filter(0).unwrap_err();
        assert!(bad.to_string().starts_with("--expiring / expiring=: invalid duration 'soon'"), "{bad}");
        let q: ListQuery = serde_urlencoded::from_str("current=true&expiring=30d&summary=true").unwrap();
        assert!(q.current && q.summary && q.expiring.as_deref() == Some("30d"));
        assert!(serde_urlencoded::from_str::<ListQuery>("bogus=1").is_err(), "unknown parameters are refused");
    }
}
