//! `ambos serve`: the CA's HTTPS API on our own tokio-rustls listener, so
//! handlers see the verified client certificate.
//!
//! Enrollment is the hot path: the token is checked and the certificate
//! signed outside any lock, then a single writer thread spends tokens and
//! stores certificates for every enrollment waiting at that moment in one
//! transaction (one fsync for the group, a savepoint per token), so a token
//! works exactly once however many requests race for it.
use crate::verifier::AnyPurposeVerifier;
use crate::{record_of, token_hash, token_request, CaError, CertSelector, CertificateAuthority};
use ambos_pki::{pem_encode, Authority, LeafRequest, OffsetDateTime, Profile, RevocationReason, San, Serial};
use ambos_store::{AuthorityRole, CertFilter, CertRecord, CertStore, SqliteStore, StoreError};
use arc_swap::ArcSwap;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Settings of `ambos serve`.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    /// Extra names for the API's own certificate (localhost, 127.0.0.1, ::1
    /// and the host name are always in it).
    pub sans: Vec<San>,
    /// nextUpdate of published CRLs; they are re-signed at half of it.
    pub crl_validity: Duration,
    /// Lifetime of the API's own certificate; renewed at 2/3 of it.
    pub server_cert_ttl: Duration,
    pub limits: ServeLimits,
}

/// What one client may cost `ambos serve` (docs/ca-server.md, "Limits").
#[derive(Clone, Debug)]
pub struct ServeLimits {
    /// Connections open at once. At the cap, the oldest connection that is
    /// still in its handshake or waiting for a request is closed to make
    /// room; if every one is busy with a request, the new one is closed.
    pub max_connections: usize,
    /// Connections open at once from one address (IPv6: one /64), with the
    /// same eviction among that address's connections.
    pub max_connections_per_source: usize,
    /// Time for the TLS handshake.
    pub handshake_timeout: Duration,
    /// Time from waiting for a request (a new connection, or a keep-alive
    /// one after its last response) to having its whole head.
    pub header_timeout: Duration,
    /// A connection that neither reads nor writes a byte for this long is closed.
    pub idle_timeout: Duration,
    /// Largest request body (bytes): 413 beyond it.
    pub max_body: usize,
    /// Time to receive a whole request body: 408 after it.
    pub body_timeout: Duration,
    /// Failed enrollment-token attempts from one address within
    /// `token_failure_window` before it is answered 429.
    pub token_failure_limit: usize,
    pub token_failure_window: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            max_connections: 1000,
            max_connections_per_source: 256,
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_body: 64 * 1024,
            body_timeout: Duration::from_secs(10),
            token_failure_limit: 10,
            token_failure_window: Duration::from_secs(60),
        }
    }
}

/// The source a per-address limit counts: the IPv4 address, or the /64 of an IPv6 one.
fn source_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

/// One open connection's slot: `evictable` while it is in its handshake
/// or waiting for a request; `evict` closes it.
struct Slot {
    source: IpAddr,
    evictable: AtomicBool,
    evict: tokio::sync::Notify,
}

/// The open connections, oldest first, and how many each source holds.
struct Slots {
    max: usize,
    per_source: usize,
    inner: Mutex<SlotsInner>,
}

#[derive(Default)]
struct SlotsInner {
    next: u64,
    open: BTreeMap<u64, Arc<Slot>>,
    by_source: HashMap<IpAddr, usize>,
}

impl SlotsInner {
    /// Closes the oldest evictable connection (of `source` if given).
    fn evict_oldest(&mut self, source: Option<IpAddr>) -> bool {
        let victim = self
            .open
            .iter()
            .find(|(_, s)| source.is_none_or(|src| s.source == src) && s.evictable.load(Ordering::Acquire))
            .map(|(id, _)| *id);
        let Some(id) = victim else { return false };
        let slot = self.open.remove(&id).expect("present");
        self.release(slot.source);
        slot.evict.notify_one();
        true
    }

    fn release(&mut self, source: IpAddr) {
        if let Some(n) = self.by_source.get_mut(&source) {
            *n -= 1;
            if *n == 0 {
                self.by_source.remove(&source);
            }
        }
    }
}

/// Removes its slot when the connection ends (unless it was evicted).
struct SlotGuard {
    slots: Arc<Slots>,
    id: u64,
    slot: Arc<Slot>,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        let mut inner = self.slots.inner.lock().expect("slots lock");
        if inner.open.remove(&self.id).is_some() {
            inner.release(self.slot.source);
        }
    }
}

