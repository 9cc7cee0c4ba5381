//! Keep-alive HTTP/1.1 connections to the upstream.
//!
//! A request takes an idle connection from the pool (or opens one) and
//! drives it on the client connection's own task: sending the request,
//! reading the response head and then, from inside the response body, the
//! rest of the response. When the body is done the connection goes back to
//! the pool. Compared with hyper-util's pooled client this saves a hand-off
//! to a second task and back for every request, and the pool is a plain
//! stack: every connection in it goes to the same upstream.
//!
//! The retry rule: a request is sent again, on a new connection, only when
//! it was never written, on a pooled connection the upstream had closed
//! meanwhile. A request that was written, or a new connection that fails,
//! is an error (502, or 504 on a timeout): the request may have had its
//! effect.
use crate::forward_error::{Cause, ForwardError};
use crate::telemetry::UpstreamErrorKind;
use ambos_tls::error_chain;
use bytes::Bytes;
use http::uri::Authority;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::{
    AtomicU8, AtomicUsize,
    Ordering::{Acquire, Relaxed, Release},
};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::time::Sleep;

/// Idle connections kept at most; more are closed when returned (both
/// HTTP/1.1 pools).
pub(super) const MAX_IDLE: usize = 1024;
/// An idle connection older than this is closed instead of reused.
pub(super) const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How a [`UpstreamPool::send`] error starts when the client's request
/// body was at fault (bad chunked encoding, shorter than its length):
/// the client's 400, not an upstream error.
pub const CLIENT_BODY_ERROR: &str = "malformed request body";
/// How a [`UpstreamPool::send`] error starts when the client's request
/// body was too slow (`body_timeout`, `body_min_rate`): 408, the upstream
/// connection closed.
pub const BODY_TIMEOUT: &str = "request body timed out";
pub use crate::dial::UPSTREAM_TIMEOUT;
/// How a send error starts when a gRPC request's body carried a message
/// over `max_grpc_message`: RESOURCE_EXHAUSTED (413).
pub const GRPC_MESSAGE_TOO_LARGE: &str = "gRPC message too large";

/// The `[limits]` timeouts that apply to one request.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// Connecting to the upstream.
    pub connect: Duration,
    /// From the end of the request (its body sent) to the response head.
    pub response: Duration,
    /// The window in which the client's body must make progress.
    pub body: Duration,
    /// Bytes per second the client's body must average over each window.
    pub body_min_rate: u64,
    /// The largest gRPC message the body may carry (`max_grpc_message`);
    /// 0: not a gRPC request, or no limit.
    pub grpc_message_max: u64,
}

impl Timeouts {
    pub fn from_limits(l: &crate::config::Limits) -> Timeouts {
        Timeouts {
            connect: l.upstream_connect_timeout,
            response: l.upstream_timeout,
            body: l.body_timeout,
            body_min_rate: l.body_min_rate,
            grpc_message_max: 0,
        }
    }
}

/// Timeouts for tests: 5 s each, no minimum rate, no gRPC limit.
#[cfg(test)]
pub(super) const TEST_TIMEOUTS: Timeouts = Timeouts {
    connect: Duration::from_secs(5),
    response: Duration::from_secs(5),
    body: Duration::from_secs(5),
    body_min_rate: 0,
    grpc_message_max: 0,
};

/// The client's request body cut off: too little of it in a `body_timeout` window.
#[derive(Debug)]
struct BodyTimedOut;

impl std::fmt::Display for BodyTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the client's body sent less than body_min_rate for body_timeout")
    }
}

impl std::error::Error for BodyTimedOut {}

/// The client's gRPC request carried a message over `max_grpc_message`.
#[derive(Debug)]
struct MessageTooLarge(u64);

impl std::fmt::Display for MessageTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a gRPC message of {} bytes", self.0)
    }
}

impl std::error::Error for MessageTooLarge {}

/// What became of a request body: the request's sender reads it, since an
/// HTTP/2 upstream connection reports a failed body only as a reset stream.
const SENDING: u8 = 0;
const ENDED: u8 = 1;
const TIMED_OUT: u8 = 2;
const MALFORMED: u8 = 3;
const TOO_LARGE: u8 = 4;

/// A [`ClientBody`]'s outcome, for whoever waits for its response.
#[derive(Clone)]
pub struct BodyOutcome(Option<Arc<AtomicU8>>);

