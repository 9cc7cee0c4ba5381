//! What workers measured: latencies in an HDR histogram, failures by kind,
//! and the summary of a run.
use hdrhistogram::Histogram;
use serde::Serialize;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The histogram's range in µs: longer operations are recorded as this.
const MAX_LATENCY_US: u64 = 60_000_000;

/// Why one operation failed: the kind is counted, the detail of the first shown.
pub struct Failure {
    pub kind: Cow<'static, str>,
    pub detail: String,
}

impl Failure {
    pub fn new(kind: impl Into<Cow<'static, str>>, detail: impl Into<String>) -> Failure {
        Failure { kind: kind.into(), detail: detail.into() }
    }

    /// Whether the request may not have been done, so that another CA node
    /// can be asked: no connection, no answer, or 503 (its store is down).
    pub fn resendable(&self) -> bool {
        matches!(&*self.kind, "connect" | "tls" | "protocol" | "send" | "read" | "timeout" | "status 503")
    }
}

/// `.kind("tls")` / `.context_kind("connect ...", "connect")`: files an error under a kind.
pub trait Kind<T> {
    fn kind(self, kind: &'static str) -> Result<T, Failure>;
    fn context_kind(self, context: impl std::fmt::Display, kind: &'static str) -> Result<T, Failure>;
}

impl<T, E: std::error::Error + 'static> Kind<T> for Result<T, E> {
    fn kind(self, kind: &'static str) -> Result<T, Failure> {
        self.map_err(|e| Failure::new(kind_of(&e, kind), ambos_tls::error_chain(&e)))
    }

    fn context_kind(self, context: impl std::fmt::Display, kind: &'static str) -> Result<T, Failure> {
        self.map_err(|e| Failure::new(kind_of(&e, kind), format!("{context}: {}", ambos_tls::error_chain(&e))))
    }
}

/// In TLS 1.3 the server refuses a client certificate after the client
/// thinks the handshake is done: that alert is still a TLS failure.
fn kind_of(e: &(dyn std::error::Error + 'static), kind: &'static str) -> &'static str {
    if is_tls_error(e) {
        "tls"
    } else {
        kind
    }
}

/// Whether a TLS error (an alert, a bad record) is somewhere in the chain.
/// tokio-rustls reports every rustls error as `InvalidData`, and h2 keeps
/// only that kind and the message, so the kind is what is checked.
fn is_tls_error(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(cause) = cur {
        if cause.is::<rustls::Error>()
            || cause.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::InvalidData)
        {
            return true;
        }
        cur = cause.source();
    }
    false
}

/// What one worker (or all of them, merged) measured.
pub struct Tally {
    latency_us: Histogram<u64>,
    errors: BTreeMap<Cow<'static, str>, u64>,
}

impl Tally {
    pub fn new() -> Tally {
        Tally {
            latency_us: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds"),
            errors: BTreeMap::new(),
        }
    }

    /// Counts one operation; a failure is also offered to `first_error`
    /// (shared by all workers: the first of the run, as `kind: detail`).
    pub fn record(&mut self, first_error: &Mutex<Option<String>>, started: Instant, outcome: Result<(), Failure>) {
        match outcome {
            Ok(()) => self.record_latency(started.elapsed()),
            Err(f) => {
                let mut first = first_error.lock().unwrap_or_else(|e| e.into_inner());
                if first.is_none() {
                    *first = Some(format!("{}: {}", f.kind, f.detail));
                }
                *self.errors.entry(f.kind).or_default() += 1;
            }
        }
    }

    fn record_latency(&mut self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.latency_us.saturating_record(us.min(MAX_LATENCY_US));
    }

    pub fn merge(&mut self, other: Tally) {
        // Same bounds on both sides: adding cannot fail.
        self.latency_us.add(&other.latency_us).expect("same histogram bounds");
        for (kind, n) in other.errors {
            *self.errors.entry(kind).or_default() += n;
        }
    }