impl Slots {
    /// A slot for a new connection from `ip`, evicting an idle or
    /// handshaking one if a cap is reached; `None`: refuse it.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<SlotGuard> {
        let source = source_of(ip);
        let mut inner = self.inner.lock().expect("slots lock");
        if inner.by_source.get(&source).copied().unwrap_or(0) >= self.per_source && !inner.evict_oldest(Some(source)) {
            metrics::counter!("ambos_ca_connections_refused_total", "reason" => "per_source").increment(1);
            return None;
        }
        if inner.open.len() >= self.max && !inner.evict_oldest(None) {
            metrics::counter!("ambos_ca_connections_refused_total", "reason" => "max_connections").increment(1);
            return None;
        }
        let slot = Arc::new(Slot { source, evictable: AtomicBool::new(true), evict: tokio::sync::Notify::new() });
        let id = inner.next;
        inner.next += 1;
        inner.open.insert(id, slot.clone());
        *inner.by_source.entry(source).or_insert(0) += 1;
        Some(SlotGuard { slots: self.clone(), id, slot })
    }
}

/// Failed enrollment-token attempts per source, within the window.
struct TokenFailures {
    limit: usize,
    window: Duration,
    seen: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

impl TokenFailures {
    /// `Some(seconds to wait)` when `ip` has used up its failures.
    fn blocked(&self, ip: IpAddr) -> Option<u64> {
        let mut seen = self.seen.lock().expect("failures lock");
        let q = seen.get_mut(&source_of(ip))?;
        let now = Instant::now();
        while q.front().is_some_and(|t| now.duration_since(*t) >= self.window) {
            q.pop_front();
        }
        if q.len() < self.limit {
            return None;
        }
        let oldest = *q.front()?;
        let wait = self.window.saturating_sub(now.duration_since(oldest));
        Some(wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
    }

    fn record(&self, ip: IpAddr) {
        let mut seen = self.seen.lock().expect("failures lock");
        let now = Instant::now();
        if seen.len() >= 100_000 {
            let window = self.window;
            seen.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < window));
        }
        let q = seen.entry(source_of(ip)).or_default();
        q.push_back(now);
        while q.len() > self.limit.max(1) {
            q.pop_front();
        }
    }
}

/// The client's address, for per-source limits and logs.
#[derive(Clone, Copy)]
struct PeerAddr(SocketAddr);

/// Counts the bytes moved through a connection: the idle watchdog closes
/// it when none moved for `idle_timeout`.
struct Activity<T> {
    io: T,
    last: Arc<AtomicU64>,
    start: Instant,
}

impl<T> Activity<T> {
    fn touch(&self) {
        self.last.store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Activity<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.touch();
        }
        r
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Activity<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(r, std::task::Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// A response body that marks its connection evictable again when hyper
/// has written it (or dropped it).
struct UntilWritten {
    body: axum::body::Body,
    slot: Arc<Slot>,
}

impl hyper::body::Body for UntilWritten {
    type Data = Bytes;
    type Error = axum::Error;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, axum::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }
    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }
    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

impl Drop for UntilWritten {
    fn drop(&mut self) {
        self.slot.evictable.store(true, Ordering::Release);
    }
}

/// Resolves when `last` (ms since `start`) is `idle` old.
async fn idle_for(last: Arc<AtomicU64>, start: Instant, idle: Duration) {
    loop {
        let since = start.elapsed().saturating_sub(Duration::from_millis(last.load(Ordering::Relaxed)));
        if since >= idle {
            return;
        }
        tokio::time::sleep(idle - since + Duration::from_millis(10)).await;
    }
}

/// Reads the whole request body within the limits: 413 past `max_body`,
/// 408 past `body_timeout`.
async fn read_body(body: hyper::body::Incoming, limits: &ServeLimits) -> Result<Bytes, ApiError> {
    use http_body_util::BodyExt;
    let limited = http_body_util::Limited::new(body, limits.max_body);
    match tokio::time::timeout(limits.body_timeout, limited.collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body too large",
            format!("at most {} bytes", limits.max_body),
        )),
        Ok(Err(e)) => Err(ApiError::new(StatusCode::BAD_REQUEST, "bad request", e.to_string())),
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body too slow",
            format!("the body must arrive within {} s", limits.body_timeout.as_secs_f64()),
        )),
    }
}

