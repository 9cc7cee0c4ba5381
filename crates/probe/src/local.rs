//! What we can know before connecting: our own certificate, and the names
//! in what the server sends, in words.
use crate::report::{Report, ServerCert};
use crate::ProbeError;
use std::path::Path;
use std::sync::Arc;

/// Our client certificate, checked.
pub struct Local {
    pub key: Arc<rustls::sign::CertifiedKey>,
    pub leaf_expired: bool,
    pub not_yet_valid: bool,
    pub client_auth_eku: bool,
    /// The issuer of every certificate of our chain, to compare with the server's CA names.
    pub issuers: Vec<String>,
    pub subject: String,
}

/// Loads our certificate and key and adds a step; `None` when the key does not fit.
pub fn load_local(cert: &Path, key: &Path, r: &mut Report) -> Result<Option<Local>, ProbeError> {
    let (chain, key_der) = match ambos_tls::load_cert_and_key(cert, key) {
        Ok(pair) => pair,
        Err(ambos_tls::TlsError::KeyMismatch(_)) => {
            r.step(
                "local: key matches certificate",
                false,
                format!("{} does not belong to {}", key.display(), cert.display()),
            );
            return Ok(None);
        }
        Err(e) => {
            let about_cert = matches!(&e, ambos_tls::TlsError::Read { path, .. } | ambos_tls::TlsError::BadFile { path, .. } if path == cert);
            return Err(ProbeError::Input(format!("{}: {e}", if about_cert { "--cert" } else { "--key" })));
        }
    };
    let signing = ambos_tls::provider().key_provider.load_private_key(key_der).map_err(ProbeError::UnsupportedKey)?;
    let ck = rustls::sign::CertifiedKey::new(chain.clone(), signing);
    let (_, leaf) =
        x509_parser::parse_x509_certificate(&chain[0]).map_err(|e| ProbeError::Input(format!("--cert: {e}")))?;
    // Sub-second precision: X.509 times are whole seconds, and a certificate
    // is valid up to and including its notAfter second.
    let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as f64 / 1e9;
    let v = leaf.validity();
    let client_auth_eku = match leaf.extended_key_usage() {
        Ok(Some(e)) => e.value.client_auth || e.value.any,
        Ok(None) => true,
        Err(_) => false,
    };
    let mut issuers: Vec<String> = Vec::new();
    for der in &chain {
        if let Ok((_, c)) = x509_parser::parse_x509_certificate(der) {
            issuers.push(c.issuer().to_string());
        }
    }
    let local = Local {
        key: Arc::new(ck),
        leaf_expired: now > v.not_after.timestamp() as f64,
        not_yet_valid: now < v.not_before.timestamp() as f64,
        client_auth_eku,
        issuers,
        subject: leaf.subject().to_string(),
    };
    r.step(
        "local: our certificate",
        !(local.leaf_expired || local.not_yet_valid) && local.client_auth_eku,
        format!(
            "{}, valid {} .. {}{}",
            local.subject,
            rfc3339(v.not_before.timestamp()),
            rfc3339(v.not_after.timestamp()),
            if local.client_auth_eku { "" } else { ", no clientAuth EKU" }
        ),
    );
    Ok(Some(local))
}

pub fn dn_to_string(der: &[u8]) -> String {
    // CA names arrive as the DN's contents; parse with or without the SEQUENCE wrapper.
    let wrapped;
    let der = if der.first() == Some(&0x30) {
        der
    } else {
        wrapped = [&[0x30, der.len() as u8][..], der].concat();
        &wrapped
    };
    use x509_parser::prelude::FromDer;
    x509_parser::x509::X509Name::from_der(der)
        .map(|(_, n)| n.to_string())
        .unwrap_or_else(|_| "(unparsable name)".into())
}

fn rfc3339(ts: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ts)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

pub fn describe_cert(der: &[u8]) -> ServerCert {
    match ambos_pki::inspect(der, None, time::OffsetDateTime::now_utc()) {
        Ok(ambos_pki::Inspection::Certificates { mut certificates }) if !certificates.is_empty() => {
            let c = certificates.remove(0);
            ServerCert {
                subject: c.subject,
                issuer: c.issuer,
                sans: c.sans,
                not_before: c.not_before,
                not_after: c.not_after,
            }
        }
        _ => ServerCert { subject: "(unparsable)".into(), ..Default::default() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_names_parse_with_or_without_the_sequence_wrapper() {
        // SEQUENCE { SET { SEQUENCE { OID 2.5.4.3 (CN), UTF8String "ca" } } }
        let inner = [0x31, 0x0b, 0x30, 0x09, 0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 0x02, b'c', b'a'];
        let wrapped = [&[0x30, inner.len() as u8][..], &inner].concat();
        assert_eq!(dn_to_string(&wrapped), "CN=ca");
        assert_eq!(dn_to_string(&inner), "CN=ca");
        assert_eq!(dn_to_string(&[0x30, 0x05, 0x01]), "(unparsable name)");
    }

    #[test]
    fn times_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    }
}
