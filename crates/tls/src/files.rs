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

/// The CRLs in `bytes`, which it reuses: DER is taken as is, and PEM is
/// decoded in place (the DER overwrites the base64 it comes from, which
/// it is shorter than), so a 1,000,000-entry CRL (47 MB of PEM, 35 MB of
/// DER) is never held twice nor copied, and no base64 text is collected.
fn crls_from_vec(mut bytes: Vec<u8>, path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let ders = if bytes.first() == Some(&0x30) {
        vec![bytes]
    } else {
        let lens = pem_crls_in_place(&mut bytes).map_err(|why| bad(path, why))?;
        // The blocks lie one after another from offset 0: copy out all but
        // the first (usually none), which keeps the buffer.
        let mut ders = Vec::with_capacity(lens.len());
        let mut at = lens.first().copied().unwrap_or(0);
        for len in lens.iter().skip(1) {
            ders.push(bytes[at..at + len].to_vec());
            at += len;
        }
        if let Some(&first) = lens.first() {
            bytes.truncate(first);
            bytes.shrink_to_fit();
            ders.insert(0, bytes);
        }
        ders
    };
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

/// Decodes every `X509 CRL` PEM block of `buf` in place: the DER of each
/// is written from offset 0 on, one after another; returns their lengths.
/// Other blocks are skipped (but must be terminated), as is text between
/// blocks. Every `-----BEGIN ` must have its `-----END` (a truncated file
/// is an error, not fewer CRLs).
fn pem_crls_in_place(buf: &mut [u8]) -> Result<Vec<usize>, String> {
    const BEGIN: &[u8] = b"-----BEGIN ";
    let find = |buf: &[u8], from: usize, what: &[u8]| -> Option<usize> {
        // Base64 has no '-': look for it first.
        let mut i = from;
        while let Some(p) = buf.get(i..)?.iter().position(|b| *b == b'-') {
            if buf[i + p..].starts_with(what) {
                return Some(i + p);
            }
            i += p + 1;
        }
        None
    };
    let mut lens = Vec::new();
    let mut write = 0;
    let mut at = 0;
    while let Some(begin) = find(buf, at, BEGIN) {
        let label_start = begin + BEGIN.len();
        let label_len = buf[label_start..]
            .iter()
            .position(|b| matches!(b, b'-' | b'\n' | b'\r'))
            .filter(|n| buf[label_start + n..].starts_with(b"-----"))
            .ok_or("malformed PEM: bad BEGIN line")?;
        let label = buf[label_start..label_start + label_len].to_vec();
        let data = label_start + label_len + 5;
        let mut end_line = b"-----END ".to_vec();
        end_line.extend_from_slice(&label);
        end_line.extend_from_slice(b"-----");
        let end = find(buf, data, b"-----")
            .filter(|e| buf[*e..].starts_with(&end_line))
            .ok_or("truncated or unterminated PEM block")?;
        if label == b"X509 CRL" {
            let len = base64_in_place(buf, data..end, write).ok_or("malformed PEM: bad base64 in an X509 CRL block")?;
            lens.push(len);
            write += len;
        }
        at = end + end_line.len();
    }
    Ok(lens)
}

/// Decodes the base64 in `buf[from]` (whitespace ignored, padding required
/// and canonical) to `buf[write..]`, `write <= from.start`: the output never
/// overtakes the input. Returns the decoded length.
fn base64_in_place(buf: &mut [u8], from: std::ops::Range<usize>, write: usize) -> Option<usize> {
    const fn table() -> [u8; 256] {
        // 0..=63: a digit; 64: '='; 65: whitespace; 255: invalid.
        let mut t = [255u8; 256];
        let digits = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut i = 0;
        while i < 64 {
            t[digits[i] as usize] = i as u8;
            i += 1;
        }
        t[b'=' as usize] = 64;
        t[b' ' as usize] = 65;
        t[b'\t' as usize] = 65;
        t[b'\r' as usize] = 65;
        t[b'\n' as usize] = 65;
        t
    }
    const TABLE: [u8; 256] = table();
    let (mut w, mut acc, mut n, mut pad) = (write, 0u32, 0u32, 0u32);
    for r in from {
        match TABLE[buf[r] as usize] {
            v @ 0..=63 if pad == 0 => {
                acc = acc << 6 | u32::from(v);
                n += 1;
                if n == 4 {
                    buf[w..w + 3].copy_from_slice(&acc.to_be_bytes()[1..]);
                    w += 3;
                    (acc, n) = (0, 0);
                }
            }
            64 => pad += 1,
            65 => {}
            _ => return None,
        }
    }
    match (n, pad) {
        (0, 0) => {}
        (2, 2) if acc & 0xf == 0 => {
            buf[w] = (acc >> 4) as u8;
            w += 1;
        }
        (3, 1) if acc & 0x3 == 0 => {
            buf[w..w + 2].copy_from_slice(&((acc >> 2) as u16).to_be_bytes());
            w += 2;
        }
        _ => return None,
    }
    Some(w - write)
}
