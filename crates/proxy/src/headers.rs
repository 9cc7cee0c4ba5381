//! Identity headers to the upstream. Incoming copies are always removed
//! before ours are added, so a client can never speak for another; this
//! includes names that upstreams fold into ours (`X_Forwarded_Client_Cert`:
//! CGI, WSGI, PHP and Django read `_` and `-` as one). Also the checks on a
//! request head before it is routed: header names with `_`, exactly one
//! `Host`, `Connection` and `Transfer-Encoding`; and the framing sent on.
use crate::config::{ForwardedHeaders, Underscores};
use ambos_tls::Identity;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, StatusCode, Version};
use hyper::body::SizeHint;

pub static XFCC: HeaderName = HeaderName::from_static("x-forwarded-client-cert");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// RFC 9440: the verified leaf, and the path's intermediates, as byte sequences.
pub static CLIENT_CERT: HeaderName = HeaderName::from_static("client-cert");
pub static CLIENT_CERT_CHAIN: HeaderName = HeaderName::from_static("client-cert-chain");
/// RFC 7239: says the same as the X-Forwarded-* headers (`[headers]
/// forwarded` picks which the upstream gets), so a client's copy is
/// stripped like theirs.
pub static FORWARDED: HeaderName = HeaderName::from_static("forwarded");

/// On a route with `token`: the verified access token's `sub` and `scope`.
pub static TOKEN_SUBJECT: HeaderName = HeaderName::from_static("x-token-subject");
pub static TOKEN_SCOPE: HeaderName = HeaderName::from_static("x-token-scope");

/// Every header the proxy sets (or, `Forwarded`, that would speak for
/// ours); all are stripped from client requests.
pub static OWNED: [&HeaderName; 9] = [
    &XFCC,
    &X_FORWARDED_PROTO,
    &X_FORWARDED_FOR,
    &X_FORWARDED_HOST,
    &FORWARDED,
    &CLIENT_CERT,
    &CLIENT_CERT_CHAIN,
    &TOKEN_SUBJECT,
    &TOKEN_SCOPE,
];

/// Hop-by-hop headers (RFC 9110 7.6.1) never forwarded.
static HOP_BY_HOP: [HeaderName; 8] = [
    HeaderName::from_static("connection"),
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("proxy-authenticate"),
    HeaderName::from_static("proxy-authorization"),
    HeaderName::from_static("te"),
    HeaderName::from_static("trailer"),
    HeaderName::from_static("upgrade"),
];

/// Envoy's X-Forwarded-Client-Cert: `Hash=<sha256>;Subject="<dn>";URI=<uri>;DNS=<dns>`.
pub fn xfcc_value(id: &Identity) -> Option<HeaderValue> {
    let mut v = format!("Hash={};Subject=\"{}\"", id.sha256, quote(&id.subject));
    for u in &id.uris {
        v.push_str(";URI=");
        v.push_str(&field(u));
    }
    for d in &id.dns {
        v.push_str(";DNS=");
        v.push_str(&field(d));
    }
    HeaderValue::from_str(&v).ok()
}

