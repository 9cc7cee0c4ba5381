//! Durable state of the ambos CA behind the [`CertStore`] trait: the CA's
//! own certificates and (encrypted) keys, every issued certificate,
//! revocations, CRL numbers, one-time enrollment tokens and settings.
//! SQLite is the embedded default; PostgreSQL lets several CA nodes share
//! one CA ([`Store`] is either, chosen by [`StoreLocation`]).
#![forbid(unsafe_code)]

mod any;
pub mod postgres;
mod sqlite;
#[cfg(test)]
mod suite;

pub use any::{Store, StoreLocation};
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

use std::fmt;
use std::path::PathBuf;
use thiserror::Error;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("no CA found in {0}: run `ambos init` first (or pass --dir)")]
    NotInitialised(PathBuf),
    #[error("a CA already exists in {0}; refusing to overwrite it")]
    AlreadyInitialised(PathBuf),
    #[error("no certificate with serial or name '{0}'")]
    UnknownCertificate(String),
    #[error("certificate {0} is already revoked")]
    AlreadyRevoked(String),
    #[error("serial {0} is already in the store")]
    DuplicateSerial(String),
    #[error(
        "the store at {path} has schema version {found}, newer than this ambos supports ({supported}); upgrade ambos"
    )]
    SchemaTooNew { path: PathBuf, found: i64, supported: i64 },
    // The OS error is in the text, not a `source`: joiners print it once.
    #[error("cannot open the store at {path}: {why}")]
    Open { path: PathBuf, why: std::io::Error },
    /// `--dir` cannot hold a CA: not a directory, or not writable.
    #[error("cannot create the CA in {dir}: {why}")]
    CannotCreate { dir: PathBuf, why: std::io::Error },
    #[error("store corrupt: {0}")]
    Corrupt(String),
    #[error("unknown enrollment token")]
    UnknownToken,
    #[error("the enrollment token was already used")]
    TokenSpent,
    #[error("the enrollment token has expired")]
    TokenExpired,
    #[error("no access-token grant with id {0}")]
    UnknownGrant(i64),
    #[error("access-token grant {0} is already revoked")]
    GrantRevoked(i64),
    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),
    #[error("database error: {}", postgres_text(.0))]
    Postgres(#[from] ::postgres::Error),
    #[error("store URL {url}: {why}")]
    BadUrl { url: String, why: String },
    #[error("cannot connect to the database {url}: {why}")]
    Connect { url: String, why: String },
    #[error("the database {0} has an older ambos schema: run `ambos store migrate` first")]
    SchemaMissing(String),
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
}

/// The server's own message for a database error, not just "db error".
fn postgres_text(e: &::postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => e.to_string(),
    }
}

impl StoreError {
    /// Whether the database could not be reached (down, restarting, the
    /// connection lost): nothing was done, and the same call may succeed
    /// later or on another node (the CA API answers 503).
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Connect { .. } | StoreError::Unavailable(_) => true,
            StoreError::Postgres(e) => {
                let io = std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>());
                // SQLSTATE class 08: connection exception; 57P0x: the server shutting down or starting.
                let code = e.code().map(|c| c.code()).unwrap_or_default();
                e.is_closed() || io || code.starts_with("08") || code.starts_with("57P")
            }
            _ => false,
        }
    }

    /// Whether what the caller asked for was wrong (exit code 2), not the store (1).
    pub fn is_input(&self) -> bool {
        matches!(
            self,
            StoreError::NotInitialised(_)
                | StoreError::AlreadyInitialised(_)
                | StoreError::UnknownCertificate(_)
                | StoreError::AlreadyRevoked(_)
                | StoreError::UnknownGrant(_)
                | StoreError::GrantRevoked(_)
                | StoreError::SchemaTooNew { .. }
                | StoreError::BadUrl { .. }
                | StoreError::Connect { .. }
                | StoreError::SchemaMissing(_)
                | StoreError::CannotCreate { .. }
        )
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Which of the CA's two certificates a record belongs to or was signed by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthorityRole {
    Root,
    Intermediate,
}

impl AuthorityRole {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthorityRole::Root => "root",
            AuthorityRole::Intermediate => "intermediate",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<Self> {
        match s {
            "root" => Ok(AuthorityRole::Root),
            "intermediate" => Ok(AuthorityRole::Intermediate),
            other => Err(StoreError::Corrupt(format!("unknown authority role '{other}'"))),
        }
    }
}

