//! HTTP mode: HTTP/1.1 and HTTP/2 (ALPN) from clients, the checks on each
//! request head, authorization per request, identity headers, and
//! forwarding over pooled keep-alive HTTP/1.1 connections to the upstream
//! (`upstream`) or one shared HTTP/2 connection (`upstream_h2`); an idle
//! HTTP/1.1 connection is parked (`idle`). Each request's decision is
//! counted and audited here; a gRPC request the proxy refuses gets a gRPC
//! status (`grpc_refusal`).
mod idle;
mod upstream;
mod upstream_h1;
mod upstream_h2;
mod websocket;

use crate::audit::{self, AuditEvent};
use crate::authorize::target::{self, Target};
use crate::authorize::token::TokenClaims;
use crate::authorize::{Decision, RouteTable};
use crate::config::{Upstream, UpstreamProtocol};
use crate::conn::{idle_check_period, ConnCtx, Shared, Tls};
use crate::forward_error::{Cause, ForwardError};
use crate::headers::{rewrite_request_headers, strip_response_headers};
use crate::telemetry::{GaugeGuard, UpstreamErrorKind};
use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode, Version};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::body::{Body, Frame, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use idle::{Activity, InFlight, ParkableIo, Since};
use std::borrow::Cow;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::AsyncRead;
use tokio::sync::watch;
use upstream::{UpstreamBody, UpstreamPool, UpstreamSlot, UpstreamSlots};
use websocket::UpgradeRequest;

/// An HTTP/1.1 upstream's body, an HTTP/2 upstream's, or the proxy's own.
pub type ProxyBody = Either<Either<UpstreamBody, upstream_h1::H1Body>, Either<upstream_h2::H2Body, Full<Bytes>>>;

/// What HTTP mode shares across all connections.
pub struct HttpShared {
    shared: Arc<Shared>,
    /// Keep-alive HTTP/1.1 connections to the upstream (hyper's client:
    /// requests with a body, TLS).
    pub upstream: Arc<UpstreamPool>,
    /// The same for requests without a body to a plain-TCP upstream.
    upstream_h1: Arc<upstream_h1::H1Pool>,
    /// The shared HTTP/2 connection to the upstream.
    upstream_h2: upstream_h2::H2Upstream,
    /// Idle HTTP/1 connections that hold no HTTP state (see `idle`).
    parked: metrics::Gauge,
}

impl HttpShared {
    pub fn new(shared: Arc<Shared>) -> HttpShared {
        HttpShared {
            shared,
            upstream: Arc::default(),
            upstream_h2: Default::default(),
            upstream_h1: Arc::default(),
            parked: metrics::gauge!("ambos_proxy_parked_connections"),
        }
    }
}

/// How often a connection checks whether it has gone quiet; an HTTP/1
/// connection with no request or byte for a whole period is parked (see
/// `idle`), so it parks 1-2 periods after its last response.
const PARK_CHECK: Duration = Duration::from_millis(500);

/// A response body that counts as in flight until it is dropped, and
/// holds its request's upstream slot (if it took one) as long.
pub struct TrackedBody {
    inner: ProxyBody,
    _in_flight: InFlight,
    _upstream_slot: Option<UpstreamSlot>,
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

type ServiceFuture = Pin<Box<dyn Future<Output = Result<Response<TrackedBody>, Infallible>> + Send>>;

fn service(
    ctx: Arc<ConnCtx>,
    http: Arc<HttpShared>,
    activity: Arc<Activity>,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response<TrackedBody>,
    Error = Infallible,
    Future = ServiceFuture,
> + Clone {
    // One per client connection: its streams share it.
    let slots = Arc::new(UpstreamSlots::new(ctx.runtime.config.limits.max_upstream_per_connection));
    hyper::service::service_fn(move |req| -> ServiceFuture {
        let in_flight = activity.request_started();
        let ctx = ctx.clone();
        let http = http.clone();
        let slots = slots.clone();
        let activity = activity.clone();
        Box::pin(async move {
            let mut slot = None;
            let started = Instant::now();
            let response = handle(req, &ctx, &http, slots, &mut slot, &activity).await;
            http.shared.requests.answered(response.status(), Some(started.elapsed()));
            Ok(response.map(|inner| TrackedBody { inner, _in_flight: in_flight, _upstream_slot: slot }))
        })
    })
}

/// Serves one client connection: HTTP/2 when ALPN chose it, else HTTP/1.1.
/// `shutdown` turns true when the proxy stops: requests in progress finish,
/// then the connection closes.
pub async fn serve(tls: Box<Tls>, ctx: Arc<ConnCtx>, http: Arc<HttpShared>, shutdown: watch::Receiver<bool>) {
    if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
        // Boxed so that HTTP/1.1 connections' tasks are not sized for it.
        Box::pin(serve_h2(tls, ctx, http, shutdown)).await
    } else {
        serve_h1(tls, ctx, http, shutdown).await
    }
}

async fn serve_h2(tls: Box<Tls>, ctx: Arc<ConnCtx>, http: Arc<HttpShared>, mut shutdown: watch::Receiver<bool>) {
    let idle = ctx.runtime.config.limits.idle_timeout;
    let activity = Arc::new(Activity::default());
    let svc = service(ctx, http, activity.clone());
    let mut conn = Box::pin(
        hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            // RFC 8441: WebSocket over HTTP/2 (extended CONNECT).
            .enable_connect_protocol()
            // No PINGs of ours: hyper would read the clock and take a lock
            // on every frame for them; TCP keepalive (`dial::tune`) finds a
            // client that is gone, as nginx's and Envoy's defaults do.
            .serve_connection(TokioIo::new(tls), svc),
    );
    let mut draining = *shutdown.borrow();
    if draining {
        conn.as_mut().graceful_shutdown();
    }
    // Idle: no stream for `idle_timeout` (PINGs answered or not) → GOAWAY,
    // and hyper closes once no stream is left. One timer per connection.
    let period = idle_check_period(idle);
    let mut tick = std::pin::pin!(tokio::time::sleep(period));
    let mut quiet_since = tokio::time::Instant::now();
    let mut changed = std::pin::pin!(shutdown.changed());
    // The stop and the idle check are polled only when they woke the task.
    let gate = crate::gate::Gate::default();
    std::future::poll_fn(|cx| {
        if !draining && gate.open(cx) {
            let mut side = gate.context();
            if let Poll::Ready(changed) = changed.as_mut().poll(&mut side) {
                draining = true;
                if changed.is_ok() {
                    conn.as_mut().graceful_shutdown();
                }
            }
            while !draining && tick.as_mut().poll(&mut side).is_ready() {
                let now = tokio::time::Instant::now();
                if activity.check() != Since::Quiet {
                    quiet_since = now;
                } else if now.duration_since(quiet_since) >= idle {
                    tracing::debug!("HTTP/2 connection without a stream for {idle:?}: GOAWAY");
                    metrics::counter!("ambos_proxy_timeouts_total", "kind" => "idle").increment(1);
                    draining = true;
                    conn.as_mut().graceful_shutdown();
                }
                tick.as_mut().reset(now + period);
            }
        }
        conn.as_mut().poll(cx).map(|_| ())
    })
    .await
}

/// HTTP/1.1 with parking: the hyper connection (and its buffers) exists
/// only while the client is active; see `idle`.
async fn serve_h1(tls: Box<Tls>, ctx: Arc<ConnCtx>, http: Arc<HttpShared>, mut shutdown: watch::Receiver<bool>) {
    let idle = ctx.runtime.config.limits.idle_timeout;
    let activity = Arc::new(Activity::default());
    let parked = http.parked.clone();
    // For the audit line of a request head that does not parse.
    let (head_ctx, head_http) = (ctx.clone(), http.clone());
    let svc = service(ctx, http, activity.clone());
    let mut builder = hyper::server::conn::http1::Builder::new();
    // The idle timeout is ours (see `idle`), checked every PARK_CHECK.
    builder.timer(TokioTimer::new()).header_read_timeout(None);
    let mut io = ParkableIo::new(tls, activity.clone());
    let mut draining = *shutdown.borrow();
    loop {
        // Boxed so that a parked connection holds none of hyper's state.
        let mut conn = Box::new(builder.serve_connection(TokioIo::new(io), svc.clone()));
        if draining {
            Pin::new(&mut *conn).graceful_shutdown();
        }
        // The quiet check and the shutdown flag are looked at every PARK_CHECK,
        // not on each wake-up of the connection: polling a timer and a
        // channel on every request costs more than the request's routing.
        let mut check = std::pin::pin!(tokio::time::sleep(PARK_CHECK));
        let mut check_armed = false;
        // Since when an incomplete request head has been waiting.
        let mut head_since: Option<Instant> = None;
        let finished = loop {
            let event = std::future::poll_fn(|cx| {
                if let Poll::Ready(r) = conn.poll_without_shutdown(cx) {
                    return Poll::Ready(Some(r));
                }
                if !check_armed || check.is_elapsed() {
                    check_armed = true;
                    if check.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(None);
                    }
                }
                Poll::Pending
            })
            .await;
            match event {
                Some(r) => break r,
                None => {
                    match activity.check() {
                        Since::Quiet => {
                            head_since = None;
                            activity.request_park();
                        }
                        Since::Busy => head_since = None,
                        Since::HeadPending => {
                            if head_since.get_or_insert_with(Instant::now).elapsed() >= idle {
                                // Dropping hyper's connection and the TLS stream closes it.
                                tracing::debug!("no complete request head within {idle:?}: closing");
                                return;
                            }
                        }
                    }
                    if !draining && shutdown.has_changed().unwrap_or(true) {
                        draining = true;
                        Pin::new(&mut *conn).graceful_shutdown();
                    }
                    check.as_mut().reset(tokio::time::Instant::now() + PARK_CHECK);
                    check_armed = false;
                }
            }
        };
        if let Err(e) = finished {
            if e.is_parse() {
                unparsable_head(&e, &head_ctx, &head_http.shared);
            }
            tracing::debug!("HTTP/1 connection ended: {e}");
            return;
        }
        let parts = conn.into_parts();
        io = parts.io.into_inner();
        if let Some(upstream) = activity.take_upgraded() {
            // A WebSocket: hyper wrote the 101 and gave the stream back.
            let (mut tls, unread) = io.into_parts();
            let read_ahead = if unread.is_empty() { parts.read_buf } else { [parts.read_buf, unread].concat().into() };
            if !websocket::pipe(&mut tls, read_ahead, upstream, idle).await {
                metrics::counter!("ambos_proxy_timeouts_total", "kind" => "idle").increment(1);
                tracing::debug!("WebSocket idle for {idle:?}: closed");
            }
            close(&mut tls).await;
            return;
        }
        let must_close = head_ctx.close_after_response.load(std::sync::atomic::Ordering::Relaxed);
        if !io.parked() || draining || must_close {
            // The client closed, asked to close, or we are stopping.
            close(io.get_mut()).await;
            if must_close {
                linger(io.get_mut()).await;
            }
            return;
        }
        if !parts.read_buf.is_empty() {
            io.unread(parts.read_buf);
            continue;
        }
        debug_assert!(!io.has_unread());
        // Parked: wait for the client's next bytes without any buffer. The
        // last byte came at least one PARK_CHECK ago, so the idle timeout
        // runs out that much sooner (and spurious wake-ups do not reset it).
        let _parked = GaugeGuard::new(&parked);
        let deadline = tokio::time::Instant::now() + idle.saturating_sub(PARK_CHECK);
        loop {
            let woke = tokio::select! {
                biased;
                r = tokio::time::timeout_at(deadline, io.get_ref().get_ref().0.readable()) => matches!(r, Ok(Ok(()))),
                _ = shutdown.changed(), if !draining => false,
            };
            if !woke {
                close(io.get_mut()).await;
                return;
            }
            match read_now(io.get_mut()) {
                // A request (or part of one): serve it with a new hyper connection.
                Some(Ok(bytes)) if !bytes.is_empty() => {
                    io.unread(bytes);
                    break;
                }
                // The client closed: no need to build hyper just to see that.
                Some(Ok(_)) | Some(Err(_)) => {
                    close(io.get_mut()).await;
                    return;
                }
                // Half a TLS record, or a spurious wake-up: keep waiting.
                None => continue,
            }
        }
    }
}

/// A request head hyper could not parse (a raw space, NUL or control byte
/// in the target, a target not starting with `/`, a malformed header...):
/// hyper has answered 400 (431, 414 when too large) and closes the
/// connection; it is audited and counted like a refusal before routing.
fn unparsable_head(e: &hyper::Error, ctx: &ConnCtx, shared: &Shared) {
    let status = match e.to_string() {
        s if s.contains("URI too long") => 414,
        _ if e.is_parse_too_large() => 431,
        _ => 400,
    };
    // hyper's own answer, which no service call saw.
    shared.requests.answered(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST), None);
    refused_before_routing(ctx, shared, None, &format!("request head does not parse: {e}"), status, 0.0);
}

