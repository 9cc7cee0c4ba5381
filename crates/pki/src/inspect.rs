use crate::pem::blocks;
use crate::rfc3339::rfc3339_unix;
use crate::{sha256_hex, PkiError, RevocationReason, Serial};
use serde::Serialize;
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

/// What a file holds, decoded for people (`Display`-free; the CLI renders it) and scripts (JSON).
#[derive(Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Inspection {
    Certificates {
        certificates: Vec<InspectedCert>,
    },
    Csr(InspectedCsr),
    Crls {
        crls: Vec<InspectedCrl>,
    },
    PrivateKey {
        key_type: Option<String>,
        encrypted: bool,
    },
    Pkcs12 {
        certificates: Vec<InspectedCert>,
        private_keys: usize,
    },
    /// A JWT access token, decoded; its signature is not checked.
    Jwt(InspectedJwt),
}

#[derive(Debug, Serialize)]
pub struct InspectedJwt {
    pub header: serde_json::Value,
    pub claims: serde_json::Value,
    /// RFC 8705 `cnf.x5t#S256` as the hex SHA-256 `ambos inspect` shows for
    /// a certificate, so the two can be compared by eye.
    pub bound_to_sha256: Option<String>,
    /// `valid`, `expired` or `not yet valid` at inspection time, from `exp` and `nbf`.
    pub status: String,
}

/// A JWS compact serialization (`header.payload.signature`, base64url), decoded.
fn jwt(bytes: &[u8], now: OffsetDateTime) -> Option<InspectedJwt> {
    use base64::Engine;
    let text = std::str::from_utf8(bytes).ok()?.trim();
    let text = text.strip_prefix("Bearer ").unwrap_or(text);
    let mut parts = text.split('.');
    let (h, c, _sig, None) = (parts.next()?, parts.next()?, parts.next()?, parts.next()) else { return None };
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header: serde_json::Value = serde_json::from_slice(&b64.decode(h).ok()?).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&b64.decode(c).ok()?).ok()?;
    if !header.is_object() || !claims.is_object() {
        return None;
    }
    let bound_to_sha256 = claims["cnf"]["x5t#S256"]
        .as_str()
        .and_then(|t| b64.decode(t.trim_end_matches('=')).ok())
        .map(|d| d.iter().map(|b| format!("{b:02x}")).collect());
    let t = now.unix_timestamp();
    let status = match (claims["exp"].as_i64(), claims["nbf"].as_i64()) {
        (Some(exp), _) if exp < t => "expired",
        (_, Some(nbf)) if nbf > t => "not yet valid",
        (None, _) => "no exp",
        _ => "valid",
    };
    Some(InspectedJwt { header, claims, bound_to_sha256, status: status.into() })
}

#[derive(Debug, Serialize)]
pub struct InspectedCert {
    pub subject: String,
    pub issuer: String,
    pub serial: String,
    pub not_before: String,
    pub not_after: String,
    /// `valid`, `expired` or `not yet valid` at inspection time.
    pub status: &'static str,
    pub sans: Vec<SanEntry>,
    pub extended_key_usage: Vec<String>,
    pub key_usage: Vec<String>,
    pub is_ca: bool,
    pub path_len: Option<u32>,
    pub public_key: String,
    pub signature_algorithm: String,
    pub subject_key_id: Option<String>,
    pub authority_key_id: Option<String>,
    pub sha256: String,
}

/// A SAN as `kind:value`, the syntax of `--san` and of allow lists.
pub type SanEntry = String;

#[derive(Debug, Serialize)]
pub struct InspectedCsr {
    pub subject: String,
    pub sans: Vec<SanEntry>,
    pub public_key: String,
    pub signature_valid: bool,
}

#[derive(Debug, Serialize)]
pub struct InspectedCrl {
    pub issuer: String,
    pub this_update: String,
    pub next_update: Option<String>,
    pub crl_number: Option<String>,
    pub authority_key_id: Option<String>,
    pub revoked: Vec<InspectedRevocation>,
}

