use crate::key::PrivateKey;
use crate::profile::{validate_name, LeafRequest, Profile, San};
use crate::{pem_encode, sha256_hex, KeyType, PkiError, Serial};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData, SubjectPublicKeyInfo,
};
use rustls_pki_types::CertificateDer;
use std::time::Duration;
use time::OffsetDateTime;

/// Certificates are back-dated this much to tolerate clock skew between hosts.
const BACKDATE: Duration = Duration::from_secs(60);

/// Back-dating for a leaf of lifetime `ttl`: a minute, but never more than a
/// tenth of the lifetime, so short-lived certificates renew on schedule.
pub(crate) fn backdate(ttl: Duration) -> Duration {
    BACKDATE.min(ttl / 10)
}

/// The lifetime a leaf was issued with, from its validity window (the
/// inverse of adding `backdate`): what a renewal asks for again.
pub fn issued_ttl(not_before: i64, not_after: i64) -> Duration {
    let total = (not_after - not_before).max(1) as u64;
    if total >= 660 {
        Duration::from_secs(total - 60)
    } else {
        Duration::from_secs((total * 10).div_ceil(11))
    }
}

/// A freshly created two-level CA, before it is stored.
pub struct NewCa {
    pub root_cert_der: Vec<u8>,
    pub root_key: PrivateKey,
    pub intermediate_cert_der: Vec<u8>,
    pub intermediate_key: PrivateKey,
    /// The intermediate as an issued certificate, to be recorded (and revocable) like any other.
    pub intermediate: IssuedCert,
}

impl NewCa {
    /// Creates a root CA (pathLen 1) and an issuing intermediate (pathLen 0)
    /// signed by it; the intermediate never outlives the root.
    pub fn create(
        name: &str,
        key_type: KeyType,
        root_ttl: Duration,
        intermediate_ttl: Duration,
        now: OffsetDateTime,
    ) -> Result<NewCa, PkiError> {
        Self::create_with_crl_url(name, key_type, root_ttl, intermediate_ttl, now, None)
    }

    /// As `create`; with `root_crl_url`, the intermediate names where the
    /// root's CRL (which covers it) is published (CRL distribution point).
    pub fn create_with_crl_url(
        name: &str,
        key_type: KeyType,
        root_ttl: Duration,
        intermediate_ttl: Duration,
        now: OffsetDateTime,
        root_crl_url: Option<&str>,
    ) -> Result<NewCa, PkiError> {
        let root_key = key_type.generate()?;
        let mut root = ca_params(&format!("{name} Root CA"), name, 1);
        root.not_before = now - BACKDATE;
        root.not_after = now + root_ttl;
        let root_cert = root.self_signed(&root_key.pair)?;
        let root_not_after = root.not_after;
        let root_issuer = Issuer::new(root, &root_key.pair);

        let intermediate_key = key_type.generate()?;
        let mut inter = ca_params(&format!("{name} Intermediate CA"), name, 0);
        inter.not_before = now - BACKDATE;
        inter.not_after = (now + intermediate_ttl).min(root_not_after);
        inter.use_authority_key_identifier_extension = true;
        inter.crl_distribution_points = distribution_points(root_crl_url);
        let inter_cert = inter.signed_by(&intermediate_key.pair, &root_issuer)?;
        let intermediate = IssuedCert {
            serial: Serial::from_bytes(inter.serial_number.as_ref().map(|s| s.as_ref()).unwrap_or_default()),
            name: format!("{name} Intermediate CA"),
            profile: Profile::Ca,
            subject: format!("CN={name} Intermediate CA, O={name}"),
            sans: Vec::new(),
            not_before: inter.not_before,
            not_after: inter.not_after,
            sha256: sha256_hex(inter_cert.der()),
            cert_der: inter_cert.der().to_vec(),
            key: None,
        };
        Ok(NewCa {
            intermediate,
            root_cert_der: root_cert.der().to_vec(),
            root_key,
            intermediate_cert_der: inter_cert.der().to_vec(),
            intermediate_key,
        })
    }
}

/// A URL a CRL distribution point may name: http:// or https:// with a
/// host and no white space; else an input error naming `flag`.
pub fn check_crl_url(url: &str, flag: &str) -> Result<(), PkiError> {
    let ok = url
        .split_once("://")
        .is_some_and(|(scheme, rest)| matches!(scheme, "http" | "https") && !rest.is_empty() && !rest.starts_with('/'));
    if !ok || url.contains(char::is_whitespace) {
        return Err(PkiError::InvalidRequest(format!("{flag} '{url}' is not an http:// or https:// URL")));
    }
    Ok(())
}

