//! HTTP/2 to the upstream: `h2c://` (prior knowledge) or `https://` with h2
//! chosen in ALPN. One connection per upstream carries the requests as
//! streams (hyper's `SendRequest`, cloned per request), a few when the
//! upstream's stream limit is reached; each runs on its own task, and a
//! closed one is replaced at the next request.
//!
//! Bodies stream both ways under HTTP/2 flow control and are never
//! collected: hyper reads the client's body only as the upstream's window
//! opens, and the upstream's as the client takes it. Dropping a response
//! (the client reset its stream or went away) resets the upstream's stream;
//! an upstream reset ends the client's response with an error, which
//! resets the client's stream. Trailers (gRPC's `grpc-status`) pass as
//! body frames.
use super::upstream::{connect_io, send_error, BodyOutcome, ClientBody, Timeouts, UpstreamIo, UPSTREAM_TIMEOUT};
use crate::forward_error::ForwardError;
use crate::telemetry::UpstreamErrorKind;
use crate::upstream_tls::UpstreamTls;
use ambos_tls::error_chain;
use http::uri::Authority;
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

/// An upstream, and the TLS files (their fingerprint) its connection was made with.
#[derive(Clone, PartialEq, Eq)]
struct Key {
    authority: Authority,
    tls_files: Option<u64>,
}

impl Key {
    fn is(&self, authority: &Authority, tls: Option<&UpstreamTls>) -> bool {
        // Byte comparison: `Authority`'s `==` ignores ASCII case, slowly.
        self.authority.as_str() == authority.as_str() && self.tls_files == tls.map(|t| t.fingerprint)
    }
}

/// The request side of a shared connection.
#[derive(Clone)]
pub struct H2Sender {
    sender: http2::SendRequest<ClientBody>,
    /// The first bytes the upstream sent, to say what it speaks when it fails.
    first_bytes: Arc<OnceLock<Vec<u8>>>,
    /// Its streams open now (responses not yet done).
    streams: Arc<AtomicUsize>,
    /// The upstream's SETTINGS_MAX_CONCURRENT_STREAMS as of the last
    /// request dispatched (hyper's dispatcher reads it; 100 until then).
    max_streams: Arc<AtomicUsize>,
}

impl H2Sender {
    /// Whether it has room for another stream under the upstream's
    /// SETTINGS_MAX_CONCURRENT_STREAMS.
    fn has_room(&self) -> bool {
        self.streams.load(Relaxed) < self.max_streams.load(Relaxed)
    }
}

/// Connections to one upstream at most. A second opens only when every
/// one has as many streams open as the upstream allows (nginx: 128), so
/// that long streams (gRPC streaming) do not hold other requests back in
/// hyper's queue; past this many, requests queue there.
const MAX_CONNECTIONS: usize = 8;

/// The shared HTTP/2 connections to the upstream.
#[derive(Default)]
pub struct H2Upstream {
    conns: Mutex<Vec<(Key, H2Sender)>>,
    /// `protocol = "auto"`: this upstream (with these TLS files) chose
    /// http/1.1 in ALPN, and when: requests go to the HTTP/1.1 pool until
    /// [`RECHECK_ALPN`] has passed.
    chose_http1: Mutex<Option<(Key, std::time::Instant)>>,
    /// One connect at a time: requests arriving meanwhile wait for it,
    /// and share its failure (when it came, why) rather than each trying
    /// (and timing out) in turn.
    connecting: tokio::sync::Mutex<Option<(std::time::Instant, ForwardError)>>,
}

/// How long an upstream's choice of http/1.1 is kept before the next
/// request offers h2 again (an upstream may be upgraded meanwhile).
const RECHECK_ALPN: Duration = Duration::from_secs(300);

/// Why an `https://` upstream that does not choose h2 is refused.
const NO_H2: &str = "it does not speak h2, which upstream.protocol = \"h2\" requires (\"auto\" falls back to HTTP/1.1)";

/// How often a request waiting for its response head looks whether its
/// body has ended (the body is sent by hyper's task, which does not wake
/// ours): the `upstream_timeout` is kept to within this.
const HEAD_CHECK: Duration = Duration::from_secs(1);