#[derive(Debug, Serialize)]
pub struct InspectedRevocation {
    pub serial: String,
    pub revoked_at: String,
    pub reason: String,
}

/// The human-readable form `ambos inspect` prints (`--json` is the serde form).
impl std::fmt::Display for Inspection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Inspection::Certificates { certificates } => {
                for (i, c) in certificates.iter().enumerate() {
                    if certificates.len() > 1 {
                        writeln!(f, "certificate {} of {}:", i + 1, certificates.len())?;
                    }
                    write!(f, "{c}")?;
                }
            }
            Inspection::Csr(c) => {
                writeln!(f, "certificate signing request")?;
                writeln!(f, "  subject:    {}", c.subject)?;
                writeln!(f, "  SANs:       {}", list_or_none(&c.sans))?;
                writeln!(f, "  public key: {}", c.public_key)?;
                writeln!(f, "  signature:  {}", if c.signature_valid { "valid" } else { "INVALID" })?;
            }
            Inspection::Crls { crls } => {
                for c in crls {
                    writeln!(f, "certificate revocation list")?;
                    writeln!(f, "  issuer:      {}", c.issuer)?;
                    writeln!(f, "  CRL number:  {}", c.crl_number.as_deref().unwrap_or("(none)"))?;
                    writeln!(f, "  this update: {}", c.this_update)?;
                    writeln!(f, "  next update: {}", c.next_update.as_deref().unwrap_or("(none)"))?;
                    writeln!(f, "  revoked:     {}", c.revoked.len())?;
                    for r in &c.revoked {
                        writeln!(f, "    {}  {}  {}", r.serial, r.revoked_at, r.reason)?;
                    }
                }
            }
            Inspection::PrivateKey { key_type, encrypted } => {
                writeln!(f, "private key")?;
                writeln!(f, "  type:      {}", key_type.as_deref().unwrap_or("(encrypted)"))?;
                writeln!(f, "  encrypted: {}", if *encrypted { "yes (PKCS#8 PBES2)" } else { "no" })?;
            }
            Inspection::Jwt(j) => {
                let time = |name: &str| match j.claims[name].as_i64() {
                    Some(t) => rfc3339_unix(t),
                    None => "(none)".into(),
                };
                let text = |v: &serde_json::Value| match v {
                    serde_json::Value::Null => "(none)".to_string(),
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                writeln!(f, "JWT (signature not checked)")?;
                writeln!(f, "  algorithm:  {}  key id: {}", text(&j.header["alg"]), text(&j.header["kid"]))?;
                writeln!(f, "  issuer:     {}", text(&j.claims["iss"]))?;
                writeln!(f, "  subject:    {}", text(&j.claims["sub"]))?;
                writeln!(f, "  audience:   {}", text(&j.claims["aud"]))?;
                writeln!(f, "  scope:      {}", text(&j.claims["scope"]))?;
                writeln!(f, "  validity:   {} .. {} ({})", time("iat"), time("exp"), j.status)?;
                match &j.bound_to_sha256 {
                    Some(h) => writeln!(f, "  bound to:   the certificate with sha256 {h} (cnf.x5t#S256)")?,
                    None => writeln!(f, "  bound to:   no certificate (a bearer token: whoever holds it can use it)")?,
                }
            }
            Inspection::Pkcs12 { certificates, private_keys } => {
                let n = certificates.len();
                writeln!(f, "PKCS#12 keystore: {private_keys} private key(s), {n} certificate(s)")?;
                for c in certificates {
                    write!(f, "{c}")?;
                }
            }
        }
        Ok(())
    }
}

