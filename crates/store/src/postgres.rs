//! PostgreSQL: several `ambos serve` nodes share one CA. The rules that make
//! that safe live in the statements: a serial is unique (a collision is an
//! error, never an overwrite), a token is spent under a row lock by exactly
//! one node, a CRL number comes from a row lock (strictly increasing across
//! nodes), and every change is one transaction. The schema is versioned;
//! `migrate` applies it under an advisory lock, `open` refuses a schema it
//! does not know.
use crate::{
    AuditRecord, Authorities, AuthorityRecord, AuthorityRole, CertFilter, CertRecord, CertStore, GrantAudit,
    GrantRecord, NewCaRecords, Result, Revocation, SigningKeyRecord, Snapshot, StoreError, TokenRecord,
};
use postgres::{Client, GenericClient, Row, Statement, Transaction};
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

/// Schema migrations, applied in order; `ambos_schema.version` counts them.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE authority (
    role          TEXT PRIMARY KEY CHECK (role IN ('root', 'intermediate')),
    name          TEXT NOT NULL,
    key_type      TEXT NOT NULL,
    cert_der      BYTEA NOT NULL,
    key_pem       TEXT NOT NULL,
    key_encrypted BOOLEAN NOT NULL,
    created_at    BIGINT NOT NULL
);
CREATE TABLE certificate (
    id            BIGSERIAL PRIMARY KEY,
    serial        TEXT NOT NULL,
    name          TEXT NOT NULL,
    profile       TEXT NOT NULL,
    issuer        TEXT NOT NULL REFERENCES authority(role),
    subject       TEXT NOT NULL,
    sans          TEXT NOT NULL,
    not_before    BIGINT NOT NULL,
    not_after     BIGINT NOT NULL,
    sha256        TEXT NOT NULL,
    cert_der      BYTEA NOT NULL,
    issued_at     BIGINT NOT NULL,
    revoked_at    BIGINT,
    revocation_reason SMALLINT,
    admin         BOOLEAN NOT NULL DEFAULT FALSE
);
-- Serials are random and the CA's: one namespace across both issuers, as in SQLite.
CREATE UNIQUE INDEX certificate_serial ON certificate(serial);
CREATE INDEX certificate_name ON certificate(name);
CREATE INDEX certificate_not_after ON certificate(not_after);
CREATE INDEX certificate_revoked ON certificate(issuer, revoked_at) WHERE revoked_at IS NOT NULL;
CREATE TABLE crl_number (
    issuer TEXT PRIMARY KEY REFERENCES authority(role),
    last   BIGINT NOT NULL
);
CREATE TABLE token (
    hash        TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    profile     TEXT NOT NULL,
    sans        TEXT NOT NULL,
    ous         TEXT NOT NULL,
    cert_ttl    BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    spent_at    BIGINT,
    spent_serial TEXT
);
CREATE TABLE setting (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE signing_key (
    kid           TEXT PRIMARY KEY,
    key_pem       TEXT NOT NULL,
    key_encrypted BOOLEAN NOT NULL,
    public_jwk    TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    retired_at    BIGINT,
    publish_until BIGINT
);
CREATE TABLE oauth_grant (
    id          BIGSERIAL PRIMARY KEY,
    identity    TEXT NOT NULL,
    audience    TEXT NOT NULL,
    scopes      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);
CREATE INDEX oauth_grant_identity ON oauth_grant(identity) WHERE revoked_at IS NULL;
"#,
    r#"
CREATE TABLE audit (
    id       BIGSERIAL PRIMARY KEY,
    at       BIGINT NOT NULL,
    node     TEXT NOT NULL,
    actor    TEXT NOT NULL,
    action   TEXT NOT NULL,
    subject  TEXT NOT NULL,
    serial   TEXT,
    outcome  TEXT NOT NULL,
    detail   TEXT NOT NULL
);
CREATE INDEX audit_at ON audit(at);
"#,
    // The console: counts by state and the timeline from the index alone, and
    // an issuer's page in expiry order without a sort.
    r#"
CREATE INDEX certificate_state ON certificate(issuer, not_after, id, revoked_at);
"#,
];

/// Taken by `migrate` so that two nodes never apply a migration twice.
const MIGRATION_LOCK: i64 = 0x616d_626f_735f_6d69; // "ambos_mi"

/// A CA in a PostgreSQL database. One connection; the CA server gives each
/// thread that writes its own store.
pub struct PgStore {
    client: Mutex<Conn>,
    /// The URL without its password, for messages.
    shown: String,
    /// To connect again after the database went away (a restart, a failover).
    url: String,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

/// A connection and the statements prepared on it: the hot paths
/// (enrollment, token checks) prepare once, not at every call (a round trip
/// and a parse on the server each).
struct Conn {
    client: Client,
    prepared: HashMap<&'static str, Statement>,
}

impl Conn {
    fn prepared(&mut self, sql: &'static str) -> Result<Statement> {
        if let Some(s) = self.prepared.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql)?;
        self.prepared.insert(sql, s.clone());
        Ok(s)
    }
}

impl std::ops::Deref for Conn {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl std::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.client
    }
}

/// How to reach the database: the URL's libpq-style `sslmode`,
/// `sslrootcert`, `sslcert` and `sslkey`, which tokio-postgres does not
/// read itself (it would refuse them); the caller turns them into TLS.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PgTls {
    /// `disable`: no TLS; `prefer` (libpq's default), `require`,
    /// `verify-ca` or `verify-full`: TLS, and with rustls the server is
    /// always verified as `verify-full` does (chain and name).
    pub mode: String,
    pub root_cert: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// Splits a `postgres://` URL into what tokio-postgres reads and [`PgTls`].
