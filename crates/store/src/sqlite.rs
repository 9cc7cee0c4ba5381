use crate::{
    AuditRecord, Authorities, AuthorityRecord, AuthorityRole, CertFilter, CertRecord, CertStore, GrantAudit,
    GrantRecord, NewCaRecords, Result, Revocation, SigningKeyRecord, Snapshot, StoreError, TokenRecord,
};
use rusqlite::{params, Connection, OptionalExtension, Row, Transaction, TransactionBehavior};
use std::borrow::Cow;
use std::path::{Path, PathBuf};

/// Schema migrations, applied in order; `PRAGMA user_version` counts them.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE authority (
    role          TEXT PRIMARY KEY CHECK (role IN ('root', 'intermediate')),
    name          TEXT NOT NULL,
    key_type      TEXT NOT NULL,
    cert_der      BLOB NOT NULL,
    key_pem       TEXT NOT NULL,
    key_encrypted INTEGER NOT NULL,
    created_at    INTEGER NOT NULL
);
CREATE TABLE certificate (
    id            INTEGER PRIMARY KEY,
    serial        TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    profile       TEXT NOT NULL,
    issuer        TEXT NOT NULL REFERENCES authority(role),
    subject       TEXT NOT NULL,
    sans          TEXT NOT NULL,
    not_before    INTEGER NOT NULL,
    not_after     INTEGER NOT NULL,
    sha256        TEXT NOT NULL,
    cert_der      BLOB NOT NULL,
    issued_at     INTEGER NOT NULL,
    revoked_at    INTEGER,
    revocation_reason INTEGER
);
CREATE INDEX certificate_name ON certificate(name);
CREATE INDEX certificate_not_after ON certificate(not_after);
CREATE INDEX certificate_revoked ON certificate(issuer, revoked_at) WHERE revoked_at IS NOT NULL;
CREATE TABLE crl_number (
    issuer TEXT PRIMARY KEY REFERENCES authority(role),
    last   INTEGER NOT NULL
);
"#,
    r#"
CREATE TABLE token (
    hash        TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    profile     TEXT NOT NULL,
    sans        TEXT NOT NULL,
    ous         TEXT NOT NULL,
    cert_ttl    INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    spent_at    INTEGER,
    spent_serial TEXT
) WITHOUT ROWID;
ALTER TABLE certificate ADD COLUMN admin INTEGER NOT NULL DEFAULT 0;
"#,
    r#"