impl std::fmt::Display for InspectedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "  subject:    {}", self.subject)?;
        writeln!(f, "  issuer:     {}", self.issuer)?;
        writeln!(f, "  serial:     {}", self.serial)?;
        writeln!(f, "  validity:   {} .. {} ({})", self.not_before, self.not_after, self.status)?;
        writeln!(f, "  SANs:       {}", list_or_none(&self.sans))?;
        writeln!(f, "  EKU:        {}", list_or_none(&self.extended_key_usage))?;
        writeln!(f, "  key usage:  {}", list_or_none(&self.key_usage))?;
        match (self.is_ca, self.path_len) {
            (true, Some(n)) => writeln!(f, "  CA:         yes, path length {n}")?,
            (true, None) => writeln!(f, "  CA:         yes")?,
            _ => writeln!(f, "  CA:         no")?,
        }
        writeln!(f, "  public key: {}  signature: {}", self.public_key, self.signature_algorithm)?;
        writeln!(f, "  sha256:     {}", self.sha256)
    }
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "(none)".into()
    } else {
        items.join(", ")
    }
}

/// Decodes PEM or DER: certificates, a CSR, CRLs, a private key or PKCS#12
/// (opened with `p12_password`, or the empty password).
pub fn inspect(bytes: &[u8], p12_password: Option<&str>, now: OffsetDateTime) -> Result<Inspection, PkiError> {
    if let Some(j) = jwt(bytes, now) {
        return Ok(Inspection::Jwt(j));
    }
    if bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        let blocks = blocks(bytes)?;
        let first = blocks.first().ok_or(PkiError::UnrecognisedInput)?;
        return match first.label.as_str() {
            "CERTIFICATE" | "TRUSTED CERTIFICATE" => {
                let certificates = blocks
                    .iter()
                    .filter(|b| b.label == "CERTIFICATE")
                    .map(|b| cert_from_der(&b.der, now))
                    .collect::<Result<_, _>>()?;
                Ok(Inspection::Certificates { certificates })
            }
            "CERTIFICATE REQUEST" | "NEW CERTIFICATE REQUEST" => Ok(Inspection::Csr(csr_from_der(&first.der)?)),
            "X509 CRL" => {
                let crls = blocks
                    .iter()
                    .filter(|b| b.label == "X509 CRL")
                    .map(|b| crl_from_der(&b.der))
                    .collect::<Result<_, _>>()?;
                Ok(Inspection::Crls { crls })
            }
            "ENCRYPTED PRIVATE KEY" => Ok(Inspection::PrivateKey { key_type: None, encrypted: true }),
            "PRIVATE KEY" | "EC PRIVATE KEY" | "RSA PRIVATE KEY" => {
                let key = crate::PrivateKey::from_der(&first.der)?;
                Ok(Inspection::PrivateKey { key_type: Some(key.key_type().to_string()), encrypted: false })
            }
            other => Err(PkiError::MalformedPem(format!("unsupported PEM block '{other}'"))),
        };
    }
    if let Ok(cert) = cert_from_der(bytes, now) {
        return Ok(Inspection::Certificates { certificates: vec![cert] });
    }
    if let Ok(crl) = crl_from_der(bytes) {
        return Ok(Inspection::Crls { crls: vec![crl] });
    }
    if let Ok(csr) = csr_from_der(bytes) {
        return Ok(Inspection::Csr(csr));
    }
    if bytes.first() == Some(&0x30) && looks_like_pkcs12(bytes) {
        let store = p12_keystore::KeyStore::from_pkcs12(
            bytes,
            p12_password.unwrap_or(""),
            p12_keystore::Pkcs12ImportPolicy::Relaxed,
        )
        .map_err(|e| PkiError::Pkcs12(format!("cannot open ({e}); wrong password?")))?;
        let mut certificates = Vec::new();
        let mut private_keys = 0;
        for (_, entry) in store.entries() {
            match entry {
                p12_keystore::KeyStoreEntry::PrivateKeyChain(chain) => {
                    private_keys += 1;
                    for c in chain.certs() {
                        certificates.push(cert_from_der(c.as_der(), now)?);
                    }
                }
                p12_keystore::KeyStoreEntry::Certificate(c) => certificates.push(cert_from_der(c.as_der(), now)?),
                _ => {}
            }
        }
        return Ok(Inspection::Pkcs12 { certificates, private_keys });
    }
    match crate::pem::key_der(bytes) {
        Ok(crate::pem::KeyDer::Encrypted(_)) => Ok(Inspection::PrivateKey { key_type: None, encrypted: true }),
        Ok(crate::pem::KeyDer::Plain(_)) => {
            let key = crate::PrivateKey::from_pem_or_der(bytes, None)?;
            Ok(Inspection::PrivateKey { key_type: Some(key.key_type().to_string()), encrypted: false })
        }
        Err(_) => Err(PkiError::UnrecognisedInput),
    }
}