/// Where and how to reach the upstream over HTTP/2: `auto` accepts an
/// upstream that chooses http/1.1 in ALPN (then `None`, HTTP/1.1 to it).
#[derive(Clone, Copy)]
pub struct Dial<'a> {
    pub authority: &'a Authority,
    pub tls: Option<&'a UpstreamTls>,
    pub auto: bool,
    pub timeout: Duration,
}

impl H2Upstream {
    /// The open connection with the fewest streams, if it has room for
    /// one more or no other may be opened. Closed connections, and those
    /// to another upstream or made before a reload, are dropped here.
    fn live(&self, authority: &Authority, tls: Option<&UpstreamTls>) -> Option<H2Sender> {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        conns.retain(|(k, s)| k.is(authority, tls) && !s.sender.is_closed());
        let (_, least) = conns.iter().min_by_key(|(_, s)| s.streams.load(Relaxed))?;
        (least.has_room() || conns.len() >= MAX_CONNECTIONS).then(|| least.clone())
    }

    fn chose_http1(&self, authority: &Authority, tls: Option<&UpstreamTls>) -> bool {
        let chose = self.chose_http1.lock().unwrap_or_else(|e| e.into_inner());
        chose.as_ref().is_some_and(|(k, when)| k.is(authority, tls) && when.elapsed() < RECHECK_ALPN)
    }

    /// A shared connection to `authority`, made if there is none with room
    /// for a stream; `None` when, with `auto`, the upstream chose http/1.1.
    pub async fn connection(&self, dial: Dial<'_>) -> Result<Option<H2Sender>, ForwardError> {
        let Dial { authority, tls, auto, .. } = dial;
        if auto && self.chose_http1(authority, tls) {
            return Ok(None);
        }
        if let Some(s) = self.live(authority, tls) {
            return Ok(Some(s));
        }
        let asked = std::time::Instant::now();
        let mut failed = self.connecting.lock().await;
        if auto && self.chose_http1(authority, tls) {
            return Ok(None);
        }
        if let Some(s) = self.live(authority, tls) {
            return Ok(Some(s));
        }
        if let Some((when, why)) = &*failed {
            if *when >= asked {
                return Err(why.clone());
            }
        }
        // Boxed, like every rare await on the request path: a request's
        // future is as large as the largest thing it may wait for.
        let result = Box::pin(self.connect(dial)).await;
        if let Err(why) = &result {
            *failed = Some((std::time::Instant::now(), why.clone()));
        }
        result
    }

    /// Opens a connection to `authority` (TLS with ALPN h2 when `tls`).
    async fn connect(&self, dial: Dial<'_>) -> Result<Option<H2Sender>, ForwardError> {
        let Dial { authority, tls, auto, timeout } = dial;
        let key = Key { authority: authority.clone(), tls_files: tls.map(|t| t.fingerprint) };
        // An upstream that knows none of the protocols offered may refuse the handshake (RFC 7301).
        let io = connect_io(authority, tls.map(|t| (&t.h2_connector, t)), timeout).await.map_err(|e| {
            if e.why.contains("NoApplicationProtocol") {
                e.map_why(|why| format!("{why}: {NO_H2}"))
            } else {
                e
            }
        })?;
        if tls.is_some() && !io.alpn_h2() {
            if auto {
                tracing::info!("upstream {authority} chose http/1.1 in ALPN: HTTP/1.1 to it");
                *self.chose_http1.lock().unwrap_or_else(|e| e.into_inner()) = Some((key, std::time::Instant::now()));
                return Ok(None);
            }
            return Err(ForwardError::upstream(
                UpstreamErrorKind::Protocol,
                format!("upstream {authority}: did not choose h2 in ALPN: {NO_H2}"),
            ));
        }
        let first_bytes = Arc::new(OnceLock::new());
        let (read, write) = tokio::io::split(io);
        let io = tokio::io::join(FirstBytes { inner: read, seen: first_bytes.clone() }, write);
        // No HTTP/2 PINGs of ours: gRPC servers answer a client that pings
        // more often than every 5 minutes with GOAWAY "too_many_pings".
        // TCP keepalive (`connect_io`) finds a dead connection instead.
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(TokioIo::new(io))
            .await
            .map_err(|e| {
                ForwardError::upstream_error(&e, format!("upstream {authority}: HTTP/2 handshake: {}", error_chain(&e)))
            })?;
        let name = authority.clone();
        let max_streams = Arc::new(AtomicUsize::new(conn.current_max_send_streams()));
        let limit = max_streams.clone();
        tokio::spawn(async move {
            let mut conn = std::pin::pin!(conn);
            // hyper runs the connection's I/O on a task of its own; this one
            // dispatches requests, and reads the limit (any SETTINGS frame
            // may change it) at each.
            let ended = poll_fn(|cx| {
                let r = conn.as_mut().poll(cx);
                limit.store(conn.current_max_send_streams(), Relaxed);
                r
            });
            if let Err(e) = ended.await {
                tracing::debug!("HTTP/2 connection to upstream {name} ended: {}", error_chain(&e));
            }
        });
        let s = H2Sender { sender, first_bytes, streams: Arc::default(), max_streams };
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        if !conns.is_empty() {
            tracing::debug!(
                "upstream {authority}: HTTP/2 connection {} (the others are at their stream limit)",
                conns.len() + 1
            );
        }
        conns.push((key, s.clone()));
        Ok(Some(s))
    }

