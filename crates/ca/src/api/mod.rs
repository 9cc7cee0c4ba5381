//! `ambos serve`: the CA's HTTPS API on our own tokio-rustls listener, so
//! handlers see the verified client certificate. One module per endpoint;
//! a handler parses the request, calls [`CertificateAuthority`], which owns
//! the rules and the store, and answers (errors: [`ApiError`]).
use crate::verifier::AnyPurposeVerifier;
use crate::{CaError, CertificateAuthority};
use ambos_pki::{pem_encode, Authority, IssuedCert, LeafRequest, Profile, San};
use ambos_store::AuthorityRole;
use ambos_store::StoreLocation;
use arc_swap::ArcSwap;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use limits::{idle_for, read_body, Activity, PeerAddr, Slots, TokenFailures, UntilWritten};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

mod certs;
mod crl;
mod enroll;
mod error;
mod limits;
mod oauth;
mod options;
mod renew;
mod revoke;
mod ui;

use error::ApiError;
pub use limits::ServeLimits;
pub use options::ServeFlags;

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
    /// The OAuth issuer identifier (`iss` of access tokens, RFC 8414);
    /// `None`: `https://NAME:PORT` with the first `--san` DNS name, else localhost.
    pub issuer: Option<String>,
    /// Lifetime of access tokens (at most [`crate::oauth::MAX_TOKEN_TTL`]).
    pub token_ttl: Duration,
}

/// The verified client certificate of a connection, if any.
#[derive(Clone)]
struct Peer(Option<Arc<PeerCert>>);

struct PeerCert {
    serial: String,
    der: Vec<u8>,
    /// What the console's form tokens are bound to.
    sha256: String,
}

impl Peer {
    /// The client's end-entity certificate, verified by the handshake.
    fn of(der: Option<&rustls_pki_types::CertificateDer<'_>>) -> Peer {
        Peer(der.and_then(|der| {
            let id = ambos_tls::Identity::from_der(der).ok()?;
            Some(Arc::new(PeerCert { serial: id.serial, der: der.to_vec(), sha256: ambos_pki::sha256_hex(der) }))
        }))
    }

    /// The certificate, for endpoints that need one (renew, admin calls).
    fn required(&self) -> Result<Arc<PeerCert>, ApiError> {
        self.0.clone().ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "client certificate required",
                "connect with your current certificate (mTLS)",
            )
        })
    }
}

/// What every handler shares: the authority (behind a lock: one store
/// connection), the unlocked signers and the published CRLs.
struct CaState {
    ca: Mutex<CertificateAuthority>,
    signer: Authority,
    root_signer: Authority,
    root_pem: String,
    crl: ArcSwap<crl::CrlDoc>,
    /// The store's revocation mark when the CRL was signed.
    crl_mark: Mutex<(i64, i64)>,
    crl_validity: Duration,
    enroll: mpsc::Sender<enroll::EnrollJob>,
    failures: TokenFailures,
    /// The access-token signer and the JWKS.
    tokens: ArcSwap<oauth::Published>,
    issuer: String,
    token_ttl: Duration,
    /// To unlock a signing key rotated while the server runs.
    passphrase: Option<zeroize::Zeroizing<Vec<u8>>>,
    /// Signs the console's form tokens.
    form_key: ui::csrf::FormKey,
}

