//! The flags `enroll`, `renew`, `agent` and `oauth token` share (with the
//! `cli` feature, the binary's own flags: clap reads them into these).
use crate::{BootstrapOptions, CaEndpoint};
use ambos_pki::P12Password;
use ambos_probe::CrlSources;
use std::path::PathBuf;

/// Where `ambos serve` is and how its certificate is checked.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct CaConnection {
    /// Base URL of `ambos serve`, e.g. https://ca.internal:9443 (several nodes: comma-separated, tried in order)
    #[cfg_attr(feature = "cli", arg(long, env = "AMBOS_CA_URL"))]
    pub ca_url: String,
    /// The CA root certificate (PEM) the API's certificate must chain to.
    #[cfg_attr(feature = "cli", arg(long))]
    pub root: PathBuf,
    #[cfg_attr(feature = "cli", command(flatten))]
    pub revocation: CrlSources,
}

impl CaConnection {
    pub fn endpoint(&self) -> CaEndpoint {
        CaEndpoint { url: self.ca_url.clone(), root: self.root.clone(), crls: self.revocation.clone() }
    }
}

/// `--p12 [--p12-password-file F]` (issue, enroll, renew, agent).
#[derive(Clone, Debug, Default)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct P12Out {
    /// Also write NAME.p12 beside NAME.crt (AES-256, HMAC-SHA256), kept in step with it.
    #[cfg_attr(feature = "cli", arg(long))]
    pub p12: bool,
    /// File with the PKCS#12 password (else $AMBOS_P12_PASSWORD, else a prompt).
    #[cfg_attr(feature = "cli", arg(long, requires = "p12"))]
    pub p12_password_file: Option<PathBuf>,
}

impl P12Out {
    /// The password, read now (once: the agent keeps it), if `--p12`.
    pub fn password(&self) -> ambos_files::Result<Option<P12Password>> {
        let pw = || ambos_files::secret::p12_password(self.p12_password_file.as_deref());
        Ok(if self.p12 { Some(P12Password(pw()?)) } else { None })
    }
}

/// `ambos bootstrap`'s flags.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct BootstrapFlags {
    /// Base URL of `ambos serve`, e.g. https://ca.internal:9443
    #[cfg_attr(feature = "cli", arg(long, env = "AMBOS_CA_URL"))]
    pub ca_url: String,
    /// SHA-256 fingerprint of the root, from its administrator (`ambos inspect root.crt`,
    /// `openssl x509 -fingerprint -sha256`); colons and case ignored.
    #[cfg_attr(feature = "cli", arg(long))]
    pub fingerprint: String,
    /// Directory for root.crt.
    #[cfg_attr(feature = "cli", arg(long, default_value = "."))]
    pub out: PathBuf,
}

impl BootstrapFlags {
    pub fn options(&self) -> BootstrapOptions {
        BootstrapOptions { url: self.ca_url.clone(), fingerprint: self.fingerprint.clone(), out: self.out.clone() }
    }
}
