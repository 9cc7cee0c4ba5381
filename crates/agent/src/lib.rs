//! The machine side of the CA API (`ambos enroll`, `renew`, `agent`): a
//! first certificate for a one-time token, renewal over mTLS with the
//! current certificate, and the files both write (key first, then chain);
//! and an administrator's remote revocation (`ambos revoke --ca-url`).
//! The agent's schedule is `ambos_ca::renewer`; this crate supplies the
//! renewal it runs. The CA server is verified against its root and, when
//! given, CRLs (fail closed).
#![forbid(unsafe_code)]

use ambos_ca::client::{CaClient, ClientError, Issued};
use ambos_ca::renewer::{Renew, RenewOptions, Renewed, Renewer, Validity, Wake, RENEW_AT};
use ambos_files::{
    ensure_dir, ensure_writable_dir, write_atomic, write_atomic_if_changed, write_identity, write_p12_beside,
    FilesError, PUBLIC,
};
use ambos_pki::{pem_encode, KeyType, P12Password, PkiError, PrivateKey, RevocationReason, Serial};
use ambos_probe::{CrlSources, ProbeError};
use ambos_proxy::tunnel::SourcedCrls;
use ambos_tls::daemon::Control;
use ambos_tls::TlsError;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AgentError {
    /// A file or value the user gave: unreadable, not PEM, not a certificate.
    #[error("{0}")]
    Input(String),
    /// A key or certificate file that does not hold one we can use.
    #[error("{}: {why}", path.display())]
    Pem { path: PathBuf, why: PkiError },
    #[error(transparent)]
    Client(#[from] ClientError),
    /// Only a new enrollment helps: the CA refused this certificate for good
    /// (`why`: "is revoked", "has expired", ...).
    #[error("re-enroll: this certificate {why}; {detail}")]
    Reenroll { why: &'static str, detail: String },
    #[error(transparent)]
    Crls(#[from] ProbeError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error(transparent)]
    Files(#[from] FilesError),
    /// `ambos bootstrap`: no root the CA sent has the fingerprint given.
    #[error("{url}/v1/roots sent no root with SHA-256 fingerprint {want} (it sent {got}); nothing written")]
    FingerprintMismatch { url: String, want: String, got: String },
    /// `ambos bootstrap`: the root matched, but the API's own certificate does not chain to it.
    #[error("the CA API's TLS certificate does not chain to the root with that fingerprint: {0}")]
    ServerNotUnderRoot(ClientError),
}

impl AgentError {
    /// Whether what the caller gave was wrong (exit code 2); the CA's
    /// answers and I/O failures are not.
    pub fn is_input(&self) -> bool {
        match self {
            AgentError::Input(_) | AgentError::Tls(_) | AgentError::FingerprintMismatch { .. } => true,
            AgentError::ServerNotUnderRoot(_) => false,
            AgentError::Pem { why, .. } => why.is_input(),
            AgentError::Crls(e) => e.is_input(),
            AgentError::Pki(e) => e.is_input(),
            AgentError::Files(e) => e.is_input(),
            AgentError::Client(_) | AgentError::Reenroll { .. } => false,
        }
    }
}

/// A refusal of the CA that no retry cures, as [`AgentError::Reenroll`]; the rest unchanged.
fn permanent(e: ClientError) -> AgentError {
    let why = match &e {
        ClientError::Refused { status: 403, error, .. } => match error.as_str() {
            "certificate revoked" => "is revoked",
            "unknown certificate" => "is unknown to the CA",
            "not renewable" => "is not renewable",
            _ => return AgentError::Client(e),
        },
        _ => return AgentError::Client(e),
    };
    AgentError::Reenroll { why, detail: e.to_string() }
}

pub type Result<T> = std::result::Result<T, AgentError>;

mod flags;
pub use flags::{BootstrapFlags, CaConnection, P12Out};

/// Where the CA API is and what its server certificate must chain to.
#[derive(Clone, Debug)]
pub struct CaEndpoint {
    /// Base URL of `ambos serve`, e.g. https://ca.internal:9443
    pub url: String,
    /// The CA root certificate (PEM).
    pub root: PathBuf,
    /// CRLs to check the server's chain against (the URL's server verified against `root`).
    pub crls: CrlSources,
}

impl CaEndpoint {
    /// The CRLs of the files and URL, read now.
    pub async fn load_crls(&self) -> Result<SourcedCrls> {
        Ok(self.crls.load(std::slice::from_ref(&self.root)).await?)
    }

    /// A client of the CA API whose server is verified by `ambos_tls::ServerVerifier`
    /// against the root and `crls`.
    pub fn client(
        &self,
        crls: SourcedCrls,
        identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    ) -> Result<CaClient> {
        let trust = self.crls.server_trust(std::slice::from_ref(&self.root), "--root", crls)?;
        Ok(CaClient::with_trust(&self.url, trust, identity)?)
    }
}

/// A first certificate for a one-time token; the key is made here.
#[derive(Clone, Debug)]
pub struct EnrollOptions {
    pub token: String,
    /// File stem and CN to ask for (default: the token's name).
    pub name: Option<String>,
    pub key_type: KeyType,
    /// Directory for NAME.crt, NAME.key (0600) and ca.crt.
    pub out: PathBuf,
    /// Also write NAME.p12 with this password.
    pub p12: Option<P12Password>,
}

/// The certificate the CA issued and where its chain was written.
pub struct Enrolled {
    pub issued: Issued,
    pub cert: PathBuf,
}

/// Enrolls and writes NAME.key, NAME.crt and ca.crt (left alone if unchanged).
pub async fn enroll(ca: &CaEndpoint, o: &EnrollOptions) -> Result<Enrolled> {
    if let Some(n) = &o.name {
        ambos_pki::validate_name(n)?;
    }
    // The token is spent by the request: an --out that cannot be written is found first.
    ensure_writable_dir(&o.out)?;
    let client = ca.client(ca.load_crls().await?, None)?;
    let key = o.key_type.generate()?;
    let csr = ambos_pki::create_csr(&key, o.name.as_deref(), &[])?;
    let issued = client.enroll(&o.token, &pem_encode("CERTIFICATE REQUEST", &csr)).await?;
    let name = o.name.clone().unwrap_or_else(|| issued.name.clone());
    ambos_pki::validate_name(&name)?;
    let cert = o.out.join(format!("{name}.crt"));
    write_identity(&o.out.join(format!("{name}.key")), &key, &cert, &issued.certificate)?;
    if let Some(pw) = &o.p12 {
        write_p12_beside(&cert, &key, &issued.certificate, pw)?;
    }
    write_atomic_if_changed(&o.out.join("ca.crt"), issued.ca.as_bytes(), PUBLIC, true)?;
    Ok(Enrolled { issued, cert })
}

/// `ambos bootstrap`: a CA's root fetched without trusting the server yet,
/// accepted by its fingerprint alone.
#[derive(Clone, Debug)]
pub struct BootstrapOptions {
    /// Base URL of `ambos serve`.
    pub url: String,
    /// SHA-256 of the root (hex; colons, spaces and case ignored).
    pub fingerprint: String,
    /// Directory for root.crt.
    pub out: PathBuf,
}

/// Fetches `/v1/roots` over an unverified connection, keeps the root whose
/// SHA-256 is `o.fingerprint`, checks that the API's certificate chains to
/// it (a second, verified connection), then writes `DIR/root.crt` (0644).
/// Nothing is written unless every step passed.
pub async fn bootstrap(o: &BootstrapOptions) -> Result<PathBuf> {
    let want: String = o.fingerprint.chars().filter(|c| *c != ':' && !c.is_whitespace()).collect();
    let want = want.to_ascii_lowercase();
    if want.len() != 64 || !want.bytes().all(|b| b.is_ascii_hexdigit()) {
        let why = format!("--fingerprint '{}' is not a SHA-256 (64 hex digits, colons allowed)", o.fingerprint);
        return Err(AgentError::Input(why));
    }
    let pem = CaClient::unverified(&o.url)?.roots().await?;
    let roots = ambos_pki::certs_from_pem(pem.as_bytes())
        .map_err(|e| ClientError::BadResponse(format!("{}/v1/roots: {e}", o.url)))?;
    let Some(root) = roots.iter().find(|r| ambos_pki::sha256_hex(r) == want) else {
        let got = roots.iter().map(|r| ambos_pki::sha256_hex(r)).collect::<Vec<_>>().join(", ");
        return Err(AgentError::FingerprintMismatch { url: o.url.clone(), want, got });
    };
    CaClient::new(&o.url, root, None)?.roots().await.map_err(AgentError::ServerNotUnderRoot)?;
    ensure_dir(&o.out)?;
    let path = o.out.join("root.crt");
    write_atomic(&path, pem_encode("CERTIFICATE", root).as_bytes(), PUBLIC, true)?;
    Ok(path)
}

/// A file the user named; a missing or unreadable one is an input error.
fn read_input(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| AgentError::Input(format!("cannot read {}: {e}", path.display())))
}

fn read_key(path: &Path) -> Result<PrivateKey> {
    PrivateKey::from_pem_or_der(&read_input(path)?, None)
        .map_err(|why| AgentError::Pem { path: path.to_path_buf(), why })
}

/// `ambos renew`: one renewal with the CRLs read now.
pub async fn renew(ca: &CaEndpoint, o: &RenewOptions) -> Result<Issued> {
    renew_once(ca, &ca.load_crls().await?, o).await
}

/// One renewal over mTLS with the current files and `crls`; a new key
/// unless `keep_key`. The files change only on success.
pub async fn renew_once(ca: &CaEndpoint, crls: &SourcedCrls, o: &RenewOptions) -> Result<Issued> {
    let expiry = validity(&o.cert)?.not_after;
    if expiry <= unix_now() {
        let detail = format!("it expired at {}", ambos_pki::rfc3339_unix(expiry));
        return Err(AgentError::Reenroll { why: "has expired", detail });
    }
    let chain = ambos_tls::load_certs(&o.cert)?;
    let current_key = ambos_tls::load_key(&o.key)?;
    let old = read_key(&o.key)?;
    let id = ambos_tls::Identity::from_der(&chain[0])?;
    let client = ca.client(crls.clone(), Some((chain, current_key)))?;
    let (key, csr) = if o.keep_key {
        (old, None)
    } else {
        let key = old.key_type().generate()?;
        let csr = ambos_pki::create_csr(&key, id.cn.as_deref(), &[])?;
        (key, Some(pem_encode("CERTIFICATE REQUEST", &csr)))
    };
    let issued = client.renew(csr.as_deref()).await.map_err(permanent)?;
    write_identity(&o.key, &key, &o.cert, &issued.certificate)?;
    if let Some(pw) = &o.p12 {
        write_p12_beside(&o.cert, &key, &issued.certificate, pw)?;
    }
    Ok(issued)
}

/// `ambos revoke --ca-url`: a revocation through a remote `ambos serve` by
/// an administrator.
#[derive(Clone, Debug)]
pub struct RemoteRevoke {
    /// Base URL of `ambos serve`.
    pub url: String,
    /// The CA root (PEM); its last certificate is the server's trust anchor.
    pub root: PathBuf,
    /// The administrator's client certificate chain and key.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The serial to revoke, as given (hex, colons allowed).
    pub serial: String,
    pub reason: RevocationReason,
}

/// What the CA revoked: the serial, the certificate's name, its JSON answer.
pub struct RemoteRevoked {
    pub serial: Serial,
    pub name: String,
    pub answer: String,
}

/// Revokes `o.serial` at `o.url` as the administrator of `o.cert`.
pub async fn revoke_remote(o: &RemoteRevoke) -> Result<RemoteRevoked> {
    let serial: Serial =
        o.serial.parse().map_err(|e| AgentError::Input(format!("with --ca-url, give a serial: {e}")))?;
    let root = ambos_pki::certs_from_pem(&read_input(&o.root)?)
        .map_err(|why| AgentError::Pem { path: o.root.clone(), why })?;
    let admin = (ambos_tls::load_certs(&o.cert)?, ambos_tls::load_key(&o.key)?);
    let client = CaClient::new(&o.url, root.last().map(Vec::as_slice).unwrap_or_default(), Some(admin))?;
    let answer = client.revoke(&serial.to_hex(), o.reason.as_str()).await?;
    let name = answer["name"].as_str().unwrap_or_default().to_string();
    Ok(RemoteRevoked { serial, name, answer: answer.to_string() })
}

/// `ambos oauth token`: an access token from `ambos serve` for the
/// certificate `cert`/`key` (the token endpoint's JSON answer).
pub async fn access_token(
    ca: &CaEndpoint,
    cert: &Path,
    key: &Path,
    scope: Option<&str>,
    audience: Option<&str>,
) -> Result<serde_json::Value> {
    let identity = (ambos_tls::load_certs(cert)?, ambos_tls::load_key(key)?);
    let client = ca.client(ca.load_crls().await?, Some(identity))?;
    Ok(client.access_token(scope, audience).await?)
}

/// The validity of the certificate in `path` (its first certificate).
pub fn validity(path: &Path) -> Result<Validity> {
    let chain = ambos_tls::load_certs(path)?;
    let (_, cert) = x509_parser::parse_x509_certificate(&chain[0])
        .map_err(|e| AgentError::Input(format!("{}: {e}", path.display())))?;
    Ok(Validity {
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
    })
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// Keeps `opts.cert` renewed on the schedule of [`Renewer`] until `control`
/// asks it to stop during a wait; a reload request reads the files again and
/// renews if due. `opts.renew_at` must be within [`RENEW_AT`]. Bad CRL files or URL: an error now; later they
/// are read again before each renewal (a failure then keeps the previous ones).
/// A revoked or expired certificate ends it with [`AgentError::Reenroll`].
pub async fn run_agent(ca: CaEndpoint, opts: RenewOptions, control: Control) -> Result<()> {
    if !RENEW_AT.contains(&opts.renew_at) {
        return Err(AgentError::Input("--renew-at must be between 0.1 and 0.95".into()));
    }
    let crls = ca.load_crls().await?;
    ambos_tls::daemon::notify_ready();
    let mut agent = Agent { opts: opts.clone(), ca, crls, control };
    let end = Renewer::new(opts).run(&mut agent).await.map_err(|c| c.0);
    ambos_tls::daemon::notify_stopping();
    end
}

/// An error with its causes on one line (`a: b: c`), as the agent logs it.
#[derive(Debug)]
pub struct ErrorChain(pub AgentError);

impl std::fmt::Display for ErrorChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The one joiner, so a cause a wrapper already names is said once.
        f.write_str(&ambos_tls::error_chain(&self.0))
    }
}

/// The agent's side of the renewer: files, CRLs, the CA client, reload and stop requests.
struct Agent {
    opts: RenewOptions,
    ca: CaEndpoint,
    crls: SourcedCrls,
    control: Control,
}

impl Renew for Agent {
    type Error = ErrorChain;

    fn validity(&self) -> std::result::Result<Validity, ErrorChain> {
        validity(&self.opts.cert).map_err(ErrorChain)
    }

    async fn refresh(&mut self) {
        if self.ca.crls.enabled() {
            match self.ca.load_crls().await {
                Ok(c) => self.crls = c,
                Err(e) => tracing::warn!("cannot read the CRLs again, using the previous ones: {}", ErrorChain(e)),
            }
        }
    }

    async fn renew(&mut self) -> std::result::Result<Renewed, ErrorChain> {
        let issued = renew_once(&self.ca, &self.crls, &self.opts).await.map_err(ErrorChain)?;
        Ok(Renewed { serial: issued.serial, not_after: issued.not_after })
    }

    fn is_permanent(e: &ErrorChain) -> bool {
        matches!(e.0, AgentError::Reenroll { .. })
    }

    async fn pause(&mut self, d: Duration) -> Wake {
        let stop = self.control.clone();
        tokio::select! {
            _ = tokio::time::sleep(d) => Wake::Elapsed,
            _ = self.control.reload_requested() => {
                // The renewer reads the files again at once; its log line says what it found.
                ambos_tls::daemon::notify_reloading();
                tracing::info!(trigger = "SIGHUP", "reading the certificate again");
                ambos_tls::daemon::notify_ready();
                Wake::Reload
            }
            _ = stop.stopped() => Wake::Stop,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_chain_is_one_line_of_causes() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let e = AgentError::Files(FilesError::Write { path: "a.crt".into(), source: io });
        assert_eq!(ErrorChain(e).to_string(), "cannot write a.crt: gone");
        let missing = ambos_tls::load_key(std::path::Path::new("/nonexistent/x.key")).unwrap_err();
        let text = ErrorChain(AgentError::Tls(missing)).to_string();
        assert_eq!(text, "cannot read /nonexistent/x.key: No such file or directory (os error 2)");
    }

    #[test]
    fn a_key_file_that_is_not_a_key_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web.key");
        std::fs::write(&path, "not a key").unwrap();
        let err = read_key(&path).err().expect("not a key");
        assert!(matches!(&err, AgentError::Pem { path: p, .. } if *p == path), "{err}");
        assert!(err.to_string().starts_with(&format!("{}: ", path.display())), "{err}");
        let missing = read_key(&dir.path().join("none.key")).err().expect("no file");
        assert!(matches!(&missing, AgentError::Input(m) if m.starts_with("cannot read ")), "{missing}");
    }

    #[test]
    fn a_remote_revocation_checks_serial_and_files_before_calling_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name);
        let o = RemoteRevoke {
            url: "https://127.0.0.1:1".into(),
            root: path("ca.crt"),
            cert: path("admin.crt"),
            key: path("admin.key"),
            serial: "web".into(),
            reason: RevocationReason::KeyCompromise,
        };
        let run = |o: &RemoteRevoke| {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(revoke_remote(o)).err().expect("fails")
        };
        let err = run(&o);
        assert!(
            err.is_input() && err.to_string().starts_with("with --ca-url, give a serial: invalid serial 'web'"),
            "{err}"
        );
        let o = RemoteRevoke { serial: "4a:1f".into(), ..o };
        let err = run(&o);
        assert!(err.is_input() && err.to_string().starts_with("cannot read "), "{err}");
        std::fs::write(path("ca.crt"), "not PEM").unwrap();
        let err = run(&o);
        assert!(matches!(&err, AgentError::Pem { path: p, .. } if *p == path("ca.crt")), "{err}");
        let pki = ambos_testpki::TestPki::new("Remote");
        pki.write_root(dir.path());
        let err = run(&o);
        assert!(matches!(err, AgentError::Tls(_)), "the admin's files are read next: {err}");
        pki.client("admin", &[]).write(dir.path(), "admin");
        let err = run(&o);
        assert!(matches!(&err, AgentError::Client(ClientError::Unreachable { .. })), "{err}");
        assert!(!err.is_input(), "{err}");
    }

    #[test]
    fn the_agent_refuses_a_renewal_point_outside_its_range_before_anything_else() {
        let ca = CaEndpoint { url: "https://127.0.0.1:1".into(), root: "none.crt".into(), crls: CrlSources::default() };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        for renew_at in [0.05, 0.96] {
            let opts = RenewOptions {
                cert: "a.crt".into(),
                key: "a.key".into(),
                keep_key: false,
                renew_at,
                exec: None,
                p12: None,
            };
            let err = rt.block_on(run_agent(ca.clone(), opts, Control::manual().1)).unwrap_err();
            assert!(matches!(&err, AgentError::Input(m) if m == "--renew-at must be between 0.1 and 0.95"), "{err}");
            assert!(err.is_input());
        }
    }

    #[test]
    fn validity_is_read_from_the_first_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let opts = ambos_ca::InitOptions {
            root_ttl: Duration::from_secs(10 * 86_400),
            intermediate_ttl: Duration::from_secs(5 * 86_400),
            ..ambos_ca::InitOptions::unencrypted("acme")
        };
        let mut ca = ambos_ca::CertificateAuthority::init(&dir.path().join("ca"), &opts).unwrap();
        let signer = ca.authority(ambos_store::AuthorityRole::Intermediate, None).unwrap();
        let mut req = ambos_pki::LeafRequest::new("web", ambos_pki::Profile::Client);
        req.ttl = Duration::from_secs(3600);
        let issued = ca.issue(&signer, &[req]).unwrap().remove(0);
        let path = dir.path().join("web.crt");
        std::fs::write(&path, signer.chain_pem(&issued.cert_der)).unwrap();
        let v = validity(&path).unwrap();
        assert_eq!(v.not_after - v.not_before, issued.not_after.unix_timestamp() - issued.not_before.unix_timestamp());
        assert_eq!(v.not_after, issued.not_after.unix_timestamp());
        std::fs::write(&path, "no certificate").unwrap();
        assert!(validity(&path).is_err());
    }
}