/// The verified client certificate of a connection, if any.
#[derive(Clone)]
pub struct Peer(pub Option<Arc<PeerCert>>);

pub struct PeerCert {
    pub serial: String,
    pub der: Vec<u8>,
}

struct CrlDoc {
    der: Bytes,
    pem: Bytes,
    /// The root's CRL (covering the intermediate), DER and PEM.
    root_der: Bytes,
    root_pem: Bytes,
    etag: String,
}

struct SpendJob {
    hash: String,
    record: CertRecord,
    reply: oneshot::Sender<Result<(), StoreError>>,
}

struct CaState {
    ca: Mutex<CertificateAuthority>,
    signer: Authority,
    root_signer: Authority,
    root_pem: String,
    crl: ArcSwap<CrlDoc>,
    crl_validity: Duration,
    spend: mpsc::Sender<SpendJob>,
    failures: TokenFailures,
}

/// A JSON error: `{"error": "...", "detail": "..."}` with a fitting status.
pub struct ApiError {
    status: StatusCode,
    error: &'static str,
    detail: String,
}

impl ApiError {
    fn new(status: StatusCode, error: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError { status, error, detail: detail.into() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({"error": self.error, "detail": self.detail}))).into_response()
    }
}

impl From<CaError> for ApiError {
    fn from(e: CaError) -> ApiError {
        use ambos_pki::PkiError;
        match e {
            CaError::Store(StoreError::UnknownToken) => ApiError::new(StatusCode::UNAUTHORIZED, "invalid token", ""),
            CaError::Store(StoreError::TokenSpent) => {
                ApiError::new(StatusCode::CONFLICT, "token already used", "a token buys exactly one certificate")
            }
            CaError::Store(StoreError::TokenExpired) => ApiError::new(StatusCode::GONE, "token expired", ""),
            CaError::Store(StoreError::UnknownCertificate(s)) => {
                ApiError::new(StatusCode::NOT_FOUND, "unknown certificate", s)
            }
            CaError::Store(StoreError::AlreadyRevoked(s)) => ApiError::new(StatusCode::CONFLICT, "already revoked", s),
            CaError::Pki(p @ PkiError::CsrNotAllowed(..)) => {
                ApiError::new(StatusCode::FORBIDDEN, "names not allowed", p.to_string())
            }
            CaError::Pki(
                p @ (PkiError::BadCsrSignature
                | PkiError::MalformedCsr(_)
                | PkiError::MalformedPem(_)
                | PkiError::MissingPemItem(_)
                | PkiError::InvalidSan { .. }
                | PkiError::InvalidSerial(_)),
            ) => ApiError::new(StatusCode::BAD_REQUEST, "bad request", p.to_string()),
            other => {
                tracing::error!("internal error: {other}");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error", other.to_string())
            }
        }
    }
}

fn now() -> OffsetDateTime {
    let t = OffsetDateTime::now_utc();
    t.replace_nanosecond(0).unwrap_or(t)
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time_format()).unwrap_or_default()
}

fn time_format() -> time::format_description::well_known::Rfc3339 {
    time::format_description::well_known::Rfc3339
}

/// Builds the CRL document: DER of the intermediate's CRL, PEM of both;
/// the root's alone for `/v1/crl/root` (the intermediate's distribution point).
fn build_crl(
    st_ca: &mut CertificateAuthority,
    signer: &Authority,
    root: &Authority,
    validity: Duration,
) -> Result<CrlDoc, CaError> {
    let der = st_ca.crl(AuthorityRole::Intermediate, signer, validity)?;
    let root_der = st_ca.crl(AuthorityRole::Root, root, validity)?;
    let mut pem = pem_encode("X509 CRL", &der);
    let root_pem = pem_encode("X509 CRL", &root_der);
    pem.push_str(&root_pem);
    let etag = format!("\"{}\"", &ambos_pki::sha256_hex(pem.as_bytes())[..32]);
    Ok(CrlDoc {
        der: der.into(),
        pem: pem.into_bytes().into(),
        root_der: root_der.into(),
        root_pem: root_pem.into_bytes().into(),
        etag,
    })
}

impl CaState {
    fn refresh_crl(&self) -> Result<(), CaError> {
        let mut ca = self.ca.lock().expect("ca lock");
        let doc = build_crl(&mut ca, &self.signer, &self.root_signer, self.crl_validity)?;
        self.crl.store(Arc::new(doc));
        Ok(())
    }
}

