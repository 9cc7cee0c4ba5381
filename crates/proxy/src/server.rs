//! Accept, handshake and hand the connection to HTTP or TCP forwarding.
use crate::admission::{Admission, AdmissionLimits, Refusal, Ticket};
use crate::audit::{self, AuditEvent, AuditIdentity, AuditLog};
use crate::config::{Mode, ProxyConfig};
use crate::runtime::{ConfigSource, Reloader, Runtime};
use crate::{headers, http, tcp, telemetry, ProxyError};
use ambos_tls::{HandshakeFailure, Identity};
use hyper::header::HeaderValue;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpStream;

/// Process-wide state shared by every connection.
pub struct Shared {
    pub reloader: Arc<Reloader>,
    pub audit: AuditLog,
    pub upstream: Arc<crate::upstream::UpstreamPool>,
    /// Turns true when the proxy stops; HTTP connections hold a receiver,
    /// so `closed()` tells when the last one is gone.
    shutdown: tokio::sync::watch::Sender<bool>,
    handshakes_ok: metrics::Counter,
    active: metrics::Gauge,
    /// Idle HTTP/1 connections that hold no HTTP state (see `idle`).
    pub parked: metrics::Gauge,
}

/// What one connection knows after its handshake: computed once, shared by
/// every request on it.
pub struct ConnCtx {
    pub peer: SocketAddr,
    pub identity: Option<Identity>,
    pub xfcc: Option<HeaderValue>,
    /// The server name the client asked for in its handshake (SNI), lower
    /// case; only kept when `[listen] hosts` is set.
    pub sni: Option<String>,
    pub runtime: Arc<Runtime>,
    /// A response said the connection must close (HTTP/1.1: a request body
    /// cut off unread): it is closed, not parked, once the response is out.
    pub close_after_response: std::sync::atomic::AtomicBool,
}

impl ConnCtx {
    pub fn audit_identity(&self) -> Option<AuditIdentity<'_>> {
        self.identity.as_ref().map(AuditIdentity::from)
    }
}

/// Counts something in a gauge for as long as it lives, however the task
/// ends.
pub(crate) struct GaugeGuard(metrics::Gauge);

