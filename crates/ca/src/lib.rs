//! The ambos certificate authority: the PKI core and the store joined by the
//! issuance policy (what gets stored, in which transaction, in which order).
//! The CLI, the CA server and the benchmarks all go through here.
#![forbid(unsafe_code)]

use ambos_pki::{
    build_crl, Authority, IssuedCert, KeyType, LeafRequest, NewCa, PkiError, PrivateKey, Profile, RevocationReason,
    RevokedEntry, Serial,
};
use ambos_store::{
    Authorities, AuthorityRecord, AuthorityRole, CertFilter, CertRecord, CertStore, NewCaRecords, Revocation,
    SqliteStore, Store, StoreError, StoreLocation,
};
use std::path::Path;
use std::time::Duration;
use thiserror::Error;

pub use ambos_pki::OffsetDateTime;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CaError {
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("'{name}' names {} valid certificates ({}); revoke one by serial", serials.len(), serials.join(", "))]
    AmbiguousName { name: String, serials: Vec<String> },
    #[error("the stored {0} CA certificate does not parse: {1}")]
    StoredCertificate(AuthorityRole, String),
    #[error("the stored token names profile '{0}', which this ambos does not know")]
    TokenProfile(String),
    #[error("the system random number generator failed")]
    Random,
    #[error("certificate {0} was not issued by this CA")]
    UnknownPeer(String),
    #[error("certificate {0} is revoked")]
    PeerRevoked(String),
    #[error("certificate {0} is not an administrator of the CA API")]
    NotAdmin(String),
    #[error("certificates of profile '{0}' cannot be renewed")]
    NotRenewable(String),
    #[error("the client certificate does not parse: {0}")]
    BadPeerCertificate(String),
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("cannot listen on {addr}: {why}")]
    Bind { addr: std::net::SocketAddr, why: String },
    /// A token request the policy refuses: the RFC 6749 §5.2 error code and why.
    #[error("{error}: {description}")]
    OAuth { error: &'static str, description: String },
    #[error("token-signing key: {0}")]
    SigningKey(String),
    /// A setting of `ambos serve` that does not parse or is out of range (the message names the flag).
    #[error("{0}")]
    InvalidSetting(String),
}

impl CaError {
    /// Whether what the caller gave was wrong (exit code 2), not the operation (1).
    pub fn is_input(&self) -> bool {
        match self {
            CaError::Pki(e) => e.is_input(),
            CaError::Store(e) => e.is_input(),
            CaError::AmbiguousName { .. } | CaError::InvalidSetting(_) | CaError::OAuth { .. } => true,
            _ => false,
        }
    }
}

pub type Result<T> = std::result::Result<T, CaError>;

pub mod api;
pub mod audit;
pub mod client;
mod enrollment;
mod listing;
pub mod oauth;
pub mod renewer;
#[cfg(test)]
mod test_ca;
mod verifier;

pub use enrollment::{Enrollment, TokenGrant, TokenOptions};
pub use listing::{ListQuery, Listing, Summary};

/// Settings for `ambos init`.
#[derive(Clone, Debug)]
pub struct InitOptions {
    pub name: String,
    pub key_type: KeyType,
    pub root_ttl: Duration,
    pub intermediate_ttl: Duration,
    /// `None` stores the CA keys unencrypted (`--no-passphrase`).
    pub passphrase: Option<Vec<u8>>,
    /// Where the intermediate's CRL is published (`ambos serve`'s
    /// `/v1/crl`): named as CRL distribution point in every certificate it
    /// issues; the intermediate itself names [`root_crl_url`] of it.
    pub crl_url: Option<String>,
}

impl InitOptions {
    /// Checks the options and that `dir` holds no CA yet: called by
    /// [`CertificateAuthority::init`], and before a passphrase is asked for.
    pub fn check(&self, dir: &Path) -> Result<()> {
        self.check_options()?;
        if dir.join(SqliteStore::FILE_NAME).exists() {
            return Err(StoreError::AlreadyInitialised(dir.to_path_buf()).into());
        }
        Ok(SqliteStore::check_creatable(dir)?)
    }