/// Issues the API's own server certificate and builds its TLS config.
fn server_tls(
    ca: &mut CertificateAuthority,
    signer: &Authority,
    opts: &ServeOptions,
) -> Result<(Arc<rustls::ServerConfig>, Duration), CaError> {
    let mut req = LeafRequest::new("ambos-serve", Profile::Server);
    req.sans = vec![
        San::Dns("localhost".into()),
        San::Ip([127, 0, 0, 1].into()),
        San::Ip(std::net::Ipv6Addr::LOCALHOST.into()),
    ];
    if let Some(h) = std::fs::read_to_string("/etc/hostname").ok().and_then(|h| San::from_host(h.trim())) {
        req.sans.push(h);
    }
    req.sans.extend(opts.sans.iter().cloned());
    req.ttl = opts.server_cert_ttl;
    let issued = ca.issue(signer, &[req])?.remove(0);
    let key = issued.key.as_ref().expect("issued with a key");
    let chain = vec![
        rustls_pki_types::CertificateDer::from(issued.cert_der.clone()),
        rustls_pki_types::CertificateDer::from(signer.cert_der().to_vec()),
    ];
    let verifier = Arc::new(AnyPurposeVerifier::new(ca.root_der()).map_err(|e| CaError::Tls(e.to_string()))?);
    let mut config = rustls::ServerConfig::builder_with_provider(ambos_tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| CaError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, rustls_pki_types::PrivateKeyDer::Pkcs8(key.pkcs8_der().to_vec().into()))
        .map_err(|e| CaError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let lifetime = (issued.not_after - issued.not_before).unsigned_abs();
    Ok((Arc::new(config), lifetime))
}

/// The group-commit writer: spends tokens and stores certificates for all
/// enrollments waiting, in one transaction.
fn spawn_writer(dir: PathBuf) -> Result<mpsc::Sender<SpendJob>, CaError> {
    let mut store = SqliteStore::open(&dir, false)?;
    let (tx, rx) = mpsc::channel::<SpendJob>();
    std::thread::Builder::new()
        .name("ambos-enroll-writer".into())
        .spawn(move || {
            while let Ok(first) = rx.recv() {
                let mut jobs = vec![first];
                while jobs.len() < 512 {
                    match rx.try_recv() {
                        Ok(j) => jobs.push(j),
                        Err(_) => break,
                    }
                }
                let spends: Vec<(String, CertRecord)> =
                    jobs.iter().map(|j| (j.hash.clone(), j.record.clone())).collect();
                match store.spend_tokens(&spends, now().unix_timestamp()) {
                    Ok(results) => {
                        for (job, r) in jobs.into_iter().zip(results) {
                            let _ = job.reply.send(r);
                        }
                    }
                    Err(e) => {
                        tracing::error!("enrollment transaction failed: {e}");
                        for job in jobs {
                            let _ = job.reply.send(Err(StoreError::Corrupt(e.to_string())));
                        }
                    }
                }
            }
        })
        .map_err(|e| CaError::Tls(e.to_string()))?;
    Ok(tx)
}

/// Runs the CA API until `shutdown` resolves.
pub async fn serve(
    dir: &Path,
    passphrase: Option<&[u8]>,
    opts: ServeOptions,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), CaError> {
    ambos_tls::install_default_provider();
    let prometheus = {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let _ = metrics::set_global_recorder(recorder);
        handle
    };
    let mut ca = CertificateAuthority::open(dir)?;
    let signer = ca.authority(AuthorityRole::Intermediate, passphrase)?;
    let root_signer = ca.authority(AuthorityRole::Root, passphrase)?;
    let (tls, lifetime) = server_tls(&mut ca, &signer, &opts)?;
    let crl = build_crl(&mut ca, &signer, &root_signer, opts.crl_validity)?;
    let root_pem = pem_encode("CERTIFICATE", ca.root_der());
    let state = Arc::new(CaState {
        ca: Mutex::new(ca),
        signer,
        root_signer,
        root_pem,
        crl: ArcSwap::from_pointee(crl),
        crl_validity: opts.crl_validity,
        spend: spawn_writer(dir.to_path_buf())?,
        failures: TokenFailures {
            limit: opts.limits.token_failure_limit,
            window: opts.limits.token_failure_window,
            seen: Mutex::new(HashMap::new()),
        },
    });
    let tls = Arc::new(ArcSwap::from(tls));
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|e| CaError::Bind { addr: opts.listen, why: e.to_string() })?;
    tracing::info!("CA API listening on https://{}", listener.local_addr().unwrap_or(opts.listen));

    // Re-sign the CRL at half its validity; renew our own certificate at 2/3 of its life.
    {
        let state = state.clone();
        let every = (opts.crl_validity / 2).max(Duration::from_secs(1));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let st = state.clone();
                if let Ok(Err(e)) = tokio::task::spawn_blocking(move || st.refresh_crl()).await {
                    tracing::error!("CRL refresh failed: {e}");
                }
            }
        });
    }
    {
        let state = state.clone();
        let tls = tls.clone();
        let opts = opts.clone();
        tokio::spawn(async move {
            let mut wait = lifetime * 2 / 3;
            loop {
                tokio::time::sleep(wait.max(Duration::from_secs(1))).await;
                let st = state.clone();
                let o = opts.clone();
                let renewed = tokio::task::spawn_blocking(move || {
                    let mut ca = st.ca.lock().expect("ca lock");
                    server_tls(&mut ca, &st.signer, &o)
                })
                .await;
                match renewed {
                    Ok(Ok((config, life))) => {
                        tls.store(config);
                        wait = life * 2 / 3;
                        tracing::info!("renewed the API's own certificate");
                    }
                    Ok(Err(e)) => {
                        tracing::error!("renewing the API's own certificate failed: {e}");
                        wait = Duration::from_secs(30);
                    }
                    Err(_) => wait = Duration::from_secs(30),
                }
            }
        });
    }

    let router = Router::new()
        .route("/v1/roots", get(roots))
        .route("/v1/crl", get(crl_handler))
        .route("/v1/crl/root", get(root_crl_handler))
        .route("/v1/enroll", post(enroll))
        .route("/v1/renew", post(renew))
        .route("/v1/revoke", post(revoke))
        .route("/v1/certs", get(certs))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(move || std::future::ready(prometheus.render())))
        .with_state(state);

    let limits = Arc::new(opts.limits.clone());
    let slots = Arc::new(Slots {
        max: limits.max_connections.max(1),
        per_source: limits.max_connections_per_source.max(1),
        inner: Mutex::new(SlotsInner::default()),
    });
    tokio::pin!(shutdown);
    loop {
        let (stream, addr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        // Over a cap with nothing to evict: closed at once.
        let Some(guard) = slots.admit(addr.ip()) else { continue };
        let _ = stream.set_nodelay(true);
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.load_full());
        let router = router.clone();
        let limits = limits.clone();
        tokio::spawn(async move {
            let slot = guard.slot.clone();
            let start = Instant::now();
            let last = Arc::new(AtomicU64::new(0));
            let stream = Activity { io: stream, last: last.clone(), start };
            let serve = async {
                let limits = &limits;
                let tls = match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(t)) => t,
                    Ok(Err(e)) => {
                        tracing::debug!("handshake failed: {}", ambos_tls::HandshakeFailure::from_io(&e));
                        return;
                    }
                    Err(_) => return,
                };
                let peer = Peer(tls.get_ref().1.peer_certificates().and_then(|c| c.first()).and_then(|der| {
                    let id = ambos_tls::Identity::from_der(der).ok()?;
                    Some(Arc::new(PeerCert { serial: id.serial, der: der.to_vec() }))
                }));
                let busy = slot.clone();
                let svc_limits = limits.clone();
                let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let mut router = router.clone();
                    let (peer, limits, busy) = (peer.clone(), svc_limits.clone(), busy.clone());
                    async move {
                        busy.evictable.store(false, Ordering::Release);
                        let (parts, body) = req.into_parts();
                        let response = match read_body(body, &limits).await {
                            Ok(bytes) => {
                                let mut req = hyper::Request::from_parts(parts, axum::body::Body::from(bytes));
                                req.extensions_mut().insert(peer);
                                req.extensions_mut().insert(PeerAddr(addr));
                                let Ok(r) = tower_service::Service::call(&mut router, req).await;
                                r
                            }
                            Err(e) => e.into_response(),
                        };
                        // Evictable again once the response is written (or dropped).
                        Ok::<_, std::convert::Infallible>(response.map(|body| UntilWritten { body, slot: busy }))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(limits.header_timeout)
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
            };
            tokio::select! {
                _ = serve => {}
                _ = slot.evict.notified() => metrics::counter!("ambos_ca_connections_evicted_total").increment(1),
                _ = idle_for(last, start, limits.idle_timeout) => {}
            }
            drop(guard);
        });
    }
    Ok(())
}