fn quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Values with `,;=` or quotes must be quoted (Envoy's rules).
fn field(s: &str) -> String {
    if s.contains([',', ';', '=', '"']) {
        format!("\"{}\"", quote(s))
    } else {
        s.to_string()
    }
}

/// The identity headers of one connection, rendered once at its handshake.
#[derive(Debug, Clone)]
pub struct ConnHeaders {
    pub xfcc: Option<HeaderValue>,
    /// RFC 9440 Client-Cert, and Client-Cert-Chain when the path has
    /// intermediates.
    pub client_cert: Option<(HeaderValue, Option<HeaderValue>)>,
    /// The client's IP address, as X-Forwarded-For carries it.
    pub client_addr: HeaderValue,
    /// The same as an RFC 7239 node (`192.0.2.7` or `"[2001:db8::1]"`).
    pub client_node: String,
    pub forwarded: ForwardedHeaders,
    /// The client is a proxy listed in `[headers] trusted_proxies`: the
    /// forwarding headers it sent are kept and this hop appended.
    pub trusted_peer: bool,
}

impl ConnHeaders {
    /// Forwarding headers for a connection from `ip`, without identity headers.
    pub fn from_peer(ip: std::net::IpAddr, forwarded: ForwardedHeaders, trusted_peer: bool) -> ConnHeaders {
        ConnHeaders {
            xfcc: None,
            client_cert: None,
            client_addr: HeaderValue::try_from(ip.to_string()).unwrap_or(HeaderValue::from_static("unknown")),
            client_node: match ip {
                std::net::IpAddr::V4(v4) => v4.to_string(),
                std::net::IpAddr::V6(v6) => format!("\"[{v6}]\""),
            },
            forwarded,
            trusted_peer,
        }
    }
}

/// What a trusted proxy said about the client before this hop.
struct Earlier {
    xff: Option<String>,
    forwarded: Option<String>,
    proto: Option<HeaderValue>,
    host: Option<HeaderValue>,
}

impl Earlier {
    fn take(h: &HeaderMap) -> Earlier {
        let joined = |name: &HeaderName| {
            let parts: Vec<&str> = h.get_all(name).iter().filter_map(|v| v.to_str().ok()).collect();
            (!parts.is_empty()).then(|| parts.join(", "))
        };
        Earlier {
            xff: joined(&X_FORWARDED_FOR),
            forwarded: joined(&FORWARDED),
            proto: h.get(&X_FORWARDED_PROTO).cloned(),
            host: h.get(&X_FORWARDED_HOST).cloned(),
        }
    }
}

/// A value as an RFC 7239 token, quoted unless every byte is a tchar.
fn rfc7239_value(v: &str) -> String {
    let tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if !v.is_empty() && v.chars().all(tchar) {
        v.to_string()
    } else {
        format!("\"{}\"", quote(v))
    }
}

/// RFC 9440 values from the verified path (leaf first, anchor last): the
/// leaf as Client-Cert, the certificates between it and the anchor as
/// Client-Cert-Chain (the anchor is left out, as the RFC advises), each an
/// RFC 8941 byte sequence (`:base64:`).
pub fn rfc9440_values(path: &[impl AsRef<[u8]>]) -> Option<(HeaderValue, Option<HeaderValue>)> {
    use base64::Engine;
    let seq = |der: &[u8]| format!(":{}:", base64::engine::general_purpose::STANDARD.encode(der));
    let leaf = HeaderValue::try_from(seq(path.first()?.as_ref())).ok()?;
    let between = path.get(1..path.len().saturating_sub(1)).unwrap_or_default();
    let chain = if between.is_empty() {
        None
    } else {
        HeaderValue::try_from(between.iter().map(|c| seq(c.as_ref())).collect::<Vec<_>>().join(", ")).ok()
    };
    Some((leaf, chain))
}

/// Removes hop-by-hop headers (and those named in `Connection`) and every
/// header the proxy owns, then adds ours.
/// X-Forwarded-For (or RFC 7239 `for=`) is the connection's peer address,
/// replacing whatever the client sent (the proxy is the edge) unless the
/// client is a trusted proxy, whose list is kept and this hop appended; the
/// Host the request carries is repeated as X-Forwarded-Host (`host=`).
pub fn rewrite_request_headers(h: &mut HeaderMap, ours: &ConnHeaders) {
    let before = ours.trusted_peer.then(|| Earlier::take(h));
    let named: Vec<HeaderName> = h
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in &named {
        h.remove(n);
    }
    strip(h, |n| HOP_BY_HOP.contains(n) || owned(n));
    if let Some(v) = &ours.xfcc {
        h.insert(XFCC.clone(), v.clone());
    }
    if let Some((cert, chain)) = &ours.client_cert {
        h.insert(CLIENT_CERT.clone(), cert.clone());
        if let Some(chain) = chain {
            h.insert(CLIENT_CERT_CHAIN.clone(), chain.clone());
        }
    }
    let host = h.get(http::header::HOST).cloned();
    if ours.forwarded != ForwardedHeaders::Rfc7239 {
        let (proto, for_, fhost) = match &before {
            Some(b) => (b.proto.clone(), b.xff.as_ref().map(|x| format!("{x}, ")), b.host.clone()),
            None => (None, None, None),
        };
        h.insert(X_FORWARDED_PROTO.clone(), proto.unwrap_or(HeaderValue::from_static("https")));
        let xff = match for_ {
            Some(earlier) => HeaderValue::try_from(earlier + ours.client_addr.to_str().unwrap_or("unknown")).ok(),
            None => Some(ours.client_addr.clone()),
        };
        h.insert(X_FORWARDED_FOR.clone(), xff.unwrap_or_else(|| ours.client_addr.clone()));
        if let Some(host) = fhost.or_else(|| host.clone()) {
            h.insert(X_FORWARDED_HOST.clone(), host);
        }
    }
    if ours.forwarded != ForwardedHeaders::XForwarded {
        let mut element = format!("for={};proto=https", ours.client_node);
        if let Some(host) = host.as_ref().and_then(|v| v.to_str().ok()) {
            element = format!("for={};host={};proto=https", ours.client_node, rfc7239_value(host));
        }
        if let Some(earlier) = before.as_ref().and_then(|b| b.forwarded.as_ref()) {
            element = format!("{earlier}, {element}");
        }
        if let Ok(v) = HeaderValue::try_from(element) {
            h.insert(FORWARDED.clone(), v);
        }
    }
}

/// Whether `name` is, or folds to, one of the headers the proxy sets:
/// ASCII case is already folded (header names are stored in lower case),
/// and `_` is read as `-` the way CGI-style upstreams read it.
fn owned(name: &HeaderName) -> bool {
    let n = name.as_str().as_bytes();
    OWNED.iter().any(|o| {
        let o = o.as_str().as_bytes();
        o.len() == n.len() && o.iter().zip(n).all(|(&a, &b)| a == b || (a == b'-' && b == b'_'))
    })
}

/// Why a request head is refused before routing: the status and the
/// reason written to the audit log.
pub type Refusal = (StatusCode, &'static str);

/// Headers that `Connection` must not name: removing them as hop-by-hop
/// would change what the upstream reads (a request without `Host`, a body
/// without its framing).
static END_TO_END: [HeaderName; 3] = [header::HOST, header::CONTENT_LENGTH, header::TRANSFER_ENCODING];

/// Checks a request head before it is routed, and leaves it with exactly
/// one `Host`. Header names with `_` are dropped (counted), refused or kept
/// per `underscores`; `Host` must be there once (HTTP/1.1) and agree with
/// the request target's authority (`:authority` in HTTP/2, or an
/// absolute-form target); `Connection` must not name an end-to-end header;
/// `Transfer-Encoding` may only be `chunked`, and not with `Content-Length`.
pub fn check_request_head<B>(req: &mut Request<B>, underscores: Underscores) -> Result<(), Refusal> {
    let bad = |why| Err((StatusCode::BAD_REQUEST, why));
    let h = req.headers_mut();
    if h.keys().any(|n| n.as_str().contains('_')) {
        match underscores {
            Underscores::Reject => return bad("header name with an underscore"),
            Underscores::Drop => {
                let names: Vec<HeaderName> = h.keys().filter(|n| n.as_str().contains('_')).cloned().collect();
                for n in &names {
                    h.remove(n);
                }
                metrics::counter!("ambos_proxy_headers_dropped_total", "reason" => "underscore")
                    .increment(names.len() as u64);
            }
            Underscores::Allow => {}
        }
    }
    let h = req.headers();
    for token in h.get_all(header::CONNECTION).iter().flat_map(|v| v.as_bytes().split(|&b| b == b',')) {
        let token: Vec<u8> =
            token.trim_ascii().iter().map(|b| if *b == b'_' { b'-' } else { b.to_ascii_lowercase() }).collect();
        if let Ok(n) = HeaderName::from_bytes(&token) {
            if END_TO_END.contains(&n) || owned(&n) {
                return bad("Connection names an end-to-end header");
            }
        }
    }
    let mut te = h.get_all(header::TRANSFER_ENCODING).iter();
    match (te.next(), te.next()) {
        (None, _) => {}
        (Some(v), None) if v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"chunked") => {
            if h.contains_key(header::CONTENT_LENGTH) {
                return bad("both Transfer-Encoding and Content-Length");
            }
        }
        _ => return bad("Transfer-Encoding other than chunked"),
    }
    let mut hosts = h.get_all(header::HOST).iter();
    let host = match (hosts.next(), hosts.next()) {
        (_, Some(_)) => return bad("more than one Host"),
        (Some(v), None) => Some(parse_host(v).ok_or((StatusCode::BAD_REQUEST, "malformed Host"))?),
        (None, None) => None,
    };
    let target = req.uri().authority().map(|a| a.as_str());
    let agreed = match (host, target) {
        (Some(h), Some(t)) if !h.eq_ignore_ascii_case(t) => {
            return bad(if req.version() == Version::HTTP_2 {
                "Host differs from :authority"
            } else {
                "Host differs from the request target"
            })
        }
        (Some(_), _) => return Ok(()),
        (None, Some(t)) if req.version() == Version::HTTP_2 => t,
        (None, Some(_)) => return bad("no Host"),
        (None, None) => return bad("no Host"),
    };
    let v = HeaderValue::from_str(agreed).map_err(|_| (StatusCode::BAD_REQUEST, "malformed Host"))?;
    req.headers_mut().insert(header::HOST, v);
    Ok(())
}

/// With `[listen] hosts` set, the request's host (from `Host`, which
/// [`check_request_head`] left single) must be one of them and, if the
/// client sent SNI, the name it sent: a request for another host on this
/// TLS session is 421 Misdirected Request (RFC 9110 15.5.20).
pub fn check_host_served<B>(req: &Request<B>, hosts: &[String], sni: Option<&str>) -> Result<(), Refusal> {
    if hosts.is_empty() {
        return Ok(());
    }
    let misdirected = |why| Err((StatusCode::MISDIRECTED_REQUEST, why));
    let Some(authority) = req.headers().get(header::HOST).and_then(parse_host) else {
        return misdirected("no Host");
    };
    let Ok(authority) = authority.parse::<http::uri::Authority>() else {
        return misdirected("malformed Host");
    };
    let host = authority.host().trim_end_matches('.');
    if !hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) {
        return misdirected("Host not served by this listener");
    }
    if sni.is_some_and(|s| !s.trim_end_matches('.').eq_ignore_ascii_case(host)) {
        return misdirected("Host differs from the TLS server name (SNI)");
    }
    Ok(())
}

