//! The one PEM/DER reader. Every PEM block is decoded by one scanner that
//! writes the DER over the base64 it comes from, so a 47 MB CRL file is
//! never held twice; callers that keep the bytes ([`pem_items_in_place`])
//! get the first item without a copy.
use crate::PkiError;
use rustls_pki_types::PrivateKeyDer;

/// Lowercase hex SHA-256, the fingerprint form used in identities (`sha256:`).
pub fn sha256_hex(der: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der))
}

/// PEM with 64-column lines and LF endings, as OpenSSL writes it.
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    let config = ::pem::EncodeConfig::new().set_line_ending(::pem::LineEnding::LF);
    ::pem::encode_config(&::pem::Pem::new(label, der.to_vec()), config)
}

/// One decoded PEM block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Block {
    pub label: String,
    pub der: Vec<u8>,
}

/// Every PEM block of `text`, in order; a truncated block or bad base64 is an error.
pub(crate) fn blocks(text: &[u8]) -> Result<Vec<Block>, PkiError> {
    let mut buf = text.to_vec();
    let found = scan(&mut buf, |_| true)?;
    let mut at = 0;
    Ok(found
        .into_iter()
        .map(|(label, len)| {
            at += len;
            Block { label, der: buf[at - len..at].to_vec() }
        })
        .collect())
}

/// The DER of every `label` block of `bytes`, or `bytes` itself when it is
/// DER (starts with a SEQUENCE). Reuses `bytes`: the first item is the
/// buffer itself, truncated; the others (usually none) are copied out.
/// Blocks of other labels are skipped, but must be well formed.
pub fn pem_items_in_place(mut bytes: Vec<u8>, label: &str) -> Result<Vec<Vec<u8>>, PkiError> {
    if bytes.first() == Some(&0x30) {
        return Ok(vec![bytes]);
    }
    let lens: Vec<usize> = scan(&mut bytes, |l| l == label.as_bytes())?.into_iter().map(|(_, len)| len).collect();
    let Some(&first) = lens.first() else { return Ok(Vec::new()) };
    let mut items = Vec::with_capacity(lens.len());
    let mut at = first;
    for len in &lens[1..] {
        items.push(bytes[at..at + len].to_vec());
        at += len;
    }
    bytes.truncate(first);
    bytes.shrink_to_fit();
    items.insert(0, bytes);
    Ok(items)
}

/// All certificates in a PEM file, in order, each checked to parse as X.509.
pub fn certs_from_pem(text: &[u8]) -> Result<Vec<Vec<u8>>, PkiError> {
    let certs: Vec<Vec<u8>> = blocks(text)?.into_iter().filter(|b| b.label == "CERTIFICATE").map(|b| b.der).collect();
    checked_certs(certs)
}

/// Certificates from PEM (leaf first) or one DER certificate, each checked to parse as X.509.
pub fn certs_from_pem_or_der(bytes: &[u8]) -> Result<Vec<Vec<u8>>, PkiError> {
    if bytes.first() == Some(&0x30) {
        return checked_certs(vec![bytes.to_vec()]);
    }
    certs_from_pem(bytes)
}

fn checked_certs(certs: Vec<Vec<u8>>) -> Result<Vec<Vec<u8>>, PkiError> {
    if certs.is_empty() {
        return Err(PkiError::MissingPemItem("CERTIFICATE block"));
    }
    for der in &certs {
        let (rest, _) =
            x509_parser::parse_x509_certificate(der).map_err(|e| PkiError::MalformedCertificate(e.to_string()))?;
        if !rest.is_empty() {
            return Err(PkiError::MalformedCertificate("trailing data after the certificate".into()));
        }
    }
    Ok(certs)
}