impl GaugeGuard {
    pub(crate) fn new(gauge: &metrics::Gauge) -> GaugeGuard {
        gauge.increment(1.0);
        GaugeGuard(gauge.clone())
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// Runs the proxy until `shutdown` resolves, then lets in-flight HTTP
/// requests finish (up to `limits.shutdown_grace`).
pub async fn run(config: ProxyConfig, shutdown: impl Future<Output = ()>) -> Result<(), ProxyError> {
    ambos_tls::install_default_provider();
    let prometheus = telemetry::install();
    let audit = match &config.audit {
        Some(p) => AuditLog::open(p)?,
        None => AuditLog::disabled(),
    };
    let source = match &config.source {
        Some(p) => ConfigSource::File(p.clone()),
        None => ConfigSource::Flags(Box::new(config.clone())),
    };
    let (listen, mode, limits, metrics_addr) = (config.listen, config.mode, config.limits.clone(), config.metrics);
    let crl_source = config.crl_url.clone();
    let client_ca = config.tls.client_ca.clone();
    // Pull the CRL once before serving; if the CA is away, start and keep trying.
    let mut etag = None;
    let mut pulled = Vec::new();
    // With crl_url and no CRL yet, revocation status is unknown: clients
    // are refused (unless unknown_revocation = "allow") until a pull works.
    if let Some(src) = &crl_source {
        match crate::crl_pull::fetch(src, &client_ca, None).await {
            Ok(Some((crls, tag))) => {
                pulled = crls;
                etag = Some(tag);
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(
                    "cannot pull the CRL from {}: {e}; revocation status is unknown until the next refresh",
                    src.url
                )
            }
        }
    }
    let from_dps = config.crl_from_distribution_points;
    let mut by_url = std::collections::BTreeMap::new();
    if let Some(src) = &crl_source {
        by_url.insert(src.url.to_string(), pulled.clone());
    }
    let reloader = Reloader::new(Runtime::build(config, &pulled)?, source, by_url);
    reloader.start()?;
    if crl_source.is_some() {
        crate::crl_pull::spawn(reloader.clone(), etag);
    }
    if from_dps {
        crate::crl_pull::spawn_distribution_points(reloader.clone());
    }
    let listener = crate::admission::bind(listen).map_err(|source| ProxyError::Bind { addr: listen, source })?;
    if let Some(addr) = metrics_addr {
        telemetry::serve(addr, prometheus).await.map_err(|source| ProxyError::Bind { addr, source })?;
    }
    tracing::info!(
        "listening on {} ({}), metrics on {}",
        listener.local_addr().unwrap_or(listen),
        if mode == Mode::Http { "http" } else { "tcp" },
        metrics_addr.map(|a| a.to_string()).unwrap_or_else(|| "(off)".into())
    );
    let shared = Arc::new(Shared {
        reloader,
        audit,
        upstream: Arc::default(),
        shutdown: tokio::sync::watch::Sender::new(false),
        handshakes_ok: metrics::counter!("ambos_proxy_handshakes_total", "outcome" => "ok", "reason" => "none"),
        active: metrics::gauge!("ambos_proxy_active_connections"),
        parked: metrics::gauge!("ambos_proxy_parked_connections"),
    });
    crate::admission::raise_fd_limit(limits.max_connections);
    let admission = Admission::new(AdmissionLimits {
        max_connections: limits.max_connections,
        max_connections_per_source: limits.max_connections_per_source,
        max_handshakes_per_source: limits.max_handshakes_per_source,
        connection_rate_per_source: limits.connection_rate_per_source,
    });
    tokio::pin!(shutdown);
    let mut burst: u32 = 0;
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        // Evicts silent handshakes to make room, or refuses (see `admission`).
        match admission.admit(peer.ip(), || {
            let mut byte = [std::mem::MaybeUninit::<u8>::uninit()];
            matches!(socket2::SockRef::from(&stream).peek(&mut byte), Ok(n) if n > 0)
        }) {
            Ok(ticket) => start(stream, peer, shared.clone(), ticket),
            Err(Refusal::Closed) => reset(stream),
            Err(Refusal::Probation) => {
                let (admission, shared) = (admission.clone(), shared.clone());
                tokio::spawn(async move {
                    if !crate::admission::probation(&stream).await {
                        return reset(stream);
                    }
                    match admission.admit(peer.ip(), || true) {
                        Ok(ticket) => start(stream, peer, shared, ticket),
                        Err(_) => reset(stream),
                    }
                });
            }
        }
        // In a burst of accepts, let the new connections' tasks run now and
        // then (a task that has not run cannot tell it has spoken).
        burst += 1;
        if burst == 16 {
            burst = 0;
            tokio::task::yield_now().await;
        }
    }
    drop(listener);
    tracing::info!("shutting down: waiting up to {:?} for in-flight requests", limits.shutdown_grace);
    shared.shutdown.send_replace(true);
    tokio::select! {
        _ = shared.shutdown.closed() => tracing::info!("all connections finished"),
        _ = tokio::time::sleep(limits.shutdown_grace) => tracing::warn!("grace period over; closing remaining connections"),
    }
    Ok(())
}

/// Runs an admitted connection in a task of its own, which eviction can abort.
fn start(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>, ticket: Ticket) {
    ticket.on_accept(&stream);
    let _ = stream.set_nodelay(true);
    let slot = ticket.slot().clone();
    let task = tokio::spawn(async move { connection(stream, peer, shared, ticket).await });
    slot.set_task(task.abort_handle());
}

/// Closes a refused connection with a reset: the cheapest close (see
/// `Ticket::on_accept`); failing that, with a FIN.
fn reset(stream: TcpStream) {
    let _ = socket2::SockRef::from(&stream).set_linger(Some(std::time::Duration::ZERO));
}

async fn connection(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>, ticket: Ticket) {
    let _active = GaugeGuard::new(&shared.active);
    let started = Instant::now();
    let Some((tls, ctx, chain)) = handshake(stream, peer, &shared, started, ticket.slot()).await else { return };
    // From here on the connection cannot be evicted; false: it just was.
    if !ticket.established() {
        return;
    }
    ticket.close_gracefully(tls.get_ref().0);
    // A verified client is registered so that a CRL revoking it later
    // closes this connection, whatever it speaks.
    let registered = chain.map(|c| shared.reloader.connections.register(c));
    let watch = registered.as_ref().map(|r| (r.revoked.clone(), ctx.clone()));
    let serve = async {
        match ctx.runtime.config.mode {
            Mode::Http => {
                let shutdown = shared.shutdown.subscribe();
                http::serve(tls, ctx, shared.clone(), shutdown).await
            }
            // Boxed: TCP mode's state (connect, copy buffers) would otherwise
            // size every HTTP connection's task too.
            Mode::Tcp => Box::pin(tcp::serve(tls, ctx, shared.clone(), started)).await,
        }
    };
    match watch {
        None => serve.await,
        Some((revoked, ctx)) => {
            tokio::select! {
                _ = serve => {}
                _ = revoked.notified() => closed_revoked(&shared, &ctx, started),
            }
        }
    }
    drop(registered);
}

/// Audits a connection closed because a newly loaded CRL revokes its client.
fn closed_revoked(shared: &Shared, ctx: &ConnCtx, started: Instant) {
    metrics::counter!("ambos_proxy_connections_closed_total", "reason" => "revoked").increment(1);
    let reason = HandshakeFailure::Revoked.to_string();
    tracing::warn!(peer = %ctx.peer, "closed: {reason}");
    shared.audit.record(&AuditEvent {
        time: audit::now(),
        event: "revoked",
        peer: ctx.peer,
        identity: ctx.audit_identity(),
        route: None,
        method: None,
        path: None,
        decision: "close",
        reason: &reason,
        status: None,
        latency_ms: started.elapsed().as_secs_f64() * 1000.0,
    });
}

/// The handshake and what the connection learns from it. A function of
/// its own because an async function keeps every local that is alive
/// across an await for as long as it runs, moved-from or not: inline, the
/// handshake's result (the unboxed TLS stream, over 1 KiB) would stay in
/// every connection's task for its whole life.
async fn handshake(
    stream: TcpStream,
    peer: SocketAddr,
    shared: &Shared,
    started: Instant,
    slot: &crate::admission::Slot,
) -> Option<(Box<http::Tls>, Arc<ConnCtx>, Option<Arc<ambos_tls::VerifiedChain>>)> {
    let runtime = shared.reloader.current.load_full();
    // Boxed: the handshake state is large and short-lived. A client that
    // has sent its first bytes is evicted only after silent ones.
    let acceptor = &runtime.acceptor;
    let handshake = Box::pin(async move {
        // `peek`, not `readable`: readiness can be reported without data.
        if stream.peek(&mut [0u8; 1]).await? > 0 {
            slot.spoke();
        }
        acceptor.accept(stream).await
    });
    let tls = match tokio::time::timeout(runtime.config.limits.handshake_timeout, handshake).await {
        Ok(Ok(tls)) => Box::new(tls),
        Ok(Err(e)) => return handshake_failed(shared, peer, HandshakeFailure::from_io(&e), started),
        Err(_) => return handshake_failed(shared, peer, HandshakeFailure::Timeout, started),
    };
    let identity = match tls.get_ref().1.peer_certificates().and_then(|c| c.first()) {
        Some(der) => match Identity::from_der(der) {
            Ok(id) => Some(id),
            Err(e) => return handshake_failed(shared, peer, HandshakeFailure::BadCertificate(e.to_string()), started),
        },
        None => None,
    };
    // The verified path, for revocation while the connection lives: a hit in
    // the verifier's cache after a full handshake. A resumed session skipped
    // verification, so here it is verified again (expiry, CRLs loaded since).
    let chain = match tls.get_ref().1.peer_certificates() {
        Some([ee, rest @ ..]) => match runtime.verifier.verified(ee, rest, rustls::pki_types::UnixTime::now()) {
            Ok(c) => Some(c),
            Err(f) => return handshake_failed(shared, peer, f, started),
        },
        _ => None,
    };
    shared.handshakes_ok.increment(1);
    let xfcc = if runtime.config.xfcc { identity.as_ref().and_then(headers::xfcc_value) } else { None };
    // Kept only when `[listen] hosts` will compare it with each request's Host.
    let sni =
        if runtime.config.hosts.is_empty() { None } else { tls.get_ref().1.server_name().map(str::to_ascii_lowercase) };
    let close_after_response = false.into();
    Some((tls, Arc::new(ConnCtx { peer, identity, xfcc, sni, runtime, close_after_response }), chain))
}

fn handshake_failed<T>(shared: &Shared, peer: SocketAddr, failure: HandshakeFailure, started: Instant) -> Option<T> {
    metrics::counter!("ambos_proxy_handshakes_total", "outcome" => "failed", "reason" => failure.label()).increment(1);
    let reason = failure.to_string();
    tracing::warn!(%peer, reason = failure.label(), "TLS handshake failed: {reason}");
    shared.audit.record(&AuditEvent {
        time: audit::now(),
        event: "handshake",
        peer,
        identity: None,
        route: None,
        method: None,
        path: None,
        decision: "deny",
        reason: &reason,
        status: None,
        latency_ms: started.elapsed().as_secs_f64() * 1000.0,
    });
    None
}
