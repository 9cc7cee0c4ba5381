//! The one file writer of ambos: atomic writes (temp file + fsync + rename)
//! so a crash never leaves a half-written key or certificate, and the
//! layout of issued certificates (NAME.key 0600, NAME.crt chain 0644,
//! NAME.p12, ca.crt) that `issue`, `enroll`, `renew` and `quickstart` share.
#![forbid(unsafe_code)]

use ambos_pki::{pem_encode, rfc3339, Authority, IssuedCert, PkiError, PrivateKey};
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use thiserror::Error;
use zeroize::Zeroizing;

pub mod secret;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum FilesError {
    #[error("cannot write {}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error("cannot create directory {}", path.display())]
    CreateDir { path: PathBuf, source: std::io::Error },
    #[error("{} is not a file path", .0.display())]
    NotAFilePath(PathBuf),
    #[error("issued certificate without a key")]
    NoGeneratedKey,
    /// The PKCS#12 keystore could not be built.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// A secret's file or the answer at the prompt is unusable (the message names it).
    #[error("{0}")]
    Input(String),
    #[error("cannot read from the terminal")]
    Prompt(#[source] std::io::Error),
}

impl FilesError {
    /// Whether what the caller gave was wrong (exit code 2), not the write (1).
    pub fn is_input(&self) -> bool {
        match self {
            FilesError::Pki(e) => e.is_input(),
            FilesError::Input(_) => true,
            _ => false,
        }
    }
}

pub type Result<T> = std::result::Result<T, FilesError>;

/// Mode for private keys and keystores.
pub const PRIVATE: u32 = 0o600;
/// Mode for certificates and CRLs.
pub const PUBLIC: u32 = 0o644;

fn write_error(path: &Path) -> impl FnOnce(std::io::Error) -> FilesError + '_ {
    move |source| FilesError::Write { path: path.to_path_buf(), source }
}

/// Writes `bytes` to `path` atomically with permissions `mode`.
/// `durable` adds fsyncs of the file and its directory.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32, durable: bool) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path.file_name().ok_or_else(|| FilesError::NotAFilePath(path.to_path_buf()))?;
    let tmp = dir.join(format!(".{}.tmp-{}-{}", file_name.to_string_lossy(), std::process::id(), nanos()));
    let result = (|| -> std::io::Result<()> {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, mode);
        let mut f = opts.open(&tmp)?;
        f.write_all(bytes)?;
        if durable {
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        if durable {
            sync_dir(&dir);
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(write_error(path))
}

/// `write_atomic`, except that a file already holding exactly `bytes` is
/// left alone: rewriting the CA certificate on every `issue` would replace
/// its inode and make a proxy that watches it reload for nothing.
pub fn write_atomic_if_changed(path: &Path, bytes: &[u8], mode: u32, durable: bool) -> Result<()> {
    if std::fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    write_atomic(path, bytes, mode, durable)
}

/// Best effort: the renames are done; a directory that cannot be synced
/// (some filesystems refuse) only loses durability, not data.
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

fn nanos() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

/// Creates an output directory (and parents) if needed.
pub fn ensure_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| FilesError::CreateDir { path: dir.to_path_buf(), source })
}

/// Creates `dir` if needed and checks that a file can be written in it (one
/// is made and removed): what spends something that cannot be had back (an
/// enrollment token) checks this before, not after.
pub fn ensure_writable_dir(dir: &Path) -> Result<()> {
    ensure_dir(dir)?;
    let probe = tempfile::Builder::new().prefix(".ambos-write-check").tempfile_in(dir);
    probe.map(drop).map_err(|source| FilesError::Write { path: dir.to_path_buf(), source })
}

/// Writes key then chain, each atomically and durably: a reader that sees
/// the new certificate always finds its key.
pub fn write_identity(key_path: &Path, key: &PrivateKey, cert_path: &Path, chain_pem: &str) -> Result<()> {
    write_atomic(key_path, key.pkcs8_pem().as_bytes(), PRIVATE, true)?;
    write_atomic(cert_path, chain_pem.as_bytes(), PUBLIC, true)
}

