use crate::TlsError;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::path::Path;

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_path_buf(), source })
}

fn bad(path: &Path, why: impl Into<String>) -> TlsError {
    TlsError::BadFile { path: path.to_path_buf(), why: why.into() }
}

fn pem_blocks(path: &Path, bytes: &[u8]) -> Result<Vec<pem::Pem>, TlsError> {
    let blocks = pem::parse_many(bytes).map_err(|e| bad(path, format!("malformed PEM: {e}")))?;
    let begins = bytes.windows(11).filter(|w| *w == b"-----BEGIN ").count();
    if begins != blocks.len() {
        return Err(bad(path, "truncated or unterminated PEM block"));
    }
    Ok(blocks)
}

/// Certificates from a PEM file (leaf first) or a single DER certificate.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let ders: Vec<Vec<u8>> = if bytes.first() == Some(&0x30) {
        vec![bytes]
    } else {
        pem_blocks(path, &bytes)?.into_iter().filter(|b| b.tag() == "CERTIFICATE").map(|b| b.into_contents()).collect()
    };
    if ders.is_empty() {
        return Err(bad(path, "no CERTIFICATE found"));
    }
    for d in &ders {
        x509_parser::parse_x509_certificate(d).map_err(|e| bad(path, format!("malformed certificate: {e}")))?;
    }
    Ok(ders.into_iter().map(CertificateDer::from).collect())
}

/// A private key from PEM (PKCS#8, SEC1 or PKCS#1) or PKCS#8 DER.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(path)?;
    if bytes.first() == Some(&0x30) {
        return Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(bytes)));
    }
    let block = pem_blocks(path, &bytes)?
        .into_iter()
        .find(|b| b.tag().ends_with("PRIVATE KEY"))
        .ok_or_else(|| bad(path, "no PRIVATE KEY found"))?;
    match block.tag() {
        "PRIVATE KEY" => Ok(PrivateKeyDer::Pkcs8(block.into_contents().into())),
        "EC PRIVATE KEY" => Ok(PrivateKeyDer::Sec1(block.into_contents().into())),
        "RSA PRIVATE KEY" => Ok(PrivateKeyDer::Pkcs1(block.into_contents().into())),
        "ENCRYPTED PRIVATE KEY" => {
            Err(bad(path, "the key is encrypted; give the proxy an unencrypted key (mode 0600)"))
        }
        other => Err(bad(path, format!("unsupported key block '{other}'"))),
    }
}

/// CRLs from PEM files (several per file allowed) or DER, each checked to parse.
pub fn load_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    parse_crls(&read(path)?, path)
}

/// CRLs from bytes (PEM or DER); `source` names them in errors (a path or URL).
pub fn parse_crls(bytes: &[u8], source: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let path = source;
    let bytes = bytes.to_vec();
    let ders: Vec<Vec<u8>> = if bytes.first() == Some(&0x30) {
        vec![bytes]
    } else {
        pem_blocks(path, &bytes)?.into_iter().filter(|b| b.tag() == "X509 CRL").map(|b| b.into_contents()).collect()
    };
    if ders.is_empty() {
        return Err(bad(path, "no X509 CRL found"));
    }
    for d in &ders {
        use x509_parser::prelude::FromDer;
        x509_parser::revocation_list::CertificateRevocationList::from_der(d)
            .map_err(|e| bad(path, format!("malformed CRL: {e}")))?;
    }
    Ok(ders.into_iter().map(CertificateRevocationListDer::from).collect())
}
