//! Certificates, keys and CRLs from files, read by `ambos_pki`'s one PEM/DER
//! reader; errors name the file.
use crate::TlsError;
use ambos_pki::PkiError;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use std::path::Path;

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|why| TlsError::Read { path: path.to_path_buf(), why })
}

fn bad(path: &Path, why: impl Into<String>) -> TlsError {
    TlsError::BadFile { path: path.to_path_buf(), why: why.into() }
}

fn pki(path: &Path, e: PkiError) -> TlsError {
    match e {
        PkiError::MissingPemItem(what) => bad(path, format!("no {what} found")),
        e => bad(path, e.to_string()),
    }
}

/// Certificates from a PEM file (leaf first) or a single DER certificate.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let ders = ambos_pki::certs_from_pem_or_der(&read(path)?).map_err(|e| pki(path, e))?;
    Ok(ders.into_iter().map(CertificateDer::from).collect())
}

/// A private key from PEM (PKCS#8, SEC1 or PKCS#1) or PKCS#8 DER.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    ambos_pki::private_key_from_pem_or_der(&read(path)?).map_err(|e| match e {
        PkiError::PassphraseRequired => {
            bad(path, "the key is encrypted; give the proxy an unencrypted key (mode 0600)")
        }
        e => pki(path, e),
    })
}

/// A certificate chain and its key, checked to belong together: the one
/// place a key is paired with a chain (proxy, tunnel, upstream, probe). A key
/// that fits a later certificate of the file means the file is out of order.
pub fn load_cert_and_key(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let chain = load_certs(cert)?;
    let key_der = load_key(key)?;
    let signing = crate::provider()
        .key_provider
        .load_private_key(key_der.clone_key())
        .map_err(|e| bad(key, format!("unsupported key: {e}")))?;
    // A key without a public half to compare is paired by rustls itself.
    if let Some(spki) = signing.public_key() {
        ambos_pki::check_key_is_leafs(&chain, &spki).map_err(|e| match e {
            PkiError::KeyMismatch => TlsError::KeyMismatch(key.to_path_buf()),
            e => bad(cert, e.to_string()),
        })?;
    }
    Ok((chain, key_der))
}

/// CRLs from PEM files (several per file allowed) or DER. Only their
/// framing is checked here (one complete DER SEQUENCE holding tbsCertList,
/// signatureAlgorithm and a BIT STRING): the entries are walked once, by
/// `CrlSet::load` when a `Trust` is built, and a CRL that is not
/// well-formed is refused there with an error naming its file.
pub fn load_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    crls_from_vec(read(path)?, path)
}

/// CRLs from bytes (PEM or DER); `source` names them in errors (a path or
/// URL). Checked as [`load_crls`] checks them.
pub fn parse_crls(bytes: &[u8], source: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    crls_from_vec(bytes.to_vec(), source)
}

/// The CRLs in `bytes`, decoded in place ([`ambos_pki::pem_items_in_place`]):
/// a 1,000,000-entry CRL (47 MB of PEM, 35 MB of DER) is never held twice
/// nor copied.
fn crls_from_vec(bytes: Vec<u8>, path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let ders = ambos_pki::pem_items_in_place(bytes, "X509 CRL").map_err(|e| pki(path, e))?;
    if ders.is_empty() {
        return Err(bad(path, "no X509 CRL found"));
    }
    for d in &ders {
        crl_framing(d).map_err(|why| bad(path, format!("malformed CRL: {why}")))?;
    }
    Ok(ders.into_iter().map(CertificateRevocationListDer::from).collect())
}

/// The outer structure of a CertificateList (RFC 5280 5.1): what a
/// truncated or garbled file fails, without walking the entries.
fn crl_framing(der: &[u8]) -> Result<(), &'static str> {
    use crate::crl::tlv;
    let Some((0x30, _, list, [])) = tlv(der) else { return Err("not one complete DER SEQUENCE (truncated?)") };
    let Some((0x30, _, _, rest)) = tlv(list) else { return Err("bad tbsCertList") };
    let Some((0x30, _, _, rest)) = tlv(rest) else { return Err("bad signatureAlgorithm") };
    let Some((0x03, _, _, [])) = tlv(rest) else { return Err("bad signature") };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err<T: std::fmt::Debug>(f: fn(&Path) -> Result<T, TlsError>, name: &str, bytes: &[u8]) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let e = f(&path).unwrap_err().to_string();
        assert!(e.contains(name), "{e} names the file");
        e
    }

    #[test]
    fn junk_wrong_labels_and_truncation_are_refused_naming_the_file() {
        let cert = ambos_pki::pem_encode("CERTIFICATE", b"\x30\x03\x02\x01\x01");
        let key = ambos_pki::pem_encode("PRIVATE KEY", b"\x30\x00");
        assert!(err(load_certs, "junk.pem", b"hello").contains("no CERTIFICATE"));
        assert!(err(load_certs, "key.pem", key.as_bytes()).contains("no CERTIFICATE"));
        assert!(err(load_certs, "cut.pem", &cert.as_bytes()[..cert.len() - 10]).contains("truncated"));
        assert!(err(load_certs, "bad.pem", cert.replacen('M', "*", 1).as_bytes()).contains("bad base64"));
        assert!(err(load_certs, "notx509.pem", cert.as_bytes()).contains("malformed certificate"));
        assert!(err(load_key, "cert.pem", cert.as_bytes()).contains("no PRIVATE KEY"));
        assert!(err(load_key, "cut.key", &key.as_bytes()[..key.len() - 10]).contains("truncated"));
        let encrypted = ambos_pki::pem_encode("ENCRYPTED PRIVATE KEY", b"\x30\x00");
        assert!(err(load_key, "enc.key", encrypted.as_bytes()).contains("the key is encrypted"));
        let legacy = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\nMAA=\n-----END RSA PRIVATE KEY-----\n";
        assert!(err(load_key, "legacy.key", legacy.as_bytes()).contains("bad base64"));
    }
}
