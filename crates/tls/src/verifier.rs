//! Certificate verification that decides on the verified path only.
//!
//! Security argument.
//! - webpki builds and verifies a path from the peer's certificate to one of
//!   our trust anchors (signatures, validity, basic constraints, name
//!   constraints, EKU). Every further check — revocation, the stricter
//!   RFC 5280 rules in `strict`, the window kept in the cache — runs in
//!   webpki's `verify_path` callback on that candidate path: the
//!   certificates actually used and the anchor. A candidate we refuse makes
//!   webpki try the next one, so a decoy can neither hide a revoked
//!   certificate nor make a valid path fail. What else the peer sent is
//!   never read.
//! - Revocation fails closed: with CRLs configured, every certificate of
//!   the path below the anchor (or only the leaf, if so configured) needs a
//!   usable CRL from its issuer in the path — well-formed, signed by that
//!   issuer's key, issuer allowed to sign CRLs, not past nextUpdate + grace.
//!   Otherwise the status is unknown and, by default, the peer is refused.
//! - The cache keeps, for the exact bytes the client sent (SHA-256 over
//!   each certificate, length-prefixed), the verified path's facts and the
//!   window of time in which that verdict holds: the latest notBefore /
//!   thisUpdate and the earliest notAfter / nextUpdate (+ grace) over the
//!   path, its anchor and the CRLs used. Within the window a fresh
//!   verification would find the same path valid (the anchors and CRLs are
//!   fixed for the life of the verifier; a reload builds a new one); outside
//!   it the entry is not used and the chain is verified again. Only
//!   successes are cached, so a hit can never turn a refusal into an
//!   acceptance, nor the reverse.
//! - Proof of possession (the CertificateVerify signature over this
//!   handshake) is never cached: it is checked on every handshake.
use crate::crl::CrlSet;
pub use crate::strict::RevocationSubject;
use crate::HandshakeFailure;
use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DistinguishedName, Error, OtherError};
use rustls_pki_types::{CertificateDer, ServerName, TrustAnchor, UnixTime};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Most chains kept; past this the cache starts over (cheap, and bounded).
const CAPACITY: usize = 16_384;

/// id-kp-clientAuth and id-kp-serverAuth, DER OID bodies.
const EKU_CLIENT_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02];
const EKU_SERVER_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];

/// Which certificates of a path need a CRL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CrlScope {
    /// Every certificate below the trust anchor (as nginx's `ssl_crl`).
    Chain,
    /// The end-entity certificate only.
    Leaf,
}

/// What to do when a certificate's revocation status cannot be known.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UnknownStatus {
    Deny,
    Allow,
}

/// How revocation is checked when CRLs are configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RevocationPolicy {
    pub scope: CrlScope,
    pub unknown: UnknownStatus,
    /// How long past its nextUpdate a CRL is still trusted (with a warning).
    pub grace: Duration,
}

impl Default for RevocationPolicy {
    fn default() -> Self {
        RevocationPolicy { scope: CrlScope::Chain, unknown: UnknownStatus::Deny, grace: Duration::from_secs(3_600) }
    }
}

/// Which side of the handshake is being verified.
#[derive(Clone, Copy, Debug)]
pub enum Peer<'a> {
    /// A client: EKU clientAuth must be present.
    Client,
    /// A server, for this name (none: any name).
    Server(Option<&'a ServerName<'a>>),
}