impl BodyOutcome {
    /// Whether the body is over (a body empty from the start is).
    pub(super) fn ended(&self) -> bool {
        self.0.as_ref().is_none_or(|s| s.load(Relaxed) != SENDING)
    }

    fn get(&self) -> u8 {
        self.0.as_ref().map_or(ENDED, |s| s.load(Relaxed))
    }

    fn set(&self, state: u8) {
        if let Some(s) = &self.0 {
            s.store(state, Relaxed);
        }
    }
}

/// Reads gRPC's length-prefixed messages (a flag byte, a 4-byte length)
/// as the body passes, to refuse one over the limit from its prefix,
/// before its bytes are read.
struct GrpcMessages {
    max: u64,
    /// The prefix read so far, and how much of it.
    prefix: [u8; 5],
    have: usize,
    /// Bytes of the current message still to pass.
    rest: u64,
}

impl GrpcMessages {
    /// Walks `data`; the size of a message over the limit, if one starts.
    fn over_limit(&mut self, mut data: &[u8]) -> Option<u64> {
        while !data.is_empty() {
            if self.rest > 0 {
                let n = self.rest.min(data.len() as u64);
                self.rest -= n;
                data = &data[n as usize..];
                continue;
            }
            let n = (5 - self.have).min(data.len());
            self.prefix[self.have..self.have + n].copy_from_slice(&data[..n]);
            self.have += n;
            data = &data[n..];
            if self.have == 5 {
                self.have = 0;
                let [_, a, b, c, d] = self.prefix;
                self.rest = u64::from(u32::from_be_bytes([a, b, c, d]));
                if self.rest > self.max {
                    return Some(self.rest);
                }
            }
        }
        None
    }
}

/// The client's request body on its way to the upstream. A body that
/// makes the upstream connection wait (most never do: they come with the
/// head) gets a timer at its first wait: from then on, every `body_timeout`
/// window must bring at least `body_min_rate` × `body_timeout` bytes (and
/// at least one), else the body is cut off and the upstream connection
/// closes. A silent body is cut off `body_timeout` after its first wait;
/// one that stops later within two windows; a body trickling at 1 byte/s
/// after one window. It also tells [`UpstreamPool::send`] when it has
/// ended, which starts the wait for the response head.
pub struct ClientBody {
    inner: Incoming,
    timeout: Duration,
    /// Bytes a window must bring (at least 1).
    min_bytes: u64,
    /// The window's timer, armed at the first wait for the client, the
    /// bytes received in the window, and whether the last poll waited for
    /// the client.
    window: Option<(Pin<Box<Sleep>>, u64, bool)>,
    /// How the body ended; nothing to tell for a body empty from the start.
    outcome: BodyOutcome,
    /// For a gRPC request under `max_grpc_message`.
    grpc: Option<Box<GrpcMessages>>,
}

type FramePoll = Poll<Option<Result<Frame<Bytes>, Box<dyn std::error::Error + Send + Sync>>>>;

impl ClientBody {
    pub(super) fn outcome(&self) -> BodyOutcome {
        self.outcome.clone()
    }

    pub(super) fn new(inner: Incoming, t: &Timeouts) -> ClientBody {
        let outcome = BodyOutcome((!inner.is_end_stream()).then(|| Arc::new(AtomicU8::new(SENDING))));
        let min_bytes = (t.body_min_rate as f64 * t.body.as_secs_f64()).ceil().max(1.0) as u64;
        let grpc = (t.grpc_message_max > 0)
            .then(|| Box::new(GrpcMessages { max: t.grpc_message_max, prefix: [0; 5], have: 0, rest: 0 }));
        ClientBody { inner, timeout: t.body, min_bytes, window: None, outcome, grpc }
    }