    /// The run's figures, over `seconds` of wall time.
    pub fn summary(&self, seconds: f64) -> Summary {
        let h = &self.latency_us;
        let ops = h.len();
        let ops_per_sec = if seconds > 0.0 { ops as f64 / seconds } else { 0.0 };
        let at = |q: f64| if ops == 0 { 0 } else { h.value_at_quantile(q) };
        Summary {
            ops,
            errors: self.errors.values().sum(),
            errors_by_kind: self.errors.iter().map(|(k, n)| (k.to_string(), *n)).collect(),
            seconds: (seconds * 1000.0).round() / 1000.0,
            ops_per_sec: ops_per_sec.round(),
            p50_us: at(0.50),
            p90_us: at(0.90),
            p99_us: at(0.99),
            max_us: if ops == 0 { 0 } else { h.max() },
        }
    }
}

/// Counts and latency percentiles of a run (`ambos bench --json`, after mode, protocol, server_verified).
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct Summary {
    pub ops: u64,
    pub errors: u64,
    pub errors_by_kind: BTreeMap<String, u64>,
    pub seconds: f64,
    pub ops_per_sec: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(latencies_us: &[u64]) -> Tally {
        let mut t = Tally::new();
        for &us in latencies_us {
            t.record_latency(Duration::from_micros(us));
        }
        t
    }

    #[test]
    fn percentiles_come_from_the_histogram() {
        let all: Vec<u64> = (1..=100).map(|i| i * 100).collect();
        let s = tally(&all).summary(2.0);
        assert_eq!(s.ops, 100);
        assert_eq!(s.ops_per_sec, 50.0);
        // 3 significant digits: a value comes back as the top of its bucket, within 0.1 %.
        for (got, want) in [(s.p50_us, 5000), (s.p90_us, 9000), (s.p99_us, 9900), (s.max_us, 10000)] {
            assert!(got >= want && got - want <= want / 1000, "{got} for {want}");
        }
        assert_eq!(s.errors, 0);
    }

    #[test]
    fn an_empty_run_reports_zeros() {
        let s = Tally::new().summary(0.0);
        assert_eq!((s.ops, s.ops_per_sec, s.p50_us, s.max_us), (0, 0.0, 0, 0));
    }

    #[test]
    fn longer_than_the_range_is_recorded_as_its_top() {
        let s = tally(&[120_000_000]).summary(1.0);
        assert!(s.max_us >= MAX_LATENCY_US && s.max_us < MAX_LATENCY_US + MAX_LATENCY_US / 500, "{}", s.max_us);
    }

    #[test]
    fn failures_are_counted_by_kind_and_the_first_is_kept() {
        let first = Mutex::new(None);
        let mut a = Tally::new();
        let mut b = Tally::new();
        b.record(&first, Instant::now(), Err(Failure::new("connect", "refused")));
        a.record(&first, Instant::now(), Err(Failure::new("status 503", "unexpected status")));
        a.record(&first, Instant::now(), Err(Failure::new("connect", "refused again")));
        b.record(&first, Instant::now(), Ok(()));
        a.merge(b);
        let s = a.summary(1.0);
        assert_eq!(s.errors, 3);
        assert_eq!(s.ops, 1);
        assert_eq!(s.errors_by_kind.get("connect"), Some(&2));
        assert_eq!(s.errors_by_kind.get("status 503"), Some(&1));
        assert_eq!(
            first.into_inner().unwrap().as_deref(),
            Some("connect: refused"),
            "the run's first, not the first merged"
        );
        assert_eq!(
            serde_json::to_value(&s).unwrap()["errors_by_kind"],
            serde_json::json!({"connect": 2, "status 503": 1})
        );
    }

    #[test]
    fn a_tls_error_anywhere_in_the_chain_is_filed_as_tls() {
        let alert = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired),
        );
        let f = Err::<(), _>(alert).context_kind("read response", "read").err().unwrap();
        assert_eq!(f.kind, "tls");
        assert_eq!(f.detail, "read response: received fatal alert: CertificateRequired");
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(Err::<(), _>(reset).kind("read").err().unwrap().kind, "read");
    }
}
