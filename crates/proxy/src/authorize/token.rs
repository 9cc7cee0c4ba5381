//! Certificate-bound access tokens on a route (RFC 8705, RFC 6750): a route
//! with `token = { issuer, jwks, audience, scopes, bound }` takes
//! `Authorization: Bearer` and lets the request through only when the JWT
//! verifies with a key of the JWKS (the algorithm the key is for; never
//! `none` or HMAC), `iss`, `aud`, `exp`/`nbf` (60 s leeway) and the scopes
//! hold, and, with `bound`, its `cnf.x5t#S256` is the SHA-256 thumbprint of
//! the client certificate verified on this connection. A stolen token is
//! then useless without the certificate's private key. The JWKS is a file,
//! or a URL whose keys `jwks` fetches and refreshes ([`JwksSource`]).
use super::jwks::RemoteJwks;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// `[[route]] token = {...}`, validated: plain data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenConfig {
    pub issuer: String,
    pub jwks: JwksSource,
    pub audience: String,
    /// Every one must be in the token's `scope`.
    pub scopes: Vec<String>,
    /// `cnf.x5t#S256` must name this connection's client certificate.
    pub bound: bool,
    /// Pass `Authorization` on to the upstream (default: removed).
    pub forward: bool,
}

/// Where a route's JWKS (RFC 7517) comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JwksSource {
    /// Read when the runtime is built (and on reload).
    File(PathBuf),
    /// Fetched before the proxy listens, then every `refresh` with
    /// conditional GETs, and at once for a token whose key is unknown (at
    /// most every `refresh`, 30 s at most); the server's certificate must
    /// chain to `tls.client_ca`.
    Url { url: http::Uri, refresh: Duration },
}

impl std::fmt::Display for JwksSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JwksSource::File(p) => write!(f, "{}", p.display()),
            JwksSource::Url { url, .. } => write!(f, "{url}"),
        }
    }
}

/// Why a token was refused: the audit reason and metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenRefusal {
    Missing,
    Malformed,
    UnknownKey,
    BadSignature,
    Expired,
    NotYetValid,
    WrongIssuer,
    WrongAudience,
    InsufficientScope,
    /// The route wants a bound token and this one has no `cnf.x5t#S256`.
    Unbound,
    /// Bound to another certificate than this connection's (a replayed token).
    OtherCertificate,
}

impl TokenRefusal {
    pub const ALL: [TokenRefusal; 11] = [
        TokenRefusal::Missing,
        TokenRefusal::Malformed,
        TokenRefusal::UnknownKey,
        TokenRefusal::BadSignature,
        TokenRefusal::Expired,
        TokenRefusal::NotYetValid,
        TokenRefusal::WrongIssuer,
        TokenRefusal::WrongAudience,
        TokenRefusal::InsufficientScope,
        TokenRefusal::Unbound,
        TokenRefusal::OtherCertificate,
    ];

