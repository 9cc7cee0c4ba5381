use crate::PkiError;

/// Lowercase hex SHA-256, the fingerprint form used in identities (`sha256:`).
pub fn sha256_hex(der: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der))
}

/// PEM with 64-column lines and LF endings, as OpenSSL writes it.
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    let config = ::pem::EncodeConfig::new().set_line_ending(::pem::LineEnding::LF);
    ::pem::encode_config(&::pem::Pem::new(label, der.to_vec()), config)
}

/// Parses every PEM block of `text`; a truncated block or bad base64 is an error.
pub(crate) fn blocks(text: &[u8]) -> Result<Vec<::pem::Pem>, PkiError> {
    let blocks = ::pem::parse_many(text).map_err(|e| PkiError::MalformedPem(e.to_string()))?;
    // parse_many skips an unterminated trailing block; count the markers to catch it.
    let begins = count(text, b"-----BEGIN ");
    if begins != blocks.len() {
        return Err(PkiError::MalformedPem("truncated or unterminated PEM block".into()));
    }
    Ok(blocks)
}

fn count(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

/// All certificates in a PEM file, in order, each checked to parse as X.509.
pub fn certs_from_pem(text: &[u8]) -> Result<Vec<Vec<u8>>, PkiError> {
    let certs: Vec<Vec<u8>> =
        blocks(text)?.into_iter().filter(|b| b.tag() == "CERTIFICATE").map(|b| b.into_contents()).collect();
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

/// A CSR from PEM (`CERTIFICATE REQUEST`) or raw DER.
pub fn csr_from_pem_or_der(bytes: &[u8]) -> Result<Vec<u8>, PkiError> {
    if bytes.first() == Some(&0x30) {
        return Ok(bytes.to_vec());
    }
    blocks(bytes)?
        .into_iter()
        .find(|b| b.tag() == "CERTIFICATE REQUEST" || b.tag() == "NEW CERTIFICATE REQUEST")
        .map(|b| b.into_contents())
        .ok_or(PkiError::MissingPemItem("CERTIFICATE REQUEST block"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_pem_is_refused() {
        let good = pem_encode("CERTIFICATE", b"\x30\x03\x02\x01\x01");
        let cut = &good[..good.len() - 20];
        assert!(matches!(certs_from_pem(cut.as_bytes()), Err(PkiError::MalformedPem(_))));
        assert!(matches!(certs_from_pem(good.as_bytes()), Err(PkiError::MalformedCertificate(_))));
        assert!(matches!(certs_from_pem(b"hello"), Err(PkiError::MissingPemItem(_))));
    }
}
