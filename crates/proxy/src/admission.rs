//! Who gets a connection slot, so that no single client can starve the rest.
//!
//! A connection that has not finished its TLS handshake has proved nothing:
//! anyone can open thousands of TCP connections and stay silent. So:
//!
//! - when `max_connections` is reached, the oldest connection still in its
//!   handshake is evicted (closed) to make room, a silent one first; only
//!   when every connection has finished its handshake is a new one refused;
//! - one source address may have at most `max_handshakes_per_source`
//!   connections in their handshake: past it, that source's oldest one whose
//!   client has sent nothing for [`SILENT_GRACE`] is evicted (a legitimate
//!   client sends its ClientHello at once, so this spares honest clients
//!   sharing a NAT address with the attacker, and a burst of them:
//!   handshakes that have started are left to the other limits);
//! - one source address may hold at most `max_connections_per_source`
//!   connections: past it, that source's oldest handshake is evicted, else
//!   the new connection is refused.
//!
//! IPv6 sources are grouped by /64 (one host usually has a whole /64).
//!
//! The accept loop calls [`Admission::admit`]; the connection's task holds
//! the [`Ticket`] for its whole life, tells it when the handshake is done
//! ([`Ticket::established`]) and releases the slot by dropping it. Eviction
//! aborts the connection's task, which closes its socket. The bookkeeping
//! takes one uncontended lock at accept, at the end of the handshake and at
//! close; nothing per request.
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering::AcqRel, Ordering::Acquire, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use tokio::task::AbortHandle;

const HANDSHAKING: u8 = 0;
const ESTABLISHED: u8 = 1;
/// Closed by eviction: the counts were released by whoever evicted it.
const EVICTED: u8 = 2;
/// Closed by its own task.
const CLOSED: u8 = 3;

/// The limits admission enforces (`[limits]`).
#[derive(Clone, Copy, Debug)]
pub struct AdmissionLimits {
    pub max_connections: usize,
    pub max_connections_per_source: usize,
    pub max_handshakes_per_source: usize,
    /// New connections per second one source may open that have not (yet)
    /// finished their handshake (0: no limit); see [`RateTable`].
    pub connection_rate_per_source: u32,
}

/// One admitted connection, as the admission state sees it.
pub struct Slot {
    source: IpAddr,
    state: AtomicU8,
    /// The client has sent something (the start of its ClientHello).
    spoke: AtomicBool,
    /// When it was accepted.
    since: std::time::Instant,
    /// The connection's task, aborted on eviction; set right after spawning.
    abort: OnceLock<AbortHandle>,
}

impl Slot {
    /// Gives the slot the handle that eviction aborts.
    pub fn set_task(&self, handle: AbortHandle) {
        let _ = self.abort.set(handle);
    }

    fn handshaking(&self) -> bool {
        self.state.load(Acquire) == HANDSHAKING
    }

    /// The client sent its first bytes: evicted only after silent ones.
    pub fn spoke(&self) {
        self.spoke.store(true, Relaxed);
    }
}

#[derive(Default)]
struct Source {
    connections: usize,
    handshakes: usize,
    /// This source's connections in accept order; some may have finished
    /// their handshake or closed (skipped and dropped lazily).
    queue: VecDeque<Arc<Slot>>,
}

#[derive(Default)]
struct State {
    connections: usize,
    handshakes: usize,
    /// Every connection in accept order, lazily cleaned like `Source::queue`.
    queue: VecDeque<Arc<Slot>>,
    sources: HashMap<IpAddr, Source>,
    rates: RateTable,
}

/// How many sources the rate table remembers: past it, sources whose
/// bucket has refilled (idle ones) are forgotten, and if none has, a new
/// source is admitted without a bucket until some refill.
const RATE_TABLE_CAP: usize = 65_536;

/// One token bucket per source: each connection accepted takes a token,
/// given back when its handshake completes, so a source is charged only
/// for connections that have not proved anything (silent, evicted, or
/// still handshaking). The bucket refills at `rate` per second up to
/// `2 * rate`. With it empty, a new connection from that source is closed
/// at accept, before any TLS work, unless its client's first bytes are
/// already there.
#[derive(Default)]
struct RateTable {
    buckets: HashMap<IpAddr, Bucket>,
    /// When the table was last swept of idle buckets.
    swept: Option<std::time::Instant>,
}

struct Bucket {
    tokens: f64,
    at: std::time::Instant,
}