/// Counts a request refused before routing and audits it (`head`: its
/// method and path, when they could be read).
fn refused_before_routing(
    ctx: &ConnCtx,
    shared: &Shared,
    head: Option<(&str, &str)>,
    reason: &str,
    status: u16,
    latency_ms: f64,
) {
    shared.requests.refused.increment(1);
    if !shared.audit.enabled() {
        return;
    }
    shared.audit.record(&AuditEvent {
        time: audit::now(),
        event: "request",
        peer: ctx.peer,
        identity: ctx.audit_identity(),
        route: None,
        method: head.map(|h| h.0),
        path: head.map(|h| h.1),
        decision: "deny",
        reason,
        status: Some(status),
        latency_ms,
    });
}

/// Reads what the client sent without waiting: `None` when nothing is
/// there yet. The buffer is on the stack, not in the connection's task.
fn read_now(tls: &mut Tls) -> Option<std::io::Result<Bytes>> {
    let mut buf = [0u8; 2048];
    let mut read_buf = tokio::io::ReadBuf::new(&mut buf);
    let mut cx = Context::from_waker(std::task::Waker::noop());
    match Pin::new(tls).poll_read(&mut cx, &mut read_buf) {
        Poll::Ready(Ok(())) => Some(Ok(Bytes::copy_from_slice(read_buf.filled()))),
        Poll::Ready(Err(e)) => Some(Err(e)),
        Poll::Pending => None,
    }
}

