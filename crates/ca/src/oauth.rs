//! Access tokens bound to client certificates (RFC 8705) in the JWT profile
//! of RFC 9068: ES256, signed by a key the CA keeps in its store encrypted
//! like its own keys and can rotate. Which identity may get which audience
//! and scopes is policy in the store (`ambos oauth allow`).
use crate::{now, CaError, CertificateAuthority, Result};
use ambos_pki::{encrypt_private_key, KeyType, PrivateKey};
use ambos_store::{GrantRecord, SigningKeyRecord};
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::json;
use std::time::Duration;

/// The longest access-token lifetime `ambos serve` accepts; a retired
/// signing key stays published this long, so every token it signed can
/// still be checked until it expires.
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(3600);

/// An access-token request as RFC 6749 §4.4 and RFC 8707 have it: the
/// space-separated `scope` and the `audience` (or `resource`) asked for.
#[derive(Clone, Debug, Default)]
pub struct TokenRequest {
    pub scope: Option<String>,
    pub audience: Option<String>,
}

/// What the policy grants one request: to whom, for which audience and scopes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Granted {
    pub subject: String,
    pub audience: String,
    pub scopes: Vec<String>,
}

/// A signed access token and what it says.
#[derive(Clone, Debug)]
pub struct AccessToken {
    pub token: String,
    pub jti: String,
    pub expires_in: u64,
    pub granted: Granted,
}

/// An OAuth refusal: the RFC 6749 §5.2 `error` code and its description.
fn refusal(error: &'static str, description: impl Into<String>) -> CaError {
    CaError::OAuth { error, description: description.into() }
}

/// The identity a client certificate gets tokens as: its SPIFFE ID, else
/// its first DNS name, else its CN.
pub fn token_identity(id: &ambos_tls::Identity) -> Option<&str> {
    id.spiffe.as_deref().or(id.dns.first().map(String::as_str)).or(id.cn.as_deref())
}

/// Decides a request against the identity's grants in force: the audience
/// must be granted (or, if none is asked for, the only one granted), the
/// scopes asked for all granted for it (none asked: all of them).
pub fn decide(identity: &str, grants: &[GrantRecord], req: &TokenRequest) -> Result<Granted> {
    if grants.is_empty() {
        return Err(refusal(
            "unauthorized_client",
            format!("{identity} may not get access tokens (no grant: ambos oauth allow)"),
        ));
    }
    let mut audiences: Vec<&str> = grants.iter().map(|g| g.audience.as_str()).collect();
    audiences.sort_unstable();
    audiences.dedup();
    let audience = match req.audience.as_deref().map(str::trim).filter(|a| !a.is_empty()) {
        Some(a) if audiences.contains(&a) => a.to_string(),
        Some(a) => return Err(refusal("invalid_target", format!("{identity} may not get tokens for '{a}'"))),
        None if audiences.len() == 1 => audiences[0].to_string(),
        None => {
            return Err(refusal(
                "invalid_request",
                format!("name the audience: {identity} may get tokens for {}", audiences.join(", ")),
            ))
        }
    };
    let mut allowed: Vec<&str> =
        grants.iter().filter(|g| g.audience == audience).flat_map(|g| g.scopes.iter().map(String::as_str)).collect();
    allowed.sort_unstable();
    allowed.dedup();
    let scopes: Vec<String> = match req.scope.as_deref().filter(|s| !s.trim().is_empty()) {
        None => allowed.iter().map(|s| s.to_string()).collect(),
        Some(asked) => {
            let mut scopes: Vec<String> = Vec::new();
            for s in asked.split_whitespace() {
                if !allowed.contains(&s) {
                    return Err(refusal("invalid_scope", format!("{identity} may not get scope '{s}' for {audience}")));
                }
                if !scopes.iter().any(|x| x == s) {
                    scopes.push(s.to_string());
                }
            }
            scopes
        }
    };
    Ok(Granted { subject: identity.to_string(), audience, scopes })
}

