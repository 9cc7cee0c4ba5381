//! Enrollment with one-time tokens. The rules: a token buys one certificate,
//! with exactly the token's names, before the token expires. The order: the
//! certificate is signed first, then the token is spent and the certificate
//! stored in one transaction, so a token is never spent on a certificate that
//! could not be issued, and works once however many requests race for it.
use crate::{now, record_of, CaError, CertificateAuthority, Result};
use ambos_pki::{Authority, IssuedCert, LeafRequest, Profile, San};
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
        self.store.insert_tokens(&records)?;
        Ok(secrets)
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

    /// Spends each enrollment's token and stores its certificate: one
    /// transaction for the batch (one fsync), each enrollment all or nothing.
    /// The token is checked again inside the transaction, so a token spent
    /// or expired since [`CertificateAuthority::check_token`] buys nothing.
    pub fn commit_enrollments(&mut self, batch: Vec<Enrollment>) -> Result<Vec<Result<IssuedCert>>> {
        let spends: Vec<(String, CertRecord)> = batch.iter().map(|e| (e.hash.clone(), e.record.clone())).collect();
        let results = self.store.spend_tokens(&spends, now().unix_timestamp())?;
        Ok(batch.into_iter().zip(results).map(|(e, r)| r.map(|()| e.issued).map_err(CaError::from)).collect())
    }

    /// Enrolls one CSR with a token: check, sign, then spend and store.
    pub fn enroll(&mut self, issuer: &Authority, token: &str, csr_der: &[u8]) -> Result<IssuedCert> {
        let enrollment = self.check_token(token)?.sign(issuer, csr_der)?;
        self.commit_enrollments(vec![enrollment])?.remove(0)
    }
}
