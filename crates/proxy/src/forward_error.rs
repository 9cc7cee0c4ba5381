//! Why a request (or a TCP connection) could not be forwarded, decided
//! where it failed: the client's body, the connection's upstream slots, or
//! the upstream, with the kind of the upstream's failure taken from the
//! error values themselves (I/O error kinds, hyper's and h2's own
//! classification), never from their text. The text is what the audit
//! line and the log say.
use crate::telemetry::UpstreamErrorKind;
use std::error::Error as StdError;
use std::io::ErrorKind;

/// What a failed forward is answered with (see `http::handle`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// The client's body broke off or did not parse: 400.
    ClientBody,
    /// The client's body was too slow (`body_timeout`, `body_min_rate`):
    /// 408, and the connection closes.
    BodyTimeout,
    /// A gRPC message over `max_grpc_message`: 413, RESOURCE_EXHAUSTED.
    GrpcTooLarge,
    /// The client connection held all its upstream slots for
    /// `upstream_queue_timeout`: 503.
    Queue,
    /// The upstream failed: 504 for a timeout, else 502.
    Upstream(UpstreamErrorKind),
}

/// A failed forward: its cause and, for the audit line and the log, why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardError {
    pub cause: Cause,
    pub why: String,
}

impl std::fmt::Display for ForwardError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.why)
    }
}

impl ForwardError {
    pub fn new(cause: Cause, why: impl Into<String>) -> ForwardError {
        ForwardError { cause, why: why.into() }
    }

    /// The upstream failed in a way of `kind`.
    pub fn upstream(kind: UpstreamErrorKind, why: impl Into<String>) -> ForwardError {
        ForwardError::new(Cause::Upstream(kind), why)
    }

    /// The upstream failed with `e` (or an error it wraps).
    pub fn upstream_error(e: &(dyn StdError + 'static), why: impl Into<String>) -> ForwardError {
        ForwardError::upstream(kind_of(e), why)
    }

    /// The same failure, said another way (more context for the log).
    pub fn map_why(self, f: impl FnOnce(String) -> String) -> ForwardError {
        ForwardError { cause: self.cause, why: f(self.why) }
    }
}

/// The kind of an upstream I/O failure.
pub fn kind_of_io(e: &std::io::Error) -> UpstreamErrorKind {
    match e.kind() {
        ErrorKind::ConnectionRefused => UpstreamErrorKind::ConnectRefused,
        ErrorKind::TimedOut | ErrorKind::WouldBlock => UpstreamErrorKind::Timeout,
        ErrorKind::ConnectionReset
        | ErrorKind::ConnectionAborted
        | ErrorKind::BrokenPipe
        | ErrorKind::UnexpectedEof
        | ErrorKind::NotConnected => UpstreamErrorKind::Reset,
        ErrorKind::InvalidData => UpstreamErrorKind::Protocol,
        _ => UpstreamErrorKind::Other,
    }
}

/// The kind of an upstream failure reported by hyper (HTTP/1.1 and HTTP/2
/// clients): the innermost I/O error decides if there is one, else what
/// hyper or h2 say the error was.
pub fn kind_of(e: &(dyn StdError + 'static)) -> UpstreamErrorKind {
    let mut kind = UpstreamErrorKind::Other;
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            // An I/O error may wrap the error it reports (rustls' inside
            // tokio-rustls'), which its `source()` skips.
            match io.get_ref() {
                None => return kind_of_io(io),
                Some(inner) => {
                    kind = kind_of_io(io);
                    next = Some(inner as &(dyn StdError + 'static));
                    continue;
                }
            }
        } else if let Some(h) = err.downcast_ref::<hyper::Error>() {
            kind = if h.is_timeout() {
                UpstreamErrorKind::Timeout
            } else if h.is_parse() || h.is_parse_status() || h.is_parse_too_large() {
                UpstreamErrorKind::Protocol
            } else if h.is_incomplete_message() || h.is_closed() || h.is_canceled() {
                UpstreamErrorKind::Reset
            } else {
                kind
            };
        } else if let Some(h2) = err.downcast_ref::<h2::Error>() {
            if let Some(io) = h2.get_io() {
                return kind_of_io(io);
            }
            kind = match h2.reason() {
                Some(
                    h2::Reason::PROTOCOL_ERROR
                    | h2::Reason::FRAME_SIZE_ERROR
                    | h2::Reason::COMPRESSION_ERROR
                    | h2::Reason::FLOW_CONTROL_ERROR
                    | h2::Reason::SETTINGS_TIMEOUT
                    | h2::Reason::HTTP_1_1_REQUIRED,
                ) => UpstreamErrorKind::Protocol,
                Some(_) => UpstreamErrorKind::Reset,
                None => kind,
            };
        } else if err.downcast_ref::<rustls::Error>().is_some() {
            return UpstreamErrorKind::Tls;
        }
        next = err.source();
    }
    kind
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_are_told_apart_by_their_kind_not_their_words() {
        for (kind, want) in [
            (ErrorKind::ConnectionRefused, UpstreamErrorKind::ConnectRefused),
            (ErrorKind::TimedOut, UpstreamErrorKind::Timeout),
            (ErrorKind::ConnectionReset, UpstreamErrorKind::Reset),
            (ErrorKind::BrokenPipe, UpstreamErrorKind::Reset),
            (ErrorKind::UnexpectedEof, UpstreamErrorKind::Reset),
            (ErrorKind::InvalidData, UpstreamErrorKind::Protocol),
            (ErrorKind::PermissionDenied, UpstreamErrorKind::Other),
        ] {
            // The text says something else: only the kind counts.
            let e = std::io::Error::new(kind, "connection refused, timed out, certificate");
            assert_eq!(kind_of_io(&e), want, "{kind:?}");
            assert_eq!(kind_of(&e), want, "{kind:?} through the chain walk");
        }
        // rustls' error inside an I/O error (as tokio-rustls reports it): TLS.
        let tls = std::io::Error::new(ErrorKind::InvalidData, rustls::Error::DecryptError);
        assert_eq!(kind_of(&tls), UpstreamErrorKind::Tls);
        // An h2 error: its reason decides.
        let protocol: h2::Error = h2::Reason::PROTOCOL_ERROR.into();
        assert_eq!(kind_of(&protocol), UpstreamErrorKind::Protocol);
        let refused: h2::Error = h2::Reason::REFUSED_STREAM.into();
        assert_eq!(kind_of(&refused), UpstreamErrorKind::Reset);
        let other = std::fmt::Error;
        assert_eq!(kind_of(&other), UpstreamErrorKind::Other);
    }

    #[test]
    fn the_text_is_the_why_and_the_cause_stays_when_it_is_reworded() {
        let e = ForwardError::upstream(UpstreamErrorKind::Tls, "upstream a:1: TLS handshake failed");
        assert_eq!(e.to_string(), "upstream a:1: TLS handshake failed");
        let e = e.map_why(|w| format!("{w} (more)"));
        assert_eq!(e.cause, Cause::Upstream(UpstreamErrorKind::Tls));
        assert_eq!(e.to_string(), "upstream a:1: TLS handshake failed (more)");
    }
}
