//! Metrics: the Prometheus recorder (installed once per process, by
//! `run`), the description of every metric, the `/metrics` and `/healthz`
//! page, and [`GaugeGuard`]. Counters a connection or route uses are
//! resolved when `Runtime::build` or `conn::Shared::new` runs, never per request.
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Duration;

/// Request latency buckets, in seconds: from a cached local answer (1 ms)
/// to the default upstream response timeout's range.
const DURATION_BUCKETS: [f64; 13] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder (once per process) and describes the metrics.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new().set_buckets_for_metric(
                Matcher::Full("ambos_proxy_request_duration_seconds".into()),
                &DURATION_BUCKETS,
            );
            // Non-empty constant buckets: this cannot fail.
            let recorder = match builder {
                Ok(b) => b.build_recorder(),
                Err(_) => PrometheusBuilder::new().build_recorder(),
            };
            let handle = recorder.handle();
            let _ = metrics::set_global_recorder(recorder);
            // Histogram samples wait in a queue until drained: drain them even if no one scrapes.
            let upkeep = handle.clone();
            let _ = std::thread::Builder::new().name("metrics-upkeep".into()).spawn(move || loop {
                std::thread::sleep(Duration::from_secs(5));
                upkeep.run_upkeep();
            });
            metrics::describe_counter!("ambos_proxy_handshakes_total", "TLS handshakes by outcome and failure reason");
            metrics::describe_counter!(
                "ambos_proxy_requests_total",
                "Requests (HTTP) or connections (TCP) by route and decision"
            );
            metrics::describe_counter!(
                "ambos_proxy_upstream_errors_total",
                "Failures reaching the upstream, by kind: connect_refused, timeout, tls, protocol, reset, other"
            );
            metrics::describe_counter!("ambos_proxy_responses_total", "HTTP answers sent, by status class");
            metrics::describe_histogram!(
                "ambos_proxy_request_duration_seconds",
                "Time from a request's head to its response's head (proxy refusals included)"
            );
            metrics::describe_gauge!(
                "ambos_proxy_certificate_expiry_seconds",
                "Seconds until the serving certificate (cert=\"serving\") or a client CA certificate expires"
            );
            metrics::describe_gauge!("ambos_proxy_crl_age_seconds", "Seconds since a loaded CRL's thisUpdate");
            metrics::describe_counter!(
                "ambos_proxy_headers_dropped_total",
                "Request headers removed before forwarding, by reason (underscore: a name with _)"
            );
            metrics::describe_gauge!("ambos_proxy_active_connections", "Open client connections");
            metrics::describe_gauge!(
                "ambos_proxy_parked_connections",
                "Idle HTTP/1.1 keep-alive connections holding no HTTP buffers"
            );
            metrics::describe_counter!("ambos_proxy_config_reloads_total", "Configuration reloads by result");
            metrics::describe_gauge!(
                "ambos_proxy_certificate_expiry_timestamp_seconds",
                "notAfter of the serving certificate"
            );
            metrics::describe_counter!(
                "ambos_proxy_connections_rejected_total",
                "New connections refused (closed at once), by reason: max_connections, source_connections"
            );
            metrics::describe_counter!(
                "ambos_proxy_connections_evicted_total",
                "Connections closed during their TLS handshake to make room, by reason: max_connections, \
                 source_connections, source_handshakes"
            );
            register_known();
            handle
        })
        .clone()
}

/// Registers at 0 the counters whose label sets are known in advance, so
/// a scrape right after start shows them (`rate()` and `absent()` work).
fn register_known() {
    for reason in ambos_tls::HandshakeFailure::LABELS {
        metrics::counter!("ambos_proxy_handshakes_total", "outcome" => "failed", "reason" => reason).increment(0);
    }
    for kind in ["idle", "body", "upstream", "upstream_queue"] {
        metrics::counter!("ambos_proxy_timeouts_total", "kind" => kind).increment(0);
    }
    for result in ["ok", "failed"] {
        metrics::counter!("ambos_proxy_config_reloads_total", "result" => result).increment(0);
    }
    for shed in crate::admission::Shed::ALL {
        metrics::counter!("ambos_proxy_connections_rejected_total", "reason" => shed.label()).increment(0);
        metrics::counter!("ambos_proxy_connections_evicted_total", "reason" => shed.label()).increment(0);
    }
    for refusal in crate::authorize::token::TokenRefusal::ALL {
        metrics::counter!("ambos_proxy_token_refusals_total", "reason" => refusal.label()).increment(0);
    }
    metrics::counter!("ambos_proxy_headers_dropped_total", "reason" => "underscore").increment(0);
    metrics::counter!("ambos_proxy_connections_closed_total", "reason" => "revoked").increment(0);
    for name in [
        "ambos_proxy_crl_pull_failures_total",
        "ambos_proxy_jwks_refresh_failures_total",
        "ambos_proxy_audit_rotations_total",
        "ambos_proxy_audit_dropped_total",
    ] {
        metrics::counter!(name).increment(0);
    }
}