impl RateTable {
    /// Takes a token from `src`'s bucket; false when it is empty.
    fn take(&mut self, src: IpAddr, rate: u32, now: std::time::Instant) -> bool {
        let burst = 2.0 * f64::from(rate);
        if self.buckets.len() >= RATE_TABLE_CAP && !self.buckets.contains_key(&src) {
            // At most one sweep a second: O(cap), amortized over the accepts.
            if self.swept.is_none_or(|t| now.duration_since(t) >= std::time::Duration::from_secs(1)) {
                self.swept = Some(now);
                self.buckets.retain(|_, b| b.level(rate, burst, now) < burst);
            }
            if self.buckets.len() >= RATE_TABLE_CAP {
                return true;
            }
        }
        let b = self.buckets.entry(src).or_insert(Bucket { tokens: burst, at: now });
        b.tokens = b.level(rate, burst, now);
        b.at = now;
        if b.tokens < 1.0 {
            return false;
        }
        b.tokens -= 1.0;
        true
    }

    /// Gives back the token of a connection that finished its handshake.
    fn refund(&mut self, src: IpAddr, rate: u32) {
        if let Some(b) = self.buckets.get_mut(&src) {
            b.tokens = (b.tokens + 1.0).min(2.0 * f64::from(rate));
        }
    }
}

impl Bucket {
    fn level(&self, rate: u32, burst: f64, now: std::time::Instant) -> f64 {
        (self.tokens + now.duration_since(self.at).as_secs_f64() * f64::from(rate)).min(burst)
    }
}

/// Why a connection was evicted or refused (the metrics' `reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shed {
    MaxConnections,
    SourceConnections,
    SourceHandshakes,
    Rate,
}

impl Shed {
    pub const ALL: [Shed; 4] = [Shed::MaxConnections, Shed::SourceConnections, Shed::SourceHandshakes, Shed::Rate];

    pub fn label(self) -> &'static str {
        match self {
            Shed::MaxConnections => "max_connections",
            Shed::SourceConnections => "source_connections",
            Shed::SourceHandshakes => "source_handshakes",
            Shed::Rate => "rate",
        }
    }
}

pub struct Admission {
    limits: AdmissionLimits,
    /// [`SILENT_GRACE`], but in tests.
    silent_grace: std::time::Duration,
    state: Mutex<State>,
}

/// A connection's hold on its slot; dropping it releases the slot.
pub struct Ticket {
    admission: Arc<Admission>,
    slot: Arc<Slot>,
    /// Admitted while its source or the proxy was near a limit: worth
    /// looking whether the client has spoken yet ([`Ticket::on_accept`]).
    pressed: bool,
    /// Took a token of its source's rate bucket (given back when the
    /// handshake completes).
    charged: bool,
}

/// The address connections are counted under: IPv4 as is (also when
/// mapped into IPv6), IPv6 by its /64.
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

/// Why [`Admission::admit`] did not admit a connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Close it (counted).
    Closed,
    /// Silent, from a source holding silent handshakes past its limit:
    /// [`probation`] decides.
    Probation,
}

/// How long a silent newcomer on probation has to send its first bytes.
/// An honest client's ClientHello follows the TCP handshake at once.
pub const PROBATION: std::time::Duration = std::time::Duration::from_millis(100);

/// Probations in flight, at most: past it a silent newcomer is refused at
/// once (each holds a descriptor for up to [`PROBATION`]).
const MAX_PROBATIONS: usize = 4096;
static PROBATIONS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A connection refused as [`Refusal::Probation`] waits here, without a
/// connection task or handshake state, for its first bytes: true if they
/// came within [`PROBATION`] (admit it again, as having spoken); false if
/// not, or if too many are waiting (close it; counted).
pub async fn probation(stream: &tokio::net::TcpStream) -> bool {
    use std::sync::atomic::Ordering::SeqCst;
    if PROBATIONS.fetch_add(1, SeqCst) >= MAX_PROBATIONS {
        PROBATIONS.fetch_sub(1, SeqCst);
        refused(Shed::SourceHandshakes);
        return false;
    }
    let mut byte = [0u8; 1];
    let spoke = matches!(tokio::time::timeout(PROBATION, stream.peek(&mut byte)).await, Ok(Ok(n)) if n > 0);
    PROBATIONS.fetch_sub(1, SeqCst);
    if !spoke {
        refused(Shed::SourceHandshakes);
    }
    spoke
}

fn evicted(reason: Shed) {
    metrics::counter!("ambos_proxy_connections_evicted_total", "reason" => reason.label()).increment(1);
}

