//! CRLs as the verifier uses them: read once by walking the DER (RFC 5280
//! 5.1) into a set of serials, with what decides whether a CRL may be used
//! at all (version, CRL number, critical extensions) found at load time and
//! its signature checked lazily, once per issuer key, against the issuer in
//! a verified path — never against a certificate the peer merely sent.
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls_pki_types::CertificateRevocationListDer;
use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::{Arc, Mutex};

/// A serial number as a fixed-size key (RFC 5280: at most 20 octets, plus
/// the sign byte DER may add): no allocation per CRL entry, which is what
/// loading a 1,000,000-entry CRL spends its time on otherwise. Longer
/// serials (non-conforming, but they exist) go to a separate set.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct SerialKey {
    len: u8,
    bytes: [u8; 21],
}

impl SerialKey {
    fn new(raw: &[u8]) -> Option<SerialKey> {
        let mut bytes = [0u8; 21];
        bytes.get_mut(..raw.len())?.copy_from_slice(raw);
        Some(SerialKey { len: raw.len() as u8, bytes })
    }
}

/// One DER element: (tag, the whole element, its contents, what follows).
pub(crate) type Tlv<'a> = (u8, &'a [u8], &'a [u8], &'a [u8]);

/// Reads one DER element (definite lengths only, at most 4 length octets).
pub(crate) fn tlv(input: &[u8]) -> Option<Tlv<'_>> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        (rest[..n].iter().fold(0usize, |l, b| l << 8 | *b as usize), &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    let header = input.len() - rest.len();
    Some((tag, &input[..header + len], &rest[..len], &rest[len..]))
}

/// UTCTime (tag 0x17) or GeneralizedTime (0x18), `Z` form, as Unix seconds.
pub(crate) fn der_time(tag: u8, v: &[u8]) -> Option<i64> {
    let digits = |s: &[u8]| -> Option<i64> {
        s.iter().try_fold(0i64, |n, b| b.is_ascii_digit().then(|| n * 10 + i64::from(b - b'0')))
    };
    let (year, rest) = match (tag, v.len()) {
        (0x17, 13) => {
            let y = digits(&v[..2])?;
            (if y >= 50 { 1900 + y } else { 2000 + y }, &v[2..])
        }
        (0x18, 15) => (digits(&v[..4])?, &v[4..]),
        _ => return None,
    };
    if rest[10] != b'Z' {
        return None;
    }
    let (mo, d, h, mi, s) =
        (digits(&rest[0..2])?, digits(&rest[2..4])?, digits(&rest[4..6])?, digits(&rest[6..8])?, digits(&rest[8..10])?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if mo <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3_600 + mi * 60 + s)
}

const OID_CRL_NUMBER: &[u8] = &[0x55, 0x1d, 0x14];
const OID_AKI: &[u8] = &[0x55, 0x1d, 0x23];
const OID_DELTA_CRL: &[u8] = &[0x55, 0x1d, 0x1b];
const OID_IDP: &[u8] = &[0x55, 0x1d, 0x1c];
const OID_REASON: &[u8] = &[0x55, 0x1d, 0x15];
const OID_INVALIDITY_DATE: &[u8] = &[0x55, 0x1d, 0x18];
const OID_CERT_ISSUER: &[u8] = &[0x55, 0x1d, 0x1d];

/// Dotted form of a DER OID body, for messages.
pub(crate) fn oid_text(oid: &[u8]) -> String {
    let mut parts = Vec::new();
    let mut acc: u64 = 0;
    for (i, b) in oid.iter().enumerate() {
        acc = (acc << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if parts.is_empty() && i < oid.len() {
                let first = acc.min(80) / 40;
                parts.push((first.min(2)).to_string());
                parts.push((acc - first.min(2) * 40).to_string());
            } else {
                parts.push(acc.to_string());
            }
            acc = 0;
        }
    }
    parts.join(".")
}

/// One extension: (OID body, critical, value).
type Ext<'a> = (&'a [u8], bool, &'a [u8]);

/// The extensions of a `SEQUENCE OF Extension` body; `None` if malformed.
fn extensions(mut seq: &[u8]) -> Option<Vec<Ext<'_>>> {
    let mut out = Vec::new();
    while !seq.is_empty() {
        let (0x30, _, ext, rest) = tlv(seq)? else { return None };
        let (0x06, _, oid, mut after) = tlv(ext)? else { return None };
        let mut critical = false;
        if after.first() == Some(&0x01) {
            let (_, _, b, r) = tlv(after)?;
            critical = b.first().is_some_and(|v| *v != 0);
            after = r;
        }
        let (0x04, _, value, end) = tlv(after)? else { return None };
        if !end.is_empty() {
            return None;
        }
        out.push((oid, critical, value));
        seq = rest;
    }
    Some(out)
}

