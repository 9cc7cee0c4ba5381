//! RFC 5280 rules webpki does not enforce, checked once per verified path
//! (so never on a cache hit): the trust anchor's own validity and
//! constraints, unknown critical extensions anywhere on the path, CA
//! certificates' subject, basicConstraints and key identifier, a leaf that
//! may sign certificates, and serial numbers.
use crate::verifier::RevocationSubject;
use crate::HandshakeFailure;
use rustls_pki_types::CertificateDer;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;

/// What the path verifier keeps from the checks.
pub(crate) struct PathFacts {
    pub not_before: i64,
    pub not_after: i64,
    pub subjects: Vec<RevocationSubject>,
}

/// Extensions webpki or this module process; any other critical one refuses the path.
const KNOWN_CRITICAL: &[&str] = &[
    "2.5.29.15", // keyUsage
    "2.5.29.19", // basicConstraints
    "2.5.29.37", // extKeyUsage
    "2.5.29.17", // subjectAltName
    "2.5.29.30", // nameConstraints
    "2.5.29.31", // cRLDistributionPoints
];

fn bad(what: String) -> HandshakeFailure {
    HandshakeFailure::BadCertificate(what)
}

fn contents(tlv: &[u8]) -> &[u8] {
    crate::crl::tlv(tlv).map(|t| t.2).unwrap_or(tlv)
}

/// `ders`: the verified path, leaf first, trust anchor last. `require_eku`:
/// an EKU OID the leaf must name explicitly (anyExtendedKeyUsage is not enough).
pub(crate) fn check(
    ders: &[CertificateDer<'_>],
    now: i64,
    require_eku: Option<&[u8]>,
) -> Result<PathFacts, HandshakeFailure> {
    let certs: Vec<X509Certificate<'_>> = ders
        .iter()
        .map(|d| {
            x509_parser::parse_x509_certificate(d)
                .map(|(_, c)| c)
                .map_err(|e| bad(format!("a certificate of the path does not parse: {e}")))
        })
        .collect::<Result<_, _>>()?;
    let last = certs.len() - 1;
    let mut facts = PathFacts { not_before: i64::MIN, not_after: i64::MAX, subjects: Vec::new() };
    for (i, c) in certs.iter().enumerate() {
        let name = crate::identity::name_text(contents(c.subject().as_raw()));
        let role = if i == 0 {
            "certificate"
        } else if i == last {
            "trust anchor"
        } else {
            "intermediate CA"
        };
        let v = c.validity();
        facts.not_before = facts.not_before.max(v.not_before.timestamp());
        facts.not_after = facts.not_after.min(v.not_after.timestamp());
        if i == last && !(v.not_before.timestamp()..=v.not_after.timestamp()).contains(&now) {
            return Err(bad(format!("the trust anchor '{name}' is outside its validity period")));
        }
        let mut has_ski = false;
        let mut basic = None;
        let mut key_cert_sign = false;
        for ext in c.extensions() {
            let oid = ext.oid.to_id_string();
            if ext.critical && !KNOWN_CRITICAL.contains(&oid.as_str()) {
                return Err(bad(format!("{role} '{name}' has an unknown critical extension {oid}")));
            }
            match ext.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(_) => has_ski = true,
                ParsedExtension::BasicConstraints(bc) => basic = Some(bc.ca),
                ParsedExtension::KeyUsage(ku) => key_cert_sign = ku.key_cert_sign(),
                ParsedExtension::ParseError { error } if ext.critical => {
                    return Err(bad(format!("{role} '{name}' has a malformed critical extension {oid}: {error}")));
                }
                _ => {}
            }
        }
        let serial = c.raw_serial();
        if serial.iter().all(|b| *b == 0) || serial.first().is_some_and(|b| b & 0x80 != 0) {
            return Err(bad(format!("{role} '{name}' has a serial number that is not positive")));
        }
        let significant = serial.iter().skip_while(|b| **b == 0).count();
        if significant > 20 {
            return Err(bad(format!("{role} '{name}' has a serial number longer than 20 octets")));
        }
        if i == 0 {
            if let Some(oid) = require_eku {
                let named = c.extended_key_usage().ok().flatten().is_some_and(|eku| {
                    eku.value.other.iter().any(|o| o.as_bytes() == oid)
                        || (oid.last() == Some(&2) && eku.value.client_auth)
                        || (oid.last() == Some(&1) && eku.value.server_auth)
                });
                if !named {
                    return Err(HandshakeFailure::WrongExtendedKeyUsage);
                }
            }
            if key_cert_sign && basic != Some(true) {
                return Err(bad(format!("certificate '{name}' is not a CA but its keyUsage allows keyCertSign")));
            }
        } else {
            if c.subject().as_raw().len() <= 2 || c.subject().iter_rdn().next().is_none() {
                return Err(bad(format!("{role} with serial {} has an empty subject", hex::encode(serial))));
            }
            if basic != Some(true) {
                return Err(bad(format!("{role} '{name}' has no basicConstraints with cA true")));
            }
            if !has_ski {
                return Err(bad(format!("{role} '{name}' has no subject key identifier")));
            }
        }
        if i < last {
            let issuer = &certs[i + 1];
            let may_sign_crls = issuer.key_usage().ok().flatten().is_none_or(|ku| ku.value.crl_sign());
            facts.subjects.push(RevocationSubject {
                serial: serial.into(),
                issuer_name: contents(issuer.subject().as_raw()).into(),
                issuer_spki: issuer.public_key().raw.into(),
                issuer_may_sign_crls: may_sign_crls,
                issuer_text: crate::identity::name_text(contents(issuer.subject().as_raw())),
            });
        }
    }
    Ok(facts)
}
