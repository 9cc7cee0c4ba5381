//! Enrollment with one-time tokens. The rules: a token buys one certificate,
//! with exactly the token's names, before the token expires. The order: the
//! certificate is signed first, then the token is spent and the certificate
//! stored in one transaction, so a token is never spent on a certificate that
//! could not be issued, and works once however many requests race for it.
use crate::{now, record_of, CaError, CertificateAuthority, Result};
use ambos_pki::{Authority, IssuedCert, LeafRequest, PkiError, Profile, San};
use ambos_store::{AuthorityRole, CertRecord, CertStore, StoreError, TokenRecord};
use std::time::Duration;

/// What an enrollment token buys: one certificate with exactly these names.
#[derive(Clone, Debug)]
pub struct TokenOptions {
    pub name: String,
    pub profile: Profile,
    pub sans: Vec<San>,
    pub ous: Vec<String>,
    /// Lifetime of the certificate (default: the profile's).
    pub cert_ttl: Duration,
    /// How long the token can be spent (default 10 minutes).
    pub ttl: Duration,
}

/// SHA-256 hex of a token secret: what the store keeps.
fn token_hash(secret: &str) -> String {
    ambos_pki::sha256_hex(secret.trim().as_bytes())
}

/// The certificate request a stored token stands for.
fn token_request(t: &TokenRecord) -> Result<LeafRequest> {
    let profile: Profile = t.profile.parse().map_err(|_| CaError::TokenProfile(t.profile.clone()))?;
    let mut req = LeafRequest::new(&t.name, profile);
    req.sans = t.sans.iter().map(|s| s.parse()).collect::<std::result::Result<_, _>>()?;
    req.organizational_units = t.ous.clone();
    req.ttl = Duration::from_secs(t.cert_ttl.max(1) as u64);
    Ok(req)
}

/// A token that could be spent when it was looked up, and what it buys.
#[derive(Debug)]
pub struct TokenGrant {
    hash: String,
    request: LeafRequest,
}

impl TokenGrant {
    /// Signs `csr_der` within the token's terms. It needs no store, so the
    /// CA API runs it outside the CA's lock.
    pub fn sign(self, issuer: &Authority, csr_der: &[u8]) -> Result<Enrollment> {
        let at = now();
        let issued = issuer.issue_for_csr(&self.request, csr_der, at)?;
        let record = record_of(&issued, AuthorityRole::Intermediate, at);
        Ok(Enrollment { hash: self.hash, issued, record })
    }
}

/// A certificate signed for a token: handed out only once
/// [`CertificateAuthority::commit_enrollments`] spent the token.
pub struct Enrollment {
    hash: String,
    issued: IssuedCert,
    record: CertRecord,
}

impl<S: CertStore> CertificateAuthority<S> {
    /// Creates `count` tokens with the same terms in one transaction and
    /// returns their secrets (shown once, stored hashed).
    pub fn create_tokens(&mut self, opts: &TokenOptions, count: usize) -> Result<Vec<String>> {
        ambos_pki::validate_name(&opts.name)?;
        if !(1..=1_000_000).contains(&count) {
            return Err(PkiError::InvalidRequest("--count must be between 1 and 1000000".into()).into());
        }
        let at = now();
        let mut secrets = Vec::with_capacity(count);
        let mut records = Vec::with_capacity(count);
        for _ in 0..count {
            let mut bytes = [0u8; 32];
            aws_lc_rs::rand::fill(&mut bytes).map_err(|_| CaError::Random)?;
            let secret = format!("ambos_{}", hex::encode(bytes));
            records.push(TokenRecord {
                hash: token_hash(&secret),
                name: opts.name.clone(),
                profile: opts.profile.as_str().to_string(),
                sans: opts.sans.iter().map(ToString::to_string).collect(),
                ous: opts.ous.clone(),
                cert_ttl: opts.cert_ttl.as_secs() as i64,
                expires_at: (at + opts.ttl).unix_timestamp(),
                created_at: at.unix_timestamp(),
                spent_at: None,
                spent_serial: None,
            });
            secrets.push(secret);
        }
        let detail = format!("{count} token(s), valid {}", ambos_pki::format_duration(opts.ttl));
        let trail = self.actor.record(
            at.unix_timestamp(),
            crate::audit::Entry { action: "token-create", subject: &opts.name, serial: None, refused: None, detail },
        );
        self.store.insert_tokens(&records, &trail)?;
        crate::audit::log(&trail);
        Ok(secrets)
    }

    /// The newest `limit` tokens, newest first (the console's list).
    pub fn recent_tokens(&self, limit: u32) -> Result<Vec<TokenRecord>> {
        Ok(self.store.recent_tokens(limit)?)
    }

    /// An enrollment refused before anything was signed (its token unknown,
    /// spent or expired, or its CSR refused), for the audit trail.
    pub fn enrollment_refused(&mut self, secret: &str, why: &CaError) {
        let by = Some(token_actor(&token_hash(secret)));
        let refused = Some(why.to_string());
        let entry = crate::audit::Entry { action: "enroll", subject: "", serial: None, refused, detail: String::new() };
        self.audit_no_change(by, entry);
    }

