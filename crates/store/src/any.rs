//! The store a command uses, chosen at run time: SQLite in the CA's
//! directory (the default) or PostgreSQL at a `postgres://` URL.
use crate::{
    AuditRecord, Authorities, AuthorityRole, CertFilter, CertRecord, CertStore, GrantAudit, GrantRecord, NewCaRecords,
    PgStore, Result, Revocation, SigningKeyRecord, Snapshot, SqliteStore, StoreError, TokenRecord,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where the CA's state is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreLocation {
    /// SQLite: `ambos.db` in this directory.
    Dir(PathBuf),
    /// PostgreSQL: a `postgres://` (or `postgresql://`) URL.
    Postgres(String),
}

impl StoreLocation {
    /// `store` (`--store` / `AMBOS_STORE`: a `postgres://` URL or
    /// `sqlite:DIR`) if given, else SQLite in `dir` (`--dir`).
    pub fn new(dir: &Path, store: Option<&str>) -> Result<StoreLocation> {
        match store.map(str::trim).filter(|s| !s.is_empty()) {
            None => Ok(StoreLocation::Dir(dir.to_path_buf())),
            Some(s) if s.starts_with("postgres://") || s.starts_with("postgresql://") => {
                crate::postgres::parse_url(s)?;
                Ok(StoreLocation::Postgres(s.to_string()))
            }
            Some(s) => match s.strip_prefix("sqlite:") {
                Some(d) if !d.is_empty() => Ok(StoreLocation::Dir(PathBuf::from(d))),
                _ => Err(StoreError::BadUrl {
                    url: crate::postgres::redact(s),
                    why: "give postgres://USER@HOST/DB or sqlite:DIR".into(),
                }),
            },
        }
    }

    /// How messages name it (a URL without its password).
    pub fn shown(&self) -> String {
        match self {
            StoreLocation::Dir(d) => d.display().to_string(),
            StoreLocation::Postgres(url) => crate::postgres::redact(url),
        }
    }
}

/// SQLite or PostgreSQL behind one [`CertStore`].
pub enum Store {
    Sqlite(SqliteStore),
    Postgres(Box<PgStore>),
}

impl Store {
    /// Opens the store at `at`. SQLite: `create` makes the directory and
    /// database. PostgreSQL: `create` applies the schema migrations first
    /// (`ambos init` on a new database); without it the schema must be
    /// current. `tls`: the rustls configuration for a database URL whose
    /// `sslmode` is not `disable`.
    pub fn open(at: &StoreLocation, create: bool, tls: Option<Arc<rustls::ClientConfig>>) -> Result<Store> {
        match at {
            StoreLocation::Dir(dir) => Ok(Store::Sqlite(SqliteStore::open(dir, create)?)),
            StoreLocation::Postgres(url) => {
                if create {
                    PgStore::migrate(url, tls.clone())?;
                }
                Ok(Store::Postgres(Box::new(PgStore::open(url, tls)?)))
            }
        }
    }
}

/// Every method goes to the store inside. A PostgreSQL connection the
/// database closed (a restart, a failover) is only noticed when used: the
/// call is made again once on a new connection (it was one transaction, so
/// nothing of it was committed).
macro_rules! delegate {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            Store::Sqlite($s) => $call,
            Store::Postgres($s) => match $call {
                Err(StoreError::Postgres(e)) if e.is_closed() => {
                    $s.reconnect()?;
                    $call
                }
                other => other,
            },
        }
    };
}

impl CertStore for Store {
    fn authorities(&self) -> Result<Authorities> {
        delegate!(self, s => s.authorities())
    }
    fn setting(&self, key: &str) -> Result<Option<String>> {
        delegate!(self, s => s.setting(key))
    }
    fn set_setting(&mut self, key: &str, value: Option<&str>) -> Result<()> {
        delegate!(self, s => s.set_setting(key, value))
    }
    fn init_authorities(&mut self, ca: &NewCaRecords, audit: &[AuditRecord]) -> Result<()> {
        delegate!(self, s => s.init_authorities(ca, audit))
    }
    fn insert_certs(&mut self, certs: &[CertRecord], audit: &[AuditRecord]) -> Result<()> {
        delegate!(self, s => s.insert_certs(certs, audit))
    }
    fn cert_by_serial(&self, serial: &str) -> Result<Option<CertRecord>> {
        delegate!(self, s => s.cert_by_serial(serial))
    }
    fn certs_by_name(&self, name: &str) -> Result<Vec<CertRecord>> {
        delegate!(self, s => s.certs_by_name(name))
    }
    fn list(&self, filter: &CertFilter) -> Result<Vec<CertRecord>> {
        delegate!(self, s => s.list(filter))
    }
    fn revoke(&mut self, serial: &str, revocation: Revocation, audit: &[AuditRecord]) -> Result<CertRecord> {
        delegate!(self, s => s.revoke(serial, revocation, audit))
    }
    fn revoked_by(&self, issuer: AuthorityRole) -> Result<Vec<(String, Revocation)>> {
        delegate!(self, s => s.revoked_by(issuer))
    }
    fn next_crl_number(&mut self, issuer: AuthorityRole) -> Result<u64> {
        delegate!(self, s => s.next_crl_number(issuer))
    }
    fn audit_recent(&self, action: Option<&str>, actor: Option<&str>, limit: u32) -> Result<Vec<AuditRecord>> {
        delegate!(self, s => s.audit_recent(action, actor, limit))
    }
    fn count_matching(&self, filter: &CertFilter) -> Result<u64> {
        delegate!(self, s => s.count_matching(filter))
    }

