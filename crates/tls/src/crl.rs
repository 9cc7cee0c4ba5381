//! CRLs as the verifier uses them: read once by walking the DER (RFC 5280
//! 5.1) into a set of serials, with what decides whether a CRL may be used
//! at all (version, CRL number, critical extensions) found at load time and
//! its signature checked lazily, once per issuer key, against the issuer in
//! a verified path — never against a certificate the peer merely sent.
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls_pki_types::CertificateRevocationListDer;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};

/// The revoked serials of one CRL: an open-addressing hash table (linear
/// probing, ~1.5 slots an entry) of offsets into the CRL's DER, which the
/// CRL keeps anyway for its signature. 8 bytes a slot instead of a copy of
/// each serial: a 1,000,000-entry CRL costs 12 MB here, where a
/// `HashSet` of fixed 22-byte keys took 48 MB. Serials of any length are
/// stored alike.
///
/// The hash is SipHash with random keys (`RandomState`), not a faster
/// unkeyed one: the table is built when the CRL is read, before its
/// signature is checked (lazily, against the issuer of a verified path),
/// so its contents are not yet authenticated, and not every CA's serials
/// are random. A keyed hash keeps crafted colliding serials from turning a
/// load into quadratic work; it costs ~12 ns an entry.
struct SerialTable {
    /// 0: empty; else the low 32 bits of the serial's hash (compared before
    /// the bytes) in the high half and 1 + the offset of the entry's serial
    /// INTEGER in the DER in the low half.
    slots: Box<[u64]>,
    len: usize,
    hasher: std::hash::RandomState,
}

impl SerialTable {
    /// The table of the serial INTEGERs at `offsets` in `der` (offsets
    /// below `u32::MAX`, each of a well-formed INTEGER); duplicates count once.
    fn build(der: &[u8], offsets: &[u32]) -> SerialTable {
        let mut table = SerialTable {
            slots: vec![0u64; if offsets.is_empty() { 0 } else { offsets.len() + offsets.len() / 2 + 1 }]
                .into_boxed_slice(),
            len: 0,
            hasher: std::hash::RandomState::new(),
        };
        for &off in offsets {
            let serial = serial_at(der, off);
            let (mut i, tag) = table.start(serial);
            loop {
                let slot = table.slots[i];
                if slot == 0 {
                    table.slots[i] = (u64::from(tag) << 32) | (u64::from(off) + 1);
                    table.len += 1;
                    break;
                }
                if table.matches(der, slot, tag, serial) {
                    break;
                }
                i = if i + 1 == table.slots.len() { 0 } else { i + 1 };
            }
        }
        table
    }

    /// The first slot to probe for `serial` (the hash's high bits scaled to
    /// the table's size) and the tag (its low 32 bits).
    fn start(&self, serial: &[u8]) -> (usize, u32) {
        let h = std::hash::BuildHasher::hash_one(&self.hasher, serial);
        (((u128::from(h) * self.slots.len() as u128) >> 64) as usize, h as u32)
    }

    fn matches(&self, der: &[u8], slot: u64, tag: u32, serial: &[u8]) -> bool {
        (slot >> 32) as u32 == tag && serial_at(der, (slot as u32).wrapping_sub(1)) == serial
    }

    fn contains(&self, der: &[u8], serial: &[u8]) -> bool {
        if self.slots.is_empty() {
            return false;
        }
        let (mut i, tag) = self.start(serial);
        loop {
            let slot = self.slots[i];
            if slot == 0 {
                return false;
            }
            if self.matches(der, slot, tag, serial) {
                return true;
            }
            i = if i + 1 == self.slots.len() { 0 } else { i + 1 };
        }
    }
}