/// PFX is SEQUENCE { INTEGER 3, ContentInfo, ... }.
fn looks_like_pkcs12(bytes: &[u8]) -> bool {
    bytes.windows(3).take(8).any(|w| w == [0x02, 0x01, 0x03])
}

fn public_key_name(spki: &SubjectPublicKeyInfo) -> String {
    match spki.parsed() {
        Ok(PublicKey::RSA(rsa)) => format!("rsa-{}", rsa.key_size()),
        Ok(PublicKey::EC(_)) => {
            let curve = spki.algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok()).map(|o| o.to_id_string());
            match curve.as_deref() {
                Some("1.2.840.10045.3.1.7") => "ec-p256".into(),
                Some("1.3.132.0.34") => "ec-p384".into(),
                Some("1.3.132.0.35") => "ec-p521".into(),
                other => format!("ec ({})", other.unwrap_or("unknown curve")),
            }
        }
        _ => match spki.algorithm.algorithm.to_id_string().as_str() {
            "1.3.101.112" => "ed25519".into(),
            "1.3.101.113" => "ed448".into(),
            oid => format!("unknown ({oid})"),
        },
    }
}

fn signature_name(oid: &str) -> String {
    match oid {
        "1.2.840.10045.4.3.2" => "ecdsa-with-SHA256".into(),
        "1.2.840.10045.4.3.3" => "ecdsa-with-SHA384".into(),
        "1.2.840.10045.4.3.4" => "ecdsa-with-SHA512".into(),
        "1.2.840.113549.1.1.11" => "sha256WithRSAEncryption".into(),
        "1.2.840.113549.1.1.12" => "sha384WithRSAEncryption".into(),
        "1.2.840.113549.1.1.13" => "sha512WithRSAEncryption".into(),
        "1.2.840.113549.1.1.5" => "sha1WithRSAEncryption".into(),
        "1.3.101.112" => "ED25519".into(),
        other => other.to_string(),
    }
}

fn san_entries<'a>(names: impl Iterator<Item = &'a GeneralName<'a>>) -> Vec<SanEntry> {
    names.map(crate::general_name_text).collect()
}

fn cert_from_der(der: &[u8], now: OffsetDateTime) -> Result<InspectedCert, PkiError> {
    let (rest, cert) = X509Certificate::from_der(der).map_err(|e| PkiError::MalformedCertificate(e.to_string()))?;
    if !rest.is_empty() {
        return Err(PkiError::MalformedCertificate("trailing data after the certificate".into()));
    }
    Ok(describe_cert(&cert, der, now))
}