impl fmt::Display for AuthorityRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A CA certificate with its private key as PEM (encrypted unless the
/// operator chose `--no-passphrase`).
#[derive(Clone, Debug)]
pub struct AuthorityRecord {
    pub role: AuthorityRole,
    pub name: String,
    pub key_type: String,
    pub cert_der: Vec<u8>,
    pub key_pem: String,
    pub key_encrypted: bool,
    pub created_at: i64,
}

/// Both CA certificates, as loaded at start of every CA command.
#[derive(Clone, Debug)]
pub struct Authorities {
    pub root: AuthorityRecord,
    pub intermediate: AuthorityRecord,
}

/// A new CA as `ambos init` stores it, in one transaction: both CA
/// certificates and keys, the intermediate as a certificate the root issued
/// (listed and revoked like any other), and the first settings.
#[derive(Clone, Debug)]
pub struct NewCaRecords {
    pub root: AuthorityRecord,
    pub intermediate: AuthorityRecord,
    pub intermediate_cert: CertRecord,
    pub settings: Vec<(String, String)>,
}

/// Why and when a certificate was revoked; `reason` is the RFC 5280 code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Revocation {
    pub revoked_at: i64,
    pub reason: u8,
}

/// One issued certificate. `serial` is canonical lowercase hex.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CertRecord {
    pub serial: String,
    pub name: String,
    pub profile: String,
    pub issuer: AuthorityRole,
    pub subject: String,
    pub sans: Vec<String>,
    pub not_before: i64,
    pub not_after: i64,
    pub sha256: String,
    #[serde(skip)]
    pub cert_der: Vec<u8>,
    pub issued_at: i64,
    pub revocation: Option<Revocation>,
    /// May use the CA API's admin endpoints (revoke, list).
    pub admin: bool,
}

/// A one-time enrollment token. Only the SHA-256 of the secret is stored.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TokenRecord {
    pub hash: String,
    pub name: String,
    pub profile: String,
    pub sans: Vec<String>,
    pub ous: Vec<String>,
    /// Lifetime of the certificate it buys, in seconds.
    pub cert_ttl: i64,
    pub expires_at: i64,
    pub created_at: i64,
    pub spent_at: Option<i64>,
    pub spent_serial: Option<String>,
}

/// A key that signs access tokens (`ambos serve`'s token endpoint), with
/// its public JWK. The newest unretired key signs; a retired one is still
/// published until `publish_until`, when its last token has expired.
#[derive(Clone, Debug)]
pub struct SigningKeyRecord {
    pub kid: String,
    pub key_pem: String,
    pub key_encrypted: bool,
    pub public_jwk: String,
    pub created_at: i64,
    pub retired_at: Option<i64>,
    pub publish_until: Option<i64>,
}

/// Which audience and scopes an identity may get access tokens for.
#[derive(Clone, Debug, serde::Serialize)]
pub struct GrantRecord {
    pub id: i64,
    pub identity: String,
    pub audience: String,
    pub scopes: Vec<String>,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

/// Everything a store holds, to move a CA to another store (`ambos store
/// copy`) without changing a serial, a revocation, a spent token or a CRL
/// number.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub authorities: Authorities,
    /// In the order they were stored (the intermediate's first).
    pub certs: Vec<CertRecord>,
    pub tokens: Vec<TokenRecord>,
    pub settings: Vec<(String, String)>,
    /// The last CRL number of each issuer.
    pub crl_numbers: Vec<(AuthorityRole, u64)>,
    pub signing_keys: Vec<SigningKeyRecord>,
    pub grants: Vec<GrantRecord>,
    /// The audit trail, oldest first.
    pub audit: Vec<AuditRecord>,
}

/// One entry of the CA's audit trail: who did what to which certificate
/// or token, when, on which node, and whether it was done or refused.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AuditRecord {
    pub at: i64,
    /// The host (and for `ambos serve` the listen address) that did it.
    pub node: String,
    /// `cli`, `cert:SERIAL` (a client certificate), `token:HASH12` (an
    /// enrollment token, by the start of its hash), `admin:SERIAL`.
    pub actor: String,
    /// init, issue, sign, revoke, admin, token-create, enroll, renew,
    /// oauth-allow, oauth-revoke, key-rotate.
    pub action: String,
    /// The certificate's or token's name, or the grant's identity.
    pub subject: String,
    pub serial: Option<String>,
    /// `ok` or `refused`.
    pub outcome: String,
    pub detail: String,
}