async fn roots(State(st): State<Arc<CaState>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/x-pem-file")], st.root_pem.clone())
}

async fn crl_handler(State(st): State<Arc<CaState>>, headers: HeaderMap) -> Response {
    crl_response(&st, &headers, false)
}

async fn root_crl_handler(State(st): State<Arc<CaState>>, headers: HeaderMap) -> Response {
    crl_response(&st, &headers, true)
}

/// The intermediate's CRL (PEM: with the root's), or the root's alone; ETag
/// for conditional GETs (the same for both: they are published together).
fn crl_response(st: &CaState, headers: &HeaderMap, root: bool) -> Response {
    let doc = st.crl.load_full();
    if headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(doc.etag.as_str()) {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, doc.etag.clone())]).into_response();
    }
    let pem = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("pem"));
    let (ctype, body) = match (pem, root) {
        (true, false) => ("application/x-pem-file", doc.pem.clone()),
        (false, false) => ("application/pkix-crl", doc.der.clone()),
        (true, true) => ("application/x-pem-file", doc.root_pem.clone()),
        (false, true) => ("application/pkix-crl", doc.root_der.clone()),
    };
    ([(header::CONTENT_TYPE, ctype.to_string()), (header::ETAG, doc.etag.clone())], body).into_response()
}

#[derive(Deserialize)]
struct EnrollBody {
    token: String,
    csr: String,
}

