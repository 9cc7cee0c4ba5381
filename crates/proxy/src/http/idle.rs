//! Idle HTTP/1 keep-alive connections give their buffers back.
//!
//! hyper holds an 8 KiB header buffer and an 8-16 KiB read buffer for every
//! HTTP/1 connection for as long as the connection lives; with 10,000 idle
//! keep-alive clients that is most of the proxy's memory. Like nginx, which
//! frees a keep-alive connection's buffers while it waits, a connection that
//! has been quiet for a while is *parked*: its hyper connection ends without
//! touching the socket (`poll_without_shutdown`), only the TLS session stays,
//! and a fresh hyper connection is built when the client's next bytes arrive.
//!
//! hyper cannot be asked to stop while idle, so the parking is done from
//! below: once [`Activity::quiet`] holds, [`ParkableIo`] answers hyper's next
//! read that would block with end-of-file. hyper treats end-of-file between
//! requests as a clean close, and [`ParkableIo::parked`] tells the caller it
//! was ours, not the client's.
//!
//! The same periodic look at [`Activity`] enforces the idle timeout on a
//! request head that is incomplete (slowloris): bytes arrived while no
//! request was in flight, and no request has started since. Such a
//! connection is never parked (hyper holds the partial head). This costs
//! nothing per request, where hyper's own header-read timeout arms a timer
//! for every request (3% of a request's instructions, docs/benchmarks.md).
use bytes::{Buf, Bytes};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What one connection is doing, seen by its service (requests), its I/O
/// (reads) and its serving loop (parking). All users run on the
/// connection's own task, so the atomics are never contended.
#[derive(Default)]
pub struct Activity {
    /// Responses handed to hyper whose bodies are not finished yet.
    in_flight: AtomicU32,
    /// Something arrived or started since the last check.
    busy: AtomicBool,
    /// A request started since the last check.
    started: AtomicBool,
    /// Bytes arrived while no request was in flight, and no request has
    /// started since: the start of a request head.
    head_pending: AtomicBool,
    /// The serving loop wants the connection parked at the next blocked read.
    park: AtomicBool,
    /// A read was answered with our end-of-file.
    parked: AtomicBool,
    /// The upstream's stream of a WebSocket upgrade, for the serving loop
    /// to pipe once hyper hands the client's stream back.
    upgraded: std::sync::Mutex<Option<hyper::upgrade::Upgraded>>,
}

impl Activity {
    /// A request reached the service; the guard lives in the response body.
    pub fn request_started(self: &Arc<Self>) -> InFlight {
        self.busy.store(true, Relaxed);
        self.started.store(true, Relaxed);
        self.head_pending.store(false, Relaxed);
        self.in_flight.fetch_add(1, Relaxed);
        InFlight(self.clone())
    }

    /// What the connection did since the previous call.
    pub fn check(&self) -> Since {
        let busy = self.busy.swap(false, Relaxed);
        let started = self.started.swap(false, Relaxed);
        if started || busy || self.in_flight.load(Relaxed) > 0 {
            if !started && self.head_pending.load(Relaxed) {
                return Since::HeadPending;
            }
            Since::Busy
        } else if self.head_pending.load(Relaxed) {
            Since::HeadPending
        } else {
            Since::Quiet
        }
    }

    /// Bytes arrived from the client.
    fn read_some(&self) {
        self.busy.store(true, Relaxed);
        if self.in_flight.load(Relaxed) == 0 {
            self.head_pending.store(true, Relaxed);
        }
    }

    /// Park at the next read that would block.
    pub fn request_park(&self) {
        self.park.store(true, Relaxed);
    }

    /// The upstream switched protocols (WebSocket): its stream waits here.
    pub fn hand_over(&self, upstream: hyper::upgrade::Upgraded) {
        *self.upgraded.lock().unwrap_or_else(|e| e.into_inner()) = Some(upstream);
    }

