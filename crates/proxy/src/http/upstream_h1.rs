//! A purpose-built HTTP/1.1 client for requests without a body (GET, HEAD,
//! most DELETEs: nearly all requests) to a plain-TCP upstream. Requests
//! with a body, TLS upstreams and upgrades go through hyper's client
//! (`upstream.rs`). Why two: hyper's client (its dispatcher, the request
//! channel, its state machine polled several times per exchange) cost about
//! 10,000 instructions per request more than writing the head and parsing
//! the answer here (callgrind, docs/benchmarks.md), the difference between
//! ambos and nginx in CPU per HTTP/2 request.
//!
//! Response framing follows RFC 9112 6.3, strictly: no body after HEAD,
//! 1xx, 204 or 304; chunked when Transfer-Encoding ends in chunked; else a
//! Content-Length (repeated only with equal values); else until the
//! upstream closes. Refused (502) with the connection closed: both
//! Transfer-Encoding and Content-Length, conflicting or malformed lengths,
//! a head over 64 KiB or with more than 100 fields, 101 to a request that
//! asked for no upgrade. A malformed chunk ends the body with an error. A
//! connection goes back to the pool only after a whole response that
//! allows keep-alive, with nothing after it.
//!
//! The retry rule (nginx's for idempotent requests): a pooled connection
//! the upstream closed before a byte of the response came is replaced by a
//! new one and the request sent again if its method is idempotent; a new
//! connection that fails is an error. No read to look for the upstream's
//! FIN before reuse: it would cost a system call per request.
use super::upstream::{Timeouts, IDLE_TIMEOUT, MAX_IDLE};
use crate::dial::{connect_tcp, UPSTREAM_TIMEOUT};
use crate::forward_error::{kind_of_io, ForwardError};
use crate::telemetry::UpstreamErrorKind;
use bytes::{Bytes, BytesMut};
use http::uri::Authority;
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, Version};
use hyper::body::{Body, Frame, SizeHint};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The largest response head (or trailer section) read.
const MAX_HEAD: usize = 64 * 1024;
/// The most header fields a response head may have.
const MAX_FIELDS: usize = 100;
/// The longest chunk-size line (with its extensions).
const MAX_CHUNK_LINE: usize = 4096;
/// Interim (1xx) responses skipped before the final one, at most.
const MAX_INTERIM: usize = 16;

struct Conn {
    stream: TcpStream,
    /// Read but not yet used.
    buf: BytesMut,
    authority: Authority,
    idle_since: Instant,
}

/// Idle keep-alive connections, every one to the configured upstream.
#[derive(Default)]
pub struct H1Pool {
    idle: Mutex<Vec<Conn>>,
}

/// The head of the final response, and how its body is framed.
struct Head {
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
    state: State,
    reusable: bool,
}

/// Why no response head came.
enum HeadError {
    /// The upstream closed (or reset) the connection; true if some of a
    /// response had come first.
    Closed(bool, Option<io::Error>),
    Io(io::Error),
    Bad(&'static str),
}

impl H1Pool {
    fn take(&self, authority: &Authority) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(c) = idle.pop() {
            // Byte comparison: `Authority`'s `==` ignores ASCII case, slowly.
            if c.authority.as_str() == authority.as_str() && c.idle_since.elapsed() < IDLE_TIMEOUT {
                return Some(c);
            }
        }
        None
    }

    fn put(&self, mut conn: Conn) {
        conn.idle_since = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }

    /// Sends a request without a body and returns the response, whose
    /// body reads the rest and returns the connection to the pool when it
    /// is done. No response head within `timeouts.response`:
    /// [`UPSTREAM_TIMEOUT`], and the connection is closed.
    pub async fn send(
        self: &Arc<Self>,
        authority: &Authority,
        parts: &http::request::Parts,
        timeouts: &Timeouts,
    ) -> Result<Response<H1Body>, ForwardError> {
        let head = encode(parts);
        let head_only = parts.method == Method::HEAD;
        loop {
            let (mut conn, pooled) = match self.take(authority) {
                Some(c) => (c, true),
                None => {
                    let stream = Box::pin(connect_tcp(authority.as_str(), timeouts.connect)).await?;
                    let conn =
                        Conn { stream, buf: BytesMut::new(), authority: authority.clone(), idle_since: Instant::now() };
                    (conn, false)
                }
            };
            let exchange = async {
                conn.stream.write_all(&head).await.map_err(|e| HeadError::Closed(false, Some(e)))?;
                read_head(&mut conn, head_only).await
            };
            let why = match tokio::time::timeout(timeouts.response, exchange).await {
                Err(_) => {
                    return Err(ForwardError::upstream(
                        UpstreamErrorKind::Timeout,
                        format!("{UPSTREAM_TIMEOUT}: {authority}: no response within {:?}", timeouts.response),
                    ))
                }
                Ok(Ok(h)) => {
                    let mut resp = Response::new(H1Body {
                        conn: Some(conn),
                        state: h.state,
                        reusable: h.reusable,
                        pool: self.clone(),
                    });
                    *resp.status_mut() = h.status;
                    *resp.version_mut() = h.version;
                    *resp.headers_mut() = h.headers;
                    if resp.body().is_end_stream() {
                        resp.body_mut().finish();
                    }
                    return Ok(resp);
                }
                Ok(Err(HeadError::Closed(false, _))) if pooled && parts.method.is_idempotent() => continue,
                Ok(Err(e)) => e,
            };
            return Err(match why {
                HeadError::Closed(_, Some(e)) | HeadError::Io(e) => {
                    ForwardError::upstream(kind_of_io(&e), format!("upstream {authority}: {e}"))
                }
                HeadError::Closed(_, None) => ForwardError::upstream(
                    UpstreamErrorKind::Reset,
                    format!("upstream {authority}: connection closed before a whole response head"),
                ),
                HeadError::Bad(what) => {
                    ForwardError::upstream(UpstreamErrorKind::Protocol, format!("upstream {authority}: {what}"))
                }
            });
        }
    }
}

/// The request head: the target as authorized, the headers as rewritten.
fn encode(parts: &http::request::Parts) -> Vec<u8> {
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut v = Vec::with_capacity(64 + target.len() + parts.headers.len() * 48);
    v.extend_from_slice(parts.method.as_str().as_bytes());
    v.push(b' ');
    v.extend_from_slice(target.as_bytes());
    v.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in &parts.headers {
        v.extend_from_slice(name.as_str().as_bytes());
        v.extend_from_slice(b": ");
        v.extend_from_slice(value.as_bytes());
        v.extend_from_slice(b"\r\n");
    }
    v.extend_from_slice(b"\r\n");
    v
}

/// Reads more into `conn.buf`; Ok(0) at the upstream's close.
async fn read_more(conn: &mut Conn) -> io::Result<usize> {
    conn.buf.reserve(8192);
    conn.stream.read_buf(&mut conn.buf).await
}

async fn read_head(conn: &mut Conn, head_only: bool) -> Result<Head, HeadError> {
    let mut interim = 0;
    loop {
        if let Some((len, status, version, fields)) = parse_head(&conn.buf)? {
            if len > MAX_HEAD {
                return Err(HeadError::Bad("response head over 64 KiB"));
            }
            let head = conn.buf.split_to(len).freeze();
            if status.is_informational() {
                if status == StatusCode::SWITCHING_PROTOCOLS {
                    return Err(HeadError::Bad("101 Switching Protocols to a request that asked for no upgrade"));
                }
                interim += 1;
                if interim > MAX_INTERIM {
                    return Err(HeadError::Bad("more than 16 interim (1xx) responses"));
                }
                continue;
            }
            return framing(status, version, &head, &fields, head_only).map_err(HeadError::Bad);
        }
        if conn.buf.len() > MAX_HEAD {
            return Err(HeadError::Bad("response head over 64 KiB"));
        }
        match read_more(conn).await {
            Ok(0) => return Err(HeadError::Closed(!conn.buf.is_empty(), None)),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted) => {
                return Err(HeadError::Closed(!conn.buf.is_empty(), Some(e)))
            }
            Err(e) => return Err(HeadError::Io(e)),
        }
    }
}