/// The contents of the INTEGER at `off` in `der` (empty if there is none,
/// which cannot happen for the offsets a `SerialTable` holds).
fn serial_at(der: &[u8], off: u32) -> &[u8] {
    der.get(off as usize..).and_then(tlv).map_or(&[], |(_, _, v, _)| v)
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

/// Calls `f` for each extension of a `SEQUENCE OF Extension` body; `None`
/// if malformed (`f` may have seen the ones before). No allocation: this
/// runs for every CRL entry that has extensions.
fn each_extension<'a>(mut seq: &'a [u8], mut f: impl FnMut(Ext<'a>)) -> Option<()> {
    while !seq.is_empty() {
        let (0x30, _, ext, rest) = tlv(seq)? else { return None };
        let (0x06, _, oid, mut after) = tlv(ext)? else { return None };
        let mut critical = false;
        if after.first() == Some(&0x01) {
            // A BOOLEAN is one octet; an empty one is malformed, not "false".
            let (_, _, &[b], r) = tlv(after)? else { return None };
            critical = b != 0;
            after = r;
        }
        let (0x04, _, value, end) = tlv(after)? else { return None };
        if !end.is_empty() {
            return None;
        }
        f((oid, critical, value));
        seq = rest;
    }
    Some(())
}

/// Adds `p` to `problems` unless already there: an entry-level problem
/// would otherwise be recorded once per entry (a million times).
fn note(problems: &mut Vec<String>, p: String) {
    if !problems.contains(&p) {
        problems.push(p);
    }
}

/// One loaded CRL.
pub(crate) struct LoadedCrl {
    /// The issuer Name's contents (without the SEQUENCE header), as webpki
    /// gives a certificate's subject.
    pub issuer: Box<[u8]>,
    serials: SerialTable,
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
        // Offsets of the entries' serial INTEGERs, hashed once the walk
        // is done (and the count known); a table slot holds an offset.
        let mut offsets: Vec<u32> = Vec::new();
        if d.len() >= u32::MAX as usize {
            return Err(bad("CRL larger than 4 GiB"));
        }
        if t.first() == Some(&0x30) {
            let (_, _, mut entries, rest) = tlv(t).ok_or(bad("bad revokedCertificates"))?;
            // An entry is ~35 bytes for a 16-byte serial without extensions.
            offsets.reserve(entries.len() / 35);
            while !entries.is_empty() {
                let (0x30, _, entry, next) = tlv(entries).ok_or(bad("bad CRL entry"))? else {
                    return Err(bad("CRL entry is not a SEQUENCE"));
                };
                let (0x02, serial_all, serial, after) = tlv(entry).ok_or(bad("bad CRL entry serial"))? else {
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
                    each_extension(exts, |(oid, critical, _)| {
                        if oid == OID_CERT_ISSUER {
                            note(&mut problems, "indirect CRL (certificateIssuer entry extension)".into());
                        } else if critical && oid != OID_REASON && oid != OID_INVALIDITY_DATE {
                            note(&mut problems, format!("unknown critical CRL entry extension {}", oid_text(oid)));
                        }
                    })
                    .ok_or(bad("bad CRL entry extension"))?;
                }
                offsets.push(range_of(d, serial_all).start as u32);
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
            each_extension(exts, |(oid, critical, value)| match oid {
                OID_CRL_NUMBER => {
                    if number_seen {
                        note(&mut problems, "two CRL number extensions".into());
                    }
                    number_seen = true;
                    if critical {
                        note(&mut problems, "the CRL number extension is marked critical".into());
                    }
                    // At most 20 octets of value (RFC 5280 5.2.3): 21 with
                    // the 00 a positive INTEGER needs when its top bit is set.
                    match tlv(value) {
                        Some((0x02, _, n @ [first, ..], []))
                            if first & 0x80 == 0 && (n.len() <= 20 || (n.len() == 21 && *first == 0)) =>
                        {
                            number = Some(hex::encode(n));
                        }
                        _ => note(
                            &mut problems,
                            "the CRL number is not a non-negative INTEGER of up to 20 octets".into(),
                        ),
                    }
                }
                OID_DELTA_CRL => note(&mut problems, "delta CRLs are not supported".into()),
                OID_IDP => note(
                    &mut problems,
                    "partitioned CRLs (issuingDistributionPoint) are not supported; publish a full CRL".into(),
                ),
                OID_AKI => {}
                other if critical => note(&mut problems, format!("unknown critical CRL extension {}", oid_text(other))),
                _ => {}
            })
            .ok_or(bad("bad CRL extension"))?;
            t = rest;
        }
        if !t.is_empty() {
            return Err(bad("trailing data in tbsCertList"));
        }
        if !number_seen {
            problems.push("no CRL number (RFC 5280 5.2.3 requires one)".into());
        }
        Ok(LoadedCrl {
            issuer: issuer.into(),
            serials: SerialTable::build(d, &offsets),
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
        self.serials.len
    }

    /// Whether `serial` (a certificate's DER INTEGER contents) is listed.
    ///
    /// The match is exact, on the encoded bytes, as webpki's own CRL check
    /// does: `00 80` (128) and `80` (-128) differ, as they should, and so do
    /// `00 05` and `05`, although both encode 5 — the first is not DER
    /// (leading zero octet). A CA encodes serials the same way in its
    /// certificates and its CRLs, so exactness only matters for encoders
    /// that disagree, and those are not worked around here.
    pub fn contains(&self, serial: &[u8]) -> bool {
        self.serials.contains(&self.der, serial)
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
    use ambos_pki::{build_crl, Authority, NewCa, OffsetDateTime, RevocationReason, RevokedEntry, Serial};
    use std::time::Duration;

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

    // ---- A tiny DER encoder and hand-made CRLs (signatures are junk: the
    // ---- parse does not look at them).

    /// tag + definite length (short or minimal long form) + contents.
    fn der(tag: u8, contents: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let n = contents.len();
        if n < 0x80 {
            out.push(n as u8);
        } else {
            let be = n.to_be_bytes();
            let skip = be.iter().take_while(|b| **b == 0).count();
            out.push(0x80 | (be.len() - skip) as u8);
            out.extend_from_slice(&be[skip..]);
        }
        out.extend_from_slice(contents);
        out
    }

    fn seq(parts: &[Vec<u8>]) -> Vec<u8> {
        der(0x30, &parts.concat())
    }

    fn int(v: &[u8]) -> Vec<u8> {
        der(0x02, v)
    }

    fn utc(t: &str) -> Vec<u8> {
        der(0x17, t.as_bytes())
    }

    /// An Extension; `critical: None` leaves the BOOLEAN out.
    fn ext(oid: &[u8], critical: Option<bool>, value: &[u8]) -> Vec<u8> {
        let mut parts = vec![der(0x06, oid)];
        if let Some(c) = critical {
            parts.push(der(0x01, &[if c { 0xff } else { 0 }]));
        }
        parts.push(der(0x04, value));
        seq(&parts)
    }

    fn crl_number(n: &[u8]) -> Vec<u8> {
        ext(OID_CRL_NUMBER, None, &int(n))
    }

    /// A CRL entry: serial, revocationDate, optional entry extensions.
    fn entry(serial: &[u8], exts: &[Vec<u8>]) -> Vec<u8> {
        let mut parts = vec![int(serial), utc("250101000000Z")];
        if !exts.is_empty() {
            parts.push(seq(exts));
        }
        seq(&parts)
    }

    const ECDSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
    const UNKNOWN_OID: &[u8] = &[0x2a, 0x03, 0x04]; // 1.2.3.4

    /// The parts of a hand-made CRL, each a whole TLV, to be varied.
    #[derive(Clone)]
    struct Parts {
        version: Option<Vec<u8>>,
        alg: Vec<u8>,
        issuer: Vec<u8>,
        this_update: Vec<u8>,
        next_update: Option<Vec<u8>>,
        entries: Option<Vec<Vec<u8>>>,
        /// crlExtensions ([0] EXPLICIT SEQUENCE OF Extension).
        extensions: Option<Vec<Vec<u8>>>,
        /// Anything after the extensions inside tbsCertList.
        tbs_tail: Vec<u8>,
        outer_alg: Option<Vec<u8>>,
    }

    impl Parts {
        /// A v2 CRL with CRL number 1 and three entries, nothing wrong with it.
        fn v2() -> Parts {
            Parts {
                version: Some(int(&[1])),
                alg: seq(&[der(0x06, ECDSA_SHA256)]),
                issuer: seq(&[der(0x31, &seq(&[der(0x06, &[0x55, 0x04, 0x03]), der(0x0c, b"Test CA")]))]),
                this_update: utc("250101000000Z"),
                next_update: Some(der(0x18, b"20250108000000Z")),
                entries: Some(vec![entry(&[0x01], &[]), entry(&[0x00, 0x80], &[]), entry(&[0x7f; 16], &[])]),
                extensions: Some(vec![crl_number(&[0x01])]),
                tbs_tail: Vec::new(),
                outer_alg: None,
            }
        }

        fn v1() -> Parts {
            Parts { version: None, extensions: None, ..Parts::v2() }
        }

        fn tbs(&self) -> Vec<u8> {
            let mut parts = Vec::new();
            parts.extend(self.version.clone());
            parts.push(self.alg.clone());
            parts.push(self.issuer.clone());
            parts.push(self.this_update.clone());
            parts.extend(self.next_update.clone());
            if let Some(e) = &self.entries {
                parts.push(seq(e));
            }
            if let Some(e) = &self.extensions {
                parts.push(der(0xa0, &seq(e)));
            }
            parts.push(self.tbs_tail.clone());
            seq(&parts)
        }

        fn build(&self) -> Vec<u8> {
            let alg = self.outer_alg.clone().unwrap_or_else(|| self.alg.clone());
            let mut sig = vec![0u8];
            sig.extend_from_slice(&[0x5a; 70]);
            seq(&[self.tbs(), alg, der(0x03, &sig)])
        }

        fn parse(&self) -> Result<LoadedCrl, MalformedCrl> {
            parse(&self.build())
        }

        fn problem(&self) -> Option<String> {
            self.parse().expect("well-formed").problem
        }

        fn with_extensions(exts: Vec<Vec<u8>>) -> Parts {
            Parts { extensions: Some(exts), ..Parts::v2() }
        }

        fn with_entries(entries: Vec<Vec<u8>>) -> Parts {
            Parts { entries: Some(entries), ..Parts::v2() }
        }
    }

    fn parse(d: &[u8]) -> Result<LoadedCrl, MalformedCrl> {
        LoadedCrl::parse(Arc::from(d), "test")
    }

    fn problem_has(p: &Parts, what: &str) {
        let problem = p.problem();
        assert!(
            problem.as_deref().is_some_and(|p| p.contains(what)),
            "expected a problem with '{what}', got {problem:?}"
        );
    }

    #[test]
    fn hand_made_v2_crl_is_usable() {
        let crl = Parts::v2().parse().unwrap();
        assert_eq!(crl.problem, None);
        assert_eq!(crl.len(), 3);
        assert_eq!(crl.number.as_deref(), Some("01"));
        assert_eq!(crl.this_update, 1_735_689_600);
        assert_eq!(crl.next_update, Some(1_735_689_600 + 7 * 86_400));
        assert_eq!(&*crl.issuer, &Parts::v2().issuer[2..]);
        assert_eq!(crl.source, "test");
        assert!(crl.contains(&[0x01]) && crl.contains(&[0x00, 0x80]) && crl.contains(&[0x7f; 16]));
        assert!(!crl.contains(&[0x02]) && !crl.contains(&[]) && !crl.contains(&[0x7f; 15]));
    }

    #[test]
    fn tlv_lengths() {
        // Short form, long form with 1..=4 length octets.
        assert_eq!(tlv(&[0x04, 0x01, 0xaa, 0xbb]), Some((0x04, &[0x04, 0x01, 0xaa][..], &[0xaa][..], &[0xbb][..])));
        let long = der(0x04, &[0x11; 200]);
        assert_eq!(&long[..3], &[0x04, 0x81, 200]);
        assert_eq!(tlv(&long).map(|t| t.2.len()), Some(200));
        assert_eq!(tlv(&[0x04, 0x84, 0, 0, 0, 1, 0xaa]).map(|t| t.2), Some(&[0xaa][..]));
        // Longer than the input, by one and by a lot.
        assert_eq!(tlv(&[0x04, 0x02, 0xaa]), None);
        assert_eq!(tlv(&[0x04, 0x84, 0xff, 0xff, 0xff, 0xff, 0xaa]), None);
        assert_eq!(tlv(&[0x04, 0x82, 0x01]), None); // length octets cut
                                                    // 5 or more length octets, even for a small length.
        assert_eq!(tlv(&[0x04, 0x85, 0, 0, 0, 0, 1, 0xaa]), None);
        assert_eq!(tlv(&[0x04, 0xff]), None);
        // Long form with zero length octets (BER's indefinite length).
        assert_eq!(tlv(&[0x30, 0x80, 0x00, 0x00]), None);
        // Nothing, or a tag alone.
        assert_eq!(tlv(&[]), None);
        assert_eq!(tlv(&[0x30]), None);
    }

    #[test]
    fn bad_lengths_in_a_crl() {
        let good = Parts::v2().build();
        // Outer length one longer than the input.
        let mut d = good.clone();
        d[2] += 1; // the outer header is 30 81 xx
        assert_eq!(good[1], 0x81);
        assert!(parse(&d).is_err());
        // An entry whose length runs past its SEQUENCE.
        let mut p = Parts::v2();
        p.entries = Some(vec![vec![0x30, 0x7f, 0x02, 0x01, 0x01]]);
        assert!(p.parse().is_err());
        // 5 length octets and indefinite length for the tbsCertList.
        for header in [&[0x30u8, 0x85, 0, 0, 0, 0, 0][..], &[0x30, 0x80][..]] {
            let tbs = Parts::v2().tbs();
            let bad_tbs = [header, tlv(&tbs).unwrap().2].concat();
            let d = seq(&[bad_tbs, Parts::v2().alg, der(0x03, &[0, 1])]);
            assert!(parse(&d).is_err());
            // The same contents with their right length parse.
            let d = seq(&[der(0x30, tlv(&tbs).unwrap().2), Parts::v2().alg, der(0x03, &[0, 1])]);
            parse(&d).unwrap();
        }
    }

    #[test]
    fn long_serials_are_matched() {
        let serials: Vec<Vec<u8>> =
            vec![vec![0x42; 20], [&[0x00][..], &[0x99; 20]].concat(), vec![0x42; 22], vec![0x43; 30], vec![0x44; 200]];
        let p = Parts::with_entries(serials.iter().map(|s| entry(s, &[])).collect());
        let crl = p.parse().unwrap();
        assert_eq!(crl.len(), 5);
        for s in &serials {
            assert!(crl.contains(s), "{}", hex::encode(s));
            assert!(!crl.contains(&s[1..]));
            assert!(!crl.contains(&[s.as_slice(), &[0]].concat()));
        }
        assert!(!crl.contains(&[0x42; 21]));
    }

    #[test]
    fn v1_crls_load_but_are_unusable() {
        let crl = Parts::v1().parse().unwrap();
        assert_eq!(crl.len(), 3);
        assert_eq!(crl.number, None);
        assert!(crl.problem.as_deref().unwrap().contains("no CRL number"), "{:?}", crl.problem);
        // v1 with extensions: both said.
        let p = Parts { extensions: Some(vec![crl_number(&[1])]), ..Parts::v1() };
        problem_has(&p, "extensions in a version 1 CRL");
        // An unknown version.
        problem_has(&Parts { version: Some(int(&[2])), ..Parts::v2() }, "unsupported CRL version 02");
    }

    #[test]
    fn every_prefix_is_an_error() {
        let (authority, _) = make_ca();
        let now = OffsetDateTime::now_utc();
        let built = build_crl(&authority, 7, &revoked(3), now, now + Duration::from_secs(3600)).unwrap();
        for d in [Parts::v2().build(), Parts::v1().build(), built] {
            parse(&d).unwrap();
            for i in 0..d.len() {
                assert!(parse(&d[..i]).is_err(), "prefix of {i} bytes of {} parsed", d.len());
            }
        }
    }

    #[test]
    fn trailing_data() {
        for tail in [&[0u8][..], &[0x30, 0x00], &[0x05, 0x00]] {
            let d = [Parts::v2().build(), tail.to_vec()].concat();
            assert_eq!(parse(&d).unwrap_err(), MalformedCrl("trailing data after the CRL"));
            // Inside tbsCertList, after the extensions.
            let p = Parts { tbs_tail: tail.to_vec(), ..Parts::v2() };
            assert!(p.parse().is_err());
        }
        // After the signature, inside the CertificateList.
        let mut p = Parts::v2().build();
        let inner = &tlv(&p).unwrap().2.to_vec();
        p = der(0x30, &[inner.as_slice(), &[0x05, 0x00]].concat());
        assert!(parse(&p).is_err());
        // Inside an entry, an extension, crlExtensions.
        let e = seq(&[int(&[1]), utc("250101000000Z"), seq(&[]), der(0x05, &[])]);
        assert!(Parts::with_entries(vec![e]).parse().is_err());
        let e = seq(&[der(0x06, OID_REASON), der(0x04, &[0x0a, 0x01, 0x01]), der(0x05, &[])]);
        assert!(Parts::with_entries(vec![entry(&[1], &[e])]).parse().is_err());
        let mut p = Parts::v2();
        p.extensions = None;
        p.tbs_tail = der(0xa0, &[seq(&[crl_number(&[1])]), der(0x05, &[])].concat());
        assert!(p.parse().is_err());
    }

    #[test]
    fn crl_number_rules() {
        // Critical: recorded, and the CRL unusable.
        let p = Parts::with_extensions(vec![ext(OID_CRL_NUMBER, Some(true), &int(&[5]))]);
        problem_has(&p, "marked critical");
        assert_eq!(p.parse().unwrap().number.as_deref(), Some("05"));
        // Explicitly non-critical is fine.
        assert_eq!(Parts::with_extensions(vec![ext(OID_CRL_NUMBER, Some(false), &int(&[5]))]).problem(), None);
        // Absent (other extensions present, or none at all).
        let aki = ext(OID_AKI, None, &seq(&[der(0x80, &[1; 20])]));
        problem_has(&Parts::with_extensions(vec![aki.clone()]), "no CRL number");
        problem_has(&Parts { extensions: None, ..Parts::v2() }, "no CRL number");
        assert_eq!(Parts::with_extensions(vec![aki, crl_number(&[9])]).problem(), None);
        // Negative, empty, not an INTEGER, trailing bytes.
        let not_int = "not a non-negative INTEGER of up to 20 octets";
        problem_has(&Parts::with_extensions(vec![crl_number(&[0x80])]), not_int);
        problem_has(&Parts::with_extensions(vec![crl_number(&[0xff, 0x01])]), not_int);
        problem_has(&Parts::with_extensions(vec![crl_number(&[])]), not_int);
        problem_has(&Parts::with_extensions(vec![ext(OID_CRL_NUMBER, None, &der(0x04, &[1]))]), not_int);
        problem_has(&Parts::with_extensions(vec![ext(OID_CRL_NUMBER, None, &[int(&[1]), vec![0]].concat())]), not_int);
        // Up to 20 octets of value: 20, or 21 with the sign octet; not more.
        let twenty = [0x7f; 20];
        assert_eq!(Parts::with_extensions(vec![crl_number(&twenty)]).problem(), None);
        let signed = [&[0x00][..], &[0xff; 20]].concat();
        let p = Parts::with_extensions(vec![crl_number(&signed)]);
        assert_eq!(p.problem(), None);
        assert_eq!(p.parse().unwrap().number, Some(hex::encode(&signed)));
        problem_has(&Parts::with_extensions(vec![crl_number(&[0x01; 21])]), not_int);
        problem_has(&Parts::with_extensions(vec![crl_number(&[0x01; 22])]), not_int);
        // Twice.
        problem_has(&Parts::with_extensions(vec![crl_number(&[1]), crl_number(&[2])]), "two CRL number extensions");
    }

    #[test]
    fn unknown_critical_crl_extension() {
        problem_has(
            &Parts::with_extensions(vec![crl_number(&[1]), ext(UNKNOWN_OID, Some(true), &[0x05, 0x00])]),
            "unknown critical CRL extension 1.2.3.4",
        );
        // Unknown but not critical: ignored.
        let p = Parts::with_extensions(vec![crl_number(&[1]), ext(UNKNOWN_OID, Some(false), &[0x05, 0x00])]);
        assert_eq!(p.problem(), None);
        assert_eq!(Parts::with_extensions(vec![crl_number(&[1]), ext(UNKNOWN_OID, None, &[])]).problem(), None);
    }

    #[test]
    fn entry_extensions() {
        let reason = ext(OID_REASON, None, &der(0x0a, &[1]));
        let critical_reason = ext(OID_REASON, Some(true), &der(0x0a, &[1]));
        let invalidity = ext(OID_INVALIDITY_DATE, Some(true), &der(0x18, b"20250101000000Z"));
        let p = Parts::with_entries(vec![entry(&[1], &[reason, critical_reason, invalidity])]);
        assert_eq!(p.problem(), None);
        assert!(p.parse().unwrap().contains(&[1]));
        // An unknown critical entry extension, on many entries: said once.
        let unknown = ext(UNKNOWN_OID, Some(true), &[0x05, 0x00]);
        let p = Parts::with_entries(
            (1..=300u16).map(|i| entry(&i.to_be_bytes(), std::slice::from_ref(&unknown))).collect(),
        );
        let problem = p.problem().unwrap();
        assert_eq!(problem.matches("unknown critical CRL entry extension 1.2.3.4").count(), 1, "{problem}");
        assert_eq!(p.parse().unwrap().len(), 300);
        // Non-critical: ignored.
        let p = Parts::with_entries(vec![entry(&[1], &[ext(UNKNOWN_OID, Some(false), &[0x05, 0x00])])]);
        assert_eq!(p.problem(), None);
        // certificateIssuer: an indirect CRL, critical or not.
        for c in [None, Some(true)] {
            let p = Parts::with_entries(vec![entry(&[1], &[ext(OID_CERT_ISSUER, c, &seq(&[]))])]);
            problem_has(&p, "indirect CRL");
        }
    }

    #[test]
    fn idp_and_delta_crls_are_unusable() {
        let idp = ext(OID_IDP, Some(true), &seq(&[der(0x81, &[0xff])]));
        problem_has(&Parts::with_extensions(vec![crl_number(&[1]), idp]), "issuingDistributionPoint");
        let delta = ext(OID_DELTA_CRL, Some(true), &int(&[1]));
        problem_has(&Parts::with_extensions(vec![crl_number(&[2]), delta]), "delta CRLs are not supported");
    }

    #[test]
    fn other_problems() {
        problem_has(&Parts { next_update: None, ..Parts::v2() }, "no nextUpdate");
        problem_has(&Parts { issuer: seq(&[]), ..Parts::v2() }, "empty issuer name");
        let sha384 = seq(&[der(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03])]);
        problem_has(&Parts { outer_alg: Some(sha384), ..Parts::v2() }, "differs from the outer one");
        // Several problems are all said.
        let p = Parts { next_update: None, extensions: None, ..Parts::v2() };
        let problem = p.problem().unwrap();
        assert!(problem.contains("no nextUpdate") && problem.contains("no CRL number"), "{problem}");
        // No entries at all (revokedCertificates absent, or empty).
        for entries in [None, Some(vec![])] {
            let crl = Parts { entries, ..Parts::v2() }.parse().unwrap();
            assert_eq!((crl.len(), crl.problem.clone()), (0, None));
            assert!(!crl.contains(&[1]));
        }
    }

    #[test]
    fn malformed_shapes_are_errors() {
        let cases: Vec<(&str, Parts)> = vec![
            ("serial not an INTEGER", Parts::with_entries(vec![seq(&[der(0x04, &[1]), utc("250101000000Z")])])),
            ("empty serial", Parts::with_entries(vec![seq(&[int(&[]), utc("250101000000Z")])])),
            ("revocationDate not a time", Parts::with_entries(vec![seq(&[int(&[1]), der(0x04, b"x")])])),
            ("no revocationDate", Parts::with_entries(vec![seq(&[int(&[1])])])),
            ("entry not a SEQUENCE", Parts::with_entries(vec![der(0x31, &int(&[1]))])),
            (
                "entry extensions not a SEQUENCE",
                Parts::with_entries(vec![seq(&[int(&[1]), utc("250101000000Z"), der(0x31, &[])])]),
            ),
            ("extension without value", Parts::with_extensions(vec![seq(&[der(0x06, OID_CRL_NUMBER)])])),
            (
                "empty BOOLEAN",
                Parts::with_extensions(vec![seq(&[der(0x06, OID_CRL_NUMBER), der(0x01, &[]), der(0x04, &int(&[1]))])]),
            ),
            (
                "two-octet BOOLEAN",
                Parts::with_extensions(vec![seq(&[
                    der(0x06, OID_CRL_NUMBER),
                    der(0x01, &[0xff, 0xff]),
                    der(0x04, &int(&[1])),
                ])]),
            ),
            (
                "extension OID not an OID",
                Parts::with_extensions(vec![seq(&[der(0x04, OID_CRL_NUMBER), der(0x04, &int(&[1]))])]),
            ),
            ("bad thisUpdate", Parts { this_update: utc("251301000000Z"), ..Parts::v2() }),
            ("thisUpdate not a time", Parts { this_update: int(&[1]), ..Parts::v2() }),
            ("bad nextUpdate", Parts { next_update: Some(utc("2501010000Z")), ..Parts::v2() }),
            ("algorithm not a SEQUENCE", Parts { alg: der(0x06, ECDSA_SHA256), ..Parts::v2() }),
            ("issuer not a SEQUENCE", Parts { issuer: der(0x31, &[]), ..Parts::v2() }),
            (
                "crlExtensions not a SEQUENCE",
                Parts { extensions: None, tbs_tail: der(0xa0, &der(0x31, &[])), ..Parts::v2() },
            ),
        ];
        for (what, p) in cases {
            assert!(p.parse().is_err(), "{what}: parsed");
        }
        // The signature BIT STRING: unused-bits octet 0 and something after it.
        let tbs = Parts::v2().tbs();
        for sig in [der(0x03, &[]), der(0x03, &[0]), der(0x03, &[1, 0xaa]), der(0x04, &[0, 0xaa])] {
            assert!(parse(&seq(&[tbs.clone(), Parts::v2().alg, sig])).is_err());
        }
        // Not a SEQUENCE at all; nothing.
        assert!(parse(&der(0x31, &Parts::v2().build()[2..])).is_err());
        assert!(parse(&[]).is_err());
    }

    #[test]
    fn a_non_critical_boolean_written_out_is_accepted() {
        let p = Parts::with_extensions(vec![
            seq(&[der(0x06, UNKNOWN_OID), der(0x01, &[0x00]), der(0x04, &[])]),
            crl_number(&[1]),
        ]);
        assert_eq!(p.problem(), None);
        // Any non-zero octet reads as critical (BER's TRUE), not as false.
        let p = Parts::with_extensions(vec![
            seq(&[der(0x06, UNKNOWN_OID), der(0x01, &[0x01]), der(0x04, &[])]),
            crl_number(&[1]),
        ]);
        problem_has(&p, "unknown critical CRL extension");
    }

    /// `contains` compares the encoded INTEGER contents exactly.
    #[test]
    fn contains_is_an_exact_match() {
        let p = Parts::with_entries(vec![
            entry(&[0x00, 0x80], &[]),
            entry(&[0x05], &[]),
            entry(&[0x00, 0x06], &[]),
            entry(&[0xff], &[]),
        ]);
        let crl = p.parse().unwrap();
        // 00 80 is 128 and 80 is -128: different serials.
        assert!(crl.contains(&[0x00, 0x80]) && !crl.contains(&[0x80]));
        // 00 05 is a non-DER spelling of 5: not matched, as webpki does.
        assert!(crl.contains(&[0x05]) && !crl.contains(&[0x00, 0x05]));
        assert!(crl.contains(&[0x00, 0x06]) && !crl.contains(&[0x06]));
        // Negative serials (non-conforming, but they exist) are kept.
        assert!(crl.contains(&[0xff]) && !crl.contains(&[0xff, 0xff]));
        assert!(!crl.contains(&[]));
    }

    #[test]
    fn duplicates_count_once_and_many_serials_are_all_found() {
        let p = Parts::with_entries(vec![entry(&[7], &[]), entry(&[7], &[]), entry(&[8], &[])]);
        assert_eq!(p.parse().unwrap().len(), 2);
        // Enough entries for long probe sequences; serials of varied lengths.
        let serials: Vec<Vec<u8>> = (0..20_000u32).map(|i| i.to_be_bytes()[..1 + (i % 4) as usize].to_vec()).collect();
        let distinct: std::collections::HashSet<&Vec<u8>> = serials.iter().collect();
        let crl = Parts::with_entries(serials.iter().map(|s| entry(s, &[])).collect()).parse().unwrap();
        assert_eq!(crl.len(), distinct.len());
        assert!(serials.iter().all(|s| crl.contains(s)));
        let absent = (0..20_000u32).map(|i| [&[0x55][..], &i.to_be_bytes()].concat()).filter(|s| !distinct.contains(s));
        assert!(absent.into_iter().all(|s| !crl.contains(&s)));
    }

    // ---- Real CRLs from ambos-pki, and their signatures.

    fn make_ca() -> (Authority, Vec<u8>) {
        let now = OffsetDateTime::now_utc();
        let day = Duration::from_secs(86_400);
        let ca = NewCa::create("Crl", ambos_pki::KeyType::EcP256, day * 30, day * 30, now).unwrap();
        (Authority::new(&ca.intermediate_cert_der, ca.intermediate_key, &ca.root_cert_der).unwrap(), ca.root_cert_der)
    }

    fn revoked(n: usize) -> Vec<RevokedEntry> {
        let now = OffsetDateTime::now_utc();
        (0..n)
            .map(|i| RevokedEntry {
                serial: Serial::random(),
                revoked_at: now,
                reason: RevocationReason::ALL[i % RevocationReason::ALL.len()],
            })
            .collect()
    }

    fn spki(cert: &[u8]) -> Vec<u8> {
        x509_parser::parse_x509_certificate(cert).unwrap().1.public_key().raw.to_vec()
    }

    fn subject(cert: &[u8]) -> Vec<u8> {
        let (_, c) = x509_parser::parse_x509_certificate(cert).unwrap();
        tlv(c.subject().as_raw()).unwrap().2.to_vec()
    }

    #[test]
    fn a_crl_from_ambos_pki() {
        let (authority, _) = make_ca();
        let now = OffsetDateTime::now_utc();
        let entries = revoked(50);
        let next = now + Duration::from_secs(86_400);
        let d = build_crl(&authority, 42, &entries, now, next).unwrap();
        let crl = parse(&d).unwrap();
        assert_eq!(crl.problem, None);
        assert_eq!(crl.len(), 50);
        assert_eq!(u64::from_str_radix(crl.number.as_deref().unwrap(), 16), Ok(42));
        assert_eq!(crl.this_update, now.unix_timestamp());
        assert_eq!(crl.next_update, Some(next.unix_timestamp()));
        assert_eq!(&*crl.issuer, subject(authority.cert_der()).as_slice());
        for e in &entries {
            assert!(crl.contains(e.serial.as_bytes()));
        }
        assert!(!crl.contains(Serial::random().as_bytes()));
        // An empty one.
        let crl = parse(&build_crl(&authority, 43, &[], now, next).unwrap()).unwrap();
        assert_eq!((crl.len(), crl.problem), (0, None));
    }

    #[test]
    fn signed_by() {
        let (authority, root) = make_ca();
        // Another CA with the same name (an impostor).
        let (other, _) = make_ca();
        let algs = crate::provider().signature_verification_algorithms;
        let now = OffsetDateTime::now_utc();
        let entries = revoked(5);
        let d = build_crl(&authority, 1, &entries, now, now + Duration::from_secs(3600)).unwrap();
        let crl = parse(&d).unwrap();
        let key = spki(authority.cert_der());
        assert!(crl.signed_by(&key, &algs));
        assert!(crl.signed_by(&key, &algs), "cached");
        assert!(!crl.signed_by(&spki(&root), &algs));
        assert!(!crl.signed_by(&spki(other.cert_der()), &algs));
        assert!(!crl.signed_by(&[], &algs));
        assert!(!crl.signed_by(&[0x30, 0x00], &algs));
        // A changed serial (same length): still parses, no longer verifies.
        let s = entries[2].serial.as_bytes();
        let at = d.windows(s.len()).position(|w| w == s).unwrap();
        let mut tampered = d.clone();
        tampered[at + 3] ^= 0x01;
        let crl = parse(&tampered).unwrap();
        assert!(!crl.contains(s));
        assert!(!crl.signed_by(&key, &algs));
        // A changed signature.
        let mut tampered = d.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 0x01;
        assert!(!parse(&tampered).unwrap().signed_by(&key, &algs));
        // The hand-made ones carry junk.
        assert!(!Parts::v2().parse().unwrap().signed_by(&key, &algs));
    }

    #[test]
    fn crl_set_load() {
        let (authority, _) = make_ca();
        let now = OffsetDateTime::now_utc();
        let d = build_crl(&authority, 1, &revoked(4), now, now + Duration::from_secs(3600)).unwrap();
        let set = CrlSet::load(&[
            ("a.pem".to_string(), CertificateRevocationListDer::from(d.clone())),
            ("b.pem".to_string(), CertificateRevocationListDer::from(Parts::v2().build())),
        ])
        .unwrap();
        assert_eq!(set.entries(), 7);
        assert_eq!(set.for_issuer(&subject(authority.cert_der())).count(), 1);
        assert_eq!(set.for_issuer(&Parts::v2().issuer[2..]).map(|c| c.source.as_str()).collect::<Vec<_>>(), ["b.pem"]);
        let summaries = set.summaries();
        assert_eq!(summaries[0].issuer, "CN=Crl Intermediate CA,O=Crl");
        assert_eq!(summaries[1].entries, 3);
        // A malformed CRL: an error naming its source.
        let err = CrlSet::load(&[
            ("a.pem".to_string(), CertificateRevocationListDer::from(d.clone())),
            ("broken.pem".to_string(), CertificateRevocationListDer::from(d[..d.len() - 1].to_vec())),
        ])
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("broken.pem") && text.contains("malformed CRL"), "{text}");
    }
}