/// The key that signs access tokens, unlocked.
pub struct TokenSigner {
    kid: String,
    pair: EcdsaKeyPair,
    rng: aws_lc_rs::rand::SystemRandom,
    header: String,
}

impl TokenSigner {
    fn new(kid: String, pkcs8: &[u8]) -> Result<TokenSigner> {
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
            .map_err(|e| CaError::SigningKey(format!("{kid}: {e}")))?;
        // RFC 9068 §2.1: typ "at+jwt".
        let header = b64(json!({"alg": "ES256", "typ": "at+jwt", "kid": kid}).to_string().as_bytes());
        Ok(TokenSigner { kid, pair, rng: aws_lc_rs::rand::SystemRandom::new(), header })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Signs an RFC 9068 access token for `granted`, bound (`cnf.x5t#S256`,
    /// the SHA-256 of its DER) to the certificate `cert_der`.
    pub fn sign(&self, issuer: &str, granted: Granted, cert_der: &[u8], ttl: Duration) -> Result<AccessToken> {
        let cert_sha256 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, cert_der);
        let mut id = [0u8; 16];
        aws_lc_rs::rand::fill(&mut id).map_err(|_| CaError::Random)?;
        let jti = b64(&id);
        let iat = now().unix_timestamp();
        let claims = json!({
            "iss": issuer,
            "sub": granted.subject,
            "client_id": granted.subject,
            "aud": granted.audience,
            "scope": granted.scopes.join(" "),
            "iat": iat,
            "exp": iat + ttl.as_secs() as i64,
            "jti": jti,
            "cnf": {"x5t#S256": b64(cert_sha256.as_ref())},
        });
        // JWS compact serialisation (RFC 7515): ES256's signature is the
        // fixed-size r || s that aws-lc-rs's FIXED signing gives.
        let mut token = format!("{}.{}", self.header, b64(claims.to_string().as_bytes()));
        let sig = self.pair.sign(&self.rng, token.as_bytes()).map_err(|_| CaError::Random)?;
        token.push('.');
        token.push_str(&b64(sig.as_ref()));
        Ok(AccessToken { token, jti, expires_in: ttl.as_secs(), granted })
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The public JWK (RFC 7517) of a P-256 key, with its RFC 7638 thumbprint as `kid`.
fn public_jwk(pair: &EcdsaKeyPair) -> (String, serde_json::Value) {
    // The public key is the uncompressed point 0x04 || x || y.
    let point = pair.public_key().as_ref();
    let (x, y) = (b64(&point[1..33]), b64(&point[33..65]));
    // RFC 7638: the required members in lexicographic order, no spaces.
    let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    let kid = b64(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes()).as_ref());
    let jwk = json!({"kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": kid, "use": "sig", "alg": "ES256"});
    (kid, jwk)
}

/// What `ambos serve` holds: the key that signs, and the JWKS (RFC 7517)
/// that publishes it with the retired keys whose tokens may still be valid.
pub struct TokenKeys {
    pub signer: TokenSigner,
    pub jwks: String,
    /// The kids published, to notice a rotation.
    pub published: Vec<String>,
}

impl<S: ambos_store::CertStore> CertificateAuthority<S> {
    /// Makes a new token-signing key (P-256, encrypted with the CA's
    /// passphrase like the CA keys) and retires the current one, which
    /// stays published for [`MAX_TOKEN_TTL`]. Returns the new kid.
    pub fn rotate_signing_key(&mut self, passphrase: Option<&[u8]>) -> Result<String> {
        // The passphrase must be the CA's: checked by unlocking the intermediate.
        if self.keys_encrypted() {
            self.authority(ambos_store::AuthorityRole::Intermediate, passphrase)?;
        }
        let key = KeyType::EcP256.generate()?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, key.pkcs8_der())
            .map_err(|e| CaError::SigningKey(e.to_string()))?;
        let (kid, jwk) = public_jwk(&pair);
        let (key_pem, key_encrypted) = match passphrase.filter(|_| self.keys_encrypted()) {
            Some(p) => (encrypt_private_key(key.pkcs8_der(), p)?, true),
            None => (key.pkcs8_pem().to_string(), false),
        };
        let at = now().unix_timestamp();
        let record = SigningKeyRecord {
            kid: kid.clone(),
            key_pem,
            key_encrypted,
            public_jwk: jwk.to_string(),
            created_at: at,
            retired_at: None,
            publish_until: None,
        };
        let detail = format!("token-signing key {kid}");
        let trail = self.actor.record(
            at,
            crate::audit::Entry { action: "key-rotate", subject: "oauth", serial: None, refused: None, detail },
        );
        self.store.add_signing_key(&record, at + MAX_TOKEN_TTL.as_secs() as i64, &trail)?;
        crate::audit::log(&trail);
        Ok(kid)
    }

    /// The current signing key unlocked, and the JWKS to publish; makes the
    /// first key if there is none yet.
    pub fn token_keys(&mut self, passphrase: Option<&[u8]>) -> Result<TokenKeys> {
        let mut keys = self.store.signing_keys()?;
        if !keys.iter().any(|k| k.retired_at.is_none()) {
            self.rotate_signing_key(passphrase)?;
            keys = self.store.signing_keys()?;
        }
        let at = now().unix_timestamp();
        let current = keys.iter().rev().find(|k| k.retired_at.is_none()).expect("made above");
        let key = PrivateKey::from_pem(&current.key_pem, passphrase.filter(|_| current.key_encrypted))?;
        let signer = TokenSigner::new(current.kid.clone(), key.pkcs8_der())?;
        let live: Vec<&SigningKeyRecord> =
            keys.iter().filter(|k| k.retired_at.is_none() || k.publish_until.is_some_and(|t| t > at)).collect();
        let jwks = live
            .iter()
            .map(|k| serde_json::from_str(&k.public_jwk))
            .collect::<std::result::Result<Vec<serde_json::Value>, _>>()
            .map_err(|e| CaError::SigningKey(format!("stored public key: {e}")))?;
        Ok(TokenKeys {
            signer,
            jwks: json!({ "keys": jwks }).to_string(),
            published: live.iter().map(|k| k.kid.clone()).collect(),
        })
    }

    /// The kids that should be published now (cheap: no key is unlocked),
    /// to notice a rotation made by another process.
    pub fn published_kids(&self) -> Result<Vec<String>> {
        let at = now().unix_timestamp();
        Ok(self
            .store
            .signing_keys()?
            .into_iter()
            .filter(|k| k.retired_at.is_none() || k.publish_until.is_some_and(|t| t > at))
            .map(|k| k.kid)
            .collect())
    }

    /// Lets `identity` (a SPIFFE ID, DNS name or CN) get tokens for `audience` with `scopes`.
    pub fn allow(&mut self, identity: &str, audience: &str, scopes: &[String]) -> Result<GrantRecord> {
        let bad = |why: String| CaError::Pki(ambos_pki::PkiError::InvalidRequest(why));
        if identity.trim().is_empty() || identity.chars().any(char::is_whitespace) {
            return Err(bad(format!("identity '{identity}' must be one word (a SPIFFE ID, DNS name or CN)")));
        }
        if audience.trim().is_empty() || audience.chars().any(char::is_whitespace) {
            return Err(bad(format!("--audience '{audience}' must be one word")));
        }
        // RFC 6749 §3.3: scope tokens are printable ASCII without space, '"' or '\'.
        if let Some(s) = scopes
            .iter()
            .find(|s| s.is_empty() || !s.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\'))
        {
            return Err(bad(format!("--scope '{s}' is not an OAuth scope (printable ASCII, no spaces or quotes)")));
        }
        let mut grant = GrantRecord {
            id: 0,
            identity: identity.to_string(),
            audience: audience.to_string(),
            scopes: scopes.to_vec(),
            created_at: now().unix_timestamp(),
            revoked_at: None,
        };
        // The entry names the grant by the id the store gives it, in the insert's transaction.
        let actor = &self.actor;
        let trail = |g: &GrantRecord| {
            let detail = format!("grant {} for {audience}, scope '{}'", g.id, scopes.join(" "));
            let entry =
                crate::audit::Entry { action: "oauth-allow", subject: identity, serial: None, refused: None, detail };
            actor.record(g.created_at, entry)
        };
        grant.id = self.store.insert_grant(&grant, &trail)?;
        crate::audit::log(&trail(&grant));
        Ok(grant)
    }

    /// Every grant, revoked ones too.
    pub fn grants(&self) -> Result<Vec<GrantRecord>> {
        Ok(self.store.grants(None)?)
    }

    pub fn revoke_grant(&mut self, id: i64) -> Result<GrantRecord> {
        // The entry names the grant's identity and audience as the store reads them.
        let (actor, at) = (&self.actor, now().unix_timestamp());
        let trail = |g: &GrantRecord| {
            let detail = format!("grant {id} for {}", g.audience);
            let entry = crate::audit::Entry {
                action: "oauth-revoke",
                subject: &g.identity,
                serial: None,
                refused: None,
                detail,
            };
            actor.record(at, entry)
        };
        let g = self.store.revoke_grant(id, at, &trail)?;
        crate::audit::log(&trail(&g));
        Ok(g)
    }

    /// Decides a token request from the client certificate `peer_der`
    /// (verified by the TLS layer): issued here, not revoked, and granted.
    pub fn grant_for(&self, peer_der: &[u8], req: &TokenRequest) -> Result<Granted> {
        let id = ambos_tls::Identity::from_der(peer_der).map_err(|e| CaError::BadPeerCertificate(e.to_string()))?;
        let rec = self.peer(&id.serial)?;
        if rec.sha256 != id.sha256 {
            return Err(CaError::UnknownPeer(id.serial));
        }
        let identity = token_identity(&id)
            .ok_or_else(|| refusal("invalid_client", "the certificate has no SPIFFE ID, DNS name or CN"))?;
        decide(identity, &self.store.grants(Some(identity))?, req)
    }
}

/// `ambos oauth list`: the grants as a table, or as JSON rows.
pub struct Grants(pub Vec<GrantRecord>);

impl Grants {
    pub fn json(&self) -> serde_json::Value {
        let row = |g: &GrantRecord| {
            json!({
                "id": g.id, "identity": g.identity, "audience": g.audience, "scopes": g.scopes,
                "created_at": ambos_pki::rfc3339_unix(g.created_at),
                "revoked_at": g.revoked_at.map(ambos_pki::rfc3339_unix),
            })
        };
        serde_json::Value::Array(self.0.iter().map(row).collect())
    }
}

impl std::fmt::Display for Grants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return writeln!(f, "no grants (ambos oauth allow IDENTITY --audience A --scope S)");
        }
        let w = self.0.iter().map(|g| g.identity.len()).max().unwrap_or(8).max(8);
        let aw = self.0.iter().map(|g| g.audience.len()).max().unwrap_or(8).max(8);
        writeln!(f, "{:>4}  {:<w$}  {:<aw$}  {:<8}  SCOPES", "ID", "IDENTITY", "AUDIENCE", "STATUS")?;
        for g in &self.0 {
            let status = if g.revoked_at.is_some() { "revoked" } else { "active" };
            writeln!(f, "{:>4}  {:<w$}  {:<aw$}  {status:<8}  {}", g.id, g.identity, g.audience, g.scopes.join(" "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_ca::test_ca;

    fn grant(audience: &str, scopes: &[&str]) -> GrantRecord {
        GrantRecord {
            id: 1,
            identity: "spiffe://t/alice".into(),
            audience: audience.into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            created_at: 0,
            revoked_at: None,
        }
    }

    fn code(r: Result<Granted>) -> &'static str {
        match r {
            Err(CaError::OAuth { error, .. }) => error,
            other => panic!("not an OAuth refusal: {other:?}"),
        }
    }

    fn ask(scope: Option<&str>, audience: Option<&str>) -> TokenRequest {
        TokenRequest { scope: scope.map(Into::into), audience: audience.map(Into::into) }
    }

    #[test]
    fn the_policy_grants_what_was_allowed_and_names_what_was_not() {
        let me = "spiffe://t/alice";
        let g = [grant("pay", &["pay:read", "pay:write"]), grant("ship", &["ship:read"])];
        let ok = decide(me, &g, &ask(Some("pay:write"), Some("pay"))).unwrap();
        assert_eq!((ok.audience.as_str(), ok.scopes.as_slice()), ("pay", ["pay:write".to_string()].as_slice()));
        let all = decide(me, &g, &ask(None, Some("pay"))).unwrap();
        assert_eq!(all.scopes, ["pay:read", "pay:write"]);
        assert_eq!(code(decide(me, &g, &ask(Some("ship:read"), Some("pay")))), "invalid_scope");
        assert_eq!(code(decide(me, &g, &ask(None, Some("bank")))), "invalid_target");
        assert_eq!(code(decide(me, &g, &ask(None, None))), "invalid_request", "two audiences: name one");
        assert_eq!(decide(me, &g[..1], &ask(None, None)).unwrap().audience, "pay");
        assert_eq!(code(decide(me, &[], &ask(None, None))), "unauthorized_client");
    }

    #[test]
    fn a_signed_token_verifies_with_the_published_key_and_carries_the_binding() {
        let mut t = test_ca("oauth");
        let keys = t.ca.token_keys(None).unwrap();
        let granted = Granted { subject: "spiffe://t/alice".into(), audience: "pay".into(), scopes: vec!["a".into()] };
        let tok = keys.signer.sign("https://ca.test", granted, b"DER", Duration::from_secs(300)).unwrap();
        let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_str(&keys.jwks).unwrap();
        let header = jsonwebtoken::decode_header(&tok.token).unwrap();
        assert_eq!((header.alg, header.typ.as_deref()), (jsonwebtoken::Algorithm::ES256, Some("at+jwt")));
        let jwk = jwks.find(header.kid.as_deref().unwrap()).unwrap();
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
        v.set_audience(&["pay"]);
        v.set_issuer(&["https://ca.test"]);
        let claims = jsonwebtoken::decode::<serde_json::Value>(
            &tok.token,
            &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap(),
            &v,
        )
        .unwrap()
        .claims;
        let thumbprint = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b"DER");
        assert_eq!(claims["cnf"]["x5t#S256"], b64(thumbprint.as_ref()));
        assert_eq!((claims["sub"].as_str(), claims["scope"].as_str()), (Some("spiffe://t/alice"), Some("a")));
        assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 300);
    }