/// Byte ranges of a field's name and value in the head.
type Field = (std::ops::Range<usize>, std::ops::Range<usize>);

/// A complete head at the start of `buf`: its length, status, version and
/// fields; None if more is needed.
#[allow(clippy::type_complexity)]
fn parse_head(buf: &[u8]) -> Result<Option<(usize, StatusCode, Version, Vec<Field>)>, HeadError> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut r = httparse::Response::new(&mut fields);
    let len = match r.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::Bad("more than 100 header fields")),
        Err(_) => return Err(HeadError::Bad("malformed response head")),
    };
    let status = r.code.and_then(|c| StatusCode::from_u16(c).ok()).ok_or(HeadError::Bad("malformed status"))?;
    let version = if r.version == Some(1) { Version::HTTP_11 } else { Version::HTTP_10 };
    let at = |s: &[u8]| {
        let start = s.as_ptr() as usize - buf.as_ptr() as usize;
        start..start + s.len()
    };
    let fields = r.headers.iter().map(|h| (at(h.name.as_bytes()), at(h.value))).collect();
    Ok(Some((len, status, version, fields)))
}

/// The response's headers and framing (RFC 9112 6.3).
fn framing(
    status: StatusCode,
    version: Version,
    head: &Bytes,
    fields: &[Field],
    head_only: bool,
) -> Result<Head, &'static str> {
    let mut headers = HeaderMap::with_capacity(fields.len());
    let (mut length, mut chunked, mut te, mut close, mut keep_alive) = (None, false, false, false, false);
    for (name, value) in fields {
        let name = HeaderName::from_bytes(&head[name.clone()]).map_err(|_| "malformed header name")?;
        let value = HeaderValue::from_maybe_shared(head.slice(value.clone())).map_err(|_| "malformed header value")?;
        if name == header::CONTENT_LENGTH {
            for v in value.as_bytes().split(|&b| b == b',') {
                let v = v.trim_ascii();
                let n = (!v.is_empty() && v.len() <= 19 && v.iter().all(u8::is_ascii_digit))
                    .then(|| std::str::from_utf8(v).ok()?.parse::<u64>().ok())
                    .flatten()
                    .ok_or("malformed Content-Length")?;
                if length.is_some_and(|l| l != n) {
                    return Err("conflicting Content-Length values");
                }
                length = Some(n);
            }
        } else if name == header::TRANSFER_ENCODING {
            te = true;
            // Chunked must be the last coding, and applied once.
            for t in value.as_bytes().split(|&b| b == b',') {
                if chunked {
                    return Err("a transfer coding after chunked");
                }
                chunked = t.trim_ascii().eq_ignore_ascii_case(b"chunked");
            }
        } else if name == header::CONNECTION {
            for t in value.as_bytes().split(|&b| b == b',') {
                close |= t.trim_ascii().eq_ignore_ascii_case(b"close");
                keep_alive |= t.trim_ascii().eq_ignore_ascii_case(b"keep-alive");
            }
        }
        // Hop-by-hop: not passed on (`headers::strip_response_headers`'s
        // list, applied here instead of after).
        if crate::headers::hop_by_hop_in_response(&name) {
            continue;
        }
        headers.append(name, value);
    }
    let reusable = !close && (version == Version::HTTP_11 || keep_alive);
    let no_body = head_only || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
    let (state, reusable) = match (no_body, te, length) {
        (true, _, _) => (State::Length(0), reusable),
        (false, true, Some(_)) => return Err("both Transfer-Encoding and Content-Length"),
        (false, true, None) if chunked => (State::Chunked(Chunk::Size), reusable),
        // A coding other than chunked last: the body ends at the close.
        (false, true, None) => (State::UntilClose, false),
        (false, false, Some(n)) => (State::Length(n), reusable),
        (false, false, None) => (State::UntilClose, false),
    };
    Ok(Head { status, version, headers, state, reusable })
}