    /// [`InitOptions::check`] for a store anywhere: a PostgreSQL database
    /// must be reachable and hold no CA yet, and `dir` (where the root and
    /// intermediate certificates go) must be usable.
    pub fn check_at(&self, at: &StoreLocation, dir: &Path) -> Result<()> {
        match at {
            StoreLocation::Dir(dir) => self.check(dir),
            StoreLocation::Postgres(_) => {
                self.check_options()?;
                SqliteStore::check_creatable(dir)?;
                match CertificateAuthority::open_at(at) {
                    Ok(_) => Err(StoreError::AlreadyInitialised(at.shown().into()).into()),
                    Err(CaError::Store(StoreError::NotInitialised(_))) => Ok(()),
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// The name and CRL URL alone (a store elsewhere is checked when opened).
    pub fn check_options(&self) -> Result<()> {
        if self.name.trim().is_empty() || self.name.len() > 48 {
            let why = format!("--name '{}' must be 1-48 characters", self.name);
            return Err(PkiError::InvalidRequest(why).into());
        }
        if let Some(url) = &self.crl_url {
            ambos_pki::check_crl_url(url, "--crl-url")?;
        }
        Ok(())
    }

    /// A P-256 CA with `ambos init`'s default lifetimes (root 10 years,
    /// intermediate 5), keys unencrypted and no CRL URL: for demos, tests
    /// and benches.
    pub fn unencrypted(name: &str) -> InitOptions {
        InitOptions {
            name: name.into(),
            key_type: KeyType::EcP256,
            root_ttl: Duration::from_secs(10 * 365 * 86_400),
            intermediate_ttl: Duration::from_secs(5 * 365 * 86_400),
            passphrase: None,
            crl_url: None,
        }
    }
}

/// Where the root's CRL is published, given the intermediate's CRL URL:
/// `URL/root` (`ambos serve` answers `/v1/crl/root`).
fn root_crl_url(crl_url: &str) -> String {
    format!("{}/root", crl_url.trim_end_matches('/'))
}

/// The store setting that holds the CRL URL.
const CRL_URL: &str = "crl_url";

/// Serial or name → the certificate to act on.
#[derive(Clone, Debug)]
pub enum CertSelector {
    Serial(Serial),
    Name(String),
}

/// A CA on disk: its two certificates and the store. Keys stay encrypted
/// until [`CertificateAuthority::issuing_authority`] unlocks one.
pub struct CertificateAuthority<S: CertStore = Store> {
    store: S,
    authorities: Authorities,
    /// Who acts and where, for the audit trail.
    actor: audit::Actor,
}

/// Whole seconds: X.509 times have no fractions, and records should match the certificate.
pub(crate) fn now() -> OffsetDateTime {
    let t = OffsetDateTime::now_utc();
    t.replace_nanosecond(0).unwrap_or(t)
}

/// The store record of an issued certificate.
pub(crate) fn record_of(issued: &IssuedCert, issuer: AuthorityRole, at: OffsetDateTime) -> CertRecord {
    CertRecord {
        serial: issued.serial.to_hex(),
        name: issued.name.clone(),
        profile: issued.profile.as_str().to_string(),
        issuer,
        subject: issued.subject.clone(),
        sans: issued.sans.iter().map(ToString::to_string).collect(),
        not_before: issued.not_before.unix_timestamp(),
        not_after: issued.not_after.unix_timestamp(),
        sha256: issued.sha256.clone(),
        cert_der: issued.cert_der.clone(),
        issued_at: at.unix_timestamp(),
        revocation: None,
        admin: false,
    }
}

impl CertificateAuthority<Store> {
    /// Creates a CA in `dir` (SQLite); refuses if one is already there.
    pub fn init(dir: &Path, opts: &InitOptions) -> Result<Self> {
        Self::init_at(&StoreLocation::Dir(dir.to_path_buf()), opts)
    }

    /// Creates a CA in the store at `at` (a PostgreSQL database gets the
    /// schema first); refuses if one is already there.
    pub fn init_at(at: &StoreLocation, opts: &InitOptions) -> Result<Self> {
        match at {
            StoreLocation::Dir(dir) => opts.check(dir)?,
            StoreLocation::Postgres(_) => opts.check_options()?,
        }
        // Check before the (slow, for RSA) key generation.
        let mut store = Store::open(at, true, database_tls(at)?)?;
        if store.authorities().is_ok() {
            return Err(StoreError::AlreadyInitialised(at.shown().into()).into());
        }
        let at = now();
        let root_crl = opts.crl_url.as_deref().map(root_crl_url);
        let ca = NewCa::create_with_crl_url(
            &opts.name,
            opts.key_type,
            opts.root_ttl,
            opts.intermediate_ttl,
            at,
            root_crl.as_deref(),
        )?;
        let record = |role, cert_der: &[u8], key: &PrivateKey| -> Result<AuthorityRecord> {
            let (key_pem, key_encrypted) = match &opts.passphrase {
                Some(p) => (ambos_pki::encrypt_private_key(key.pkcs8_der(), p)?, true),
                None => (key.pkcs8_pem().to_string(), false),
            };
            Ok(AuthorityRecord {
                role,
                name: opts.name.clone(),
                key_type: opts.key_type.to_string(),
                cert_der: cert_der.to_vec(),
                key_pem,
                key_encrypted,
                created_at: at.unix_timestamp(),
            })
        };
        let root = record(AuthorityRole::Root, &ca.root_cert_der, &ca.root_key)?;
        let intermediate = record(AuthorityRole::Intermediate, &ca.intermediate_cert_der, &ca.intermediate_key)?;
        let settings = opts.crl_url.iter().map(|url| (CRL_URL.to_string(), url.clone())).collect();
        let actor = audit::Actor::default();
        let keys = if opts.passphrase.is_some() { "encrypted" } else { "unencrypted" };
        let detail = format!("{} CA, keys {keys}", opts.key_type);
        let entry = audit::Entry { action: "init", subject: &opts.name, serial: None, refused: None, detail };
        let trail = actor.record(at.unix_timestamp(), entry);
        store.init_authorities(
            &NewCaRecords {
                root,
                intermediate,
                intermediate_cert: record_of(&ca.intermediate, AuthorityRole::Root, at),
                settings,
            },
            &trail,
        )?;
        audit::log(&trail);
        let authorities = store.authorities()?;
        Ok(CertificateAuthority { store, authorities, actor })
    }

    /// Opens the CA in `dir` (SQLite); `NotInitialised` if there is none.
    pub fn open(dir: &Path) -> Result<Self> {
        Self::open_at(&StoreLocation::Dir(dir.to_path_buf()))
    }

    /// Opens the CA in the store at `at`; `NotInitialised` if there is none.
    pub fn open_at(at: &StoreLocation) -> Result<Self> {
        Self::with_store(Store::open(at, false, database_tls(at)?)?)
    }
}

/// `ambos store migrate`: applies the schema migrations this ambos knows
/// to a PostgreSQL store; returns the schema versions before and after.
pub fn migrate_store(at: &StoreLocation) -> Result<(i64, i64)> {
    match at {
        StoreLocation::Postgres(url) => Ok(ambos_store::PgStore::migrate(url, database_tls(at)?)?),
        StoreLocation::Dir(_) => Err(CaError::InvalidSetting(
            "a SQLite store migrates itself when opened: give --store postgres://... to migrate a database".into(),
        )),
    }
}

/// What `ambos store copy` moved.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Copied {
    pub certificates: usize,
    pub revoked: usize,
    pub tokens: usize,
    pub crl_numbers: Vec<(AuthorityRole, u64)>,
}

/// `ambos store copy`: moves the CA in `from` to `to` (which must hold no
/// CA; a PostgreSQL database gets the schema first) in one transaction,
/// serials, revocations, spent tokens and CRL numbers unchanged; then reads
/// `to` back and checks it holds the same.
pub fn copy_store(from: &StoreLocation, to: &StoreLocation) -> Result<Copied> {
    if from == to {
        return Err(CaError::InvalidSetting("--from and --to are the same store".into()));
    }
    let source = Store::open(from, false, database_tls(from)?)?;
    let snap = source.snapshot()?;
    let mut target = Store::open(to, true, database_tls(to)?)?;
    target.restore(&snap)?;
    let back = target.snapshot()?;
    if format!("{back:?}") != format!("{snap:?}") {
        return Err(StoreError::Corrupt(format!("{} does not read back what was copied to it", to.shown())).into());
    }
    Ok(Copied {
        certificates: snap.certs.len(),
        revoked: snap.certs.iter().filter(|c| c.revocation.is_some()).count(),
        tokens: snap.tokens.len(),
        crl_numbers: snap.crl_numbers,
    })
}

/// TLS to a PostgreSQL store, from its URL's `sslmode`, `sslrootcert`,
/// `sslcert` and `sslkey` (the server is always verified, chain and name,
/// as libpq's `verify-full`); `None` for SQLite or `sslmode=disable`.
pub fn database_tls(at: &StoreLocation) -> Result<Option<std::sync::Arc<rustls::ClientConfig>>> {
    let StoreLocation::Postgres(url) = at else { return Ok(None) };
    let (_, tls) = ambos_store::postgres::parse_url(url)?;
    if tls.mode == "disable" {
        return Ok(None);
    }
    let bad = |why: String| CaError::Store(StoreError::BadUrl { url: at.shown(), why });
    let Some(root) = &tls.root_cert else {
        if tls.mode == "prefer" {
            // libpq's default: TLS only if it can be verified; here, none.
            return Ok(None);
        }
        return Err(bad(format!("sslmode={} needs sslrootcert=FILE (the CA of the database's certificate)", tls.mode)));
    };
    let roots = ambos_tls::root_store(std::slice::from_ref(root)).map_err(|e| bad(format!("sslrootcert: {e}")))?;
    let client = match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => ambos_tls::ClientCert::Chain(
            ambos_tls::load_certs(cert).map_err(|e| bad(format!("sslcert: {e}")))?,
            ambos_tls::load_key(key).map_err(|e| bad(format!("sslkey: {e}")))?,
        ),
        (None, None) => ambos_tls::ClientCert::None,
        _ => return Err(bad("sslcert and sslkey go together".into())),
    };
    let mut config =
        ambos_tls::client_config(ambos_tls::ServerAuth::Roots(roots), client).map_err(|e| bad(e.to_string()))?;
    config.alpn_protocols.clear();
    Ok(Some(std::sync::Arc::new(config)))
}

impl<S: CertStore> CertificateAuthority<S> {
    pub fn with_store(store: S) -> Result<Self> {
        let authorities = store.authorities()?;
        Ok(CertificateAuthority { store, authorities, actor: audit::Actor::default() })
    }

    pub fn name(&self) -> &str {
        &self.authorities.root.name
    }

    pub fn root_der(&self) -> &[u8] {
        &self.authorities.root.cert_der
    }

    pub fn intermediate_der(&self) -> &[u8] {
        &self.authorities.intermediate.cert_der
    }

    /// Whether unlocking a CA key needs a passphrase.
    pub fn keys_encrypted(&self) -> bool {
        self.authorities.intermediate.key_encrypted || self.authorities.root.key_encrypted
    }

    /// Unlocks the CA key of `role` and returns a signer for it.
    pub fn authority(&self, role: AuthorityRole, passphrase: Option<&[u8]>) -> Result<Authority> {
        let rec = match role {
            AuthorityRole::Root => &self.authorities.root,
            AuthorityRole::Intermediate => &self.authorities.intermediate,
        };
        let key = PrivateKey::from_pem(&rec.key_pem, passphrase)?;
        let authority = Authority::new(&rec.cert_der, key, &self.authorities.root.cert_der)?;
        Ok(match role {
            AuthorityRole::Intermediate => authority.with_crl_url(self.crl_url()?),
            AuthorityRole::Root => authority,
        })
    }

    /// The CRL distribution point put in issued certificates, if any.
    fn crl_url(&self) -> Result<Option<String>> {
        Ok(self.store.setting(CRL_URL)?)
    }

    /// Sets (or removes) the CRL distribution point of certificates issued
    /// from now on; certificates already issued keep theirs.
    pub fn set_crl_url(&mut self, url: Option<&str>) -> Result<()> {
        Ok(self.store.set_setting(CRL_URL, url)?)
    }

    /// Issues one certificate per request and stores them all in one
    /// transaction before returning: nothing is handed out unrecorded.
    pub fn issue(&mut self, issuer: &Authority, requests: &[LeafRequest]) -> Result<Vec<IssuedCert>> {
        let at = now();
        let issued = requests.iter().map(|r| issuer.issue(r, at)).collect::<std::result::Result<Vec<_>, _>>()?;
        let records: Vec<CertRecord> = issued.iter().map(|c| record_of(c, AuthorityRole::Intermediate, at)).collect();
        let entries: Vec<_> = records
            .iter()
            .map(|r| {
                let detail = r.profile.clone();
                (
                    None,
                    audit::Entry { action: "issue", subject: &r.name, serial: Some(&r.serial), refused: None, detail },
                )
            })
            .collect();
        let trail = self.actor.records(at.unix_timestamp(), &entries);
        self.store.insert_certs(&records, &trail)?;
        audit::log(&trail);
        Ok(issued)
    }

    /// Signs an external CSR (signature checked, names limited by `profile`) and stores it.
    pub fn sign_csr(
        &mut self,
        issuer: &Authority,
        csr_der: &[u8],
        profile: Profile,
        ttl: Duration,
    ) -> Result<IssuedCert> {
        let at = now();
        let issued = issuer.sign_csr(csr_der, profile, ttl, at)?;
        let r = record_of(&issued, AuthorityRole::Intermediate, at);
        let detail = format!("CSR, {}", r.profile);
        let trail = self.actor.record(
            at.unix_timestamp(),
            audit::Entry { action: "sign", subject: &r.name, serial: Some(&r.serial), refused: None, detail },
        );
        self.store.insert_certs(std::slice::from_ref(&r), &trail)?;
        audit::log(&trail);
        Ok(issued)
    }

    /// Finds the one certificate a serial or name refers to. A name must
    /// match exactly one unrevoked certificate.
    pub fn resolve(&self, selector: &CertSelector) -> Result<CertRecord> {
        match selector {
            CertSelector::Serial(s) => {
                self.store.cert_by_serial(&s.to_hex())?.ok_or_else(|| StoreError::UnknownCertificate(s.to_hex()).into())
            }
            CertSelector::Name(name) => {
                let mut live: Vec<CertRecord> =
                    self.store.certs_by_name(name)?.into_iter().filter(|c| c.revocation.is_none()).collect();
                match live.len() {
                    0 => Err(StoreError::UnknownCertificate(name.clone()).into()),
                    1 => Ok(live.remove(0)),
                    _ => Err(CaError::AmbiguousName {
                        name: name.clone(),
                        serials: live.into_iter().map(|c| c.serial).collect(),
                    }),
                }
            }
        }
    }

    /// Revokes a certificate (one transaction); it shows up in the next CRL.
    pub fn revoke(&mut self, selector: &CertSelector, reason: RevocationReason) -> Result<CertRecord> {
        let target = self.resolve(selector)?;
        let revocation = Revocation { revoked_at: now().unix_timestamp(), reason: reason.code() };
        let detail = reason.as_str().to_string();
        let trail = self.actor.record(
            revocation.revoked_at,
            audit::Entry {
                action: "revoke",
                subject: &target.name,
                serial: Some(&target.serial),
                refused: None,
                detail,
            },
        );
        let r = self.store.revoke(&target.serial, revocation, &trail)?;
        audit::log(&trail);
        Ok(r)
    }

    /// Revokes what `target` names (`ambos revoke TARGET`): the serial of a
    /// certificate issued here (hex, any case, colons allowed), else a
    /// name; an unknown one is named as given.
    pub fn revoke_target(&mut self, target: &str, reason: RevocationReason) -> Result<CertRecord> {
        let selector = match target.parse::<Serial>() {
            Ok(s) if self.resolve(&CertSelector::Serial(s.clone())).is_ok() => CertSelector::Serial(s),
            _ => CertSelector::Name(target.to_string()),
        };
        self.revoke(&selector, reason).map_err(|e| match e {
            CaError::Store(StoreError::UnknownCertificate(_)) => StoreError::UnknownCertificate(target.into()).into(),
            other => other,
        })
    }

    /// Builds the next CRL of `role`'s CA, signed by `signer`, valid for `validity`.
    pub fn crl(&mut self, role: AuthorityRole, signer: &Authority, validity: Duration) -> Result<Vec<u8>> {
        self.crl_with_synthetic(role, signer, validity, 0)
    }

    /// A CRL with `synthetic` random serials (of no certificate) after the
    /// real revocations: a large CRL for load tests (`ambos crl
    /// --synthetic-entries`, bench/compare.sh).
    pub fn crl_with_synthetic(
        &mut self,
        role: AuthorityRole,
        signer: &Authority,
        validity: Duration,
        synthetic: usize,
    ) -> Result<Vec<u8>> {
        let mut revoked = self
            .store
            .revoked_by(role)?
            .into_iter()
            .map(|(serial, r)| {
                Ok(RevokedEntry {
                    serial: serial.parse()?,
                    revoked_at: OffsetDateTime::from_unix_timestamp(r.revoked_at)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    reason: RevocationReason::from_code(r.reason).unwrap_or(RevocationReason::Unspecified),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let at = now();
        revoked.extend((0..synthetic).map(|_| RevokedEntry {
            serial: Serial::random(),
            revoked_at: at,
            reason: RevocationReason::Unspecified,
        }));
        let number = self.store.next_crl_number(role)?;
        Ok(build_crl(signer, number, &revoked, at, at + validity)?)
    }

    /// Marks an issued certificate as a CA API administrator.
    pub fn set_admin(&mut self, serial: &Serial) -> Result<()> {
        let serial = serial.to_hex();
        let name = self.store.cert_by_serial(&serial)?.map(|c| c.name).unwrap_or_default();
        let detail = "CA API administrator".to_string();
        let trail = self.actor.record(
            now().unix_timestamp(),
            audit::Entry { action: "admin", subject: &name, serial: Some(&serial), refused: None, detail },
        );
        self.store.set_admin(&serial, &trail)?;
        audit::log(&trail);
        Ok(())
    }

    /// How many certificates are revoked and when the last was (see
    /// [`CertStore::revocation_mark`]).
    pub fn revocation_mark(&self) -> Result<(i64, i64)> {
        Ok(self.store.revocation_mark()?)
    }

    /// Whether the store answers (`/healthz`): one small read.
    pub fn check_store(&self) -> Result<()> {
        self.store.setting(CRL_URL)?;
        Ok(())
    }

    pub fn list(&self, filter: &CertFilter) -> Result<Vec<CertRecord>> {
        Ok(self.store.list(filter)?)
    }

    /// How many certificates `filter` selects, counted in the store.
    pub fn count(&self, filter: &CertFilter) -> Result<u64> {
        Ok(self.store.count_matching(filter)?)
    }

    /// How many certificates `filter` selects expire on each day after `from`.
    pub fn expiries_per_day(&self, filter: &CertFilter, from: i64) -> Result<Vec<(i64, u64)>> {
        Ok(self.store.expiries_per_day(filter, from)?)
    }

    /// Issuances, renewals and revocations done on each day from `since`.
    pub fn activity_per_day(&self, since: i64) -> Result<Vec<(i64, ambos_store::Activity, u64)>> {
        Ok(self.store.activity_per_day(since)?)
    }

    /// The record of the certificate a client connected with, if it may use
    /// the API: issued here and not revoked.
    pub fn peer(&self, serial: &str) -> Result<CertRecord> {
        let rec = self.store.cert_by_serial(serial)?.ok_or_else(|| CaError::UnknownPeer(serial.to_string()))?;
        if rec.revocation.is_some() {
            return Err(CaError::PeerRevoked(serial.to_string()));
        }
        Ok(rec)
    }

    /// As [`CertificateAuthority::peer`], and marked administrator (`ambos issue client NAME --admin`).
    pub fn admin(&self, serial: &str) -> Result<CertRecord> {
        let rec = self.peer(serial)?;
        if !rec.admin {
            return Err(CaError::NotAdmin(serial.to_string()));
        }
        Ok(rec)
    }

    /// Renews the certificate a client connected with (`peer_der`, verified
    /// by the TLS layer): same name, profile, SANs, OU, O and lifetime, for
    /// the key of `csr_der` or else the same key; an administrator stays one.
    /// Stored (one transaction, with its audit entry) before it is returned;
    /// a refusal is recorded too.
    pub fn renew(&mut self, issuer: &Authority, peer_der: &[u8], csr_der: Option<&[u8]>) -> Result<IssuedCert> {
        let renewed = self.renew_stored(issuer, peer_der, csr_der);
        if let Err(e) = &renewed {
            let (subject, old_serial) = match ambos_tls::Identity::from_der(peer_der) {
                Ok(id) => (id.display_name().to_string(), id.serial),
                Err(_) => (String::new(), String::new()),
            };
            let (refused, detail) = (Some(e.to_string()), String::new());
            let entry = audit::Entry { action: "renew", subject: &subject, serial: Some(&old_serial), refused, detail };
            self.audit_no_change(None, entry);
        }
        renewed
    }

    fn renew_stored(&mut self, issuer: &Authority, peer_der: &[u8], csr_der: Option<&[u8]>) -> Result<IssuedCert> {
        let id = ambos_tls::Identity::from_der(peer_der).map_err(|e| CaError::BadPeerCertificate(e.to_string()))?;
        let rec = self.peer(&id.serial)?;
        let profile: Profile = rec.profile.parse().map_err(|_| CaError::NotRenewable(rec.profile.clone()))?;
        let mut req = LeafRequest::new(&rec.name, profile);
        req.sans = rec.sans.iter().filter_map(|s| s.parse().ok()).collect();
        req.organizational_units = id.ou;
        req.organization = id.o.into_iter().next();
        req.ttl = ambos_pki::issued_ttl(rec.not_before, rec.not_after);
        let at = now();
        let issued = match csr_der {
            Some(der) => issuer.issue_for_csr(&req, der, at)?,
            None => {
                let (_, cert) = x509_parser::parse_x509_certificate(peer_der)
                    .map_err(|e| CaError::BadPeerCertificate(e.to_string()))?;
                issuer.issue_for_spki(&req, cert.public_key().raw, at)?
            }
        };
        let mut record = record_of(&issued, AuthorityRole::Intermediate, at);
        record.admin = rec.admin;
        let detail = format!("replaces {}", id.serial);
        let trail = self.actor.record(
            at.unix_timestamp(),
            audit::Entry {
                action: "renew",
                subject: &record.name,
                serial: Some(&record.serial),
                refused: None,
                detail,
            },
        );
        self.store.insert_certs(std::slice::from_ref(&record), &trail)?;
        audit::log(&trail);
        Ok(issued)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_say_whether_the_input_was_wrong() {
        assert!(CaError::Pki(PkiError::InvalidName("-x".into())).is_input());
        assert!(!CaError::Pki(PkiError::Encryption("rng".into())).is_input());
        assert!(CaError::Store(StoreError::UnknownCertificate("web".into())).is_input());
        assert!(!CaError::Store(StoreError::Corrupt("x".into())).is_input());
        assert!(CaError::AmbiguousName { name: "web".into(), serials: vec![] }.is_input());
        assert!(!CaError::Random.is_input());
    }
    use crate::test_ca::{csr, refused, spiffe, test_ca};
    use ambos_pki::San;

    #[test]
    fn renewal_keeps_the_identity_lifetime_and_admin_mark_for_the_same_key() {
        let mut t = test_ca("renew");
        let old = t.issue_client("alice");
        t.ca.set_admin(&old.serial).unwrap();
        let new = t.ca.renew(&t.signer, &old.cert_der, None).unwrap();
        assert_ne!(new.serial, old.serial);
        assert_eq!((new.name.as_str(), new.profile, &new.sans), ("alice", Profile::Client, &old.sans));
        assert_eq!(new.not_after - new.not_before, old.not_after - old.not_before, "same lifetime");
        let key = |der: &[u8]| x509_parser::parse_x509_certificate(der).unwrap().1.public_key().raw.to_vec();
        assert_eq!(key(&new.cert_der), key(&old.cert_der), "no CSR: the same key");
        let stored = t.ca.peer(&new.serial.to_hex()).unwrap();
        assert!(stored.admin, "an administrator stays one");
        assert!(t.ca.peer(&old.serial.to_hex()).is_ok(), "the old certificate stays valid until it expires");
    }

    #[test]
    fn renewal_with_a_csr_moves_to_its_key_but_not_to_its_names() {
        let mut t = test_ca("renew");
        let old = t.issue_client("alice");
        let (_, der) = csr("alice", &[spiffe("alice")]);
        let new = t.ca.renew(&t.signer, &old.cert_der, Some(&der)).unwrap();
        let key = |der: &[u8]| x509_parser::parse_x509_certificate(der).unwrap().1.public_key().raw.to_vec();
        assert_ne!(key(&new.cert_der), key(&old.cert_der));
        assert!(!t.ca.peer(&new.serial.to_hex()).unwrap().admin);
        let (_, more) = csr("alice", &[spiffe("alice"), San::Dns("extra.test".into())]);
        let err = refused(t.ca.renew(&t.signer, &old.cert_der, Some(&more)));
        assert!(matches!(err, CaError::Pki(PkiError::CsrNotAllowed(..))), "{err}");
    }

    #[test]
    fn a_revoked_certificate_cannot_renew_or_act() {
        let mut t = test_ca("renew");
        let old = t.issue_client("alice");
        t.ca.set_admin(&old.serial).unwrap();
        t.ca.revoke(&CertSelector::Serial(old.serial.clone()), RevocationReason::KeyCompromise).unwrap();
        let err = refused(t.ca.renew(&t.signer, &old.cert_der, None));
        assert!(matches!(&err, CaError::PeerRevoked(s) if *s == old.serial.to_hex()), "{err}");
        assert!(matches!(t.ca.admin(&old.serial.to_hex()), Err(CaError::PeerRevoked(_))));
        assert_eq!(t.ca.list(&CertFilter { name: Some("alice".into()), ..Default::default() }).unwrap().len(), 1);
    }

    #[test]
    fn a_certificate_this_ca_did_not_issue_cannot_renew() {
        let mut other = test_ca("other");
        let foreign = other.issue_client("mallory");
        let mut t = test_ca("renew");
        let err = refused(t.ca.renew(&t.signer, &foreign.cert_der, None));
        assert!(matches!(&err, CaError::UnknownPeer(s) if *s == foreign.serial.to_hex()), "{err}");
        let err = refused(t.ca.renew(&t.signer, b"not a certificate", None));
        assert!(matches!(err, CaError::BadPeerCertificate(_)), "{err}");
        assert_eq!(t.ca.list(&CertFilter { name: Some("mallory".into()), ..Default::default() }).unwrap().len(), 0);
    }

    #[test]
    fn each_change_has_its_audit_entry_and_a_failed_one_none() {
        let mut t = test_ca("trail");
        let alice = t.issue_client("alice");
        t.ca.set_admin(&alice.serial).unwrap();
        let renewed = t.ca.renew(&t.signer, &alice.cert_der, None).unwrap();
        let by_serial = CertSelector::Serial(alice.serial.clone());
        t.ca.revoke(&by_serial, RevocationReason::KeyCompromise).unwrap();
        assert!(t.ca.revoke(&by_serial, RevocationReason::KeyCompromise).is_err(), "revoked once");
        refused(t.ca.renew(&t.signer, &alice.cert_der, None));
        let grant = t.ca.allow("spiffe://acme.test/alice", "pay", &["read".into()]).unwrap();
        t.ca.revoke_grant(grant.id).unwrap();
        let trail = t.ca.audit_within(None).unwrap();
        let view: Vec<(&str, &str, Option<&str>)> =
            trail.iter().map(|e| (e.action.as_str(), e.outcome.as_str(), e.serial.as_deref())).collect();
        let (old, new) = (alice.serial.to_hex(), renewed.serial.to_hex());
        assert_eq!(
            view,
            [
                ("init", "ok", None),
                ("issue", "ok", Some(old.as_str())),
                ("admin", "ok", Some(old.as_str())),
                ("renew", "ok", Some(new.as_str())),
                ("revoke", "ok", Some(old.as_str())),
                ("renew", "refused", Some(old.as_str())),
                ("oauth-allow", "ok", None),
                ("oauth-revoke", "ok", None),
            ]
        );
        assert_eq!(trail[3].detail, format!("replaces {old}"));
        let named = format!("grant {} ", grant.id);
        assert!(trail[6..].iter().all(|e| e.detail.starts_with(&named)), "the grant's id: {:?}", &trail[6..]);
    }

    #[test]
    fn only_a_certificate_marked_admin_is_an_administrator() {
        let mut t = test_ca("admin");
        let user = t.issue_client("user");
        let admin = t.issue_client("admin");
        t.ca.set_admin(&admin.serial).unwrap();
        assert!(matches!(t.ca.admin(&user.serial.to_hex()), Err(CaError::NotAdmin(_))));
        assert_eq!(t.ca.admin(&admin.serial.to_hex()).unwrap().name, "admin");
        assert!(matches!(t.ca.admin("00ff"), Err(CaError::UnknownPeer(_))));
    }

    #[test]
    fn init_stores_the_intermediate_as_a_root_issued_certificate_and_the_crl_url() {
        let dir = tempfile::tempdir().unwrap();
        let opts = InitOptions {
            root_ttl: Duration::from_secs(86_400),
            intermediate_ttl: Duration::from_secs(3600),
            crl_url: Some("https://ca.test/v1/crl".into()),
            ..InitOptions::unencrypted("init")
        };
        let ca = CertificateAuthority::init(dir.path(), &opts).unwrap();
        let listed = ca.list(&CertFilter::default()).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!((listed[0].issuer, listed[0].cert_der.as_slice()), (AuthorityRole::Root, ca.intermediate_der()));
        assert_eq!(ca.crl_url().unwrap().as_deref(), Some("https://ca.test/v1/crl"));
        assert!(matches!(
            CertificateAuthority::init(dir.path(), &opts),
            Err(CaError::Store(StoreError::AlreadyInitialised(_)))
        ));
    }

    #[test]
    fn init_refuses_a_bad_name_or_crl_url_before_making_keys() {
        let dir = tempfile::tempdir().unwrap();
        let opts = InitOptions {
            name: "acme".into(),
            key_type: KeyType::EcP256,
            root_ttl: Duration::from_secs(86_400),
            intermediate_ttl: Duration::from_secs(3600),
            passphrase: None,
            crl_url: None,
        };
        for (bad, why) in [
            (InitOptions { name: " ".into(), ..opts.clone() }, "--name ' ' must be 1-48 characters"),
            (InitOptions { name: "a".repeat(49), ..opts.clone() }, "must be 1-48 characters"),
            (InitOptions { crl_url: Some("ftp://ca/crl".into()), ..opts.clone() }, "is not an http:// or https:// URL"),
            (InitOptions { crl_url: Some("https:///crl".into()), ..opts.clone() }, "is not an http:// or https:// URL"),
            (
                InitOptions { crl_url: Some("https://ca/ crl".into()), ..opts.clone() },
                "is not an http:// or https:// URL",
            ),
        ] {
            let e = CertificateAuthority::init(dir.path(), &bad).err().expect("refused");
            assert!(e.is_input() && e.to_string().contains(why), "{e}");
            assert!(!dir.path().join(SqliteStore::FILE_NAME).exists(), "nothing written for {e}");
        }
        opts.check(dir.path()).unwrap();
    }

    #[test]
    fn a_revocation_target_is_a_known_serial_else_a_name() {
        let mut t = test_ca("target");
        let web = t.issue_client("web");
        let api = t.issue_client("api");
        // The serial with colons and in lower case; then by name.
        let hex = web.serial.to_hex();
        let colons: Vec<&str> = hex.as_bytes().chunks(2).map(|c| std::str::from_utf8(c).unwrap()).collect();
        let rec = t.ca.revoke_target(&colons.join(":").to_lowercase(), RevocationReason::Superseded).unwrap();
        assert_eq!((rec.name.as_str(), rec.serial.as_str()), ("web", web.serial.to_hex().as_str()));
        assert_eq!(t.ca.revoke_target("api", RevocationReason::KeyCompromise).unwrap().serial, api.serial.to_hex());
        // A certificate named like a serial, and targets nothing here knows.
        t.issue_client("abcd");
        assert_eq!(t.ca.revoke_target("abcd", RevocationReason::Unspecified).unwrap().name, "abcd");
        for unknown in ["nosuch", "00:ff"] {
            match t.ca.revoke_target(unknown, RevocationReason::Unspecified) {
                Err(CaError::Store(StoreError::UnknownCertificate(s))) => assert_eq!(s, unknown),
                other => panic!("{unknown}: {other:?}"),
            }
        }
        assert!(matches!(
            t.ca.revoke_target("web", RevocationReason::Unspecified),
            Err(CaError::Store(StoreError::UnknownCertificate(_)))
        ));
    }
}
