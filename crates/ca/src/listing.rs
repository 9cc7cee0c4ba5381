//! `ambos list`: the certificates the CA issued, as a table or as JSON rows.
use ambos_pki::{rfc3339_unix as rfc3339, RevocationReason};
use ambos_store::CertRecord;
use std::fmt;

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

/// A table with a header line, names padded to the longest.
impl fmt::Display for Listing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.certs.is_empty() {
            return writeln!(f, "no certificates");
        }
        let w = self.certs.iter().map(|c| c.name.len()).max().unwrap_or(4).max(4);
        writeln!(f, "{:<32}  {:<w$}  {:<7}  {:<20}  STATUS", "SERIAL", "NAME", "PROFILE", "NOT AFTER")?;
        for c in &self.certs {
            let (serial, name, profile, status) = (&c.serial, &c.name, &c.profile, self.status(c));
            writeln!(f, "{serial:<32}  {name:<w$}  {profile:<7}  {:<20}  {status}", rfc3339(c.not_after))?;
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
    }
}
