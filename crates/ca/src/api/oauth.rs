//! The OAuth 2.0 authorization server of `ambos serve`: `POST
//! /v1/oauth/token` (client credentials, RFC 8705 `tls_client_auth`: the
//! client is the verified certificate), `GET /v1/oauth/jwks` (RFC 7517) and
//! `GET /.well-known/oauth-authorization-server` (RFC 8414). Tokens:
//! [`crate::oauth`].
use super::{blocking, CaState, Peer, PeerAddr};
use crate::oauth::{TokenKeys, TokenRequest};
use crate::CaError;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

/// The published keys and the JWKS's ETag.
pub(super) struct Published {
    pub keys: TokenKeys,
    etag: String,
}

impl Published {
    pub fn new(keys: TokenKeys) -> Published {
        let etag = format!("\"{}\"", &ambos_pki::sha256_hex(keys.jwks.as_bytes())[..32]);
        Published { keys, etag }
    }
}

impl CaState {
    /// Picks up a signing key rotated by `ambos oauth rotate-key` (another
    /// process) or a retired key's end of publication.
    pub(super) fn refresh_token_keys(&self) -> Result<(), CaError> {
        let mut ca = self.ca.lock().expect("ca lock");
        if ca.published_kids()? == self.tokens.load().keys.published {
            return Ok(());
        }
        let keys = ca.token_keys(self.passphrase.as_deref().map(|p| p.as_slice()))?;
        tracing::info!(
            "access tokens are signed by key {} now; published: {}",
            keys.signer.kid(),
            keys.published.join(", ")
        );
        self.tokens.store(Arc::new(Published::new(keys)));
        Ok(())
    }
}

/// An RFC 6749 §5.2 error answer.
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut r = (status, Json(json!({"error": error, "error_description": description}))).into_response();
    r.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    r
}

fn refused(e: CaError) -> Response {
    match e {
        CaError::OAuth { error, description } => oauth_error(StatusCode::BAD_REQUEST, error, &description),
        e @ (CaError::UnknownPeer(_) | CaError::PeerRevoked(_) | CaError::BadPeerCertificate(_)) => {
            oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", &e.to_string())
        }
        other => {
            tracing::error!("token endpoint: {other}");
            oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "the token could not be issued")
        }
    }
}

/// The form of a client-credentials request. A parameter given twice is
/// refused (RFC 6749 §3.2), as serde does for a duplicate field.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenForm {
    grant_type: Option<String>,
    scope: Option<String>,
    audience: Option<String>,
    /// RFC 8707's name for the audience.
    resource: Option<String>,
    client_id: Option<String>,
}

/// `POST /v1/oauth/token`
pub(super) async fn token(
    State(st): State<Arc<CaState>>,
    Extension(peer): Extension<Peer>,
    Extension(PeerAddr(addr)): Extension<PeerAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| {
        v.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/x-www-form-urlencoded")
    });
    if !form_type {
        let why = "the body must be application/x-www-form-urlencoded (RFC 6749 §4.4.2)";
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", why);
    }
    let form: TokenForm = match serde_urlencoded::from_bytes(&body) {
        Ok(f) => f,
        Err(e) => return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", &e.to_string()),
    };
    match form.grant_type.as_deref() {
        Some("client_credentials") => {}
        None => return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "grant_type is missing"),
        Some(other) => {
            let why = format!("grant_type '{other}': only client_credentials");
            return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", &why);
        }
    }
    let Some(cert) = peer.0 else {
        let why = "connect with a client certificate of this CA (tls_client_auth, RFC 8705)";
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", why);
    };
    if form.audience.is_some() && form.resource.is_some() && form.audience != form.resource {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_target", "audience and resource differ");
    }
    let req = TokenRequest { scope: form.scope, audience: form.audience.or(form.resource) };
    let st2 = st.clone();
    let der = cert.der.clone();
    let decided = blocking(move || Ok(st2.ca.lock().expect("ca lock").grant_for(&der, &req))).await;
    let granted = match decided {
        Ok(Ok(g)) => g,
        Ok(Err(e)) => {
            tracing::info!(peer = %addr, serial = %cert.serial, "access token refused: {e}");
            metrics::counter!("ambos_ca_access_tokens_total", "result" => "refused").increment(1);
            return refused(e);
        }
        Err(e) => return e.into_response(),
    };
    // RFC 8705 §2.1: a client_id, if sent, must be the certificate's.
    if form.client_id.as_deref().is_some_and(|c| c != granted.subject) {
        let why = format!("client_id is not {}, the certificate's identity", granted.subject);
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", &why);
    }
    let published = st.tokens.load();
    let token = match published.keys.signer.sign(&st.issuer, granted, &cert.der, st.token_ttl) {
        Ok(t) => t,
        Err(e) => return refused(e),
    };
    metrics::counter!("ambos_ca_access_tokens_total", "result" => "issued").increment(1);
    tracing::info!(
        peer = %addr,
        serial = %cert.serial,
        jti = %token.jti,
        kid = %published.keys.signer.kid(),
        "access token issued to {} for {} (scope '{}'), expires in {} s",
        token.granted.subject,
        token.granted.audience,
        token.granted.scopes.join(" "),
        token.expires_in
    );
    let body = json!({
        "access_token": token.token,
        "token_type": "Bearer",
        "expires_in": token.expires_in,
        "scope": token.granted.scopes.join(" "),
    });
    ([(header::CACHE_CONTROL, "no-store"), (header::PRAGMA, "no-cache")], Json(body)).into_response()
}