#[derive(Deserialize)]
struct RenewBody {
    csr: Option<String>,
}

fn issued_json(name: &str, issued: &ambos_pki::IssuedCert, signer: &Authority, root_pem: &str) -> serde_json::Value {
    json!({
        "name": name,
        "serial": issued.serial.to_hex(),
        "not_after": rfc3339(issued.not_after),
        "certificate": signer.chain_pem(&issued.cert_der),
        "ca": root_pem,
    })
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad request", e.to_string()))
}

fn csr_der(pem: &str) -> Result<Vec<u8>, ApiError> {
    ambos_pki::csr_from_pem_or_der(pem.as_bytes()).map_err(|e| ApiError::from(CaError::from(e)))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, ApiError> + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error", e.to_string()))?
}

/// Whether an enrollment failed on its token (unknown, spent or expired).
fn token_failed(e: &ApiError) -> bool {
    matches!(e.status, StatusCode::UNAUTHORIZED | StatusCode::CONFLICT | StatusCode::GONE)
        && matches!(e.error, "invalid token" | "token already used" | "token expired")
}

/// `/v1/enroll`: after `token_failure_limit` failed tokens from one source
/// within the window, 429 with `Retry-After` (the token is not even looked
/// at). Failures are logged with the peer address, never the token.
async fn enroll(
    State(st): State<Arc<CaState>>,
    Extension(PeerAddr(addr)): Extension<PeerAddr>,
    body: Bytes,
) -> Result<Response, ApiError> {
    if let Some(wait) = st.failures.blocked(addr.ip()) {
        metrics::counter!("ambos_ca_enrollments_total", "result" => "throttled").increment(1);
        tracing::warn!(peer = %addr, "enrollment refused: too many failed tokens from this address");
        let e = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too many failed tokens", format!("retry in {wait} s"));
        let mut r = e.into_response();
        r.headers_mut().insert(header::RETRY_AFTER, wait.max(1).into());
        return Ok(r);
    }
    let result = enroll_with_token(st.clone(), body).await;
    if let Err(e) = &result {
        if token_failed(e) {
            st.failures.record(addr.ip());
            metrics::counter!("ambos_ca_token_failures_total").increment(1);
            tracing::warn!(peer = %addr, why = e.error, "enrollment with a failed token");
        }
    }
    result
}