/// A private key as a file holds it: plain or encrypted PKCS#8.
pub(crate) enum KeyDer {
    Plain(PrivateKeyDer<'static>),
    /// EncryptedPrivateKeyInfo DER.
    Encrypted(Vec<u8>),
}

/// The first `… PRIVATE KEY` PEM block, or DER (PKCS#8, SEC1, PKCS#1 or
/// encrypted PKCS#8, told apart by their structure).
pub(crate) fn key_der(bytes: &[u8]) -> Result<KeyDer, PkiError> {
    if bytes.first() == Some(&0x30) {
        if let Ok(key) = PrivateKeyDer::try_from(bytes.to_vec()) {
            return Ok(KeyDer::Plain(key));
        }
        if pkcs8::EncryptedPrivateKeyInfo::try_from(bytes).is_ok() {
            return Ok(KeyDer::Encrypted(bytes.to_vec()));
        }
        return Err(PkiError::MalformedKey("DER that is not a PKCS#8, SEC1 or PKCS#1 private key".into()));
    }
    let block = blocks(bytes)?
        .into_iter()
        .find(|b| b.label.ends_with("PRIVATE KEY"))
        .ok_or(PkiError::MissingPemItem("PRIVATE KEY block"))?;
    match block.label.as_str() {
        "PRIVATE KEY" => Ok(KeyDer::Plain(PrivateKeyDer::Pkcs8(block.der.into()))),
        "EC PRIVATE KEY" => Ok(KeyDer::Plain(PrivateKeyDer::Sec1(block.der.into()))),
        "RSA PRIVATE KEY" => Ok(KeyDer::Plain(PrivateKeyDer::Pkcs1(block.der.into()))),
        "ENCRYPTED PRIVATE KEY" => Ok(KeyDer::Encrypted(block.der)),
        other => Err(PkiError::MalformedKey(format!("unsupported key block '{other}'"))),
    }
}

/// An unencrypted private key (PKCS#8, SEC1 or PKCS#1; PEM or DER). An
/// encrypted key is [`PkiError::PassphraseRequired`]: TLS endpoints take plain keys.
pub fn private_key_from_pem_or_der(bytes: &[u8]) -> Result<PrivateKeyDer<'static>, PkiError> {
    match key_der(bytes)? {
        KeyDer::Plain(key) => Ok(key),
        KeyDer::Encrypted(_) => Err(PkiError::PassphraseRequired),
    }
}

/// A CSR from PEM (`CERTIFICATE REQUEST`) or raw DER.
pub fn csr_from_pem_or_der(bytes: &[u8]) -> Result<Vec<u8>, PkiError> {
    if bytes.first() == Some(&0x30) {
        return Ok(bytes.to_vec());
    }
    blocks(bytes)?
        .into_iter()
        .find(|b| b.label == "CERTIFICATE REQUEST" || b.label == "NEW CERTIFICATE REQUEST")
        .map(|b| b.der)
        .ok_or(PkiError::MissingPemItem("CERTIFICATE REQUEST block"))
}

fn malformed(why: &str) -> PkiError {
    PkiError::MalformedPem(why.into())
}

