//! Client of the CA API: what `enroll`, `renew`, `agent` and `revoke --ca-url` use.
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

/// Why a call to the CA API failed, as the client sees it.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ClientError {
    /// No answer: no connection, a timeout, a connection lost (worth a retry).
    #[error("cannot reach the CA at {url}: {why}")]
    Unreachable { url: String, why: String },
    /// The server's certificate did not verify against our trust anchor (`--root`).
    #[error("the CA server at {url} failed verification against --root: {why}")]
    ServerCertificate { url: String, why: String },
    /// The CA's TLS layer refused our certificate with an alert.
    #[error("the CA refused our certificate in the TLS handshake at {url}: {why}")]
    HandshakeRefused { url: String, why: String },
    #[error("the CA refused: {error}{}", if detail.is_empty() { String::new() } else { format!(" ({detail})") })]
    Refused { status: u16, error: String, detail: String },
    #[error("unexpected answer from the CA: {0}")]
    BadResponse(String),
    #[error("TLS setup: {0}")]
    Tls(String),
}

/// A certificate as the CA returns it.
#[derive(Debug, Deserialize)]
pub struct Issued {
    pub name: String,
    pub serial: String,
    pub not_after: String,
    /// Leaf + intermediate, PEM.
    pub certificate: String,
    /// The root, PEM.
    pub ca: String,
}