    pub fn label(self) -> &'static str {
        match self {
            TokenRefusal::Missing => "missing",
            TokenRefusal::Malformed => "malformed",
            TokenRefusal::UnknownKey => "unknown_key",
            TokenRefusal::BadSignature => "bad_signature",
            TokenRefusal::Expired => "expired",
            TokenRefusal::NotYetValid => "not_yet_valid",
            TokenRefusal::WrongIssuer => "wrong_issuer",
            TokenRefusal::WrongAudience => "wrong_audience",
            TokenRefusal::InsufficientScope => "insufficient_scope",
            TokenRefusal::Unbound => "unbound",
            TokenRefusal::OtherCertificate => "bound_to_another_certificate",
        }
    }

    /// The `error_description` and audit reason.
    pub fn description(self) -> &'static str {
        match self {
            TokenRefusal::Missing => "no bearer token",
            TokenRefusal::Malformed => "the token is not a JWT this route accepts",
            TokenRefusal::UnknownKey => "the token is signed by a key not in the route's JWKS",
            TokenRefusal::BadSignature => "the token's signature does not verify",
            TokenRefusal::Expired => "the token has expired",
            TokenRefusal::NotYetValid => "the token is not valid yet",
            TokenRefusal::WrongIssuer => "the token is from another issuer",
            TokenRefusal::WrongAudience => "the token is for another audience",
            TokenRefusal::InsufficientScope => "the token lacks a scope this route needs",
            TokenRefusal::Unbound => "the token is not bound to a certificate",
            TokenRefusal::OtherCertificate => "the token is bound to another certificate",
        }
    }

    /// RFC 6750 3.1: 403 for a scope, 401 for everything else.
    pub fn status(self) -> http::StatusCode {
        match self {
            TokenRefusal::InsufficientScope => http::StatusCode::FORBIDDEN,
            _ => http::StatusCode::UNAUTHORIZED,
        }
    }

    /// The `WWW-Authenticate` value.
    pub fn challenge(self) -> http::HeaderValue {
        let error = match self {
            TokenRefusal::Missing => return http::HeaderValue::from_static("Bearer"),
            TokenRefusal::InsufficientScope => "insufficient_scope",
            _ => "invalid_token",
        };
        http::HeaderValue::try_from(format!("Bearer error=\"{error}\", error_description=\"{}\"", self.description()))
            .unwrap_or(http::HeaderValue::from_static("Bearer error=\"invalid_token\""))
    }
}

/// A verifying key of the JWKS and the algorithms it is for.
struct Key {
    kid: Option<String>,
    key: DecodingKey,
    algorithms: Vec<Algorithm>,
}

/// The keys of one version of a JWKS. `generation` tells versions of a
/// pulled JWKS apart: the token cache is emptied when it changes.
pub struct KeySet {
    keys: Vec<Key>,
    generation: u64,
}

/// Where a policy's keys are now.
enum Keys {
    File(Arc<KeySet>),
    /// Swapped by `jwks`; shared with the policies of later reloads.
    Url {
        remote: Arc<RemoteJwks>,
        refresh: Duration,
        client_ca: Vec<PathBuf>,
    },
}

/// A route's token rule with its keys loaded.
pub struct TokenPolicy {
    config: TokenConfig,
    keys: Keys,
    /// Tokens that verified, by the SHA-256 of their text: a known token
    /// costs a hash and a lookup, not a signature check.
    cache: std::sync::Mutex<Cache>,
}

/// Verified tokens, valid for the key set of `generation` only: a token
/// verified under a key since removed from the JWKS must be verified again.
#[derive(Default)]
struct Cache {
    generation: u64,
    tokens: std::collections::HashMap<[u8; 32], Verified>,
}

/// What a token's verification proved once and for all (signature, issuer,
/// audience, scopes). Its times and its binding are checked again on every
/// use: the binding is to the connection, which the cache never remembers.
#[derive(Clone)]
struct Verified {
    exp: u64,
    nbf: Option<u64>,
    /// `cnf.x5t#S256`, decoded (empty when it was not base64url).
    thumbprint: Option<Vec<u8>>,
    claims: TokenClaims,
}

/// What the upstream is told of a verified token (`X-Token-Subject`,
/// `X-Token-Scope`), made once per token.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenClaims {
    pub subject: Option<http::HeaderValue>,
    pub scope: Option<http::HeaderValue>,
}

/// Verified tokens remembered at most; past it the expired ones go, then all.
const CACHE_MAX: usize = 10_000;

impl std::fmt::Debug for TokenPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenPolicy").field("config", &self.config).field("keys", &self.key_set().keys.len()).finish()
    }
}

/// Tokens above this size are refused unread (a JWT with a few claims is well under 2 KiB).
const MAX_TOKEN: usize = 16 * 1024;
/// Clock skew allowed on `exp` and `nbf`.
const LEEWAY_SECS: u64 = 60;

#[derive(serde::Deserialize)]
struct Claims {
    #[serde(default)]
    sub: Option<String>,
    exp: u64,
    #[serde(default)]
    nbf: Option<u64>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    cnf: Option<Confirmation>,
}

