//! WebSocket through the proxy. An HTTP/1.1 request with `Connection:
//! upgrade` and `Upgrade: websocket` is authorized like any request and
//! must be on a route with `websocket = true`; it then goes to the
//! upstream on a connection of its own (HTTP/1.1, TLS as configured).
//! When the upstream answers 101, so does the proxy, and once hyper hands
//! the client's stream back (`serve_h1`) the two streams are piped until
//! either side closes or `idle_timeout` passes without a byte; like every
//! connection, it is closed when a newly loaded CRL revokes the client.
//! An HTTP/2 client asks with RFC 8441's extended CONNECT (`:protocol
//! websocket`, enabled in our SETTINGS): the upstream still gets an
//! HTTP/1.1 upgrade (with a `Sec-WebSocket-Key` of ours, its answer
//! checked), the client a 200, and the HTTP/2 stream is piped in a task of
//! its own, which ends when the connection does. An upgrade to anything
//! else is refused.
use super::upstream::{connect_io, Timeouts, UPSTREAM_TIMEOUT};
use super::ProxyBody;
use crate::forward_error::ForwardError;
use crate::headers::strip_response_headers;
use crate::telemetry::UpstreamErrorKind;
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
    /// RFC 8441: `CONNECT` with `:protocol websocket` over HTTP/2.
    WebSocketOverH2,
    /// `h2c`, `TLS/1.2` or anything else: refused.
    Other,
}

impl UpgradeRequest {
    pub fn is_websocket(self) -> bool {
        matches!(self, UpgradeRequest::WebSocket | UpgradeRequest::WebSocketOverH2)
    }
}

/// HTTP/1.1 only: an upgrade needs `upgrade` among the `Connection`
/// tokens (RFC 9110 7.8); an `Upgrade` header alone is hop-by-hop noise.
pub fn requested<B>(req: &Request<B>) -> UpgradeRequest {
    if req.version() == Version::HTTP_2 {
        return match req.extensions().get::<hyper::ext::Protocol>() {
            None => UpgradeRequest::None,
            Some(p) if req.method() == http::Method::CONNECT && p.as_str().eq_ignore_ascii_case("websocket") => {
                UpgradeRequest::WebSocketOverH2
            }
            Some(_) => UpgradeRequest::Other,
        };
    }
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
    over_h2: bool,
) -> Result<(Response<ProxyBody>, Option<Upgraded>), ForwardError> {
    let other = |why: String| ForwardError::upstream(UpstreamErrorKind::Other, why);
    // RFC 8441 has no key: the handshake with the upstream is ours.
    let key = if over_h2 { Some(new_key().map_err(other)?) } else { None };
    if let Some(k) = &key {
        parts.method = http::Method::GET;
        parts.headers.insert(header::SEC_WEBSOCKET_KEY, HeaderValue::from_str(k).map_err(|e| other(e.to_string()))?);
        parts.headers.entry(header::SEC_WEBSOCKET_VERSION).or_insert(HeaderValue::from_static("13"));
    }
    let io = connect_io(authority, tls.map(|t| (&t.connector, t)), timeouts.connect).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(io))
        .await
        .map_err(|e| ForwardError::upstream_error(&e, format!("upstream {authority}: {e}")))?;
    // Ends by handing the stream over to `hyper::upgrade::on`, or with the connection.
    tokio::spawn(conn.with_upgrades());
    parts.version = Version::HTTP_11;
    parts.headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    parts.headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    let wait = timeouts.response;
    let no_answer = || {
        ForwardError::upstream(
            UpstreamErrorKind::Timeout,
            format!("{UPSTREAM_TIMEOUT}: {authority}: no answer to the WebSocket upgrade within {wait:?}"),
        )
    };
    let mut resp = match tokio::time::timeout(wait, sender.send_request(Request::from_parts(parts, Empty::new()))).await
    {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return Err(ForwardError::upstream_error(&e, format!("upstream {authority}: {e}"))),
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
        return Err(ForwardError::upstream(
            UpstreamErrorKind::Protocol,
            format!("upstream {authority}: answered 101 switching to {switched_to:?}, not websocket"),
        ));
    }
    let upgraded = match tokio::time::timeout(wait, hyper::upgrade::on(&mut resp)).await {
        Ok(Ok(u)) => u,
        Ok(Err(e)) => {
            return Err(ForwardError::upstream_error(
                &e,
                format!("upstream {authority}: WebSocket upgrade failed: {e}"),
            ))
        }
        Err(_) => return Err(no_answer()),
    };
    let (mut parts, _) = resp.into_parts();
    strip_response_headers(&mut parts.headers);
    match &key {
        None => {
            parts.headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            parts.headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        }
        Some(k) => {
            let accept = parts.headers.remove(header::SEC_WEBSOCKET_ACCEPT);
            if accept.as_ref().map(|a| a.as_bytes()) != Some(accept_for(k).as_bytes()) {
                return Err(ForwardError::upstream(
                    UpstreamErrorKind::Protocol,
                    format!("upstream {authority}: wrong Sec-WebSocket-Accept {accept:?} for our key"),
                ));
            }
            // RFC 8441 5: the CONNECT succeeds with a 2xx.
            parts.status = StatusCode::OK;
        }
    }
    Ok((Response::from_parts(parts, Either::Right(Either::Right(Full::new(Bytes::new())))), Some(upgraded)))
}

/// A fresh `Sec-WebSocket-Key`: 16 random bytes, base64.
fn new_key() -> Result<String, String> {
    use base64::Engine;
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| "the system random number generator failed".to_string())?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// RFC 6455 4.2.2: base64(SHA-1(key + the protocol's GUID)).
fn accept_for(key: &str) -> String {
    use base64::Engine;
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key.as_bytes());
    ctx.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(ctx.finish().as_ref())
}

/// Pipes the client's stream, `read_ahead` (what it sent past the request
/// head) first, and the upstream's until either side closes or `idle`
/// passes without a byte either way.
pub async fn pipe<C>(client: &mut C, read_ahead: Bytes, upstream: Upgraded, idle: Duration) -> bool
where
    C: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut upstream = TokioIo::new(upstream);
    if !read_ahead.is_empty() && tokio::io::AsyncWriteExt::write_all(&mut upstream, &read_ahead).await.is_err() {
        return true;
    }
    crate::tcp::pipe_until_idle(client, &mut upstream, idle).await
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
    fn the_accept_value_is_rfc_6455s() {
        // RFC 6455 1.3's example.
        assert_eq!(accept_for("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_ne!(new_key().unwrap(), new_key().unwrap());
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