/// One loaded CRL.
pub(crate) struct LoadedCrl {
    /// The issuer Name's contents (without the SEQUENCE header), as webpki
    /// gives a certificate's subject.
    pub issuer: Box<[u8]>,
    serials: HashSet<SerialKey>,
    long_serials: HashSet<Box<[u8]>>,
    pub this_update: i64,
    pub next_update: Option<i64>,
    /// The CRL number as hex, if present.
    pub number: Option<String>,
    /// Why this CRL must not decide anything (RFC 5280 5.2), found at load.
    pub problem: Option<String>,
    /// Where it came from (file or URL), for messages.
    pub source: String,
    der: Arc<[u8]>,
    tbs: Range<usize>,
    algorithm: Range<usize>,
    signature: Range<usize>,
    /// SHA-256 of issuer SPKIs this CRL's signature was checked against, and the outcome.
    checked: Mutex<HashMap<[u8; 32], bool>>,
}

impl std::fmt::Debug for LoadedCrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedCrl").field("source", &self.source).field("entries", &self.len()).finish()
    }
}

fn range_of(outer: &[u8], inner: &[u8]) -> Range<usize> {
    let start = inner.as_ptr() as usize - outer.as_ptr() as usize;
    start..start + inner.len()
}

/// Why a CRL could not be read at all (a load error, not an unusable CRL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MalformedCrl(pub &'static str);