#[derive(serde::Deserialize)]
struct Confirmation {
    #[serde(rename = "x5t#S256")]
    x5t_s256: Option<String>,
}

impl TokenPolicy {
    pub fn config(&self) -> &TokenConfig {
        &self.config
    }

    /// Reads the JWKS file, or takes the pulled keys of its URL from
    /// `pulled` (`client_ca`: what an on-demand fetch trusts).
    pub fn load(
        config: &TokenConfig,
        pulled: &super::jwks::PulledJwks,
        client_ca: &[PathBuf],
    ) -> Result<TokenPolicy, String> {
        let keys = match &config.jwks {
            JwksSource::File(path) => {
                let bytes = std::fs::read(path).map_err(|e| format!("cannot read JWKS {}: {e}", path.display()))?;
                Keys::File(Arc::new(KeySet::parse(&bytes, &path.display().to_string(), 0)?))
            }
            JwksSource::Url { url, refresh } => {
                Keys::Url { remote: pulled.get(url), refresh: *refresh, client_ca: client_ca.to_vec() }
            }
        };
        Ok(TokenPolicy { config: config.clone(), keys, cache: Default::default() })
    }

    /// The keys tokens are verified with now.
    fn key_set(&self) -> Arc<KeySet> {
        match &self.keys {
            Keys::File(k) => k.clone(),
            Keys::Url { remote, .. } => remote.keys(),
        }
    }

    /// The pulled JWKS this policy uses and how often it is refreshed.
    pub fn remote(&self) -> Option<(&Arc<RemoteJwks>, Duration, &[PathBuf])> {
        match &self.keys {
            Keys::File(_) => None,
            Keys::Url { remote, refresh, client_ca } => Some((remote, *refresh, client_ca)),
        }
    }

    /// [`check`](Self::check); a token whose key is not in a pulled JWKS
    /// first refreshes it (at most once per interval, whatever the tokens)
    /// and is checked again with the new keys.
    pub async fn check_or_refresh(
        &self,
        authorization: Option<&http::HeaderValue>,
        leaf_sha256: Option<&str>,
    ) -> Result<TokenClaims, TokenRefusal> {
        let seen = self.key_set().generation;
        let first = self.check(authorization, leaf_sha256);
        match (&first, &self.keys) {
            (Err(TokenRefusal::UnknownKey), Keys::Url { remote, refresh, client_ca }) => {
                if remote.refresh_for_unknown_key(seen, client_ca, *refresh).await {
                    self.check(authorization, leaf_sha256)
                } else {
                    first
                }
            }
            _ => first,
        }
    }

