//! How a client side of the proxy (the tunnel, an https:// upstream,
//! probe through the tunnel's helpers) trusts a server: the one path
//! verifier over the given CA files and CRLs. Below `tunnel` and `http`,
//! so neither imports the other for it.
use crate::ProxyError;
use rustls::pki_types::CertificateRevocationListDer;
use std::path::PathBuf;
use std::sync::Arc;

/// The trust (CAs, CRLs, revocation policy) a client verifies servers with:
/// fail closed when CRLs are configured (every CA level needs its CRL).
pub fn server_trust(
    ca: &[PathBuf],
    crls: Vec<(String, CertificateRevocationListDer<'static>)>,
    check_revocation: bool,
) -> Result<Arc<ambos_tls::Trust>, ProxyError> {
    let mut ca_certs = Vec::new();
    for p in ca {
        ca_certs.extend(ambos_tls::load_certs(p)?);
    }
    let trust = ambos_tls::Trust::new(ambos_tls::TrustOptions {
        ca_certs,
        crls,
        revocation: check_revocation.then(ambos_tls::RevocationPolicy::default),
        eku_if_present: false,
    })
    .map_err(|e| match e {
        ambos_tls::TlsError::ClientCa(why) => ProxyError::Invalid(format!("{}: {why}", join(ca))),
        e => ProxyError::Tls(e),
    })?;
    Ok(Arc::new(trust))
}

fn join(paths: &[PathBuf]) -> String {
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}
