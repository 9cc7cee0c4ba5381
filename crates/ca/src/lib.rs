//! The ambos certificate authority: the PKI core and the store joined by the
//! issuance policy (what gets stored, in which transaction, in which order).
//! The CLI, the CA server and the benchmarks all go through here.
#![forbid(unsafe_code)]

use ambos_pki::{
    build_crl, Authority, IssuedCert, KeyType, LeafRequest, NewCa, PkiError, PrivateKey, Profile, RevocationReason,
    RevokedEntry, Serial,
};
use ambos_store::{
    Authorities, AuthorityRecord, AuthorityRole, CertFilter, CertRecord, CertStore, Revocation, SqliteStore, StoreError,
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
    #[error("cannot reach the CA at {url}: {why}")]
    Unreachable { url: String, why: String },
    #[error("the CA refused: {error}{}", if detail.is_empty() { String::new() } else { format!(" ({detail})") })]
    Refused { status: u16, error: String, detail: String },
    #[error("unexpected answer from the CA: {0}")]
    BadResponse(String),
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("cannot listen on {addr}: {why}")]
    Bind { addr: std::net::SocketAddr, why: String },
}

pub type Result<T> = std::result::Result<T, CaError>;

pub mod client;
pub mod renewer;
pub mod server;
mod verifier;

/// What an enrollment token buys: one certificate with exactly these names.
#[derive(Clone, Debug)]
pub struct TokenOptions {
    pub name: String,
    pub profile: Profile,
    pub sans: Vec<ambos_pki::San>,
    pub ous: Vec<String>,
    /// Lifetime of the certificate (default: the profile's).
    pub cert_ttl: Duration,
    /// How long the token can be spent (default 10 minutes).
    pub ttl: Duration,
}

/// SHA-256 hex of a token secret: what the store keeps.
pub fn token_hash(secret: &str) -> String {
    ambos_pki::sha256_hex(secret.trim().as_bytes())
}

/// The certificate request a stored token stands for.
pub fn token_request(t: &ambos_store::TokenRecord) -> Result<LeafRequest> {
    let profile: Profile = t.profile.parse().map_err(|_| CaError::TokenProfile(t.profile.clone()))?;
    let mut req = LeafRequest::new(&t.name, profile);
    req.sans = t.sans.iter().map(|s| s.parse()).collect::<std::result::Result<_, _>>()?;
    req.organizational_units = t.ous.clone();
    req.ttl = Duration::from_secs(t.cert_ttl.max(1) as u64);
    Ok(req)
}

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

/// Where the root's CRL is published, given the intermediate's CRL URL:
/// `URL/root` (`ambos serve` answers `/v1/crl/root`).
pub fn root_crl_url(crl_url: &str) -> String {
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
pub struct CertificateAuthority<S: CertStore = SqliteStore> {
    store: S,
    authorities: Authorities,
}

/// Whole seconds: X.509 times have no fractions, and records should match the certificate.
fn now() -> OffsetDateTime {
    let t = OffsetDateTime::now_utc();
    t.replace_nanosecond(0).unwrap_or(t)
}

/// The store record of an issued certificate.
pub fn record_of(issued: &IssuedCert, issuer: AuthorityRole, at: OffsetDateTime) -> CertRecord {
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

impl CertificateAuthority<SqliteStore> {
    /// Creates a CA in `dir`; refuses if one is already there.
    pub fn init(dir: &Path, opts: &InitOptions) -> Result<Self> {
        // Check before the (slow, for RSA) key generation.
        let mut store = SqliteStore::open(dir, true)?;
        if store.authorities().is_ok() {
            return Err(StoreError::AlreadyInitialised(dir.to_path_buf()).into());
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
        store.init_authorities(&root, &intermediate)?;
        // The intermediate is a certificate the root issued: list and revoke it like any other.
        store.insert_certs(&[record_of(&ca.intermediate, AuthorityRole::Root, at)])?;
        if let Some(url) = &opts.crl_url {
            store.set_setting(CRL_URL, Some(url))?;
        }
        let authorities = store.authorities()?;
        Ok(CertificateAuthority { store, authorities })
    }

    /// Opens the CA in `dir`; `NotInitialised` if there is none.
    pub fn open(dir: &Path) -> Result<Self> {
        let store = SqliteStore::open(dir, false)?;
        Self::with_store(store)
    }
}

impl<S: CertStore> CertificateAuthority<S> {
    pub fn with_store(store: S) -> Result<Self> {
        let authorities = store.authorities()?;
        Ok(CertificateAuthority { store, authorities })
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

    pub fn key_type(&self) -> &str {
        &self.authorities.intermediate.key_type
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
    pub fn crl_url(&self) -> Result<Option<String>> {
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
        self.store.insert_certs(&records)?;
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
        self.store.insert_certs(&[record_of(&issued, AuthorityRole::Intermediate, at)])?;
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
        Ok(self.store.revoke(&target.serial, revocation)?)
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

    /// Creates a one-time token and returns its secret (shown once, stored hashed).
    pub fn create_token(&mut self, opts: &TokenOptions) -> Result<String> {
        Ok(self.create_tokens(opts, 1)?.remove(0))
    }

    /// Creates `count` tokens with the same terms in one transaction.
    pub fn create_tokens(&mut self, opts: &TokenOptions, count: usize) -> Result<Vec<String>> {
        ambos_pki::validate_name(&opts.name)?;
        let at = now();
        let mut secrets = Vec::with_capacity(count);
        let mut records = Vec::with_capacity(count);
        for _ in 0..count {
            let mut bytes = [0u8; 32];
            aws_lc_rs::rand::fill(&mut bytes).map_err(|_| CaError::Random)?;
            let secret = format!("ambos_{}", hex::encode(bytes));
            records.push(ambos_store::TokenRecord {
                hash: token_hash(&secret),
                name: opts.name.clone(),
                profile: opts.profile.as_str().to_string(),
                sans: opts.sans.iter().map(ToString::to_string).collect(),
                ous: opts.ous.clone(),
                cert_ttl: opts.cert_ttl.as_secs() as i64,
                expires_at: (at + opts.ttl).unix_timestamp(),
                created_at: at.unix_timestamp(),
                spent_at: None,
                spent_serial: None,
            });
            secrets.push(secret);
        }
        self.store.insert_tokens(&records)?;
        Ok(secrets)
    }

    /// Marks an issued certificate as a CA API administrator.
    pub fn set_admin(&mut self, serial: &Serial) -> Result<()> {
        Ok(self.store.set_admin(&serial.to_hex())?)
    }

    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    pub fn list(&self, filter: &CertFilter) -> Result<Vec<CertRecord>> {
        Ok(self.store.list(filter)?)
    }

    pub fn store(&self) -> &S {
        &self.store
    }
}