fn refused(reason: Shed) {
    metrics::counter!("ambos_proxy_connections_rejected_total", "reason" => reason.label()).increment(1);
}

impl State {
    /// Releases a slot's counts (one connection, and one handshake when
    /// `handshake`), forgetting its source when it holds nothing more.
    fn release(&mut self, source: IpAddr, handshake: bool) {
        self.connections -= 1;
        self.handshakes -= usize::from(handshake);
        if let Some(s) = self.sources.get_mut(&source) {
            s.connections -= 1;
            s.handshakes -= usize::from(handshake);
            if s.connections == 0 {
                self.sources.remove(&source);
            }
        }
    }

    /// Evicts the oldest connection still in its handshake, of one source
    /// or of all, preferring one whose client has sent nothing yet (looked
    /// for among the first [`SILENT_SCAN`] of the queue), or only such a
    /// one silent for at least `silent_for` when given; false when there is
    /// none.
    /// Whether `src` holds a connection silent for `grace` that
    /// [`State::evict_oldest`] could evict.
    fn holds_silent(&self, src: IpAddr, grace: std::time::Duration) -> bool {
        self.sources.get(&src).is_some_and(|s| {
            s.queue
                .iter()
                .take(SILENT_SCAN)
                .any(|s| s.handshaking() && !s.spoke.load(Relaxed) && s.since.elapsed() >= grace)
        })
    }

    fn evict_oldest(&mut self, of: Option<IpAddr>, silent_for: Option<std::time::Duration>) -> bool {
        let queue = match of {
            Some(src) => match self.sources.get_mut(&src) {
                Some(s) => &mut s.queue,
                None => return false,
            },
            None => &mut self.queue,
        };
        while queue.front().is_some_and(|s| !s.handshaking()) {
            queue.pop_front();
        }
        let grace = silent_for.unwrap_or_default();
        let silent = queue
            .iter()
            .take(SILENT_SCAN)
            .position(|s| s.handshaking() && !s.spoke.load(Relaxed) && s.since.elapsed() >= grace);
        let mut picked = silent.and_then(|i| queue.remove(i));
        if silent_for.is_some() && picked.is_none() {
            return false;
        }
        loop {
            let Some(slot) = picked.take().or_else(|| queue.pop_front()) else { return false };
            if slot.state.compare_exchange(HANDSHAKING, EVICTED, AcqRel, Acquire).is_ok() {
                self.release(slot.source, true);
                if let Some(task) = slot.abort.get() {
                    task.abort();
                }
                return true;
            }
        }
    }
}

/// How far into a queue eviction looks for a silent connection before it
/// takes the oldest: bounds the work per accept.
const SILENT_SCAN: usize = 64;

/// How long a connection must have been silent before the per-source
/// handshake limit may evict it: an honest client's ClientHello follows its
/// connect at once, but a client opening many connections at a time (a
/// pool warming up, an asyncio burst) may take tens of milliseconds to get
/// to each; an attacker's silent connections are seconds old.
const SILENT_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Drops the finished entries of a queue once they are most of it, so that
/// it stays within twice the live handshakes (amortized O(1) per push).
fn compact(queue: &mut VecDeque<Arc<Slot>>, handshakes: usize) {
    if queue.len() > 2 * handshakes + 16 {
        queue.retain(|s| s.handshaking());
    }
}