/// What the console's activity chart counts: the audit trail's done
/// (`ok`) entries of these actions, by class.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Activity {
    /// `issue`, `sign` and `enroll`: a new certificate.
    Issuance,
    /// `renew`.
    Renewal,
    /// `revoke`.
    Revocation,
}

impl Activity {
    pub const ALL: [Activity; 3] = [Activity::Issuance, Activity::Renewal, Activity::Revocation];

    /// The class's number in the store's grouped query.
    pub(crate) fn from_index(i: i64) -> Option<Activity> {
        Activity::ALL.get(usize::try_from(i).ok()?).copied()
    }
}

/// The store's grouped query for [`CertStore::activity_per_day`], with
/// `since` as the placeholder `p`: day, class (0, 1, 2 as in
/// [`Activity::ALL`]) and count, through the audit time index.
pub(crate) fn activity_sql(p: &str) -> String {
    format!(
        "SELECT (at - {p}) / 86400 AS day, \
         CASE action WHEN 'renew' THEN 1 WHEN 'revoke' THEN 2 ELSE 0 END AS class, COUNT(*) \
         FROM audit WHERE at >= {p} AND outcome = 'ok' \
         AND action IN ('issue', 'sign', 'enroll', 'renew', 'revoke') \
         GROUP BY day, class ORDER BY day, class"
    )
}

/// How the audit trail names an enrollment token: the start of its hash
/// (never the secret).
pub fn token_actor(hash: &str) -> String {
    format!("token:{}", &hash[..hash.len().min(12)])
}

/// The audit entries of a group of spends, one per spend.
pub fn spend_entries(
    spends: &[(String, CertRecord)],
    results: &[Result<()>],
    now: i64,
    node: &str,
) -> Vec<AuditRecord> {
    spends
        .iter()
        .zip(results)
        .map(|((hash, cert), r)| AuditRecord {
            at: now,
            node: node.to_string(),
            actor: token_actor(hash),
            action: "enroll".into(),
            subject: cert.name.clone(),
            serial: r.as_ref().ok().map(|()| cert.serial.clone()),
            outcome: if r.is_ok() { "ok".into() } else { "refused".into() },
            detail: match r {
                Ok(()) => cert.profile.clone(),
                Err(e) => e.to_string(),
            },
        })
        .collect()
}

/// Selects certificates for `ambos list`.
#[derive(Clone, Debug, Default)]
pub struct CertFilter {
    /// Only unrevoked certificates that are valid at `now` and expire before this.
    pub expiring_before: Option<(i64, i64)>,
    pub revoked_only: bool,
    pub name: Option<String>,
    /// Only the newest unrevoked certificate of each name: a renewal
    /// supersedes the certificate it replaced.
    pub current: bool,
    pub profile: Option<String>,
    /// Only certificates signed by this authority (the intermediate: leaves).
    pub issuer: Option<AuthorityRole>,
    /// Serials starting with this (canonical lowercase hex).
    pub serial_prefix: Option<String>,
    /// Certificates with a SAN containing this, ignoring ASCII case.
    pub san: Option<String>,
    /// Only unrevoked certificates whose `not_after` is after this (valid at it).
    pub valid_at: Option<i64>,
    /// Only unrevoked certificates whose `not_after` is at or before this.
    pub expired_at: Option<i64>,
    /// Soonest expiry first instead of issuance order.
    pub by_expiry: bool,
    /// At most this many, after skipping `offset` (the console's pages).
    pub limit: Option<u32>,
    pub offset: u64,
}