/// `GET /v1/oauth/jwks`, with an ETag for conditional GETs.
pub(super) async fn jwks(State(st): State<Arc<CaState>>, headers: HeaderMap) -> Response {
    let published = st.tokens.load_full();
    if headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(published.etag.as_str()) {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, published.etag.clone())]).into_response();
    }
    let headers = [
        (header::CONTENT_TYPE, "application/jwk-set+json".to_string()),
        (header::ETAG, published.etag.clone()),
        (header::CACHE_CONTROL, "max-age=60".to_string()),
    ];
    (headers, published.keys.jwks.clone()).into_response()
}

/// `GET /.well-known/oauth-authorization-server` (RFC 8414, with RFC 8705's members).
pub(super) async fn metadata(State(st): State<Arc<CaState>>) -> Response {
    let token_endpoint = format!("{}/v1/oauth/token", st.issuer);
    Json(json!({
        "issuer": st.issuer,
        "token_endpoint": token_endpoint,
        "jwks_uri": format!("{}/v1/oauth/jwks", st.issuer),
        "grant_types_supported": ["client_credentials"],
        // RFC 8414 requires a non-empty list though there is no
        // authorization endpoint: "token", what the token endpoint gives.
        "response_types_supported": ["token"],
        "token_endpoint_auth_methods_supported": ["tls_client_auth"],
        "tls_client_certificate_bound_access_tokens": true,
        "mtls_endpoint_aliases": {"token_endpoint": token_endpoint},
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::test_api::{answer, api, peer};

    fn form(body: &str) -> (HeaderMap, Bytes) {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, "application/x-www-form-urlencoded".parse().unwrap());
        (h, Bytes::from(body.to_string()))
    }

    async fn ask(st: &Arc<CaState>, p: Peer, body: &str) -> (StatusCode, serde_json::Value) {
        let (h, b) = form(body);
        let addr = PeerAddr(([127, 0, 0, 1], 1).into());
        let (status, headers, v) =
            answer(Ok(token(State(st.clone()), Extension(p), Extension(addr), h, b).await)).await;
        assert_eq!(headers[header::CACHE_CONTROL], "no-store");
        (status, v)
    }

    #[tokio::test]
    async fn the_token_endpoint_answers_per_rfc_6749() {
        let a = api();
        let st = &a.st;
        st.ca.lock().unwrap().allow("spiffe://acme.test/user", "pay", &["pay:read".into()]).unwrap();
        let user = || peer(&a.user.cert_der);
        let (status, v) = ask(st, user(), "grant_type=client_credentials&scope=pay:read").await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!((v["token_type"].as_str(), v["scope"].as_str()), (Some("Bearer"), Some("pay:read")));
        assert!(v["access_token"].as_str().unwrap().split('.').count() == 3);
        let cases = [
            (user(), "grant_type=password", StatusCode::BAD_REQUEST, "unsupported_grant_type"),
            (user(), "scope=pay:read", StatusCode::BAD_REQUEST, "invalid_request"),
            (
                user(),
                "grant_type=client_credentials&grant_type=client_credentials",
                StatusCode::BAD_REQUEST,
                "invalid_request",
            ),
            (user(), "grant_type=client_credentials&scope=pay:write", StatusCode::BAD_REQUEST, "invalid_scope"),
            (user(), "grant_type=client_credentials&resource=bank", StatusCode::BAD_REQUEST, "invalid_target"),
            (user(), "grant_type=client_credentials&client_id=mallory", StatusCode::UNAUTHORIZED, "invalid_client"),
            (Peer(None), "grant_type=client_credentials", StatusCode::UNAUTHORIZED, "invalid_client"),
            (peer(&a.admin.cert_der), "grant_type=client_credentials", StatusCode::BAD_REQUEST, "unauthorized_client"),
        ];
        for (p, body, status, error) in cases {
            let (s, v) = ask(st, p, body).await;
            assert_eq!((s, v["error"].as_str()), (status, Some(error)), "{body}: {v}");
            assert!(v["error_description"].as_str().is_some_and(|d| !d.is_empty()), "{v}");
        }
        let (h, b) = (HeaderMap::new(), Bytes::from_static(b"{\"grant_type\":\"client_credentials\"}"));
        let addr = PeerAddr(([127, 0, 0, 1], 1).into());
        let (status, _, v) = answer(Ok(token(State(st.clone()), Extension(user()), Extension(addr), h, b).await)).await;
        assert_eq!((status, v["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")), "JSON body");
    }

    #[tokio::test]
    async fn jwks_and_metadata_name_the_issuer_and_the_key() {
        let a = api();
        let r = jwks(State(a.st.clone()), HeaderMap::new()).await;
        let etag = r.headers()[header::ETAG].clone();
        let (_, _, v) = answer(Ok(r)).await;
        assert_eq!(v["keys"][0]["kid"].as_str(), Some(a.st.tokens.load().keys.signer.kid()));
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, etag);
        assert_eq!(jwks(State(a.st.clone()), h).await.status(), StatusCode::NOT_MODIFIED);
        let (_, _, m) = answer(Ok(metadata(State(a.st.clone())).await)).await;
        assert_eq!(m["issuer"], a.st.issuer.as_str());
        assert_eq!(m["tls_client_certificate_bound_access_tokens"], true);
        assert_eq!(m["token_endpoint_auth_methods_supported"], json!(["tls_client_auth"]));
    }
}
