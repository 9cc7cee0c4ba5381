//! `crl_url`: pull the CRL from `ambos serve` and refresh it with
//! conditional GETs, so a fleet of proxies learns of revocations without
//! copying files. A failed pull keeps the previous CRL.
use crate::config::CrlSource;
use crate::pull::{get_if_changed, Pull};
use crate::runtime::Reloader;
use crate::ProxyError;
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
    // The first URL, then each further CA node when the one before cannot be
    // had (each node signs its own CRL: its ETag is the first URL's only).
    let mut first_error = None;
    let mut got = None;
    for (i, url) in std::iter::once(&src.url).chain(&src.also).enumerate() {
        let pull =
            Pull { what: "CRL", url, accept: "application/x-pem-file", max_body: usize::MAX, body_timeout: None };
        match get_if_changed(&pull, client_ca, if i == 0 { etag } else { None }).await {
            Ok(answer) => {
                got = Some(answer);
                break;
            }
            Err(e) => {
                if !src.also.is_empty() {
                    tracing::warn!("{e}; trying the next CA node");
                }
                first_error.get_or_insert(e);
            }
        }
    }
    let Some(answer) = got else { return Err(first_error.expect("one URL at least")) };
    // http:// too: distribution points usually are; the CRL is signed, and
    // its signature is checked against the CA in the verified path.
    let Some((body, tag)) = answer else { return Ok(None) };
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
                    let url = src.url.to_string();
                    if let Ok(Ok(())) = tokio::task::spawn_blocking(move || r.set_pulled_crls(&url, crls)).await {
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

/// `crl_from_distribution_points`: fetches the CRLs that verified paths (and
/// the configured CA certificates) name as distribution points — learned
/// when a path's revocation status was unknown — and refreshes each every
/// `crl_refresh` with conditional GETs. A client refused for want of a CRL
/// gets in on its next attempt, once the fetch (within a second) is loaded.
pub fn spawn_distribution_points(reloader: Arc<Reloader>) {
    use tokio::time::Instant;
    tokio::spawn(async move {
        // URL -> (ETag of the last CRL loaded, when to fetch next)
        let mut known: std::collections::BTreeMap<String, (Option<String>, Instant)> = Default::default();
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let (enabled, refresh, urls, client_ca) = {
                let rt = reloader.current.load();
                (
                    rt.config.crl_from_distribution_points,
                    rt.config.crl_refresh,
                    rt.verifier.trust().wanted_crl_urls(),
                    rt.config.tls.client_ca.clone(),
                )
            };
            if !enabled {
                continue;
            }
            for url in urls {
                known.entry(url).or_insert((None, Instant::now()));
            }
            for (url, (etag, due)) in known.iter_mut() {
                if Instant::now() < *due {
                    continue;
                }
                *due = Instant::now() + refresh;
                let Ok(uri) = url.parse::<http::Uri>() else { continue };
                let src = CrlSource { url: uri, also: Vec::new(), refresh };
                let retry = Instant::now() + refresh.min(Duration::from_secs(5));
                match fetch(&src, &client_ca, etag.as_deref()).await {
                    Ok(Some((crls, tag))) => {
                        let r = reloader.clone();
                        let key = url.clone();
                        match tokio::task::spawn_blocking(move || r.set_pulled_crls(&key, crls)).await {
                            Ok(Ok(())) => *etag = Some(tag),
                            _ => *due = retry,
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        metrics::counter!("ambos_proxy_crl_pull_failures_total").increment(1);
                        tracing::warn!("CRL distribution point: {e}; keeping what was loaded");
                        *due = retry;
                    }
                }
            }
        }
    });
}
