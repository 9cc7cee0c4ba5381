//! Keep-alive HTTP/1.1 connections to the upstream.
//!
//! A request takes an idle connection from the pool (or opens one) and
//! drives it on the client connection's own task: sending the request,
//! reading the response head and then, from inside the response body, the
//! rest of the response. When the body is done the connection goes back to
//! the pool. Compared with hyper-util's pooled client this saves a hand-off
//! to a second task and back for every request, and the pool is a plain
//! stack: every connection in it goes to the same upstream.
use ambos_tls::error_chain;
use bytes::Bytes;
use http::uri::Authority;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// Idle connections kept at most; more are closed when returned.
const MAX_IDLE: usize = 1024;
/// An idle connection older than this is closed instead of reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How a [`UpstreamPool::send`] error starts when the client's request
/// body was at fault (bad chunked encoding, shorter than its length):
/// the client's 400, not an upstream error.
pub const CLIENT_BODY_ERROR: &str = "malformed request body";

/// One keep-alive connection: the request side and the connection state
/// machine that does the I/O, which whoever holds it must poll.
pub struct UpstreamConn {
    authority: Authority,
    sender: http1::SendRequest<Incoming>,
    conn: http1::Connection<TokioIo<TcpStream>, Incoming>,
    idle_since: Instant,
}

impl UpstreamConn {
    /// Polls the connection; true once it has ended (closed or failed).
    fn poll_ended(&mut self, cx: &mut Context<'_>) -> bool {
        Pin::new(&mut self.conn).poll(cx).is_ready()
    }

    /// Waits until the connection takes a request; false if it has closed.
    async fn ready(&mut self) -> bool {
        poll_fn(|cx| {
            // The connection first: nobody polled it while it sat in the
            // pool, so this is where it reads the upstream's FIN, if any.
            if self.poll_ended(cx) {
                return Poll::Ready(false);
            }
            self.sender.poll_ready(cx).map(|r| r.is_ok())
        })
        .await
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
    fn take(&self, authority: &Authority) -> Option<Box<UpstreamConn>> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(c) = idle.pop() {
            // After a reload the upstream may have changed.
            // Byte comparison: `Authority`'s `==` ignores ASCII case, slowly.
            if c.authority.as_str() == authority.as_str() && c.idle_since.elapsed() < IDLE_TIMEOUT {
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

    async fn connect(authority: &Authority) -> Result<Box<UpstreamConn>, String> {
        let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(authority.as_str())).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(format!("upstream {authority}: {e}")),
            Err(_) => return Err(format!("upstream {authority}: connect timed out after {CONNECT_TIMEOUT:?}")),
        };
        let _ = stream.set_nodelay(true);
        let (sender, conn) =
            http1::handshake(TokioIo::new(stream)).await.map_err(|e| format!("upstream {authority}: {e}"))?;
        Ok(Box::new(UpstreamConn { authority: authority.clone(), sender, conn, idle_since: Instant::now() }))
    }

    /// Sends `req` to the upstream and returns the response, whose body
    /// drives the connection and returns it to the pool when done. A
    /// pooled connection that turns out to be closed before the request
    /// went out is replaced by a new one.
    pub async fn send(
        self: &Arc<Self>,
        authority: &Authority,
        mut req: http::Request<Incoming>,
    ) -> Result<http::Response<UpstreamBody>, String> {
        loop {
            let (mut up, pooled) = match self.take(authority) {
                Some(c) => (c, true),
                None => (Self::connect(authority).await?, false),
            };
            if !up.ready().await {
                if pooled {
                    continue;
                }
                return Err(format!("upstream {authority}: connection closed"));
            }
            let mut sent = std::pin::pin!(up.sender.try_send_request(req));
            let mut ended = false;
            // The connection first, then the response it may just have
            // read: both in the same poll, instead of a second poll of the
            // whole client connection after the response's wake-up. Once
            // the connection has ended, the request side resolves at once.
            let result = poll_fn(|cx| {
                if !ended && up.poll_ended(cx) {
                    ended = true;
                }
                sent.as_mut().poll(cx)
            })
            .await;
            match result {
                Ok(resp) => {
                    let pool = self.clone();
                    let up = if ended { None } else { Some(up) };
                    return Ok(resp.map(|body| UpstreamBody { body, up, pool }));
                }
                Err(mut e) => match e.take_message() {
                    // Not sent: the pooled connection was closing. Try again.
                    Some(unsent) if pooled => req = unsent,
                    // The body is the client's `Incoming`: a hyper error inside
                    // a body error is the client's request failing to parse.
                    _ if e.error().is_user()
                        && std::error::Error::source(e.error()).is_some_and(|c| c.is::<hyper::Error>()) =>
                    {
                        return Err(format!("{CLIENT_BODY_ERROR}: {}", error_chain(e.error())))
                    }
                    _ => return Err(format!("upstream {authority}: {}", error_chain(e.error()))),
                },
            }
        }
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