impl Admission {
    pub fn new(limits: AdmissionLimits) -> Arc<Admission> {
        Arc::new(Admission { limits, silent_grace: SILENT_GRACE, state: Mutex::default() })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admits a new connection from `peer`, evicting handshakes as the
    /// limits require, or refuses it.
    /// `spoken` tells (one non-blocking peek) whether the client's first
    /// bytes are already there; asked only when its source is over its
    /// connection rate or holds silent handshakes past its limit.
    pub fn admit(self: &Arc<Self>, peer: IpAddr, spoken: impl FnOnce() -> bool) -> Result<Ticket, Refusal> {
        let key = source_key(peer);
        let l = self.limits;
        let mut st = self.lock();
        let mut charged = false;
        // One peek at most, made only when a limit is reached.
        let (mut spoken, mut said) = (Some(spoken), None);
        let mut spoke = || *said.get_or_insert_with(|| spoken.take().is_some_and(|f| f()));
        if l.connection_rate_per_source > 0 {
            charged = st.rates.take(key, l.connection_rate_per_source, std::time::Instant::now());
            if !charged && !spoke() {
                drop(st);
                refused(Shed::Rate);
                return Err(Refusal::Closed);
            }
        }
        let (conns, hs) = st.sources.get(&key).map_or((0, 0), |s| (s.connections, s.handshakes));
        let pressed = 2 * hs >= l.max_handshakes_per_source
            || 2 * conns >= l.max_connections_per_source
            || 10 * st.connections >= 9 * l.max_connections;
        // Past the handshakes per source, a silent one goes; handshakes
        // that are progressing (a burst of honest clients behind one
        // address) are left to the other limits.
        if hs >= l.max_handshakes_per_source && st.holds_silent(key, self.silent_grace) {
            // A silent newcomer is no better than the silent ones held: it
            // waits on probation (see `probation`) instead of taking one's
            // place, where taking it (evicting one of them) made a
            // one-address flood churn the proxy's connection tasks. One
            // that has spoken takes a silent one's place.
            if !spoke() {
                return Err(Refusal::Probation);
            }
            st.evict_oldest(Some(key), Some(self.silent_grace));
            evicted(Shed::SourceHandshakes);
        } else if conns >= l.max_connections_per_source {
            if !st.evict_oldest(Some(key), None) {
                refused(Shed::SourceConnections);
                return Err(Refusal::Closed);
            }
            evicted(Shed::SourceConnections);
        }
        if st.connections >= l.max_connections {
            if !st.evict_oldest(None, None) {
                refused(Shed::MaxConnections);
                return Err(Refusal::Closed);
            }
            evicted(Shed::MaxConnections);
        }
        let slot = Arc::new(Slot {
            source: key,
            state: AtomicU8::new(HANDSHAKING),
            spoke: AtomicBool::new(false),
            since: std::time::Instant::now(),
            abort: OnceLock::new(),
        });
        st.connections += 1;
        st.handshakes += 1;
        let live = st.handshakes;
        compact(&mut st.queue, live);
        st.queue.push_back(slot.clone());
        let src = st.sources.entry(key).or_default();
        src.connections += 1;
        src.handshakes += 1;
        compact(&mut src.queue, src.handshakes);
        src.queue.push_back(slot.clone());
        Ok(Ticket { admission: self.clone(), slot, pressed, charged })
    }

    /// Connections and handshakes in flight.
    #[cfg(test)]
    pub fn counts(&self) -> (usize, usize) {
        let st = self.lock();
        (st.connections, st.handshakes)
    }
}

impl Ticket {
    pub fn slot(&self) -> &Arc<Slot> {
        &self.slot
    }

    /// Under pressure: marks the connection as spoken if its client's
    /// first bytes are already there (one non-blocking peek): a connection
    /// accepted in a burst may wait for its task's first poll while the
    /// burst evicts handshakes, and a legitimate client's ClientHello is
    /// usually there by the time it is accepted. And sets it to close with
    /// a reset until [`Ticket::established`]: closing the connections a
    /// flood makes us evict is then one packet and no TIME_WAIT, where a
    /// FIN exchange was the largest single cost of a one-address flood
    /// (14% of the proxy's CPU in `perf`).
    pub fn on_accept(&self, stream: &tokio::net::TcpStream) {
        if !self.pressed {
            return;
        }
        let sock = socket2::SockRef::from(stream);
        let mut byte = [std::mem::MaybeUninit::<u8>::uninit()];
        if matches!(sock.peek(&mut byte), Ok(n) if n > 0) {
            self.slot.spoke();
        }
        // Failing, the connection closes the usual way: nothing to handle.
        let _ = sock.set_linger(Some(std::time::Duration::ZERO));
    }

    /// An established connection closes gracefully again (see [`Ticket::on_accept`]).
    pub fn close_gracefully(&self, stream: &tokio::net::TcpStream) {
        if self.pressed {
            // Failing, it would close with a reset: as if the client had.
            let _ = socket2::SockRef::from(stream).set_linger(None);
        }
    }