enum State {
    /// This many bytes of body left.
    Length(u64),
    Chunked(Chunk),
    UntilClose,
    Done,
}

enum Chunk {
    /// At a chunk-size line.
    Size,
    /// This many bytes of the chunk's data left.
    Data(u64),
    /// At the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: the trailer section.
    Trailers,
}

/// A response body from the upstream, read from its connection as it is
/// polled; at its end the connection goes back to the pool.
pub struct H1Body {
    conn: Option<Conn>,
    state: State,
    reusable: bool,
    pool: Arc<H1Pool>,
}

fn bad(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

impl H1Body {
    /// The body is over: the connection goes back to the pool if it may.
    fn finish(&mut self) {
        self.state = State::Done;
        if let Some(conn) = self.conn.take() {
            // Bytes after the response: an upstream answering what was not
            // asked; they must not become the next request's answer.
            if self.reusable && conn.buf.is_empty() {
                self.pool.put(conn);
            }
        }
    }

    fn fail(&mut self, e: io::Error) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.state = State::Done;
        self.conn = None;
        Poll::Ready(Some(Err(e)))
    }

    /// At most `n` bytes of what was read, as a data frame.
    fn data(conn: &mut Conn, n: u64) -> (Bytes, u64) {
        let k = conn.buf.len().min(usize::try_from(n).unwrap_or(usize::MAX));
        (conn.buf.split_to(k).freeze(), k as u64)
    }

    /// The chunked decoder's next step on what was read: a frame, or None
    /// when more is needed.
    fn step_chunked(&mut self) -> Result<Option<Frame<Bytes>>, io::Error> {
        let Some(conn) = self.conn.as_mut() else { return Ok(None) };
        let State::Chunked(chunk) = &mut self.state else { return Ok(None) };
        loop {
            match chunk {
                Chunk::Size => {
                    let Some(end) = conn.buf.windows(2).position(|w| w == b"\r\n") else {
                        if conn.buf.len() > MAX_CHUNK_LINE {
                            return Err(bad("chunk-size line over 4 KiB"));
                        }
                        return Ok(None);
                    };
                    let line = conn.buf.split_to(end + 2);
                    // No bare CR or LF in the line, extensions included: a
                    // parser that took one for the line's end would frame
                    // the body differently.
                    if line[..end].iter().any(|&b| b == b'\r' || b == b'\n') {
                        return Err(bad("CR or LF inside a chunk-size line"));
                    }
                    let digits = &line[..line.iter().position(|&b| b == b';' || b == b'\r').unwrap_or(end)];
                    let digits = digits.trim_ascii_end();
                    if digits.is_empty() || digits.len() > 15 || !digits.iter().all(u8::is_ascii_hexdigit) {
                        return Err(bad("malformed chunk size"));
                    }
                    let size =
                        digits.iter().fold(0u64, |n, &d| n * 16 + u64::from((d as char).to_digit(16).unwrap_or(0)));
                    *chunk = if size == 0 { Chunk::Trailers } else { Chunk::Data(size) };
                }
                Chunk::Data(left) => {
                    if conn.buf.is_empty() {
                        return Ok(None);
                    }
                    let (data, taken) = Self::data(conn, *left);
                    *left -= taken;
                    if *left == 0 {
                        *chunk = Chunk::DataEnd;
                    }
                    return Ok(Some(Frame::data(data)));
                }
                Chunk::DataEnd => {
                    if conn.buf.len() < 2 {
                        return Ok(None);
                    }
                    if &conn.buf[..2] != b"\r\n" {
                        return Err(bad("chunk data longer than its size"));
                    }
                    let _ = conn.buf.split_to(2);
                    *chunk = Chunk::Size;
                }
                Chunk::Trailers => {
                    if conn.buf.starts_with(b"\r\n") {
                        let _ = conn.buf.split_to(2);
                        self.finish();
                        return Ok(None);
                    }
                    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
                    let (len, trailers) = match httparse::parse_headers(&conn.buf, &mut fields) {
                        Ok(httparse::Status::Complete((len, fields))) => {
                            let mut map = HeaderMap::with_capacity(fields.len());
                            for f in fields.iter() {
                                let name =
                                    HeaderName::from_bytes(f.name.as_bytes()).map_err(|_| bad("malformed trailer"))?;
                                let value = HeaderValue::from_bytes(f.value).map_err(|_| bad("malformed trailer"))?;
                                map.append(name, value);
                            }
                            (len, map)
                        }
                        Ok(httparse::Status::Partial) if conn.buf.len() <= MAX_HEAD => return Ok(None),
                        Ok(httparse::Status::Partial) => return Err(bad("trailer section over 64 KiB")),
                        Err(_) => return Err(bad("malformed trailer section")),
                    };
                    let _ = conn.buf.split_to(len);
                    self.finish();
                    return Ok(Some(Frame::trailers(trailers)));
                }
            }
        }
    }
}

