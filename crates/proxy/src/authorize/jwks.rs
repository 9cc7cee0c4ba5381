//! The keys of a JWKS URL (`[[route]] token.jwks = "https://..."`) and
//! their refreshes: conditional GETs every `jwks_refresh`, and one at once
//! when a token names a key it lacks, at most once per interval however
//! many such tokens come. A failed or unusable refresh keeps the last good
//! keys. [`PulledJwks`] is held by the reloader, so a reload keeps them;
//! the `jwks_pull` module drives the refreshes and the fetch at start.
use super::token::KeySet;
use crate::pull::{get_if_changed, Pull};
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
    /// The last fetch for a token with an unknown key: the next waits an interval.
    last_on_demand: Option<Instant>,
    next_due: Instant,
}

impl RemoteJwks {
    fn new(url: http::Uri) -> RemoteJwks {
        RemoteJwks {
            url,
            keys: ArcSwap::from_pointee(KeySet::empty()),
            state: Mutex::new(State { etag: None, digest: None, last_on_demand: None, next_due: Instant::now() }),
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
    /// unless the keys changed since or such a fetch was made within the
    /// last `refresh` (30 s at most), whatever the periodic refreshes did (a
    /// key rotated in just after one is still used at once). Whether the
    /// keys changed since `seen`.
    pub async fn refresh_for_unknown_key(&self, seen: u64, client_ca: &[PathBuf], refresh: Duration) -> bool {
        let _one = self.fetching.lock().await;
        if self.keys.load().generation() == seen {
            let now = Instant::now();
            let due = {
                let mut st = self.state();
                let due = st.last_on_demand.is_none_or(|t| now.duration_since(t) >= refresh.min(RETRY_MAX));
                if due {
                    st.last_on_demand = Some(now);
                }
                due
            };
            if due {
                self.fetch_or_keep(client_ca, refresh).await;
            }
        }
        self.keys.load().generation() != seen
    }

    /// Starts a refresh if one is due and none is running.
    pub(crate) fn refresh_if_due(self: &Arc<Self>, client_ca: &[PathBuf], refresh: Duration) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authorize::token::{JwksSource, TokenConfig, TokenPolicy, TokenRefusal};
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A JWKS server on 127.0.0.1: serves `doc` with its ETag (304 to a
    /// matching If-None-Match), counts requests and conditional ones.
    #[derive(Clone)]
    struct Server {
        url: http::Uri,
        doc: Arc<Mutex<(String, String)>>,
        hits: Arc<AtomicUsize>,
        conditional: Arc<AtomicUsize>,
    }

    impl Server {
        async fn start(doc: &str, etag: &str) -> Server {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}/jwks", listener.local_addr().unwrap()).parse().unwrap();
            let s = Server {
                url,
                doc: Arc::new(Mutex::new((doc.into(), etag.into()))),
                hits: Default::default(),
                conditional: Default::default(),
            };
            let me = s.clone();
            tokio::spawn(async move {
                while let Ok((mut conn, _)) = listener.accept().await {
                    let me = me.clone();
                    tokio::spawn(async move {
                        let mut head = Vec::new();
                        let mut buf = [0u8; 1024];
                        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                            match conn.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => head.extend_from_slice(&buf[..n]),
                            }
                        }
                        me.hits.fetch_add(1, Ordering::SeqCst);
                        let head = String::from_utf8_lossy(&head).to_lowercase();
                        let (body, etag) = me.doc.lock().unwrap().clone();
                        let asked = head.lines().find_map(|l| l.strip_prefix("if-none-match:")).map(str::trim);
                        if asked.is_some() {
                            me.conditional.fetch_add(1, Ordering::SeqCst);
                        }
                        let reply = if asked == Some(etag.to_lowercase().as_str()) {
                            "HTTP/1.1 304 Not Modified\r\nconnection: close\r\n\r\n".to_string()
                        } else {
                            format!(
                                "HTTP/1.1 200 OK\r\netag: {etag}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                                body.len()
                            )
                        };
                        let _ = conn.write_all(reply.as_bytes()).await;
                    });
                }
            });
            s
        }

        fn serve(&self, doc: &str, etag: &str) {
            *self.doc.lock().unwrap() = (doc.into(), etag.into());
        }
    }

    /// A signing key and its one-key JWKS, with `kid`.
    fn signer(kid: &str) -> (EncodingKey, String) {
        let dir = tempfile::tempdir().unwrap();
        let (pkcs8, path) = ambos_testpki::jwt_signer(dir.path());
        let jwks = std::fs::read_to_string(path).unwrap().replace("\"kid\":\"k1\"", &format!("\"kid\":\"{kid}\""));
        (EncodingKey::from_ec_der(&pkcs8), jwks)
    }