impl LoadedCrl {
    /// Walks the CRL's DER directly: x509-parser would build a structure
    /// per entry, most of the load time of a 1M-entry CRL. Anything that is
    /// not DER of the expected shape is an error; a well-formed CRL that
    /// RFC 5280 says must not be used is loaded with `problem` set.
    pub fn parse(der: Arc<[u8]>, source: &str) -> Result<LoadedCrl, MalformedCrl> {
        let bad = MalformedCrl;
        let d: &[u8] = &der;
        let (0x30, _, list, trailing) = tlv(d).ok_or(bad("bad outer length"))? else {
            return Err(bad("not a SEQUENCE"));
        };
        if !trailing.is_empty() {
            return Err(bad("trailing data after the CRL"));
        }
        let (0x30, tbs_all, tbs, after_tbs) = tlv(list).ok_or(bad("bad tbsCertList"))? else {
            return Err(bad("tbsCertList is not a SEQUENCE"));
        };
        let (0x30, alg_all, alg_contents, after_alg) = tlv(after_tbs).ok_or(bad("bad signatureAlgorithm"))? else {
            return Err(bad("signatureAlgorithm is not a SEQUENCE"));
        };
        let (0x03, _, sig, end) = tlv(after_alg).ok_or(bad("bad signature"))? else {
            return Err(bad("signature is not a BIT STRING"));
        };
        if !end.is_empty() || sig.first() != Some(&0) || sig.len() < 2 {
            return Err(bad("bad signature BIT STRING"));
        }
        let mut problems: Vec<String> = Vec::new();
        let mut t = tbs;
        let mut v2 = false;
        if t.first() == Some(&0x02) {
            let (_, _, v, rest) = tlv(t).ok_or(bad("bad version"))?;
            if v != [1] {
                problems.push(format!("unsupported CRL version {}", hex::encode(v)));
            }
            v2 = true;
            t = rest;
        }
        let (0x30, inner_alg, _, rest) = tlv(t).ok_or(bad("bad signature algorithm"))? else {
            return Err(bad("signature algorithm is not a SEQUENCE"));
        };
        if inner_alg != alg_all {
            problems.push("the signature algorithm inside the CRL differs from the outer one".into());
        }
        let (0x30, _, issuer, rest) = tlv(rest).ok_or(bad("bad issuer"))? else {
            return Err(bad("issuer is not a Name"));
        };
        if issuer.is_empty() {
            problems.push("empty issuer name".into());
        }
        let (tag, _, tu, mut t) = tlv(rest).ok_or(bad("bad thisUpdate"))?;
        let this_update = der_time(tag, tu).ok_or(bad("bad thisUpdate time"))?;
        let mut next_update = None;
        if let Some(&tag @ (0x17 | 0x18)) = t.first() {
            let (_, _, nu, rest) = tlv(t).ok_or(bad("bad nextUpdate"))?;
            next_update = Some(der_time(tag, nu).ok_or(bad("bad nextUpdate time"))?);
            t = rest;
        }
        if next_update.is_none() {
            problems.push("no nextUpdate".into());
        }
        let mut serials = HashSet::new();
        let mut long_serials = HashSet::new();
        if t.first() == Some(&0x30) {
            let (_, _, mut entries, rest) = tlv(t).ok_or(bad("bad revokedCertificates"))?;
            // An entry is ~37 bytes for a 16-byte serial: one allocation.
            serials.reserve(entries.len() / 36);
            while !entries.is_empty() {
                let (0x30, _, entry, next) = tlv(entries).ok_or(bad("bad CRL entry"))? else {
                    return Err(bad("CRL entry is not a SEQUENCE"));
                };
                let (0x02, _, serial, after) = tlv(entry).ok_or(bad("bad CRL entry serial"))? else {
                    return Err(bad("CRL entry serial is not an INTEGER"));
                };
                if serial.is_empty() {
                    return Err(bad("empty CRL entry serial"));
                }
                let (tag, _, _, after) = tlv(after).ok_or(bad("bad CRL entry revocationDate"))?;
                if tag != 0x17 && tag != 0x18 {
                    return Err(bad("CRL entry revocationDate is not a time"));
                }
                if !after.is_empty() {
                    let (0x30, _, exts, end) = tlv(after).ok_or(bad("bad CRL entry extensions"))? else {
                        return Err(bad("CRL entry extensions are not a SEQUENCE"));
                    };
                    if !end.is_empty() {
                        return Err(bad("trailing data in a CRL entry"));
                    }
                    for (oid, critical, _) in extensions(exts).ok_or(bad("bad CRL entry extension"))? {
                        if oid == OID_CERT_ISSUER {
                            problems.push("indirect CRL (certificateIssuer entry extension)".into());
                        } else if critical && oid != OID_REASON && oid != OID_INVALIDITY_DATE {
                            problems.push(format!("unknown critical CRL entry extension {}", oid_text(oid)));
                        }
                    }
                }
                match SerialKey::new(serial) {
                    Some(k) => {
                        serials.insert(k);
                    }
                    None => {
                        long_serials.insert(serial.into());
                    }
                }
                entries = next;
            }
            t = rest;
        }
        let mut number = None;
        let mut number_seen = false;
        if let Some(&0xa0) = t.first() {
            let (_, _, wrapped, rest) = tlv(t).ok_or(bad("bad crlExtensions"))?;
            let (0x30, _, exts, end) = tlv(wrapped).ok_or(bad("bad crlExtensions"))? else {
                return Err(bad("crlExtensions is not a SEQUENCE"));
            };
            if !end.is_empty() {
                return Err(bad("trailing data in crlExtensions"));
            }
            if !v2 {
                problems.push("extensions in a version 1 CRL".into());
            }
            for (oid, critical, value) in extensions(exts).ok_or(bad("bad CRL extension"))? {
                match oid {
                    OID_CRL_NUMBER => {
                        if number_seen {
                            problems.push("two CRL number extensions".into());
                        }
                        number_seen = true;
                        if critical {
                            problems.push("the CRL number extension is marked critical".into());
                        }
                        match tlv(value) {
                            Some((0x02, _, n, [])) if !n.is_empty() && n[0] & 0x80 == 0 && n.len() <= 21 => {
                                number = Some(hex::encode(n));
                            }
                            _ => {
                                problems.push("the CRL number is not a non-negative INTEGER of up to 20 octets".into())
                            }
                        }
                    }
                    OID_DELTA_CRL => problems.push("delta CRLs are not supported".into()),
                    OID_IDP => problems.push(
                        "partitioned CRLs (issuingDistributionPoint) are not supported; publish a full CRL".into(),
                    ),
                    OID_AKI => {}
                    other if critical => problems.push(format!("unknown critical CRL extension {}", oid_text(other))),
                    _ => {}
                }
            }
            t = rest;
        }
        if !t.is_empty() {
            return Err(bad("trailing data in tbsCertList"));
        }
        if !number_seen {
            problems.push("no CRL number (RFC 5280 5.2.3 requires one)".into());
        }
        problems.dedup();
        Ok(LoadedCrl {
            issuer: issuer.into(),
            serials,
            long_serials,
            this_update,
            next_update,
            number,
            problem: (!problems.is_empty()).then(|| problems.join("; ")),
            source: source.to_string(),
            tbs: range_of(d, tbs_all),
            algorithm: range_of(d, alg_contents),
            signature: range_of(d, &sig[1..]),
            checked: Mutex::new(HashMap::new()),
            der,
        })
    }

    /// Revoked entries in this CRL.
    pub fn len(&self) -> usize {
        self.serials.len() + self.long_serials.len()
    }

    /// Whether `serial` (a certificate's DER INTEGER contents) is listed.
    pub fn contains(&self, serial: &[u8]) -> bool {
        match SerialKey::new(serial) {
            Some(k) => self.serials.contains(&k),
            None => self.long_serials.contains(serial),
        }
    }