impl CaState {
    /// Opens the CA in `dir`, unlocks both keys and the token-signing key
    /// (made if there is none), issues the API's own certificate and signs
    /// the first CRLs.
    fn open(
        at: &StoreLocation,
        passphrase: Option<&[u8]>,
        opts: &ServeOptions,
        issuer: String,
    ) -> Result<(Arc<CaState>, Arc<rustls::ServerConfig>, Duration), CaError> {
        let mut ca = CertificateAuthority::open_at(at)?;
        ca.on_node(node_name(&issuer));
        let signer = ca.authority(AuthorityRole::Intermediate, passphrase)?;
        let root_signer = ca.authority(AuthorityRole::Root, passphrase)?;
        let tokens = ca.token_keys(passphrase)?;
        let (tls, lifetime) = server_tls(&mut ca, &signer, opts)?;
        let crl_mark = Mutex::new(ca.revocation_mark()?);
        let crl = crl::build_crl(&mut ca, &signer, &root_signer, opts.crl_validity)?;
        let root_pem = pem_encode("CERTIFICATE", ca.root_der());
        let state = Arc::new(CaState {
            ca: Mutex::new(ca),
            signer,
            root_signer,
            root_pem,
            crl: ArcSwap::from_pointee(crl),
            crl_mark,
            crl_validity: opts.crl_validity,
            enroll: enroll::spawn_writer(at, node_name(&issuer))?,
            failures: TokenFailures::new(opts.limits.token_failure_limit, opts.limits.token_failure_window),
            tokens: ArcSwap::from_pointee(oauth::Published::new(tokens)),
            issuer,
            token_ttl: opts.token_ttl,
            passphrase: passphrase.map(|p| zeroize::Zeroizing::new(p.to_vec())),
            form_key: ui::csrf::FormKey::random(),
        });
        Ok((state, tls, lifetime))
    }

    /// A certificate as the API returns it (`client::Issued`).
    fn issued_json(&self, issued: &IssuedCert) -> serde_json::Value {
        self.cert_json(&issued.name, &issued.serial.to_hex(), issued.not_after.unix_timestamp(), &issued.cert_der)
    }

    /// The same for a stored certificate (an enrollment retried).
    fn record_json(&self, rec: &ambos_store::CertRecord) -> serde_json::Value {
        self.cert_json(&rec.name, &rec.serial, rec.not_after, &rec.cert_der)
    }

    fn cert_json(&self, name: &str, serial: &str, not_after: i64, der: &[u8]) -> serde_json::Value {
        json!({
            "name": name,
            "serial": serial,
            "not_after": ambos_pki::rfc3339_unix(not_after),
            "certificate": self.signer.chain_pem(der),
            "ca": self.root_pem,
        })
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(e.to_string()))
}

fn csr_der(pem: &str) -> Result<Vec<u8>, ApiError> {
    ambos_pki::csr_from_pem_or_der(pem.as_bytes()).map_err(|e| ApiError::from(CaError::from(e)))
}

/// Runs store and signing work off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, ApiError> + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error", e.to_string()))?
}

fn router(state: Arc<CaState>, prometheus: metrics_exporter_prometheus::PrometheusHandle) -> Router {
    Router::new()
        .route("/v1/roots", get(crl::roots))
        .route("/v1/crl", get(crl::intermediate))
        .route("/v1/crl/root", get(crl::root))
        .route("/v1/enroll", post(enroll::enroll))
        .route("/v1/renew", post(renew::renew))
        .route("/v1/revoke", post(revoke::revoke))
        .route("/v1/certs", get(certs::certs))
        .route("/v1/oauth/token", post(oauth::token))
        .route("/v1/oauth/jwks", get(oauth::jwks))
        .route("/.well-known/oauth-authorization-server", get(oauth::metadata))
        .route("/healthz", get(health))
        .route("/metrics", get(move || std::future::ready(prometheus.render())))
        .merge(ui::routes())
        .with_state(state)
}

/// How this node's audit entries name it: its host and its issuer URL.
fn node_name(issuer: &str) -> String {
    let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
    format!("{host} {issuer}").trim().to_string()
}

