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
    let bytes = std::fs::read(path).map_err(|why| ProxyError::Read { path: path.to_path_buf(), why })?;
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
            // A leaf as trust anchor is a wrong file, never a choice: refused at start and reload.
            if !c.is_ca {
                return Err(ProxyError::Invalid(not_a_ca(path, &c)));
            }
            out.push(Expiry { cert: "client_ca", subject: c.subject, not_after: c.not_after });
        }
    }
    Ok(out)
}

pub fn not_a_ca(path: &Path, c: &CertFacts) -> String {
    format!("tls.client_ca {}: '{}' is not a CA certificate (basicConstraints CA:FALSE)", path.display(), c.subject)
}

/// What is wrong with the serving certificate that the proxy still starts
/// with, as nginx and Envoy do (it logs these at ERROR every 30 s, and
/// `--check` fails on them): expired or not yet valid, or an extended key
/// usage without serverAuth, which clients refuse.
pub fn serving_problems(cert: &Path, now: i64) -> Vec<String> {
    let Ok(facts) = read(cert) else { return Vec::new() };
    let Some(c) = facts.first() else { return Vec::new() };
    let mut out = Vec::new();
    let at = format!("tls.cert {}", cert.display());
    if c.not_after < now {
        out.push(format!("{at}: expired on {}", c.not_after_text));
    } else if c.not_before > now {
        out.push(format!("{at}: not valid before {}", rfc3339(c.not_before)));
    }
    let eku = &c.extended_key_usage;
    if !eku.is_empty() && !eku.iter().any(|e| e == "serverAuth" || e == "anyExtendedKeyUsage") {
        out.push(format!("{at}: its extended key usage ({}) lacks serverAuth: clients refuse it", eku.join(", ")));
    }
    out
}

pub fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| unix.to_string())
}
