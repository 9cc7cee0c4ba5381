//! `[[route]] token.jwks = "https://..."`: the JWKS is fetched before the
//! proxy listens (it does not start without it) and refreshed while it
//! runs; the keys and the refresh rules are `authorize::jwks`.
use crate::authorize::jwks::PulledJwks;
use crate::runtime::Reloader;
use crate::ProxyError;
use std::sync::Arc;
use std::time::Duration;

/// Refreshes the JWKS of the routes being served, for as long as the proxy runs.
pub fn spawn(reloader: Arc<Reloader>) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let rt = reloader.current.load_full();
            for policy in rt.routes.token_policies() {
                if let Some((remote, refresh, client_ca)) = policy.remote() {
                    remote.refresh_if_due(client_ca, refresh);
                }
            }
        }
    });
}

/// Fetches each route's JWKS URL before the proxy listens: a route whose
/// JWKS cannot be had could only refuse every token, so the proxy does not start.
pub async fn fetch_at_start(config: &crate::ProxyConfig, pulled: &PulledJwks) -> Result<(), ProxyError> {
    for (i, route) in config.routes.iter().enumerate() {
        let Some(crate::authorize::token::JwksSource::Url { url, refresh }) = route.token.as_ref().map(|t| &t.jwks)
        else {
            continue;
        };
        if url.scheme_str() == Some("http") {
            tracing::warn!(
                "route[{i}] {}: JWKS {url} over plain http: whoever is on the path can substitute keys; prefer https",
                route.path
            );
        }
        let remote = pulled.get(url);
        if remote.keys().generation() > 0 {
            continue;
        }
        let fetched = match remote.fetch(&config.tls.client_ca, *refresh).await {
            Ok(()) if remote.keys().generation() == 0 => Err(format!("JWKS {url}: 304 to a request without ETag")),
            r => r.map_err(|e| e.to_string()),
        };
        fetched.map_err(|e| ProxyError::Invalid(format!("route[{i}] {}: cannot load its JWKS: {e}", route.path)))?;
    }
    Ok(())
}
