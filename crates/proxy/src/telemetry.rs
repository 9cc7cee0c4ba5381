//! Metrics: the Prometheus recorder (installed once per process, by
//! `run`), the description of every metric, the `/metrics` and `/healthz`
//! page, and [`GaugeGuard`]. Counters a connection or route uses are
//! resolved when `Runtime::build` or `conn::Shared::new` runs, never per request.
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder (once per process) and describes the metrics.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            let _ = metrics::set_global_recorder(recorder);
            metrics::describe_counter!("ambos_proxy_handshakes_total", "TLS handshakes by outcome and failure reason");
            metrics::describe_counter!(
                "ambos_proxy_requests_total",
                "Requests (HTTP) or connections (TCP) by route and decision"
            );
            metrics::describe_counter!("ambos_proxy_upstream_errors_total", "Failures reaching the upstream");
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
            handle
        })
        .clone()
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
