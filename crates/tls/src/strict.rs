//! RFC 5280 rules webpki does not enforce, checked once per verified path
//! (so never on a cache hit): the trust anchor's own validity and
//! constraints, unknown critical extensions anywhere on the path, CA
//! certificates' subject, basicConstraints and key identifier, a leaf that
//! may sign certificates, and serial numbers. Also, from the x509-limbo
//! suite (`scripts/limbo.sh`): extensions that RFC 5280 says MUST be critical
//! (basicConstraints in a CA, nameConstraints, policyConstraints) or MUST
//! be present (authorityKeyIdentifier below a self-signed root, a critical
//! subjectAltName for an empty subject), malformed nameConstraints and
//! path-relevant extensions, a CA key not allowed to sign certificates, a
//! leaf's dNSName that is not a host name, and public keys that rustls
//! could never use (DSA, P-192, RSA under 2048 bits). Each check reads
//! what x509-parser already parsed: no signature, no allocation per rule.
use crate::HandshakeFailure;
use rustls_pki_types::CertificateDer;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::public_key::PublicKey;

/// For each certificate below the anchor: what revocation looks up.
#[derive(Debug, Clone)]
pub struct RevocationSubject {
    pub serial: Box<[u8]>,
    pub issuer_name: Box<[u8]>,
    pub issuer_spki: Box<[u8]>,
    pub issuer_may_sign_crls: bool,
    /// The issuer as text, for messages.
    pub issuer_text: String,
    /// Where the certificate says its issuer's CRL is published (http/https).
    pub crl_urls: Vec<String>,
}

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

/// Extensions whose content matters to path validation or to the peer's
/// identity: one that does not parse refuses the path, critical or not
/// (x509-parser reports `ParseError` only for extensions it knows).
const MUST_PARSE: &[&str] = &[
    "2.5.29.14",         // subjectKeyIdentifier
    "2.5.29.35",         // authorityKeyIdentifier
    "2.5.29.15",         // keyUsage
    "2.5.29.17",         // subjectAltName
    "2.5.29.19",         // basicConstraints
    "2.5.29.30",         // nameConstraints
    "2.5.29.36",         // policyConstraints
    "2.5.29.37",         // extKeyUsage
    "1.3.6.1.5.5.7.1.1", // authorityInfoAccess
];

/// namedCurve OIDs (DER bodies) of the curves rustls verifies with:
/// secp256r1, secp384r1, secp521r1.
const CURVES: &[&[u8]] = &[
    &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07],
    &[0x2b, 0x81, 0x04, 0x00, 0x22],
    &[0x2b, 0x81, 0x04, 0x00, 0x23],
];

fn bad(what: String) -> HandshakeFailure {
    HandshakeFailure::BadCertificate(what)
}

fn contents(tlv: &[u8]) -> &[u8] {
    crate::crl::tlv(tlv).map(|t| t.2).unwrap_or(tlv)
}

/// Bits of an RSA modulus (DER INTEGER contents, sign octet included).
fn modulus_bits(modulus: &[u8]) -> usize {
    let m: &[u8] = &modulus[modulus.iter().take_while(|b| **b == 0).count()..];
    m.first().map_or(0, |b| m.len() * 8 - b.leading_zeros() as usize)
}

/// Why a public key is one no TLS peer of ours can use, if it is: RSA of
/// 2048 to 8192 bits in whole octets, ECDSA on P-256/P-384/P-521, Ed25519.
fn key_problem(c: &X509Certificate<'_>) -> Option<String> {
    let spki = c.public_key();
    let alg = spki.algorithm.algorithm.to_id_string();
    match alg.as_str() {
        "1.2.840.113549.1.1.1" => {
            let Ok(PublicKey::RSA(rsa)) = spki.parsed() else { return Some("a malformed RSA key".into()) };
            let bits = modulus_bits(rsa.modulus);
            (!(2048..=8192).contains(&bits) || bits & 7 != 0).then(|| format!("an RSA key of {bits} bits"))
        }
        "1.2.840.10045.2.1" => {
            let curve = spki.algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok());
            match curve {
                Some(oid) if CURVES.contains(&oid.as_bytes()) => None,
                Some(oid) => Some(format!("an EC key on curve {oid}")),
                None => Some("an EC key without a named curve".into()),
            }
        }
        "1.3.101.112" => None, // Ed25519
        "1.2.840.10040.4.1" => Some("a DSA key".into()),
        other => Some(format!("a public key of algorithm {other}")),
    }
}