    /// The terms of the token `secret` if it can still be spent: unknown,
    /// spent and expired tokens are errors. Nothing is written.
    pub fn check_token(&self, secret: &str) -> Result<TokenGrant> {
        let hash = token_hash(secret);
        let token = self.store.token(&hash)?.ok_or(StoreError::UnknownToken)?;
        if token.spent_at.is_some() {
            return Err(StoreError::TokenSpent.into());
        }
        if token.expires_at <= now().unix_timestamp() {
            return Err(StoreError::TokenExpired.into());
        }
        Ok(TokenGrant { request: token_request(&token)?, hash })
    }

    /// The certificate token `secret` already bought, if `csr_der` is for
    /// the same key: an enrollment retried after its answer was lost (a
    /// node died, a connection broke) gets that certificate again, never a
    /// second one. The CSR's signature proves the caller holds the key; a
    /// revoked or expired certificate is not handed out again.
    pub fn retried_enrollment(&mut self, secret: &str, csr_der: &[u8]) -> Result<Option<CertRecord>> {
        let hash = token_hash(secret);
        let Some(serial) = self.store.token(&hash)?.and_then(|t| t.spent_serial) else { return Ok(None) };
        let Some(rec) = self.store.cert_by_serial(&serial)? else { return Ok(None) };
        if rec.revocation.is_some() || rec.not_after <= now().unix_timestamp() {
            return Ok(None);
        }
        let key = ambos_pki::csr_public_key(csr_der)?;
        let (_, cert) = x509_parser::parse_x509_certificate(&rec.cert_der)
            .map_err(|e| StoreError::Corrupt(format!("certificate {serial}: {e}")))?;
        if cert.public_key().raw != key.as_slice() {
            return Ok(None);
        }
        let by = Some(token_actor(&hash));
        let detail = "retried: the certificate this token bought, sent again".to_string();
        let entry =
            crate::audit::Entry { action: "enroll", subject: &rec.name, serial: Some(&serial), refused: None, detail };
        self.audit_no_change(by, entry);
        Ok(Some(rec))
    }

    /// Spends each enrollment's token and stores its certificate: one
    /// transaction for the batch (one fsync), each enrollment all or nothing.
    /// The token is checked again inside the transaction, so a token spent
    /// or expired since [`CertificateAuthority::check_token`] buys nothing.
    pub fn commit_enrollments(&mut self, batch: Vec<Enrollment>) -> Result<Vec<Result<IssuedCert>>> {
        let spends: Vec<(String, CertRecord)> = batch.iter().map(|e| (e.hash.clone(), e.record.clone())).collect();
        // The store writes each spend's audit entry in the spend's transaction ...
        let at = now().unix_timestamp();
        let results = self.store.spend_tokens(&spends, at, &self.actor.node)?;
        // ... and the node logs the same entries, as for every other change.
        crate::audit::log(&ambos_store::spend_entries(&spends, &results, at, &self.actor.node));
        Ok(batch.into_iter().zip(results).map(|(e, r)| r.map(|()| e.issued).map_err(CaError::from)).collect())
    }

    /// Enrolls one CSR with a token: check, sign, then spend and store.
    pub fn enroll(&mut self, issuer: &Authority, token: &str, csr_der: &[u8]) -> Result<IssuedCert> {
        let enrollment = self.check_token(token)?.sign(issuer, csr_der)?;
        self.commit_enrollments(vec![enrollment])?.remove(0)
    }
}