/// The plain options a verifier is built from.
#[derive(Clone, Debug, Default)]
pub struct TrustOptions {
    /// CA certificates: self-signed ones, and ones whose issuer is absent,
    /// are trust anchors; the others are known intermediates.
    pub ca_certs: Vec<CertificateDer<'static>>,
    /// CRLs with where each came from (file or URL).
    pub crls: Vec<(String, rustls_pki_types::CertificateRevocationListDer<'static>)>,
    /// Some: CRLs are configured and revocation is checked; None: not checked.
    pub revocation: Option<RevocationPolicy>,
    /// Accept an end-entity without EKU (or with anyExtendedKeyUsage only)
    /// as webpki does; off by default: the EKU must name the purpose
    /// (clientAuth for clients, serverAuth for servers).
    pub eku_if_present: bool,
}

/// What a successful verification established.
#[derive(Debug)]
pub struct VerifiedChain {
    /// The window (Unix seconds, inclusive) in which this verdict holds.
    pub not_before: i64,
    pub not_after: i64,
    /// Leaf first, for each certificate below the anchor.
    pub subjects: Vec<RevocationSubject>,
    /// DER of the path's certificates, leaf first, anchor last.
    pub path: Vec<CertificateDer<'static>>,
}

/// The path verifier shared by the client and server verifiers.
#[derive(Debug)]
pub struct Trust {
    anchors: Vec<TrustAnchor<'static>>,
    anchor_ders: Vec<CertificateDer<'static>>,
    intermediates: Vec<CertificateDer<'static>>,
    crls: CrlSet,
    revocation: Option<RevocationPolicy>,
    eku_if_present: bool,
    algs: WebPkiSupportedAlgorithms,
    hints: Vec<DistinguishedName>,
    /// CRL distribution points of verified paths whose revocation status was
    /// unknown: what a CRL fetcher should get (URLs from verified
    /// certificates only, so a client cannot make us fetch anything).
    wanted: Mutex<std::collections::BTreeSet<String>>,
}

/// At most this many distribution points are remembered.
const MAX_WANTED: usize = 64;

fn other(f: HandshakeFailure) -> Error {
    Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(f))))
}

/// The rustls error (and so the TLS alert) for a failure.
pub(crate) fn to_rustls(f: HandshakeFailure) -> Error {
    Error::InvalidCertificate(match f {
        HandshakeFailure::Revoked => CertificateError::Revoked,
        HandshakeFailure::Expired => CertificateError::Expired,
        HandshakeFailure::NotYetValid => CertificateError::NotValidYet,
        HandshakeFailure::UnknownCa => CertificateError::UnknownIssuer,
        HandshakeFailure::WrongExtendedKeyUsage => CertificateError::InvalidPurpose,
        HandshakeFailure::WrongName => CertificateError::NotValidForName,
        f => return other(f),
    })
}

impl Trust {
    pub fn new(opts: TrustOptions) -> Result<Trust, crate::TlsError> {
        let mut anchors = Vec::new();
        let mut anchor_ders = Vec::new();
        let mut intermediates = Vec::new();
        let parsed: Vec<_> = opts
            .ca_certs
            .iter()
            .map(|c| {
                webpki::EndEntityCert::try_from(c)
                    .map(|_| ())
                    .map_err(|e| crate::TlsError::ClientCa(format!("malformed CA certificate: {e}")))?;
                let (_, x) = x509_parser::parse_x509_certificate(c)
                    .map_err(|e| crate::TlsError::ClientCa(format!("malformed CA certificate: {e}")))?;
                Ok((x.subject().as_raw().to_vec(), x.issuer().as_raw().to_vec()))
            })
            .collect::<Result<_, crate::TlsError>>()?;
        for (i, cert) in opts.ca_certs.iter().enumerate() {
            let (subject, issuer) = &parsed[i];
            let self_issued = subject == issuer;
            let issuer_present = parsed.iter().enumerate().any(|(j, (s, _))| j != i && s == issuer);
            if !self_issued && issuer_present {
                // Its issuer is configured too: a known intermediate, so the
                // path still ends at the root (and the root's CRL applies).
                intermediates.push(cert.clone());
            } else {
                let anchor = webpki::anchor_from_trusted_cert(cert)
                    .map_err(|e| crate::TlsError::ClientCa(format!("unusable trust anchor: {e}")))?
                    .to_owned();
                anchors.push(anchor);
                anchor_ders.push(cert.clone());
            }
        }
        if anchors.is_empty() {
            return Err(crate::TlsError::ClientCa("no CA certificates configured".into()));
        }
        let hints = anchors.iter().map(|a| DistinguishedName::in_sequence(&a.subject)).collect();
        Ok(Trust {
            anchors,
            anchor_ders,
            intermediates,
            crls: CrlSet::load(&opts.crls)?,
            revocation: opts.revocation,
            eku_if_present: opts.eku_if_present,
            algs: crate::provider().signature_verification_algorithms,
            hints,
            wanted: Mutex::new(Default::default()),
        })
    }