    pub fn take_upgraded(&self) -> Option<hyper::upgrade::Upgraded> {
        self.upgraded.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// The outcome of [`Activity::check`].
#[derive(Debug, PartialEq, Eq)]
pub enum Since {
    /// Nothing read, nothing started, no response being sent: idle between requests.
    Quiet,
    /// A request started, bytes arrived, or a response is still being sent.
    Busy,
    /// Part of a request head arrived and no request has started since.
    HeadPending,
}

/// Counts one response as in flight until its body is dropped (sent in
/// full, or abandoned with the connection).
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

/// The TLS stream under hyper, with bytes hyper had read but not used put
/// back in front, and the end-of-file that parks the connection.
pub struct ParkableIo<T> {
    inner: T,
    prefix: Bytes,
    activity: Arc<Activity>,
}

impl<T> ParkableIo<T> {
    pub fn new(inner: T, activity: Arc<Activity>) -> Self {
        ParkableIo { inner, prefix: Bytes::new(), activity }
    }

    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    pub fn get_mut(&mut self) -> &mut T {
        &mut self.inner
    }

    /// Bytes hyper read but did not consume; they are read again first.
    pub fn unread(&mut self, bytes: Bytes) {
        self.prefix = bytes;
    }

    pub fn has_unread(&self) -> bool {
        !self.prefix.is_empty()
    }

    /// The stream and the bytes not yet read again from it.
    pub fn into_parts(self) -> (T, Bytes) {
        (self.inner, self.prefix)
    }

    /// Whether the last end-of-file hyper saw was ours (parking), and
    /// resets the parking state for the next hyper connection.
    pub fn parked(&mut self) -> bool {
        self.activity.park.store(false, Relaxed);
        self.activity.parked.swap(false, Relaxed)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ParkableIo<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            this.activity.read_some();
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.activity.read_some();
                    this.activity.park.store(false, Relaxed);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending if this.activity.park.load(Relaxed) => {
                this.activity.parked.store(true, Relaxed);
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ParkableIo<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn parks_only_when_a_read_would_block() {
        let activity = Arc::new(Activity::default());
        let (mut client, server) = tokio::io::duplex(64);
        let mut io = ParkableIo::new(server, activity.clone());
        tokio::io::AsyncWriteExt::write_all(&mut client, b"GET").await.unwrap();
        activity.request_park();
        // Data waiting: it is returned and the park request is dropped.
        let mut buf = [0u8; 16];
        assert_eq!(io.read(&mut buf).await.unwrap(), 3);
        assert!(!io.parked());
        // Nothing waiting, quiet since the read: end-of-file, marked as ours.
        assert_eq!(activity.check(), Since::HeadPending, "a head began");
        let _ = activity.request_started();
        assert_eq!(activity.check(), Since::Busy);
        assert_eq!(activity.check(), Since::Quiet);
        activity.request_park();
        assert_eq!(io.read(&mut buf).await.unwrap(), 0);
        assert!(io.parked());
        assert!(!io.parked(), "reset after being asked");
    }

    #[tokio::test]
    async fn unread_bytes_come_first_and_responses_keep_it_busy() {
        let activity = Arc::new(Activity::default());
        let (mut client, server) = tokio::io::duplex(64);
        let mut io = ParkableIo::new(server, activity.clone());
        io.unread(Bytes::from_static(b"GE"));
        tokio::io::AsyncWriteExt::write_all(&mut client, b"T /").await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 16];
        while got.len() < 5 {
            let n = io.read(&mut buf).await.unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, b"GET /");
        assert_eq!(activity.check(), Since::HeadPending);
        assert_eq!(activity.check(), Since::HeadPending, "still no request: the head is incomplete");
        let guard = activity.request_started();
        assert_eq!(activity.check(), Since::Busy);
        // Body bytes while the response is in flight do not start a head.
        tokio::io::AsyncWriteExt::write_all(&mut client, b"body").await.unwrap();
        assert_eq!(io.read(&mut buf).await.unwrap(), 4);
        assert_eq!(activity.check(), Since::Busy, "a response is still in flight");
        drop(guard);
        assert_eq!(activity.check(), Since::Quiet);
        // A real end-of-file is not a park.
        drop(client);
        assert_eq!(io.read(&mut buf).await.unwrap(), 0);
        assert!(!io.parked());
    }
}
