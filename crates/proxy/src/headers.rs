//! Identity headers to the upstream. Incoming copies are always removed
//! before ours are added, so a client can never speak for another.
use ambos_tls::Identity;
use http::header::{HeaderMap, HeaderName, HeaderValue};

pub static XFCC: HeaderName = HeaderName::from_static("x-forwarded-client-cert");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Every header the proxy sets; all are stripped from client requests.
pub static OWNED: [&HeaderName; 2] = [&XFCC, &X_FORWARDED_PROTO];

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

/// Removes hop-by-hop headers (and those named in `Connection`) and every
/// header the proxy owns, then adds ours.
pub fn rewrite_request_headers(h: &mut HeaderMap, xfcc: Option<&HeaderValue>) {
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
    strip(h, |n| HOP_BY_HOP.contains(n) || OWNED.contains(&n));
    if let Some(v) = xfcc {
        h.insert(XFCC.clone(), v.clone());
    }
    h.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("https"));
}

/// Hop-by-hop headers an upstream response must not pass on.
pub fn strip_response_headers(h: &mut HeaderMap) {
    strip(h, |n| {
        n == http::header::CONNECTION || n == http::header::UPGRADE || n == http::header::TRAILER || n == "keep-alive"
    });
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
        rewrite_request_headers(&mut h, Some(&ours));
        let all: Vec<_> = h.get_all("x-forwarded-client-cert").iter().collect();
        assert_eq!(all, vec![&ours]);
        assert_eq!(
            ours.to_str().unwrap(),
            "Hash=ab;Subject=\"CN=web,O=acme \\\"x\\\"\";URI=spiffe://acme.test/web;DNS=web.acme.test"
        );
        assert!(h.get("x-secret").is_none() && h.get("connection").is_none());
        assert!(h.get("accept").is_some());
        rewrite_request_headers(&mut h, None);
        assert!(h.get("x-forwarded-client-cert").is_none(), "anonymous requests carry no XFCC");
    }
}