pub fn parse_url(url: &str) -> Result<(postgres::Config, PgTls)> {
    let bad = |why: String| StoreError::BadUrl { url: redact(url), why };
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut tls = PgTls { mode: "prefer".into(), ..PgTls::default() };
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "sslmode" => match v {
                "disable" | "prefer" | "require" | "verify-ca" | "verify-full" => tls.mode = v.to_string(),
                other => {
                    return Err(bad(format!("sslmode={other}: disable, prefer, require, verify-ca or verify-full")))
                }
            },
            "sslrootcert" => tls.root_cert = Some(PathBuf::from(v)),
            "sslcert" => tls.cert = Some(PathBuf::from(v)),
            "sslkey" => tls.key = Some(PathBuf::from(v)),
            _ => kept.push(pair),
        }
    }
    let mode = if tls.mode == "disable" {
        "disable"
    } else if tls.mode == "prefer" {
        "prefer"
    } else {
        "require"
    };
    kept.push(match mode {
        "disable" => "sslmode=disable",
        "prefer" => "sslmode=prefer",
        _ => "sslmode=require",
    });
    let config: postgres::Config = format!("{base}?{}", kept.join("&")).parse().map_err(|e| bad(format!("{e}")))?;
    Ok((config, tls))
}

/// The URL with any password replaced by `***`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let (auth, host) = match rest.split_once('@') {
        Some(parts) => parts,
        None => return url.to_string(),
    };
    match auth.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

impl PgStore {
    /// Connects to `url` (`tls`: the rustls configuration for
    /// [`PgTls`]'s modes other than `disable`) and checks the schema: a
    /// database without it or with an older one must be migrated first, a
    /// newer one is refused.
    pub fn open(url: &str, tls: Option<std::sync::Arc<rustls::ClientConfig>>) -> Result<PgStore> {
        let store = PgStore::connect(url, tls)?;
        let supported = MIGRATIONS.len() as i64;
        match store.version()? {
            v if v == supported => Ok(store),
            v if v > supported => {
                Err(StoreError::SchemaTooNew { path: PathBuf::from(&store.shown), found: v, supported })
            }
            // No schema at all: no CA yet (`ambos init` makes both).
            0 => Err(StoreError::NotInitialised(PathBuf::from(&store.shown))),
            _ => Err(StoreError::SchemaMissing(store.shown.clone())),
        }
    }

    /// Applies the migrations this ambos knows (under an advisory lock, in
    /// one transaction); returns the versions before and after.
    pub fn migrate(url: &str, tls: Option<std::sync::Arc<rustls::ClientConfig>>) -> Result<(i64, i64)> {
        let store = PgStore::connect(url, tls)?;
        let supported = MIGRATIONS.len() as i64;
        let mut client = store.lock();
        let mut tx = client.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS ambos_schema (version BIGINT NOT NULL)")?;
        let found: Option<i64> = tx.query_opt("SELECT version FROM ambos_schema", &[])?.map(|r| r.get(0));
        let from = found.unwrap_or(0);
        if from > supported {
            return Err(StoreError::SchemaTooNew { path: PathBuf::from(&store.shown), found: from, supported });
        }
        for sql in &MIGRATIONS[from as usize..] {
            tx.batch_execute(sql)?;
        }
        match found {
            Some(_) => tx.execute("UPDATE ambos_schema SET version = $1", &[&supported])?,
            None => tx.execute("INSERT INTO ambos_schema (version) VALUES ($1)", &[&supported])?,
        };
        tx.commit()?;
        Ok((from, supported))
    }

    fn connect(url: &str, tls: Option<std::sync::Arc<rustls::ClientConfig>>) -> Result<PgStore> {
        let client = PgStore::client(url, tls.clone())?;
        let conn = Conn { client, prepared: HashMap::new() };
        Ok(PgStore { client: Mutex::new(conn), shown: redact(url), url: url.to_string(), tls })
    }

    fn client(url: &str, tls: Option<std::sync::Arc<rustls::ClientConfig>>) -> Result<Client> {
        let (config, pg_tls) = parse_url(url)?;
        let shown = redact(url);
        let fail = |e: postgres::Error| StoreError::Connect { url: shown.clone(), why: error_text(&e) };
        Ok(match (pg_tls.mode.as_str(), tls) {
            ("disable", _) => config.connect(postgres::NoTls).map_err(fail)?,
            (_, Some(tls)) => {
                config.connect(tokio_postgres_rustls::MakeRustlsConnect::new((*tls).clone())).map_err(fail)?
            }
            // libpq's default: TLS only where it can be had; without a CA to
            // verify the server, none.
            ("prefer", None) => config.connect(postgres::NoTls).map_err(fail)?,
            (mode, None) => {
                let why = format!("sslmode={mode} needs a TLS configuration (sslrootcert=FILE)");
                return Err(StoreError::BadUrl { url: shown, why });
            }
        })
    }

    fn version(&self) -> Result<i64> {
        let mut c = self.lock();
        let exists: bool = c.query_one("SELECT to_regclass('ambos_schema') IS NOT NULL", &[])?.get(0);
        if !exists {
            return Ok(0);
        }
        Ok(c.query_opt("SELECT version FROM ambos_schema", &[])?.map(|r| r.get(0)).unwrap_or(0))
    }