    /// Sends `req` (its URI absolute, as HTTP/2 wants) as a new stream on
    /// `s`'s connection. A request that was never sent, because that
    /// connection had closed, is sent once more on a new one. No response
    /// head within `timeouts.response` of the request's end:
    /// [`UPSTREAM_TIMEOUT`], and the stream is reset.
    pub async fn send(
        &self,
        mut s: H2Sender,
        authority: &Authority,
        tls: Option<&UpstreamTls>,
        req: http::Request<Incoming>,
        timeouts: Timeouts,
    ) -> Result<http::Response<H2Body>, ForwardError> {
        let mut req = req.map(|b| ClientBody::new(b, &timeouts));
        let outcome = req.body().outcome();
        let mut retried = false;
        loop {
            if s.sender.ready().await.is_err() {
                if retried {
                    let closed = format!("upstream {authority}: HTTP/2 connection closed");
                    return Err(s.explain(ForwardError::upstream(UpstreamErrorKind::Reset, closed)));
                }
                retried = true;
                s = Box::pin(self.reconnect(authority, tls, timeouts.connect)).await?;
                continue;
            }
            let stream = StreamGuard::new(&s.streams);
            let Some(result) = within_head_timeout(s.sender.try_send_request(req), &outcome, timeouts.response).await
            else {
                return Err(ForwardError::upstream(
                    UpstreamErrorKind::Timeout,
                    format!("{UPSTREAM_TIMEOUT}: {authority}: no response within {:?}", timeouts.response),
                ));
            };
            match result {
                Ok(resp) => return Ok(resp.map(|body| H2Body { body, _stream: stream })),
                Err(mut e) => match e.take_message() {
                    Some(unsent) if !retried => {
                        retried = true;
                        req = unsent;
                        s = Box::pin(self.reconnect(authority, tls, timeouts.connect)).await?;
                    }
                    _ => return Err(s.explain(send_error(e.error(), &outcome, authority, &timeouts))),
                },
            }
        }
    }

    async fn reconnect(
        &self,
        authority: &Authority,
        tls: Option<&UpstreamTls>,
        timeout: Duration,
    ) -> Result<H2Sender, ForwardError> {
        // The request is already in HTTP/2 form: no falling back to HTTP/1.1 now.
        self.connection(Dial { authority, tls, auto: false, timeout }).await?.ok_or_else(|| {
            ForwardError::upstream(UpstreamErrorKind::Protocol, format!("upstream {authority}: chose http/1.1 in ALPN"))
        })
    }
}