/// `GET /healthz`: 200 while the store answers, else 503 naming why (a
/// node that lost its database; it recovers by itself when it is back).
async fn health(axum::extract::State(st): axum::extract::State<Arc<CaState>>) -> axum::response::Response {
    match blocking(move || Ok(st.ca.lock().expect("ca lock").check_store())).await {
        Ok(Ok(())) => "ok\n".into_response(),
        // The why goes to the log, not to whoever asks (it names the database).
        Ok(Err(e)) => {
            tracing::warn!("healthz: store unavailable: {e}");
            (StatusCode::SERVICE_UNAVAILABLE, "store unavailable\n").into_response()
        }
        Err(e) => e.into_response(),
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

/// Every counter and label set known in advance, registered at 0: after a
/// restart a scrape sees the series at once, so `rate()` and alerts on
/// `absent()` work before the first enrollment.
pub fn register_metrics() {
    for result in ["ok", "refused", "throttled", "retried"] {
        metrics::counter!("ambos_ca_enrollments_total", "result" => result).increment(0);
    }
    for result in ["issued", "refused"] {
        metrics::counter!("ambos_ca_access_tokens_total", "result" => result).increment(0);
    }
    for reason in ["per_source", "max_connections"] {
        metrics::counter!("ambos_ca_connections_refused_total", "reason" => reason).increment(0);
    }
    for name in [
        "ambos_ca_renewals_total",
        "ambos_ca_revocations_total",
        "ambos_ca_token_failures_total",
        "ambos_ca_connections_evicted_total",
    ] {
        metrics::counter!(name).increment(0);
    }
}

/// Runs the CA API on the store at `at` until `shutdown` resolves.
pub async fn serve(
    at: &StoreLocation,
    passphrase: Option<&[u8]>,
    opts: ServeOptions,
    control: ambos_tls::daemon::Control,
) -> Result<(), CaError> {
    ambos_tls::install_default_provider();
    let prometheus = {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let _ = metrics::set_global_recorder(recorder);
        register_metrics();
        handle
    };
    let listener =
        ambos_tls::net::bind(opts.listen).map_err(|e| CaError::Bind { addr: opts.listen, why: e.to_string() })?;
    let bound = listener.local_addr().unwrap_or(opts.listen);
    let issuer = opts.issuer.clone().unwrap_or_else(|| {
        let host = opts.sans.iter().find_map(|s| match s {
            San::Dns(name) => Some(name.as_str()),
            _ => None,
        });
        format!("https://{}:{}", host.unwrap_or("localhost"), bound.port())
    });
    // Off the async threads: a PostgreSQL store's client blocks.
    let (at, pass, o) = (at.clone(), passphrase.map(<[u8]>::to_vec), opts.clone());
    let (state, tls, lifetime) = tokio::task::spawn_blocking(move || CaState::open(&at, pass.as_deref(), &o, issuer))
        .await
        .map_err(|e| CaError::Tls(format!("starting the CA: {e}")))??;
    let tls = Arc::new(ArcSwap::from(tls));
    tracing::info!("CA API listening on https://{bound}; OAuth issuer {}", state.issuer);

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
    // Every 2 s: a signing key rotated by `ambos oauth rotate-key` (a look at
    // the store's list of kids; a key is unlocked only when it changed), and
    // revocations made by another CA node on the same database (the CRL is
    // re-signed when the store's revocation mark moved).
    {
        let state = state.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(2)).await;
                let st = state.clone();
                if let Ok(Err(e)) = tokio::task::spawn_blocking(move || st.refresh_token_keys()).await {
                    tracing::error!("reloading the token-signing keys failed: {e}");
                }
                let st = state.clone();
                if let Ok(Err(e)) = tokio::task::spawn_blocking(move || st.follow_revocations()).await {
                    tracing::error!("following the store's revocations failed: {e}");
                }
            }
        });
    }
    {
        let state = state.clone();
        let tls = tls.clone();
        let opts = opts.clone();
        let mut control = control.clone();
        tokio::spawn(async move {
            let mut wait = lifetime * 2 / 3;
            loop {
                // SIGHUP: a new API certificate now (e.g. after `--san` names changed in DNS, or a revocation).
                let hup = tokio::select! {
                    _ = tokio::time::sleep(wait.max(Duration::from_secs(1))) => false,
                    _ = control.reload_requested() => true,
                };
                if hup {
                    ambos_tls::daemon::notify_reloading();
                }
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
                        tracing::info!(
                            trigger = if hup { "SIGHUP" } else { "schedule" },
                            "renewed the API's own certificate"
                        );
                    }
                    Ok(Err(e)) => {
                        tracing::error!("renewing the API's own certificate failed: {e}");
                        wait = Duration::from_secs(30);
                    }
                    Err(_) => wait = Duration::from_secs(30),
                }
                if hup {
                    ambos_tls::daemon::notify_ready();
                }
            }
        });
    }

    let router = router(state, prometheus);

    let limits = Arc::new(opts.limits.clone());
    let slots = Slots::new(limits.max_connections, limits.max_connections_per_source);
    ambos_tls::daemon::notify_ready();
    let shutdown = control.stopped();
    tokio::pin!(shutdown);
    while let Some((stream, addr)) = ambos_tls::net::accept(&listener, shutdown.as_mut()).await {
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
                let peer = Peer::of(tls.get_ref().1.peer_certificates().and_then(|c| c.first()));
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
    ambos_tls::daemon::notify_stopping();
    Ok(())
}