    fn lock(&self) -> MutexGuard<'_, Conn> {
        self.client.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new connection in place of one the database closed.
    pub fn reconnect(&self) -> Result<()> {
        let client = PgStore::client(&self.url, self.tls.clone())?;
        *self.lock() = Conn { client, prepared: HashMap::new() };
        Ok(())
    }

    /// Where the store is, as errors name it.
    pub fn shown(&self) -> &str {
        &self.shown
    }
}

/// The server's message (and its detail), not tokio-postgres' "db error".
fn error_text(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{}: {}", db.severity(), db.message());
    }
    let mut s = e.to_string();
    let mut cur = std::error::Error::source(e);
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Column lists as macros, so that `concat!` makes whole statements that
/// can be prepared once (a `&'static str` key).
macro_rules! cert_columns {
    () => {
        "serial, name, profile, issuer, subject, sans, not_before, not_after, sha256, cert_der, \
         issued_at, revoked_at, revocation_reason, admin"
    };
}
macro_rules! token_columns {
    () => {
        "hash, name, profile, sans, ous, cert_ttl, expires_at, created_at, spent_at, spent_serial"
    };
}
const CERT_COLUMNS: &str = cert_columns!();
const TOKEN_COLUMNS: &str = token_columns!();
const GRANT_COLUMNS: &str = "id, identity, audience, scopes, created_at, revoked_at";

fn lines(s: String) -> Vec<String> {
    s.split('\n').filter(|x| !x.is_empty()).map(str::to_string).collect()
}

fn cert_from_row(r: &Row) -> Result<CertRecord> {
    let revoked_at: Option<i64> = r.get(11);
    let reason: Option<i16> = r.get(12);
    Ok(CertRecord {
        serial: r.get(0),
        name: r.get(1),
        profile: r.get(2),
        issuer: AuthorityRole::parse(r.get(3))?,
        subject: r.get(4),
        sans: lines(r.get(5)),
        not_before: r.get(6),
        not_after: r.get(7),
        sha256: r.get(8),
        cert_der: r.get(9),
        issued_at: r.get(10),
        revocation: revoked_at.map(|at| Revocation { revoked_at: at, reason: reason.unwrap_or(0) as u8 }),
        admin: r.get(13),
    })
}

fn token_from_row(r: &Row) -> TokenRecord {
    TokenRecord {
        hash: r.get(0),
        name: r.get(1),
        profile: r.get(2),
        sans: lines(r.get(3)),
        ous: lines(r.get(4)),
        cert_ttl: r.get(5),
        expires_at: r.get(6),
        created_at: r.get(7),
        spent_at: r.get(8),
        spent_serial: r.get(9),
    }
}

fn grant_from_row(r: &Row) -> GrantRecord {
    let scopes: String = r.get(3);
    GrantRecord {
        id: r.get(0),
        identity: r.get(1),
        audience: r.get(2),
        scopes: scopes.split_whitespace().map(str::to_string).collect(),
        created_at: r.get(4),
        revoked_at: r.get(5),
    }
}

const INSERT_CERT: &str = "INSERT INTO certificate (serial, name, profile, issuer, subject, sans, not_before, \
                           not_after, sha256, cert_der, issued_at, admin) \
                           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";

/// One CA certificate and its (encrypted) key: at `init` and in a restored snapshot.
fn insert_authority(c: &mut impl GenericClient, rec: &AuthorityRecord) -> Result<()> {
    c.execute(
        "INSERT INTO authority (role, name, key_type, cert_der, key_pem, key_encrypted, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            &rec.role.as_str(),
            &rec.name,
            &rec.key_type,
            &rec.cert_der,
            &rec.key_pem,
            &rec.key_encrypted,
            &rec.created_at,
        ],
    )?;
    Ok(())
}

fn insert_cert(c: &mut impl GenericClient, rec: &CertRecord) -> Result<()> {
    insert_cert_with(c, INSERT_CERT, rec)
}

/// `sql` is [`INSERT_CERT`], or the statement prepared from it.
fn insert_cert_with<T: ?Sized + postgres::ToStatement>(
    c: &mut impl GenericClient,
    sql: &T,
    rec: &CertRecord,
) -> Result<()> {
    let res = c.execute(
        sql,
        &[
            &rec.serial,
            &rec.name,
            &rec.profile,
            &rec.issuer.as_str(),
            &rec.subject,
            &rec.sans.join("\n"),
            &rec.not_before,
            &rec.not_after,
            &rec.sha256,
            &rec.cert_der,
            &rec.issued_at,
            &rec.admin,
        ],
    );
    match res {
        Err(e) if e.code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION) => {
            Err(StoreError::DuplicateSerial(rec.serial.clone()))
        }
        other => other.map(|_| ()).map_err(Into::into),
    }
}

fn upsert_setting(c: &mut impl GenericClient, key: &str, value: Option<&str>) -> Result<()> {
    match value {
        Some(v) => c.execute(
            "INSERT INTO setting (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = $2",
            &[&key, &v],
        )?,
        None => c.execute("DELETE FROM setting WHERE key = $1", &[&key])?,
    };
    Ok(())
}