    /// The handshake is done: the connection can no longer be evicted.
    /// False if it was evicted meanwhile (its task is being aborted).
    pub fn established(&self) -> bool {
        if self.slot.state.compare_exchange(HANDSHAKING, ESTABLISHED, AcqRel, Acquire).is_err() {
            return false;
        }
        let mut st = self.admission.lock();
        st.handshakes -= 1;
        if let Some(s) = st.sources.get_mut(&self.slot.source) {
            s.handshakes -= 1;
        }
        if self.charged {
            st.rates.refund(self.slot.source, self.admission.limits.connection_rate_per_source);
        }
        true
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let handshake = match self.slot.state.swap(CLOSED, AcqRel) {
            HANDSHAKING => true,
            ESTABLISHED => false,
            // Evicted: whoever evicted it released the counts.
            _ => return,
        };
        self.admission.lock().release(self.slot.source, handshake);
    }
}

/// Raises the soft limit on open files to the hard one, and warns when
/// `max_connections` still cannot be reached: each client connection may
/// hold an upstream connection too, plus a margin for the listener, the
/// files and the pools.
pub fn raise_fd_limit(max_connections: usize) {
    let soft = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!("cannot raise the open-file limit: {e}");
            match rlimit::Resource::NOFILE.get() {
                Ok((soft, _)) => soft,
                Err(_) => return,
            }
        }
    };
    let need = (max_connections as u64).saturating_mul(2).saturating_add(FD_MARGIN);
    if soft < need {
        tracing::warn!(
            "the open-file limit is {soft}: limits.max_connections = {max_connections} cannot be reached \
             (each connection may need 2 descriptors, client and upstream, plus {FD_MARGIN}: {need}); \
             raise the hard limit (ulimit -Hn, LimitNOFILE=) or lower max_connections"
        );
    } else {
        tracing::debug!("open-file limit: {soft}");
    }
}

/// Descriptors besides the connections': listener, metrics, audit log,
/// configuration watches, pooled idle upstream connections.
const FD_MARGIN: u64 = 256;

#[cfg(test)]
mod tests {
    use super::*;