/// Decodes in place every PEM block of `buf` whose label `keep` accepts:
/// the DER of each is written from offset 0 on, one after another; returns
/// their labels and lengths. Other blocks are skipped (but must be
/// terminated), as is text between blocks. Every `-----BEGIN ` must have
/// its `-----END` (a truncated file is an error, not fewer items).
fn scan(buf: &mut [u8], keep: impl Fn(&[u8]) -> bool) -> Result<Vec<(String, usize)>, PkiError> {
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
    let mut found = Vec::new();
    let mut write = 0;
    let mut at = 0;
    while let Some(begin) = find(buf, at, BEGIN) {
        let label_start = begin + BEGIN.len();
        let label_len = buf[label_start..]
            .iter()
            .position(|b| matches!(b, b'-' | b'\n' | b'\r'))
            .filter(|n| buf[label_start + n..].starts_with(b"-----"))
            .ok_or_else(|| malformed("bad BEGIN line"))?;
        let label = buf[label_start..label_start + label_len].to_vec();
        let data = label_start + label_len + 5;
        let mut end_line = b"-----END ".to_vec();
        end_line.extend_from_slice(&label);
        end_line.extend_from_slice(b"-----");
        let end = find(buf, data, b"-----")
            .filter(|e| buf[*e..].starts_with(&end_line))
            .ok_or_else(|| malformed("truncated or unterminated PEM block"))?;
        if keep(&label) {
            let label = String::from_utf8_lossy(&label).into_owned();
            let len = base64_in_place(buf, data..end, write)
                .ok_or_else(|| malformed(&format!("bad base64 in a {label} block")))?;
            found.push((label, len));
            write += len;
        }
        at = end + end_line.len();
    }
    Ok(found)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn malformed_pem(r: Result<impl std::fmt::Debug, PkiError>, why: &str) {
        match r {
            Err(PkiError::MalformedPem(m)) => assert!(m.contains(why), "{m} (wanted '{why}')"),
            other => panic!("{other:?} (wanted MalformedPem '{why}')"),
        }
    }

    #[test]
    fn truncated_pem_is_refused() {
        let good = pem_encode("CERTIFICATE", b"\x30\x03\x02\x01\x01");
        let cut = &good[..good.len() - 20];
        assert!(matches!(certs_from_pem(cut.as_bytes()), Err(PkiError::MalformedPem(_))));
        assert!(matches!(certs_from_pem(good.as_bytes()), Err(PkiError::MalformedCertificate(_))));
        assert!(matches!(certs_from_pem(b"hello"), Err(PkiError::MissingPemItem(_))));
    }

    #[test]
    fn decodes_what_the_encoder_writes_for_every_padding() {
        for n in 0..70u8 {
            let der: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37)).collect();
            let text = format!("junk\n{}{}", pem_encode("A", &der), pem_encode("B", &der).replace('\n', "\r\n"));
            let got = blocks(text.as_bytes()).unwrap();
            assert_eq!(got, [Block { label: "A".into(), der: der.clone() }, Block { label: "B".into(), der }]);
        }
    }

    #[test]
    fn junk_wrong_labels_and_truncation_are_refused() {
        let block = pem_encode("X509 CRL", b"\x30\x03\x02\x01\x01");
        // Junk and other labels: no item, not an error.
        assert_eq!(pem_items_in_place(b"hello".to_vec(), "X509 CRL").unwrap(), Vec::<Vec<u8>>::new());
        let other = pem_encode("CERTIFICATE", b"\x01");
        assert_eq!(pem_items_in_place(other.clone().into_bytes(), "X509 CRL").unwrap(), Vec::<Vec<u8>>::new());
        assert!(matches!(certs_from_pem(block.as_bytes()), Err(PkiError::MissingPemItem(_))));
        assert!(matches!(private_key_from_pem_or_der(other.as_bytes()), Err(PkiError::MissingPemItem(_))));
        // Truncated, unterminated, mislabelled END, bad BEGIN line.
        malformed_pem(blocks(&block.as_bytes()[..block.len() - 10]), "truncated");
        malformed_pem(blocks(block.replace("END X509 CRL", "END X509 CRX").as_bytes()), "truncated");
        malformed_pem(blocks(format!("{block}-----BEGIN A-----\nAAAA\n").as_bytes()), "truncated");
        malformed_pem(blocks(b"-----BEGIN A\nAAAA\n-----END A-----\n"), "bad BEGIN line");
        // A skipped block must still be terminated.
        malformed_pem(pem_items_in_place(format!("{block}-----BEGIN A-----\n").into_bytes(), "X509 CRL"), "truncated");
        // Bad base64: stray character, data after padding, missing or non-canonical padding.
        for body in ["MA*=", "MA==MA==", "MAA", "MB==", "MAB="] {
            let text = format!("-----BEGIN A-----\n{body}\n-----END A-----\n");
            malformed_pem(blocks(text.as_bytes()), "bad base64 in a A block");
        }
    }

    #[test]
    fn items_in_place_keep_order_and_the_first_buffer() {
        let (a, b) = (vec![0x30, 1, 2, 3, 4], vec![0x30, 9]);
        let text = [pem_encode("X509 CRL", &a), pem_encode("CERTIFICATE", &[7]), pem_encode("X509 CRL", &b)].concat();
        assert_eq!(pem_items_in_place(text.into_bytes(), "X509 CRL").unwrap(), [a.clone(), b]);
        assert_eq!(pem_items_in_place(a.clone(), "X509 CRL").unwrap(), [a], "DER is taken as is");
    }

    #[test]
    fn private_keys_by_label() {
        let key = |label| pem_encode(label, &[0x30, 0]);
        assert!(matches!(private_key_from_pem_or_der(key("PRIVATE KEY").as_bytes()), Ok(PrivateKeyDer::Pkcs8(_))));
        assert!(matches!(private_key_from_pem_or_der(key("EC PRIVATE KEY").as_bytes()), Ok(PrivateKeyDer::Sec1(_))));
        assert!(matches!(private_key_from_pem_or_der(key("RSA PRIVATE KEY").as_bytes()), Ok(PrivateKeyDer::Pkcs1(_))));
        assert!(matches!(
            private_key_from_pem_or_der(key("ENCRYPTED PRIVATE KEY").as_bytes()),
            Err(PkiError::PassphraseRequired)
        ));
        assert!(matches!(
            private_key_from_pem_or_der(key("OPENSSH PRIVATE KEY").as_bytes()),
            Err(PkiError::MalformedKey(_))
        ));
        let der = crate::KeyType::EcP256.generate().unwrap().pkcs8_der().to_vec();
        assert!(matches!(private_key_from_pem_or_der(&der), Ok(PrivateKeyDer::Pkcs8(_))));
        assert!(matches!(private_key_from_pem_or_der(&[0x30, 0]), Err(PkiError::MalformedKey(_))));
    }
}