impl CertFilter {
    /// The conditions and, with `page`, the tail (order, page) in SQL both
    /// stores speak, with `arg(value)` giving the placeholder of each bound value.
    pub(crate) fn sql<A>(&self, page: bool, mut arg: A) -> String
    where
        A: FnMut(FilterArg) -> String,
    {
        let mut sql = String::new();
        if let Some(name) = &self.name {
            sql.push_str(&format!(" AND name = {}", arg(FilterArg::Text(name.clone()))));
        }
        if let Some(profile) = &self.profile {
            sql.push_str(&format!(" AND profile = {}", arg(FilterArg::Text(profile.clone()))));
        }
        if let Some(issuer) = self.issuer {
            sql.push_str(&format!(" AND issuer = {}", arg(FilterArg::Text(issuer.as_str().into()))));
        }
        if let Some(prefix) = &self.serial_prefix {
            // Hex only, so no LIKE wildcard can slip in.
            let hex: String = prefix.chars().filter(char::is_ascii_hexdigit).collect::<String>().to_lowercase();
            // A range too: neither store's serial index serves LIKE (SQLite's is case-insensitive).
            if !hex.is_empty() {
                sql.push_str(&format!(" AND serial >= {}", arg(FilterArg::Text(hex.clone()))));
            }
            if let Some(end) = hex_prefix_end(&hex) {
                sql.push_str(&format!(" AND serial < {}", arg(FilterArg::Text(end))));
            }
            sql.push_str(&format!(" AND serial LIKE {}", arg(FilterArg::Text(format!("{hex}%")))));
        }
        if let Some(san) = &self.san {
            // Wildcards in the text are literal.
            let text = san.to_lowercase().replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
            let pattern = arg(FilterArg::Text(format!("%{text}%")));
            sql.push_str(&format!(" AND LOWER(sans) LIKE {pattern} ESCAPE '\\'"));
        }
        if self.revoked_only {
            sql.push_str(" AND revoked_at IS NOT NULL");
        }
        if self.current {
            sql.push_str(CURRENT_ONLY);
        }
        if let Some((now, before)) = self.expiring_before {
            sql.push_str(&format!(" AND revoked_at IS NULL AND not_after > {}", arg(FilterArg::Int(now))));
            sql.push_str(&format!(" AND not_after <= {}", arg(FilterArg::Int(before))));
        }
        if let Some(at) = self.valid_at {
            sql.push_str(&format!(" AND revoked_at IS NULL AND not_after > {}", arg(FilterArg::Int(at))));
        }
        if let Some(at) = self.expired_at {
            sql.push_str(&format!(" AND revoked_at IS NULL AND not_after <= {}", arg(FilterArg::Int(at))));
        }
        if !page {
            return sql;
        }
        sql.push_str(if self.by_expiry { " ORDER BY not_after, id" } else { " ORDER BY id" });
        if let Some(limit) = self.limit {
            let offset = self.offset.min(i64::MAX as u64) as i64;
            sql.push_str(&format!(
                " LIMIT {} OFFSET {}",
                arg(FilterArg::Int(limit.into())),
                arg(FilterArg::Int(offset))
            ));
        }
        sql
    }
}

/// The least lowercase-hex string above every string that starts with `hex`
/// ("a9f" gives "aa"); `None` when there is none ("", "fff").
fn hex_prefix_end(hex: &str) -> Option<String> {
    let kept = hex.trim_end_matches('f');
    let last = kept.chars().last()?;
    let next = if last == '9' { 'a' } else { char::from(last as u8 + 1) };
    Some(format!("{}{next}", &kept[..kept.len() - 1]))
}

/// A value bound in a [`CertFilter`]'s SQL.
pub(crate) enum FilterArg {
    Text(String),
    Int(i64),
}

/// The audit entries of a grant change, from the grant as stored (its id
/// is the insert's).
pub type GrantAudit<'a> = &'a dyn Fn(&GrantRecord) -> Vec<AuditRecord>;

/// `CertFilter::current` in SQL both stores speak: the certificate is the
/// newest (highest id) unrevoked one of its name.
pub(crate) const CURRENT_ONLY: &str = " AND revoked_at IS NULL AND id = (SELECT MAX(c2.id) FROM certificate c2 \
     WHERE c2.name = certificate.name AND c2.revoked_at IS NULL)";