    fn token(key: &EncodingKey, kid: &str) -> http::HeaderValue {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let claims = serde_json::json!({"iss": "https://ca.test", "aud": "payments", "exp": now + 300});
        let header = Header { kid: Some(kid.into()), ..Header::new(Algorithm::ES256) };
        http::HeaderValue::try_from(format!("Bearer {}", jsonwebtoken::encode(&header, &claims, key).unwrap())).unwrap()
    }

    fn policy(server: &Server, pulled: &PulledJwks, refresh: Duration) -> TokenPolicy {
        let config = TokenConfig {
            issuer: "https://ca.test".into(),
            jwks: JwksSource::Url { url: server.url.clone(), refresh },
            audience: "payments".into(),
            scopes: vec![],
            bound: false,
            forward: false,
        };
        TokenPolicy::load(&config, pulled, &[]).unwrap()
    }

    #[tokio::test]
    async fn a_refresh_is_conditional_and_a_bad_document_keeps_the_last_good_keys() {
        let (_, one) = signer("k1");
        let server = Server::start(&one, "\"v1\"").await;
        let pulled = PulledJwks::default();
        let remote = pulled.get(&server.url);
        remote.fetch(&[], Duration::from_secs(60)).await.unwrap();
        assert_eq!((remote.keys().generation(), remote.keys().key_count()), (1, 1));
        remote.fetch(&[], Duration::from_secs(60)).await.unwrap();
        assert_eq!(server.conditional.load(Ordering::SeqCst), 1, "If-None-Match sent");
        assert_eq!(remote.keys().generation(), 1, "304 keeps the keys");
        for (doc, why) in [
            ("garbage", "JWKS http://"),
            (r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#, "shared secret"),
            (r#"{"keys":[]}"#, "no keys"),
        ] {
            server.serve(doc, "\"bad\"");
            let err = remote.fetch(&[], Duration::from_secs(60)).await.unwrap_err().to_string();
            assert!(err.contains(why) && err.contains(&server.url.to_string()), "{doc}: {err}");
            assert_eq!((remote.keys().generation(), remote.keys().key_count()), (1, 1), "{doc}: kept");
        }
        // The same document again without a usable ETag: the keys (and the token cache) stay.
        server.serve(&one, "");
        remote.fetch(&[], Duration::from_secs(60)).await.unwrap();
        assert_eq!(remote.keys().generation(), 1);
    }

    #[tokio::test]
    async fn an_unknown_kid_refreshes_once_per_interval_and_a_removed_key_leaves_the_cache() {
        let ((k1, one), (k2, two)) = (signer("k1"), signer("k2"));
        let server = Server::start(&one, "\"v1\"").await;
        let pulled = PulledJwks::default();
        let policy = Arc::new(policy(&server, &pulled, Duration::from_millis(300)));
        pulled.get(&server.url).fetch(&[], Duration::from_millis(300)).await.unwrap();
        let first = token(&k1, "k1");
        assert!(policy.check_or_refresh(Some(&first), None).await.is_ok());
        assert!(policy.check_or_refresh(Some(&first), None).await.is_ok(), "now from the cache");
        // Key 2 replaces key 1: a k2 token is accepted at once, and the cached
        // k1 token is refused, its key gone.
        server.serve(&two, "\"v2\"");
        let second = token(&k2, "k2");
        assert!(policy.check_or_refresh(Some(&second), None).await.is_ok());
        assert_eq!(server.hits.load(Ordering::SeqCst), 2);
        assert_eq!(policy.check_or_refresh(Some(&first), None).await, Err(TokenRefusal::UnknownKey));
        assert_eq!(server.hits.load(Ordering::SeqCst), 2, "the k1 token came within the interval: no fetch");
        // 50 tokens with random kids at once: none fetches within the interval.
        let flood = (0..50).map(|n| {
            let (policy, t) = (policy.clone(), token(&k2, &format!("random-{n}")));
            tokio::spawn(async move { policy.check_or_refresh(Some(&t), None).await })
        });
        for r in flood.collect::<Vec<_>>() {
            assert_eq!(r.await.unwrap(), Err(TokenRefusal::UnknownKey));
        }
        assert_eq!(server.hits.load(Ordering::SeqCst), 2, "no fetch within the interval");
        // After the interval, the next flood fetches once between them.
        tokio::time::sleep(Duration::from_millis(350)).await;
        let flood = (0..50).map(|n| {
            let (policy, t) = (policy.clone(), token(&k2, &format!("random-{n}")));
            tokio::spawn(async move { policy.check_or_refresh(Some(&t), None).await })
        });
        for r in flood.collect::<Vec<_>>() {
            assert_eq!(r.await.unwrap(), Err(TokenRefusal::UnknownKey));
        }
        assert_eq!(server.hits.load(Ordering::SeqCst), 3, "one fetch for fifty tokens");
        assert_eq!(server.conditional.load(Ordering::SeqCst), 2, "both refreshes were conditional");
    }
}