    /// Checks the request's `Authorization` against the rule; `leaf_sha256`
    /// is the lowercase hex SHA-256 of this connection's verified client
    /// certificate.
    pub fn check(
        &self,
        authorization: Option<&http::HeaderValue>,
        leaf_sha256: Option<&str>,
    ) -> Result<TokenClaims, TokenRefusal> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        self.check_at(authorization, leaf_sha256, now)
    }

    fn check_at(
        &self,
        authorization: Option<&http::HeaderValue>,
        leaf_sha256: Option<&str>,
        now: u64,
    ) -> Result<TokenClaims, TokenRefusal> {
        let value = authorization.ok_or(TokenRefusal::Missing)?.as_bytes();
        if value.len() > MAX_TOKEN + 7 {
            return Err(TokenRefusal::Malformed);
        }
        let token = match value.split_first_chunk::<7>() {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case(b"bearer ") => rest.trim_ascii(),
            _ => return Err(TokenRefusal::Missing),
        };
        let mut digest = [0u8; 32];
        digest.copy_from_slice(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token).as_ref());
        let keys = self.key_set();
        let cached = {
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if cache.generation != keys.generation {
                cache.tokens.clear();
                cache.generation = keys.generation;
            }
            cache.tokens.get(&digest).cloned()
        };
        let verified = match cached {
            Some(v) => v,
            None => {
                let v = self.verify(&keys, token)?;
                self.remember(digest, v.clone(), now, keys.generation);
                v
            }
        };
        if now > verified.exp.saturating_add(LEEWAY_SECS) {
            return Err(TokenRefusal::Expired);
        }
        if verified.nbf.is_some_and(|nbf| nbf > now.saturating_add(LEEWAY_SECS)) {
            return Err(TokenRefusal::NotYetValid);
        }
        if self.config.bound {
            let thumbprint = verified.thumbprint.as_deref().ok_or(TokenRefusal::Unbound)?;
            if !bound_to(thumbprint, leaf_sha256) {
                return Err(TokenRefusal::OtherCertificate);
            }
        }
        Ok(verified.claims)
    }

    /// The full check of a token not seen before: key, signature, claims, scopes.
    fn verify(&self, keys: &KeySet, token: &[u8]) -> Result<Verified, TokenRefusal> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenRefusal::Malformed)?;
        // The key: by kid when the token names one, else the only key for its algorithm.
        let candidates = keys.keys.iter().filter(|k| k.algorithms.contains(&header.alg));
        let key = match &header.kid {
            Some(kid) => candidates.into_iter().find(|k| k.kid.as_deref() == Some(kid)),
            None => candidates.into_iter().next(),
        }
        .ok_or(TokenRefusal::UnknownKey)?;
        let mut v = Validation::new(header.alg);
        v.leeway = LEEWAY_SECS;
        v.validate_nbf = true;
        v.set_issuer(&[&self.config.issuer]);
        v.set_audience(&[&self.config.audience]);
        v.required_spec_claims = ["exp", "iss", "aud"].iter().map(|c| c.to_string()).collect();
        let claims = jsonwebtoken::decode::<Claims>(token, &key.key, &v)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind as K;
                match e.kind() {
                    K::InvalidSignature => TokenRefusal::BadSignature,
                    K::ExpiredSignature => TokenRefusal::Expired,
                    K::ImmatureSignature => TokenRefusal::NotYetValid,
                    K::InvalidIssuer => TokenRefusal::WrongIssuer,
                    K::InvalidAudience => TokenRefusal::WrongAudience,
                    _ => TokenRefusal::Malformed,
                }
            })?
            .claims;
        let granted = claims.scope.unwrap_or_default();
        if !self.config.scopes.iter().all(|s| granted.split(' ').any(|g| g == s)) {
            return Err(TokenRefusal::InsufficientScope);
        }
        // Values that are not header-safe are left out rather than passed on mangled.
        let header = |v: &str| http::HeaderValue::from_str(v).ok().filter(|_| !v.is_empty());
        let told = TokenClaims { subject: claims.sub.as_deref().and_then(header), scope: header(&granted) };
        let thumbprint = claims.cnf.and_then(|c| c.x5t_s256).map(|t| {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(t.trim_end_matches('=')).unwrap_or_default()
        });
        Ok(Verified { exp: claims.exp, nbf: claims.nbf, thumbprint, claims: told })
    }

    /// Caches `v`, unless the keys changed since it was verified.
    fn remember(&self, digest: [u8; 32], v: Verified, now: u64, generation: u64) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.generation != generation {
            return;
        }
        if cache.tokens.len() >= CACHE_MAX {
            cache.tokens.retain(|_, v| v.exp.saturating_add(LEEWAY_SECS) >= now);
            if cache.tokens.len() >= CACHE_MAX {
                cache.tokens.clear();
            }
        }
        cache.tokens.insert(digest, v);
    }
}

impl KeySet {
    /// No keys: a pulled JWKS not fetched yet.
    pub fn empty() -> KeySet {
        KeySet { keys: Vec::new(), generation: 0 }
    }