use ambos_store::token_actor;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_ca::{csr, refused, spiffe, test_ca};
    use ambos_pki::PkiError;
    use ambos_store::CertFilter;

    fn token_for(name: &str, ttl: Duration) -> TokenOptions {
        TokenOptions {
            name: name.into(),
            profile: Profile::Client,
            sans: vec![spiffe(name)],
            ous: vec![],
            cert_ttl: Duration::from_secs(3600),
            ttl,
        }
    }

    fn csr_key(csr_der: &[u8]) -> Vec<u8> {
        use x509_parser::prelude::FromDer;
        let (_, req) = x509_parser::certification_request::X509CertificationRequest::from_der(csr_der).unwrap();
        req.certification_request_info.subject_pki.raw.to_vec()
    }

    fn stored(ca: &CertificateAuthority, name: &str) -> usize {
        ca.list(&CertFilter { name: Some(name.into()), ..CertFilter::default() }).unwrap().len()
    }

    #[test]
    fn a_token_buys_one_certificate_with_exactly_its_names() {
        let mut t = test_ca("enroll");
        let token = t.ca.create_tokens(&token_for("dev", Duration::from_secs(600)), 1).unwrap().remove(0);
        let (_, der) = csr("dev", &[spiffe("dev")]);
        let issued = t.ca.enroll(&t.signer, &token, &der).unwrap();
        assert_eq!((issued.name.as_str(), issued.profile), ("dev", Profile::Client));
        assert_eq!(issued.sans, vec![spiffe("dev")]);
        assert!(issued.key.is_none(), "the key stays with the client");
        let (_, cert) = x509_parser::parse_x509_certificate(&issued.cert_der).unwrap();
        assert_eq!(cert.public_key().raw, csr_key(&der).as_slice(), "for the CSR's key");
        assert_eq!(t.ca.resolve(&crate::CertSelector::Serial(issued.serial.clone())).unwrap().name, "dev");

        let (_, again) = csr("dev", &[spiffe("dev")]);
        let err = refused(t.ca.enroll(&t.signer, &token, &again));
        assert!(matches!(err, CaError::Store(StoreError::TokenSpent)), "{err}");
        assert_eq!(stored(&t.ca, "dev"), 1, "a spent token stores nothing");
    }

    #[test]
    fn tokens_come_one_to_a_million_at_a_time() {
        let mut t = test_ca("enroll");
        let opts = token_for("dev", Duration::from_secs(600));
        for count in [0, 1_000_001] {
            let e = t.ca.create_tokens(&opts, count).unwrap_err();
            assert!(e.is_input() && e.to_string() == "--count must be between 1 and 1000000", "{e}");
        }
        assert_eq!(t.ca.create_tokens(&opts, 3).unwrap().len(), 3);
    }

    #[test]
    fn an_unknown_or_expired_token_buys_nothing() {
        let mut t = test_ca("enroll");
        let (_, der) = csr("dev", &[]);
        let err = refused(t.ca.enroll(&t.signer, "ambos_not-a-token", &der));
        assert!(matches!(err, CaError::Store(StoreError::UnknownToken)), "{err}");
        // A zero lifetime: expired the moment it was made, no waiting needed.
        let expired = t.ca.create_tokens(&token_for("dev", Duration::ZERO), 1).unwrap().remove(0);
        let err = refused(t.ca.enroll(&t.signer, &expired, &der));
        assert!(matches!(err, CaError::Store(StoreError::TokenExpired)), "{err}");
        assert_eq!(stored(&t.ca, "dev"), 0);
    }

    #[test]
    fn a_csr_asking_for_other_names_is_refused_and_the_token_stays_unspent() {
        let mut t = test_ca("enroll");
        let token = t.ca.create_tokens(&token_for("dev", Duration::from_secs(600)), 1).unwrap().remove(0);
        for (cn, sans) in
            [("other", vec![]), ("dev", vec![spiffe("other")]), ("dev", vec![San::Dns("dev.test".into())])]
        {
            let (_, der) = csr(cn, &sans);
            let err = refused(t.ca.enroll(&t.signer, &token, &der));
            assert!(matches!(err, CaError::Pki(PkiError::CsrNotAllowed(..))), "{cn} {sans:?}: {err}");
        }
        let err = refused(t.ca.enroll(&t.signer, &token, b"not a CSR"));
        assert!(matches!(err, CaError::Pki(_)), "{err}");
        assert_eq!(stored(&t.ca, "dev"), 0);
        // The token was not spent on the refusals: it still buys its certificate.
        let (_, der) = csr("dev", &[]);
        assert_eq!(t.ca.enroll(&t.signer, &token, &der).unwrap().sans, vec![spiffe("dev")]);
    }

    #[test]
    fn a_token_spent_between_check_and_commit_buys_nothing() {
        let mut t = test_ca("enroll");
        let token = t.ca.create_tokens(&token_for("dev", Duration::from_secs(600)), 1).unwrap().remove(0);
        let (_, der) = csr("dev", &[]);
        let first = t.ca.check_token(&token).unwrap().sign(&t.signer, &der).unwrap();
        let second = t.ca.check_token(&token).unwrap().sign(&t.signer, &der).unwrap();
        let results = t.ca.commit_enrollments(vec![first, second]).unwrap();
        assert!(results[0].is_ok());
        assert!(matches!(results[1], Err(CaError::Store(StoreError::TokenSpent))));
        assert_eq!(stored(&t.ca, "dev"), 1, "only the winner is stored");
        assert!(matches!(t.ca.check_token(&token), Err(CaError::Store(StoreError::TokenSpent))));
    }

    #[test]
    fn tokens_are_stored_hashed_and_refused_for_a_bad_name() {
        let mut t = test_ca("enroll");
        let secrets = t.ca.create_tokens(&token_for("dev", Duration::from_secs(600)), 3).unwrap();
        assert_eq!(secrets.len(), 3);
        for s in &secrets {
            assert!(s.starts_with("ambos_") && s.len() == 6 + 64, "{s}");
            assert!(t.ca.store.token(s).unwrap().is_none(), "the secret itself is not a key");
            assert!(t.ca.store.token(&token_hash(s)).unwrap().is_some());
        }
        // Surrounding whitespace (a pasted token) is the same token.
        assert!(t.ca.check_token(&format!(" {}\n", secrets[0])).is_ok());
        assert!(t.ca.create_tokens(&token_for("", Duration::from_secs(600)), 1).is_err());
    }
}