fn describe_cert(cert: &X509Certificate<'_>, der: &[u8], now: OffsetDateTime) -> InspectedCert {
    let validity = cert.validity();
    let (nb, na) = (validity.not_before.timestamp(), validity.not_after.timestamp());
    let t = now.unix_timestamp();
    let status = if t < nb {
        "not yet valid"
    } else if t > na {
        "expired"
    } else {
        "valid"
    };
    let sans = match cert.subject_alternative_name() {
        Ok(Some(ext)) => san_entries(ext.value.general_names.iter()),
        _ => Vec::new(),
    };
    let mut eku = Vec::new();
    if let Ok(Some(ext)) = cert.extended_key_usage() {
        let e = ext.value;
        for (set, name) in [
            (e.server_auth, "serverAuth"),
            (e.client_auth, "clientAuth"),
            (e.code_signing, "codeSigning"),
            (e.email_protection, "emailProtection"),
            (e.time_stamping, "timeStamping"),
            (e.ocsp_signing, "OCSPSigning"),
            (e.any, "anyExtendedKeyUsage"),
        ] {
            if set {
                eku.push(name.to_string());
            }
        }
        eku.extend(e.other.iter().map(|o| o.to_id_string()));
    }
    let mut key_usage = Vec::new();
    if let Ok(Some(ext)) = cert.key_usage() {
        let k = ext.value;
        for (set, name) in [
            (k.digital_signature(), "digitalSignature"),
            (k.non_repudiation(), "nonRepudiation"),
            (k.key_encipherment(), "keyEncipherment"),
            (k.data_encipherment(), "dataEncipherment"),
            (k.key_agreement(), "keyAgreement"),
            (k.key_cert_sign(), "keyCertSign"),
            (k.crl_sign(), "cRLSign"),
        ] {
            if set {
                key_usage.push(name.to_string());
            }
        }
    }
    let (is_ca, path_len) = match cert.basic_constraints() {
        Ok(Some(bc)) => (bc.value.ca, bc.value.path_len_constraint),
        _ => (false, None),
    };
    let mut ski = None;
    let mut aki = None;
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(k) => ski = Some(hex::encode(k.0)),
            x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(a) => {
                aki = a.key_identifier.as_ref().map(|k| hex::encode(k.0))
            }
            _ => {}
        }
    }
    InspectedCert {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        serial: Serial::from_bytes(cert.raw_serial()).to_hex(),
        not_before: rfc3339_unix(nb),
        not_after: rfc3339_unix(na),
        status,
        sans,
        extended_key_usage: eku,
        key_usage,
        is_ca,
        path_len,
        public_key: public_key_name(cert.public_key()),
        signature_algorithm: signature_name(&cert.signature_algorithm.algorithm.to_id_string()),
        subject_key_id: ski,
        authority_key_id: aki,
        sha256: sha256_hex(der),
    }
}

fn csr_from_der(der: &[u8]) -> Result<InspectedCsr, PkiError> {
    use x509_parser::extensions::ParsedExtension;
    let (_, csr) = x509_parser::certification_request::X509CertificationRequest::from_der(der)
        .map_err(|e| PkiError::MalformedCsr(e.to_string()))?;
    let info = &csr.certification_request_info;
    let mut sans = Vec::new();
    for ext in csr.requested_extensions().into_iter().flatten() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext {
            sans.extend(san_entries(san.general_names.iter()));
        }
    }
    Ok(InspectedCsr {
        subject: info.subject.to_string(),
        sans,
        public_key: public_key_name(&info.subject_pki),
        signature_valid: csr.verify_signature().is_ok(),
    })
}