/// A dNSName as RFC 5280 4.2.1.6 wants it (preferred name syntax: letters,
/// digits, hyphens), optionally behind one leading `*.` wildcard label.
fn host_name(name: &str) -> bool {
    let name = name.strip_prefix("*.").unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// The http(s) URLs of a certificate's CRL distribution points.
pub(crate) fn distribution_points(c: &X509Certificate<'_>) -> Vec<String> {
    use x509_parser::extensions::{DistributionPointName, GeneralName};
    let mut urls = Vec::new();
    for ext in c.extensions() {
        if let ParsedExtension::CRLDistributionPoints(points) = ext.parsed_extension() {
            for point in points.iter() {
                if let Some(DistributionPointName::FullName(names)) = &point.distribution_point {
                    for name in names {
                        if let GeneralName::URI(u) = name {
                            if u.starts_with("http://") || u.starts_with("https://") {
                                urls.push(u.to_string());
                            }
                        }
                    }
                }
            }
        }
    }
    urls
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
        let self_issued = c.subject().as_raw() == c.issuer().as_raw();
        let empty_subject = c.subject().as_raw().len() <= 2 || c.subject().iter_rdn().next().is_none();
        let mut ski = None;
        let mut aki = None;
        let mut basic = None;
        let mut key_usage = None;
        let mut san = None;
        let mut key_cert_sign = false;
        for ext in c.extensions() {
            let oid = ext.oid.to_id_string();
            if ext.critical && !KNOWN_CRITICAL.contains(&oid.as_str()) {
                return Err(bad(format!("{role} '{name}' has an unknown critical extension {oid}")));
            }
            match ext.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(k) => ski = Some(k.0),
                ParsedExtension::AuthorityKeyIdentifier(a) => aki = Some(a),
                ParsedExtension::BasicConstraints(bc) => basic = Some((bc.ca, ext.critical)),
                ParsedExtension::KeyUsage(ku) => {
                    key_cert_sign = ku.key_cert_sign();
                    key_usage = Some(ku);
                }
                ParsedExtension::SubjectAlternativeName(s) => san = Some((s, ext.critical)),
                ParsedExtension::NameConstraints(nc) => {
                    // RFC 5280 4.2.1.10: CAs only, critical, not empty, and
                    // a dNSName constraint is a host name (no leading period).
                    if i == 0 {
                        return Err(bad(format!("{role} '{name}' is not a CA but has nameConstraints")));
                    }
                    if !ext.critical {
                        return Err(bad(format!("{role} '{name}' has nameConstraints not marked critical")));
                    }
                    let subtrees = nc.permitted_subtrees.iter().chain(nc.excluded_subtrees.iter()).flatten();
                    if nc.permitted_subtrees.as_ref().is_none_or(Vec::is_empty)
                        && nc.excluded_subtrees.as_ref().is_none_or(Vec::is_empty)
                    {
                        return Err(bad(format!("{role} '{name}' has an empty nameConstraints extension")));
                    }
                    for t in subtrees {
                        if let GeneralName::DNSName(d) = t.base {
                            if d.starts_with('.') {
                                return Err(bad(format!(
                                    "{role} '{name}' has a nameConstraints dNSName '{d}' with a leading period"
                                )));
                            }
                        }
                    }
                }
                ParsedExtension::PolicyConstraints(_) if !ext.critical => {
                    return Err(bad(format!("{role} '{name}' has policyConstraints not marked critical")));
                }
                ParsedExtension::ParseError { error } if ext.critical || MUST_PARSE.contains(&oid.as_str()) => {
                    return Err(bad(format!("{role} '{name}' has a malformed extension {oid}: {error}")));
                }
                _ => {}
            }
        }
        if let Some(what) = key_problem(c) {
            return Err(bad(format!("{role} '{name}' has {what}, which TLS here cannot use")));
        }
        // RFC 5280 6.1: the anchor is trusted as configured; its serial
        // plays no part (real roots have serial 0).
        let serial = c.raw_serial();
        if i != last {
            if serial.iter().all(|b| *b == 0) || serial.first().is_some_and(|b| b & 0x80 != 0) {
                return Err(bad(format!("{role} '{name}' has a serial number that is not positive")));
            }
            let significant = serial.iter().skip_while(|b| **b == 0).count();
            if significant > 20 {
                return Err(bad(format!("{role} '{name}' has a serial number longer than 20 octets")));
            }
        }
        // RFC 5280 4.2.1.1: every certificate but a self-signed one names its
        // issuer's key (the anchor is trusted as configured: a cross-signed
        // root without AKI still anchors). If the anchor has an AKI, it must
        // be the plain key identifier, of itself when self-issued (CABF).
        let aki_key = aki.as_ref().and_then(|a| a.key_identifier.as_ref()).map(|k| k.0);
        if i != last && !self_issued && aki_key.is_none() {
            return Err(bad(format!("{role} '{name}' has no authority key identifier")));
        }
        if i == last {
            if let Some(a) = &aki {
                if a.key_identifier.is_none() || a.authority_cert_issuer.is_some() || a.authority_cert_serial.is_some()
                {
                    return Err(bad(format!(
                        "trust anchor '{name}' has an authority key identifier that is not a plain key identifier"
                    )));
                }
                if self_issued && ski.is_some() && aki_key != ski {
                    return Err(bad(format!(
                        "trust anchor '{name}' is self-issued but its authority and subject key identifiers differ"
                    )));
                }
            }
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
            if let Ok(Some(eku)) = c.extended_key_usage() {
                if eku.critical {
                    // CABF 7.1.2.7.6 (RFC 5280 allows either): a critical EKU
                    // makes every consumer that does not know a purpose fail.
                    return Err(bad(format!("certificate '{name}' has its extKeyUsage marked critical")));
                }
                let e = &eku.value;
                let specific = e.server_auth
                    || e.client_auth
                    || e.code_signing
                    || e.email_protection
                    || e.time_stamping
                    || e.ocsp_signing
                    || !e.other.is_empty();
                if e.any && specific {
                    // Naming purposes and then any purpose says nothing:
                    // refused like a missing purpose.
                    return Err(HandshakeFailure::WrongExtendedKeyUsage);
                }
            }
            if key_cert_sign && basic.is_none_or(|b| !b.0) {
                return Err(bad(format!("certificate '{name}' is not a CA but its keyUsage allows keyCertSign")));
            }
            // RFC 5280 4.1.2.6 / 4.2.1.6: an empty subject needs a critical
            // subjectAltName; a named subject a non-critical one.
            match &san {
                None if empty_subject => {
                    return Err(bad("a certificate with an empty subject has no subjectAltName".into()));
                }
                Some((_, false)) if empty_subject => {
                    return Err(bad("a certificate with an empty subject has a non-critical subjectAltName".into()));
                }
                Some((_, true)) if !empty_subject => {
                    return Err(bad(format!("certificate '{name}' has a subject and a critical subjectAltName")));
                }
                _ => {}
            }
            for n in san.iter().flat_map(|s| s.0.general_names.iter()) {
                if let GeneralName::DNSName(d) = n {
                    if !host_name(d) {
                        return Err(bad(format!("certificate '{name}' has a dNSName '{d}' that is not a host name")));
                    }
                }
            }
        } else {
            if empty_subject {
                return Err(bad(format!("{role} with serial {} has an empty subject", hex::encode(serial))));
            }
            match basic {
                Some((true, true)) => {}
                Some((true, false)) => {
                    return Err(bad(format!("{role} '{name}' has basicConstraints not marked critical")));
                }
                _ => return Err(bad(format!("{role} '{name}' has no basicConstraints with cA true"))),
            }
            if key_usage.is_some() && !key_cert_sign {
                return Err(bad(format!("{role} '{name}' has a keyUsage that does not allow keyCertSign")));
            }
            if ski.is_none() {
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
                crl_urls: distribution_points(c),
            });
        }
    }
    Ok(facts)
}