async fn enroll_with_token(st: Arc<CaState>, body: Bytes) -> Result<Response, ApiError> {
    let body: EnrollBody = parse_json(&body)?;
    let der = csr_der(&body.csr)?;
    let hash = token_hash(&body.token);
    let st2 = st.clone();
    let h = hash.clone();
    let (issued, record) = blocking(move || {
        let token = st2.ca.lock().expect("ca lock").store().token(&h).map_err(CaError::from)?;
        let token = token.ok_or(CaError::Store(StoreError::UnknownToken))?;
        if token.spent_at.is_some() {
            return Err(CaError::Store(StoreError::TokenSpent).into());
        }
        if token.expires_at <= now().unix_timestamp() {
            return Err(CaError::Store(StoreError::TokenExpired).into());
        }
        let req = token_request(&token)?;
        let at = now();
        let issued = st2.signer.issue_for_csr(&req, &der, at).map_err(CaError::from)?;
        let record = record_of(&issued, AuthorityRole::Intermediate, at);
        Ok((issued, record))
    })
    .await?;
    let (reply, answer) = oneshot::channel();
    st.spend
        .send(SpendJob { hash, record, reply })
        .map_err(|_| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store unavailable", ""))?;
    let spent = answer.await.map_err(|_| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store unavailable", ""))?;
    match spent {
        Ok(()) => {
            metrics::counter!("ambos_ca_enrollments_total", "result" => "ok").increment(1);
            Ok((StatusCode::CREATED, Json(issued_json(&issued.name, &issued, &st.signer, &st.root_pem)))
                .into_response())
        }
        Err(e) => {
            metrics::counter!("ambos_ca_enrollments_total", "result" => "refused").increment(1);
            Err(CaError::Store(e).into())
        }
    }
}

fn peer_record(st: &CaState, peer: &Peer) -> Result<(Arc<PeerCert>, CertRecord), ApiError> {
    let p = peer.0.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "client certificate required",
            "connect with your current certificate (mTLS)",
        )
    })?;
    let rec = st.ca.lock().expect("ca lock").store().cert_by_serial(&p.serial).map_err(CaError::from)?;
    let rec = rec.ok_or_else(|| ApiError::new(StatusCode::FORBIDDEN, "unknown certificate", p.serial.clone()))?;
    if rec.revocation.is_some() {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "certificate revoked", p.serial.clone()));
    }
    Ok((p, rec))
}

async fn renew(
    State(st): State<Arc<CaState>>,
    Extension(peer): Extension<Peer>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body: RenewBody = if body.is_empty() { RenewBody { csr: None } } else { parse_json(&body)? };
    let csr = body.csr.as_deref().map(csr_der).transpose()?;
    let st2 = st.clone();
    let out = blocking(move || {
        let (p, rec) = peer_record(&st2, &peer)?;
        let profile: Profile = rec
            .profile
            .parse()
            .map_err(|_| ApiError::new(StatusCode::FORBIDDEN, "not renewable", format!("profile {}", rec.profile)))?;
        let id = ambos_tls::Identity::from_der(&p.der)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad certificate", e.to_string()))?;
        let mut req = LeafRequest::new(&rec.name, profile);
        req.sans = rec.sans.iter().filter_map(|s| s.parse().ok()).collect();
        req.organizational_units = id.ou.clone();
        req.organization = id.o.first().cloned();
        // Same lifetime as the certificate being renewed.
        req.ttl = ambos_pki::issued_ttl(rec.not_before, rec.not_after);
        let at = now();
        let issued = match &csr {
            Some(der) => st2.signer.issue_for_csr(&req, der, at),
            None => {
                let (_, cert) = x509_parser::parse_x509_certificate(&p.der)
                    .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad certificate", e.to_string()))?;
                st2.signer.issue_for_spki(&req, cert.public_key().raw, at)
            }
        }
        .map_err(CaError::from)?;
        let mut record = record_of(&issued, AuthorityRole::Intermediate, at);
        record.admin = rec.admin;
        st2.ca.lock().expect("ca lock").store_mut().insert_certs(&[record]).map_err(CaError::from)?;
        Ok(issued)
    })
    .await?;
    metrics::counter!("ambos_ca_renewals_total").increment(1);
    Ok(Json(issued_json(&out.name, &out, &st.signer, &st.root_pem)).into_response())
}

