//! TCP mode: the connection is authorized once (as `GET /`), audited, and
//! then bytes flow both ways between the client and the upstream until
//! either side closes or `idle_timeout` passes without any.
use crate::audit::{self, AuditEvent};
use crate::authorize::Decision;
use crate::config::Upstream;
use crate::conn::{idle_check_period, ConnCtx, Shared, Tls};
use http::Method;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

pub async fn serve(mut tls: Box<Tls>, ctx: Arc<ConnCtx>, shared: Arc<Shared>, started: Instant) {
    let config = &ctx.runtime.config;
    let (route, allowed, reason) = match ctx.runtime.routes.decide(&Method::GET, "/", ctx.identity.as_ref()) {
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
        let connect_timeout = config.limits.upstream_connect_timeout;
        match tokio::time::timeout(connect_timeout, TcpStream::connect(address.as_str())).await {
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
    // Bytes either way count as activity; `idle_timeout` without any closes both sides.
    let active = AtomicBool::new(false);
    let mut client = Watched { inner: &mut *tls, active: &active };
    let mut server = Watched { inner: &mut upstream, active: &active };
    let copy = tokio::io::copy_bidirectional(&mut client, &mut server);
    if until_idle(copy, &active, config.limits.idle_timeout).await.is_none() {
        metrics::counter!("ambos_proxy_timeouts_total", "kind" => "idle").increment(1);
        tracing::debug!(peer = %ctx.peer, "TCP connection idle for {:?}: closed", config.limits.idle_timeout);
    }
}

/// Runs `work` until it ends (`Some`) or `active` has stayed false for
/// `idle` (`None`). Whoever does the work sets `active` on progress.
pub(crate) async fn until_idle<F: std::future::Future>(
    work: F,
    active: &AtomicBool,
    idle: Duration,
) -> Option<F::Output> {
    let period = idle_check_period(idle);
    let mut work = std::pin::pin!(work);
    let mut quiet_since = tokio::time::Instant::now();
    let mut tick = std::pin::pin!(tokio::time::sleep(period));
    loop {
        tokio::select! {
            biased;
            out = work.as_mut() => return Some(out),
            _ = tick.as_mut() => {
                let now = tokio::time::Instant::now();
                if active.swap(false, Relaxed) {
                    quiet_since = now;
                } else if now.duration_since(quiet_since) >= idle {
                    return None;
                }
                tick.as_mut().reset(now + period);
            }
        }
    }
}

/// A stream that flags any bytes read from it as activity.
struct Watched<'a, T> {
    inner: &'a mut T,
    active: &'a AtomicBool,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<'_, T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut *self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.active.store(true, Relaxed);
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<'_, T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut *self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.inner).poll_shutdown(cx)
    }
}
