//! `[[route]] token.jwks = "https://..."`: the JWKS is fetched before the
//! proxy listens (it does not start without it), refreshed every
//! `jwks_refresh` with conditional GETs, and at once when a token names a
//! key it lacks, at most once per interval however many such tokens come.
//! A failed or unusable refresh keeps the last good keys. The keys live in
//! [`PulledJwks`], held by the reloader, so a reload keeps them.
use crate::authorize::token::KeySet;
use crate::pull::{get_if_changed, Pull};
use crate::runtime::Reloader;
use crate::ProxyError;
use arc_swap::ArcSwap;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// However long `jwks_refresh` is, a token with an unknown key may fetch
/// the JWKS again after this long (a key rotated in is used within it),
/// and a failed fetch is retried after it.
const RETRY_MAX: Duration = Duration::from_secs(30);
/// A JWKS is a few keys; a larger body is not one.
const MAX_BODY: usize = 1 << 20;

/// The JWKS of every URL in use, by URL; kept across reloads.
#[derive(Default)]
pub struct PulledJwks {
    by_url: Mutex<BTreeMap<String, Arc<RemoteJwks>>>,
}

impl PulledJwks {
    /// The JWKS of `url`; not fetched yet (no keys) if new.
    pub fn get(&self, url: &http::Uri) -> Arc<RemoteJwks> {
        let mut by_url = self.by_url.lock().unwrap_or_else(|e| e.into_inner());
        by_url.entry(url.to_string()).or_insert_with(|| Arc::new(RemoteJwks::new(url.clone()))).clone()
    }

    /// Forgets the URLs no route uses any more.
    pub fn retain(&self, in_use: &[String]) {
        self.by_url.lock().unwrap_or_else(|e| e.into_inner()).retain(|url, _| in_use.contains(url));
    }
}

/// One URL's keys and the state of its refreshes.
pub struct RemoteJwks {
    url: http::Uri,
    keys: ArcSwap<KeySet>,
    state: Mutex<State>,
    /// One fetch at a time: tokens waiting on a refresh share it.
    fetching: tokio::sync::Mutex<()>,
}

struct State {
    etag: Option<String>,
    /// SHA-256 of the document the keys came from: the same document
    /// served again (no ETag) keeps the keys and the token cache.
    digest: Option<[u8; 32]>,
    last_attempt: Option<Instant>,
    next_due: Instant,
}

impl RemoteJwks {
    fn new(url: http::Uri) -> RemoteJwks {
        RemoteJwks {
            url,
            keys: ArcSwap::from_pointee(KeySet::empty()),
            state: Mutex::new(State { etag: None, digest: None, last_attempt: None, next_due: Instant::now() }),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    pub fn url(&self) -> &http::Uri {
        &self.url
    }

    pub fn keys(&self) -> Arc<KeySet> {
        self.keys.load_full()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One conditional GET: 304 keeps the keys, a new usable document
    /// replaces them; on error the keys stay and the error says why.
    pub async fn fetch(&self, client_ca: &[PathBuf], refresh: Duration) -> Result<(), ProxyError> {
        let etag = {
            let mut st = self.state();
            st.last_attempt = Some(Instant::now());
            st.next_due = Instant::now() + refresh.min(RETRY_MAX);
            st.etag.clone()
        };
        let pull = Pull {
            what: "JWKS",
            url: &self.url,
            accept: "application/jwk-set+json, application/json",
            max_body: MAX_BODY,
            body_timeout: Some(Duration::from_secs(10)),
        };
        let got = get_if_changed(&pull, client_ca, etag.as_deref()).await?;
        let Some((body, tag)) = got else {
            self.state().next_due = Instant::now() + refresh;
            return Ok(());
        };
        let mut digest = [0u8; 32];
        digest.copy_from_slice(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &body).as_ref());
        let mut st = self.state();
        if st.digest != Some(digest) {
            let generation = self.keys.load().generation() + 1;
            let set = KeySet::parse(&body, &self.url.to_string(), generation).map_err(ProxyError::Invalid)?;
            tracing::info!("JWKS {}: {} key(s) loaded", self.url, set.key_count());
            self.keys.store(Arc::new(set));
            st.digest = Some(digest);
        }
        st.etag = Some(tag).filter(|t| !t.is_empty());
        st.next_due = Instant::now() + refresh;
        Ok(())
    }

    /// [`fetch`](Self::fetch), and a failure logged and counted.
    async fn fetch_or_keep(&self, client_ca: &[PathBuf], refresh: Duration) {
        if let Err(e) = self.fetch(client_ca, refresh).await {
            metrics::counter!("ambos_proxy_jwks_refresh_failures_total").increment(1);
            tracing::warn!("{e}; keeping the last good keys ({})", self.keys.load().key_count());
        }
    }

    /// For a token whose key was not in the key set of `seen`: fetches
    /// unless another fetch came since or one was tried within the last
    /// `refresh` (30 s at most). Whether the keys changed since `seen`.
    pub async fn refresh_for_unknown_key(&self, seen: u64, client_ca: &[PathBuf], refresh: Duration) -> bool {
        let _one = self.fetching.lock().await;
        if self.keys.load().generation() == seen {
            let recent = self.state().last_attempt.is_some_and(|t| t.elapsed() < refresh.min(RETRY_MAX));
            if !recent {
                self.fetch_or_keep(client_ca, refresh).await;
            }
        }
        self.keys.load().generation() != seen
    }

    /// Starts a refresh if one is due and none is running.
    fn refresh_if_due(self: &Arc<Self>, client_ca: &[PathBuf], refresh: Duration) {
        {
            let mut st = self.state();
            if Instant::now() < st.next_due {
                return;
            }
            // Not due again while this one runs; `fetch` sets when it is.
            st.next_due = Instant::now() + refresh.max(RETRY_MAX);
        }
        let (me, client_ca) = (self.clone(), client_ca.to_vec());
        tokio::spawn(async move {
            let _one = me.fetching.lock().await;
            me.fetch_or_keep(&client_ca, refresh).await;
        });
    }
}

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
