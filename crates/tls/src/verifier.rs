//! A client-certificate verifier that remembers chains it has verified.
//!
//! Security argument. A hit requires the exact bytes of the end-entity
//! certificate and every intermediate the client sent (SHA-256 over each,
//! length-prefixed) to equal bytes that webpki already verified *with this
//! verifier's trust anchors* (the cache lives inside one `ServerConfig`; a
//! reload builds a new one and so an empty cache). Path building, signatures,
//! name constraints and EKU depend only on those bytes and anchors, so they
//! hold again. What depends on the moment is re-checked on every hit: the
//! validity window of every certificate in the chain against the current
//! time, and each certificate's serial against the CRLs of its issuer.
//! Revocation is checked here for misses too (webpki gets no CRLs): each
//! CRL's signature is verified once per issuer key, with the issuer taken
//! from the verified chain or the trust anchors.
//! Proof of possession — the CertificateVerify signature over this
//! handshake's transcript — is never cached: it goes to webpki every time.
use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Most chains kept; past this the cache starts over (cheap, and bounded).
const CAPACITY: usize = 16_384;

/// A serial number as a fixed-size key (RFC 5280: at most 20 octets, plus
/// the sign byte DER may add): no allocation per CRL entry, which is what
/// loading a 1,000,000-entry CRL spends its time on otherwise.
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

/// One loaded CRL: its revoked serials (a hash set: O(1) lookups), and what
/// is needed to check its signature once per issuer key, lazily — webpki
/// would re-hash the whole CRL on every chain it verifies (37 ms for a
/// 1,000,000-entry CRL).
struct LoadedCrl {
    issuer: Box<[u8]>,
    serials: std::collections::HashSet<SerialKey>,
    der: Arc<[u8]>,
    tbs: std::ops::Range<usize>,
    algorithm: std::ops::Range<usize>,
    signature: Box<[u8]>,
    /// SHA-256 of issuer keys this CRL's signature was checked against, and the outcome.
    checked: Mutex<HashMap<[u8; 32], bool>>,
}

impl std::fmt::Debug for LoadedCrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedCrl").field("entries", &self.serials.len()).finish()
    }
}

fn range_of(outer: &[u8], inner: &[u8]) -> std::ops::Range<usize> {
    let start = inner.as_ptr() as usize - outer.as_ptr() as usize;
    start..start + inner.len()
}

/// One DER element: (tag, the whole element, its contents, what follows).
type Tlv<'a> = (u8, &'a [u8], &'a [u8], &'a [u8]);

fn tlv(input: &[u8]) -> Option<Tlv<'_>> {
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

impl LoadedCrl {
    /// Walks the CRL's DER directly (RFC 5280 5.1): x509-parser would build
    /// a structure per entry, most of the load time of a 1M-entry CRL. The
    /// signature is checked before any of it is used (`signed_by`).
    fn parse(der: &[u8]) -> Option<LoadedCrl> {
        let (0x30, _, list, _) = tlv(der)? else { return None };
        let (0x30, tbs_all, tbs, after_tbs) = tlv(list)? else { return None };
        let (0x30, alg_all, _, after_alg) = tlv(after_tbs)? else { return None };
        let (0x03, _, sig, _) = tlv(after_alg)? else { return None };
        let mut t = tbs;
        if t.first() == Some(&0x02) {
            t = tlv(t)?.3; // version
        }
        t = tlv(t)?.3; // signature algorithm
        let (0x30, issuer, _, rest) = tlv(t)? else { return None };
        t = tlv(rest)?.3; // thisUpdate
        if matches!(t.first(), Some(0x17) | Some(0x18)) {
            t = tlv(t)?.3; // nextUpdate
        }
        let mut serials = std::collections::HashSet::new();
        if t.first() == Some(&0x30) {
            let (_, _, mut entries, _) = tlv(t)?;
            while !entries.is_empty() {
                let (0x30, _, entry, rest) = tlv(entries)? else { return None };
                let (0x02, _, serial, _) = tlv(entry)? else { return None };
                serials.extend(SerialKey::new(serial));
                entries = rest;
            }
        }
        Some(LoadedCrl {
            issuer: issuer.into(),
            serials,
            tbs: range_of(der, tbs_all),
            algorithm: range_of(der, alg_all),
            signature: sig.get(1..)?.into(), // after the unused-bits octet
            der: der.into(),
            checked: Mutex::new(HashMap::new()),
        })
    }

    /// Whether this CRL is signed by the key in `issuer_cert` (checked once per key).
    fn signed_by(&self, issuer_cert: &[u8]) -> bool {
        use x509_parser::prelude::FromDer;
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(issuer_cert) else { return false };
        let key = {
            let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, cert.public_key().raw);
            let mut k = [0u8; 32];
            k.copy_from_slice(d.as_ref());
            k
        };
        if let Some(ok) = self.checked.lock().ok().and_then(|c| c.get(&key).copied()) {
            return ok;
        }
        let ok = x509_parser::x509::AlgorithmIdentifier::from_der(&self.der[self.algorithm.clone()]).ok().is_some_and(
            |(_, alg)| {
                let sig = x509_parser::der_parser::asn1_rs::BitString::new(0, &self.signature);
                x509_parser::verify::verify_signature(cert.public_key(), &alg, &sig, &self.der[self.tbs.clone()])
                    .is_ok()
            },
        );
        if let Ok(mut c) = self.checked.lock() {
            c.insert(key, ok);
        }
        ok
    }
}