/// Writes NAME.p12 beside the NAME.crt at `cert_path` (key and chain, alias
/// NAME) atomically and durably; `enroll`/`renew --p12` keep it in step with the PEMs.
pub fn write_p12_beside(cert_path: &Path, key: &PrivateKey, chain_pem: &str, password: &str) -> Result<PathBuf> {
    let chain = ambos_pki::certs_from_pem(chain_pem.as_bytes())?;
    let alias = cert_path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "key".into());
    let path = cert_path.with_extension("p12");
    write_atomic(&path, &ambos_pki::keystore(&alias, key, &chain, password)?, PRIVATE, true)?;
    Ok(path)
}

/// Where issued certificates go: DIR/NAME.crt (chain), DIR/NAME.key,
/// DIR/NAME.p12 with a password, DIR/ca.crt (the root).
pub struct LeafFiles {
    pub dir: PathBuf,
    /// Also write NAME.p12 with this password.
    pub p12_password: Option<Zeroizing<String>>,
    /// fsync every file (a batch syncs the directory once at the end instead).
    pub durable: bool,
}

/// What [`LeafFiles::write`] wrote (`ambos issue --json` prints it).
#[derive(Serialize)]
pub struct WrittenLeaf {
    pub serial: String,
    pub name: String,
    pub profile: &'static str,
    pub subject: String,
    pub sans: Vec<String>,
    pub not_before: String,
    pub not_after: String,
    pub sha256: String,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p12: Option<PathBuf>,
}

/// What `ambos issue` prints for one certificate.
impl std::fmt::Display for WrittenLeaf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "issued {} certificate '{}' serial {}", self.profile, self.name, self.serial)?;
        writeln!(f, "  subject:  {}", self.subject)?;
        if !self.sans.is_empty() {
            writeln!(f, "  SANs:     {}", self.sans.join(", "))?;
        }
        writeln!(f, "  valid:    {} .. {}", self.not_before, self.not_after)?;
        writeln!(f, "  sha256:   {}", self.sha256)?;
        let (cert, key, ca) = (self.cert.display(), self.key.display(), self.ca.display());
        writeln!(f, "  wrote:    {cert} (chain), {key} (key, 0600), {ca} (root CA)")?;
        if let Some(p) = &self.p12 {
            writeln!(f, "            {} (PKCS#12)", p.display())?;
        }
        Ok(())
    }
}