/// Ends a connection the way hyper would: TLS close_notify, then FIN.
async fn close(tls: &mut Tls) {
    let _ = tokio::time::timeout(Duration::from_secs(1), tokio::io::AsyncWriteExt::shutdown(tls)).await;
}

/// After closing a connection whose client may still be sending (a body
/// cut off unread), reads and discards for up to 1 s, as nginx's lingering
/// close: closing with unread bytes sends a reset, which can destroy the
/// response before the client has read it.
async fn linger(tls: &mut Tls) {
    let mut buf = [0u8; 1024];
    let drain = async { while matches!(tokio::io::AsyncReadExt::read(tls, &mut buf).await, Ok(n) if n > 0) {} };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
}

/// The method and target checks that come before any route: a method token
/// that is not a standard one (upper case) nor listed by a route is 400,
/// CONNECT is 405 unless a route lists it, and the target must read the
/// same way to every upstream (`target`).
fn read_target(req: &Request<Incoming>, routes: &RouteTable) -> Result<Target, (StatusCode, &'static str)> {
    let m = req.method();
    if !target::is_standard(m) && !routes.lists_method(m) {
        return Err((StatusCode::BAD_REQUEST, "method is not a standard token (upper case)"));
    }
    if m == http::Method::CONNECT && !routes.lists_method(m) {
        return Err((StatusCode::METHOD_NOT_ALLOWED, "CONNECT is not allowed by any route"));
    }
    target::parse_target(m, req.uri(), req.version() == Version::HTTP_2).map_err(|why| (StatusCode::BAD_REQUEST, why))
}