/// Every configured CRL and the trust anchors that may have signed them.
#[derive(Debug, Default)]
pub struct RevokedSet {
    crls: Vec<LoadedCrl>,
    /// DER of the trust anchors, for CRLs they issue (e.g. the root's CRL covering intermediates).
    anchors: Vec<Vec<u8>>,
}

impl RevokedSet {
    /// Parses each CRL once; `anchors` are the trust anchors' certificates.
    pub fn from_crls(crls: &[CertificateRevocationListDer<'_>], anchors: &[CertificateDer<'_>]) -> RevokedSet {
        RevokedSet {
            crls: crls.iter().filter_map(|c| LoadedCrl::parse(c)).collect(),
            anchors: anchors.iter().map(|a| a.to_vec()).collect(),
        }
    }

    /// Revoked entries over all CRLs.
    pub fn len(&self) -> usize {
        self.crls.iter().map(|c| c.serials.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// For a verified chain (leaf first), the (CRL, serial) pairs that apply:
    /// CRLs naming a certificate's issuer whose signature verifies with that
    /// issuer's key (the next certificate, or a trust anchor).
    fn applicable(&self, chain: &[&[u8]]) -> Vec<(usize, Box<[u8]>)> {
        let mut checks = Vec::new();
        if self.crls.is_empty() {
            return checks;
        }
        for (i, der) in chain.iter().enumerate() {
            let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else { continue };
            let issuer = cert.issuer().as_raw();
            let issuer_cert: Option<&[u8]> = chain
                .get(i + 1)
                .copied()
                .filter(|next| {
                    x509_parser::parse_x509_certificate(next).is_ok_and(|(_, n)| n.subject().as_raw() == issuer)
                })
                .or_else(|| {
                    self.anchors.iter().map(Vec::as_slice).find(|a| {
                        x509_parser::parse_x509_certificate(a).is_ok_and(|(_, n)| n.subject().as_raw() == issuer)
                    })
                });
            let Some(issuer_cert) = issuer_cert else { continue };
            for (idx, crl) in self.crls.iter().enumerate() {
                if *crl.issuer == *issuer && crl.signed_by(issuer_cert) {
                    checks.push((idx, cert.raw_serial().into()));
                }
            }
        }
        checks
    }

    fn revoked(&self, checks: &[(usize, Box<[u8]>)]) -> bool {
        checks.iter().any(|(idx, serial)| {
            SerialKey::new(serial).is_some_and(|key| self.crls.get(*idx).is_some_and(|c| c.serials.contains(&key)))
        })
    }
}

#[derive(Debug)]
struct VerifiedChain {
    /// Latest notBefore and earliest notAfter over the chain (Unix seconds).
    not_before: u64,
    not_after: u64,
    /// (CRL index, serial) pairs to look up on every hit.
    checks: Vec<(usize, Box<[u8]>)>,
}

#[derive(Debug)]
pub struct CachingClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    revoked: RevokedSet,
    chains: Mutex<HashMap<[u8; 32], Arc<VerifiedChain>>>,
}

impl CachingClientVerifier {
    pub fn new(inner: Arc<dyn ClientCertVerifier>, revoked: RevokedSet) -> CachingClientVerifier {
        CachingClientVerifier { inner, revoked, chains: Mutex::new(HashMap::new()) }
    }

    fn key(end_entity: &[u8], intermediates: &[CertificateDer<'_>]) -> [u8; 32] {
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        for der in std::iter::once(end_entity).chain(intermediates.iter().map(|c| c.as_ref())) {
            ctx.update(&(der.len() as u64).to_be_bytes());
            ctx.update(der);
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(ctx.finish().as_ref());
        key
    }

    fn describe(&self, end_entity: &[u8], intermediates: &[CertificateDer<'_>]) -> Option<VerifiedChain> {
        let mut chain = VerifiedChain { not_before: 0, not_after: u64::MAX, checks: Vec::new() };
        let ders: Vec<&[u8]> = std::iter::once(end_entity).chain(intermediates.iter().map(|c| c.as_ref())).collect();
        for der in &ders {
            let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
            let v = cert.validity();
            chain.not_before = chain.not_before.max(u64::try_from(v.not_before.timestamp()).unwrap_or(0));
            chain.not_after = chain.not_after.min(u64::try_from(v.not_after.timestamp()).unwrap_or(0));
        }
        chain.checks = self.revoked.applicable(&ders);
        Some(chain)
    }
}

impl ClientCertVerifier for CachingClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let key = Self::key(end_entity, intermediates);
        let hit = self.chains.lock().map(|c| c.get(&key).cloned()).unwrap_or(None);
        if let Some(chain) = hit {
            let t = now.as_secs();
            if t < chain.not_before {
                return Err(Error::InvalidCertificate(rustls::CertificateError::NotValidYet));
            }
            if t > chain.not_after {
                return Err(Error::InvalidCertificate(rustls::CertificateError::Expired));
            }
            if self.revoked.revoked(&chain.checks) {
                return Err(Error::InvalidCertificate(rustls::CertificateError::Revoked));
            }
            return Ok(ClientCertVerified::assertion());
        }
        let verified = self.inner.verify_client_cert(end_entity, intermediates, now)?;
        if let Some(chain) = self.describe(end_entity, intermediates) {
            // Revocation is ours, not webpki's: each CRL's signature is checked
            // once per issuer key, then lookups are O(1).
            if self.revoked.revoked(&chain.checks) {
                return Err(Error::InvalidCertificate(rustls::CertificateError::Revoked));
            }
            if let Ok(mut c) = self.chains.lock() {
                if c.len() >= CAPACITY {
                    c.clear();
                }
                c.insert(key, Arc::new(chain));
            }
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
