//! WebSocket through the proxy. An HTTP/1.1 request with `Connection:
//! upgrade` and `Upgrade: websocket` is authorized like any request and
//! must be on a route with `websocket = true`; it then goes to the
//! upstream on a connection of its own (HTTP/1.1, TLS as configured).
//! When the upstream answers 101, so does the proxy, and once hyper hands
//! the client's stream back (`serve_h1`) the two streams are piped until
//! either side closes or `idle_timeout` passes without a byte; like every
//! connection, it is closed when a newly loaded CRL revokes the client.
//! An upgrade to anything else is refused.
use super::upstream::{connect_io, Timeouts, UPSTREAM_TIMEOUT};
use super::ProxyBody;
use crate::headers::strip_response_headers;
use crate::upstream_tls::UpstreamTls;
use bytes::Bytes;
use http::uri::Authority;
use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Either, Empty, Full, Limited};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use std::time::Duration;

/// What a request asks to switch to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpgradeRequest {
    None,
    WebSocket,
    /// `h2c`, `TLS/1.2` or anything else: refused.
    Other,
}

/// HTTP/1.1 only: an upgrade needs `upgrade` among the `Connection`
/// tokens (RFC 9110 7.8); an `Upgrade` header alone is hop-by-hop noise.
pub fn requested<B>(req: &Request<B>) -> UpgradeRequest {
    if req.version() != Version::HTTP_11 || !has_token(req.headers(), header::CONNECTION, b"upgrade") {
        return UpgradeRequest::None;
    }
    match req.headers().get(header::UPGRADE) {
        None => UpgradeRequest::None,
        Some(v) if v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"websocket") => UpgradeRequest::WebSocket,
        Some(_) => UpgradeRequest::Other,
    }
}

fn has_token(h: &HeaderMap, name: header::HeaderName, token: &[u8]) -> bool {
    h.get_all(name)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// A refused upgrade's body is passed on up to this size.
const REFUSAL_BODY_MAX: usize = 64 * 1024;

/// Sends the upgrade request (`parts`, already rewritten for the upstream)
/// on a connection of its own. On 101: the client's 101 and the upstream's
/// stream; otherwise the upstream's answer as it is (a refused upgrade).
pub async fn forward(
    mut parts: http::request::Parts,
    authority: &Authority,
    tls: Option<&UpstreamTls>,
    timeouts: &Timeouts,
) -> Result<(Response<ProxyBody>, Option<Upgraded>), String> {
    let io = connect_io(authority, tls.map(|t| (&t.connector, t)), timeouts.connect).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(io))
        .await
        .map_err(|e| format!("upstream {authority}: {e}"))?;
    // Ends by handing the stream over to `hyper::upgrade::on`, or with the connection.
    tokio::spawn(conn.with_upgrades());
    parts.version = Version::HTTP_11;
    parts.headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    parts.headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    let wait = timeouts.response;
    let no_answer = || format!("{UPSTREAM_TIMEOUT}: {authority}: no answer to the WebSocket upgrade within {wait:?}");
    let mut resp = match tokio::time::timeout(wait, sender.send_request(Request::from_parts(parts, Empty::new()))).await
    {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return Err(format!("upstream {authority}: {e}")),
        Err(_) => return Err(no_answer()),
    };
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        let (mut parts, body) = resp.into_parts();
        strip_response_headers(&mut parts.headers);
        parts.headers.remove(header::TRANSFER_ENCODING);
        parts.headers.remove(header::CONTENT_LENGTH);
        let body = match tokio::time::timeout(wait, Limited::new(body, REFUSAL_BODY_MAX).collect()).await {
            Ok(Ok(b)) => b.to_bytes(),
            _ => Bytes::new(),
        };
        return Ok((Response::from_parts(parts, Either::Right(Either::Right(Full::new(body)))), None));
    }
    let switched_to = resp.headers().get(header::UPGRADE).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    if !switched_to.as_deref().is_some_and(|p| p.trim().eq_ignore_ascii_case("websocket")) {
        return Err(format!("upstream {authority}: answered 101 switching to {switched_to:?}, not websocket"));
    }
    let upgraded = match tokio::time::timeout(wait, hyper::upgrade::on(&mut resp)).await {
        Ok(Ok(u)) => u,
        Ok(Err(e)) => return Err(format!("upstream {authority}: WebSocket upgrade failed: {e}")),
        Err(_) => return Err(no_answer()),
    };
    let (mut parts, _) = resp.into_parts();
    strip_response_headers(&mut parts.headers);
    parts.headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    parts.headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    Ok((Response::from_parts(parts, Either::Right(Either::Right(Full::new(Bytes::new())))), Some(upgraded)))
}

/// Pipes the client's stream, `read_ahead` (what it sent past the request
/// head) first, and the upstream's until either side closes or `idle`
/// passes without a byte either way.
pub async fn pipe(client: &mut crate::conn::Tls, read_ahead: Bytes, upstream: Upgraded, idle: Duration) -> bool {
    let mut upstream = TokioIo::new(upstream);
    if !read_ahead.is_empty() && tokio::io::AsyncWriteExt::write_all(&mut upstream, &read_ahead).await.is_err() {
        return true;
    }
    crate::tcp::pipe(client, &mut upstream, idle).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(version: Version, headers: &[(&str, &str)]) -> Request<()> {
        let mut r = Request::builder().version(version).uri("/chat");
        for (n, v) in headers {
            r = r.header(*n, *v);
        }
        r.body(()).unwrap()
    }

    #[test]
    fn an_upgrade_needs_the_connection_token_and_only_websocket_is_one() {
        let ws = [("connection", "keep-alive, Upgrade"), ("upgrade", "WebSocket")];
        assert_eq!(requested(&req(Version::HTTP_11, &ws)), UpgradeRequest::WebSocket);
        assert_eq!(requested(&req(Version::HTTP_11, &[("upgrade", "websocket")])), UpgradeRequest::None);
        assert_eq!(requested(&req(Version::HTTP_2, &ws)), UpgradeRequest::None);
        let h2c = [("connection", "upgrade"), ("upgrade", "h2c")];
        assert_eq!(requested(&req(Version::HTTP_11, &h2c)), UpgradeRequest::Other);
        assert_eq!(requested(&req(Version::HTTP_11, &[("connection", "upgrade")])), UpgradeRequest::None);
    }
}
