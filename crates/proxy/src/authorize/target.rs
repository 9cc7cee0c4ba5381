//! The request target, read once and the same way for authorization and
//! for the upstream: the path is normalized (unreserved characters
//! percent-decoded, dot segments resolved, percent-encodings in upper case),
//! routes are matched on the normalized path, and exactly that path is
//! forwarded. What common upstreams could read differently from us is
//! refused (docs/proxy.md, "Paths").
use http::Method;

/// The methods RFC 9110 and RFC 5789 define, the only tokens accepted
/// unless a route lists another one in `methods`.
pub const STANDARD_METHODS: [Method; 9] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::CONNECT,
    Method::OPTIONS,
    Method::TRACE,
    Method::PATCH,
];

pub fn is_standard(m: &Method) -> bool {
    STANDARD_METHODS.contains(m)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Normalizes an origin-form path (without its query), or says why it is
/// refused. Segments are split on raw `/` only; a `.` or `..` segment is
/// resolved as RFC 3986 section 5.2.4 does (`..` at the root stays at the
/// root); an empty segment other than the last (`//`) is refused.
pub fn normalize_path(raw: &str) -> Result<String, &'static str> {
    let b = raw.as_bytes();
    if b.first() != Some(&b'/') {
        return Err("path does not start with /");
    }
    let mut out = String::with_capacity(b.len());
    let mut i = 1;
    loop {
        let seg_end = b[i..].iter().position(|c| *c == b'/').map_or(b.len(), |p| i + p);
        let last = seg_end == b.len();
        let start = out.len();
        out.push('/');
        let mut encoded_dot = false;
        let mut high_escapes = false;
        let mut j = i;
        while j < seg_end {
            let c = b[j];
            match c {
                b'%' => {
                    let (Some(hi), Some(lo)) =
                        (b.get(j + 1).copied().and_then(hex), b.get(j + 2).copied().and_then(hex))
                    else {
                        return Err("malformed percent-encoding");
                    };
                    let v = hi << 4 | lo;
                    match v {
                        b'/' => return Err("encoded slash (%2F)"),
                        b'\\' => return Err("encoded backslash (%5C)"),
                        0 => return Err("encoded NUL (%00)"),
                        0x01..=0x1F | 0x7F => return Err("encoded control character"),
                        b' ' => return Err("encoded whitespace (%20)"),
                        b';' => return Err("encoded ; (%3B)"),
                        b'%' if b.get(j + 3).copied().and_then(hex).is_some()
                            && b.get(j + 4).copied().and_then(hex).is_some() =>
                        {
                            return Err("double percent-encoding (%25 followed by hex digits)")
                        }
                        _ if unreserved(v) => {
                            encoded_dot |= v == b'.';
                            out.push(v as char);
                        }
                        _ => {
                            high_escapes |= v >= 0x80;
                            out.push('%');
                            out.push(HEX[(v >> 4) as usize] as char);
                            out.push(HEX[(v & 15) as usize] as char);
                        }
                    }
                    j += 3;
                }
                b'\\' => return Err("backslash in path"),
                b';' => return Err("; path parameter"),
                0 => return Err("NUL in path"),
                0x01..=0x20 | 0x7F => return Err("control character or whitespace in path"),
                0x80..=0xFF => return Err("raw non-ASCII byte in path (percent-encode it)"),
                _ => {
                    out.push(c as char);
                    j += 1;
                }
            }
        }
        let seg = &out[start + 1..];
        // `%25` may meet hex digits only after decoding (`%252%66` → `%252f`):
        // checked on what is forwarded.
        if seg
            .as_bytes()
            .windows(5)
            .any(|w| w[..3].eq_ignore_ascii_case(b"%25") && hex(w[3]).is_some() && hex(w[4]).is_some())
        {
            return Err("double percent-encoding (%25 followed by hex digits)");
        }
        if high_escapes {
            check_encoded_text(seg)?;
        }
        let dot = seg == "." || seg == "..";
        if dot && encoded_dot {
            return Err("encoded dot segment (%2E)");
        }
        if seg == ".." {
            // Drop this segment and the one before it (each kept segment
            // starts with its '/').
            out.truncate(start);
            out.truncate(out.rfind('/').unwrap_or(0));
        } else if seg == "." {
            out.truncate(start);
        } else if seg.is_empty() && !last {
            return Err("empty path segment (//)");
        }
        if last {
            if dot {
                // `/a/..` is `/`, `/a/.` is `/a/`: the dot segment leaves a slash.
                out.push('/');
            }
            break;
        }
        i = seg_end + 1;
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// Percent-encoded non-ASCII bytes in a (normalized) segment: each run
/// must be UTF-8 (else a Latin-1 upstream reads `%A0` as a no-break space)
/// without whitespace or control characters (`%C2%A0`, `%E3%80%80`: many
/// servers trim Unicode whitespace).
fn check_encoded_text(seg: &str) -> Result<(), &'static str> {
    let b = seg.as_bytes();
    let mut run: Vec<u8> = Vec::new();
    let mut i = 0;
    loop {
        let escaped = (b.get(i) == Some(&b'%')).then(|| hex(b[i + 1]).zip(hex(b[i + 2])).map(|(h, l)| h << 4 | l));
        match escaped.flatten() {
            Some(v) if v >= 0x80 => {
                run.push(v);
                i += 3;
                continue;
            }
            _ => {}
        }
        if !run.is_empty() {
            let text = std::str::from_utf8(&run).map_err(|_| "percent-encoded bytes that are not UTF-8")?;
            if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err("encoded Unicode whitespace or control character");
            }
            run.clear();
        }
        if i >= b.len() {
            return Ok(());
        }
        i += if escaped.is_some() { 3 } else { 1 };
    }
}