impl Body for H1Body {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        loop {
            let Some(conn) = this.conn.as_mut() else { return Poll::Ready(None) };
            match &mut this.state {
                State::Done => return Poll::Ready(None),
                State::Length(0) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                State::Length(left) if !conn.buf.is_empty() => {
                    let (data, taken) = Self::data(conn, *left);
                    *left -= taken;
                    if *left == 0 {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                State::UntilClose if !conn.buf.is_empty() => {
                    return Poll::Ready(Some(Ok(Frame::data(conn.buf.split().freeze()))));
                }
                State::Chunked(_) => match this.step_chunked() {
                    Ok(Some(frame)) => return Poll::Ready(Some(Ok(frame))),
                    Ok(None) if matches!(this.state, State::Done) => return Poll::Ready(None),
                    Ok(None) => {}
                    Err(e) => return this.fail(e),
                },
                _ => {}
            }
            // More is needed: read it.
            let Some(conn) = this.conn.as_mut() else { return Poll::Ready(None) };
            conn.buf.reserve(16 * 1024);
            let read = loop {
                match conn.stream.try_read_buf(&mut conn.buf) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        if let Err(e) = ready!(conn.stream.poll_read_ready(cx)) {
                            break Err(e);
                        }
                    }
                    r => break r,
                }
            };
            match read {
                Ok(0) if matches!(this.state, State::UntilClose) => {
                    this.reusable = false;
                    this.finish();
                    return Poll::Ready(None);
                }
                Ok(0) => return this.fail(bad("upstream closed the connection in the middle of the body")),
                Ok(_) => {}
                Err(e) => return this.fail(e),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Done | State::Length(0))
    }

