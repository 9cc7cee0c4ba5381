//! `grpc` mode: the unary call sent, and whether its response is a gRPC OK.
use crate::tally::Failure;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};

/// A small protobuf message (field 1, the string "ambos") behind the
/// 5-byte gRPC prefix: not compressed, length 7.
pub const REQUEST_BODY: &[u8] = b"\x00\x00\x00\x00\x07\x0a\x05ambos";

pub fn request(uri: &http::Uri) -> Result<http::Request<http_body_util::Full<Bytes>>, http::Error> {
    http::Request::post(uri.clone())
        .version(http::Version::HTTP_2)
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header(http::header::TE, "trailers")
        .body(http_body_util::Full::new(Bytes::from_static(REQUEST_BODY)))
}

/// A call succeeded when the response is HTTP 200 with `grpc-status: 0` in
/// its trailers, or in its headers when the server answered trailers-only
/// (no body, the status in the one HEADERS frame). A non-zero status is
/// filed as `grpc-status N`, an HTTP status other than 200 as `status NNN`.
pub fn outcome(status: StatusCode, headers: &HeaderMap, trailers: Option<&HeaderMap>) -> Result<(), Failure> {
    if status != StatusCode::OK {
        return Err(Failure::new(format!("status {}", status.as_u16()), format!("unexpected status {status}")));
    }
    let from = trailers.filter(|t| t.contains_key("grpc-status")).unwrap_or(headers);
    let Some(code) = from.get("grpc-status") else {
        return Err(Failure::new("protocol", "no grpc-status in the trailers or headers"));
    };
    let message = from.get("grpc-message").map(|m| String::from_utf8_lossy(m.as_bytes()).into_owned());
    match code.to_str().ok().and_then(|c| c.parse::<u32>().ok()) {
        Some(0) => Ok(()),
        Some(n) => Err(Failure::new(
            format!("grpc-status {n}"),
            format!("call failed with grpc-status {n}: {}", message.as_deref().unwrap_or("(no grpc-message)")),
        )),
        None => Err(Failure::new("protocol", format!("grpc-status {code:?} is not a number"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (http::HeaderName::from_static(k), http::HeaderValue::from_static(v))).collect()
    }

    fn kind(r: Result<(), Failure>) -> String {
        r.err().map(|f| f.kind.into_owned()).unwrap_or_else(|| "ok".into())
    }

    #[test]
    fn the_status_is_read_from_trailers_or_a_trailers_only_response() {
        let head = map(&[("content-type", "application/grpc")]);
        assert_eq!(kind(outcome(StatusCode::OK, &head, Some(&map(&[("grpc-status", "0")])))), "ok");
        let trailers_only = map(&[("content-type", "application/grpc"), ("grpc-status", "0")]);
        assert_eq!(kind(outcome(StatusCode::OK, &trailers_only, None)), "ok");
        // Trailers without a status do not hide one in the headers.
        assert_eq!(kind(outcome(StatusCode::OK, &trailers_only, Some(&map(&[("x-other", "1")])))), "ok");
        // The trailers' status wins over the headers'.
        let both = outcome(StatusCode::OK, &trailers_only, Some(&map(&[("grpc-status", "14")])));
        assert_eq!(kind(both), "grpc-status 14");
    }

    #[test]
    fn anything_but_grpc_ok_is_an_error_of_its_own_kind() {
        let head = map(&[("content-type", "application/grpc")]);
        let denied =
            outcome(StatusCode::OK, &head, Some(&map(&[("grpc-status", "7"), ("grpc-message", "not for you")])))
                .err()
                .unwrap();
        assert_eq!(denied.kind, "grpc-status 7");
        assert_eq!(denied.detail, "call failed with grpc-status 7: not for you");
        assert_eq!(kind(outcome(StatusCode::OK, &head, None)), "protocol", "no status at all");
        assert_eq!(kind(outcome(StatusCode::OK, &head, Some(&HeaderMap::new()))), "protocol");
        assert_eq!(kind(outcome(StatusCode::OK, &map(&[("grpc-status", "ok")]), None)), "protocol");
        let bad_gateway = outcome(StatusCode::BAD_GATEWAY, &map(&[("grpc-status", "0")]), None);
        assert_eq!(kind(bad_gateway), "status 502", "HTTP must say 200 first");
    }

    #[test]
    fn the_request_is_one_length_prefixed_message() {
        let len = u32::from_be_bytes(REQUEST_BODY[1..5].try_into().unwrap()) as usize;
        assert_eq!((REQUEST_BODY[0], len), (0, REQUEST_BODY.len() - 5));
        let r = request(&"https://localhost/bench.Echo/Call".parse().unwrap()).unwrap();
        assert_eq!(r.method(), http::Method::POST);
        assert_eq!(r.headers()["content-type"], "application/grpc");
        assert_eq!(r.headers()["te"], "trailers");
    }
}