impl LeafFiles {
    pub fn cert_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.crt"))
    }

    pub fn key_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.key"))
    }

    /// The first NAME.crt or NAME.key of `names` that exists already.
    pub fn existing<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> Option<PathBuf> {
        names.into_iter().flat_map(|n| [self.cert_path(n), self.key_path(n)]).find(|p| p.exists())
    }

    pub fn root_path(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// Creates the directory and writes ca.crt unless it already holds this root.
    pub fn write_root(&self, root_der: &[u8]) -> Result<()> {
        ensure_dir(&self.dir)?;
        write_atomic_if_changed(&self.root_path(), pem_encode("CERTIFICATE", root_der).as_bytes(), PUBLIC, self.durable)
    }

    /// Writes NAME.key first: a .crt on disk always has its key beside it.
    pub fn write(&self, signer: &Authority, c: &IssuedCert) -> Result<WrittenLeaf> {
        let (cert, key_path) = (self.cert_path(&c.name), self.key_path(&c.name));
        let key = c.key.as_ref().ok_or(FilesError::NoGeneratedKey)?;
        write_atomic(&key_path, key.pkcs8_pem().as_bytes(), PRIVATE, self.durable)?;
        write_atomic(&cert, signer.chain_pem(&c.cert_der).as_bytes(), PUBLIC, self.durable)?;
        let p12 = match &self.p12_password {
            Some(pw) => {
                let path = self.dir.join(format!("{}.p12", c.name));
                let chain = vec![c.cert_der.clone(), signer.cert_der().to_vec()];
                write_atomic(&path, &ambos_pki::keystore(&c.name, key, &chain, pw)?, PRIVATE, self.durable)?;
                Some(path)
            }
            None => None,
        };
        Ok(WrittenLeaf {
            serial: c.serial.to_hex(),
            name: c.name.clone(),
            profile: c.profile.as_str(),
            subject: c.subject.clone(),
            sans: c.sans.iter().map(ToString::to_string).collect(),
            not_before: rfc3339(c.not_before),
            not_after: rfc3339(c.not_after),
            sha256: c.sha256.clone(),
            cert,
            key: key_path,
            ca: self.root_path(),
            p12,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ambos_ca::{CertificateAuthority, InitOptions};
    use ambos_pki::{LeafRequest, Profile};
    use ambos_store::AuthorityRole;
    #[cfg(unix)]
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[test]
    fn atomic_write_replaces_the_file_with_the_mode_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.key");
        write_atomic(&path, b"one", PUBLIC, true).unwrap();
        write_atomic(&path, b"two", PRIVATE, false).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        #[cfg(unix)]
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, PRIVATE);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["a.key"]);
    }

    #[test]
    fn a_write_into_a_missing_directory_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing/a.crt");
        let err = write_atomic(&path, b"x", PUBLIC, true).unwrap_err();
        assert!(matches!(&err, FilesError::Write { path: p, .. } if *p == path), "{err}");
        assert_eq!(err.to_string(), format!("cannot write {}", path.display()));
    }

    #[cfg(unix)]
    #[test]
    fn an_unchanged_file_keeps_its_inode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.crt");
        write_atomic(&path, b"root", PUBLIC, false).unwrap();
        let inode = std::fs::metadata(&path).unwrap().ino();
        write_atomic_if_changed(&path, b"root", PUBLIC, false).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().ino(), inode);
        write_atomic_if_changed(&path, b"new root", PUBLIC, false).unwrap();
        assert_ne!(std::fs::metadata(&path).unwrap().ino(), inode);
    }

    #[test]
    fn issued_certificates_are_written_as_key_chain_root_and_keystore() {
        let dir = tempfile::tempdir().unwrap();
        let opts = InitOptions {
            root_ttl: std::time::Duration::from_secs(10 * 86_400),
            intermediate_ttl: std::time::Duration::from_secs(5 * 86_400),
            ..InitOptions::unencrypted("acme")
        };
        let mut ca = CertificateAuthority::init(&dir.path().join("ca"), &opts).unwrap();
        let signer = ca.authority(AuthorityRole::Intermediate, None).unwrap();
        let issued = ca.issue(&signer, &[LeafRequest::new("web", Profile::Client)]).unwrap();
        let files =
            LeafFiles { dir: dir.path().join("out"), p12_password: Some(Zeroizing::new("pw".into())), durable: true };
        files.write_root(ca.root_der()).unwrap();
        assert_eq!(files.existing(["web"]), None);
        let w = files.write(&signer, &issued[0]).unwrap();
        assert_eq!(files.existing(["other", "web"]), Some(w.cert.clone()));
        assert_eq!((w.name.as_str(), w.profile), ("web", "client"));
        assert_eq!(w.cert, dir.path().join("out/web.crt"));
        assert_eq!(w.p12, Some(dir.path().join("out/web.p12")));
        let chain = std::fs::read_to_string(&w.cert).unwrap();
        assert_eq!(chain, signer.chain_pem(&issued[0].cert_der));
        assert!(std::fs::read_to_string(&w.key).unwrap().contains("BEGIN PRIVATE KEY"));
        assert_eq!(std::fs::read_to_string(&w.ca).unwrap(), pem_encode("CERTIFICATE", ca.root_der()));
        #[cfg(unix)]
        for (p, mode) in [(&w.key, PRIVATE), (&w.cert, PUBLIC), (w.p12.as_ref().unwrap(), PRIVATE)] {
            assert_eq!(std::fs::metadata(p).unwrap().permissions().mode() & 0o777, mode, "{}", p.display());
        }
    }

    #[test]
    fn a_written_leaf_reads_as_the_files_it_wrote() {
        let leaf = |sans: Vec<String>, p12: Option<PathBuf>| WrittenLeaf {
            serial: "0a".into(),
            name: "web".into(),
            profile: "client",
            subject: "CN=web".into(),
            sans,
            not_before: "2026-01-01T00:00:00Z".into(),
            not_after: "2026-01-02T00:00:00Z".into(),
            sha256: "ab".into(),
            cert: "out/web.crt".into(),
            key: "out/web.key".into(),
            ca: "out/ca.crt".into(),
            p12,
        };
        let text = leaf(vec![], None).to_string();
        assert!(text.starts_with("issued client certificate 'web' serial 0a\n  subject:  CN=web\n  valid:"), "{text}");
        assert!(text.ends_with("out/web.crt (chain), out/web.key (key, 0600), out/ca.crt (root CA)\n"), "{text}");
        let text = leaf(vec!["dns:web.test".into()], Some("out/web.p12".into())).to_string();
        assert!(text.contains("  SANs:     dns:web.test\n") && text.ends_with("out/web.p12 (PKCS#12)\n"), "{text}");
    }
}