CREATE TABLE setting (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
"#,
    r#"
CREATE TABLE signing_key (
    kid           TEXT PRIMARY KEY,
    key_pem       TEXT NOT NULL,
    key_encrypted INTEGER NOT NULL,
    public_jwk    TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    retired_at    INTEGER,
    publish_until INTEGER
) WITHOUT ROWID;
CREATE TABLE oauth_grant (
    id          INTEGER PRIMARY KEY,
    identity    TEXT NOT NULL,
    audience    TEXT NOT NULL,
    scopes      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);
CREATE INDEX oauth_grant_identity ON oauth_grant(identity) WHERE revoked_at IS NULL;
"#,
    r#"
CREATE TABLE audit (
    id       INTEGER PRIMARY KEY,
    at       INTEGER NOT NULL,
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

/// SQLite in WAL mode with `synchronous = FULL`: a committed issuance
/// survives kill -9 and power loss.
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
}

impl SqliteStore {
    pub const FILE_NAME: &'static str = "ambos.db";

    /// Makes `dir` (0700, as [`SqliteStore::open`] would) and writes and
    /// removes a file in it: `ambos init` fails here, before it asks for a
    /// passphrase or warns about one, and names the directory.
    pub fn check_creatable(dir: &Path) -> Result<()> {
        let probe = dir.join(".ambos-init-check");
        let tried = match create_private(dir, &probe) {
            // One left by a killed `init` is no reason to refuse.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            r => r,
        };
        let tried = tried.and_then(|()| std::fs::remove_file(&probe));
        tried.map_err(|why| StoreError::CannotCreate { dir: dir.to_path_buf(), why })
    }

    /// Opens the store in `dir`. With `create`, makes the directory (0700)
    /// and database (0600); without, a missing database is `NotInitialised`.
    pub fn open(dir: &Path, create: bool) -> Result<SqliteStore> {
        let path = dir.join(Self::FILE_NAME);
        if !path.exists() {
            if !create {
                return Err(StoreError::NotInitialised(dir.to_path_buf()));
            }
            create_private(dir, &path).map_err(|why| StoreError::Open { path: path.clone(), why })?;
        }
        let conn = Connection::open(&path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let mut store = SqliteStore { conn, path };
        store.migrate()?;
        Ok(store)
    }

    fn migrate(&mut self) -> Result<()> {
        let supported = MIGRATIONS.len() as i64;
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > supported {
            return Err(StoreError::SchemaTooNew { path: self.path.clone(), found: version, supported });
        }
        for sql in &MIGRATIONS[version as usize..] {
            tx.execute_batch(sql)?;
        }
        tx.pragma_update(None, "user_version", supported)?;
        tx.commit()?;
        Ok(())
    }

    fn dir(&self) -> PathBuf {
        self.path.parent().map(Path::to_path_buf).unwrap_or_default()
    }

    /// `work` and the audit entries of what it did (`audit` of its result)
    /// in one transaction: a change that fails leaves no entry.
    fn write<'a, T>(
        &mut self,
        work: impl FnOnce(&mut Transaction<'_>) -> Result<T>,
        audit: impl FnOnce(&T) -> Cow<'a, [AuditRecord]>,
    ) -> Result<T> {
        let mut tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let done = work(&mut tx)?;
        for e in audit(&done).iter() {
            insert_audit(&tx, e)?;
        }
        tx.commit()?;
        Ok(done)
    }
}

#[cfg(unix)]
fn create_private(dir: &Path, file: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(file)?;
    Ok(())
}

#[cfg(not(unix))]
fn create_private(dir: &Path, file: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::OpenOptions::new().write(true).create_new(true).open(file)?;
    Ok(())
}

const CERT_COLUMNS: &str = "serial, name, profile, issuer, subject, sans, not_before, not_after, sha256, cert_der, \
                            issued_at, revoked_at, revocation_reason, admin";

const TOKEN_COLUMNS: &str = "hash, name, profile, sans, ous, cert_ttl, expires_at, created_at, spent_at, spent_serial";

fn split_lines(s: String) -> Vec<String> {
    s.split('\n').filter(|x| !x.is_empty()).map(str::to_string).collect()
}

const GRANT_COLUMNS: &str = "id, identity, audience, scopes, created_at, revoked_at";

fn grant_from_row(r: &Row<'_>) -> rusqlite::Result<GrantRecord> {
    let scopes: String = r.get(3)?;
    Ok(GrantRecord {
        id: r.get(0)?,
        identity: r.get(1)?,
        audience: r.get(2)?,
        scopes: scopes.split_whitespace().map(str::to_string).collect(),
        created_at: r.get(4)?,
        revoked_at: r.get(5)?,
    })
}

fn token_from_row(row: &Row<'_>) -> rusqlite::Result<TokenRecord> {
    Ok(TokenRecord {
        hash: row.get(0)?,
        name: row.get(1)?,
        profile: row.get(2)?,
        sans: split_lines(row.get(3)?),
        ous: split_lines(row.get(4)?),
        cert_ttl: row.get(5)?,
        expires_at: row.get(6)?,
        created_at: row.get(7)?,
        spent_at: row.get(8)?,
        spent_serial: row.get(9)?,
    })
}

/// One CA certificate and its (encrypted) key: at `init` and in a restored snapshot.
fn insert_authority(conn: &rusqlite::Connection, rec: &AuthorityRecord) -> Result<()> {
    conn.execute(
        "INSERT INTO authority (role, name, key_type, cert_der, key_pem, key_encrypted, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            rec.role.as_str(),
            rec.name,
            rec.key_type,
            rec.cert_der,
            rec.key_pem,
            rec.key_encrypted,
            rec.created_at
        ],
    )?;
    Ok(())
}

fn insert_cert(conn: &rusqlite::Connection, c: &CertRecord) -> Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO certificate (serial, name, profile, issuer, subject, sans, not_before, not_after, sha256, \
         cert_der, issued_at, admin) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?;
    let res = stmt.execute(params![
        c.serial,
        c.name,
        c.profile,
        c.issuer.as_str(),
        c.subject,
        c.sans.join("\n"),
        c.not_before,
        c.not_after,
        c.sha256,
        c.cert_der,
        c.issued_at,
        c.admin
    ]);
    match res {
        Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::ConstraintViolation => {
            Err(StoreError::DuplicateSerial(c.serial.clone()))
        }
        other => other.map(|_| ()).map_err(Into::into),
    }
}

