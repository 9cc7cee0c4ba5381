//! The listening side: `run` binds, pulls the first CRL and the JWKS, builds the first
//! runtime and the reloader, and accepts until shutdown, each connection
//! admitted under the limits (`admission`) and served on its own task
//! (`conn` for the handshake, then `http` or `tcp`); at shutdown it stops
//! accepting and waits up to `shutdown_grace` for HTTP requests in flight.
//! The accept step is `ambos_tls::net::accept`, shared with the tunnel,
//! the metrics listener and the CA API.
use crate::admission::{Admission, AdmissionLimits, Refusal, Ticket};
use crate::audit::AuditLog;
use crate::config::{Mode, ProxyConfig};
use crate::conn::{closed_revoked, handshake, Shared};
use crate::http::HttpShared;
use crate::runtime::{ConfigSource, Reloader, Runtime};
use crate::telemetry::GaugeGuard;
use crate::{http, tcp, telemetry, ProxyError};
use ambos_tls::daemon::Control;
use ambos_tls::net::accept;
use metrics_exporter_prometheus::PrometheusHandle;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;
use tokio::net::{TcpListener, TcpStream};

/// Runs the proxy until `control` asks it to stop, then lets in-flight HTTP
/// requests finish (up to `limits.shutdown_grace`); a reload request
/// reloads the configuration and its files.
pub async fn run(config: ProxyConfig, control: Control) -> Result<(), ProxyError> {
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
    // Unlike a CRL, a route's JWKS must be had before serving (`jwks_pull`).
    let pulled_jwks = crate::authorize::jwks::PulledJwks::default();
    crate::jwks_pull::fetch_at_start(&config, &pulled_jwks).await?;
    let reloader = Reloader::new(Runtime::build(config, &pulled, &pulled_jwks)?, source, by_url, pulled_jwks);
    reloader.start(control.clone())?;
    crate::jwks_pull::spawn(reloader.clone());
    if crl_source.is_some() {
        crate::crl_pull::spawn(reloader.clone(), etag);
    }
    if from_dps {
        crate::crl_pull::spawn_distribution_points(reloader.clone());
    }
    let listener = ambos_tls::net::bind(listen).map_err(|why| ProxyError::Bind { addr: listen, why })?;
    if let Some(addr) = metrics_addr {
        serve_metrics(addr, prometheus).await.map_err(|why| ProxyError::Bind { addr, why })?;
    }
    tracing::info!(
        "listening on {} ({}), metrics on {}",
        listener.local_addr().unwrap_or(listen),
        if mode == Mode::Http { "http" } else { "tcp" },
        metrics_addr.map(|a| a.to_string()).unwrap_or_else(|| "(off)".into())
    );
    let shared = Arc::new(Shared::new(reloader, audit));
    let http = Arc::new(HttpShared::new(shared.clone()));
    crate::admission::raise_fd_limit(limits.max_connections);
    let admission = Admission::new(AdmissionLimits {
        max_connections: limits.max_connections,
        max_connections_per_source: limits.max_connections_per_source,
        max_handshakes_per_source: limits.max_handshakes_per_source,
        connection_rate_per_source: limits.connection_rate_per_source,
    });
    ambos_tls::daemon::notify_ready();
    let shutdown = control.stopped();
    tokio::pin!(shutdown);
    let mut burst: u32 = 0;
    loop {
        let Some((stream, peer)) = accept(&listener, shutdown.as_mut()).await else { break };
        // Evicts silent handshakes to make room, or refuses (see `admission`).
        match admission.admit(peer.ip(), || {
            let mut byte = [std::mem::MaybeUninit::<u8>::uninit()];
            matches!(socket2::SockRef::from(&stream).peek(&mut byte), Ok(n) if n > 0)
        }) {
            Ok(ticket) => start(stream, peer, shared.clone(), http.clone(), ticket),
            Err(Refusal::Closed) => reset(stream),
            Err(Refusal::Probation) => {
                let (admission, shared, http) = (admission.clone(), shared.clone(), http.clone());
                tokio::spawn(async move {
                    if !crate::admission::probation(&stream).await {
                        return reset(stream);
                    }
                    match admission.admit(peer.ip(), || true) {
                        Ok(ticket) => start(stream, peer, shared, http, ticket),
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
    ambos_tls::daemon::notify_stopping();
    tracing::info!("shutting down: waiting up to {:?} for in-flight requests", limits.shutdown_grace);
    shared.shutdown.send_replace(true);
    tokio::select! {
        _ = shared.shutdown.closed() => tracing::info!("all connections finished"),
        _ = tokio::time::sleep(limits.shutdown_grace) => tracing::warn!("grace period over; closing remaining connections"),
    }
    Ok(())
}

/// Runs an admitted connection in a task of its own, which eviction can abort.
fn start(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>, http: Arc<HttpShared>, ticket: Ticket) {
    ticket.on_accept(&stream);
    crate::dial::tune(&stream);
    let slot = ticket.slot().clone();
    let task = tokio::spawn(async move { connection(stream, peer, shared, http, ticket).await });
    slot.set_task(task.abort_handle());
}

/// Closes a refused connection with a reset: the cheapest close (see
/// `Ticket::on_accept`); failing that, with a FIN.
fn reset(stream: TcpStream) {
    let _ = socket2::SockRef::from(&stream).set_linger(Some(std::time::Duration::ZERO));
}

/// One accepted connection: handshake, then HTTP or TCP forwarding until it
/// ends or a newly loaded CRL revokes its client.
async fn connection(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>, http: Arc<HttpShared>, ticket: Ticket) {
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
                http::serve(tls, ctx, http, shutdown).await
            }
            // Boxed: TCP mode's state (connect, copy buffers) would otherwise
            // size every HTTP connection's task too.
            Mode::Tcp => Box::pin(tcp::serve(tls, ctx, shared.clone(), started)).await,
        }
    };
    match watch {
        None => serve.await,
        Some((revoked, ctx)) => {
            let (mut serve, mut notified) = (std::pin::pin!(serve), std::pin::pin!(revoked.notified()));
            // The revocation is polled only when it woke the task (see `gate`).
            let gate = crate::gate::Gate::default();
            let revoked = std::future::poll_fn(|cx| {
                if gate.open(cx) && notified.as_mut().poll(&mut gate.context()).is_ready() {
                    return Poll::Ready(true);
                }
                serve.as_mut().poll(cx).map(|()| false)
            })
            .await;
            if revoked {
                closed_revoked(&shared, &ctx, started);
            }
        }
    }
    drop(registered);
}

/// Serves `/metrics` and `/healthz` (`telemetry`) on `addr` until the process exits.
async fn serve_metrics(addr: SocketAddr, handle: PrometheusHandle) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    tokio::spawn(async move {
        let mut forever = std::pin::pin!(std::future::pending::<()>());
        while let Some((stream, _)) = accept(&listener, forever.as_mut()).await {
            tokio::spawn(telemetry::serve_connection(stream, handle.clone()));
        }
    });
    Ok(())
}