    fn size_hint(&self) -> SizeHint {
        match self.state {
            State::Length(n) => SizeHint::with_exact(n),
            State::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::net::TcpListener;

    const TIMEOUTS: Timeouts = super::super::upstream::TEST_TIMEOUTS;

    /// An upstream that answers each request head with the next of
    /// `answers` (bytes, and whether to close the connection after them),
    /// then says nothing;
    /// returns its address and the number of connections it accepted.
    async fn upstream(answers: Vec<(&'static [u8], bool)>) -> (Authority, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority: Authority = listener.local_addr().unwrap().to_string().parse().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let answers = Arc::new(Mutex::new(VecDeque::from(answers)));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let answers = answers.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    loop {
                        let mut byte = [0u8; 1];
                        if s.read(&mut byte).await.unwrap_or(0) == 0 {
                            return;
                        }
                        head.push(byte[0]);
                        if head.ends_with(b"\r\n\r\n") {
                            head.clear();
                            let next = answers.lock().unwrap().pop_front();
                            let Some((bytes, close)) = next else {
                                // Out of answers: silent, the connection open.
                                return std::future::pending().await;
                            };
                            s.write_all(bytes).await.unwrap();
                            if close {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (authority, accepted)
    }

    struct Got {
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
        trailers: Option<HeaderMap>,
    }

    async fn ask(pool: &Arc<H1Pool>, up: &Authority, method: Method, t: &Timeouts) -> Result<Got, String> {
        let (parts, ()) =
            http::Request::builder().method(method).uri("/x").header("host", "up").body(()).unwrap().into_parts();
        let resp = pool.send(up, &parts, t).await.map_err(|e| e.why)?;
        let (head, body) = resp.into_parts();
        let all = body.collect().await.map_err(|e| e.to_string())?;
        let trailers = all.trailers().cloned();
        Ok(Got { status: head.status, headers: head.headers, body: all.to_bytes(), trailers })
    }

    async fn get(pool: &Arc<H1Pool>, up: &Authority) -> Result<Got, String> {
        ask(pool, up, Method::GET, &TIMEOUTS).await
    }

    #[tokio::test]
    async fn keep_alive_answers_reuse_one_connection_and_chunked_bodies_are_decoded_with_trailers() {
        let (up, accepted) = upstream(vec![
            (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nX-A: 1\r\n\r\nok", false),
            (b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=\"v\"\r\nabc\r\n2 ; e\r\nde\r\n0\r\nx-t: 1\r\n\r\n", false),
            (b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", false),
            (b"HTTP/1.1 103 Early Hints\r\nLink: </s>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false),
        ])
        .await;
        let pool = Arc::new(H1Pool::default());
        let a = get(&pool, &up).await.unwrap();
        assert_eq!((a.status, &a.body[..], a.headers["x-a"].as_bytes()), (StatusCode::OK, &b"ok"[..], &b"1"[..]));
        assert!(
            !a.headers.contains_key("connection") && !a.headers.contains_key("keep-alive"),
            "hop-by-hop: {:?}",
            a.headers
        );
        let b = get(&pool, &up).await.unwrap();
        assert_eq!((b.status, &b.body[..]), (StatusCode::CREATED, &b"abcde"[..]));
        assert_eq!(b.trailers.unwrap()["x-t"], "1");
        let c = get(&pool, &up).await.unwrap();
        assert_eq!((c.status, c.body.len()), (StatusCode::NO_CONTENT, 0), "204: no body whatever its length says");
        let d = get(&pool, &up).await.unwrap();
        assert_eq!(d.status, StatusCode::OK, "the 103 before it skipped");
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "one connection for all four");
    }

    #[tokio::test]
    async fn ambiguous_framing_is_refused_and_its_connection_closed() {
        for (answer, why) in [
            (
                &b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"[..],
                "both Transfer-Encoding and Content-Length",
            ),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nokk", "conflicting Content-Length"),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\nokk", "conflicting Content-Length"),
            (b"HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok", "malformed Content-Length"),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\nok", "malformed Content-Length"),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                "a transfer coding after chunked",
            ),
            (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", "101"),
            (b"HTTP/1.1 200 OK\r\nBad Name: 1\r\n\r\n", "malformed response head"),
        ] {
            let (up, accepted) =
                upstream(vec![(answer, false), (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false)]).await;
            let pool = Arc::new(H1Pool::default());
            let e =
                get(&pool, &up).await.err().unwrap_or_else(|| panic!("accepted: {}", String::from_utf8_lossy(answer)));
            assert!(e.contains(why), "{e}: {}", String::from_utf8_lossy(answer));
            assert!(pool.idle.lock().unwrap().is_empty(), "{why}: the connection is not kept");
            assert_eq!(accepted.load(Ordering::SeqCst), 1);
        }
    }

    #[tokio::test]
    async fn malformed_chunks_end_the_body_with_an_error() {
        for answer in [
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\nx\r\nok\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;a\rb\r\nok\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokk\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1000000000000000\r\nok",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-2\r\nok\r\n0\r\n\r\n",
        ] {
            let (up, _) = upstream(vec![(answer, true)]).await;
            let pool = Arc::new(H1Pool::default());
            assert!(get(&pool, &up).await.is_err(), "{}", String::from_utf8_lossy(answer));
            assert!(pool.idle.lock().unwrap().is_empty());
        }
    }

    /// An upstream that answers twice to one request must not answer the
    /// next client's request with its second answer (response queue
    /// poisoning): the connection is dropped.
    #[tokio::test]
    async fn bytes_after_an_answer_are_never_the_next_requests_answer() {
        let (up, accepted) = upstream(vec![
            (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil", false),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nfine", false),
        ])
        .await;
        let pool = Arc::new(H1Pool::default());
        assert_eq!(&get(&pool, &up).await.unwrap().body[..], b"ok");
        assert_eq!(&get(&pool, &up).await.unwrap().body[..], b"fine");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_closed_pooled_connection_is_replaced_for_idempotent_methods_only() {
        let ok: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        let (up, accepted) = upstream(vec![(ok, true), (ok, true), (ok, true)]).await;
        let pool = Arc::new(H1Pool::default());
        get(&pool, &up).await.unwrap();
        // The upstream closed after answering, without saying so: the GET
        // is sent again on a new connection.
        assert_eq!(&get(&pool, &up).await.unwrap().body[..], b"ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        let e = ask(&pool, &up, Method::POST, &TIMEOUTS).await.err().expect("a POST is not sent twice");
        assert!(e.contains("closed"), "{e}");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn bodies_until_close_http_1_0_and_head_are_framed_and_not_reused_unless_they_may_be() {
        let (up, accepted) = upstream(vec![
            (b"HTTP/1.1 200 OK\r\n\r\nall of it", true),
            (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", false),
            (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok", false),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", false),
            (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", false),
        ])
        .await;
        let pool = Arc::new(H1Pool::default());
        assert_eq!(&get(&pool, &up).await.unwrap().body[..], b"all of it");
        get(&pool, &up).await.unwrap();
        assert_eq!(accepted.load(Ordering::SeqCst), 2, "HTTP/1.0 without keep-alive is not reused");
        get(&pool, &up).await.unwrap();
        let head = ask(&pool, &up, Method::HEAD, &TIMEOUTS).await.unwrap();
        assert_eq!((head.body.len(), head.headers["content-length"].as_bytes()), (0, &b"9"[..]), "HEAD: no body");
        get(&pool, &up).await.unwrap();
        assert_eq!(accepted.load(Ordering::SeqCst), 3, "1.0 keep-alive and HEAD reused it");
        assert!(pool.idle.lock().unwrap().is_empty(), "Connection: close is not kept");
    }

    #[tokio::test]
    async fn heads_past_the_limits_and_silent_upstreams_fail() {
        let big: &'static [u8] = format!("HTTP/1.1 200 OK\r\nX: {}\r\n\r\n", "a".repeat(70_000)).leak().as_bytes();
        let many: &'static [u8] = format!("HTTP/1.1 200 OK\r\n{}\r\n", "A: 1\r\n".repeat(101)).leak().as_bytes();
        for (answer, why) in [(big, "over 64 KiB"), (many, "more than 100")] {
            let (up, _) = upstream(vec![(answer, false)]).await;
            let e = get(&Arc::new(H1Pool::default()), &up).await.err().unwrap();
            assert!(e.contains(why), "{e}");
        }
        let (up, _) = upstream(vec![]).await;
        let t = Timeouts { response: std::time::Duration::from_millis(200), ..TIMEOUTS };
        let e = ask(&Arc::new(H1Pool::default()), &up, Method::GET, &t).await.err().unwrap();
        assert!(e.starts_with(UPSTREAM_TIMEOUT), "{e}");
    }
}