/// Tokens as they are, spent or not.
fn insert_token_records(conn: &rusqlite::Connection, tokens: &[TokenRecord]) -> Result<()> {
    let mut stmt = conn.prepare_cached(&format!(
        "INSERT INTO token ({TOKEN_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
    ))?;
    for t in tokens {
        stmt.execute(params![
            t.hash,
            t.name,
            t.profile,
            t.sans.join("\n"),
            t.ous.join("\n"),
            t.cert_ttl,
            t.expires_at,
            t.created_at,
            t.spent_at,
            t.spent_serial
        ])?;
    }
    Ok(())
}

fn insert_audit(conn: &rusqlite::Connection, e: &AuditRecord) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO audit (at, node, actor, action, subject, serial, outcome, detail) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![e.at, e.node, e.actor, e.action, e.subject, e.serial, e.outcome, e.detail])?;
    Ok(())
}

fn upsert_setting(conn: &rusqlite::Connection, key: &str, value: Option<&str>) -> Result<()> {
    match value {
        Some(v) => conn.execute(
            "INSERT INTO setting (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = ?2",
            params![key, v],
        )?,
        None => conn.execute("DELETE FROM setting WHERE key = ?1", [key])?,
    };
    Ok(())
}

fn cert_from_row(row: &Row<'_>) -> rusqlite::Result<(CertRecord, String)> {
    let sans: String = row.get(5)?;
    let revoked_at: Option<i64> = row.get(11)?;
    let reason: Option<u8> = row.get(12)?;
    let issuer: String = row.get(3)?;
    Ok((
        CertRecord {
            serial: row.get(0)?,
            name: row.get(1)?,
            profile: row.get(2)?,
            issuer: AuthorityRole::Intermediate,
            subject: row.get(4)?,
            sans: sans.split('\n').filter(|s| !s.is_empty()).map(str::to_string).collect(),
            not_before: row.get(6)?,
            not_after: row.get(7)?,
            sha256: row.get(8)?,
            cert_der: row.get(9)?,
            issued_at: row.get(10)?,
            revocation: revoked_at.map(|at| Revocation { revoked_at: at, reason: reason.unwrap_or(0) }),
            admin: row.get(13)?,
        },
        issuer,
    ))
}

fn finish(pair: (CertRecord, String)) -> Result<CertRecord> {
    let (mut rec, issuer) = pair;
    rec.issuer = AuthorityRole::parse(&issuer)?;
    Ok(rec)
}

fn authority_from_row(row: &Row<'_>) -> rusqlite::Result<(AuthorityRecord, String)> {
    let role: String = row.get(0)?;
    Ok((
        AuthorityRecord {
            role: AuthorityRole::Root,
            name: row.get(1)?,
            key_type: row.get(2)?,
            cert_der: row.get(3)?,
            key_pem: row.get(4)?,
            key_encrypted: row.get(5)?,
            created_at: row.get(6)?,
        },
        role,
    ))
}

impl CertStore for SqliteStore {
    fn setting(&self, key: &str) -> Result<Option<String>> {
        Ok(self.conn.query_row("SELECT value FROM setting WHERE key = ?1", [key], |r| r.get(0)).optional()?)
    }

    fn set_setting(&mut self, key: &str, value: Option<&str>) -> Result<()> {
        upsert_setting(&self.conn, key, value)
    }

