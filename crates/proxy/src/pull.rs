//! One conditional GET, shared by what the proxy pulls over HTTP(S): CRLs
//! (`crl_pull`) and JWKS (`jwks_pull`). The server's certificate must chain
//! to one of the proxy's client CAs: it is ambos's own CA server.
use crate::ProxyError;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use std::path::PathBuf;
use std::time::Duration;

/// What is pulled, for error messages and the request.
pub struct Pull<'a> {
    /// "CRL", "JWKS": starts every error message, with the URL.
    pub what: &'a str,
    pub url: &'a http::Uri,
    pub accept: &'static str,
    /// A larger body is an error (a CRL may be tens of MB; a JWKS is small).
    pub max_body: usize,
    /// How long the body may take after the head (10 s), if limited.
    pub body_timeout: Option<Duration>,
}

/// GETs `pull.url` (`If-None-Match: etag` when given); `Ok(None)` when
/// unchanged (304), else the body and its ETag (empty when none).
pub async fn get_if_changed(
    pull: &Pull<'_>,
    client_ca: &[PathBuf],
    etag: Option<&str>,
) -> Result<Option<(Bytes, String)>, ProxyError> {
    let fail = |why: String| ProxyError::Invalid(format!("{} {}: {why}", pull.what, pull.url));
    let roots = ambos_tls::root_store(client_ca)?;
    let config = ambos_tls::client_config(ambos_tls::ServerAuth::Roots(roots), ambos_tls::ClientCert::None)
        .map_err(|e| fail(e.to_string()))?;
    let https =
        hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config).https_or_http().enable_http1().build();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(https);
    let mut req = http::Request::get(pull.url.clone()).header(http::header::ACCEPT, pull.accept);
    if let Some(tag) = etag.filter(|t| !t.is_empty()) {
        req = req.header(http::header::IF_NONE_MATCH, tag);
    }
    let req = req.body(Empty::<Bytes>::new()).map_err(|e| fail(e.to_string()))?;
    let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .map_err(|_| fail("timed out".into()))?
        .map_err(|e| fail(e.to_string()))?;
    if resp.status() == http::StatusCode::NOT_MODIFIED {
        return Ok(None);
    }
    if !resp.status().is_success() {
        return Err(fail(format!("HTTP {}", resp.status())));
    }
    let tag = resp.headers().get(http::header::ETAG).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let body = Limited::new(resp.into_body(), pull.max_body).collect();
    let body = match pull.body_timeout {
        Some(t) => tokio::time::timeout(t, body).await.map_err(|_| fail("timed out reading the body".into()))?,
        None => body.await,
    };
    let body = body.map_err(|e| fail(format!("reading the body: {e}")))?.to_bytes();
    Ok(Some((body, tag)))
}