/// A CRL distribution point extension naming `url`, if any.
fn distribution_points(url: Option<&str>) -> Vec<rcgen::CrlDistributionPoint> {
    url.map(|u| vec![rcgen::CrlDistributionPoint { uris: vec![u.to_string()] }]).unwrap_or_default()
}

fn ca_params(common_name: &str, organization: &str, path_len: u8) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, organization);
    dn.push(DnType::CommonName, common_name);
    p.distinguished_name = dn;
    p.serial_number = Some(Serial::random().as_bytes().to_vec().into());
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    p
}

/// A certificate authority that can sign: its certificate, key and the root
/// it chains to. Built once and reused for every certificate of a batch.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    cert_der: Vec<u8>,
    root_der: Vec<u8>,
    not_after: OffsetDateTime,
    organization: Option<String>,
    /// Where this CA publishes its CRL: named in every certificate it issues.
    crl_url: Option<String>,
}

/// One issued certificate, ready to be stored and written out.
pub struct IssuedCert {
    pub serial: Serial,
    pub name: String,
    pub profile: Profile,
    pub subject: String,
    pub sans: Vec<San>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub cert_der: Vec<u8>,
    pub sha256: String,
    /// Present when ambos generated the key; absent for a signed CSR.
    pub key: Option<PrivateKey>,
}

impl Authority {
    /// Loads a CA from its DER certificate and key. `root_der` is the trust
    /// anchor clients get as ca.crt (the same certificate for a root).
    pub fn new(cert_der: &[u8], key: PrivateKey, root_der: &[u8]) -> Result<Authority, PkiError> {
        let (_, parsed) =
            x509_parser::parse_x509_certificate(cert_der).map_err(|e| PkiError::MalformedCertificate(e.to_string()))?;
        if parsed.public_key().raw != key.public_key_der().as_slice() {
            return Err(PkiError::KeyMismatch);
        }
        let not_after = OffsetDateTime::from_unix_timestamp(parsed.validity().not_after.timestamp())
            .map_err(|e| PkiError::MalformedCertificate(e.to_string()))?;
        let organization =
            parsed.subject().iter_organization().next().and_then(|o| o.as_str().ok()).map(str::to_string);
        let issuer = Issuer::from_ca_cert_der(&CertificateDer::from(cert_der), key.pair)?;
        Ok(Authority {
            issuer,
            cert_der: cert_der.to_vec(),
            root_der: root_der.to_vec(),
            not_after,
            organization,
            crl_url: None,
        })
    }

