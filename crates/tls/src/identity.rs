use crate::TlsError;
use std::net::IpAddr;
use x509_parser::extensions::GeneralName;

/// Every name a verified leaf certificate carries, extracted once per
/// connection so authorization and headers never re-parse the certificate.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Identity {
    /// The first `spiffe://` URI SAN.
    pub spiffe: Option<String>,
    pub uris: Vec<String>,
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
    pub emails: Vec<String>,
    pub cn: Option<String>,
    pub ou: Vec<String>,
    pub o: Vec<String>,
    /// Lowercase hex, no leading zero bytes (as `openssl x509 -serial`, lowercased).
    pub serial: String,
    /// Lowercase hex SHA-256 of the DER certificate.
    pub sha256: String,
    /// RFC 4514 style, most significant RDN last as OpenSSL prints it: `CN=web,OU=payments,O=acme`.
    pub subject: String,
    pub not_after: i64,
}

impl Identity {
    /// Parses the leaf certificate (already verified by the TLS layer).
    pub fn from_der(der: &[u8]) -> Result<Identity, TlsError> {
        let (_, cert) =
            x509_parser::parse_x509_certificate(der).map_err(|e| TlsError::PeerCertificate(e.to_string()))?;
        let mut id = Identity {
            sha256: hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der)),
            not_after: cert.validity().not_after.timestamp(),
            ..Identity::default()
        };
        let serial = cert.raw_serial();
        let start = serial.iter().position(|b| *b != 0).unwrap_or(serial.len().saturating_sub(1));
        id.serial = hex::encode(&serial[start..]);
        let subject = cert.subject();
        let text = |a: &x509_parser::x509::AttributeTypeAndValue| a.as_str().ok().map(str::to_string);
        id.cn = subject.iter_common_name().next().and_then(text);
        id.ou = subject.iter_organizational_unit().filter_map(text).collect();
        id.o = subject.iter_organization().filter_map(text).collect();
        id.subject = rfc4514(subject);
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::URI(u) => {
                        if id.spiffe.is_none() && u.starts_with("spiffe://") {
                            id.spiffe = Some(u.to_string());
                        }
                        id.uris.push(u.to_string());
                    }
                    GeneralName::DNSName(d) => id.dns.push(d.to_ascii_lowercase()),
                    GeneralName::RFC822Name(e) => id.emails.push(e.to_string()),
                    GeneralName::IPAddress(b) => id.ips.extend(ambos_pki::san_ip(b)),
                    _ => {}
                }
            }
        }
        Ok(id)
    }

    /// The most specific short name for logs: SPIFFE ID, else CN, else serial.
    pub fn display_name(&self) -> &str {
        self.spiffe.as_deref().or(self.cn.as_deref()).unwrap_or(&self.serial)
    }
}

/// `CN=web,OU=payments,O=acme`: RDNs in reverse order (RFC 4514), values escaped.
fn rfc4514(name: &x509_parser::x509::X509Name<'_>) -> String {
    let mut parts = Vec::new();
    for rdn in name.iter_rdn() {
        for atv in rdn.iter() {
            let key = match atv.attr_type().to_id_string().as_str() {
                "2.5.4.3" => "CN".to_string(),
                "2.5.4.11" => "OU".to_string(),
                "2.5.4.10" => "O".to_string(),
                "2.5.4.6" => "C".to_string(),
                "2.5.4.7" => "L".to_string(),
                "2.5.4.8" => "ST".to_string(),
                "0.9.2342.19200300.100.1.25" => "DC".to_string(),
                "0.9.2342.19200300.100.1.1" => "UID".to_string(),
                oid => oid.to_string(),
            };
            let value =
                atv.as_str().map(escape).unwrap_or_else(|_| "#".to_string() + &hex::encode(atv.attr_value().data));
            parts.push(format!("{key}={value}"));
        }
    }
    parts.reverse();
    parts.join(",")
}

fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for (i, c) in v.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=')
            || (i == 0 && (c == ' ' || c == '#'))
            || (i == v.chars().count() - 1 && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A Name given as its contents (no SEQUENCE header, as webpki and CRLs
/// give issuers), in the same form as `Identity::subject`.
pub(crate) fn name_text(contents: &[u8]) -> String {
    use x509_parser::prelude::FromDer;
    let mut der = vec![0x30];
    let len = contents.len();
    if len < 0x80 {
        der.push(len as u8);
    } else {
        let bytes: Vec<u8> = len.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect();
        der.push(0x80 | bytes.len() as u8);
        der.extend(bytes);
    }
    der.extend_from_slice(contents);
    match x509_parser::x509::X509Name::from_der(&der) {
        Ok((_, name)) => rfc4514(&name),
        Err(_) => format!("(unparsable name {})", hex::encode(contents)),
    }
}
