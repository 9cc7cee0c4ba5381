//! The CA's audit trail: every init, issuance, signing, enrollment,
//! renewal, revocation, admin marking, token creation, grant change and
//! key rotation, and every refused enrollment or renewal, with who (the
//! CLI, a client certificate, an enrollment token), what, when and on
//! which node. Written to the store (`ambos audit` reads it from either
//! backend) and, on `ambos serve`, as a JSON line in the node's log. A
//! change's entries are built before it and written in its transaction,
//! then logged once it committed: after a crash, a change and its entries
//! are both there or neither is. A refusal changes nothing; its entry is
//! written alone (`CertStore::record_audit`).
use crate::{now, CertificateAuthority};
use ambos_store::{AuditRecord, CertStore};

/// Who acts for the CA: `cli` unless set (`cert:SERIAL` for a client of
/// `ambos serve`).
pub(crate) struct Actor {
    pub actor: String,
    pub node: String,
}

impl Default for Actor {
    fn default() -> Actor {
        let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
        Actor { actor: "cli".into(), node: if host.is_empty() { "localhost".into() } else { host } }
    }
}

impl Actor {
    /// The entries at `at` (unix seconds) by this actor; `by` overrides it
    /// per entry (an enrollment's token).
    pub(crate) fn records(&self, at: i64, entries: &[(Option<String>, Entry<'_>)]) -> Vec<AuditRecord> {
        entries
            .iter()
            .map(|(by, e)| AuditRecord {
                at,
                node: self.node.clone(),
                actor: by.clone().unwrap_or_else(|| self.actor.clone()),
                action: e.action.to_string(),
                subject: e.subject.to_string(),
                serial: e.serial.map(str::to_string),
                outcome: if e.refused.is_some() { "refused".into() } else { "ok".into() },
                detail: e.refused.clone().unwrap_or_else(|| e.detail.clone()),
            })
            .collect()
    }

    /// One entry at `at` by this actor.
    pub(crate) fn record(&self, at: i64, entry: Entry<'_>) -> Vec<AuditRecord> {
        self.records(at, &[(None, entry)])
    }
}

/// Logs entries as JSON lines (target `ambos::audit`): a change's once it
/// committed.
pub(crate) fn log(records: &[AuditRecord]) {
    for r in records {
        tracing::info!(target: "ambos::audit", "{}", serde_json::to_string(r).unwrap_or_default());
    }
}

/// What one entry says, before who and when are added.
pub struct Entry<'a> {
    pub action: &'a str,
    pub subject: &'a str,
    pub serial: Option<&'a str>,
    pub refused: Option<String>,
    pub detail: String,
}

impl<S: CertStore> CertificateAuthority<S> {
    /// Who the next changes are made for (`cert:SERIAL`, `admin:SERIAL`).
    pub fn acting_as(&mut self, actor: impl Into<String>) {
        self.actor.actor = actor.into();
    }

    /// The node name entries carry (`ambos serve`: host and listen address).
    pub fn on_node(&mut self, node: impl Into<String>) {
        self.actor.node = node.into();
    }

    /// Records what changes nothing (a refusal, a certificate sent again;
    /// `by`: who, if not the current actor): the entry is all there is to write. A failure to
    /// write it is logged, not returned: the caller answers the refusal.
    pub(crate) fn audit_no_change(&mut self, by: Option<String>, entry: Entry<'_>) {
        let records = self.actor.records(now().unix_timestamp(), &[(by, entry)]);
        log(&records);
        if let Err(e) = self.store.record_audit(&records) {
            tracing::error!("the audit trail could not be written: {e}");
        }
    }

    /// The trail of the last `within` (all of it without), oldest first (`ambos audit`).
    pub fn audit_within(&self, within: Option<std::time::Duration>) -> crate::Result<Vec<AuditRecord>> {
        let since = within.map_or(i64::MIN, |d| now().unix_timestamp().saturating_sub(d.as_secs() as i64));
        Ok(self.store.audit_since(since)?)
    }

    /// The newest `limit` entries of `action` by an actor containing `actor`.
    pub fn audit_recent(
        &self,
        action: Option<&str>,
        actor: Option<&str>,
        limit: u32,
    ) -> crate::Result<Vec<AuditRecord>> {
        Ok(self.store.audit_recent(action, actor, limit)?)
    }
}

/// `ambos audit`: the trail as a table.
pub struct Trail(pub Vec<AuditRecord>);

impl std::fmt::Display for Trail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return writeln!(f, "no audit entries");
        }
        writeln!(
            f,
            "{:<20}  {:<24}  {:<12}  {:<8}  {:<16}  {:<32}  DETAIL",
            "AT", "ACTOR", "ACTION", "OUTCOME", "SUBJECT", "SERIAL"
        )?;
        for e in &self.0 {
            let serial = e.serial.as_deref().unwrap_or("-");
            writeln!(
                f,
                "{:<20}  {:<24}  {:<12}  {:<8}  {:<16}  {serial:<32}  {}",
                ambos_pki::rfc3339_unix(e.at),
                e.actor,
                e.action,
                e.outcome,
                e.subject,
                e.detail
            )?;
        }
        Ok(())
    }
}