fn plain(status: StatusCode, text: &'static str) -> Response<ProxyBody> {
    let mut r = Response::new(Either::Right(Either::Right(Full::new(Bytes::from_static(text.as_bytes())))));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

/// `slots`: the client connection's upstream slots; the one a forwarded
/// request takes is left in `slot`, to be held until its response body is
/// done.
async fn handle(
    mut req: Request<Incoming>,
    ctx: &ConnCtx,
    http: &HttpShared,
    slots: Arc<UpstreamSlots>,
    slot: &mut Option<UpstreamSlot>,
    activity: &Activity,
) -> Response<ProxyBody> {
    let shared = &*http.shared;
    let grpc = is_grpc(req.headers());
    let upgrade = websocket::requested(&req);
    // What the audit line needs is kept only when there is an audit log.
    let audit = shared.audit.enabled().then(|| (Instant::now(), req.method().clone(), req.uri().path().to_string()));
    let config = &ctx.runtime.config;
    // The head before the target: header names, Host, Connection, framing.
    if let Err((status, why)) = crate::headers::check_request_head(&mut req, config.underscores)
        .and_then(|()| crate::headers::check_host_served(&req, &config.hosts, ctx.sni.as_deref()))
    {
        let response = refuse_head(status, why, ctx, shared, audit);
        return if grpc { grpc_refusal(status, false) } else { response };
    }
    // The target as it will be forwarded; routes are matched on its path.
    // An RFC 8441 CONNECT is routed as the GET it becomes upstream.
    let over_h2 = upgrade == UpgradeRequest::WebSocketOverH2;
    let target = match over_h2 {
        false => read_target(&req, &ctx.runtime.routes),
        true => target::parse_target(&http::Method::GET, req.uri(), true).map_err(|why| (StatusCode::BAD_REQUEST, why)),
    };
    let method = if over_h2 { &http::Method::GET } else { req.method() };
    let (mut token_refused, mut token_claims) = (None, None);
    let (decision, route) = match &target {
        Err((status, why)) => {
            shared.requests.refused.increment(1);
            (Err((*status, *why)), None)
        }
        Ok(t) => match ctx.runtime.routes.decide(method, t.path(), ctx.identity.as_ref()) {
            Decision::Allow(r) if upgrade == UpgradeRequest::Other => {
                r.denied.increment(1);
                (Err((StatusCode::BAD_REQUEST, "Upgrade to a protocol other than websocket")), Some(r))
            }
            Decision::Allow(r) if upgrade.is_websocket() && !r.websocket => {
                r.denied.increment(1);
                (Err((StatusCode::FORBIDDEN, "WebSocket is not allowed on this route")), Some(r))
            }
            Decision::Allow(r) => match match &r.token {
                Some(t) => {
                    let leaf = ctx.identity.as_ref().map(|i| i.sha256.as_str());
                    Some(t.check_or_refresh(req.headers().get(header::AUTHORIZATION), leaf).await)
                }
                None => None,
            } {
                Some(Err(refusal)) => {
                    r.denied.increment(1);
                    metrics::counter!("ambos_proxy_token_refusals_total", "reason" => refusal.label()).increment(1);
                    token_refused = Some(refusal);
                    (Err((refusal.status(), refusal.description())), Some(r))
                }
                verified => {
                    token_claims = verified.and_then(Result::ok);
                    r.allowed.increment(1);
                    (Ok(()), Some(r))
                }
            },
            Decision::NotAllowed(r) => {
                r.denied.increment(1);
                (
                    Err((
                        StatusCode::FORBIDDEN,
                        if ctx.identity.is_some() {
                            "identity not on the route's allow list"
                        } else {
                            "no client certificate"
                        },
                    )),
                    Some(r),
                )
            }
            Decision::NoRoute => {
                shared.requests.no_route.increment(1);
                (Err((StatusCode::FORBIDDEN, "no route matches")), None)
            }
        },
    };
    let (response, reason): (_, Cow<'static, str>) = match (decision, target) {
        (Err((status, why)), _) => {
            let mut resp = match status {
                StatusCode::BAD_REQUEST => plain(status, "bad request\n"),
                StatusCode::METHOD_NOT_ALLOWED => plain(status, "method not allowed\n"),
                StatusCode::UNAUTHORIZED => plain(status, "unauthorized\n"),
                _ => plain(status, "forbidden\n"),
            };
            if let Some(refusal) = token_refused {
                // RFC 6750 3: say why, so a client can tell a stale token from a stolen one.
                resp.headers_mut().insert(header::WWW_AUTHENTICATE, refusal.challenge());
            }
            if status == StatusCode::METHOD_NOT_ALLOWED {
                resp.headers_mut().insert(
                    header::ALLOW,
                    HeaderValue::from_static("GET, HEAD, POST, PUT, DELETE, OPTIONS, TRACE, PATCH"),
                );
            }
            (resp, why.into())
        }
        (Ok(()), Ok(target)) => {
            // The token is for this proxy: it goes no further unless the route says so.
            if route.and_then(|r| r.token.as_ref()).is_some_and(|t| !t.config().forward) {
                req.headers_mut().remove(header::AUTHORIZATION);
            }
            match forward_in_slot(req, &target, ctx, http, slots, slot, (upgrade, activity, token_claims)).await {
                Ok(resp) => (resp, "allowed".into()),
                Err(ForwardError { cause, why }) => match cause {
                    // The client's body broke off or did not parse: its fault, not the upstream's.
                    Cause::ClientBody => {
                        tracing::debug!(peer = %ctx.peer, "{why}");
                        (plain(StatusCode::BAD_REQUEST, "bad request: malformed body\n"), why.into())
                    }
                    // The client's body stalled: 408, and the connection closes (its body is unread).
                    Cause::BodyTimeout => {
                        metrics::counter!("ambos_proxy_timeouts_total", "kind" => "body").increment(1);
                        tracing::debug!(peer = %ctx.peer, "{why}");
                        let mut resp = plain(StatusCode::REQUEST_TIMEOUT, "request timeout: body too slow\n");
                        resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
                        (resp, why.into())
                    }
                    // A gRPC message over max_grpc_message: RESOURCE_EXHAUSTED, its bytes unread.
                    Cause::GrpcTooLarge => {
                        tracing::debug!(peer = %ctx.peer, "{why}");
                        (plain(StatusCode::PAYLOAD_TOO_LARGE, "payload too large\n"), why.into())
                    }
                    // The client connection holds all the upstream connections it may.
                    Cause::Queue => {
                        metrics::counter!("ambos_proxy_timeouts_total", "kind" => "upstream_queue").increment(1);
                        tracing::debug!(peer = %ctx.peer, "{why}");
                        let mut resp = plain(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "service unavailable: too many requests in flight\n",
                        );
                        // A slot frees when one of this connection's own requests ends: soon, so retry soon.
                        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                        (resp, why.into())
                    }
                    Cause::Upstream(UpstreamErrorKind::Timeout) => {
                        metrics::counter!("ambos_proxy_timeouts_total", "kind" => "upstream").increment(1);
                        shared.requests.upstream_error(UpstreamErrorKind::Timeout);
                        tracing::warn!(peer = %ctx.peer, "{why}");
                        (plain(StatusCode::GATEWAY_TIMEOUT, "gateway timeout: upstream did not answer\n"), why.into())
                    }
                    Cause::Upstream(kind) => {
                        shared.requests.upstream_error(kind);
                        tracing::warn!(peer = %ctx.peer, "upstream error: {why}");
                        (plain(StatusCode::BAD_GATEWAY, "bad gateway: upstream unavailable\n"), why.into())
                    }
                },
            }
        }
        (Ok(()), Err(_)) => unreachable!("a refused target has no decision"),
    };
    if let Some((started, method, path)) = audit {
        shared.audit.record(&AuditEvent {
            time: audit::now(),
            event: "request",
            peer: ctx.peer,
            identity: ctx.audit_identity(),
            route: route.map(|r| &*r.name),
            method: Some(method.as_str()),
            path: Some(&path),
            decision: if reason == "allowed" { "allow" } else { "deny" },
            reason: &reason,
            status: Some(response.status().as_u16()),
            latency_ms: started.elapsed().as_secs_f64() * 1000.0,
        });
    }
    if matches!(response.status(), StatusCode::REQUEST_TIMEOUT | StatusCode::PAYLOAD_TOO_LARGE) {
        // The client's body is unread: the connection cannot be reused.
        ctx.close_after_response.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    if grpc && reason != "allowed" {
        // Audited and counted as the refusal it is; answered as gRPC clients read it.
        let unauthenticated = reason == "no client certificate";
        return grpc_refusal(response.status(), unauthenticated);
    }
    response
}

/// gRPC's content types: `application/grpc`, `application/grpc+proto`, ...
fn is_grpc(h: &http::HeaderMap) -> bool {
    h.get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// The proxy's own refusal of a gRPC call: gRPC clients read a non-200
/// status as an opaque failure (`UNAVAILABLE ... 403`), so the answer is
/// HTTP 200 with a trailers-only `grpc-status` and `grpc-message`, mapped
/// as gRPC's own HTTP-to-gRPC table does (403: PERMISSION_DENIED, 502,
/// 503 and 504: UNAVAILABLE), and 413 (`max_grpc_message`) as
/// RESOURCE_EXHAUSTED.
fn grpc_refusal(status: StatusCode, unauthenticated: bool) -> Response<ProxyBody> {
    let code = match status.as_u16() {
        _ if unauthenticated => "16",
        400 => "13",
        401 => "16",
        403 => "7",
        404 => "12",
        413 => "8",
        429 | 502 | 503 | 504 => "14",
        _ => "2",
    };
    let mut r = Response::new(Either::Right(Either::Right(Full::new(Bytes::new()))));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    h.insert("grpc-status", HeaderValue::from_static(code));
    // ASCII without '%': no percent-encoding needed (gRPC's grpc-message rule).
    let message = format!("ambos proxy: {} {}", status.as_u16(), status.canonical_reason().unwrap_or(""));
    if let Ok(v) = HeaderValue::from_str(message.trim_end()) {
        h.insert("grpc-message", v);
    }
    r
}

/// A request refused for its head (`headers::check_request_head`), before
/// any route: answered, counted and audited like a refused target.
fn refuse_head(
    status: StatusCode,
    why: &'static str,
    ctx: &ConnCtx,
    shared: &Shared,
    audit: Option<(Instant, http::Method, String)>,
) -> Response<ProxyBody> {
    tracing::debug!(peer = %ctx.peer, "refused: {why}");
    let text = if status == StatusCode::MISDIRECTED_REQUEST { "misdirected request\n" } else { "bad request\n" };
    let response = plain(status, text);
    match audit {
        Some((started, method, path)) => {
            let latency = started.elapsed().as_secs_f64() * 1000.0;
            refused_before_routing(ctx, shared, Some((method.as_str(), &path)), why, status.as_u16(), latency)
        }
        None => shared.requests.refused.increment(1),
    }
    response
}

/// How a forwarding error starts when the request waited
/// `upstream_queue_timeout` for one of its client connection's
/// `max_upstream_per_connection` upstream slots: 503.
const UPSTREAM_QUEUE: &str = "upstream queue timed out";

/// [`forward`] once the request holds one of its connection's upstream
/// slots, which it leaves in `slot`.
async fn forward_in_slot(
    req: Request<Incoming>,
    target: &Target,
    ctx: &ConnCtx,
    http: &HttpShared,
    slots: Arc<UpstreamSlots>,
    slot: &mut Option<UpstreamSlot>,
    extra: (UpgradeRequest, &Activity, Option<TokenClaims>),
) -> Result<Response<ProxyBody>, ForwardError> {
    let limits = &ctx.runtime.config.limits;
    match UpstreamSlots::take(slots, limits.upstream_queue_timeout).await {
        Some(s) => *slot = Some(s),
        None => {
            return Err(ForwardError::new(
                Cause::Queue,
                format!(
                    "{UPSTREAM_QUEUE}: this connection held all its {} upstream connections for {:?}",
                    limits.max_upstream_per_connection, limits.upstream_queue_timeout
                ),
            ))
        }
    }
    forward(req, target, ctx, http, extra).await
}

async fn forward(
    mut req: Request<Incoming>,
    target: &Target,
    ctx: &ConnCtx,
    http: &HttpShared,
    (upgrade, activity, token_claims): (UpgradeRequest, &Activity, Option<TokenClaims>),
) -> Result<Response<ProxyBody>, ForwardError> {
    let Upstream::Http { authority, protocol, .. } = &ctx.runtime.config.upstream else {
        return Err(ForwardError::upstream(UpstreamErrorKind::Other, "no HTTP upstream"));
    };
    let tls = ctx.runtime.upstream_tls.as_ref();
    let limits = &ctx.runtime.config.limits;
    let websocket = upgrade.is_websocket();
    if websocket && *protocol == UpstreamProtocol::H2 && tls.is_none() {
        return Err(ForwardError::upstream(
            UpstreamErrorKind::Other,
            format!("upstream {authority}: WebSocket needs HTTP/1.1 to the upstream (h2c:// is HTTP/2 only)"),
        ));
    }
    let h2 = match protocol {
        _ if websocket => None,
        UpstreamProtocol::Http1 => None,
        UpstreamProtocol::H2 | UpstreamProtocol::Auto => {
            let auto = *protocol == UpstreamProtocol::Auto;
            let dial = upstream_h2::Dial { authority, tls, auto, timeout: limits.upstream_connect_timeout };
            http.upstream_h2.connection(dial).await?
        }
    };
    // RFC 8441: the client's HTTP/2 stream, once our 200 is sent.
    let client_stream = (upgrade == UpgradeRequest::WebSocketOverH2).then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    // gRPC servers want TE: trailers (HTTP/2 allows no other TE); it is
    // hop-by-hop, so it is stripped below and set again for HTTP/2.
    let te_trailers = h2.is_some()
        && parts
            .headers
            .get_all(header::TE)
            .iter()
            .any(|v| v.as_bytes().split(|&b| b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(b"trailers")));
    if !parts.headers.contains_key(header::HOST) {
        // HTTP/2 carries the host in :authority; HTTP/1.1 upstreams need Host.
        let host = parts.uri.authority().unwrap_or(authority);
        if let Ok(v) = HeaderValue::from_str(host.as_str()) {
            parts.headers.insert(header::HOST, v);
        }
    }
    // Exactly what was authorized: the normalized path in origin form
    // (`/path?query`), or `host:port` for CONNECT.
    parts.uri = target.to_uri().map_err(|why| ForwardError::upstream(UpstreamErrorKind::Other, why))?;
    rewrite_request_headers(&mut parts.headers, &ctx.headers);
    if let Some(told) = token_claims {
        for (name, value) in
            [(&crate::headers::TOKEN_SUBJECT, told.subject), (&crate::headers::TOKEN_SCOPE, told.scope)]
        {
            if let Some(v) = value {
                parts.headers.insert(name.clone(), v);
            }
        }
    }
    crate::headers::regenerate_framing(&mut parts.headers, &body.size_hint(), body.is_end_stream());
    let mut timeouts = upstream::Timeouts::from_limits(limits);
    if websocket {
        // Boxed: an upgrade is rare, and its future would size every request's.
        let (resp, upgraded) =
            Box::pin(websocket::forward(parts, authority, tls, &timeouts, client_stream.is_some())).await?;
        match (upgraded, client_stream) {
            (Some(u), None) => activity.hand_over(u),
            // An HTTP/2 stream: piped in a task of its own, which ends with the connection.
            (Some(u), Some(client)) => {
                let idle = limits.idle_timeout;
                tokio::spawn(async move {
                    if let Ok(client) = client.await {
                        websocket::pipe(&mut TokioIo::new(client), Bytes::new(), u, idle).await;
                    }
                });
            }
            (None, _) => {}
        }
        return Ok(resp);
    }
    if limits.max_grpc_message > 0 && is_grpc(&parts.headers) {
        timeouts.grpc_message_max = limits.max_grpc_message;
    }
    let resp = match h2 {
        // Most requests: no body, to a plain-TCP upstream (see `upstream_h1`).
        None if tls.is_none() && body.is_end_stream() && parts.method != http::Method::CONNECT => {
            parts.version = Version::HTTP_11;
            // Hop-by-hop headers were left out as the head was read.
            return Ok(http
                .upstream_h1
                .send(authority, &parts, &timeouts)
                .await?
                .map(|b| Either::Left(Either::Right(b))));
        }
        None => {
            parts.version = Version::HTTP_11;
            let resp = http.upstream.send(authority, tls, Request::from_parts(parts, body), timeouts).await?;
            resp.map(|b| Either::Left(Either::Left(b)))
        }
        Some(sender) => {
            // HTTP/2 wants the URI absolute (:scheme, :authority) and no Host,
            // Transfer-Encoding or other connection headers.
            parts.version = Version::HTTP_2;
            let host = parts.headers.remove(header::HOST);
            parts.headers.remove(header::TRANSFER_ENCODING);
            if te_trailers {
                parts.headers.insert(header::TE, HeaderValue::from_static("trailers"));
            }
            if parts.method != http::Method::CONNECT {
                let scheme = if tls.is_some() { "https" } else { "http" };
                let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
                let host = host.as_ref().and_then(|h| h.to_str().ok()).unwrap_or(authority.as_str());
                parts.uri = format!("{scheme}://{host}{path}")
                    .parse()
                    .map_err(|e| ForwardError::upstream(UpstreamErrorKind::Other, format!("bad request URI: {e}")))?;
            }
            let resp =
                http.upstream_h2.send(sender, authority, tls, Request::from_parts(parts, body), timeouts).await?;
            resp.map(|b| Either::Right(Either::Left(b)))
        }
    };
    let (mut parts, body) = resp.into_parts();
    strip_response_headers(&mut parts.headers);
    Ok(Response::from_parts(parts, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_refusals_are_trailers_only_with_grpcs_own_mapping() {
        for (status, unauthenticated, code) in [
            (StatusCode::FORBIDDEN, false, "7"),
            (StatusCode::FORBIDDEN, true, "16"),
            (StatusCode::BAD_GATEWAY, false, "14"),
            (StatusCode::SERVICE_UNAVAILABLE, false, "14"),
            (StatusCode::GATEWAY_TIMEOUT, false, "14"),
            (StatusCode::PAYLOAD_TOO_LARGE, false, "8"),
            (StatusCode::BAD_REQUEST, false, "13"),
            (StatusCode::MISDIRECTED_REQUEST, false, "2"),
        ] {
            let r = grpc_refusal(status, unauthenticated);
            assert_eq!(r.status(), StatusCode::OK, "{status}");
            assert!(r.body().is_end_stream(), "{status}: trailers-only, no body");
            let h = r.headers();
            assert_eq!(h["content-type"], "application/grpc");
            assert_eq!(h["grpc-status"], code, "{status}");
            let message = format!("ambos proxy: {} {}", status.as_u16(), status.canonical_reason().unwrap());
            assert_eq!(h["grpc-message"], message.as_str());
        }
        let mut h = http::HeaderMap::new();
        assert!(!is_grpc(&h));
        for (ct, grpc) in [("application/grpc", true), ("application/grpc+proto", true), ("application/json", false)] {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
            assert_eq!(is_grpc(&h), grpc, "{ct}");
        }
    }
}