    /// Names `url` as the CRL distribution point of every certificate issued from now on.
    pub fn with_crl_url(mut self, url: Option<String>) -> Authority {
        self.crl_url = url;
        self
    }

    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    pub fn root_der(&self) -> &[u8] {
        &self.root_der
    }

    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    pub(crate) fn issuer(&self) -> &Issuer<'static, KeyPair> {
        &self.issuer
    }

    /// PEM of the leaf followed by this CA's certificate, as servers send it.
    pub fn chain_pem(&self, leaf_der: &[u8]) -> String {
        let mut out = pem_encode("CERTIFICATE", leaf_der);
        if self.cert_der != self.root_der {
            out.push_str(&pem_encode("CERTIFICATE", &self.cert_der));
        }
        out
    }

    /// Generates a key and issues a certificate for it.
    pub fn issue(&self, req: &LeafRequest, now: OffsetDateTime) -> Result<IssuedCert, PkiError> {
        let key = req.key_type.generate()?;
        let mut issued = self.issue_for_key(req, &key.pair, now)?;
        issued.key = Some(key);
        Ok(issued)
    }

    fn issue_for_key(
        &self,
        req: &LeafRequest,
        public_key: &impl PublicKeyData,
        now: OffsetDateTime,
    ) -> Result<IssuedCert, PkiError> {
        validate_name(&req.name)?;
        let eku = match req.profile {
            Profile::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
            Profile::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
            Profile::ServerClient => vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth],
            Profile::Ca => return Err(PkiError::UnknownProfile("ca (not for leaf certificates)".into())),
        };
        if now >= self.not_after {
            return Err(PkiError::IssuerExpired(self.not_after.to_string()));
        }
        let serial = Serial::random();
        let sans = req.effective_sans();
        let organization = req.organization.clone().or_else(|| self.organization.clone());

        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        let mut subject = format!("CN={}", req.name);
        if let Some(o) = &organization {
            dn.push(DnType::OrganizationName, o.as_str());
        }
        for ou in &req.organizational_units {
            dn.push(DnType::OrganizationalUnitName, ou.as_str());
            subject.push_str(&format!(", OU={ou}"));
        }
        if let Some(o) = &organization {
            subject.push_str(&format!(", O={o}"));
        }
        dn.push(DnType::CommonName, req.name.as_str());
        p.distinguished_name = dn;
        p.subject_alt_names = sans.iter().map(San::to_rcgen).collect::<Result<_, _>>()?;
        p.serial_number = Some(serial.as_bytes().to_vec().into());
        p.not_before = req.not_before.unwrap_or(now - backdate(req.ttl));
        p.not_after = (req.not_before.unwrap_or(now) + req.ttl).min(self.not_after);
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if req.profile.server_auth() && public_key.algorithm() == &rcgen::PKCS_RSA_SHA256 {
            // TLS 1.2 RSA key exchange clients still look for it.
            p.key_usages.push(KeyUsagePurpose::KeyEncipherment);
        }
        p.extended_key_usages = eku;
        p.use_authority_key_identifier_extension = true;
        p.crl_distribution_points = distribution_points(self.crl_url.as_deref());
        let cert = p.signed_by(public_key, &self.issuer)?;
        let cert_der = cert.der().to_vec();
        Ok(IssuedCert {
            serial,
            name: req.name.clone(),
            profile: req.profile,
            subject,
            sans,
            not_before: p.not_before,
            not_after: p.not_after,
            sha256: sha256_hex(&cert_der),
            cert_der,
            key: None,
        })
    }

    /// Signs an external CSR after checking its signature. Names come from
    /// the CSR (CN, OU, O, SANs) and must fit the profile; validity, key
    /// usage and EKU come from the profile, never from the request.
    pub fn sign_csr(
        &self,
        csr_der: &[u8],
        profile: Profile,
        ttl: Duration,
        now: OffsetDateTime,
    ) -> Result<IssuedCert, PkiError> {
        let request = CsrContents::parse(csr_der)?;
        for san in &request.sans {
            let allowed = match profile {
                Profile::Server => matches!(san, San::Dns(_) | San::Ip(_)),
                Profile::Client | Profile::ServerClient | Profile::Ca => true,
            };
            if !allowed {
                return Err(PkiError::CsrNotAllowed(san.to_string(), "server profile"));
            }
        }
        let name = match (&request.common_name, request.sans.first()) {
            (Some(cn), _) => cn.clone(),
            (None, Some(San::Dns(h))) => h.clone(),
            (None, Some(San::Ip(a))) => a.to_string(),
            (None, _) => return Err(PkiError::MalformedCsr("the request has no common name".into())),
        };
        validate_name(&name).map_err(|_| PkiError::MalformedCsr(format!("common name '{name}' is not allowed")))?;
        let req = LeafRequest {
            name,
            profile,
            sans: request.sans,
            organizational_units: request.organizational_units,
            organization: request.organization,
            ttl,
            key_type: KeyType::EcP256,
            not_before: None,
        };
        self.issue_for_key(&req, &request.public_key, now)
    }
}

/// The public key (DER SubjectPublicKeyInfo) of a CSR whose signature
/// verifies, with the same checks as [`Authority::issue_for_csr`]: a
/// request with a bad signature or an unsupported key has no key to trust.
pub fn csr_public_key(csr_der: &[u8]) -> Result<Vec<u8>, PkiError> {
    Ok(CsrContents::parse(csr_der)?.public_key_der)
}

impl Authority {
    /// Issues `req` — names decided by the caller, e.g. an enrollment token —
    /// for the key in a CSR. The CSR's signature must verify, and every name
    /// it asks for must be among `req`'s: a CSR asking for more is refused.
    pub fn issue_for_csr(
        &self,
        req: &LeafRequest,
        csr_der: &[u8],
        now: OffsetDateTime,
    ) -> Result<IssuedCert, PkiError> {
        let csr = CsrContents::parse(csr_der)?;
        let allowed = req.effective_sans();
        if let Some(san) = csr.sans.iter().find(|s| !allowed.contains(s)) {
            return Err(PkiError::CsrNotAllowed(san.to_string(), "token"));
        }
        if let Some(cn) = csr.common_name.as_deref().filter(|cn| *cn != req.name) {
            return Err(PkiError::CsrNotAllowed(format!("CN={cn}"), "token"));
        }
        if let Some(ou) = csr.organizational_units.iter().find(|o| !req.organizational_units.contains(o)) {
            return Err(PkiError::CsrNotAllowed(format!("OU={ou}"), "token"));
        }
        self.issue_for_key(req, &csr.public_key, now)
    }

    /// Issues `req` for an existing public key (DER SubjectPublicKeyInfo):
    /// renewal that keeps the key.
    pub fn issue_for_spki(
        &self,
        req: &LeafRequest,
        spki_der: &[u8],
        now: OffsetDateTime,
    ) -> Result<IssuedCert, PkiError> {
        let key = SubjectPublicKeyInfo::from_der(spki_der).map_err(|e| PkiError::MalformedKey(e.to_string()))?;
        self.issue_for_key(req, &key, now)
    }
}