fn crl_from_der(der: &[u8]) -> Result<InspectedCrl, PkiError> {
    let (rest, crl) = x509_parser::revocation_list::CertificateRevocationList::from_der(der)
        .map_err(|e| PkiError::MalformedPem(format!("malformed CRL: {e}")))?;
    if !rest.is_empty() {
        return Err(PkiError::MalformedPem("trailing data after the CRL".into()));
    }
    let mut aki = None;
    for ext in crl.extensions() {
        if let x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(a) = ext.parsed_extension() {
            aki = a.key_identifier.as_ref().map(|k| hex::encode(k.0));
        }
    }
    let revoked = crl
        .iter_revoked_certificates()
        .map(|r| {
            let code = r.reason_code().map(|(_, c)| c.0).unwrap_or(0);
            InspectedRevocation {
                serial: Serial::from_bytes(r.raw_serial()).to_hex(),
                revoked_at: rfc3339_unix(r.revocation_date.timestamp()),
                reason: RevocationReason::from_code(code)
                    .map(|r| r.as_str().to_string())
                    .unwrap_or_else(|| format!("code {code}")),
            }
        })
        .collect();
    Ok(InspectedCrl {
        issuer: crl.issuer().to_string(),
        this_update: rfc3339_unix(crl.last_update().timestamp()),
        next_update: crl.next_update().map(|t| rfc3339_unix(t.timestamp())),
        crl_number: crl.crl_number().map(|n| n.to_string()),
        authority_key_id: aki,
        revoked,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{KeyType, NewCa};
    use std::time::Duration;

    #[test]
    fn a_ca_certificate_reads_as_text_with_its_fields() {
        let now = OffsetDateTime::now_utc();
        let day = Duration::from_secs(86_400);
        let ca = NewCa::create("acme", KeyType::EcP256, day * 2, day, now).unwrap();
        let text = inspect(&ca.intermediate_cert_der, None, now).unwrap().to_string();
        assert!(text.contains("  subject:    O=acme, CN=acme Intermediate CA\n"), "{text}");
        assert!(text.contains("  issuer:     O=acme, CN=acme Root CA\n"), "{text}");
        assert!(text.contains("  CA:         yes, path length 0"), "{text}");
        assert!(!text.contains("certificate 1 of"), "one certificate needs no count: {text}");
        let pem = format!(
            "{}{}",
            crate::pem_encode("CERTIFICATE", &ca.intermediate_cert_der),
            crate::pem_encode("CERTIFICATE", &ca.root_cert_der)
        );
        let text = inspect(pem.as_bytes(), None, now).unwrap().to_string();
        assert!(text.starts_with("certificate 1 of 2:\n"), "{text}");
        assert!(text.contains("certificate 2 of 2:\n"), "{text}");
    }

    #[test]
    fn der_private_keys_are_recognised() {
        let now = OffsetDateTime::now_utc();
        let key = KeyType::Rsa2048.generate().unwrap();
        let pkcs1 = pkcs8::PrivateKeyInfo::try_from(key.pkcs8_der()).unwrap().private_key.to_vec();
        for der in [key.pkcs8_der().to_vec(), pkcs1] {
            match inspect(&der, None, now) {
                Ok(Inspection::PrivateKey { key_type, encrypted: false }) => {
                    assert_eq!(key_type.as_deref(), Some("rsa-2048"))
                }
                other => panic!("{:?}", other.map(|i| i.to_string())),
            }
        }
        let pem = crate::encrypt_private_key(key.pkcs8_der(), b"pw").unwrap();
        let der = crate::pem::blocks(pem.as_bytes()).unwrap().remove(0).der;
        assert!(matches!(inspect(&der, None, now), Ok(Inspection::PrivateKey { key_type: None, encrypted: true })));
        assert!(matches!(inspect(b"\x30\x03\x02\x01\x05", None, now), Err(PkiError::UnrecognisedInput)));
    }

    #[test]
    fn a_jwt_shows_its_claims_and_the_certificate_it_is_bound_to() {
        use base64::Engine;
        let b64 = |v: serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let now = OffsetDateTime::now_utc();
        let t = now.unix_timestamp();
        let thumb = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([0xab; 32]);
        let token = format!(
            "{}.{}.c2ln",
            b64(serde_json::json!({"alg": "ES256", "kid": "k1"})),
            b64(serde_json::json!({"iss": "https://ca.test", "sub": "spiffe://acme.test/alice", "aud": "payments",
                "scope": "payments:write", "iat": t, "exp": t + 300, "cnf": {"x5t#S256": thumb}}))
        );
        let Inspection::Jwt(j) = inspect(format!("{token}\n").as_bytes(), None, now).unwrap() else { panic!() };
        assert_eq!((j.bound_to_sha256.as_deref(), j.status.as_str()), (Some("ab".repeat(32).as_str()), "valid"));
        let text = Inspection::Jwt(j).to_string();
        assert!(text.contains("  subject:    spiffe://acme.test/alice\n"), "{text}");
        assert!(text.contains(&format!("sha256 {}", "ab".repeat(32))), "{text}");
        let unbound =
            format!("{}.{}.", b64(serde_json::json!({"alg": "none"})), b64(serde_json::json!({"exp": t - 1})));
        let text = inspect(unbound.as_bytes(), None, now).unwrap().to_string();
        assert!(text.contains("(expired)") && text.contains("a bearer token"), "{text}");
        assert!(inspect(b"a.b.c", None, now).is_err(), "not base64url JSON: not a JWT");
    }
}
