//! TCP mode: after the handshake and the authorization check, bytes flow
//! both ways between the client and the upstream.
use crate::audit::{self, AuditEvent};
use crate::config::Upstream;
use crate::policy::Decision;
use crate::server::{ConnCtx, Shared};
use http::Method;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

pub async fn serve(mut tls: Box<crate::http::Tls>, ctx: Arc<ConnCtx>, shared: Arc<Shared>, started: Instant) {
    let config = &ctx.runtime.config;
    let (route, allowed, reason) = match config.routes.decide(&Method::GET, "/", ctx.identity.as_ref()) {
        Decision::Allow(r) => {
            r.allowed.increment(1);
            (Some(r.name.clone()), true, "allowed".to_string())
        }
        Decision::NotAllowed(r) => {
            r.denied.increment(1);
            (Some(r.name.clone()), false, "identity not on the allow list".to_string())
        }
        Decision::NoRoute => (None, false, "no route".to_string()),
    };
    let Upstream::Tcp { address } = &config.upstream else { return };
    let mut outcome = (allowed, reason);
    let upstream = if allowed {
        match tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(address.as_str())).await {
            Ok(Ok(s)) => Some(s),
            Ok(Err(e)) => {
                metrics::counter!("ambos_proxy_upstream_errors_total").increment(1);
                outcome = (false, format!("upstream {address}: {e}"));
                None
            }
            Err(_) => {
                metrics::counter!("ambos_proxy_upstream_errors_total").increment(1);
                outcome = (false, format!("upstream {address}: connect timed out"));
                None
            }
        }
    } else {
        None
    };
    shared.audit.record(&AuditEvent {
        time: audit::now(),
        event: "connection",
        peer: ctx.peer,
        identity: ctx.audit_identity(),
        route: route.as_deref(),
        method: None,
        path: None,
        decision: if outcome.0 { "allow" } else { "deny" },
        reason: &outcome.1,
        status: None,
        latency_ms: started.elapsed().as_secs_f64() * 1000.0,
    });
    let Some(mut upstream) = upstream else {
        // Denied: close with a TLS close_notify so the client sees a clean end.
        let _ = tokio::io::AsyncWriteExt::shutdown(&mut tls).await;
        return;
    };
    let _ = upstream.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
}