/// The CA's storage. Every method that changes state is one transaction:
/// after a crash, a change is either all there or not at all. The methods
/// that take `audit` write those entries in that transaction: a change is
/// never there without its entries, nor its entries without it.
pub trait CertStore {
    /// The CA's certificates and keys; `NotInitialised` before `ambos init`.
    fn authorities(&self) -> Result<Authorities>;
    /// A CA setting (e.g. `crl_url`), if set.
    fn setting(&self, key: &str) -> Result<Option<String>>;
    /// Sets (or, with None, removes) a CA setting, in one statement.
    fn set_setting(&mut self, key: &str, value: Option<&str>) -> Result<()>;
    /// Stores a new CA in one transaction; refuses if one exists.
    fn init_authorities(&mut self, ca: &NewCaRecords, audit: &[AuditRecord]) -> Result<()>;
    /// Stores issued certificates in one transaction; a duplicate serial aborts it.
    fn insert_certs(&mut self, certs: &[CertRecord], audit: &[AuditRecord]) -> Result<()>;
    fn cert_by_serial(&self, serial: &str) -> Result<Option<CertRecord>>;
    fn certs_by_name(&self, name: &str) -> Result<Vec<CertRecord>>;
    fn list(&self, filter: &CertFilter) -> Result<Vec<CertRecord>>;
    /// How many certificates `filter` selects (its order and page aside).
    fn count_matching(&self, filter: &CertFilter) -> Result<u64>;
    /// How many certificates `filter` selects expire on each day after
    /// `from` (day 0 is the first 24 hours), for days with any: the
    /// console's timeline, without reading the certificates.
    fn expiries_per_day(&self, filter: &CertFilter, from: i64) -> Result<Vec<(i64, u64)>>;
    /// How many issuances, renewals and revocations were done on each day
    /// from `since` (day 0 is its first 24 hours), for days and classes
    /// with any: the console's activity chart, one grouped query.
    fn activity_per_day(&self, since: i64) -> Result<Vec<(i64, Activity, u64)>>;
    /// Marks a certificate revoked; unknown or already revoked serials are errors.
    fn revoke(&mut self, serial: &str, revocation: Revocation, audit: &[AuditRecord]) -> Result<CertRecord>;
    /// Serials revoked that were signed by `issuer`, for its CRL.
    fn revoked_by(&self, issuer: AuthorityRole) -> Result<Vec<(String, Revocation)>>;
    /// Allocates the next CRL number for `issuer` (monotonic, never reused).
    fn next_crl_number(&mut self, issuer: AuthorityRole) -> Result<u64>;
    /// Number of stored certificates (leaves and the intermediate).
    fn count(&self) -> Result<u64>;
    /// Stores new tokens in one transaction.
    fn insert_tokens(&mut self, tokens: &[TokenRecord], audit: &[AuditRecord]) -> Result<()>;
    fn token(&self, hash: &str) -> Result<Option<TokenRecord>>;
    /// The newest `limit` tokens (outstanding, spent and expired), newest first.
    fn recent_tokens(&self, limit: u32) -> Result<Vec<TokenRecord>>;
    /// Spends tokens and stores the certificates they bought: one transaction
    /// for the group, each spend all-or-nothing (a token works exactly once).
    /// Each spend's audit entry (`enroll`, by the token, on `node`) is in the
    /// same transaction.
    fn spend_tokens(&mut self, spends: &[(String, CertRecord)], now: i64, node: &str) -> Result<Vec<Result<()>>>;
    /// Marks a certificate as an administrator of the CA API.
    fn set_admin(&mut self, serial: &str, audit: &[AuditRecord]) -> Result<()>;
    /// Every token-signing key: the retired ones oldest first, then the current one.
    fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>>;
    /// Adds a signing key and, in the same transaction, retires the current
    /// one (published until `publish_old_until`).
    fn add_signing_key(&mut self, key: &SigningKeyRecord, publish_old_until: i64, audit: &[AuditRecord]) -> Result<()>;
    /// Stores a grant; returns its id. `audit` gets the grant with that id.
    fn insert_grant(&mut self, grant: &GrantRecord, audit: GrantAudit<'_>) -> Result<i64>;
    /// With an identity, its grants in force; without, every grant (revoked too).
    fn grants(&self, identity: Option<&str>) -> Result<Vec<GrantRecord>>;
    /// Revokes a grant; `audit` gets it as revoked.
    fn revoke_grant(&mut self, id: i64, now: i64, audit: GrantAudit<'_>) -> Result<GrantRecord>;
    /// How many certificates are revoked and the latest revocation time: a
    /// CA node re-signs its CRL when another node changed them.
    fn revocation_mark(&self) -> Result<(i64, i64)>;
    /// Appends entries to the audit trail (one transaction): entries of no
    /// change, such as a refused enrollment.
    fn record_audit(&mut self, events: &[AuditRecord]) -> Result<()>;
    /// The audit trail from `since` (unix seconds) on, oldest first.
    fn audit_since(&self, since: i64) -> Result<Vec<AuditRecord>>;
    /// The newest `limit` entries, newest first, of this action (exactly)
    /// and whose actor contains `actor` (the console's audit page).
    fn audit_recent(&self, action: Option<&str>, actor: Option<&str>, limit: u32) -> Result<Vec<AuditRecord>>;
    /// Everything in the store (one consistent read).
    fn snapshot(&self) -> Result<Snapshot>;
    /// Writes `snap` into a store without a CA, in one transaction;
    /// `AlreadyInitialised` if it has one.
    fn restore(&mut self, snap: &Snapshot) -> Result<()>;
}
