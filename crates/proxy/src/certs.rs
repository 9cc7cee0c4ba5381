//! What the proxy's own certificate files say (validity, EKU, CA flag),
//! read with `ambos_pki::inspect`: for the expiry gauges and `--check`.
use crate::ProxyError;
use std::path::Path;

/// One certificate of a PEM or DER file.
#[derive(Clone, Debug)]
pub struct CertFacts {
    pub subject: String,
    /// notAfter, Unix seconds.
    pub not_after: i64,
    /// notAfter as RFC 3339, for messages.
    pub not_after_text: String,
    pub not_before: i64,
    pub extended_key_usage: Vec<String>,
    pub is_ca: bool,
}

/// Every certificate in the file at `path`, in file order.
pub fn read(path: &Path) -> Result<Vec<CertFacts>, ProxyError> {
    let bytes = std::fs::read(path).map_err(|source| ProxyError::Read { path: path.to_path_buf(), source })?;
    let invalid = |why: String| ProxyError::Invalid(format!("{}: {why}", path.display()));
    let certs = match ambos_pki::inspect(&bytes, None, time::OffsetDateTime::now_utc()) {
        Ok(ambos_pki::Inspection::Certificates { certificates }) => certificates,
        Ok(_) => return Err(invalid("not a certificate file".into())),
        Err(e) => return Err(invalid(e.to_string())),
    };
    let unix = |text: &str| {
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
            .map(|t| t.unix_timestamp())
            .map_err(|e| invalid(format!("unreadable validity {text}: {e}")))
    };
    certs
        .into_iter()
        .map(|c| {
            Ok(CertFacts {
                not_after: unix(&c.not_after)?,
                not_before: unix(&c.not_before)?,
                not_after_text: c.not_after,
                subject: c.subject,
                extended_key_usage: c.extended_key_usage,
                is_ca: c.is_ca,
            })
        })
        .collect()
}

/// Which certificate an expiry gauge is about.
#[derive(Clone, Debug)]
pub struct Expiry {
    /// `serving` or `client_ca`.
    pub cert: &'static str,
    pub subject: String,
    pub not_after: i64,
}

/// The serving certificate (the file's first) and every client CA
/// certificate, for `ambos_proxy_certificate_expiry_seconds`.
pub fn expiries(tls: &ambos_tls::ServerTlsConfig) -> Result<Vec<Expiry>, ProxyError> {
    let mut out = Vec::new();
    if let Some(c) = read(&tls.cert)?.into_iter().next() {
        out.push(Expiry { cert: "serving", subject: c.subject, not_after: c.not_after });
    }
    for path in &tls.client_ca {
        for c in read(path)? {
            out.push(Expiry { cert: "client_ca", subject: c.subject, not_after: c.not_after });
        }
    }
    Ok(out)
}