    /// Whether this CRL is signed by the key in `spki` (a full
    /// SubjectPublicKeyInfo DER), with one of `algs`. Checked once per key.
    pub fn signed_by(&self, spki: &[u8], algs: &WebPkiSupportedAlgorithms) -> bool {
        let mut key = [0u8; 32];
        key.copy_from_slice(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, spki).as_ref());
        if let Some(ok) = self.checked.lock().ok().and_then(|c| c.get(&key).copied()) {
            return ok;
        }
        let ok = verify_signature(
            spki,
            &self.der[self.algorithm.clone()],
            &self.der[self.tbs.clone()],
            &self.der[self.signature.clone()],
            algs,
        );
        if let Ok(mut c) = self.checked.lock() {
            c.insert(key, ok);
        }
        ok
    }
}

/// Verifies `signature` over `message` with the key in `spki` (full DER),
/// choosing the algorithm by the signature's AlgorithmIdentifier contents
/// and the key's — as webpki does for certificates.
pub(crate) fn verify_signature(
    spki: &[u8],
    sig_alg: &[u8],
    message: &[u8],
    signature: &[u8],
    algs: &WebPkiSupportedAlgorithms,
) -> bool {
    let Some((0x30, _, spki_body, _)) = tlv(spki) else { return false };
    let Some((0x30, _, key_alg, rest)) = tlv(spki_body) else { return false };
    let Some((0x03, _, bits, _)) = tlv(rest) else { return false };
    let Some((0, public_key)) = bits.split_first() else { return false };
    algs.all.iter().any(|alg| {
        alg.signature_alg_id().as_ref() == sig_alg
            && alg.public_key_alg_id().as_ref() == key_alg
            && alg.verify_signature(public_key, message, signature).is_ok()
    })
}

/// Every configured CRL, indexed by issuer name.
#[derive(Debug, Default)]
pub struct CrlSet {
    pub(crate) crls: Vec<LoadedCrl>,
    by_issuer: HashMap<Box<[u8]>, Vec<usize>>,
}

/// What one loaded CRL looks like, for metrics, `--check` and logs.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CrlSummary {
    pub source: String,
    /// The issuer as OpenSSL prints it (`CN=acme Intermediate CA,O=acme`).
    pub issuer: String,
    pub number: Option<String>,
    pub entries: usize,
    pub this_update: i64,
    pub next_update: Option<i64>,
    /// Why it cannot be used, if it cannot.
    pub problem: Option<String>,
}

impl CrlSet {
    /// Reads every CRL; a CRL that is not well-formed DER is an error
    /// naming its source.
    pub fn load(crls: &[(String, CertificateRevocationListDer<'_>)]) -> Result<CrlSet, crate::TlsError> {
        let mut set = CrlSet::default();
        for (source, der) in crls {
            let crl = LoadedCrl::parse(Arc::from(der.as_ref()), source).map_err(|e| crate::TlsError::BadFile {
                path: source.into(),
                why: format!("malformed CRL: {}", e.0),
            })?;
            set.by_issuer.entry(crl.issuer.clone()).or_default().push(set.crls.len());
            set.crls.push(crl);
        }
        Ok(set)
    }

    pub fn is_empty(&self) -> bool {
        self.crls.is_empty()
    }

    /// Revoked entries over all CRLs.
    pub fn entries(&self) -> usize {
        self.crls.iter().map(LoadedCrl::len).sum()
    }

    /// The CRLs that name `issuer` (Name contents).
    pub(crate) fn for_issuer(&self, issuer: &[u8]) -> impl Iterator<Item = &LoadedCrl> {
        self.by_issuer.get(issuer).into_iter().flatten().filter_map(|i| self.crls.get(*i))
    }

    pub fn summaries(&self) -> Vec<CrlSummary> {
        self.crls
            .iter()
            .map(|c| CrlSummary {
                source: c.source.clone(),
                issuer: crate::identity::name_text(&c.issuer),
                number: c.number.clone(),
                entries: c.len(),
                this_update: c.this_update,
                next_update: c.next_update,
                problem: c.problem.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(der_time(0x17, b"700101000000Z"), Some(0));
        assert_eq!(der_time(0x18, b"20000301000000Z"), Some(951_868_800));
        assert_eq!(der_time(0x17, b"491231235959Z"), Some(2_524_607_999));
        assert_eq!(der_time(0x17, b"4912312359Z"), None);
        assert_eq!(der_time(0x17, b"491331235959Z"), None);
        assert_eq!(der_time(0x18, b"2000030100000+Z"), None);
    }

    #[test]
    fn oids() {
        assert_eq!(oid_text(&[0x55, 0x1d, 0x14]), "2.5.29.20");
        assert_eq!(oid_text(&[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x01]), "1.3.6.1.5.5.7.1.1");
    }
}