impl PgStore {
    /// `work` and the audit entries of what it did (`audit` of its result)
    /// in one transaction: a change that fails leaves no entry.
    fn write<'a, T>(
        &self,
        work: impl FnOnce(&mut Transaction<'_>) -> Result<T>,
        audit: impl FnOnce(&T) -> Cow<'a, [AuditRecord]>,
    ) -> Result<T> {
        let mut conn = self.lock();
        let stmt = conn.prepared(INSERT_AUDIT)?;
        let mut tx = conn.transaction()?;
        let done = work(&mut tx)?;
        insert_audit(&mut tx, &stmt, &audit(&done))?;
        tx.commit()?;
        Ok(done)
    }

    /// One group of spends in one transaction. Every token of the group is
    /// locked first, in hash order: two nodes committing overlapping groups
    /// then wait for each other instead of deadlocking; the one that comes
    /// second reads the tokens spent.
    fn spend_group(&self, spends: &[(String, CertRecord)], now: i64, node: &str) -> Result<Vec<Result<()>>> {
        let mut conn = self.lock();
        let audit = conn.prepared(INSERT_AUDIT)?;
        let lock_all = conn.prepared("SELECT hash FROM token WHERE hash = ANY($1) ORDER BY hash FOR UPDATE")?;
        let spend = conn.prepared(SPEND)?;
        let mut tx = conn.transaction()?;
        let mut hashes: Vec<&str> = spends.iter().map(|(h, _)| h.as_str()).collect();
        hashes.sort_unstable();
        hashes.dedup();
        tx.query(&lock_all, &[&hashes])?;
        let mut results = Vec::with_capacity(spends.len());
        for (hash, c) in spends {
            let spent = tx.query_opt(
                &spend,
                &[
                    &c.serial,
                    &c.name,
                    &c.profile,
                    &c.issuer.as_str(),
                    &c.subject,
                    &c.sans.join("\n"),
                    &c.not_before,
                    &c.not_after,
                    &c.sha256,
                    &c.cert_der,
                    &c.issued_at,
                    &c.admin,
                    hash,
                    &now,
                ],
            )?;
            results.push(match spent {
                Some(_) => Ok(()),
                // Nothing done: say why (the rare path).
                None => {
                    let sql = format!("SELECT {TOKEN_COLUMNS} FROM token WHERE hash = $1");
                    Err(match tx.query_opt(&sql, &[hash])?.map(|r| token_from_row(&r)) {
                        None => StoreError::UnknownToken,
                        Some(t) if t.spent_at.is_some() => StoreError::TokenSpent,
                        Some(t) if t.expires_at <= now => StoreError::TokenExpired,
                        Some(_) => StoreError::DuplicateSerial(c.serial.clone()),
                    })
                }
            });
        }
        let entries = crate::spend_entries(spends, &results, now, node);
        insert_audit(&mut tx, &audit, &entries)?;
        tx.commit()?;
        Ok(results)
    }
}

/// The two CA certificates and keys; `NotInitialised` (naming `shown`) without them.
fn read_authorities(c: &mut impl GenericClient, shown: &str) -> Result<Authorities> {
    let rows =
        c.query("SELECT role, name, key_type, cert_der, key_pem, key_encrypted, created_at FROM authority", &[])?;
    let (mut root, mut intermediate) = (None, None);
    for r in rows {
        let rec = AuthorityRecord {
            role: AuthorityRole::parse(r.get(0))?,
            name: r.get(1),
            key_type: r.get(2),
            cert_der: r.get(3),
            key_pem: r.get(4),
            key_encrypted: r.get(5),
            created_at: r.get(6),
        };
        match rec.role {
            AuthorityRole::Root => root = Some(rec),
            AuthorityRole::Intermediate => intermediate = Some(rec),
        }
    }
    match (root, intermediate) {
        (Some(root), Some(intermediate)) => Ok(Authorities { root, intermediate }),
        (None, None) => Err(StoreError::NotInitialised(PathBuf::from(shown))),
        _ => Err(StoreError::Corrupt("only one of root and intermediate CA is stored".into())),
    }
}

fn read_signing_keys(c: &mut impl GenericClient) -> Result<Vec<SigningKeyRecord>> {
    let rows = c.query(
        "SELECT kid, key_pem, key_encrypted, public_jwk, created_at, retired_at, publish_until \
         FROM signing_key ORDER BY retired_at IS NULL, created_at, kid",
        &[],
    )?;
    Ok(rows
        .iter()
        .map(|r| SigningKeyRecord {
            kid: r.get(0),
            key_pem: r.get(1),
            key_encrypted: r.get(2),
            public_jwk: r.get(3),
            created_at: r.get(4),
            retired_at: r.get(5),
            publish_until: r.get(6),
        })
        .collect())
}

fn read_audit(c: &mut impl GenericClient, since: i64) -> Result<Vec<AuditRecord>> {
    let rows = c.query(
        "SELECT at, node, actor, action, subject, serial, outcome, detail FROM audit WHERE at >= $1 ORDER BY id",
        &[&since],
    )?;
    Ok(rows.iter().map(audit_from_row).collect())
}

fn audit_from_row(r: &Row) -> AuditRecord {
    AuditRecord {
        at: r.get(0),
        node: r.get(1),
        actor: r.get(2),
        action: r.get(3),
        subject: r.get(4),
        serial: r.get(5),
        outcome: r.get(6),
        detail: r.get(7),
    }
}