    fn expiries_per_day(&self, filter: &CertFilter, from: i64) -> Result<Vec<(i64, u64)>> {
        delegate!(self, s => s.expiries_per_day(filter, from))
    }
    fn activity_per_day(&self, since: i64) -> Result<Vec<(i64, crate::Activity, u64)>> {
        delegate!(self, s => s.activity_per_day(since))
    }
    fn count(&self) -> Result<u64> {
        delegate!(self, s => s.count())
    }
    fn insert_tokens(&mut self, tokens: &[TokenRecord], audit: &[AuditRecord]) -> Result<()> {
        delegate!(self, s => s.insert_tokens(tokens, audit))
    }
    fn token(&self, hash: &str) -> Result<Option<TokenRecord>> {
        delegate!(self, s => s.token(hash))
    }
    fn recent_tokens(&self, limit: u32) -> Result<Vec<TokenRecord>> {
        delegate!(self, s => s.recent_tokens(limit))
    }
    fn spend_tokens(&mut self, spends: &[(String, CertRecord)], now: i64, node: &str) -> Result<Vec<Result<()>>> {
        delegate!(self, s => s.spend_tokens(spends, now, node))
    }
    fn set_admin(&mut self, serial: &str, audit: &[AuditRecord]) -> Result<()> {
        delegate!(self, s => s.set_admin(serial, audit))
    }
    fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>> {
        delegate!(self, s => s.signing_keys())
    }
    fn add_signing_key(&mut self, key: &SigningKeyRecord, publish_old_until: i64, audit: &[AuditRecord]) -> Result<()> {
        delegate!(self, s => s.add_signing_key(key, publish_old_until, audit))
    }
    fn insert_grant(&mut self, grant: &GrantRecord, audit: GrantAudit<'_>) -> Result<i64> {
        delegate!(self, s => s.insert_grant(grant, audit))
    }
    fn grants(&self, identity: Option<&str>) -> Result<Vec<GrantRecord>> {
        delegate!(self, s => s.grants(identity))
    }
    fn revoke_grant(&mut self, id: i64, now: i64, audit: GrantAudit<'_>) -> Result<GrantRecord> {
        delegate!(self, s => s.revoke_grant(id, now, audit))
    }
    fn revocation_mark(&self) -> Result<(i64, i64)> {
        delegate!(self, s => s.revocation_mark())
    }
    fn snapshot(&self) -> Result<Snapshot> {
        delegate!(self, s => s.snapshot())
    }
    fn record_audit(&mut self, events: &[AuditRecord]) -> Result<()> {
        delegate!(self, s => s.record_audit(events))
    }
    fn audit_since(&self, since: i64) -> Result<Vec<AuditRecord>> {
        delegate!(self, s => s.audit_since(since))
    }
    fn restore(&mut self, snap: &Snapshot) -> Result<()> {
        delegate!(self, s => s.restore(snap))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_location_is_the_directory_unless_a_store_url_is_given() {
        let dir = Path::new("/var/lib/ambos");
        assert_eq!(StoreLocation::new(dir, None).unwrap(), StoreLocation::Dir(dir.into()));
        assert_eq!(StoreLocation::new(dir, Some("sqlite:/srv/ca")).unwrap(), StoreLocation::Dir("/srv/ca".into()));
        let pg = StoreLocation::new(dir, Some("postgres://ca:pw@db/ambos")).unwrap();
        assert_eq!(pg.shown(), "postgres://ca:***@db/ambos");
        for bad in ["mysql://db/ambos", "sqlite:", "postgres://db/x?sslmode=nope"] {
            let e = StoreLocation::new(dir, Some(bad)).unwrap_err();
            assert!(e.is_input(), "{bad}: {e}");
        }
    }
}
