//! Connecting to the upstream, for HTTP and TCP mode alike: TCP (no
//! Nagle, TCP keepalive) and TLS with the `[upstream.tls]` connector and
//! its `expect` check, each within the connect timeout; a failure is a
//! [`ForwardError`] of the upstream's kind.
use crate::forward_error::{kind_of_io, ForwardError};
use crate::telemetry::UpstreamErrorKind;
use std::time::Duration;
use tokio::net::TcpStream;

/// How an error starts when the upstream did not answer within
/// `upstream_timeout` (or connect within `upstream_connect_timeout`): 504.
pub const UPSTREAM_TIMEOUT: &str = "upstream timed out";

/// The TCP connection to the upstream at `address` (HTTP and TCP mode),
/// within `timeout`.
pub async fn connect_tcp(address: &str, timeout: Duration) -> Result<TcpStream, ForwardError> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(address)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(ForwardError::upstream(kind_of_io(&e), format!("upstream {address}: {e}"))),
        Err(_) => {
            return Err(ForwardError::upstream(
                UpstreamErrorKind::Timeout,
                format!("{UPSTREAM_TIMEOUT}: {address}: no connection within {timeout:?}"),
            ))
        }
    };
    tune(&stream);
    Ok(stream)
}

/// Socket options for a connection either way, upstream or client: no
/// Nagle, and TCP keepalive, so that a peer whose host is gone (crash,
/// network) is found within about 90 s of silence, not at the next request
/// that hangs on it. It costs nothing per request, unlike HTTP/2 PINGs.
pub fn tune(stream: &TcpStream) {
    let _ = stream.set_nodelay(true);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(60))
        .with_interval(Duration::from_secs(10))
        .with_retries(3);
    let _ = socket2::SockRef::from(stream).set_tcp_keepalive(&keepalive);
}

/// TLS to the upstream at `address` over `stream` with `connector` and
/// `t`'s `expect` check, within `timeout`.
pub async fn handshake_tls(
    address: &str,
    connector: &tokio_rustls::TlsConnector,
    t: &crate::upstream_tls::UpstreamTls,
    stream: TcpStream,
    timeout: Duration,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, ForwardError> {
    match tokio::time::timeout(timeout, t.handshake(connector, stream)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(why)) => Err(ForwardError::upstream(UpstreamErrorKind::Tls, format!("upstream {address}: {why}"))),
        Err(_) => Err(ForwardError::upstream(
            UpstreamErrorKind::Timeout,
            format!("{UPSTREAM_TIMEOUT}: {address}: no TLS handshake within {timeout:?}"),
        )),
    }
}
