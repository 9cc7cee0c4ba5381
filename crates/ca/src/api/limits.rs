//! What one client may cost `ambos serve`: connection slots with eviction of
//! idle ones, failed-token throttling per source, idle and body timeouts.
use super::ApiError;
use axum::http::StatusCode;
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What one client may cost `ambos serve` (docs/ca-server.md, "Limits").
#[derive(Clone, Debug)]
pub struct ServeLimits {
    /// Connections open at once. At the cap, the oldest connection that is
    /// still in its handshake or waiting for a request is closed to make
    /// room; if every one is busy with a request, the new one is closed.
    pub max_connections: usize,
    /// Connections open at once from one address (IPv6: one /64), with the
    /// same eviction among that address's connections.
    pub max_connections_per_source: usize,
    /// Time for the TLS handshake.
    pub handshake_timeout: Duration,
    /// Time from waiting for a request (a new connection, or a keep-alive
    /// one after its last response) to having its whole head.
    pub header_timeout: Duration,
    /// A connection that neither reads nor writes a byte for this long is closed.
    pub idle_timeout: Duration,
    /// Largest request body (bytes): 413 beyond it.
    pub max_body: usize,
    /// Time to receive a whole request body: 408 after it.
    pub body_timeout: Duration,
    /// Failed enrollment-token attempts from one address within
    /// `token_failure_window` before it is answered 429.
    pub token_failure_limit: usize,
    pub token_failure_window: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            max_connections: 1000,
            max_connections_per_source: 256,
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_body: 64 * 1024,
            body_timeout: Duration::from_secs(10),
            token_failure_limit: 10,
            token_failure_window: Duration::from_secs(60),
        }
    }
}

/// The source a per-address limit counts: the IPv4 address, or the /64 of an IPv6 one.
pub(super) fn source_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

/// One open connection's slot: `evictable` while it is in its handshake
/// or waiting for a request; `evict` closes it.
pub(super) struct Slot {
    source: IpAddr,
    pub(super) evictable: AtomicBool,
    pub(super) evict: tokio::sync::Notify,
}

/// The open connections, oldest first, and how many each source holds.
pub(super) struct Slots {
    max: usize,
    per_source: usize,
    inner: Mutex<SlotsInner>,
}

#[derive(Default)]
struct SlotsInner {
    next: u64,
    open: BTreeMap<u64, Arc<Slot>>,
    by_source: HashMap<IpAddr, usize>,
}

impl SlotsInner {
    /// Closes the oldest evictable connection (of `source` if given).
    fn evict_oldest(&mut self, source: Option<IpAddr>) -> bool {
        let victim = self
            .open
            .iter()
            .find(|(_, s)| source.is_none_or(|src| s.source == src) && s.evictable.load(Ordering::Acquire))
            .map(|(id, _)| *id);
        let Some(id) = victim else { return false };
        let slot = self.open.remove(&id).expect("present");
        self.release(slot.source);
        slot.evict.notify_one();
        true
    }

    fn release(&mut self, source: IpAddr) {
        if let Some(n) = self.by_source.get_mut(&source) {
            *n -= 1;
            if *n == 0 {
                self.by_source.remove(&source);
            }
        }
    }
}

/// Removes its slot when the connection ends (unless it was evicted).
pub(super) struct SlotGuard {
    slots: Arc<Slots>,
    id: u64,
    pub(super) slot: Arc<Slot>,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        let mut inner = self.slots.inner.lock().expect("slots lock");
        if inner.open.remove(&self.id).is_some() {
            inner.release(self.slot.source);
        }
    }
}

impl Slots {
    pub(super) fn new(max: usize, per_source: usize) -> Arc<Slots> {
        Arc::new(Slots { max: max.max(1), per_source: per_source.max(1), inner: Mutex::new(SlotsInner::default()) })
    }

    /// A slot for a new connection from `ip`, evicting an idle or
    /// handshaking one if a cap is reached; `None`: refuse it.
    pub(super) fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<SlotGuard> {
        let source = source_of(ip);
        let mut inner = self.inner.lock().expect("slots lock");
        if inner.by_source.get(&source).copied().unwrap_or(0) >= self.per_source && !inner.evict_oldest(Some(source)) {
            metrics::counter!("ambos_ca_connections_refused_total", "reason" => "per_source").increment(1);
            return None;
        }
        if inner.open.len() >= self.max && !inner.evict_oldest(None) {
            metrics::counter!("ambos_ca_connections_refused_total", "reason" => "max_connections").increment(1);
            return None;
        }
        let slot = Arc::new(Slot { source, evictable: AtomicBool::new(true), evict: tokio::sync::Notify::new() });
        let id = inner.next;
        inner.next += 1;
        inner.open.insert(id, slot.clone());
        *inner.by_source.entry(source).or_insert(0) += 1;
        Some(SlotGuard { slots: self.clone(), id, slot })
    }
}

/// The client's address, for per-source limits and logs.
#[derive(Clone, Copy)]
pub(super) struct PeerAddr(pub(super) SocketAddr);

/// Failed enrollment-token attempts per source, within the window.
pub(super) struct TokenFailures {
    limit: usize,
    window: Duration,
    seen: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

impl TokenFailures {
    pub(super) fn new(limit: usize, window: Duration) -> TokenFailures {
        TokenFailures { limit, window, seen: Mutex::new(HashMap::new()) }
    }