impl H2Sender {
    /// `why`, and what the upstream sent if that was not HTTP/2: an h2c
    /// upstream that speaks HTTP/1.1 answers our preface with an error
    /// page, which hyper reports as a frame error.
    fn explain(&self, e: ForwardError) -> ForwardError {
        let Some(first) = self.first_bytes.get() else { return e };
        let protocol = |why: String| ForwardError::upstream(UpstreamErrorKind::Protocol, why);
        if first.starts_with(b"HTTP/") {
            protocol(format!(
                "{e} (the upstream answered in HTTP/1.x, not HTTP/2: h2c:// needs prior-knowledge HTTP/2)"
            ))
        } else if first.len() >= 4 && first[3] != 4 {
            // RFC 9113 3.4: a server's first frame is SETTINGS (type 4).
            protocol(format!(
                "{e} (the upstream does not speak HTTP/2: its first bytes were {:?})",
                String::from_utf8_lossy(first)
            ))
        } else {
            e
        }
    }
}

/// One open stream of a connection, counted until its response is done.
struct StreamGuard(Arc<AtomicUsize>);

impl StreamGuard {
    fn new(streams: &Arc<AtomicUsize>) -> StreamGuard {
        streams.fetch_add(1, Relaxed);
        StreamGuard(streams.clone())
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// A response body from an HTTP/2 upstream; its stream counts as open
/// until it is done or dropped.
pub struct H2Body {
    body: Incoming,
    _stream: StreamGuard,
}

impl hyper::body::Body for H2Body {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, hyper::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// `fut`, or `None` once `timeout` has passed since the request's body
/// ended, checked every [`HEAD_CHECK`].
async fn within_head_timeout<F: Future>(fut: F, body: &BodyOutcome, timeout: Duration) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    let period = timeout.min(HEAD_CHECK);
    let mut tick = std::pin::pin!(tokio::time::sleep(period));
    let mut ended_at: Option<tokio::time::Instant> = None;
    poll_fn(|cx| {
        if let Poll::Ready(r) = fut.as_mut().poll(cx) {
            return Poll::Ready(Some(r));
        }
        while tick.as_mut().poll(cx).is_ready() {
            let now = tokio::time::Instant::now();
            if ended_at.is_none() && body.ended() {
                ended_at = Some(now);
            }
            match ended_at {
                Some(t) if now.duration_since(t) >= timeout => return Poll::Ready(None),
                Some(t) => tick.as_mut().reset((t + timeout).min(now + period)),
                None => tick.as_mut().reset(now + period),
            }
        }
        Poll::Pending
    })
    .await
}

/// The upstream connection's read side, keeping the first bytes the upstream sent.
struct FirstBytes {
    inner: tokio::io::ReadHalf<UpstreamIo>,
    seen: Arc<OnceLock<Vec<u8>>>,
}

impl tokio::io::AsyncRead for FirstBytes {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if self.seen.get().is_none() && buf.filled().len() > before {
            let got = &buf.filled()[before..];
            let _ = self.seen.set(got[..got.len().min(16)].to_vec());
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::BodyExt;
    use hyper::body::Frame;
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use tokio::io::AsyncWriteExt;
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::mpsc;

    const TIMEOUTS: Timeouts = super::super::upstream::TEST_TIMEOUTS;

    type Outcome = Result<String, ForwardError>;

    /// The proxy's side: a local HTTP/1.1 listener whose requests (real
    /// hyper bodies, as the proxy gets them) go to `upstream` through `h2`;
    /// what came of each comes back on the channel: the response body
    /// read to its end (at most `frames` frames of it), or the error.
    async fn front(h2: Arc<H2Upstream>, upstream: Authority, frames: usize) -> (SocketAddr, mpsc::Receiver<Outcome>) {
        front_with(h2, upstream, frames, TIMEOUTS).await
    }

    async fn front_with(
        h2: Arc<H2Upstream>,
        upstream: Authority,
        frames: usize,
        timeouts: Timeouts,
    ) -> (SocketAddr, mpsc::Receiver<Outcome>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (h2, upstream, tx) = (h2.clone(), upstream.clone(), tx.clone());
                let svc = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
                    let (h2, upstream, tx) = (h2.clone(), upstream.clone(), tx.clone());
                    async move {
                        *req.uri_mut() = format!("http://{upstream}{}", req.uri()).parse().unwrap();
                        *req.version_mut() = http::Version::HTTP_2;
                        req.headers_mut().remove(http::header::HOST);
                        let outcome = read(&h2, &upstream, req, frames, timeouts).await;
                        tx.send(outcome).await.expect("test listens");
                        Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Empty::<Bytes>::new()))
                    }
                });
                tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc));
            }
        });
        (addr, rx)
    }

    async fn read(
        h2: &H2Upstream,
        upstream: &Authority,
        req: http::Request<Incoming>,
        frames: usize,
        timeouts: Timeouts,
    ) -> Outcome {
        let dial = Dial { authority: upstream, tls: None, auto: false, timeout: timeouts.connect };
        let s = h2.connection(dial).await?.expect("h2c");
        let mut body = h2.send(s, upstream, None, req, timeouts).await?.into_body();
        let mut got = Vec::new();
        for _ in 0..frames {
            match body.frame().await {
                Some(Ok(f)) => got.extend_from_slice(f.data_ref().map_or(&[][..], |d| d)),
                Some(Err(e)) => return Err(ForwardError::upstream(UpstreamErrorKind::Other, error_chain(&e))),
                None => break,
            }
        }
        // Dropping the body here: the rest, if any, is abandoned.
        Ok(String::from_utf8_lossy(&got).into_owned())
    }

    /// One GET from a new client connection; what came of it.
    async fn get(addr: SocketAddr, rx: &mut mpsc::Receiver<Outcome>) -> Outcome {
        send_raw(addr, rx, b"GET /x HTTP/1.1\r\nhost: test\r\n\r\n").await
    }

    /// `raw` from a new client connection, kept open; what came of it.
    async fn send_raw(addr: SocketAddr, rx: &mut mpsc::Receiver<Outcome>, raw: &[u8]) -> Outcome {
        let mut client = TcpStream::connect(addr).await.unwrap();
        client.write_all(raw).await.unwrap();
        let outcome = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await;
        drop(client);
        outcome.expect("an outcome within 10 s").unwrap()
    }

    type UpstreamBody = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

    /// An h2c upstream answering each request with `respond`'s body; counts
    /// its connections, and aborting the returned tasks closes them.
    async fn upstream(
        respond: impl Fn() -> UpstreamBody + Send + Sync + Clone + 'static,
    ) -> (Authority, Arc<AtomicUsize>, Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>) {
        upstream_with_limit(respond, 200).await
    }

    /// [`upstream`] with its SETTINGS_MAX_CONCURRENT_STREAMS.
    async fn upstream_with_limit(
        respond: impl Fn() -> UpstreamBody + Send + Sync + Clone + 'static,
        max_streams: u32,
    ) -> (Authority, Arc<AtomicUsize>, Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority = listener.local_addr().unwrap().to_string().parse().unwrap();
        let conns = Arc::new(AtomicUsize::new(0));
        let tasks = Arc::new(Mutex::new(Vec::new()));
        let (count, handles) = (conns.clone(), tasks.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, SeqCst);
                let respond = respond.clone();
                let svc = hyper::service::service_fn(move |_req| {
                    let body = respond();
                    async move { Ok::<_, std::convert::Infallible>(http::Response::new(body)) }
                });
                let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .max_concurrent_streams(max_streams)
                    .serve_connection(TokioIo::new(stream), svc);
                handles.lock().unwrap().push(tokio::spawn(async move {
                    let _ = conn.await;
                }));
            }
        });
        (authority, conns, tasks)
    }

    fn full(text: &'static str) -> UpstreamBody {
        http_body_util::Full::new(Bytes::from_static(text.as_bytes())).map_err(|never| match never {}).boxed()
    }

    /// A body from a channel: what the test sends, until it drops the sender.
    struct ChannelBody(mpsc::Receiver<Result<Frame<Bytes>, std::io::Error>>);

    impl hyper::body::Body for ChannelBody {
        type Data = Bytes;
        type Error = std::io::Error;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            self.0.poll_recv(cx)
        }
    }

    fn channel_body(rx: mpsc::Receiver<Result<Frame<Bytes>, std::io::Error>>) -> UpstreamBody {
        BodyExt::boxed(ChannelBody(rx))
    }

    #[tokio::test]
    async fn requests_share_one_connection_and_a_closed_one_is_replaced() {
        let (authority, conns, tasks) = upstream(|| full("ok")).await;
        let h2 = Arc::new(H2Upstream::default());
        let (addr, mut rx) = front(h2.clone(), authority.clone(), 8).await;
        for _ in 0..3 {
            assert_eq!(get(addr, &mut rx).await.as_deref(), Ok("ok"));
        }
        assert_eq!(conns.load(SeqCst), 1, "three requests, one connection");
        // The upstream goes away; once our side has seen it, the next request reconnects.
        for t in tasks.lock().unwrap().drain(..) {
            t.abort();
        }
        tokio::time::timeout(Duration::from_secs(5), async {
            while h2.live(&authority, None).is_some() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the closed connection is noticed");
        assert_eq!(get(addr, &mut rx).await.as_deref(), Ok("ok"));
        assert_eq!(conns.load(SeqCst), 2);
    }

    /// A second connection opens only when the first has as many streams
    /// open as the upstream allows; after that, the least busy one is used.
    #[tokio::test]
    async fn another_connection_opens_at_the_upstreams_stream_limit() {
        let (authority, conns, _tasks) = upstream_with_limit(|| full("ok"), 2).await;
        let h2 = Arc::new(H2Upstream::default());
        // Two requests: the second is dispatched after the upstream's
        // SETTINGS came (before its first response), and reads the limit.
        let (addr, mut rx) = front(h2.clone(), authority.clone(), 8).await;
        for _ in 0..2 {
            assert_eq!(get(addr, &mut rx).await.as_deref(), Ok("ok"));
        }
        let connect =
            || h2.connection(Dial { authority: &authority, tls: None, auto: false, timeout: TIMEOUTS.connect });
        let first = connect().await.unwrap().expect("h2c");
        assert_eq!(first.max_streams.load(Relaxed), 2, "the upstream's SETTINGS_MAX_CONCURRENT_STREAMS");
        let one = StreamGuard::new(&first.streams);
        let again = connect().await.unwrap().expect("h2c");
        assert!(Arc::ptr_eq(&again.streams, &first.streams), "room for one more stream");
        let two = StreamGuard::new(&first.streams);
        let second = connect().await.unwrap().expect("h2c");
        assert!(!Arc::ptr_eq(&second.streams, &first.streams), "the first is full: a new connection");
        tokio::time::timeout(Duration::from_secs(5), async {
            while conns.load(SeqCst) != 2 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the upstream sees the second connection");
        drop((one, two));
        let _busy = StreamGuard::new(&second.streams);
        let least = connect().await.unwrap().expect("h2c");
        assert!(Arc::ptr_eq(&least.streams, &first.streams), "the least busy one");
        assert_eq!(conns.load(SeqCst), 2, "no third connection");
    }

    #[tokio::test]
    async fn an_upstream_reset_ends_the_response_body_with_an_error() {
        let (authority, _, _) = upstream(|| {
            let (tx, rx) = mpsc::channel(4);
            tx.try_send(Ok(Frame::data(Bytes::from_static(b"half")))).unwrap();
            // A body error: hyper resets the stream (RST_STREAM).
            tx.try_send(Err(std::io::Error::other("upstream gives up"))).unwrap();
            channel_body(rx)
        })
        .await;
        let (addr, mut rx) = front(Arc::new(H2Upstream::default()), authority, 8).await;
        let err = get(addr, &mut rx).await.unwrap_err();
        assert!(err.why.contains("stream error"), "{err}");
    }

    #[tokio::test]
    async fn a_dropped_response_resets_the_upstream_stream() {
        let (gone_tx, mut gone) = mpsc::channel::<()>(1);
        let (authority, _, _) = upstream(move || {
            let (tx, rx) = mpsc::channel(1);
            let gone = gone_tx.clone();
            // Endless: only the stream's reset (the body dropped) stops it.
            tokio::spawn(async move {
                while tx.send(Ok(Frame::data(Bytes::from_static(b"tick")))).await.is_ok() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                let _ = gone.send(()).await;
            });
            channel_body(rx)
        })
        .await;
        let (addr, mut rx) = front(Arc::new(H2Upstream::default()), authority, 1).await;
        assert_eq!(get(addr, &mut rx).await.as_deref(), Ok("tick"));
        tokio::time::timeout(Duration::from_secs(5), gone.recv()).await.expect("the upstream's stream was reset");
    }

    /// The request body's and the response head's timeouts hold over HTTP/2
    /// too, though hyper sends the body from its own task.
    #[tokio::test]
    async fn a_stalled_body_and_a_silent_upstream_time_out() {
        let short = Timeouts { body: Duration::from_millis(300), response: Duration::from_millis(300), ..TIMEOUTS };
        // An upstream that reads the whole request before answering, and
        // one that reads the request and never answers.
        let reader = h2c_server(|req| async move {
            req.into_body().collect().await.map_err(std::io::Error::other)?;
            Ok(http::Response::new(full("read")))
        })
        .await;
        let silent = h2c_server(|_req| async {
            std::future::pending::<()>().await;
            Ok(http::Response::new(full("never")))
        })
        .await;
        let (addr, mut rx) = front_with(Arc::new(H2Upstream::default()), reader, 8, short).await;
        // 2 bytes of 10, then silence.
        let stalled = send_raw(addr, &mut rx, b"POST /x HTTP/1.1\r\nhost: test\r\ncontent-length: 10\r\n\r\nab").await;
        let err = stalled.unwrap_err();
        assert!(err.why.starts_with(super::super::upstream::BODY_TIMEOUT), "{err}");
        assert_eq!(err.cause, crate::forward_error::Cause::BodyTimeout, "{err}");

        let (addr, mut rx) = front_with(Arc::new(H2Upstream::default()), silent.clone(), 8, short).await;
        let started = std::time::Instant::now();
        let err = get(addr, &mut rx).await.unwrap_err();
        assert!(err.why.starts_with(&format!("{UPSTREAM_TIMEOUT}: {silent}: no response within 300ms")), "{err}");
        assert_eq!(err.cause, crate::forward_error::Cause::Upstream(UpstreamErrorKind::Timeout), "{err}");
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    }

    /// An h2c upstream serving each request with `handle`.
    async fn h2c_server<F, Fut>(handle: F) -> Authority
    where
        F: Fn(http::Request<Incoming>) -> Fut + Send + Sync + Clone + 'static,
        Fut: Future<Output = Result<http::Response<UpstreamBody>, std::io::Error>> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority = listener.local_addr().unwrap().to_string().parse().unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let svc = hyper::service::service_fn(handle.clone());
                tokio::spawn(
                    hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc),
                );
            }
        });
        authority
    }

    #[tokio::test]
    async fn an_h2c_upstream_answering_in_http1_is_named_as_such() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority: Authority = listener.local_addr().unwrap().to_string().parse().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                // As an HTTP/1.1 server does: read the "request" (our preface), answer, close.
                let mut buf = [0u8; 24];
                let _ = tokio::io::AsyncReadExt::read_exact(&mut s, &mut buf).await;
                let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n").await;
                let _ = s.shutdown().await;
                tokio::spawn(async move { tokio::io::AsyncReadExt::read_to_end(&mut s, &mut Vec::new()).await });
            }
        });
        let (addr, mut rx) = front(Arc::new(H2Upstream::default()), authority.clone(), 8).await;
        let err = get(addr, &mut rx).await.unwrap_err();
        assert!(err.why.starts_with(&format!("upstream {authority}: ")), "{err}");
        assert!(err.why.contains("the upstream answered in HTTP/1.x, not HTTP/2"), "{err}");
        assert_eq!(err.cause, crate::forward_error::Cause::Upstream(UpstreamErrorKind::Protocol), "{err}");
    }
}