fn require_admin(st: &CaState, peer: &Peer) -> Result<(), ApiError> {
    let (_, rec) = peer_record(st, peer)?;
    if !rec.admin {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "admin certificate required",
            "issue one with `ambos issue client NAME --admin`",
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
struct RevokeBody {
    serial: String,
    reason: Option<String>,
}

async fn revoke(
    State(st): State<Arc<CaState>>,
    Extension(peer): Extension<Peer>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body: RevokeBody = parse_json(&body)?;
    let st2 = st.clone();
    let rec = blocking(move || {
        require_admin(&st2, &peer)?;
        let serial: Serial = body.serial.parse().map_err(CaError::from)?;
        let reason: RevocationReason = match &body.reason {
            Some(r) => r.parse().map_err(|e: String| ApiError::new(StatusCode::BAD_REQUEST, "bad request", e))?,
            None => RevocationReason::Unspecified,
        };
        let rec = st2.ca.lock().expect("ca lock").revoke(&CertSelector::Serial(serial), reason)?;
        // Publish at once: proxies pulling /v1/crl see it on their next refresh.
        st2.refresh_crl()?;
        Ok(rec)
    })
    .await?;
    metrics::counter!("ambos_ca_revocations_total").increment(1);
    Ok(Json(json!({"serial": rec.serial, "name": rec.name, "revoked": true})).into_response())
}

#[derive(Deserialize)]
struct CertsQuery {
    name: Option<String>,
    revoked: Option<bool>,
}

async fn certs(
    State(st): State<Arc<CaState>>,
    Extension(peer): Extension<Peer>,
    Query(q): Query<CertsQuery>,
) -> Result<Response, ApiError> {
    let list = blocking(move || {
        require_admin(&st, &peer)?;
        let filter = CertFilter { name: q.name, revoked_only: q.revoked.unwrap_or(false), ..CertFilter::default() };
        Ok(st.ca.lock().expect("ca lock").list(&filter)?)
    })
    .await?;
    Ok(Json(list).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(max: usize, per_source: usize) -> Arc<Slots> {
        Arc::new(Slots { max, per_source, inner: Mutex::new(SlotsInner::default()) })
    }

    #[test]
    fn at_the_cap_the_oldest_idle_connection_makes_room() {
        let s = slots(3, 10);
        let a: IpAddr = [10, 0, 0, 1].into();
        let first = s.admit(a).unwrap();
        let second = s.admit(a).unwrap();
        let third = s.admit(a).unwrap();
        first.slot.evictable.store(false, Ordering::Release); // busy with a request
        let fourth = s.admit(a).unwrap(); // evicts `second`, the oldest idle one
        assert_eq!(s.inner.lock().unwrap().open.len(), 3);
        assert!(!s.inner.lock().unwrap().open.contains_key(&second.id));
        drop(second); // its task ends: nothing more to release
        assert_eq!(s.inner.lock().unwrap().by_source[&a], 3);
        for g in [&third, &fourth] {
            g.slot.evictable.store(false, Ordering::Release);
        }
        assert!(s.admit(a).is_none(), "all busy: refused");
        drop((first, third, fourth));
        let inner = s.inner.lock().unwrap();
        assert!(inner.open.is_empty() && inner.by_source.is_empty());
    }

    #[test]
    fn the_per_source_cap_evicts_only_that_sources_connections() {
        let s = slots(10, 2);
        let (a, b): (IpAddr, IpAddr) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into());
        let _b1 = s.admit(b).unwrap();
        let a1 = s.admit(a).unwrap();
        let _a2 = s.admit(a).unwrap();
        let _a3 = s.admit(a).unwrap();
        let inner = s.inner.lock().unwrap();
        assert!(!inner.open.contains_key(&a1.id));
        assert_eq!((inner.by_source[&a], inner.by_source[&b]), (2, 1));
        // IPv6: one /64 is one source.
        assert_eq!(source_of("2001:db8::1".parse().unwrap()), source_of("2001:db8::ffff:1:2".parse().unwrap()));
        assert_ne!(source_of("2001:db8::1".parse().unwrap()), source_of("2001:db8:0:1::1".parse().unwrap()));
    }

    #[test]
    fn token_failures_block_after_the_limit_until_the_window_passes() {
        let f = TokenFailures { limit: 3, window: Duration::from_millis(300), seen: Mutex::new(HashMap::new()) };
        let (a, b): (IpAddr, IpAddr) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into());
        for _ in 0..3 {
            assert!(f.blocked(a).is_none());
            f.record(a);
        }
        assert_eq!(f.blocked(a), Some(1));
        assert!(f.blocked(b).is_none());
        std::thread::sleep(Duration::from_millis(350));
        assert!(f.blocked(a).is_none());
    }
}
