//! `websocket` mode: the HTTP/1.1 upgrade sent, and whether the answer is a
//! WebSocket 101.
use crate::tally::Failure;

/// RFC 6455's sample key: servers check its form, not that it is fresh,
/// and a fixed key has a fixed answer to check.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// base64(SHA-1(KEY + the RFC 6455 GUID)).
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
/// A response head longer than this is not what a WebSocket server sends.
pub const MAX_HEAD: usize = 8192;

pub fn request(path: &str, host: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// The end of the response head (after its blank line) in `buf`, if there.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// Checks a response head: `101`, `Upgrade: websocket` and the accept
/// value for our key. Another status is filed as `status NNN`.
pub fn switched(head: &[u8]) -> Result<(), Failure> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let line = lines.next().unwrap_or_default();
    let code = match line.split(' ').collect::<Vec<_>>()[..] {
        ["HTTP/1.1", code, ..] if code.len() == 3 && code.bytes().all(|b| b.is_ascii_digit()) => code,
        _ => return Err(Failure::new("protocol", format!("not an HTTP/1.1 response: {line:?}"))),
    };
    if code != "101" {
        return Err(Failure::new(format!("status {code}"), format!("upgrade refused: {line:?}")));
    }
    let header = |name: &str| {
        lines.clone().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    };
    if !header("upgrade").is_some_and(|u| u.eq_ignore_ascii_case("websocket")) {
        return Err(Failure::new("protocol", "101 without Upgrade: websocket"));
    }
    match header("sec-websocket-accept") {
        Some(a) if a == ACCEPT => Ok(()),
        other => Err(Failure::new("protocol", format!("Sec-WebSocket-Accept {other:?}, expected {ACCEPT:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(head: &str) -> String {
        switched(head.as_bytes()).err().map(|f| f.kind.into_owned()).unwrap_or_else(|| "ok".into())
    }

    #[test]
    fn a_101_with_the_right_accept_is_an_open_websocket() {
        let ok = format!("HTTP/1.1 101 Switching Protocols\r\nupgrade: WebSocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {ACCEPT}\r\n\r\n");
        assert_eq!(kind(&ok), "ok");
        assert_eq!(head_end(format!("{ok}\x01\x00").as_bytes()), Some(ok.len()), "frames may follow the head");
        assert_eq!(head_end(b"HTTP/1.1 101 Switching Protocols\r\n"), None);
    }

    #[test]
    fn a_refusal_or_a_wrong_answer_is_an_error_of_its_own_kind() {
        assert_eq!(kind("HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n"), "status 403");
        assert_eq!(kind("HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n"), "protocol");
        assert_eq!(
            kind("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: x\r\n\r\n"),
            "protocol"
        );
        assert_eq!(kind("SSH-2.0-OpenSSH\r\n\r\n"), "protocol");
        assert!(request("/ws", "localhost").contains(&format!("Sec-WebSocket-Key: {KEY}\r\n")));
    }
}