    fn authorities(&self) -> Result<Authorities> {
        let mut stmt = self
            .conn
            .prepare("SELECT role, name, key_type, cert_der, key_pem, key_encrypted, created_at FROM authority")?;
        let mut root = None;
        let mut intermediate = None;
        for row in stmt.query_map([], authority_from_row)? {
            let (mut rec, role) = row?;
            rec.role = AuthorityRole::parse(&role)?;
            match rec.role {
                AuthorityRole::Root => root = Some(rec),
                AuthorityRole::Intermediate => intermediate = Some(rec),
            }
        }
        match (root, intermediate) {
            (Some(root), Some(intermediate)) => Ok(Authorities { root, intermediate }),
            (None, None) => Err(StoreError::NotInitialised(self.dir())),
            _ => Err(StoreError::Corrupt("only one of root and intermediate CA is stored".into())),
        }
    }

    fn init_authorities(&mut self, ca: &NewCaRecords, audit: &[AuditRecord]) -> Result<()> {
        let dir = self.dir();
        self.write(
            |tx| {
                let existing: i64 = tx.query_row("SELECT COUNT(*) FROM authority", [], |r| r.get(0))?;
                if existing > 0 {
                    return Err(StoreError::AlreadyInitialised(dir));
                }
                for rec in [&ca.root, &ca.intermediate] {
                    insert_authority(tx, rec)?;
                    tx.execute("INSERT INTO crl_number (issuer, last) VALUES (?1, 0)", params![rec.role.as_str()])?;
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

    fn insert_tokens(&mut self, tokens: &[TokenRecord], audit: &[AuditRecord]) -> Result<()> {
        self.write(|tx| insert_token_records(tx, tokens), |_| audit.into())
    }

    fn token(&self, hash: &str) -> Result<Option<TokenRecord>> {
        Ok(self
            .conn
            .query_row(&format!("SELECT {TOKEN_COLUMNS} FROM token WHERE hash = ?1"), [hash], token_from_row)
            .optional()?)
    }

    fn recent_tokens(&self, limit: u32) -> Result<Vec<TokenRecord>> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM token ORDER BY created_at DESC, hash LIMIT ?1");
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map([limit], token_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn spend_tokens(&mut self, spends: &[(String, CertRecord)], now: i64, node: &str) -> Result<Vec<Result<()>>> {
        // One transaction for the whole group (one fsync), a savepoint per spend:
        // a refused spend leaves no trace and does not disturb the others.
        self.write(
            |tx| {
                let mut results = Vec::with_capacity(spends.len());
                for (hash, cert) in spends {
                    let sp = tx.savepoint()?;
                    let outcome = (|| -> Result<()> {
                        let t = sp
                            .query_row(
                                &format!("SELECT {TOKEN_COLUMNS} FROM token WHERE hash = ?1"),
                                [hash],
                                token_from_row,
                            )
                            .optional()?
                            .ok_or(StoreError::UnknownToken)?;
                        if t.spent_at.is_some() {
                            return Err(StoreError::TokenSpent);
                        }
                        if t.expires_at <= now {
                            return Err(StoreError::TokenExpired);
                        }
                        let n = sp.execute(
                            "UPDATE token SET spent_at = ?1, spent_serial = ?2 WHERE hash = ?3 AND spent_at IS NULL",
                            params![now, cert.serial, hash],
                        )?;
                        if n != 1 {
                            return Err(StoreError::TokenSpent);
                        }
                        insert_cert(&sp, cert)
                    })();
                    match outcome {
                        Ok(()) => sp.commit()?,
                        Err(_) => drop(sp), // rolls the savepoint back
                    }
                    results.push(outcome);
                }
                Ok(results)
            },
            |results| crate::spend_entries(spends, results, now, node).into(),
        )
    }

    fn set_admin(&mut self, serial: &str, audit: &[AuditRecord]) -> Result<()> {
        self.write(
            |tx| match tx.execute("UPDATE certificate SET admin = 1 WHERE serial = ?1", [serial])? {
                1 => Ok(()),
                _ => Err(StoreError::UnknownCertificate(serial.to_string())),
            },
            |_| audit.into(),
        )
    }

    fn cert_by_serial(&self, serial: &str) -> Result<Option<CertRecord>> {
        let sql = format!("SELECT {CERT_COLUMNS} FROM certificate WHERE serial = ?1");
        self.conn.query_row(&sql, [serial], cert_from_row).optional()?.map(finish).transpose()
    }

    fn certs_by_name(&self, name: &str) -> Result<Vec<CertRecord>> {
        self.list(&CertFilter { name: Some(name.to_string()), ..CertFilter::default() })
    }

    fn list(&self, filter: &CertFilter) -> Result<Vec<CertRecord>> {
        let (cond, args) = sqlite_filter(filter, true);
        let sql = format!("SELECT {CERT_COLUMNS} FROM certificate WHERE 1=1{cond}");
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(args), cert_from_row)?;
        rows.map(|r| finish(r?)).collect()
    }

    fn revoke(&mut self, serial: &str, revocation: Revocation, audit: &[AuditRecord]) -> Result<CertRecord> {
        self.write(
            |tx| {
                let sql = format!("SELECT {CERT_COLUMNS} FROM certificate WHERE serial = ?1");
                let mut rec = match tx.query_row(&sql, [serial], cert_from_row).optional()? {
                    Some(pair) => finish(pair)?,
                    None => return Err(StoreError::UnknownCertificate(serial.to_string())),
                };
                if rec.revocation.is_some() {
                    return Err(StoreError::AlreadyRevoked(serial.to_string()));
                }
                tx.execute(
                    "UPDATE certificate SET revoked_at = ?1, revocation_reason = ?2 WHERE serial = ?3",
                    params![revocation.revoked_at, revocation.reason, serial],
                )?;
                rec.revocation = Some(revocation);
                Ok(rec)
            },
            |_| audit.into(),
        )
    }

    fn revoked_by(&self, issuer: AuthorityRole) -> Result<Vec<(String, Revocation)>> {
        let mut stmt = self.conn.prepare(
            "SELECT serial, revoked_at, revocation_reason FROM certificate \
             WHERE issuer = ?1 AND revoked_at IS NOT NULL ORDER BY revoked_at, serial",
        )?;
        let rows = stmt.query_map([issuer.as_str()], |r| {
            Ok((
                r.get::<_, String>(0)?,
                Revocation { revoked_at: r.get(1)?, reason: r.get::<_, Option<u8>>(2)?.unwrap_or(0) },
            ))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn next_crl_number(&mut self, issuer: AuthorityRole) -> Result<u64> {
        let dir = self.dir();
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n: i64 = tx
            .query_row(
                "UPDATE crl_number SET last = last + 1 WHERE issuer = ?1 RETURNING last",
                [issuer.as_str()],
                |r| r.get(0),
            )
            .optional()?
            .ok_or(StoreError::NotInitialised(dir))?;
        tx.commit()?;
        Ok(n as u64)
    }

    fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT kid, key_pem, key_encrypted, public_jwk, created_at, retired_at, publish_until \
             FROM signing_key ORDER BY retired_at IS NULL, created_at, kid",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(SigningKeyRecord {
                kid: r.get(0)?,
                key_pem: r.get(1)?,
                key_encrypted: r.get(2)?,
                public_jwk: r.get(3)?,
                created_at: r.get(4)?,
                retired_at: r.get(5)?,
                publish_until: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn add_signing_key(&mut self, key: &SigningKeyRecord, publish_old_until: i64, audit: &[AuditRecord]) -> Result<()> {
        self.write(
            |tx| {
                tx.execute(
                    "UPDATE signing_key SET retired_at = ?1, publish_until = ?2 WHERE retired_at IS NULL",
                    params![key.created_at, publish_old_until],
                )?;
                tx.execute(
                    "INSERT INTO signing_key (kid, key_pem, key_encrypted, public_jwk, created_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![key.kid, key.key_pem, key.key_encrypted, key.public_jwk, key.created_at],
                )?;
                Ok(())
            },
            |_| audit.into(),
        )
    }

    fn insert_grant(&mut self, grant: &GrantRecord, audit: GrantAudit<'_>) -> Result<i64> {
        self.write(
            |tx| {
                tx.execute(
                    "INSERT INTO oauth_grant (identity, audience, scopes, created_at) VALUES (?1, ?2, ?3, ?4)",
                    params![grant.identity, grant.audience, grant.scopes.join(" "), grant.created_at],
                )?;
                Ok(tx.last_insert_rowid())
            },
            |&id| audit(&GrantRecord { id, ..grant.clone() }).into(),
        )
    }

    fn grants(&self, identity: Option<&str>) -> Result<Vec<GrantRecord>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {GRANT_COLUMNS} FROM oauth_grant WHERE ?1 IS NULL OR (identity = ?1 AND revoked_at IS NULL) ORDER BY id"
        ))?;
        let rows = stmt.query_map([identity], grant_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn revoke_grant(&mut self, id: i64, now: i64, audit: GrantAudit<'_>) -> Result<GrantRecord> {
        self.write(
            |tx| {
                let revoked: Option<Option<i64>> =
                    tx.query_row("SELECT revoked_at FROM oauth_grant WHERE id = ?1", [id], |r| r.get(0)).optional()?;
                match revoked {
                    None => return Err(StoreError::UnknownGrant(id)),
                    Some(Some(_)) => return Err(StoreError::GrantRevoked(id)),
                    Some(None) => {}
                }
                tx.execute("UPDATE oauth_grant SET revoked_at = ?1 WHERE id = ?2", params![now, id])?;
                let sql = format!("SELECT {GRANT_COLUMNS} FROM oauth_grant WHERE id = ?1");
                Ok(tx.query_row(&sql, [id], grant_from_row)?)
            },
            |g| audit(g).into(),
        )
    }

    fn record_audit(&mut self, events: &[AuditRecord]) -> Result<()> {
        self.write(|_| Ok(()), |_| events.into())
    }

    fn audit_since(&self, since: i64) -> Result<Vec<AuditRecord>> {
        let mut stmt = self.conn.prepare(&format!("SELECT {AUDIT_COLUMNS} FROM audit WHERE at >= ?1 ORDER BY id"))?;
        let rows = stmt.query_map([since], audit_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn audit_recent(&self, action: Option<&str>, actor: Option<&str>, limit: u32) -> Result<Vec<AuditRecord>> {
        // instr, not LIKE: the actor filter has no wildcards.
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {AUDIT_COLUMNS} FROM audit WHERE (?1 IS NULL OR action = ?1) \
             AND (?2 IS NULL OR instr(actor, ?2) > 0) ORDER BY id DESC LIMIT ?3"
        ))?;
        let rows = stmt.query_map(params![action, actor, limit], audit_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn snapshot(&self) -> Result<Snapshot> {
        // One read transaction: a consistent picture while others write.
        let tx = self.conn.unchecked_transaction()?;
        let tokens = {
            let mut stmt = tx.prepare(&format!("SELECT {TOKEN_COLUMNS} FROM token ORDER BY created_at, hash"))?;
            let rows = stmt.query_map([], token_from_row)?;
            rows.collect::<rusqlite::Result<Vec<_>>>()?
        };
        let settings = {
            let mut stmt = tx.prepare("SELECT key, value FROM setting ORDER BY key")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()?
        };
        let crl_numbers = {
            let mut stmt = tx.prepare("SELECT issuer, last FROM crl_number ORDER BY issuer")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
            let mut all = Vec::new();
            for row in rows {
                let (issuer, last) = row?;
                all.push((AuthorityRole::parse(&issuer)?, last as u64));
            }
            all
        };
        let snap = Snapshot {
            authorities: self.authorities()?,
            certs: self.list(&CertFilter::default())?,
            tokens,
            settings,
            crl_numbers,
            signing_keys: self.signing_keys()?,
            grants: self.grants(None)?,
            audit: self.audit_since(i64::MIN)?,
        };
        tx.finish()?;
        Ok(snap)
    }

    fn restore(&mut self, snap: &Snapshot) -> Result<()> {
        let dir = self.dir();
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let existing: i64 = tx.query_row("SELECT COUNT(*) FROM authority", [], |r| r.get(0))?;
        if existing > 0 {
            return Err(StoreError::AlreadyInitialised(dir));
        }
        for rec in [&snap.authorities.root, &snap.authorities.intermediate] {
            insert_authority(&tx, rec)?;
        }
        for (issuer, last) in &snap.crl_numbers {
            tx.execute(
                "INSERT INTO crl_number (issuer, last) VALUES (?1, ?2)",
                params![issuer.as_str(), *last as i64],
            )?;
        }
        for c in &snap.certs {
            insert_cert(&tx, c)?;
            if let Some(r) = c.revocation {
                tx.execute(
                    "UPDATE certificate SET revoked_at = ?1, revocation_reason = ?2 WHERE serial = ?3",
                    params![r.revoked_at, r.reason, c.serial],
                )?;
            }
        }
        insert_token_records(&tx, &snap.tokens)?;
        for (key, value) in &snap.settings {
            upsert_setting(&tx, key, Some(value))?;
        }
        for k in &snap.signing_keys {
            tx.execute(
                "INSERT INTO signing_key (kid, key_pem, key_encrypted, public_jwk, created_at, retired_at, publish_until) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![k.kid, k.key_pem, k.key_encrypted, k.public_jwk, k.created_at, k.retired_at, k.publish_until],
            )?;
        }
        for g in &snap.grants {
            tx.execute(
                &format!("INSERT INTO oauth_grant ({GRANT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
                params![g.id, g.identity, g.audience, g.scopes.join(" "), g.created_at, g.revoked_at],
            )?;
        }
        for e in &snap.audit {
            insert_audit(&tx, e)?;
        }
        tx.commit()?;
        Ok(())
    }

    fn revocation_mark(&self) -> Result<(i64, i64)> {
        Ok(self.conn.query_row(
            "SELECT COUNT(*), COALESCE(MAX(revoked_at), 0) FROM certificate WHERE revoked_at IS NOT NULL",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?)
    }

    fn count_matching(&self, filter: &CertFilter) -> Result<u64> {
        let (cond, args) = sqlite_filter(filter, false);
        let sql = format!("SELECT COUNT(*) FROM certificate WHERE 1=1{cond}");
        let n: i64 = self.conn.query_row(&sql, rusqlite::params_from_iter(args), |r| r.get(0))?;
        Ok(n as u64)
    }

    fn expiries_per_day(&self, filter: &CertFilter, from: i64) -> Result<Vec<(i64, u64)>> {
        let (cond, mut args) = sqlite_filter(filter, false);
        args.push(from.into());
        let sql = format!(
            "SELECT (not_after - ?{n}) / 86400 AS day, COUNT(*) FROM certificate WHERE not_after > ?{n}{cond} \
             GROUP BY day ORDER BY day",
            n = args.len()
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(args), |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn activity_per_day(&self, since: i64) -> Result<Vec<(i64, crate::Activity, u64)>> {
        let mut stmt = self.conn.prepare(&crate::activity_sql("?1"))?;
        let rows = stmt.query_map([since], |r| Ok((r.get(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)? as u64)))?;
        let rows = rows.collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows.into_iter().filter_map(|(d, c, n)| Some((d, crate::Activity::from_index(c)?, n))).collect())
    }

    fn count(&self) -> Result<u64> {
        let n: i64 = self.conn.query_row("SELECT COUNT(*) FROM certificate", [], |r| r.get(0))?;
        Ok(n as u64)
    }
}

const AUDIT_COLUMNS: &str = "at, node, actor, action, subject, serial, outcome, detail";

fn audit_from_row(r: &Row<'_>) -> rusqlite::Result<AuditRecord> {
    Ok(AuditRecord {
        at: r.get(0)?,
        node: r.get(1)?,
        actor: r.get(2)?,
        action: r.get(3)?,
        subject: r.get(4)?,
        serial: r.get(5)?,
        outcome: r.get(6)?,
        detail: r.get(7)?,
    })
}

/// A filter's SQL and its bound values, `?N` placeholders.
fn sqlite_filter(filter: &CertFilter, page: bool) -> (String, Vec<rusqlite::types::Value>) {
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    let cond = filter.sql(page, |a| {
        args.push(match a {
            crate::FilterArg::Text(t) => t.into(),
            crate::FilterArg::Int(i) => i.into(),
        });
        format!("?{}", args.len())
    });
    (cond, args)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::new_ca;

    #[test]
    fn a_missing_store_is_not_initialised_and_state_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(SqliteStore::open(dir.path(), false), Err(StoreError::NotInitialised(_))));
        {
            let mut s = SqliteStore::open(dir.path(), true).unwrap();
            s.init_authorities(&new_ca(), &[]).unwrap();
        }
        let s = SqliteStore::open(dir.path(), false).unwrap();
        assert_eq!(s.cert_by_serial("1a").unwrap().map(|c| c.name), Some("test".to_string()));
    }
}
