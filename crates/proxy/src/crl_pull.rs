//! `crl_url`: pull the CRL from `ambos serve` and refresh it with
//! conditional GETs, so a fleet of proxies learns of revocations without
//! copying files. A failed pull keeps the previous CRL.
use crate::config::CrlSource;
use crate::runtime::Reloader;
use crate::ProxyError;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

type Crls = crate::runtime::PulledCrls;

/// One GET; `Ok(None)` when unchanged (304). The CA's certificate must chain
/// to one of the proxy's client CAs (the same internal root).
pub async fn fetch(
    src: &CrlSource,
    client_ca: &[PathBuf],
    etag: Option<&str>,
) -> Result<Option<(Crls, String)>, ProxyError> {
    let fail = |why: String| ProxyError::Invalid(format!("crl_url {}: {why}", src.url));
    let mut roots = rustls::RootCertStore::empty();
    for p in client_ca {
        for c in ambos_tls::load_certs(p)? {
            roots.add(c).map_err(|e| fail(e.to_string()))?;
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(ambos_tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let https = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config).https_only().enable_http1().build();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(https);
    let mut req = http::Request::get(src.url.clone()).header(http::header::ACCEPT, "application/x-pem-file");
    if let Some(tag) = etag {
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
    let body = resp.into_body().collect().await.map_err(|e| fail(e.to_string()))?.to_bytes();
    let url = src.url.to_string();
    let crls = ambos_tls::parse_crls(&body, Path::new(&url))?.into_iter().map(|c| (url.clone(), c)).collect();
    Ok(Some((crls, tag)))
}

/// Refreshes every `refresh` interval for as long as the proxy runs.
pub fn spawn(reloader: Arc<Reloader>, mut etag: Option<String>) {
    tokio::spawn(async move {
        loop {
            let (src, client_ca) = {
                let rt = reloader.current.load();
                (rt.config.crl_url.clone(), rt.config.tls.client_ca.clone())
            };
            let Some(src) = src else {
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            };
            tokio::time::sleep(src.refresh).await;
            match fetch(&src, &client_ca, etag.as_deref()).await {
                Ok(Some((crls, tag))) => {
                    let r = reloader.clone();
                    if let Ok(Ok(())) = tokio::task::spawn_blocking(move || r.set_pulled_crls(crls)).await {
                        etag = Some(tag);
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    metrics::counter!("ambos_proxy_crl_pull_failures_total").increment(1);
                    tracing::warn!("{e}; keeping the previous CRL");
                }
            }
        }
    });
}