/// Tokens as they are, spent or not (one statement prepared for all).
fn insert_token_records(c: &mut postgres::Transaction<'_>, tokens: &[TokenRecord]) -> Result<()> {
    let stmt =
        c.prepare(&format!("INSERT INTO token ({TOKEN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"))?;
    for t in tokens {
        c.execute(
            &stmt,
            &[
                &t.hash,
                &t.name,
                &t.profile,
                &t.sans.join("\n"),
                &t.ous.join("\n"),
                &t.cert_ttl,
                &t.expires_at,
                &t.created_at,
                &t.spent_at,
                &t.spent_serial,
            ],
        )?;
    }
    Ok(())
}

/// Audit entries, a whole group in one statement.
const INSERT_AUDIT: &str = "INSERT INTO audit (at, node, actor, action, subject, serial, outcome, detail) \
    SELECT * FROM UNNEST($1::BIGINT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::TEXT[], $7::TEXT[], $8::TEXT[])";

fn insert_audit(c: &mut impl GenericClient, stmt: &Statement, events: &[AuditRecord]) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let col = |f: fn(&AuditRecord) -> String| events.iter().map(f).collect::<Vec<String>>();
    let at: Vec<i64> = events.iter().map(|e| e.at).collect();
    let serial: Vec<Option<String>> = events.iter().map(|e| e.serial.clone()).collect();
    c.execute(
        stmt,
        &[
            &at,
            &col(|e| e.node.clone()),
            &col(|e| e.actor.clone()),
            &col(|e| e.action.clone()),
            &col(|e| e.subject.clone()),
            &serial,
            &col(|e| e.outcome.clone()),
            &col(|e| e.detail.clone()),
        ],
    )?;
    Ok(())
}

/// One spend in one statement, so that a refused one leaves nothing and
/// needs no savepoint: the certificate is inserted only for an unspent,
/// unexpired token (not at all if its serial exists), and the token is
/// marked spent only if the certificate went in. Parameters: the 12
/// certificate columns of [`INSERT_CERT`], the token hash, now.
const SPEND: &str = "WITH ins AS ( \
    INSERT INTO certificate (serial, name, profile, issuer, subject, sans, not_before, not_after, sha256, \
                             cert_der, issued_at, admin) \
    SELECT $1::TEXT, $2::TEXT, $3::TEXT, $4::TEXT, $5::TEXT, $6::TEXT, $7::BIGINT, $8::BIGINT, $9::TEXT, \
           $10::BYTEA, $11::BIGINT, $12::BOOLEAN \
    WHERE EXISTS (SELECT 1 FROM token WHERE hash = $13 AND spent_at IS NULL AND expires_at > $14) \
    ON CONFLICT (serial) DO NOTHING RETURNING serial) \
  UPDATE token SET spent_at = $14, spent_serial = $1 \
  WHERE hash = $13 AND spent_at IS NULL AND expires_at > $14 AND EXISTS (SELECT 1 FROM ins) RETURNING hash";

impl CertStore for PgStore {
    fn authorities(&self) -> Result<Authorities> {
        read_authorities(&mut **self.lock(), &self.shown)
    }

    fn setting(&self, key: &str) -> Result<Option<String>> {
        Ok(self.lock().query_opt("SELECT value FROM setting WHERE key = $1", &[&key])?.map(|r| r.get(0)))
    }

    fn set_setting(&mut self, key: &str, value: Option<&str>) -> Result<()> {
        upsert_setting(&mut **self.lock(), key, value)
    }

    fn init_authorities(&mut self, ca: &NewCaRecords, audit: &[AuditRecord]) -> Result<()> {
        self.write(
            |tx| {
                // Two `init`s at once: the second waits here, then finds the first's CA.
                tx.batch_execute("LOCK TABLE authority IN EXCLUSIVE MODE")?;
                let existing: i64 = tx.query_one("SELECT COUNT(*) FROM authority", &[])?.get(0);
                if existing > 0 {
                    return Err(StoreError::AlreadyInitialised(PathBuf::from(&self.shown)));
                }
                for rec in [&ca.root, &ca.intermediate] {
                    insert_authority(tx, rec)?;
                    tx.execute("INSERT INTO crl_number (issuer, last) VALUES ($1, 0)", &[&rec.role.as_str()])?;
                }
                insert_cert(tx, &ca.intermediate_cert)?;
                for (key, value) in &ca.settings {
                    upsert_setting(tx, key, Some(value))?;
                }
                Ok(())
            },
            |_| audit.into(),
        )
    }

    fn insert_certs(&mut self, certs: &[CertRecord], audit: &[AuditRecord]) -> Result<()> {
        self.write(|tx| certs.iter().try_for_each(|c| insert_cert(tx, c)), |_| audit.into())
    }

    fn cert_by_serial(&self, serial: &str) -> Result<Option<CertRecord>> {
        let mut conn = self.lock();
        let stmt = conn.prepared(concat!("SELECT ", cert_columns!(), " FROM certificate WHERE serial = $1"))?;
        conn.query_opt(&stmt, &[&serial])?.map(|r| cert_from_row(&r)).transpose()
    }

    fn certs_by_name(&self, name: &str) -> Result<Vec<CertRecord>> {
        self.list(&CertFilter { name: Some(name.to_string()), ..CertFilter::default() })
    }

    fn list(&self, filter: &CertFilter) -> Result<Vec<CertRecord>> {
        let (cond, args) = postgres_filter(filter, true);
        let sql = format!("SELECT {CERT_COLUMNS} FROM certificate WHERE TRUE{cond}");
        let refs: Vec<&(dyn postgres::types::ToSql + Sync)> = args.iter().map(|a| a.as_ref()).collect();
        self.lock().query(&sql, &refs)?.iter().map(cert_from_row).collect()
    }