/// What the proxy authorizes and forwards for one request.
#[derive(Debug, PartialEq, Eq)]
pub enum Target {
    /// A path (normalized) and the query exactly as sent.
    Origin { path: String, query: Option<String> },
    /// `CONNECT host:port`.
    Authority(http::uri::Authority),
}

impl Target {
    /// The URI sent to the upstream: origin form, or authority form for CONNECT.
    pub fn to_uri(&self) -> Result<http::Uri, String> {
        let s = match self {
            Target::Origin { path, query: Some(q) } => format!("{path}?{q}"),
            Target::Origin { path, query: None } => path.clone(),
            Target::Authority(a) => a.to_string(),
        };
        http::Uri::try_from(s).map_err(|e| format!("bad request URI: {e}"))
    }

    /// The path routes are matched on; CONNECT has none.
    pub fn path(&self) -> &str {
        match self {
            Target::Origin { path, .. } => path,
            Target::Authority(_) => "",
        }
    }
}

/// Reads the request target. `http2`: the URI was built from `:scheme`,
/// `:authority` and `:path`, so a scheme is no sign of absolute form.
pub fn parse_target(method: &Method, uri: &http::Uri, http2: bool) -> Result<Target, &'static str> {
    if method == Method::CONNECT {
        // Authority form: host:port and nothing else.
        return match (uri.authority(), uri.path_and_query()) {
            (Some(a), None) if http2 || uri.scheme().is_none() => Ok(Target::Authority(a.clone())),
            (Some(a), Some(pq)) if http2 && pq.as_str().is_empty() => Ok(Target::Authority(a.clone())),
            _ => Err("CONNECT needs an authority-form target (host:port)"),
        };
    }
    if !http2 {
        match (uri.scheme_str(), uri.authority()) {
            (None, None) => {}
            // Absolute form: its path is read like any other.
            (Some("http" | "https"), Some(_)) => {}
            (Some(_), _) => return Err("absolute-form target with a scheme other than http or https"),
            (None, Some(_)) => return Err("authority-form target without CONNECT"),
        }
    }
    let Some(pq) = uri.path_and_query() else {
        return Err("no path in the request target");
    };
    if pq.path() == "*" {
        return Err("asterisk-form target (OPTIONS *)");
    }
    Ok(Target::Origin { path: normalize_path(pq.path())?, query: pq.query().map(str::to_string) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreserved_encodings_decode_and_dot_segments_resolve() {
        for (raw, norm) in [
            ("/", "/"),
            ("/admin/secret.txt", "/admin/secret.txt"),
            ("/%61dmin/x", "/admin/x"),
            ("/%41DMIN/x", "/ADMIN/x"),
            ("/a%7e%2D%5f%2e", "/a~-_."),
            ("/public/../admin/x", "/admin/x"),
            ("/./admin", "/admin"),
            ("/../admin", "/admin"),
            ("/a/..", "/"),
            ("/a/.", "/a/"),
            ("/a/b/../../c", "/c"),
            ("/a/", "/a/"),
            ("/a.b/c..d/...", "/a.b/c..d/..."),
            ("/.well-known/x", "/.well-known/x"),
            ("/caf%c3%a9", "/caf%C3%A9"),
            ("/q%3fx", "/q%3Fx"),
            ("/file%2etxt", "/file.txt"),
            ("/%25zz", "/%25zz"),
            ("/adm%c4%b1n/%e4%b8%a0x%3F%C3%A9", "/adm%C4%B1n/%E4%B8%A0x%3F%C3%A9"),
        ] {
            assert_eq!(normalize_path(raw).as_deref(), Ok(norm), "{raw}");
        }
    }

    #[test]
    fn what_upstreams_could_read_differently_is_refused() {
        for (raw, why) in [
            ("/a%2fb", "encoded slash"),
            ("/a%2Fb", "encoded slash"),
            ("/a\\b", "backslash"),
            ("/a%5cb", "encoded backslash"),
            ("/%2e%2e/x", "encoded dot segment"),
            ("/x/.%2E", "encoded dot segment"),
            ("/x/%2e", "encoded dot segment"),
            ("/admin%00/x", "encoded NUL"),
            ("/admin%20/x", "encoded whitespace"),
            ("/admin%09/x", "encoded control"),
            ("/admin;x/y", "; path parameter"),
            ("/public/..;/admin/x", "; path parameter"),
            ("/admin%3bx/y", "encoded ;"),
            ("/public/%252e%252e/admin/x", "double percent-encoding"),
            ("/%252F", "double percent-encoding"),
            ("/%2561dmin", "double percent-encoding"),
            ("/admin%252%66x", "double percent-encoding"),
            ("/%25%36%31dmin", "double percent-encoding"),
            ("//admin", "empty path segment"),
            ("/a//b", "empty path segment"),
            ("/%2", "malformed"),
            ("/a%", "malformed"),
            ("/a%zz", "malformed"),
            ("/a b", "whitespace"),
            ("/a\u{e9}", "non-ASCII"),
            ("/admin%a0/x", "not UTF-8"),
            ("/admin%c3/x", "not UTF-8"),
            ("/admin%c2%a0/x", "Unicode whitespace"),
            ("/admin%e3%80%80/x", "Unicode whitespace"),
            ("/a%c3%a9%c2%85", "Unicode whitespace"),
            ("admin", "does not start"),
        ] {
            let err = normalize_path(raw).unwrap_err();
            assert!(err.contains(why), "{raw}: {err}");
        }
    }

    #[test]
    fn normalizing_is_idempotent_and_leaves_no_dot_or_empty_segment() {
        let atoms = ["/", ".", "a", "%2e", "%2E", "%61", "%41", "%2F", ";", "%25", "%c3%a9", "~"];
        let mut frontier = vec![String::from("/")];
        let mut checked = 0;
        for _ in 0..5 {
            let mut next = Vec::new();
            for p in &frontier {
                for a in atoms {
                    let q = format!("{p}{a}");
                    if let Ok(n) = normalize_path(&q) {
                        assert_eq!(normalize_path(&n).as_deref(), Ok(n.as_str()), "{q}");
                        assert!(n.starts_with('/'), "{q} → {n}");
                        let segs: Vec<&str> = n[1..].split('/').collect();
                        for (i, s) in segs.iter().enumerate() {
                            assert!(*s != "." && *s != "..", "{q} → {n}");
                            assert!(!s.is_empty() || i == segs.len() - 1, "{q} → {n}");
                        }
                        assert!(!n.contains(';') && !n.contains("%2F") && !n.contains("%2E"), "{q} → {n}");
                    }
                    checked += 1;
                    next.push(q);
                }
            }
            frontier = next;
        }
        assert!(checked > 100_000, "{checked}");
    }

    #[test]
    fn target_forms() {
        let t = |m: &Method, s: &str, h2| parse_target(m, &s.parse().unwrap(), h2);
        assert_eq!(
            t(&Method::GET, "/a/../b?x=%2F;y", false),
            Ok(Target::Origin { path: "/b".into(), query: Some("x=%2F;y".into()) })
        );
        assert_eq!(
            t(&Method::GET, "http://h/%61dmin/x", false),
            Ok(Target::Origin { path: "/admin/x".into(), query: None })
        );
        assert!(t(&Method::GET, "http://h/a%2fb", false).is_err());
        assert!(t(&Method::GET, "ftp://h/x", false).is_err());
        assert!(t(&Method::GET, "h:443", false).is_err());
        assert!(t(&Method::OPTIONS, "*", false).is_err());
        assert!(matches!(t(&Method::CONNECT, "h:443", false), Ok(Target::Authority(_))));
        assert!(t(&Method::CONNECT, "/x", false).is_err());
        assert_eq!(t(&Method::GET, "https://h/%61/", true), Ok(Target::Origin { path: "/a/".into(), query: None }));
        assert_eq!(t(&Method::GET, "/x?", false).unwrap().to_uri().unwrap().to_string(), "/x?");
    }
}