    /// Parses a JWKS document (`name` says where it came from in errors);
    /// keys of a kind that cannot be pinned to one asymmetric algorithm
    /// (HMAC `oct`, unknown curves) are refused, and so is a JWKS without keys.
    pub fn parse(bytes: &[u8], name: &str, generation: u64) -> Result<KeySet, String> {
        let set: JwkSet = serde_json::from_slice(bytes).map_err(|e| format!("JWKS {name}: {e}"))?;
        let mut keys = Vec::new();
        for (i, jwk) in set.keys.iter().enumerate() {
            let algorithms = match (&jwk.algorithm, &jwk.common.key_algorithm) {
                (AlgorithmParameters::OctetKey(_), _) => {
                    return Err(format!("JWKS {name}: key {i} is a shared secret (oct): not accepted"))
                }
                (AlgorithmParameters::EllipticCurve(p), _) => match p.curve {
                    EllipticCurve::P256 => vec![Algorithm::ES256],
                    EllipticCurve::P384 => vec![Algorithm::ES384],
                    _ => return Err(format!("JWKS {name}: key {i}: unsupported curve")),
                },
                (AlgorithmParameters::OctetKeyPair(_), _) => vec![Algorithm::EdDSA],
                (AlgorithmParameters::RSA(_), Some(alg)) => match alg {
                    KeyAlgorithm::RS256 => vec![Algorithm::RS256],
                    KeyAlgorithm::RS384 => vec![Algorithm::RS384],
                    KeyAlgorithm::RS512 => vec![Algorithm::RS512],
                    KeyAlgorithm::PS256 => vec![Algorithm::PS256],
                    KeyAlgorithm::PS384 => vec![Algorithm::PS384],
                    KeyAlgorithm::PS512 => vec![Algorithm::PS512],
                    other => return Err(format!("JWKS {name}: key {i}: RSA key for {other:?}")),
                },
                (AlgorithmParameters::RSA(_), None) => vec![Algorithm::RS256, Algorithm::PS256],
            };
            let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("JWKS {name}: key {i}: {e}"))?;
            keys.push(Key { kid: jwk.common.key_id.clone(), key, algorithms });
        }
        if keys.is_empty() {
            return Err(format!("JWKS {name} has no keys"));
        }
        Ok(KeySet { keys, generation })
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn key_count(&self) -> usize {
        self.keys.len()
    }
}

