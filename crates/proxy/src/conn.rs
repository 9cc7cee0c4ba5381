//! One client connection from its TLS handshake on: the handshake under
//! `handshake_timeout` (a failure classified once, audited and counted),
//! what the connection learns from it (`ConnCtx`: identity, XFCC value,
//! SNI, the runtime it was accepted under) and the state every connection
//! shares (`Shared`). The accept loop that calls it is `listener`; the
//! forwarding it hands over to is `http` or `tcp`.
use crate::admission::Slot;
use crate::audit::{self, AuditEvent, AuditIdentity, AuditLog};
use crate::headers;
use crate::runtime::{Reloader, Runtime};
use ambos_tls::{HandshakeFailure, Identity, TlsVersion, VerifiedChain};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// A client connection after its handshake. Passed boxed: the rustls state
/// is over 1 KiB and would otherwise be copied into every future that
/// holds the connection, each of which lives as long as the connection.
pub type Tls = tokio_rustls::server::TlsStream<TcpStream>;

/// Process-wide state shared by every connection.
pub struct Shared {
    pub reloader: Arc<Reloader>,
    pub audit: AuditLog,
    /// Turns true when the proxy stops; HTTP connections hold a receiver,
    /// so `closed()` tells when the last one is gone.
    pub shutdown: tokio::sync::watch::Sender<bool>,
    handshakes_ok: metrics::Counter,
    /// Open client connections.
    pub active: metrics::Gauge,
    pub requests: crate::telemetry::RequestMetrics,
}

impl Shared {
    pub fn new(reloader: Arc<Reloader>, audit: AuditLog) -> Shared {
        Shared {
            reloader,
            audit,
            shutdown: tokio::sync::watch::Sender::new(false),
            handshakes_ok: metrics::counter!("ambos_proxy_handshakes_total", "outcome" => "ok", "reason" => "none"),
            active: metrics::gauge!("ambos_proxy_active_connections"),
            requests: Default::default(),
        }
    }
}

/// What one connection knows after its handshake: computed once, shared by
/// every request on it.
pub struct ConnCtx {
    pub peer: SocketAddr,
    pub identity: Option<Identity>,
    /// Identity headers, rendered once for every request on the connection.
    pub headers: headers::ConnHeaders,
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

/// How often an idle timeout is checked: a quarter of it (so a connection
/// closes between `idle` and 1.25 × `idle` after its last activity), at
/// least every 250 ms. One timer per connection, nothing per byte but a flag.
pub fn idle_check_period(idle: Duration) -> Duration {
    (idle / 4).max(Duration::from_millis(250)).min(idle)
}

/// Audits a connection closed because a newly loaded CRL revokes its client.
pub fn closed_revoked(shared: &Shared, ctx: &ConnCtx, started: Instant) {
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
/// After a refused handshake our alert has been written; closing now
/// could lose it: a close with unread data in the socket (a TLS 1.3 client
/// sends its request right after its Finished, before it learns its
/// certificate was refused; curl over HTTP/2 its preface) makes the kernel
/// send a reset, and the client's kernel drops the alert unread (curl then
/// printed `getpeername() failed with errno 107` instead of `alert
/// certificate required`). So: close the write side, read what the client
/// sent, for at most 1 s and 64 KiB, then close.
async fn close_after_alert(mut io: TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(1);
    const DRAIN_BYTES: usize = 64 * 1024;
    if io.shutdown().await.is_err() {
        return;
    }
    let mut buf = [0u8; 4096];
    let mut read = 0;
    let drain = async {
        while read < DRAIN_BYTES {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => read += n,
            }
        }
    };
    // Timing out is the bound, not a failure.
    let _ = tokio::time::timeout(DRAIN_TIME, drain).await;
}

/// The handshake and what the connection learns from it. A function of
/// its own because an async function keeps every local that is alive
/// across an await for as long as it runs, moved-from or not: inline, the
/// handshake's result (the unboxed TLS stream, over 1 KiB) would stay in
/// every connection's task for its whole life.
pub async fn handshake(
    stream: TcpStream,
    peer: SocketAddr,
    shared: &Shared,
    started: Instant,
    slot: &Slot,
) -> Option<(Box<Tls>, Arc<ConnCtx>, Option<Arc<VerifiedChain>>)> {
    let runtime = shared.reloader.current.load_full();
    // Boxed: the handshake state is large and short-lived. A client that
    // has sent its first bytes is evicted only after silent ones.
    let acceptor = &runtime.acceptor;
    let handshake = Box::pin(async move {
        // `peek`, not `readable`: readiness can be reported without data.
        match stream.peek(&mut [0u8; 1]).await {
            Ok(n) if n > 0 => slot.spoke(),
            Ok(_) => {}
            Err(e) => return Err((e, None)),
        }
        acceptor.accept(stream).into_fallible().await.map_err(|(e, io)| (e, Some(io)))
    });
    let tls = match tokio::time::timeout(runtime.config.limits.handshake_timeout, handshake).await {
        Ok(Ok(tls)) => Box::new(tls),
        Ok(Err((e, io))) => {
            let mut failure = HandshakeFailure::from_io(&e);
            // A 1.3-only listener refuses every older hello: name the version it wants.
            if failure == HandshakeFailure::ProtocolVersion && runtime.config.tls.min_version == TlsVersion::Tls13 {
                failure = HandshakeFailure::Tls13Required;
            }
            let refused = handshake_failed(shared, peer, failure, started);
            if let Some(io) = io {
                close_after_alert(io).await;
            }
            return refused;
        }
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
    let client_cert = match (&chain, runtime.config.rfc9440) {
        (Some(c), true) => headers::rfc9440_values(&c.path),
        _ => None,
    };
    let ip = peer.ip().to_canonical();
    let trusted_peer = runtime.config.trusted_proxies.iter().any(|net| net.contains(&ip));
    let headers = headers::ConnHeaders {
        xfcc,
        client_cert,
        ..headers::ConnHeaders::from_peer(ip, runtime.config.forwarded, trusted_peer)
    };
    Some((tls, Arc::new(ConnCtx { peer, identity, headers, sni, runtime, close_after_response }), chain))
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