    fn revoke(&mut self, serial: &str, revocation: Revocation, audit: &[AuditRecord]) -> Result<CertRecord> {
        self.write(
            |tx| {
                let sql = format!("SELECT {CERT_COLUMNS} FROM certificate WHERE serial = $1 FOR UPDATE");
                let mut rec = match tx.query_opt(&sql, &[&serial])? {
                    Some(r) => cert_from_row(&r)?,
                    None => return Err(StoreError::UnknownCertificate(serial.to_string())),
                };
                if rec.revocation.is_some() {
                    return Err(StoreError::AlreadyRevoked(serial.to_string()));
                }
                tx.execute(
                    "UPDATE certificate SET revoked_at = $1, revocation_reason = $2 WHERE serial = $3",
                    &[&revocation.revoked_at, &(revocation.reason as i16), &serial],
                )?;
                rec.revocation = Some(revocation);
                Ok(rec)
            },
            |_| audit.into(),
        )
    }

    fn revoked_by(&self, issuer: AuthorityRole) -> Result<Vec<(String, Revocation)>> {
        let rows = self.lock().query(
            "SELECT serial, revoked_at, revocation_reason FROM certificate \
             WHERE issuer = $1 AND revoked_at IS NOT NULL ORDER BY revoked_at, serial",
            &[&issuer.as_str()],
        )?;
        Ok(rows
            .iter()
            .map(|r| {
                let reason: Option<i16> = r.get(2);
                (r.get(0), Revocation { revoked_at: r.get(1), reason: reason.unwrap_or(0) as u8 })
            })
            .collect())
    }