    /// `Some(seconds to wait)` when `ip` has used up its failures.
    pub(super) fn blocked(&self, ip: IpAddr) -> Option<u64> {
        let mut seen = self.seen.lock().expect("failures lock");
        let q = seen.get_mut(&source_of(ip))?;
        let now = Instant::now();
        while q.front().is_some_and(|t| now.duration_since(*t) >= self.window) {
            q.pop_front();
        }
        if q.len() < self.limit {
            return None;
        }
        let oldest = *q.front()?;
        let wait = self.window.saturating_sub(now.duration_since(oldest));
        Some(wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
    }

    pub(super) fn record(&self, ip: IpAddr) {
        let mut seen = self.seen.lock().expect("failures lock");
        let now = Instant::now();
        if seen.len() >= 100_000 {
            let window = self.window;
            seen.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < window));
        }
        let q = seen.entry(source_of(ip)).or_default();
        q.push_back(now);
        while q.len() > self.limit.max(1) {
            q.pop_front();
        }
    }
}

/// Counts the bytes moved through a connection: the idle watchdog closes
/// it when none moved for `idle_timeout`.
pub(super) struct Activity<T> {
    pub(super) io: T,
    pub(super) last: Arc<AtomicU64>,
    pub(super) start: Instant,
}

impl<T> Activity<T> {
    fn touch(&self) {
        self.last.store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Activity<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.touch();
        }
        r
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Activity<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(r, std::task::Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// A response body that marks its connection evictable again when hyper
/// has written it (or dropped it).
pub(super) struct UntilWritten {
    pub(super) body: axum::body::Body,
    pub(super) slot: Arc<Slot>,
}

impl hyper::body::Body for UntilWritten {
    type Data = Bytes;
    type Error = axum::Error;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, axum::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }
    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }
    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

impl Drop for UntilWritten {
    fn drop(&mut self) {
        self.slot.evictable.store(true, Ordering::Release);
    }
}

/// Resolves when `last` (ms since `start`) is `idle` old.
pub(super) async fn idle_for(last: Arc<AtomicU64>, start: Instant, idle: Duration) {
    loop {
        let since = start.elapsed().saturating_sub(Duration::from_millis(last.load(Ordering::Relaxed)));
        if since >= idle {
            return;
        }
        tokio::time::sleep(idle - since + Duration::from_millis(10)).await;
    }
}

/// Reads the whole request body within the limits: 413 past `max_body`,
/// 408 past `body_timeout`.
pub(super) async fn read_body(body: hyper::body::Incoming, limits: &ServeLimits) -> Result<Bytes, ApiError> {
    use http_body_util::BodyExt;
    use hyper::body::Body;
    // A declared length over the limit is refused before the body is polled:
    // polling would send `100 Continue` and invite the client to send it.
    if body.size_hint().lower() > limits.max_body as u64 {
        return Err(too_large(limits));
    }
    let limited = http_body_util::Limited::new(body, limits.max_body);
    match tokio::time::timeout(limits.body_timeout, limited.collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => Err(too_large(limits)),
        Ok(Err(e)) => Err(ApiError::new(StatusCode::BAD_REQUEST, "bad request", e.to_string())),
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body too slow",
            format!("the body must arrive within {} s", limits.body_timeout.as_secs_f64()),
        )),
    }
}

fn too_large(limits: &ServeLimits) -> ApiError {
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "body too large", format!("at most {} bytes", limits.max_body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(max: usize, per_source: usize) -> Arc<Slots> {
        Slots::new(max, per_source)
    }

    #[test]
    fn at_the_cap_the_oldest_idle_connection_makes_room() {
        let s = slots(3, 10);
        let a: IpAddr = [10, 0, 0, 1].into();
        let first = s.admit(a).unwrap();
        let second = s.admit(a).unwrap();
        let third = s.admit(a).unwrap();
        first.slot.evictable.store(false, Ordering::Release); // busy with a request
        let fourth = s.admit(a).unwrap(); // evicts `second`, the oldest idle one
        assert_eq!(s.inner.lock().unwrap().open.len(), 3);
        assert!(!s.inner.lock().unwrap().open.contains_key(&second.id));
        drop(second); // its task ends: nothing more to release
        assert_eq!(s.inner.lock().unwrap().by_source[&a], 3);
        for g in [&third, &fourth] {
            g.slot.evictable.store(false, Ordering::Release);
        }
        assert!(s.admit(a).is_none(), "all busy: refused");
        drop((first, third, fourth));
        let inner = s.inner.lock().unwrap();
        assert!(inner.open.is_empty() && inner.by_source.is_empty());
    }

    #[test]
    fn the_per_source_cap_evicts_only_that_sources_connections() {
        let s = slots(10, 2);
        let (a, b): (IpAddr, IpAddr) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into());
        let _b1 = s.admit(b).unwrap();
        let a1 = s.admit(a).unwrap();
        let _a2 = s.admit(a).unwrap();
        let _a3 = s.admit(a).unwrap();
        let inner = s.inner.lock().unwrap();
        assert!(!inner.open.contains_key(&a1.id));
        assert_eq!((inner.by_source[&a], inner.by_source[&b]), (2, 1));
        // IPv6: one /64 is one source.
        assert_eq!(source_of("2001:db8::1".parse().unwrap()), source_of("2001:db8::ffff:1:2".parse().unwrap()));
        assert_ne!(source_of("2001:db8::1".parse().unwrap()), source_of("2001:db8:0:1::1".parse().unwrap()));
    }

    #[test]
    fn token_failures_block_after_the_limit_until_the_window_passes() {
        let f = TokenFailures::new(3, Duration::from_millis(300));
        let (a, b): (IpAddr, IpAddr) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into());
        for _ in 0..3 {
            assert!(f.blocked(a).is_none());
            f.record(a);
        }
        assert_eq!(f.blocked(a), Some(1));
        assert!(f.blocked(b).is_none());
        std::thread::sleep(Duration::from_millis(350));
        assert!(f.blocked(a).is_none());
    }
}