/// A `Host` value: `host[:port]`, without user information.
fn parse_host(v: &HeaderValue) -> Option<&str> {
    let s = v.to_str().ok()?;
    let a: http::uri::Authority = s.parse().ok()?;
    (!s.is_empty() && !s.contains('@') && a.as_str() == s).then_some(s)
}

/// Replaces the client's framing headers with ours: hyper has decoded the
/// body, so it is sent on with the length hyper knows (`Content-Length`)
/// or chunked; a client's `Transfer-Encoding` is never copied.
pub fn regenerate_framing(h: &mut HeaderMap, body: &SizeHint, end_stream: bool) {
    h.remove(header::TRANSFER_ENCODING);
    let had_length = h.remove(header::CONTENT_LENGTH).is_some();
    match body.exact() {
        Some(n) if n > 0 || had_length => {
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
        }
        Some(_) => {}
        None if end_stream => {}
        None => {
            h.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        }
    }
}

/// Hop-by-hop headers an upstream response must not pass on.
pub fn strip_response_headers(h: &mut HeaderMap) {
    strip(h, hop_by_hop_in_response);
}

/// Whether an upstream response's header is hop-by-hop.
pub fn hop_by_hop_in_response(n: &HeaderName) -> bool {
    n == http::header::CONNECTION || n == http::header::UPGRADE || n == http::header::TRAILER || n == "keep-alive"
}