/// A running API's state over a test CA, and handler answers taken apart.
#[cfg(test)]
mod test_api {
    use super::*;
    use crate::test_ca::TestCa;
    use axum::http::HeaderMap;
    use axum::response::Response;

    pub(super) fn state(t: &TestCa, limits: ServeLimits) -> Arc<CaState> {
        let opts = ServeOptions {
            listen: ([127, 0, 0, 1], 0).into(),
            sans: vec![],
            crl_validity: Duration::from_secs(3600),
            server_cert_ttl: Duration::from_secs(3600),
            limits,
            issuer: None,
            token_ttl: Duration::from_secs(300),
        };
        CaState::open(&StoreLocation::Dir(t.dir.path().into()), None, &opts, "https://ca.test".into()).unwrap().0
    }

    /// A running API with two clients of its CA: `user`, and `admin` marked administrator.
    pub(super) struct Api {
        pub t: TestCa,
        pub st: Arc<CaState>,
        pub user: IssuedCert,
        pub admin: IssuedCert,
    }

    pub(super) fn api() -> Api {
        let mut t = crate::test_ca::test_ca("api");
        let user = t.issue_client("user");
        let admin = t.issue_client("admin");
        t.ca.set_admin(&admin.serial).unwrap();
        let st = state(&t, ServeLimits::default());
        Api { t, st, user, admin }
    }

    pub(super) fn peer(cert_der: &[u8]) -> Peer {
        Peer::of(Some(&rustls_pki_types::CertificateDer::from(cert_der)))
    }

    /// Status, headers and JSON body (`null` if there is none).
    pub(super) async fn answer(r: Result<Response, ApiError>) -> (StatusCode, HeaderMap, serde_json::Value) {
        let r = r.unwrap_or_else(IntoResponse::into_response);
        let (parts, body) = r.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        (parts.status, parts.headers, serde_json::from_slice(&bytes).unwrap_or_default())
    }
}

#[cfg(test)]
mod metrics_tests {
    use super::register_metrics;

    #[test]
    fn every_counter_is_exported_at_zero_before_anything_happens() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, register_metrics);
        let text = handle.render();
        for line in [
            "ambos_ca_enrollments_total{result=\"ok\"} 0",
            "ambos_ca_enrollments_total{result=\"refused\"} 0",
            "ambos_ca_renewals_total 0",
            "ambos_ca_revocations_total 0",
            "ambos_ca_token_failures_total 0",
            "ambos_ca_access_tokens_total{result=\"issued\"} 0",
            "ambos_ca_access_tokens_total{result=\"refused\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}:\n{text}");
        }
    }
}
