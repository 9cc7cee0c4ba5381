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
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;
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

    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
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
        let _ = stream.set_nodelay(true);
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.load_full());
        let router = router.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
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
            let svc = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(peer.clone());
                let mut router = router.clone();
                async move { tower_service::Service::call(&mut router, req.map(axum::body::Body::new)).await }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                .await;
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

async fn enroll(State(st): State<Arc<CaState>>, body: Bytes) -> Result<Response, ApiError> {
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