/// Removes every header whose name matches. One pass over the few names a
/// request has, instead of a hash lookup per name that might be there:
/// most requests carry none of them.
fn strip(h: &mut HeaderMap, doomed: impl Fn(&HeaderName) -> bool) {
    let found: Vec<HeaderName> = h.keys().filter(|n| doomed(n)).cloned().collect();
    for n in &found {
        h.remove(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_sent_identity_headers_are_replaced_by_ours() {
        let mut h = HeaderMap::new();
        h.append("x-forwarded-client-cert", HeaderValue::from_static("Hash=evil"));
        h.append("X-Forwarded-Client-Cert", HeaderValue::from_static("URI=spiffe://evil"));
        h.append("connection", HeaderValue::from_static("keep-alive, x-secret"));
        h.append("x-secret", HeaderValue::from_static("1"));
        h.append("accept", HeaderValue::from_static("*/*"));
        let id = Identity {
            sha256: "ab".into(),
            subject: "CN=web,O=acme \"x\"".into(),
            uris: vec!["spiffe://acme.test/web".into()],
            dns: vec!["web.acme.test".into()],
            ..Identity::default()
        };
        let ours = xfcc_value(&id).unwrap();
        rewrite_request_headers(&mut h, &conn(Some(&ours), "192.0.2.7"));
        let all: Vec<_> = h.get_all("x-forwarded-client-cert").iter().collect();
        assert_eq!(all, vec![&ours]);
        assert_eq!(
            ours.to_str().unwrap(),
            "Hash=ab;Subject=\"CN=web,O=acme \\\"x\\\"\";URI=spiffe://acme.test/web;DNS=web.acme.test"
        );
        assert!(h.get("x-secret").is_none() && h.get("connection").is_none());
        assert!(h.get("accept").is_some());
        rewrite_request_headers(&mut h, &conn(None, "192.0.2.7"));
        assert!(h.get("x-forwarded-client-cert").is_none(), "anonymous requests carry no XFCC");
    }

    fn request(version: Version, uri: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut r = Request::builder().version(version).uri(uri);
        for (n, v) in headers {
            r = r.header(*n, *v);
        }
        r.body(()).unwrap()
    }

    fn conn(xfcc: Option<&HeaderValue>, addr: &'static str) -> ConnHeaders {
        ConnHeaders {
            xfcc: xfcc.cloned(),
            ..ConnHeaders::from_peer(addr.parse().unwrap(), ForwardedHeaders::XForwarded, false)
        }
    }

    #[test]
    fn rfc9440_headers_carry_the_leaf_and_the_path_between_it_and_the_anchor() {
        let path: [&[u8]; 3] = [b"leaf", b"inter", b"root"];
        let (leaf, chain) = rfc9440_values(&path).unwrap();
        assert_eq!(leaf, ":bGVhZg==:");
        assert_eq!(chain.unwrap(), ":aW50ZXI=:");
        let (_, chain) = rfc9440_values(&[b"leaf".as_slice(), b"root"]).unwrap();
        assert!(chain.is_none(), "a leaf issued by the anchor has no chain");
        let mut h = HeaderMap::new();
        h.append("client-cert", HeaderValue::from_static(":ZXZpbA==:"));
        h.append("client_cert_chain", HeaderValue::from_static(":ZXZpbA==:"));
        let mut ours = conn(None, "192.0.2.7");
        ours.client_cert = rfc9440_values(&path);
        rewrite_request_headers(&mut h, &ours);
        assert_eq!(h.get_all("client-cert").iter().collect::<Vec<_>>(), vec![":bGVhZg==:"]);
        assert_eq!(h.get_all("client-cert-chain").iter().collect::<Vec<_>>(), vec![":aW50ZXI=:"]);
        assert!(h.get("client_cert_chain").is_none());
    }

    fn check(r: &mut Request<()>) -> Result<(), Refusal> {
        check_request_head(r, Underscores::Drop)
    }

    fn spoofed() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.append("host", HeaderValue::from_static("api.acme.test:8443"));
        h.append("x-forwarded-for", HeaderValue::from_static("6.6.6.6"));
        h.append("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        h.append("x-forwarded-proto", HeaderValue::from_static("http"));
        h.append("forwarded", HeaderValue::from_static("for=6.6.6.9"));
        h.append("x_forwarded_for", HeaderValue::from_static("6.6.6.8"));
        h
    }

    fn values<'a>(h: &'a HeaderMap, name: &str) -> Vec<&'a str> {
        h.get_all(name).iter().map(|v| v.to_str().unwrap()).collect()
    }

    #[test]
    fn rfc7239_forwarded_replaces_the_x_forwarded_headers_when_configured() {
        let ip = "2001:db8::1".parse().unwrap();
        let mut h = spoofed();
        rewrite_request_headers(&mut h, &ConnHeaders::from_peer(ip, ForwardedHeaders::Rfc7239, false));
        assert_eq!(values(&h, "forwarded"), vec![r#"for="[2001:db8::1]";host="api.acme.test:8443";proto=https"#]);
        assert!(h.get("x-forwarded-for").is_none() && h.get("x-forwarded-proto").is_none());
        let mut h = spoofed();
        rewrite_request_headers(&mut h, &ConnHeaders::from_peer([192, 0, 2, 7].into(), ForwardedHeaders::Both, false));
        assert_eq!(values(&h, "forwarded"), vec![r#"for=192.0.2.7;host="api.acme.test:8443";proto=https"#]);
        assert_eq!(values(&h, "x-forwarded-for"), vec!["192.0.2.7"]);
        assert_eq!(values(&h, "x-forwarded-proto"), vec!["https"]);
    }

    #[test]
    fn a_trusted_proxys_forwarding_headers_are_kept_and_this_hop_appended() {
        let mut h = spoofed();
        rewrite_request_headers(&mut h, &ConnHeaders::from_peer([10, 1, 2, 3].into(), ForwardedHeaders::Both, true));
        assert_eq!(values(&h, "x-forwarded-for"), vec!["6.6.6.6, 10.0.0.1, 10.1.2.3"]);
        assert_eq!(values(&h, "x-forwarded-proto"), vec!["http"], "the scheme the first hop saw");
        assert_eq!(values(&h, "x-forwarded-host"), vec!["api.acme.test:8443"]);
        assert_eq!(values(&h, "forwarded"), vec![r#"for=6.6.6.9, for=10.1.2.3;host="api.acme.test:8443";proto=https"#]);
        assert!(h.get("x_forwarded_for").is_none(), "a misspelling is never kept");
    }

    #[test]
    fn the_client_address_and_host_replace_whatever_the_client_sent() {
        let mut h = HeaderMap::new();
        h.append("host", HeaderValue::from_static("api.acme.test"));
        for (n, v) in [
            ("x-forwarded-for", "6.6.6.6"),
            ("X-Forwarded-For", "6.6.6.7, 10.0.0.1"),
            ("x_forwarded_for", "6.6.6.8"),
            ("x-forwarded-host", "evil.test"),
            ("forwarded", "for=6.6.6.9;host=evil.test"),
        ] {
            h.append(HeaderName::from_bytes(n.as_bytes()).unwrap(), HeaderValue::from_static(v));
        }
        rewrite_request_headers(&mut h, &conn(None, "2001:db8::1"));
        assert_eq!(h.get_all("x-forwarded-for").iter().collect::<Vec<_>>(), vec!["2001:db8::1"]);
        assert_eq!(h.get_all("x-forwarded-host").iter().collect::<Vec<_>>(), vec!["api.acme.test"]);
        assert!(h.get("forwarded").is_none() && h.get("x_forwarded_for").is_none());
    }

    #[test]
    fn names_that_fold_to_ours_are_stripped_whatever_the_underscores_setting() {
        let mut h = HeaderMap::new();
        for n in ["x_forwarded_client_cert", "x-forwarded_client-cert", "x_forwarded-proto", "x-forwarded-client-cert"]
        {
            h.append(HeaderName::from_bytes(n.as_bytes()).unwrap(), HeaderValue::from_static("URI=spiffe://evil"));
        }
        h.append("x_other", HeaderValue::from_static("kept"));
        let ours = HeaderValue::from_static("Hash=ours");
        rewrite_request_headers(&mut h, &conn(Some(&ours), "192.0.2.7"));
        let names: Vec<_> = h.keys().map(|n| n.as_str()).collect();
        assert_eq!(names.len(), 4, "{names:?}");
        assert_eq!(h.get("x-forwarded-for").unwrap(), "192.0.2.7");
        assert_eq!(h.get_all("x-forwarded-client-cert").iter().collect::<Vec<_>>(), vec![&ours]);
        assert_eq!(h.get("x-forwarded-proto").unwrap(), "https");
        assert_eq!(h.get("x_other").unwrap(), "kept");
        assert!(!owned(&HeaderName::from_static("x-forwarded-client-certs")));
        assert!(!owned(&HeaderName::from_static("x.forwarded.client.cert")));
    }

    #[test]
    fn underscore_names_are_dropped_refused_or_kept() {
        let with =
            || request(Version::HTTP_11, "/", &[("host", "a"), ("x_forwarded_client_cert", "evil"), ("a-b", "1")]);
        let mut r = with();
        assert_eq!(check_request_head(&mut r, Underscores::Drop), Ok(()));
        assert!(r.headers().get("x_forwarded_client_cert").is_none() && r.headers().get("a-b").is_some());
        let mut r = with();
        assert_eq!(check_request_head(&mut r, Underscores::Reject).unwrap_err().0, StatusCode::BAD_REQUEST);
        let mut r = with();
        assert_eq!(check_request_head(&mut r, Underscores::Allow), Ok(()));
        assert!(r.headers().get("x_forwarded_client_cert").is_some());
    }

    #[test]
    fn exactly_one_host_agreeing_with_the_target() {
        let v11 = Version::HTTP_11;
        let ok = |r: &mut Request<()>| check(r).map(|()| r.headers().get_all("host").iter().count());
        assert_eq!(ok(&mut request(v11, "/", &[("host", "api.test:8443")])), Ok(1));
        assert_eq!(ok(&mut request(v11, "http://api.test/x", &[("host", "API.test")])), Ok(1));
        for (uri, headers, why) in [
            ("/", &[][..], "no Host"),
            ("/", &[("host", "a"), ("host", "a")][..], "more than one Host"),
            ("/", &[("host", "a"), ("host", "b")][..], "more than one Host"),
            ("/", &[("host", "")][..], "malformed Host"),
            ("/", &[("host", "u@a")][..], "malformed Host"),
            ("/", &[("host", "a b")][..], "malformed Host"),
            ("/", &[("host", "a/b")][..], "malformed Host"),
            ("http://b/x", &[("host", "a")][..], "Host differs from the request target"),
            ("http://b/x", &[][..], "no Host"),
        ] {
            assert_eq!(
                check(&mut request(v11, uri, headers)),
                Err((StatusCode::BAD_REQUEST, why)),
                "{uri} {headers:?}"
            );
        }
        let v2 = Version::HTTP_2;
        let mut r = request(v2, "https://api.test/x", &[]);
        assert_eq!(check(&mut r), Ok(()));
        assert_eq!(r.headers().get("host").unwrap(), "api.test");
        assert_eq!(ok(&mut request(v2, "https://api.test/x", &[("host", "api.test")])), Ok(1));
        assert_eq!(
            check(&mut request(v2, "https://api.test/x", &[("host", "admin.test")])),
            Err((StatusCode::BAD_REQUEST, "Host differs from :authority"))
        );
        assert_eq!(check(&mut request(v2, "/x", &[])), Err((StatusCode::BAD_REQUEST, "no Host")));
    }

    #[test]
    fn connection_and_transfer_encoding_are_checked() {
        let v11 = Version::HTTP_11;
        for c in ["host", "close, Host", "content-length", "transfer-encoding", "X_Forwarded_Client_Cert"] {
            assert_eq!(
                check(&mut request(v11, "/", &[("host", "a"), ("connection", c)])),
                Err((StatusCode::BAD_REQUEST, "Connection names an end-to-end header")),
                "{c}"
            );
        }
        for c in ["close", "keep-alive", "te, x-hop"] {
            assert_eq!(check(&mut request(v11, "/", &[("host", "a"), ("connection", c)])), Ok(()), "{c}");
        }
        for te in ["chunked", "Chunked", " chunked "] {
            assert_eq!(check(&mut request(v11, "/", &[("host", "a"), ("transfer-encoding", te)])), Ok(()), "{te}");
        }
        for te in ["identity, chunked", "chunked, chunked", "gzip, chunked", "identity", "chunked;x"] {
            assert_eq!(
                check(&mut request(v11, "/", &[("host", "a"), ("transfer-encoding", te)])),
                Err((StatusCode::BAD_REQUEST, "Transfer-Encoding other than chunked")),
                "{te}"
            );
        }
        let twice = [("host", "a"), ("transfer-encoding", "chunked"), ("transfer-encoding", "chunked")];
        assert!(check(&mut request(v11, "/", &twice)).is_err());
        let both = [("host", "a"), ("transfer-encoding", "chunked"), ("content-length", "3")];
        assert_eq!(
            check(&mut request(v11, "/", &both)),
            Err((StatusCode::BAD_REQUEST, "both Transfer-Encoding and Content-Length"))
        );
    }

    #[test]
    fn framing_is_regenerated_from_what_hyper_knows() {
        let mut h = HeaderMap::new();
        h.insert("transfer-encoding", HeaderValue::from_static("identity, chunked"));
        regenerate_framing(&mut h, &SizeHint::new(), false);
        assert_eq!(h.get("transfer-encoding").unwrap(), "chunked");
        assert!(h.get("content-length").is_none());
        let mut h = HeaderMap::new();
        h.insert("content-length", HeaderValue::from_static("005"));
        regenerate_framing(&mut h, &SizeHint::with_exact(5), false);
        assert_eq!(h.get("content-length").unwrap(), "5");
        assert!(h.get("transfer-encoding").is_none());
        let mut h = HeaderMap::new();
        regenerate_framing(&mut h, &SizeHint::with_exact(0), true);
        assert!(h.is_empty());
        h.insert("content-length", HeaderValue::from_static("0"));
        regenerate_framing(&mut h, &SizeHint::with_exact(0), true);
        assert_eq!(h.get("content-length").unwrap(), "0");
    }

    #[test]
    fn listen_hosts_must_match_host_and_sni() {
        let hosts = vec!["api.test".to_string(), "127.0.0.1".to_string()];
        let r = |host: &str| request(Version::HTTP_11, "/", &[("host", host)]);
        let misdirected = |why| Err((StatusCode::MISDIRECTED_REQUEST, why));
        assert_eq!(check_host_served(&r("anything"), &[], Some("api.test")), Ok(()));
        assert_eq!(check_host_served(&r("API.test:8443"), &hosts, Some("api.test")), Ok(()));
        assert_eq!(check_host_served(&r("api.test."), &hosts, None), Ok(()));
        assert_eq!(check_host_served(&r("127.0.0.1:8443"), &hosts, None), Ok(()));
        assert_eq!(
            check_host_served(&r("admin.test"), &hosts, Some("admin.test")),
            misdirected("Host not served by this listener")
        );
        assert_eq!(
            check_host_served(&r("127.0.0.1"), &hosts, Some("api.test")),
            misdirected("Host differs from the TLS server name (SNI)")
        );
        assert_eq!(check_host_served(&request(Version::HTTP_11, "/", &[]), &hosts, None), misdirected("no Host"));
    }
}
