//! Prometheus metrics and the `/metrics` + `/healthz` listener.
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::net::SocketAddr;
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

/// Serves `/metrics` and `/healthz` until the process exits.
pub async fn serve(addr: SocketAddr, handle: PrometheusHandle) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let handle = handle.clone();
            tokio::spawn(async move {
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
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(())
}