    fn adm(max: usize, per_source: usize, hs: usize) -> Arc<Admission> {
        let limits = AdmissionLimits {
            max_connections: max,
            max_connections_per_source: per_source,
            max_handshakes_per_source: hs,
            connection_rate_per_source: 0,
        };
        Arc::new(Admission { limits, silent_grace: std::time::Duration::ZERO, state: Mutex::default() })
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_oldest_handshake_is_evicted_at_the_cap() {
        let a = adm(3, 100, 100);
        let t1 = a.admit(ip("10.0.0.1"), || false).unwrap();
        let t2 = a.admit(ip("10.0.0.2"), || false).unwrap();
        assert!(t2.established());
        let t3 = a.admit(ip("10.0.0.3"), || false).unwrap();
        // Full: t1 (the oldest still in its handshake) goes.
        let t4 = a.admit(ip("10.0.0.4"), || false).unwrap();
        assert!(!t1.established(), "t1 was evicted");
        assert_eq!(a.counts(), (3, 2));
        drop(t1);
        assert_eq!(a.counts(), (3, 2), "an evicted ticket releases nothing twice");
        assert!(t3.established() && t4.established());
        // Everyone established: refused.
        assert!(a.admit(ip("10.0.0.5"), || false).is_err());
        drop((t2, t3, t4));
        assert_eq!(a.counts(), (0, 0));
        assert!(a.lock().sources.is_empty());
    }

    #[test]
    fn a_source_over_its_handshakes_loses_its_own_oldest() {
        let a = adm(100, 100, 2);
        let other = a.admit(ip("10.0.0.9"), || false).unwrap();
        let s1 = a.admit(ip("10.0.0.1"), || false).unwrap();
        let s2 = a.admit(ip("10.0.0.1"), || false).unwrap();
        // A third silent one is refused: it is no better than the two held.
        assert_eq!(a.admit(ip("10.0.0.1"), || false).err(), Some(Refusal::Probation));
        assert_eq!(a.counts(), (3, 3));
        // One that has spoken takes the oldest silent one's place.
        let s3 = a.admit(ip("10.0.0.1"), || true).unwrap();
        assert!(!s1.established());
        assert!(other.established(), "another source is untouched");
        assert!(s2.established() && s3.established());
        // Handshakes done: a new one from the source is admitted.
        let s4 = a.admit(ip("10.0.0.1"), || false).unwrap();
        assert_eq!(a.counts(), (4, 1));
        drop((s1, s2, s3, s4, other));
        assert_eq!(a.counts(), (0, 0));
    }

    #[test]
    fn a_source_at_its_connection_limit_is_refused_once_all_are_established() {
        let a = adm(100, 2, 10);
        let s1 = a.admit(ip("10.0.0.1"), || false).unwrap();
        let s2 = a.admit(ip("10.0.0.1"), || false).unwrap();
        assert!(s2.established());
        let s3 = a.admit(ip("10.0.0.1"), || false).unwrap();
        assert!(!s1.established(), "s1 was still in its handshake: evicted");
        assert!(s3.established());
        assert!(a.admit(ip("10.0.0.1"), || false).is_err());
        assert!(a.admit(ip("10.0.0.2"), || false).is_ok(), "other sources are not limited by it");
    }

    #[test]
    fn the_source_handshake_limit_spares_young_silent_connections() {
        let a = Admission::new(AdmissionLimits {
            max_connections: 100,
            max_connections_per_source: 100,
            max_handshakes_per_source: 2,
            connection_rate_per_source: 0,
        });
        let t: Vec<_> = (0..5).map(|_| a.admit(ip("10.0.0.1"), || false).unwrap()).collect();
        assert_eq!(a.counts(), (5, 5), "a burst younger than SILENT_GRACE is left alone");
        drop(t);
    }

    #[test]
    fn handshakes_that_spoke_are_not_evicted_for_the_source_handshake_limit() {
        let a = adm(100, 100, 2);
        let s1 = a.admit(ip("10.0.0.1"), || false).unwrap();
        let s2 = a.admit(ip("10.0.0.1"), || false).unwrap();
        s1.slot().spoke();
        s2.slot().spoke();
        let s3 = a.admit(ip("10.0.0.1"), || false).unwrap();
        assert!(s1.established() && s2.established() && s3.established(), "a burst of honest clients");
    }

    #[test]
    fn silent_handshakes_go_before_ones_that_spoke() {
        let a = adm(3, 100, 100);
        let legit = a.admit(ip("10.0.0.1"), || false).unwrap();
        legit.slot().spoke();
        let silent1 = a.admit(ip("10.0.0.1"), || false).unwrap();
        let silent2 = a.admit(ip("10.0.0.1"), || false).unwrap();
        let _new = a.admit(ip("10.0.0.1"), || false).unwrap();
        assert!(!silent1.established(), "the oldest silent one went");
        let _new2 = a.admit(ip("10.0.0.1"), || false).unwrap();
        assert!(!silent2.established());
        assert!(legit.established(), "the one that spoke stays, although the oldest");
    }

    #[test]
    fn queues_stay_bounded_with_churn() {
        let a = adm(1000, 1000, 1000);
        for _ in 0..10_000 {
            let t = a.admit(ip("10.0.0.1"), || false).unwrap();
            assert!(t.established());
        }
        let st = a.lock();
        assert!(st.queue.len() <= 17 && st.sources.is_empty(), "{}", st.queue.len());
    }

    #[test]
    fn ipv6_sources_are_grouped_by_64() {
        assert_eq!(source_key(ip("2001:db8:1:2:3::4")), ip("2001:db8:1:2::"));
        assert_eq!(source_key(ip("::ffff:10.1.2.3")), ip("10.1.2.3"));
        assert_eq!(source_key(ip("10.1.2.3")), ip("10.1.2.3"));
    }

    fn rated(rate: u32) -> Arc<Admission> {
        Admission::new(AdmissionLimits {
            max_connections: 100_000,
            max_connections_per_source: 100_000,
            max_handshakes_per_source: 100_000,
            connection_rate_per_source: rate,
        })
    }

    #[test]
    fn a_source_past_its_rate_is_refused_unless_it_already_spoke() {
        let a = rated(10);
        let held: Vec<_> = (0..20).map(|_| a.admit(ip("10.0.0.1"), || false).unwrap()).collect();
        assert!(a.admit(ip("10.0.0.1"), || false).is_err(), "the burst (2 s of rate) is spent");
        let spoke = a.admit(ip("10.0.0.1"), || true);
        assert!(spoke.is_ok(), "a client whose ClientHello is there gets in");
        let other = a.admit(ip("10.0.0.2"), || false);
        assert!(other.is_ok(), "other sources have their own bucket");
        assert_eq!(a.counts(), (22, 22));
        drop((held, spoke, other));
    }

    #[test]
    fn completed_handshakes_give_their_token_back() {
        let a = rated(10);
        for _ in 0..1000 {
            let t = a.admit(ip("10.0.0.1"), || false).expect("honest clients are never charged for long");
            assert!(t.established());
        }
    }

    #[test]
    fn the_rate_table_is_bounded() {
        let a = rated(10);
        for i in 0..(RATE_TABLE_CAP as u32 + 1000) {
            let t = a.admit(IpAddr::V4(i.into()), || false).unwrap();
            assert!(t.established());
        }
        assert!(a.lock().rates.buckets.len() <= RATE_TABLE_CAP);
    }
}
