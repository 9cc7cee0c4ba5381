//! HTTP mode: HTTP/1.1 and HTTP/2 (ALPN) from clients, authorization per
//! request, identity headers, and forwarding over pooled keep-alive
//! HTTP/1.1 connections to the upstream.
use crate::audit::{self, AuditEvent};
use crate::config::Upstream;
use crate::headers::rewrite_request_headers;
use crate::policy::Decision;
use crate::server::{ConnCtx, Shared};
use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode, Uri, Version};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub type ProxyBody = Either<Incoming, Full<Bytes>>;

/// Pooled keep-alive HTTP/1.1 client to the upstream.
pub struct UpstreamClient {
    client: Client<HttpConnector, Incoming>,
}

impl UpstreamClient {
    pub fn new() -> UpstreamClient {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(10)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(1024)
            .timer(TokioTimer::new())
            .build(connector);
        UpstreamClient { client }
    }
}

impl Default for UpstreamClient {
    fn default() -> Self {
        Self::new()
    }
}

pub async fn serve(
    tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    ctx: Arc<ConnCtx>,
    shared: Arc<Shared>,
    watcher: hyper_util::server::graceful::Watcher,
) {
    let idle = ctx.runtime.config.limits.idle_timeout;
    let service = hyper::service::service_fn(move |req| {
        let ctx = ctx.clone();
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(handle(req, &ctx, &shared).await) }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    // Between keep-alive requests the next header must arrive within the idle timeout.
    builder.http1().timer(TokioTimer::new()).header_read_timeout(idle);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(idle / 2))
        .keep_alive_timeout(Duration::from_secs(20));
    let conn = builder.serve_connection(TokioIo::new(tls), service);
    let _ = watcher.watch(conn.into_owned()).await;
}

/// A path that upstreams might read differently from our glob (dot
/// segments, encoded separators, empty segments) is refused outright.
fn ambiguous(path: &str) -> bool {
    let lower = path.as_bytes();
    path.contains("//")
        || path.contains('\\')
        || path.split('/').any(|s| s == "." || s == "..")
        || lower.windows(3).any(|w| {
            w[0] == b'%' && matches!((w[1], w[2].to_ascii_lowercase()), (b'2', b'f') | (b'5', b'c') | (b'2', b'e'))
        })
}

fn plain(status: StatusCode, text: &'static str) -> Response<ProxyBody> {
    let mut r = Response::new(Either::Right(Full::new(Bytes::from_static(text.as_bytes()))));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

async fn handle(req: Request<Incoming>, ctx: &ConnCtx, shared: &Shared) -> Response<ProxyBody> {
    let started = Instant::now();
    let config = &ctx.runtime.config;
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let (decision, route) = if ambiguous(&path) {
        (Err("ambiguous path (dot segments or encoded separators)"), None)
    } else {
        match config.routes.decide(&method, &path, ctx.identity.as_ref()) {
            Decision::Allow(r) => {
                r.allowed.increment(1);
                (Ok(()), Some(r))
            }
            Decision::NotAllowed(r) => {
                r.denied.increment(1);
                (
                    Err(if ctx.identity.is_some() {
                        "identity not on the route's allow list"
                    } else {
                        "no client certificate"
                    }),
                    Some(r),
                )
            }
            Decision::NoRoute => (Err("no route matches"), None),
        }
    };
    let route_name = route.map(|r| r.name.clone());
    let (response, reason) = match decision {
        Err(why) => {
            let status = if why.starts_with("ambiguous") { StatusCode::BAD_REQUEST } else { StatusCode::FORBIDDEN };
            let body = if status == StatusCode::BAD_REQUEST { "bad request: ambiguous path\n" } else { "forbidden\n" };
            (plain(status, body), why.to_string())
        }
        Ok(()) => match forward(req, ctx, shared).await {
            Ok(resp) => (resp, "allowed".to_string()),
            Err(why) => {
                metrics::counter!("ambos_proxy_upstream_errors_total").increment(1);
                tracing::warn!(peer = %ctx.peer, "upstream error: {why}");
                (plain(StatusCode::BAD_GATEWAY, "bad gateway: upstream unavailable\n"), why)
            }
        },
    };
    shared.audit.record(&AuditEvent {
        time: audit::now(),
        event: "request",
        peer: ctx.peer,
        identity: ctx.audit_identity(),
        route: route_name.as_deref(),
        method: Some(method.as_str()),
        path: Some(&path),
        decision: if reason == "allowed" { "allow" } else { "deny" },
        reason: &reason,
        status: Some(response.status().as_u16()),
        latency_ms: started.elapsed().as_secs_f64() * 1000.0,
    });
    response
}

async fn forward(req: Request<Incoming>, ctx: &ConnCtx, shared: &Shared) -> Result<Response<ProxyBody>, String> {
    let Upstream::Http { authority } = &ctx.runtime.config.upstream else {
        return Err("no HTTP upstream".into());
    };
    let (mut parts, body) = req.into_parts();
    if !parts.headers.contains_key(header::HOST) {
        // HTTP/2 carries the host in :authority; HTTP/1.1 upstreams need Host.
        if let Some(a) = parts.uri.authority() {
            if let Ok(v) = HeaderValue::from_str(a.as_str()) {
                parts.headers.insert(header::HOST, v);
            }
        }
    }
    let path_and_query = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    parts.uri = Uri::builder()
        .scheme("http")
        .authority(authority.clone())
        .path_and_query(path_and_query)
        .build()
        .map_err(|e| format!("bad request URI: {e}"))?;
    parts.version = Version::HTTP_11;
    rewrite_request_headers(&mut parts.headers, ctx.xfcc.as_ref());
    let resp = shared
        .upstream
        .client
        .request(Request::from_parts(parts, body))
        .await
        .map_err(|e| format!("upstream {authority}: {}", error_chain(&e)))?;
    let (mut parts, body) = resp.into_parts();
    for h in [header::CONNECTION, HeaderName::from_static("keep-alive"), header::UPGRADE, header::TRAILER] {
        parts.headers.remove(h);
    }
    Ok(Response::from_parts(parts, Either::Left(body)))
}

use http::HeaderName;

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::ambiguous;

    #[test]
    fn paths_that_could_bypass_routes_are_ambiguous() {
        for p in ["/a/../admin", "/./admin", "//admin", "/a%2fb", "/a%2Fb", "/%2e%2e/x", "/a\\b"] {
            assert!(ambiguous(p), "{p}");
        }
        for p in ["/", "/payments/charge", "/a.b/c..d", "/search%20x"] {
            assert!(!ambiguous(p), "{p}");
        }
    }
}