    pub fn crls(&self) -> &CrlSet {
        &self.crls
    }

    pub fn revocation(&self) -> Option<RevocationPolicy> {
        self.revocation
    }

    pub fn anchor_count(&self) -> usize {
        self.anchors.len()
    }

    pub fn intermediate_count(&self) -> usize {
        self.intermediates.len()
    }

    /// Verifies `end_entity` (with what the peer sent as `intermediates`) at `now`.
    pub fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        peer: Peer<'_>,
    ) -> Result<VerifiedChain, HandshakeFailure> {
        let ee = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|e| HandshakeFailure::BadCertificate(format!("malformed certificate: {e:?}")))?;
        let mut pool: Vec<CertificateDer<'_>> = intermediates.to_vec();
        pool.extend(self.intermediates.iter().cloned());
        let found = RefCell::new(None::<VerifiedChain>);
        let refused = RefCell::new(Vec::<(webpki::Error, HandshakeFailure)>::new());
        let check = |path: &webpki::VerifiedPath<'_>| -> Result<(), webpki::Error> {
            match self.check_path(path, now, peer) {
                Ok(chain) => {
                    *found.borrow_mut() = Some(chain);
                    Ok(())
                }
                Err(f) => {
                    let e = webpki_error_for(&f);
                    refused.borrow_mut().push((e.clone(), f));
                    Err(e)
                }
            }
        };
        let eku_oid = match peer {
            Peer::Client => EKU_CLIENT_AUTH,
            Peer::Server(_) => EKU_SERVER_AUTH,
        };
        // webpki applies this to every certificate of the path, and CAs
        // usually carry no EKU: the leaf's explicit EKU is checked in `strict`.
        let usage = webpki::KeyUsage::required_if_present(eku_oid);
        let result = ee.verify_for_usage(self.algs.all, &self.anchors, &pool, now, usage, None, Some(&check));
        match result {
            Ok(_) => {
                if let Peer::Server(Some(name)) = peer {
                    ee.verify_is_valid_for_subject_name(name).map_err(|_| HandshakeFailure::WrongName)?;
                }
                found.into_inner().ok_or_else(|| HandshakeFailure::Other("verified path was not recorded".into()))
            }
            Err(e) => {
                let ours = refused.into_inner();
                if let Some((_, f)) = ours.into_iter().rev().find(|(oe, _)| *oe == e) {
                    return Err(f);
                }
                Err(self.explain(&e, end_entity, &pool))
            }
        }
    }

    /// Turns a webpki error into words, looking at the names in what was sent.
    fn explain(&self, e: &webpki::Error, end_entity: &[u8], pool: &[CertificateDer<'_>]) -> HandshakeFailure {
        use webpki::Error as W;
        match e {
            W::CertExpired { .. } => HandshakeFailure::Expired,
            W::CertNotValidYet { .. } => HandshakeFailure::NotYetValid,
            W::CertRevoked => HandshakeFailure::Revoked,
            #[allow(deprecated)]
            W::RequiredEkuNotFound | W::RequiredEkuNotFoundContext(_) | W::EmptyEkuExtension => {
                HandshakeFailure::WrongExtendedKeyUsage
            }
            W::InvalidSignatureForPublicKey => {
                let issuer = issuer_of(end_entity).map(|i| crate::identity::name_text(&i)).unwrap_or_default();
                HandshakeFailure::ChainSignature(issuer)
            }
            W::UnknownIssuer => {
                // Does the chain stop at the leaf, for want of its issuer?
                let Some(issuer) = issuer_of(end_entity) else { return HandshakeFailure::UnknownCa };
                let named: Vec<&CertificateDer<'_>> =
                    pool.iter().filter(|c| subject_of(c).is_some_and(|s| s == issuer)).collect();
                let anchored = self.anchors.iter().any(|a| *a.subject == *issuer);
                if !named.is_empty() && !anchored && !named.iter().any(|c| self.signs(c, end_entity)) {
                    // Certificates with the issuer's name, none with its key: a decoy.
                    return HandshakeFailure::ChainSignature(crate::identity::name_text(&issuer));
                }
                if anchored || !named.is_empty() || subject_of(end_entity).is_some_and(|s| s == issuer) {
                    HandshakeFailure::UnknownCa
                } else {
                    HandshakeFailure::IncompleteChain(crate::identity::name_text(&issuer))
                }
            }
            other => HandshakeFailure::BadCertificate(format!("{other:?}")),
        }
    }

    /// Whether `issuer`'s key verifies `subject`'s signature (for naming failures only).
    fn signs(&self, issuer: &[u8], subject: &[u8]) -> bool {
        use crate::crl::tlv;
        let spki = x509_parser::parse_x509_certificate(issuer).map(|(_, c)| c.public_key().raw.to_vec());
        let parts = tlv(subject).and_then(|(_, _, body, _)| {
            let (_, tbs, _, rest) = tlv(body)?;
            let (_, _, alg, rest) = tlv(rest)?;
            let (_, _, sig, _) = tlv(rest)?;
            Some((tbs, alg, sig.get(1..)?))
        });
        match (spki, parts) {
            (Ok(spki), Some((tbs, alg, sig))) => crate::crl::verify_signature(&spki, alg, tbs, sig, &self.algs),
            _ => false,
        }
    }

    /// Everything beyond webpki for one candidate path.
    fn check_path(
        &self,
        path: &webpki::VerifiedPath<'_>,
        now: UnixTime,
        peer: Peer<'_>,
    ) -> Result<VerifiedChain, HandshakeFailure> {
        let anchor_idx = self
            .anchors
            .iter()
            .position(|a| std::ptr::eq(a, path.anchor()))
            .ok_or_else(|| HandshakeFailure::Other("anchor not found".into()))?;
        let mut ders: Vec<CertificateDer<'static>> = vec![path.end_entity().der().into_owned()];
        ders.extend(path.intermediate_certificates().map(|c| c.der().into_owned()));
        ders.push(self.anchor_ders[anchor_idx].clone());
        let require_eku = match peer {
            Peer::Client if !self.eku_if_present => Some(EKU_CLIENT_AUTH),
            Peer::Server(_) if !self.eku_if_present => Some(EKU_SERVER_AUTH),
            _ => None,
        };
        let facts = crate::strict::check(&ders, now.as_secs() as i64, require_eku)?;
        let mut chain = VerifiedChain {
            not_before: facts.not_before,
            not_after: facts.not_after,
            subjects: facts.subjects,
            path: ders,
        };
        if let Some(policy) = self.revocation {
            self.check_revocation(&mut chain, policy, now.as_secs() as i64)?;
        }
        Ok(chain)
    }

    /// Revocation of a verified path against this verifier's CRLs; narrows
    /// the chain's window to the CRLs' validity.
    fn check_revocation(
        &self,
        chain: &mut VerifiedChain,
        policy: RevocationPolicy,
        now: i64,
    ) -> Result<(), HandshakeFailure> {
        let grace = i64::try_from(policy.grace.as_secs()).unwrap_or(i64::MAX / 2);
        let count = match policy.scope {
            CrlScope::Chain => chain.subjects.len(),
            CrlScope::Leaf => 1,
        };
        for s in chain.subjects.iter().take(count) {
            match self.status(s, now, grace) {
                Status::Good { this_update, fresh_until } => {
                    chain.not_before = chain.not_before.max(this_update);
                    chain.not_after = chain.not_after.min(fresh_until);
                }
                Status::Revoked => return Err(HandshakeFailure::Revoked),
                Status::Unknown(f) => {
                    self.want(&chain.subjects);
                    if policy.unknown == UnknownStatus::Deny {
                        return Err(f);
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether a verified chain (perhaps from an earlier verifier) is revoked
    /// by this verifier's CRLs at `now`: how open connections are re-judged
    /// when new CRLs load.
    pub fn recheck(&self, chain: &VerifiedChain, now: i64) -> Result<(), HandshakeFailure> {
        let Some(policy) = self.revocation else { return Ok(()) };
        let grace = i64::try_from(policy.grace.as_secs()).unwrap_or(i64::MAX / 2);
        let count = match policy.scope {
            CrlScope::Chain => chain.subjects.len(),
            CrlScope::Leaf => 1,
        };
        for s in chain.subjects.iter().take(count) {
            if let Status::Revoked = self.status(s, now, grace) {
                return Err(HandshakeFailure::Revoked);
            }
        }
        Ok(())
    }

    fn want(&self, subjects: &[RevocationSubject]) {
        if let Ok(mut w) = self.wanted.lock() {
            for url in subjects.iter().flat_map(|s| &s.crl_urls) {
                if w.len() < MAX_WANTED {
                    w.insert(url.clone());
                }
            }
        }
    }

    /// Distribution points learned from verified paths whose status was
    /// unknown, and those named by the configured CA certificates.
    pub fn wanted_crl_urls(&self) -> Vec<String> {
        let mut urls: Vec<String> = self.wanted.lock().map(|w| w.iter().cloned().collect()).unwrap_or_default();
        for der in self.intermediates.iter().chain(&self.anchor_ders) {
            if let Ok((_, c)) = x509_parser::parse_x509_certificate(der) {
                urls.extend(crate::strict::distribution_points(&c));
            }
        }
        urls.sort();
        urls.dedup();
        urls
    }

    fn status(&self, s: &RevocationSubject, now: i64, grace: i64) -> Status {
        let mut candidates = 0;
        let mut problem: Option<HandshakeFailure> = None;
        let mut usable = Vec::new();
        for crl in self.crls.for_issuer(&s.issuer_name) {
            candidates += 1;
            let why = if let Some(p) = &crl.problem {
                Some(p.clone())
            } else if !crl.signed_by(&s.issuer_spki, &self.algs) {
                Some("its signature does not verify with the key of the CA in the verified path (a CRL of another CA with the same name?)".to_string())
            } else if !s.issuer_may_sign_crls {
                Some("the CA's keyUsage does not allow cRLSign".to_string())
            } else if crl.this_update > now {
                Some("its thisUpdate is in the future (check clocks)".to_string())
            } else {
                None
            };
            match why {
                Some(w) => {
                    if problem.is_none() {
                        problem = Some(HandshakeFailure::CrlUnusable(format!(
                            "the CRL of '{}' from {} cannot be used: {w}",
                            s.issuer_text, crl.source
                        )));
                    }
                }
                None => usable.push(crl),
            }
        }
        if usable.is_empty() {
            return Status::Unknown(if candidates == 0 {
                HandshakeFailure::CrlMissing(s.issuer_text.clone())
            } else {
                problem.unwrap_or_else(|| HandshakeFailure::CrlMissing(s.issuer_text.clone()))
            });
        }
        if usable.iter().any(|c| c.contains(&s.serial)) {
            return Status::Revoked;
        }
        // The freshest usable CRL decides staleness.
        let Some(freshest) = usable.iter().max_by_key(|c| c.next_update.unwrap_or(i64::MIN)) else {
            return Status::Unknown(HandshakeFailure::CrlMissing(s.issuer_text.clone()));
        };
        let next = freshest.next_update.unwrap_or(i64::MIN);
        if now > next.saturating_add(grace) {
            return Status::Unknown(HandshakeFailure::CrlStale(format!(
                "the newest CRL of '{}' ({}) passed its nextUpdate {} s ago, beyond the grace of {} s",
                s.issuer_text,
                freshest.source,
                now - next,
                grace
            )));
        }
        // Past nextUpdate, within grace: still good, re-checked once per
        // cache window so the stale state shows in logs; the window ends
        // at nextUpdate, then at nextUpdate + grace.
        let fresh_until = if now <= next { next } else { next.saturating_add(grace) };
        Status::Good { this_update: freshest.this_update, fresh_until }
    }

    fn hints(&self) -> &[DistinguishedName] {
        &self.hints
    }
}

enum Status {
    Good { this_update: i64, fresh_until: i64 },
    Revoked,
    Unknown(HandshakeFailure),
}

/// The webpki error our callback returns for a refusal: one webpki ranks
/// like the failure, so that the most specific reason over all candidate
/// paths wins.
fn webpki_error_for(f: &HandshakeFailure) -> webpki::Error {
    match f {
        HandshakeFailure::Revoked => webpki::Error::CertRevoked,
        HandshakeFailure::CrlMissing(_) | HandshakeFailure::CrlUnusable(_) | HandshakeFailure::CrlStale(_) => {
            webpki::Error::UnknownRevocationStatus
        }
        HandshakeFailure::Expired => webpki::Error::CertExpired {
            time: UnixTime::since_unix_epoch(Duration::ZERO),
            not_after: UnixTime::since_unix_epoch(Duration::ZERO),
        },
        HandshakeFailure::NotYetValid => webpki::Error::CertNotValidYet {
            time: UnixTime::since_unix_epoch(Duration::ZERO),
            not_before: UnixTime::since_unix_epoch(Duration::ZERO),
        },
        HandshakeFailure::WrongExtendedKeyUsage => webpki::Error::EmptyEkuExtension,
        _ => webpki::Error::UnsupportedCriticalExtension,
    }
}

fn name_parts(der: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let der = CertificateDer::from(der);
    let c = webpki::EndEntityCert::try_from(&der).ok()?;
    Some((c.subject().to_vec(), c.issuer().to_vec()))
}

fn issuer_of(der: &[u8]) -> Option<Vec<u8>> {
    name_parts(der).map(|p| p.1)
}

fn subject_of(der: &[u8]) -> Option<Vec<u8>> {
    name_parts(der).map(|p| p.0)
}

/// Verifies clients for a TLS server: `Trust` plus a cache of verified chains.
#[derive(Debug)]
pub struct ClientVerifier {
    trust: Arc<Trust>,
    mandatory: bool,
    chains: Mutex<HashMap<[u8; 32], Arc<VerifiedChain>>>,
}

impl ClientVerifier {
    pub fn new(trust: Arc<Trust>, mandatory: bool) -> ClientVerifier {
        ClientVerifier { trust, mandatory, chains: Mutex::new(HashMap::new()) }
    }

    pub fn trust(&self) -> &Arc<Trust> {
        &self.trust
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

    /// The verified chain for what a client sent: from the cache when its
    /// window covers `now`, else verified afresh (and cached on success).
    pub fn verified(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<Arc<VerifiedChain>, HandshakeFailure> {
        let key = Self::key(end_entity, intermediates);
        let t = now.as_secs() as i64;
        let hit = self.chains.lock().map(|c| c.get(&key).cloned()).unwrap_or(None);
        if let Some(chain) = hit {
            if chain.not_before <= t && t <= chain.not_after {
                return Ok(chain);
            }
        }
        let chain = Arc::new(self.trust.verify(end_entity, intermediates, now, Peer::Client)?);
        if let Ok(mut c) = self.chains.lock() {
            if c.len() >= CAPACITY {
                c.clear();
            }
            c.insert(key, chain.clone());
        }
        Ok(chain)
    }
}

impl ClientCertVerifier for ClientVerifier {
    crate::client_cert_verifier! {
        mandatory: |self| self.mandatory,
        hints: |self| self.trust.hints(),
        verify: |self, end_entity, intermediates, now| {
            self.verified(end_entity, intermediates, now).map(|_| ClientCertVerified::assertion()).map_err(to_rustls)
        },
    }
}

/// Verifies servers for a TLS client (tunnel, probe, agent, enroll, renew).
#[derive(Debug)]
pub struct ServerVerifier {
    trust: Arc<Trust>,
}

impl ServerVerifier {
    pub fn new(trust: Arc<Trust>) -> ServerVerifier {
        ServerVerifier { trust }
    }

    pub fn trust(&self) -> &Arc<Trust> {
        &self.trust
    }
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        self.trust
            .verify(end_entity, intermediates, now, Peer::Server(Some(server_name)))
            .map(|_| ServerCertVerified::assertion())
            .map_err(to_rustls)
    }

    crate::handshake_signatures!();
}