    fn next_crl_number(&mut self, issuer: AuthorityRole) -> Result<u64> {
        // The row lock of the UPDATE orders concurrent nodes: never the same number twice.
        let row = self
            .lock()
            .query_opt("UPDATE crl_number SET last = last + 1 WHERE issuer = $1 RETURNING last", &[&issuer.as_str()])?
            .ok_or_else(|| StoreError::NotInitialised(PathBuf::from(&self.shown)))?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    fn record_audit(&mut self, events: &[AuditRecord]) -> Result<()> {
        let mut conn = self.lock();
        let stmt = conn.prepared(INSERT_AUDIT)?;
        insert_audit(&mut **conn, &stmt, events)
    }

    fn audit_since(&self, since: i64) -> Result<Vec<AuditRecord>> {
        read_audit(&mut **self.lock(), since)
    }

    fn audit_recent(&self, action: Option<&str>, actor: Option<&str>, limit: u32) -> Result<Vec<AuditRecord>> {
        // strpos, not LIKE: the actor filter has no wildcards.
        let rows = self.lock().query(
            "SELECT at, node, actor, action, subject, serial, outcome, detail FROM audit \
             WHERE ($1::TEXT IS NULL OR action = $1) AND ($2::TEXT IS NULL OR strpos(actor, $2) > 0) \
             ORDER BY id DESC LIMIT $3",
            &[&action, &actor, &i64::from(limit)],
        )?;
        Ok(rows.iter().map(audit_from_row).collect())
    }

    fn snapshot(&self) -> Result<Snapshot> {
        // One REPEATABLE READ transaction: a consistent picture while nodes write.
        let mut conn = self.lock();
        let mut tx = conn
            .build_transaction()
            .isolation_level(postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()?;
        let authorities = read_authorities(&mut tx, &self.shown)?;
        let certs = tx
            .query(&format!("SELECT {CERT_COLUMNS} FROM certificate ORDER BY id"), &[])?
            .iter()
            .map(cert_from_row)
            .collect::<Result<Vec<_>>>()?;
        let tokens = tx
            .query(&format!("SELECT {TOKEN_COLUMNS} FROM token ORDER BY created_at, hash"), &[])?
            .iter()
            .map(token_from_row)
            .collect();
        let settings = tx
            .query("SELECT key, value FROM setting ORDER BY key", &[])?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let mut crl_numbers = Vec::new();
        for r in tx.query("SELECT issuer, last FROM crl_number ORDER BY issuer", &[])? {
            crl_numbers.push((AuthorityRole::parse(r.get(0))?, r.get::<_, i64>(1) as u64));
        }
        let signing_keys = read_signing_keys(&mut tx)?;
        let grants = tx
            .query(&format!("SELECT {GRANT_COLUMNS} FROM oauth_grant ORDER BY id"), &[])?
            .iter()
            .map(grant_from_row)
            .collect();
        let audit = read_audit(&mut tx, i64::MIN)?;
        tx.commit()?;
        Ok(Snapshot { authorities, certs, tokens, settings, crl_numbers, signing_keys, grants, audit })
    }

    fn restore(&mut self, snap: &Snapshot) -> Result<()> {
        let mut client = self.lock();
        let mut tx = client.transaction()?;
        tx.batch_execute("LOCK TABLE authority IN EXCLUSIVE MODE")?;
        let existing: i64 = tx.query_one("SELECT COUNT(*) FROM authority", &[])?.get(0);
        if existing > 0 {
            return Err(StoreError::AlreadyInitialised(PathBuf::from(&self.shown)));
        }
        for rec in [&snap.authorities.root, &snap.authorities.intermediate] {
            insert_authority(&mut tx, rec)?;
        }
        for (issuer, last) in &snap.crl_numbers {
            tx.execute("INSERT INTO crl_number (issuer, last) VALUES ($1, $2)", &[&issuer.as_str(), &(*last as i64)])?;
        }
        let insert = tx.prepare(INSERT_CERT)?;
        let revoke = tx.prepare("UPDATE certificate SET revoked_at = $1, revocation_reason = $2 WHERE serial = $3")?;
        for c in &snap.certs {
            insert_cert_with(&mut tx, &insert, c)?;
            if let Some(r) = c.revocation {
                tx.execute(&revoke, &[&r.revoked_at, &(r.reason as i16), &c.serial])?;
            }
        }
        insert_token_records(&mut tx, &snap.tokens)?;
        for (key, value) in &snap.settings {
            upsert_setting(&mut tx, key, Some(value))?;
        }
        for k in &snap.signing_keys {
            tx.execute(
                "INSERT INTO signing_key (kid, key_pem, key_encrypted, public_jwk, created_at, retired_at, publish_until) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[&k.kid, &k.key_pem, &k.key_encrypted, &k.public_jwk, &k.created_at, &k.retired_at, &k.publish_until],
            )?;
        }
        for g in &snap.grants {
            tx.execute(
                &format!("INSERT INTO oauth_grant ({GRANT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"),
                &[&g.id, &g.identity, &g.audience, &g.scopes.join(" "), &g.created_at, &g.revoked_at],
            )?;
        }
        let audit = tx.prepare(INSERT_AUDIT)?;
        insert_audit(&mut tx, &audit, &snap.audit)?;
        // Grant ids were kept: the next new one comes after them.
        tx.batch_execute(
            "SELECT setval(pg_get_serial_sequence('oauth_grant', 'id'), COALESCE((SELECT MAX(id) FROM oauth_grant), 0) + 1, false)",
        )?;
        tx.commit()?;
        // What autovacuum would do a minute later, done now: planner
        // statistics for the bulk just loaded, and a visibility map so that
        // the console's deep pages are index-only scans (page 1000 of
        // 100,000 certificates by issuer: 204 ms without, 33 ms with).
        // VACUUM cannot run in the transaction.
        client.batch_execute("VACUUM (ANALYZE) certificate, token, oauth_grant, audit")?;
        Ok(())
    }

    fn revocation_mark(&self) -> Result<(i64, i64)> {
        let r = self.lock().query_one(
            "SELECT COUNT(*), COALESCE(MAX(revoked_at), 0)::BIGINT FROM certificate WHERE revoked_at IS NOT NULL",
            &[],
        )?;
        Ok((r.get(0), r.get(1)))
    }

    fn count_matching(&self, filter: &CertFilter) -> Result<u64> {
        let (cond, args) = postgres_filter(filter, false);
        let refs: Vec<&(dyn postgres::types::ToSql + Sync)> = args.iter().map(|a| a.as_ref()).collect();
        let sql = format!("SELECT COUNT(*) FROM certificate WHERE TRUE{cond}");
        Ok(self.lock().query_one(&sql, &refs)?.get::<_, i64>(0) as u64)
    }

    fn expiries_per_day(&self, filter: &CertFilter, from: i64) -> Result<Vec<(i64, u64)>> {
        let (cond, mut args) = postgres_filter(filter, false);
        args.push(Box::new(from));
        let refs: Vec<&(dyn postgres::types::ToSql + Sync)> = args.iter().map(|a| a.as_ref()).collect();
        let sql = format!(
            "SELECT (not_after - ${n}) / 86400 AS day, COUNT(*) FROM certificate WHERE not_after > ${n}{cond} \
             GROUP BY day ORDER BY day",
            n = refs.len()
        );
        let rows = self.lock().query(&sql, &refs)?;
        Ok(rows.iter().map(|r| (r.get::<_, i64>(0), r.get::<_, i64>(1) as u64)).collect())
    }

    fn activity_per_day(&self, since: i64) -> Result<Vec<(i64, crate::Activity, u64)>> {
        let rows = self.lock().query(&crate::activity_sql("$1::BIGINT"), &[&since])?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let class = crate::Activity::from_index(i64::from(r.get::<_, i32>(1)))?;
                Some((r.get::<_, i64>(0), class, r.get::<_, i64>(2) as u64))
            })
            .collect())
    }

    fn count(&self) -> Result<u64> {
        Ok(self.lock().query_one("SELECT COUNT(*) FROM certificate", &[])?.get::<_, i64>(0) as u64)
    }

    fn insert_tokens(&mut self, tokens: &[TokenRecord], audit: &[AuditRecord]) -> Result<()> {
        self.write(|tx| insert_token_records(tx, tokens), |_| audit.into())
    }

    fn token(&self, hash: &str) -> Result<Option<TokenRecord>> {
        let mut conn = self.lock();
        let stmt = conn.prepared(concat!("SELECT ", token_columns!(), " FROM token WHERE hash = $1"))?;
        Ok(conn.query_opt(&stmt, &[&hash])?.map(|r| token_from_row(&r)))
    }

    fn recent_tokens(&self, limit: u32) -> Result<Vec<TokenRecord>> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM token ORDER BY created_at DESC, hash LIMIT $1");
        Ok(self.lock().query(&sql, &[&i64::from(limit)])?.iter().map(token_from_row).collect())
    }

    fn spend_tokens(&mut self, spends: &[(String, CertRecord)], now: i64, node: &str) -> Result<Vec<Result<()>>> {
        // A deadlock or serialization failure rolls the whole group back
        // untouched: it is tried again (the locks below make it rare).
        let mut tries = 0;
        loop {
            match self.spend_group(spends, now, node) {
                Err(StoreError::Postgres(e))
                    if tries < 3
                        && matches!(
                            e.code(),
                            Some(&postgres::error::SqlState::T_R_DEADLOCK_DETECTED)
                                | Some(&postgres::error::SqlState::T_R_SERIALIZATION_FAILURE)
                        ) =>
                {
                    tries += 1;
                }
                other => return other,
            }
        }
    }

    fn set_admin(&mut self, serial: &str, audit: &[AuditRecord]) -> Result<()> {
        self.write(
            |tx| match tx.execute("UPDATE certificate SET admin = TRUE WHERE serial = $1", &[&serial])? {
                1 => Ok(()),
                _ => Err(StoreError::UnknownCertificate(serial.to_string())),
            },
            |_| audit.into(),
        )
    }

    fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>> {
        read_signing_keys(&mut **self.lock())
    }

    fn add_signing_key(&mut self, key: &SigningKeyRecord, publish_old_until: i64, audit: &[AuditRecord]) -> Result<()> {
        self.write(
            |tx| {
                tx.execute(
                    "UPDATE signing_key SET retired_at = $1, publish_until = $2 WHERE retired_at IS NULL",
                    &[&key.created_at, &publish_old_until],
                )?;
                tx.execute(
                    "INSERT INTO signing_key (kid, key_pem, key_encrypted, public_jwk, created_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                    &[&key.kid, &key.key_pem, &key.key_encrypted, &key.public_jwk, &key.created_at],
                )?;
                Ok(())
            },
            |_| audit.into(),
        )
    }

    fn insert_grant(&mut self, g: &GrantRecord, audit: GrantAudit<'_>) -> Result<i64> {
        self.write(
            |tx| {
                let row = tx.query_one(
                    "INSERT INTO oauth_grant (identity, audience, scopes, created_at) VALUES ($1, $2, $3, $4) \
                     RETURNING id",
                    &[&g.identity, &g.audience, &g.scopes.join(" "), &g.created_at],
                )?;
                Ok(row.get(0))
            },
            |&id| audit(&GrantRecord { id, ..g.clone() }).into(),
        )
    }

    fn grants(&self, identity: Option<&str>) -> Result<Vec<GrantRecord>> {
        let sql = format!(
            "SELECT {GRANT_COLUMNS} FROM oauth_grant \
             WHERE $1::TEXT IS NULL OR (identity = $1 AND revoked_at IS NULL) ORDER BY id"
        );
        Ok(self.lock().query(&sql, &[&identity])?.iter().map(grant_from_row).collect())
    }

    fn revoke_grant(&mut self, id: i64, now: i64, audit: GrantAudit<'_>) -> Result<GrantRecord> {
        self.write(
            |tx| {
                let sql = format!("SELECT {GRANT_COLUMNS} FROM oauth_grant WHERE id = $1 FOR UPDATE");
                let mut grant =
                    tx.query_opt(&sql, &[&id])?.map(|r| grant_from_row(&r)).ok_or(StoreError::UnknownGrant(id))?;
                if grant.revoked_at.is_some() {
                    return Err(StoreError::GrantRevoked(id));
                }
                tx.execute("UPDATE oauth_grant SET revoked_at = $1 WHERE id = $2", &[&now, &id])?;
                grant.revoked_at = Some(now);
                Ok(grant)
            },
            |g| audit(g).into(),
        )
    }
}