/// Whether the decoded `x5t#S256` (SHA-256, RFC 8705 3.1) is the thumbprint
/// of the certificate whose hex SHA-256 is `leaf_sha256`; constant time.
fn bound_to(claimed: &[u8], leaf_sha256: Option<&str>) -> bool {
    let Some(Ok(leaf)) = leaf_sha256.map(hex::decode) else { return false };
    leaf.len() == 32 && aws_lc_rs::constant_time::verify_slices_are_equal(claimed, &leaf).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use jsonwebtoken::{EncodingKey, Header};

    struct Issuer {
        key: EncodingKey,
        policy: TokenPolicy,
        _dir: tempfile::TempDir,
    }

    const ALICE: &str = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1";
    const BOB: &str = "b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0";

    fn issuer() -> Issuer {
        let dir = tempfile::tempdir().unwrap();
        let (pkcs8, jwks) = ambos_testpki::jwt_signer(dir.path());
        let key = EncodingKey::from_ec_der(&pkcs8);
        let config = TokenConfig {
            issuer: "https://ca.test".into(),
            jwks: JwksSource::File(jwks),
            audience: "payments".into(),
            scopes: vec!["payments:write".into()],
            bound: true,
            forward: false,
        };
        Issuer { key, policy: TokenPolicy::load(&config, &Default::default(), &[]).unwrap(), _dir: dir }
    }

    fn thumbprint(hex: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(hex::decode(hex).unwrap())
    }

    fn claims(edit: impl FnOnce(&mut serde_json::Value)) -> serde_json::Value {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let mut c = serde_json::json!({
            "iss": "https://ca.test", "sub": "spiffe://acme.test/alice", "aud": "payments",
            "iat": now, "exp": now + 300, "scope": "payments:read payments:write",
            "cnf": {"x5t#S256": thumbprint(ALICE)},
        });
        edit(&mut c);
        c
    }

    impl Issuer {
        fn token(&self, edit: impl FnOnce(&mut serde_json::Value)) -> String {
            let header = Header { kid: Some("k1".into()), ..Header::new(Algorithm::ES256) };
            jsonwebtoken::encode(&header, &claims(edit), &self.key).unwrap()
        }

        fn check(&self, token: &str, leaf: Option<&str>) -> Result<(), TokenRefusal> {
            let v = http::HeaderValue::try_from(format!("Bearer {token}")).unwrap();
            self.policy.check(Some(&v), leaf).map(|_| ())
        }
    }

    #[test]
    fn a_bound_token_passes_only_with_its_own_certificate() {
        let i = issuer();
        let t = i.token(|_| {});
        assert_eq!(i.check(&t, Some(ALICE)), Ok(()));
        assert_eq!(i.check(&t, Some(BOB)), Err(TokenRefusal::OtherCertificate), "replayed by bob");
        assert_eq!(i.check(&t, None), Err(TokenRefusal::OtherCertificate), "replayed without a certificate");
        let unbound = i.token(|c| drop(c.as_object_mut().unwrap().remove("cnf")));
        assert_eq!(i.check(&unbound, Some(ALICE)), Err(TokenRefusal::Unbound));
    }

    #[test]
    fn claims_out_of_policy_are_refused_with_their_reason() {
        let i = issuer();
        let now = claims(|_| {})["iat"].as_u64().unwrap();
        for (edit, want) in [
            (serde_json::json!({"exp": now - 3600}), TokenRefusal::Expired),
            (serde_json::json!({"nbf": now + 3600}), TokenRefusal::NotYetValid),
            (serde_json::json!({"aud": "shipping"}), TokenRefusal::WrongAudience),
            (serde_json::json!({"iss": "https://evil.test"}), TokenRefusal::WrongIssuer),
            (serde_json::json!({"scope": "payments:read"}), TokenRefusal::InsufficientScope),
        ] {
            let t = i.token(|c| {
                for (k, v) in edit.as_object().unwrap() {
                    c[k] = v.clone();
                }
            });
            assert_eq!(i.check(&t, Some(ALICE)), Err(want), "{edit}");
        }
        assert_eq!(TokenRefusal::InsufficientScope.status(), http::StatusCode::FORBIDDEN);
        assert_eq!(TokenRefusal::Expired.status(), http::StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn forged_tokens_are_refused() {
        let i = issuer();
        let b64 = |v: &serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let good = i.token(|_| {});
        // A flipped signature byte.
        let mut parts: Vec<String> = good.split('.').map(String::from).collect();
        let mut sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&parts[2]).unwrap();
        sig[10] ^= 1;
        parts[2] = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig);
        assert_eq!(i.check(&parts.join("."), Some(ALICE)), Err(TokenRefusal::BadSignature));
        // Claims changed under the old signature.
        let forged = format!("{}.{}.{}", parts[0], b64(&claims(|c| c["aud"] = "payments".into())), parts[2]);
        assert!(i.check(&forged, Some(ALICE)).is_err());
        // alg none, unsigned.
        let none = format!("{}.{}.", b64(&serde_json::json!({"alg": "none", "typ": "JWT"})), b64(&claims(|_| {})));
        assert_eq!(i.check(&none, Some(ALICE)), Err(TokenRefusal::Malformed));
        // HS256 with the public JWK's bytes as the secret: no HMAC key is ever accepted.
        let hs = jsonwebtoken::encode(
            &Header { kid: Some("k1".into()), ..Header::new(Algorithm::HS256) },
            &claims(|_| {}),
            &EncodingKey::from_secret(&std::fs::read(i.policy.config.jwks.to_string()).unwrap()),
        )
        .unwrap();
        assert_eq!(i.check(&hs, Some(ALICE)), Err(TokenRefusal::UnknownKey));
        // Junk, a huge token, no header, another scheme.
        assert_eq!(i.check("not.a.jwt", Some(ALICE)), Err(TokenRefusal::Malformed));
        assert_eq!(i.check(&"a".repeat(1 << 20), Some(ALICE)), Err(TokenRefusal::Malformed));
        assert_eq!(i.policy.check(None, Some(ALICE)), Err(TokenRefusal::Missing));
        let basic = http::HeaderValue::from_static("Basic YWxpY2U6cHc=");
        assert_eq!(i.policy.check(Some(&basic), Some(ALICE)), Err(TokenRefusal::Missing));
    }

    #[test]
    fn the_cache_remembers_a_verification_never_the_connection_or_the_time() {
        let i = issuer();
        let t = i.token(|_| {});
        let auth = http::HeaderValue::try_from(format!("Bearer {t}")).unwrap();
        let now = claims(|_| {})["iat"].as_u64().unwrap();
        let told = i.policy.check_at(Some(&auth), Some(ALICE), now).unwrap();
        assert_eq!(told.subject.unwrap(), "spiffe://acme.test/alice");
        assert_eq!(told.scope.unwrap(), "payments:read payments:write");
        assert_eq!(i.policy.cache.lock().unwrap().tokens.len(), 1, "remembered");
        // A hit, replayed by bob or without a certificate: refused as before.
        assert_eq!(i.policy.check_at(Some(&auth), Some(BOB), now), Err(TokenRefusal::OtherCertificate));
        assert_eq!(i.policy.check_at(Some(&auth), None, now), Err(TokenRefusal::OtherCertificate));
        // A hit after exp (+ leeway): expired, though its signature was checked.
        assert_eq!(i.policy.check_at(Some(&auth), Some(ALICE), now + 300 + 61), Err(TokenRefusal::Expired));
        assert!(i.policy.check_at(Some(&auth), Some(ALICE), now + 300 + 59).is_ok());
        // A forged twin (other signature) is another text: verified in full, refused, not remembered.
        let mut parts: Vec<String> = t.split('.').map(String::from).collect();
        let mut sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&parts[2]).unwrap();
        sig[3] ^= 0x40;
        parts[2] = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig);
        assert_eq!(i.check(&parts.join("."), Some(ALICE)), Err(TokenRefusal::BadSignature));
        assert_eq!(i.check(&parts.join("."), Some(ALICE)), Err(TokenRefusal::BadSignature));
        assert_eq!(i.policy.cache.lock().unwrap().tokens.len(), 1, "refusals are not cached");
        // Bounded: past CACHE_MAX the expired entries go first, then all.
        {
            let mut cache = i.policy.cache.lock().unwrap();
            for n in 0..CACHE_MAX as u32 {
                let mut k = [0u8; 32];
                k[..4].copy_from_slice(&n.to_be_bytes());
                k[31] = 1;
                cache
                    .tokens
                    .insert(k, Verified { exp: 0, nbf: None, thumbprint: None, claims: TokenClaims::default() });
            }
        }
        let other = i.token(|c| c["sub"] = "again".into());
        assert_eq!(i.check(&other, Some(ALICE)), Ok(()));
        assert_eq!(i.policy.cache.lock().unwrap().tokens.len(), 2, "the expired entries were dropped");
    }

    #[test]
    fn a_jwks_with_a_shared_secret_or_no_keys_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let config = |body: &str| {
            let path = dir.path().join("jwks.json");
            std::fs::write(&path, body).unwrap();
            TokenConfig {
                issuer: "i".into(),
                jwks: JwksSource::File(path),
                audience: "a".into(),
                scopes: vec![],
                bound: true,
                forward: false,
            }
        };
        let oct = r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#;
        assert!(TokenPolicy::load(&config(oct), &Default::default(), &[]).unwrap_err().contains("shared secret"));
        assert!(TokenPolicy::load(&config(r#"{"keys":[]}"#), &Default::default(), &[])
            .unwrap_err()
            .contains("no keys"));
        assert!(TokenPolicy::load(&config("garbage"), &Default::default(), &[]).unwrap_err().contains("JWKS"));
    }
}