    #[test]
    fn rotation_publishes_both_keys_and_signs_with_the_new_one() {
        let mut t = test_ca("oauth");
        let first = t.ca.token_keys(None).unwrap();
        assert_eq!(first.published.len(), 1);
        assert_eq!(t.ca.token_keys(None).unwrap().signer.kid(), first.signer.kid(), "made once");
        let kid = t.ca.rotate_signing_key(None).unwrap();
        let after = t.ca.token_keys(None).unwrap();
        assert_eq!(after.signer.kid(), kid);
        assert_eq!(after.published, [first.signer.kid().to_string(), kid.clone()]);
        assert_eq!(t.ca.published_kids().unwrap(), after.published);
    }

    #[test]
    fn a_retired_key_is_published_until_its_last_token_expired_then_dropped() {
        let mut t = test_ca("oauth");
        let first = t.ca.token_keys(None).unwrap().signer.kid().to_string();
        // A rotation whose old key's last token expired a second ago.
        let key = KeyType::EcP256.generate().unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, key.pkcs8_der()).unwrap();
        let (kid, jwk) = public_jwk(&pair);
        let at = now().unix_timestamp();
        let record = SigningKeyRecord {
            kid: kid.clone(),
            key_pem: key.pkcs8_pem().to_string(),
            key_encrypted: false,
            public_jwk: jwk.to_string(),
            created_at: at,
            retired_at: None,
            publish_until: None,
        };
        ambos_store::CertStore::add_signing_key(&mut t.ca.store, &record, at - 1, &[]).unwrap();
        let keys = t.ca.token_keys(None).unwrap();
        assert_eq!(keys.published, [kid], "{first} no longer published");
        assert!(!keys.jwks.contains(&first));
    }

    #[test]
    fn the_signing_key_is_encrypted_with_the_ca_passphrase() {
        let dir = tempfile::tempdir().unwrap();
        let opts =
            crate::InitOptions { passphrase: Some(b"pass phrase".to_vec()), ..crate::InitOptions::unencrypted("enc") };
        let mut ca = CertificateAuthority::init(dir.path(), &opts).unwrap();
        assert!(ca.rotate_signing_key(Some(b"wrong")).is_err(), "not the CA's passphrase");
        ca.rotate_signing_key(Some(b"pass phrase")).unwrap();
        let stored = ambos_store::CertStore::signing_keys(&ca.store).unwrap();
        assert!(stored[0].key_encrypted && stored[0].key_pem.contains("ENCRYPTED PRIVATE KEY"));
        assert!(ca.token_keys(None).is_err(), "locked without the passphrase");
        ca.token_keys(Some(b"pass phrase")).unwrap();
    }

    #[test]
    fn only_a_current_certificate_of_this_ca_with_a_grant_gets_a_token() {
        let mut t = test_ca("oauth");
        let alice = t.issue_client("alice");
        let err = t.ca.grant_for(&alice.cert_der, &TokenRequest::default()).unwrap_err();
        assert!(matches!(err, CaError::OAuth { error: "unauthorized_client", .. }), "{err}");
        t.ca.allow("alice", "pay", &["pay:read".into()]).unwrap();
        let err = t.ca.grant_for(&alice.cert_der, &TokenRequest::default()).unwrap_err();
        assert!(matches!(err, CaError::OAuth { .. }), "the SPIFFE ID is the identity, not the CN");
        t.ca.allow("spiffe://acme.test/alice", "pay", &["pay:read".into()]).unwrap();
        let g = t.ca.grant_for(&alice.cert_der, &TokenRequest::default()).unwrap();
        let want = ("spiffe://acme.test/alice", ["pay:read".to_string()]);
        assert_eq!((g.subject.as_str(), g.scopes.as_slice()), (want.0, want.1.as_slice()));
        let foreign = test_ca("other").issue_client("alice");
        assert!(matches!(t.ca.grant_for(&foreign.cert_der, &TokenRequest::default()), Err(CaError::UnknownPeer(_))));
        t.ca.revoke(&crate::CertSelector::Serial(alice.serial.clone()), ambos_pki::RevocationReason::KeyCompromise)
            .unwrap();
        assert!(matches!(t.ca.grant_for(&alice.cert_der, &TokenRequest::default()), Err(CaError::PeerRevoked(_))));
        assert!(t.ca.allow("two words", "pay", &[]).is_err());
        let table = Grants(t.ca.grants().unwrap()).to_string();
        assert!(
            table
                .lines()
                .nth(2)
                .is_some_and(|l| l.contains("spiffe://acme.test/alice  pay") && l.ends_with("pay:read")),
            "{table}"
        );
        assert_eq!(Grants(t.ca.grants().unwrap()).json()[0]["revoked_at"], serde_json::Value::Null);
        assert!(t.ca.allow("alice", "pay", &["a\"b".into()]).is_err());
    }
}