/// What ambos takes from a CSR; anything else in it is ignored.
struct CsrContents {
    common_name: Option<String>,
    organization: Option<String>,
    organizational_units: Vec<String>,
    sans: Vec<San>,
    public_key: SubjectPublicKeyInfo,
    /// The SubjectPublicKeyInfo as the request carries it (DER).
    public_key_der: Vec<u8>,
}

impl CsrContents {
    fn parse(der: &[u8]) -> Result<CsrContents, PkiError> {
        use x509_parser::extensions::{GeneralName, ParsedExtension};
        use x509_parser::prelude::FromDer;
        use x509_parser::public_key::PublicKey;

        let (rest, csr) = x509_parser::certification_request::X509CertificationRequest::from_der(der)
            .map_err(|e| PkiError::MalformedCsr(e.to_string()))?;
        if !rest.is_empty() {
            return Err(PkiError::MalformedCsr("trailing data after the request".into()));
        }
        csr.verify_signature().map_err(|_| PkiError::BadCsrSignature)?;
        let info = &csr.certification_request_info;
        let spki = &info.subject_pki;
        let key_ok = match spki.parsed() {
            Ok(PublicKey::RSA(rsa)) => rsa.key_size() >= 2048,
            Ok(PublicKey::EC(_)) => {
                let curve = spki.algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok()).map(|o| o.to_id_string());
                matches!(curve.as_deref(), Some("1.2.840.10045.3.1.7") | Some("1.3.132.0.34"))
            }
            _ => spki.algorithm.algorithm.to_id_string() == "1.3.101.112",
        };
        if !key_ok {
            return Err(PkiError::MalformedCsr(
                "unsupported public key (use P-256, P-384, Ed25519 or RSA >= 2048)".into(),
            ));
        }
        let text = |a: &x509_parser::x509::AttributeTypeAndValue| a.as_str().ok().map(str::to_string);
        let common_name = info.subject.iter_common_name().next().and_then(text);
        let organization = info.subject.iter_organization().next().and_then(text);
        let organizational_units = info.subject.iter_organizational_unit().filter_map(text).collect();
        let mut sans = Vec::new();
        for ext in csr.requested_extensions().into_iter().flatten() {
            if let ParsedExtension::SubjectAlternativeName(san) = ext {
                for name in &san.general_names {
                    // Requested names are validated as if typed on the command line.
                    sans.push(match name {
                        GeneralName::DNSName(_) | GeneralName::URI(_) | GeneralName::RFC822Name(_) => {
                            crate::general_name_text(name).parse()?
                        }
                        GeneralName::IPAddress(b) => {
                            San::Ip(crate::san_ip(b).ok_or(PkiError::MalformedCsr("bad IP address SAN".into()))?)
                        }
                        other => return Err(PkiError::MalformedCsr(format!("unsupported SAN type {other}"))),
                    });
                }
            }
        }
        let public_key = SubjectPublicKeyInfo::from_der(spki.raw).map_err(|e| PkiError::MalformedCsr(e.to_string()))?;
        let public_key_der = spki.raw.to_vec();
        Ok(CsrContents { common_name, organization, organizational_units, sans, public_key, public_key_der })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_ttl_inverts_backdating() {
        for secs in [30u64, 120, 600, 3600, 86_400, 30 * 86_400] {
            let ttl = Duration::from_secs(secs);
            let total = (ttl + backdate(ttl)).as_secs() as i64;
            assert_eq!(issued_ttl(0, total), ttl, "{secs}");
        }
    }

    #[test]
    fn server_client_profile_carries_both_ekus_and_a_servers_default_san() {
        let now = OffsetDateTime::now_utc();
        let day = Duration::from_secs(86_400);
        let ca = NewCa::create("acme", crate::KeyType::EcP256, day * 2, day, now).unwrap();
        let signer = Authority::new(&ca.intermediate_cert_der, ca.intermediate_key, &ca.root_cert_der).unwrap();
        let profile: Profile = "server,client".parse().unwrap();
        assert_eq!((profile, profile.as_str()), (Profile::ServerClient, "server,client"));
        let mut req = LeafRequest::new("api.acme.test", profile);
        req.ttl = profile.default_ttl().min(day / 2);
        let issued = signer.issue(&req, now).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&issued.cert_der).unwrap();
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && eku.client_auth, "{eku:?}");
        assert_eq!(issued.sans, [San::Dns("api.acme.test".into())]);
    }
}