type PgArgs = Vec<Box<dyn postgres::types::ToSql + Sync>>;

/// A filter's SQL and its bound values, `$N` placeholders.
fn postgres_filter(filter: &CertFilter, page: bool) -> (String, PgArgs) {
    let mut args: PgArgs = Vec::new();
    let cond = filter.sql(page, |a| {
        args.push(match a {
            crate::FilterArg::Text(t) => Box::new(t),
            crate::FilterArg::Int(i) => Box::new(i),
        });
        format!("${}", args.len())
    });
    (cond, args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_keeps_what_tokio_postgres_reads_and_takes_the_tls_files() {
        let (config, tls) = parse_url(
            "postgres://ca:secret@db:5433/ambos?sslmode=verify-full&sslrootcert=/etc/db-ca.pem&application_name=x",
        )
        .unwrap();
        assert_eq!(config.get_dbname(), Some("ambos"));
        assert_eq!(config.get_ssl_mode(), postgres::config::SslMode::Require);
        assert_eq!(
            (tls.mode.as_str(), tls.root_cert.as_deref()),
            ("verify-full", Some(std::path::Path::new("/etc/db-ca.pem")))
        );
        let (config, tls) = parse_url("postgres://db/ambos").unwrap();
        assert_eq!((tls.mode.as_str(), config.get_ssl_mode()), ("prefer", postgres::config::SslMode::Prefer));
        let e = parse_url("postgres://ca:secret@db/ambos?sslmode=allow").unwrap_err().to_string();
        assert!(e.contains("sslmode=allow") && !e.contains("secret"), "{e}");
        assert_eq!(redact("postgres://ca:secret@db/ambos"), "postgres://ca:***@db/ambos");
        assert_eq!(redact("postgres://db/ambos"), "postgres://db/ambos");
    }
}