pub struct CaClient {
    /// One or more CA nodes (`--ca-url` takes them comma-separated): the
    /// next is tried when one cannot be connected to.
    bases: Vec<String>,
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl CaClient {
    /// `root_der`: the CA root the API's certificate must chain to;
    /// `identity`: our certificate chain and key for mTLS (renew, admin calls).
    /// The server is verified by [`ambos_tls::ServerVerifier`], without CRLs.
    pub fn new(
        base_url: &str,
        root_der: &[u8],
        identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    ) -> Result<CaClient, ClientError> {
        let trust = ambos_tls::Trust::new(ambos_tls::TrustOptions {
            ca_certs: vec![CertificateDer::from(root_der.to_vec())],
            ..Default::default()
        })
        .map_err(|e| ClientError::Tls(e.to_string()))?;
        CaClient::with_trust(base_url, Arc::new(trust), identity)
    }

    /// A client that trusts any server certificate: only for `ambos
    /// bootstrap`, which accepts what it fetches by its fingerprint alone.
    pub fn unverified(base_url: &str) -> Result<CaClient, ClientError> {
        ambos_tls::install_default_provider();
        let auth = ambos_tls::ServerAuth::Custom(Arc::new(ambos_tls::UnverifiedServer));
        let config =
            ambos_tls::client_config(auth, ambos_tls::ClientCert::None).map_err(|e| ClientError::Tls(e.to_string()))?;
        CaClient::with_config(base_url, config)
    }

    /// As [`CaClient::new`], with the trusted CAs (and CRLs, if any) in `trust`:
    /// the API's certificate is verified by [`ambos_tls::ServerVerifier`], the
    /// same path verifier the proxy uses (name, path, RFC 5280 rules, CRLs).
    pub fn with_trust(
        base_url: &str,
        trust: Arc<ambos_tls::Trust>,
        identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    ) -> Result<CaClient, ClientError> {
        ambos_tls::install_default_provider();
        let client = match identity {
            Some((chain, key)) => ambos_tls::ClientCert::Chain(chain, key),
            None => ambos_tls::ClientCert::None,
        };
        let config = ambos_tls::client_config(ambos_tls::ServerAuth::Trust(trust), client)
            .map_err(|e| ClientError::Tls(e.to_string()))?;
        CaClient::with_config(base_url, config)
    }

    fn with_config(base_url: &str, config: rustls::ClientConfig) -> Result<CaClient, ClientError> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_secs(10)));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_only()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new()).build(https);
        let bases: Vec<String> =
            base_url.split(',').map(|b| b.trim().trim_end_matches('/').to_string()).filter(|b| !b.is_empty()).collect();
        if bases.is_empty() {
            return Err(ClientError::BadResponse(format!("no CA URL in '{base_url}'")));
        }
        Ok(CaClient { bases, client })
    }

    /// Sends to the first node that can be connected to and does the work.
    /// The next node is tried when one cannot be connected to or answers 503
    /// (its store is down: nothing was done); after a request went out
    /// without an answer only if `retry_safe` (an enrollment: the same
    /// token and CSR sent again get the certificate already bought, never a
    /// second one; a renewal would issue twice).
    async fn send(
        &self,
        method: http::Method,
        path: &str,
        body: Option<Body>,
        retry_safe: bool,
    ) -> Result<(u16, Bytes), ClientError> {
        let mut last = None;
        for (i, base) in self.bases.iter().enumerate() {
            let more = i + 1 < self.bases.len();
            match self.send_to(base, method.clone(), path, body.clone()).await {
                Err((e, sent)) if more && (!sent || retry_safe) => {
                    tracing::warn!("{e}; trying the next CA node");
                    last = Some(Err(e));
                }
                Ok((503, bytes)) if more => {
                    tracing::warn!("{base} answered 503 (store unavailable); trying the next CA node");
                    last = Some(Ok((503, bytes)));
                }
                other => return other.map_err(|(e, _)| e),
            }
        }
        last.expect("at least one CA URL")
    }

    /// One request to one node; the flag says whether it may have gone out
    /// (false: no connection was made).
    async fn send_to(
        &self,
        base: &str,
        method: http::Method,
        path: &str,
        body: Option<Body>,
    ) -> Result<(u16, Bytes), (ClientError, bool)> {
        let url = format!("{base}{path}");
        let mut req = http::Request::builder().method(method).uri(&url);
        let body = match body {
            Some(Body::Json(v)) => {
                req = req.header(http::header::CONTENT_TYPE, "application/json");
                Full::new(Bytes::from(v.to_string()))
            }
            Some(Body::Form(text)) => {
                req = req.header(http::header::CONTENT_TYPE, "application/x-www-form-urlencoded");
                Full::new(Bytes::from(text))
            }
            None => Full::new(Bytes::new()),
        };
        let req = req.body(body).map_err(|e| (ClientError::BadResponse(format!("bad URL {url}: {e}")), true))?;
        let resp = tokio::time::timeout(Duration::from_secs(30), self.client.request(req))
            .await
            .map_err(|_| (ClientError::Unreachable { url: url.clone(), why: "timed out".into() }, true))?
            .map_err(|e| (connect_error(&url, &e), !e.is_connect()))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| (ClientError::Unreachable { url: url.clone(), why: e.to_string() }, true))?
            .to_bytes();
        Ok((status, bytes))
    }

    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        method: http::Method,
        path: &str,
        body: Option<Body>,
        retry_safe: bool,
    ) -> Result<T, ClientError> {
        let (status, bytes) = self.send(method, path, body, retry_safe).await?;
        if !(200..300).contains(&status) {
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            return Err(ClientError::Refused {
                status,
                error: v["error"].as_str().map(str::to_string).unwrap_or_else(|| format!("HTTP {status}")),
                // OAuth's errors (RFC 6749 §5.2) say it in error_description.
                detail: v["detail"].as_str().or(v["error_description"].as_str()).unwrap_or_default().to_string(),
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::BadResponse(e.to_string()))
    }

    pub async fn enroll(&self, token: &str, csr_pem: &str) -> Result<Issued, ClientError> {
        let body = serde_json::json!({"token": token.trim(), "csr": csr_pem});
        self.json(http::Method::POST, "/v1/enroll", Some(Body::Json(body)), true).await
    }

    /// `GET /v1/roots`: the CA's root certificate(s), PEM.
    pub async fn roots(&self) -> Result<String, ClientError> {
        let (status, bytes) = self.send(http::Method::GET, "/v1/roots", None, true).await?;
        if status != 200 {
            return Err(ClientError::BadResponse(format!("GET /v1/roots answered HTTP {status}")));
        }
        String::from_utf8(bytes.to_vec()).map_err(|_| ClientError::BadResponse("/v1/roots is not PEM text".into()))
    }

    /// Renews the certificate we connect with; `csr_pem` carries a new key.
    pub async fn renew(&self, csr_pem: Option<&str>) -> Result<Issued, ClientError> {
        let body = csr_pem.map(|c| serde_json::json!({"csr": c})).unwrap_or_else(|| serde_json::json!({}));
        self.json(http::Method::POST, "/v1/renew", Some(Body::Json(body)), false).await
    }

    pub async fn revoke(&self, serial: &str, reason: &str) -> Result<serde_json::Value, ClientError> {
        let body = serde_json::json!({"serial": serial, "reason": reason});
        self.json(http::Method::POST, "/v1/revoke", Some(Body::Json(body)), false).await
    }

    /// An access token for the certificate we connect with (client
    /// credentials, RFC 8705): the token endpoint's JSON answer.
    pub async fn access_token(
        &self,
        scope: Option<&str>,
        audience: Option<&str>,
    ) -> Result<serde_json::Value, ClientError> {
        let mut form = vec![("grant_type", "client_credentials")];
        form.extend(scope.map(|s| ("scope", s)));
        form.extend(audience.map(|a| ("audience", a)));
        let text = serde_urlencoded::to_string(&form).map_err(|e| ClientError::BadResponse(e.to_string()))?;
        self.json(http::Method::POST, "/v1/oauth/token", Some(Body::Form(text)), false).await
    }
}

/// A request body: JSON for the CA's own endpoints, a form for OAuth's.
#[derive(Clone)]
enum Body {
    Json(serde_json::Value),
    Form(String),
}

/// Why a request to `url` failed: a server certificate we refused, or an
/// alert the CA sent about ours, is named in words
/// (`ambos_tls::HandshakeFailure`); the rest is "cannot reach" with the error chain.
fn connect_error(url: &str, e: &(dyn std::error::Error + 'static)) -> ClientError {
    let mut cur = Some(e);
    while let Some(c) = cur {
        // rustls' error travels inside io::Errors (nested), whose source() skips it.
        let mut inner: &(dyn std::error::Error + 'static) = c;
        loop {
            match inner.downcast_ref::<rustls::Error>() {
                Some(err @ rustls::Error::InvalidCertificate(_)) => {
                    let f = ambos_tls::HandshakeFailure::from_rustls(err);
                    return ClientError::ServerCertificate { url: url.into(), why: format!("{f} ({})", f.label()) };
                }
                Some(err @ rustls::Error::AlertReceived(_)) => {
                    let f = ambos_tls::HandshakeFailure::from_rustls(err);
                    return ClientError::HandshakeRefused { url: url.into(), why: f.to_string() };
                }
                _ => {}
            }
            match inner.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
                Some(i) => inner = i,
                None => break,
            }
        }
        cur = c.source();
    }
    ClientError::Unreachable { url: url.into(), why: ambos_tls::error_chain(e) }
}