/// Why forwarding to the upstream failed, as `ambos_proxy_upstream_errors_total`'s `kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamErrorKind {
    ConnectRefused,
    Timeout,
    Tls,
    Protocol,
    Reset,
    Other,
}

impl UpstreamErrorKind {
    pub const ALL: [UpstreamErrorKind; 6] = [
        UpstreamErrorKind::ConnectRefused,
        UpstreamErrorKind::Timeout,
        UpstreamErrorKind::Tls,
        UpstreamErrorKind::Protocol,
        UpstreamErrorKind::Reset,
        UpstreamErrorKind::Other,
    ];

    pub fn label(self) -> &'static str {
        match self {
            UpstreamErrorKind::ConnectRefused => "connect_refused",
            UpstreamErrorKind::Timeout => "timeout",
            UpstreamErrorKind::Tls => "tls",
            UpstreamErrorKind::Protocol => "protocol",
            UpstreamErrorKind::Reset => "reset",
            UpstreamErrorKind::Other => "other",
        }
    }
}

/// The handles each HTTP request or TCP connection updates, resolved once
/// (in `conn::Shared::new`): the request path does no metric lookup.
pub struct RequestMetrics {
    /// `requests_total{route="",decision="refused"}`: refused before routing.
    pub refused: metrics::Counter,
    /// `requests_total{route="",decision="deny"}`: no route matches.
    pub no_route: metrics::Counter,
    /// `responses_total{status}` by status class, 1xx to 5xx.
    responses: [metrics::Counter; 5],
    duration: metrics::Histogram,
    upstream_errors: [metrics::Counter; 6],
}

impl Default for RequestMetrics {
    fn default() -> Self {
        RequestMetrics {
            refused: metrics::counter!("ambos_proxy_requests_total", "route" => "", "decision" => "refused"),
            no_route: metrics::counter!("ambos_proxy_requests_total", "route" => "", "decision" => "deny"),
            responses: ["1xx", "2xx", "3xx", "4xx", "5xx"]
                .map(|class| metrics::counter!("ambos_proxy_responses_total", "status" => class)),
            duration: metrics::histogram!("ambos_proxy_request_duration_seconds"),
            upstream_errors: UpstreamErrorKind::ALL
                .map(|k| metrics::counter!("ambos_proxy_upstream_errors_total", "kind" => k.label())),
        }
    }
}

impl RequestMetrics {
    /// An HTTP answer sent (by the proxy or the upstream) `took` after its request's head.
    pub fn answered(&self, status: http::StatusCode, took: Option<Duration>) {
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        self.responses[class].increment(1);
        if let Some(t) = took {
            self.duration.record(t.as_secs_f64());
        }
    }

    pub fn upstream_error(&self, kind: UpstreamErrorKind) {
        self.upstream_errors[kind as usize].increment(1);
    }
}

/// Serves `/metrics` and `/healthz` on one connection of the metrics
/// listener (whose accept loop is `listener`'s).
pub async fn serve_connection(stream: tokio::net::TcpStream, handle: PrometheusHandle) {
    let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
        let handle = handle.clone();
        async move {
            let resp = match req.uri().path() {
                "/metrics" => Response::builder()
                    .header("content-type", "text/plain; version=0.0.4")
                    .body(Full::new(Bytes::from(handle.render()))),
                "/healthz" => Response::builder().body(Full::new(Bytes::from_static(b"ok\n"))),
                _ => Response::builder().status(404).body(Full::new(Bytes::from_static(b"not found\n"))),
            };
            Ok::<_, std::convert::Infallible>(resp.expect("static response"))
        }
    });
    // A client that goes away mid-request is no error of ours.
    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(stream), svc)
        .await;
}

/// Counts something in a gauge for as long as it lives, however the task
/// ends.
pub struct GaugeGuard(metrics::Gauge);

impl GaugeGuard {
    pub fn new(gauge: &metrics::Gauge) -> GaugeGuard {
        gauge.increment(1.0);
        GaugeGuard(gauge.clone())
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_label_sets_are_exported_at_zero_from_the_start() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            register_known();
            let _held = RequestMetrics::default();
        });
        let text = handle.render();
        for line in [
            "ambos_proxy_requests_total{route=\"\",decision=\"refused\"} 0",
            "ambos_proxy_requests_total{route=\"\",decision=\"deny\"} 0",
            "ambos_proxy_responses_total{status=\"5xx\"} 0",
            "ambos_proxy_upstream_errors_total{kind=\"connect_refused\"} 0",
            "ambos_proxy_handshakes_total{outcome=\"failed\",reason=\"unknown_ca\"} 0",
            "ambos_proxy_timeouts_total{kind=\"upstream\"} 0",
            "ambos_proxy_config_reloads_total{result=\"failed\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}:\n{text}");
        }
    }
}
