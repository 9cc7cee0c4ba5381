//! TCP mode: the connection is authorized once (as `GET /`), connected to
//! the upstream (plain or TLS), audited, and then bytes flow both ways
//! between the client and the upstream until either side closes or
//! `idle_timeout` passes without any.
use crate::audit::{self, AuditEvent};
use crate::authorize::Decision;
use crate::config::Upstream;
use crate::conn::{idle_check_period, ConnCtx, Shared, Tls};
use crate::dial::{connect_tcp, handshake_tls};
use crate::forward_error::{Cause, ForwardError};
use crate::telemetry::UpstreamErrorKind;
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
        Decision::NoRoute => {
            shared.requests.no_route.increment(1);
            (None, false, "no route".to_string())
        }
    };
    let Upstream::Tcp { address, .. } = &config.upstream else { return };
    let mut outcome = (allowed, reason);
    let upstream = if allowed {
        match connect(&tls, &ctx, address.as_str()).await {
            Ok(s) => Some(s),
            Err(e) => {
                if let Cause::Upstream(kind) = e.cause {
                    shared.requests.upstream_error(kind);
                }
                tracing::warn!(peer = %ctx.peer, "upstream error: {e}");
                outcome = (false, e.why);
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
    let idle = config.limits.idle_timeout;
    match upstream {
        Some(UpstreamStream::Plain(mut s)) => pipe(&mut tls, &mut s, idle, &ctx).await,
        Some(UpstreamStream::Tls(mut s)) => pipe(&mut tls, &mut *s, idle, &ctx).await,
        None => {
            // Denied: close with a TLS close_notify so the client sees a clean end.
            let _ = tokio::io::AsyncWriteExt::shutdown(&mut tls).await;
        }
    }
}

enum UpstreamStream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// Connects to the upstream: TCP, the PROXY protocol header if configured
/// (before TLS, as HAProxy's `send-proxy-v2 ssl`), then TLS with
/// `[upstream.tls]`. The error is the audit reason.
async fn connect(tls: &Tls, ctx: &ConnCtx, address: &str) -> Result<UpstreamStream, ForwardError> {
    let config = &ctx.runtime.config;
    let timeout = config.limits.upstream_connect_timeout;
    let mut upstream = connect_tcp(address, timeout).await?;
    if config.proxy_protocol {
        let header = tls.get_ref().0.local_addr().map_err(|e| e.to_string()).and_then(|local| {
            proxy_v2_header(ctx.peer, local, ctx.identity.as_ref(), tls.get_ref().1.protocol_version())
        });
        let sent = match header {
            Ok(h) => tokio::io::AsyncWriteExt::write_all(&mut upstream, &h).await.map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        sent.map_err(|e| {
            ForwardError::upstream(
                UpstreamErrorKind::Other,
                format!("upstream {address}: PROXY protocol header not sent: {e}"),
            )
        })?;
    }
    let Some(t) = &ctx.runtime.upstream_tls else { return Ok(UpstreamStream::Plain(upstream)) };
    Ok(UpstreamStream::Tls(Box::new(handshake_tls(address, &t.connector, t, upstream, timeout).await?)))
}

/// Bytes either way until either side closes; `idle` without any closes both.
async fn pipe<S: AsyncRead + AsyncWrite + Unpin>(tls: &mut Tls, upstream: &mut S, idle: Duration, ctx: &ConnCtx) {
    if !pipe_until_idle(tls, upstream, idle).await {
        metrics::counter!("ambos_proxy_timeouts_total", "kind" => "idle").increment(1);
        tracing::debug!(peer = %ctx.peer, "TCP connection idle for {idle:?}: closed");
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

/// Copies both ways between `a` and `b` until either side closes, or
/// `idle` passes without a byte either way (`false`).
pub(crate) async fn pipe_until_idle<A, B>(a: &mut A, b: &mut B, idle: Duration) -> bool
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let active = AtomicBool::new(false);
    let mut a = Watched { inner: a, active: &active };
    let mut b = Watched { inner: b, active: &active };
    until_idle(tokio::io::copy_bidirectional(&mut a, &mut b), &active, idle).await.is_some()
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

/// Custom TLV type (the spec's 0xE0-0xEF range) carrying the client's
/// SPIFFE ID, or its first URI SAN.
pub const PP2_TYPE_AMBOS_URI: u8 = 0xE0;

/// A PROXY protocol v2 header: the client's address, the address it
/// connected to, and PP2_TYPE_SSL (client sent a certificate that was
/// verified: `verify` 0; TLS version and the leaf's CN) plus the identity's
/// URI in [`PP2_TYPE_AMBOS_URI`]. An IPv4 client on an IPv6 listener is
/// given as IPv6 (families must match).
pub fn proxy_v2_header(
    client: std::net::SocketAddr,
    local: std::net::SocketAddr,
    identity: Option<&ambos_tls::Identity>,
    version: Option<rustls::ProtocolVersion>,
) -> Result<Vec<u8>, String> {
    use ppp::v2::{Builder, Command, Protocol, Type, Version};
    use std::net::SocketAddr;
    let v6 = |a: SocketAddr| match a {
        SocketAddr::V4(v4) => SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port()),
        v6 => v6,
    };
    let (src, dst) = if client.is_ipv4() == local.is_ipv4() { (client, local) } else { (v6(client), v6(local)) };
    let mut b = Builder::with_addresses(Version::Two | Command::Proxy, Protocol::Stream, (src, dst));
    if let Some(id) = identity {
        // PP2_TYPE_SSL: client flags (SSL | CERT_CONN), verify (0: verified), then sub-TLVs.
        let mut ssl = vec![0x01 | 0x02, 0, 0, 0, 0];
        let mut sub = |kind: Type, value: &[u8]| {
            ssl.push(kind as u8);
            ssl.extend_from_slice(&(value.len() as u16).to_be_bytes());
            ssl.extend_from_slice(value);
        };
        let tls = match version {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
            _ => "TLSv1.2",
        };
        sub(Type::SSLVersion, tls.as_bytes());
        if let Some(cn) = &id.cn {
            sub(Type::SSLCommonName, cn.as_bytes());
        }
        b = b.write_tlv(Type::SSL, &ssl).map_err(|e| e.to_string())?;
        if let Some(uri) = id.spiffe.as_ref().or(id.uris.first()) {
            b = b.write_tlv(PP2_TYPE_AMBOS_URI, uri.as_bytes()).map_err(|e| e.to_string())?;
        }
    }
    b.build().map_err(|e| e.to_string())
}

#[cfg(test)]
mod proxy_protocol_tests {
    use super::*;

    #[test]
    fn the_header_carries_addresses_and_the_identity_and_parses_back() {
        let id = ambos_tls::Identity {
            cn: Some("web".into()),
            spiffe: Some("spiffe://acme.test/web".into()),
            ..Default::default()
        };
        let h = proxy_v2_header(
            "192.0.2.7:40000".parse().unwrap(),
            "198.51.100.1:8443".parse().unwrap(),
            Some(&id),
            Some(rustls::ProtocolVersion::TLSv1_3),
        )
        .unwrap();
        let parsed = ppp::v2::Header::try_from(h.as_slice()).unwrap();
        assert_eq!(
            parsed.addresses,
            ppp::v2::Addresses::from((
                "192.0.2.7:40000".parse::<std::net::SocketAddr>().unwrap(),
                "198.51.100.1:8443".parse::<std::net::SocketAddr>().unwrap()
            ))
        );
        let tlvs: Vec<_> = parsed.tlvs().map(|t| t.unwrap()).collect();
        assert_eq!(tlvs.len(), 2, "{tlvs:?}");
        assert_eq!(tlvs[0].kind, 0x20);
        assert!(tlvs[0].value.windows(3).any(|w| w == b"web"), "{tlvs:?}");
        assert_eq!((tlvs[1].kind, &tlvs[1].value[..]), (PP2_TYPE_AMBOS_URI, &b"spiffe://acme.test/web"[..]));
        // An IPv4 client on an IPv6 listener: both as IPv6.
        let h = proxy_v2_header("192.0.2.7:1".parse().unwrap(), "[::1]:2".parse().unwrap(), None, None).unwrap();
        assert!(ppp::v2::Header::try_from(h.as_slice()).is_ok());
    }
}