    fn fail(&self, state: u8, e: Box<dyn std::error::Error + Send + Sync>) -> FramePoll {
        self.outcome.set(state);
        Poll::Ready(Some(Err(e)))
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(grpc), Some(data)) = (&mut this.grpc, frame.data_ref()) {
                    if let Some(size) = grpc.over_limit(data) {
                        return this.fail(TOO_LARGE, Box::new(MessageTooLarge(size)));
                    }
                }
                if let Some((timer, bytes, waiting)) = &mut this.window {
                    *bytes += frame.data_ref().map_or(0, |d| d.len() as u64);
                    let now = tokio::time::Instant::now();
                    if timer.deadline() <= now {
                        // The window is over. If the body was waiting for the
                        // client, this frame is the last of it and too little is
                        // too little; if it was not polled (the upstream was
                        // not taking data), that was not the client's fault.
                        if *waiting && *bytes < this.min_bytes {
                            this.outcome.set(TIMED_OUT);
                            return Poll::Ready(Some(Err(Box::new(BodyTimedOut))));
                        }
                        timer.as_mut().reset(now + this.timeout);
                        *bytes = 0;
                    }
                    *waiting = false;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => this.fail(MALFORMED, e.into()),
            Poll::Ready(None) => {
                this.outcome.set(ENDED);
                Poll::Ready(None)
            }
            Poll::Pending => {
                let timeout = this.timeout;
                let (timer, bytes, waiting) =
                    this.window.get_or_insert_with(|| (Box::pin(tokio::time::sleep(timeout)), 0, true));
                *waiting = true;
                loop {
                    if timer.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    if *bytes < this.min_bytes {
                        this.outcome.set(TIMED_OUT);
                        return Poll::Ready(Some(Err(Box::new(BodyTimedOut))));
                    }
                    *bytes = 0;
                    timer.as_mut().reset(tokio::time::Instant::now() + timeout);
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        let end = self.inner.is_end_stream();
        if end {
            self.outcome.set(ENDED);
        }
        end
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// One keep-alive connection: the request side and the connection state
/// machine that does the I/O, which whoever holds it must poll.
pub struct UpstreamConn {
    authority: Authority,
    /// Over TLS, the `UpstreamTls::fingerprint` it was made with: a pooled
    /// connection is only reused for the same kind, and not after a reload
    /// that changed the CA, certificate or `expect` it was checked with.
    tls: Option<u64>,
    sender: http1::SendRequest<ClientBody>,
    conn: http1::Connection<TokioIo<UpstreamIo>, ClientBody>,
    idle_since: Instant,
}

/// The upstream connection's transport.
pub enum UpstreamIo {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl tokio::io::AsyncRead for UpstreamIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_read(cx, buf),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for UpstreamIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_write(cx, buf),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            UpstreamIo::Plain(s) => s.is_write_vectored(),
            UpstreamIo::Tls(s) => s.is_write_vectored(),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_flush(cx),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_shutdown(cx),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

impl UpstreamIo {
    /// Whether TLS ALPN chose HTTP/2.
    pub(super) fn alpn_h2(&self) -> bool {
        matches!(self, UpstreamIo::Tls(s) if s.get_ref().1.alpn_protocol() == Some(b"h2"))
    }
}

impl UpstreamConn {
    /// Polls the connection; true once it has ended (closed or failed).
    fn poll_ended(&mut self, cx: &mut Context<'_>) -> bool {
        Pin::new(&mut self.conn).poll(cx).is_ready()
    }

    /// Waits until the connection takes a request; false if it has closed.
    async fn ready(&mut self) -> bool {
        // An idle pooled connection is ready at once: asked without our
        // waker, so that the request about to be queued does not wake this
        // task for a second, useless poll (the send polls the connection
        // with the real waker next).
        if let Some(ready) = self.poll_ready(&mut Context::from_waker(std::task::Waker::noop())) {
            return ready;
        }
        poll_fn(|cx| self.poll_ready(cx).map_or(Poll::Pending, Poll::Ready)).await
    }

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Option<bool> {
        // The connection first: nobody polled it while it sat in the
        // pool, so this is where it reads the upstream's FIN, if any.
        if self.poll_ended(cx) {
            return Some(false);
        }
        match self.sender.poll_ready(cx) {
            Poll::Ready(r) => Some(r.is_ok()),
            Poll::Pending => None,
        }
    }
}

#[derive(Default)]
pub struct UpstreamPool {
    /// Boxed: a connection is over 1 KiB and moves through several
    /// futures and the response body on every request.
    #[allow(clippy::vec_box)] // boxed for the moves after it leaves the Vec
    idle: Mutex<Vec<Box<UpstreamConn>>>,
}

impl UpstreamPool {
    fn take(&self, authority: &Authority, tls: Option<u64>) -> Option<Box<UpstreamConn>> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(c) = idle.pop() {
            // After a reload the upstream may have changed.
            // Byte comparison: `Authority`'s `==` ignores ASCII case, slowly.
            if c.authority.as_str() == authority.as_str() && c.tls == tls && c.idle_since.elapsed() < IDLE_TIMEOUT {
                return Some(c);
            }
        }
        None
    }

    fn put(&self, mut conn: Box<UpstreamConn>) {
        conn.idle_since = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }

    async fn connect(
        authority: &Authority,
        tls: Option<&crate::upstream_tls::UpstreamTls>,
        timeout: Duration,
    ) -> Result<Box<UpstreamConn>, ForwardError> {
        let io = connect_io(authority, tls.map(|t| (&t.connector, t)), timeout).await?;
        let (sender, conn) = http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| ForwardError::upstream_error(&e, format!("upstream {authority}: {e}")))?;
        let tls = tls.map(|t| t.fingerprint);
        Ok(Box::new(UpstreamConn { authority: authority.clone(), tls, sender, conn, idle_since: Instant::now() }))
    }

    /// Sends `req` to the upstream and returns the response, whose body
    /// drives the connection and returns it to the pool when done. A
    /// pooled connection that turns out to be closed before the request
    /// went out is replaced by a new one. No response head within
    /// `timeouts.response` of the request's end: [`UPSTREAM_TIMEOUT`], and
    /// the connection is closed.
    pub async fn send(
        self: &Arc<Self>,
        authority: &Authority,
        tls: Option<&crate::upstream_tls::UpstreamTls>,
        req: http::Request<Incoming>,
        timeouts: Timeouts,
    ) -> Result<http::Response<UpstreamBody>, ForwardError> {
        let mut req = req.map(|b| ClientBody::new(b, &timeouts));
        // The one timer of the request: polled (armed) once the request
        // has ended, i.e. at once for a request without a body.
        let outcome = req.body().outcome();
        let mut timer = std::pin::pin!(tokio::time::sleep(timeouts.response));
        let mut timer_armed = false;
        loop {
            let (mut up, pooled) = match self.take(authority, tls.map(|t| t.fingerprint)) {
                Some(c) => (c, true),
                // Boxed: a new connection is rare, and its future would
                // otherwise size every request's.
                None => (Box::pin(Self::connect(authority, tls, timeouts.connect)).await?, false),
            };
            if !up.ready().await {
                if pooled {
                    continue;
                }
                return Err(ForwardError::upstream(
                    UpstreamErrorKind::Reset,
                    format!("upstream {authority}: connection closed"),
                ));
            }
            let mut sent = std::pin::pin!(up.sender.try_send_request(req));
            let mut conn_ended = false;
            // The connection first, then the response it may just have
            // read: both in the same poll, instead of a second poll of the
            // whole client connection after the response's wake-up. Once
            // the connection has ended, the request side resolves at once.
            let result = poll_fn(|cx| {
                if !conn_ended && up.poll_ended(cx) {
                    conn_ended = true;
                }
                if let Poll::Ready(r) = sent.as_mut().poll(cx) {
                    return Poll::Ready(Some(r));
                }
                if !timer_armed && outcome.ended() {
                    timer_armed = true;
                    if outcome.0.is_some() {
                        timer.as_mut().reset(tokio::time::Instant::now() + timeouts.response);
                    }
                }
                if timer_armed && timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(None);
                }
                Poll::Pending
            })
            .await;
            let Some(result) = result else {
                // Dropping the connection closes it: it cannot be reused mid-exchange.
                return Err(ForwardError::upstream(
                    UpstreamErrorKind::Timeout,
                    format!("{UPSTREAM_TIMEOUT}: {authority}: no response within {:?}", timeouts.response),
                ));
            };
            match result {
                Ok(resp) => {
                    let pool = self.clone();
                    let up = if conn_ended { None } else { Some(up) };
                    return Ok(resp.map(|body| UpstreamBody { body, up, pool }));
                }
                Err(mut e) => match e.take_message() {
                    // Not sent: the pooled connection was closing. Try again.
                    Some(unsent) if pooled => req = unsent,
                    _ => return Err(send_error(e.error(), &outcome, authority, &timeouts)),
                },
            }
        }
    }
}

/// Connects to the upstream: TCP, then TLS with `tls`'s connector when
/// given (its ALPN list is the connector's) and its `expect` check.
pub(super) async fn connect_io(
    authority: &Authority,
    tls: Option<(&tokio_rustls::TlsConnector, &crate::upstream_tls::UpstreamTls)>,
    timeout: Duration,
) -> Result<UpstreamIo, ForwardError> {
    let stream = crate::dial::connect_tcp(authority.as_str(), timeout).await?;
    let Some((connector, t)) = tls else { return Ok(UpstreamIo::Plain(stream)) };
    let tls = crate::dial::handshake_tls(authority.as_str(), connector, t, stream, timeout).await?;
    Ok(UpstreamIo::Tls(Box::new(tls)))
}

/// What a request that failed on its way to the upstream is audited as:
/// the client's body too slow ([`BODY_TIMEOUT`]), malformed
/// ([`CLIENT_BODY_ERROR`]) or carrying too large a gRPC message
/// ([`GRPC_MESSAGE_TOO_LARGE`]), else the upstream's failure.
pub(super) fn send_error(
    e: &hyper::Error,
    body: &BodyOutcome,
    authority: &Authority,
    timeouts: &Timeouts,
) -> ForwardError {
    match body.get() {
        TIMED_OUT => ForwardError::new(
            Cause::BodyTimeout,
            format!(
                "{BODY_TIMEOUT}: less than {} bytes/s (at least 1 byte) over {:?}",
                timeouts.body_min_rate, timeouts.body
            ),
        ),
        // The body is the client's `Incoming`: its error is the client's
        // request failing to parse (or the client resetting its stream).
        MALFORMED => ForwardError::new(Cause::ClientBody, format!("{CLIENT_BODY_ERROR}: {}", error_chain(e))),
        TOO_LARGE => ForwardError::new(
            Cause::GrpcTooLarge,
            format!("{GRPC_MESSAGE_TOO_LARGE}: over limits.max_grpc_message ({} bytes)", timeouts.grpc_message_max),
        ),
        _ => ForwardError::upstream_error(e, format!("upstream {authority}: {}", error_chain(e))),
    }
}

/// A response body from the upstream. Polling it also polls the upstream
/// connection, which reads the body; at its end the connection goes back
/// to the pool.
pub struct UpstreamBody {
    body: Incoming,
    up: Option<Box<UpstreamConn>>,
    pool: Arc<UpstreamPool>,
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        if let Some(up) = &mut this.up {
            if up.poll_ended(cx) {
                this.up = None;
            }
        }
        let frame = Pin::new(&mut this.body).poll_frame(cx);
        if let Poll::Ready(None) = frame {
            if let Some(mut up) = this.up.take() {
                // Let the connection finish the exchange before it is reused.
                if !up.poll_ended(cx) {
                    this.pool.put(up);
                }
            }
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // hyper drops a body it knows is empty without polling it; such a
        // connection is at the end of its exchange and can be reused. One
        // dropped halfway (the client went away) cannot.
        if let Some(up) = self.up.take() {
            if self.body.is_end_stream() {
                self.pool.put(up);
            }
        }
    }
}

/// The upstream connections one client connection may hold at once
/// (`[limits] max_upstream_per_connection`): a counter in the
/// connection, taken before a request takes an upstream connection and
/// given back when its response body ends or is dropped. Past the limit a
/// request waits, woken by each release. Taking and giving back a free
/// slot is an atomic each and allocates nothing.
pub struct UpstreamSlots {
    in_use: AtomicUsize,
    max: usize,
    released: tokio::sync::Notify,
}

/// One slot of [`UpstreamSlots`], given back on drop.
pub struct UpstreamSlot(Arc<UpstreamSlots>);

impl Drop for UpstreamSlot {
    fn drop(&mut self) {
        self.0.in_use.fetch_sub(1, Release);
        // No lock when nobody waits: `Notify` then only stores a permit.
        self.0.released.notify_one();
    }
}

impl UpstreamSlots {
    pub fn new(max: usize) -> UpstreamSlots {
        UpstreamSlots { in_use: AtomicUsize::new(0), max: max.max(1), released: tokio::sync::Notify::new() }
    }

    fn try_take(&self) -> bool {
        let mut n = self.in_use.load(Relaxed);
        while n < self.max {
            match self.in_use.compare_exchange_weak(n, n + 1, Acquire, Relaxed) {
                Ok(_) => return true,
                Err(now) => n = now,
            }
        }
        false
    }

    /// A slot (which keeps `this`), waiting up to `timeout` for one;
    /// `None` when none came.
    pub async fn take(this: Arc<Self>, timeout: Duration) -> Option<UpstreamSlot> {
        if this.try_take() {
            return Some(UpstreamSlot(this));
        }
        let wait = async {
            loop {
                let released = this.released.notified();
                let mut released = std::pin::pin!(released);
                // Listening before looking: a release between the look
                // and the wait still wakes this request.
                released.as_mut().enable();
                if this.try_take() {
                    return;
                }
                released.await;
            }
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(()) => Some(UpstreamSlot(this)),
            Err(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::sync::mpsc;

    const TIMEOUTS: Timeouts = TEST_TIMEOUTS;

    /// The proxy's side: a local HTTP/1.1 listener whose requests (real
    /// hyper bodies, as the proxy gets them) go through `pool`; what the
    /// pool made of each comes back on `outcomes` (the body, or the error).
    struct Front {
        addr: SocketAddr,
        outcomes: mpsc::UnboundedReceiver<Result<String, String>>,
    }

    impl Front {
        async fn start(pool: Arc<UpstreamPool>, upstream: Authority) -> Front {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let (tx, outcomes) = mpsc::unbounded_channel();
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let (pool, upstream, tx) = (pool.clone(), upstream.clone(), tx.clone());
                    let svc = hyper::service::service_fn(move |req| {
                        let (pool, upstream, tx) = (pool.clone(), upstream.clone(), tx.clone());
                        async move {
                            let outcome = match pool.send(&upstream, None, req, TIMEOUTS).await {
                                Ok(resp) => {
                                    let body = resp.into_body().collect().await.expect("upstream body").to_bytes();
                                    Ok(String::from_utf8_lossy(&body).into_owned())
                                }
                                Err(e) => Err(e.to_string()),
                            };
                            tx.send(outcome).expect("test listens");
                            Ok::<_, std::convert::Infallible>(
                                http::Response::new(http_body_util::Empty::<Bytes>::new()),
                            )
                        }
                    });
                    tokio::spawn(
                        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc),
                    );
                }
            });
            Front { addr, outcomes }
        }

        /// One GET from a new client connection; what the pool made of it.
        async fn get(&mut self) -> Result<String, String> {
            let mut client = TcpStream::connect(self.addr).await.unwrap();
            client.write_all(b"GET /x HTTP/1.1\r\nhost: test\r\n\r\n").await.unwrap();
            self.outcomes.recv().await.expect("an outcome")
        }
    }

    /// The upstream's side: reads one request head.
    async fn read_head(s: &mut TcpStream) {
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "the request head ended early");
            head.extend_from_slice(&buf[..n]);
        }
    }

    /// The upstream's side: reads a request and answers it, keeping the connection open.
    async fn answer(s: &mut TcpStream, body: &str) {
        read_head(s).await;
        let resp = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}", body.len());
        s.write_all(resp.as_bytes()).await.unwrap();
    }

    async fn accept_and_answer(upstream: &TcpListener, body: &str) -> TcpStream {
        let (mut s, _) = upstream.accept().await.unwrap();
        answer(&mut s, body).await;
        s
    }

    /// `f`'s outcome; a test that would wait forever fails instead.
    async fn within<F: Future>(f: F) -> F::Output {
        tokio::time::timeout(Duration::from_secs(10), f).await.expect("no outcome within 10 s")
    }

    async fn upstream() -> (TcpListener, Authority) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority = listener.local_addr().unwrap().to_string().parse().unwrap();
        (listener, authority)
    }

    /// No connection is waiting to be accepted: the pool did not (re)connect.
    /// A connect completes before `send` returns, so one would be queued by now.
    fn no_new_connection(upstream: TcpListener) {
        let err = upstream.into_std().unwrap().accept().map(|_| ()).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock, "the upstream got another connection");
    }

    #[tokio::test]
    async fn a_pooled_connection_the_upstream_closed_is_replaced_by_a_new_one() {
        let (upstream, authority) = upstream().await;
        let pool = Arc::new(UpstreamPool::default());
        let mut front = Front::start(pool.clone(), authority).await;
        let (first, kept) = within(async { tokio::join!(front.get(), accept_and_answer(&upstream, "first")) }).await;
        assert_eq!(first.as_deref(), Ok("first"));
        assert_eq!(pool.idle.lock().unwrap().len(), 1, "the connection went back to the pool");
        // The upstream closes it while it sits in the pool (its keep-alive timeout).
        drop(kept);
        let (second, _open) = within(async { tokio::join!(front.get(), accept_and_answer(&upstream, "second")) }).await;
        assert_eq!(second.as_deref(), Ok("second"), "retried on a new connection");
        assert_eq!(pool.idle.lock().unwrap().len(), 1, "only the new connection is kept");
        no_new_connection(upstream);
    }

    #[tokio::test]
    async fn a_request_written_to_a_pooled_connection_is_not_sent_again() {
        let (upstream, authority) = upstream().await;
        let pool = Arc::new(UpstreamPool::default());
        let mut front = Front::start(pool.clone(), authority.clone()).await;
        let (first, mut kept) =
            within(async { tokio::join!(front.get(), accept_and_answer(&upstream, "first")) }).await;
        assert_eq!(first.as_deref(), Ok("first"));
        // The upstream reads the second request and closes without an
        // answer: the request may have had its effect, so it is not repeated.
        let (second, ()) = within(async {
            tokio::join!(front.get(), async move {
                read_head(&mut kept).await;
                drop(kept);
            })
        })
        .await;
        let err = second.unwrap_err();
        assert!(err.starts_with(&format!("upstream {authority}: ")), "{err}");
        assert!(pool.idle.lock().unwrap().is_empty());
        no_new_connection(upstream);
    }

    #[tokio::test]
    async fn a_new_connection_closed_at_once_is_not_retried() {
        let (upstream, authority) = upstream().await;
        let pool = Arc::new(UpstreamPool::default());
        let mut front = Front::start(pool.clone(), authority.clone()).await;
        let (out, ()) = within(async {
            tokio::join!(front.get(), async {
                let (s, _) = upstream.accept().await.unwrap();
                drop(s);
            })
        })
        .await;
        let err = out.unwrap_err();
        assert!(err.starts_with(&format!("upstream {authority}: ")), "{err}");
        no_new_connection(upstream);
    }

    #[test]
    fn grpc_message_prefixes_are_read_across_frames() {
        let mut m = GrpcMessages { max: 10, prefix: [0; 5], have: 0, rest: 0 };
        // A 3-byte message, then a 10-byte one whose prefix is split over three frames.
        assert_eq!(m.over_limit(b"\0\0\0\0\x03abc\0\0"), None);
        assert_eq!(m.over_limit(b"\0"), None);
        assert_eq!(m.over_limit(b"\0\x0a0123"), None);
        assert_eq!(m.over_limit(b"456789"), None);
        // An 11-byte one: refused from its prefix, before its bytes.
        assert_eq!(m.over_limit(b"\x01\0\0\0\x0b"), Some(11));
        let mut m = GrpcMessages { max: 4 << 20, prefix: [0; 5], have: 0, rest: 0 };
        assert_eq!(m.over_limit(&[0, 0x01, 0x40, 0, 0]), Some(20 << 20));
    }

    #[tokio::test]
    async fn slots_queue_past_the_limit_and_time_out() {
        let slots = Arc::new(UpstreamSlots::new(2));
        let short = Duration::from_millis(50);
        let a = UpstreamSlots::take(slots.clone(), short).await.expect("first");
        let _b = UpstreamSlots::take(slots.clone(), short).await.expect("second");
        assert!(UpstreamSlots::take(slots.clone(), short).await.is_none(), "a third times out");
        // A queued request gets the slot released while it waits.
        let waiting = tokio::spawn(UpstreamSlots::take(slots.clone(), Duration::from_secs(5)));
        tokio::time::sleep(short).await;
        drop(a);
        let c = waiting.await.unwrap().expect("woken by the release");
        assert_eq!(slots.in_use.load(Relaxed), 2);
        drop(c);
        assert_eq!(slots.in_use.load(Relaxed), 1);
    }
}
