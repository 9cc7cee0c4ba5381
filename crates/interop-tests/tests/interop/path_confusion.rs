//! Path confusion: `ambos proxy` with `/admin/**` for `cn:admin` only and a
//! catch-all `/**` for any client, in front of three upstreams that each
//! read paths their own way. No request variant of an unprivileged client,
//! over HTTP/1.1 (raw bytes through Python ssl) or HTTP/2 (curl
//! `--request-target`), may get the admin secret; every variant the proxy
//! refuses gets 400 and an audit line with the reason.
use ambos_interop_tests::{free_port, require, run, wait_for_port, ChildGuard, Daemon, ProxyToml, TestCa};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SECRET: &str = "ADMIN-SECRET-7f3a9c";

/// An upstream that reads paths like a Servlet container (`;` parameters
/// stripped from each segment, then percent-decoded, here twice, `\` read
/// as `/`, whitespace and NUL trimmed from segments), or one that decodes
/// once and ignores case. Serves files under ROOT; any method is GET.
const UPSTREAM_PY: &str = include_str!("../../scripts/path_confusion_upstream.py");

/// Sends each request of a JSON list `[[method, target], ...]` as raw bytes
/// (latin-1) over its own TLS connection, HTTP/1.1; prints a JSON list of
/// `[status, body]` (status 0: no response).
const CLIENT_PY: &str = include_str!("../../scripts/path_confusion_client.py");

/// What the proxy is expected to do with a variant (HTTP/1.1).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    /// Refused by the proxy: 400 with an audit reason.
    Refused,
    /// Refused with 405 (CONNECT).
    NotAllowed,
    /// Read as an admin path: 403 for the unprivileged client.
    Admin,
    /// Forwarded (not an admin path); the upstream answers what it likes.
    Forwarded,
    /// Not even a valid HTTP/1.1 request line or URI: 400 from the HTTP
    /// parser, before routing, audited as `request head does not parse`.
    Parser,
}
use Expect::*;

fn variants() -> Vec<(&'static str, &'static str, Expect)> {
    vec![
        // Case and unreserved encodings.
        ("GET", "/admin/secret.txt", Admin),
        ("GET", "/ADMIN/secret.txt", Admin),
        ("GET", "/Admin/secret.txt", Admin),
        ("GET", "/admin/SECRET.TXT", Admin),
        ("GET", "/%61dmin/secret.txt", Admin),
        ("GET", "/%41DMIN/secret.txt", Admin),
        ("GET", "/admin/%73ecret.txt", Admin),
        ("GET", "/%61%64%6d%69%6e/secret.txt", Admin),
        ("GET", "/%2561dmin/secret.txt", Refused),
        ("GET", "/%252561dmin/secret.txt", Refused),
        ("GET", "/%25%36%31dmin/secret.txt", Refused),
        ("GET", "/admin%252%66secret.txt", Refused),
        ("GET", "/adm%C4%B1n/secret.txt", Forwarded),
        ("GET", "/%EF%BD%81dmin/secret.txt", Forwarded),
        // Encoded and raw separators.
        ("GET", "/admin%2fsecret.txt", Refused),
        ("GET", "/admin%2Fsecret.txt", Refused),
        ("GET", "/%2fadmin/secret.txt", Refused),
        ("GET", "/public/..%2fadmin/secret.txt", Refused),
        ("GET", "/public%2f..%2fadmin%2fsecret.txt", Refused),
        ("GET", "/admin%252fsecret.txt", Refused),
        ("GET", "/admin\\secret.txt", Refused),
        ("GET", "/public\\..\\admin\\secret.txt", Refused),
        ("GET", "/admin%5csecret.txt", Refused),
        ("GET", "/public/..%5cadmin/secret.txt", Refused),
        ("GET", "/admin%255csecret.txt", Refused),
        ("GET", "\\admin\\secret.txt", Parser),
        // Dot segments, raw and encoded.
        ("GET", "/public/../admin/secret.txt", Admin),
        ("GET", "/public/./../admin/secret.txt", Admin),
        ("GET", "/./admin/secret.txt", Admin),
        ("GET", "/../admin/secret.txt", Admin),
        ("GET", "/admin/./secret.txt", Admin),
        ("GET", "/admin/x/../secret.txt", Admin),
        ("GET", "/public/%2e%2e/admin/secret.txt", Refused),
        ("GET", "/public/%2E%2E/admin/secret.txt", Refused),
        ("GET", "/public/.%2e/admin/secret.txt", Refused),
        ("GET", "/public/%2e./admin/secret.txt", Refused),
        ("GET", "/public/%2e/../admin/secret.txt", Refused),
        ("GET", "/public/%252e%252e/admin/secret.txt", Refused),
        ("GET", "/public/...;/admin/secret.txt", Refused),
        ("GET", "/public/.../admin/secret.txt", Forwarded),
        ("GET", "//admin/secret.txt", Refused),
        ("GET", "///admin/secret.txt", Refused),
        ("GET", "/public//../admin/secret.txt", Refused),
        // `;` path parameters.
        ("GET", "/public/..;/admin/secret.txt", Refused),
        ("GET", "/public/..;x=1/admin/secret.txt", Refused),
        ("GET", "/public/%2e%2e;/admin/secret.txt", Refused),
        ("GET", "/admin;x/secret.txt", Refused),
        ("GET", "/admin;/secret.txt", Refused),
        ("GET", "/;/admin/secret.txt", Refused),
        ("GET", "/;x=y/admin/secret.txt", Refused),
        ("GET", "/admin/secret.txt;x", Refused),
        ("GET", "/admin%3bx/secret.txt", Refused),
        ("GET", "/admin%253bx/secret.txt", Refused),
        // Whitespace, NUL and control characters.
        ("GET", "/admin%20/secret.txt", Refused),
        ("GET", "/%20admin/secret.txt", Refused),
        ("GET", "/admin%09/secret.txt", Refused),
        ("GET", "/admin%00/secret.txt", Refused),
        ("GET", "/admin%2500/secret.txt", Refused),
        ("GET", "/admin%0a/secret.txt", Refused),
        ("GET", "/admin%0d%0a/secret.txt", Refused),
        ("GET", "/admin%7f/secret.txt", Refused),
        ("GET", "/admin%a0/secret.txt", Refused),
        ("GET", "/admin%c2%a0/secret.txt", Refused),
        ("GET", "/admin%c2%85/secret.txt", Refused),
        ("GET", "/admin%e3%80%80/secret.txt", Refused),
        ("GET", "/admin%e2%80%8b/secret.txt", Forwarded),
        ("GET", "/admin /secret.txt", Parser),
        ("GET", "/admin\u{0}/secret.txt", Parser),
        ("GET", "/admin\t/secret.txt", Parser),
        ("GET", "/admin\u{b}/secret.txt", Parser),
        // Absolute form: the path is read the same way.
        ("GET", "http://localhost/admin/secret.txt", Admin),
        ("GET", "https://localhost/ADMIN/secret.txt", Admin),
        ("GET", "http://localhost/%61dmin/secret.txt", Admin),
        ("GET", "http://localhost/public/../admin/secret.txt", Admin),
        ("GET", "http://localhost/public/%2e%2e/admin/secret.txt", Refused),
        ("GET", "http://localhost/admin%2fsecret.txt", Refused),
        ("GET", "http://localhost/public/..;/admin/secret.txt", Refused),
        ("GET", "ftp://localhost/admin/secret.txt", Refused),
        // Authority and asterisk forms, methods.
        ("GET", "localhost:443", Refused),
        ("CONNECT", "localhost:443", NotAllowed),
        ("CONNECT", "/admin/secret.txt", NotAllowed),
        ("OPTIONS", "*", Refused),
        ("get", "/%61dmin/secret.txt", Refused),
        ("Get", "/public/index.txt", Refused),
        ("FOO", "/public/index.txt", Refused),
        // Query and fragment are not the path.
        ("GET", "/admin/secret.txt?x=1", Admin),
        ("GET", "/public/index.txt?/../admin/secret.txt", Forwarded),
        ("GET", "/public/index.txt#/../../admin/secret.txt", Forwarded),
        ("GET", "/public/index.txt", Forwarded),
    ]
}

struct Proxy {
    port: u16,
    metrics: u16,
    audit: PathBuf,
    _daemon: Daemon,
}

fn start_proxy(ca: &TestCa, tag: &str, upstream: u16) -> Proxy {
    // The metrics listener logs its configured address, not the bound one.
    let metrics = free_port();
    let audit = ca.dir().join(format!("audit-{tag}.jsonl"));
    let config =
        ProxyToml::http(upstream).route("/admin/**", "cn:admin").audit(&audit, "").metrics(metrics).to_string();
    let daemon = Daemon::proxy(ca.dir(), &config, &[]);
    Proxy { port: daemon.port, metrics, audit, _daemon: daemon }
}

fn start_upstream(dir: &Path, kind: &str, root: &Path) -> (u16, ChildGuard) {
    let port = free_port();
    let log = dir.join(format!("upstream-{kind}.log"));
    let mut cmd = Command::new("python3");
    if kind == "http.server" {
        cmd.args(["-m", "http.server", &port.to_string(), "--bind", "127.0.0.1", "--directory"]).arg(root);
    } else {
        cmd.arg(dir.join("upstream.py")).args([kind, &port.to_string()]).arg(root);
    }
    let mut child =
        cmd.stdout(Stdio::null()).stderr(std::fs::File::create(&log).unwrap()).spawn().expect("start python3 upstream");
    wait_for_port(port, &mut child, &log);
    (port, ChildGuard(child))
}

/// One raw HTTP/1.1 request straight to an upstream (no proxy): (status, body).
fn direct(port: u16, target: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut data = Vec::new();
    s.read_to_end(&mut data).unwrap_or_else(|e| panic!("reading {target} from the upstream: {e}"));
    let text = String::from_utf8_lossy(&data).to_string();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

fn audit_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad audit line {l}: {e}")))
        .collect()
}

/// The path the proxy records for a target: the part before `?`/`#`,
/// without scheme and authority.
fn audited_path(target: &str) -> String {
    let t = target.split(['?', '#']).next().unwrap_or("");
    match t.split_once("://") {
        Some((_, rest)) => format!("/{}", rest.split_once('/').map(|(_, p)| p).unwrap_or("")),
        // Authority form has no path.
        None if !t.starts_with('/') && t != "*" => String::new(),
        None => t.to_string(),
    }
}

/// curl over HTTP/2 as `who`, with `target` sent as `:path` verbatim:
/// (HTTP status, 0 when none, and body).
fn curl_h2(ca: &TestCa, who: &str, port: u16, method: &str, target: &str) -> (u16, String) {
    let r = ca.curl(
        Some(who),
        &format!("https://localhost:{port}/"),
        &["--http2", "-X", method, "--request-target", target],
    );
    (r.status.parse().unwrap_or(0), r.body)
}

/// `client.py` (written into the CA dir) as `who`: sends each `[method,
/// target]` of the JSON file `requests` as raw HTTP/1.1 bytes; returns
/// (status, body) per request.
fn client_py(ca: &TestCa, port: u16, who: &str, requests: &Path) -> Vec<(u16, String)> {
    let out = run(Command::new("python3")
        .arg(ca.dir().join("client.py"))
        .arg(port.to_string())
        .args(ca.client_files(who))
        .arg(requests));
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {} {}", out.stdout, out.stderr))
}

// One test per upstream kind, so that they run side by side and the first
// failure does not hide the others.
#[test]
fn no_path_variant_reaches_the_admin_secret_without_the_admin_identity_through_http_server() {
    no_path_variant_reaches_the_admin_secret("http.server");
}

#[test]
fn no_path_variant_reaches_the_admin_secret_without_the_admin_identity_through_a_servlet_upstream() {
    no_path_variant_reaches_the_admin_secret("servlet");
}

#[test]
fn no_path_variant_reaches_the_admin_secret_without_the_admin_identity_through_a_case_insensitive_upstream() {
    no_path_variant_reaches_the_admin_secret("nocase");
}

/// Every variant of the admin path, sent by the unprivileged client through
/// the proxy in front of a `kind` upstream, over HTTP/1.1 and HTTP/2.
fn no_path_variant_reaches_the_admin_secret(kind: &str) {
    require("python3");
    require("curl");
    let ca = TestCa::with_localhost(&["admin", "user"]);
    let root = ca.dir().join("www");
    std::fs::create_dir_all(root.join("admin")).unwrap();
    std::fs::create_dir_all(root.join("public")).unwrap();
    std::fs::write(root.join("admin/secret.txt"), SECRET).unwrap();
    std::fs::write(root.join("public/index.txt"), "public\n").unwrap();
    ca.write("upstream.py", UPSTREAM_PY);
    ca.write("client.py", CLIENT_PY);
    let variants = variants();
    assert!(variants.len() >= 60, "{} variants", variants.len());
    let list: Vec<(&str, &str)> = variants.iter().map(|(m, t, _)| (*m, *t)).collect();
    let variants_file = ca.write("variants.json", serde_json::to_string(&list).unwrap());

    let mut table = String::new();
    let (up, _upstream) = start_upstream(ca.dir(), kind, &root);
    // Each upstream does read some variant as the admin path: without
    // the proxy's normalization they would leak.
    let leaky = match kind {
        "http.server" => "/%61dmin/secret.txt",
        "servlet" => "/admin;x/secret.txt",
        _ => "/ADMIN/secret.txt",
    };
    assert_eq!(direct(up, leaky), (200, SECRET.to_string()), "{kind} reads {leaky} as the admin path");
    let proxy = start_proxy(&ca, kind, up);

    // The admin identity gets the secret by the plain path, both protocols.
    let got = client_py(&ca, proxy.port, "admin", &ca.write("admin.json", r#"[["GET", "/admin/secret.txt"]]"#));
    assert_eq!(got, vec![(200, SECRET.to_string())], "{kind}: admin over HTTP/1.1");
    assert_eq!(curl_h2(&ca, "admin", proxy.port, "GET", "/admin/secret.txt"), (200, SECRET.to_string()));

    // The unprivileged client, HTTP/1.1 with raw bytes.
    let h1 = client_py(&ca, proxy.port, "user", &variants_file);
    assert_eq!(h1.len(), variants.len());
    // The same over HTTP/2 (curl cannot put a NUL in an argument).
    let h2: Vec<Option<(u16, String)>> =
        variants.iter().map(|(m, t, _)| (!t.contains('\0')).then(|| curl_h2(&ca, "user", proxy.port, m, t))).collect();

    let deadline = Instant::now() + Duration::from_secs(5);
    let mut refused_h1 = 0;
    for (((method, target, expect), (status, body)), h2) in variants.iter().zip(&h1).zip(&h2) {
        let what = format!("{kind}: {method} {target:?}");
        assert!(!body.contains(SECRET), "{what} got the admin secret over HTTP/1.1");
        if let Some((_, body2)) = h2 {
            assert!(!body2.contains(SECRET), "{what} got the admin secret over HTTP/2");
        }
        let ours = !body.is_empty() || *status != 400;
        let got = match (*status, body.as_str()) {
            (400, "bad request\n") => Refused,
            (405, _) => NotAllowed,
            (403, _) => Admin,
            (400, _) if !ours => Parser,
            _ => Forwarded,
        };
        if got != *expect {
            std::thread::sleep(Duration::from_millis(300));
            let last: Vec<_> = audit_lines(&proxy.audit).into_iter().filter(|l| l["method"] == *method).collect();
            panic!(
                "{what}: expected {expect:?}, got HTTP/1.1 status {status}, body {body:?}; last audit line {last:?}"
            );
        }
        if kind == "http.server" {
            let h2s = h2.as_ref().map(|(s, _)| s.to_string()).unwrap_or_else(|| "not sent".into());
            table.push_str(&format!("{method} {target:?} | {expect:?} | h1 {status} | h2 {h2s}\n"));
        }
        // Every refusal by the proxy (either protocol) is audited with a reason
        // (the parser's refusals are checked below, by count: they have no path).
        let mut wanted: Vec<u16> = Vec::new();
        if matches!(got, Refused | NotAllowed) {
            refused_h1 += 1;
            wanted.push(*status);
        }
        if let Some((s2 @ (400 | 405), b2)) = h2 {
            if b2 == "bad request\n" || b2 == "method not allowed\n" {
                wanted.push(*s2);
            }
        }
        let path = audited_path(target);
        for s in wanted {
            loop {
                let found = audit_lines(&proxy.audit).iter().any(|l| {
                    l["status"] == s
                        && l["decision"] == "deny"
                        && l["path"].as_str() == Some(path.as_str())
                        && l["reason"].as_str().is_some_and(|r| !r.is_empty())
                });
                if found {
                    break;
                }
                assert!(Instant::now() < deadline, "{what}: no audit line with status {s} for path {path:?}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    assert!(refused_h1 >= 40, "{kind}: {refused_h1} refused");
    // Heads the HTTP parser refused (400 before routing) are audited too.
    let parser = variants.iter().filter(|v| v.2 == Parser).count();
    loop {
        let n = audit_lines(&proxy.audit)
            .iter()
            .filter(|l| {
                l["status"] == 400
                    && l["decision"] == "deny"
                    && l["reason"].as_str().is_some_and(|r| r.starts_with("request head does not parse"))
            })
            .count();
        if n >= parser {
            break;
        }
        assert!(Instant::now() < deadline, "{kind}: {n} audit lines for {parser} unparsable heads");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Refusals before routing are counted (HTTP/1.1 and HTTP/2 together).
    let text =
        run(Command::new("curl").arg("-sS").arg(format!("http://127.0.0.1:{}/metrics", proxy.metrics))).ok().stdout;
    let refused: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("ambos_proxy_requests_total{route=\"\",decision=\"refused\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{kind}: no refused counter in\n{text}"));
    assert!(refused >= refused_h1 as f64, "{kind}: {refused} counted, {refused_h1} refused over HTTP/1.1");
    println!("{table}");
}

#[test]
fn the_upstream_gets_exactly_the_normalized_path_that_was_authorized() {
    require("python3");
    require("curl");
    let ca = TestCa::with_localhost(&["user"]);
    ca.write("client.py", CLIENT_PY);
    let proxy = start_proxy(&ca, "echo", ambos_interop_tests::start_http_upstream());
    let cases = [
        ("/%61pi/../public/%7Ex?q=%2F;a/../b", "/public/~x?q=%2F;a/../b"),
        ("/Public/./a%c3%a9%2a", "/Public/a%C3%A9%2A"),
        ("/a/b/../../c/", "/c/"),
        ("/a/..", "/"),
        ("/../x", "/x"),
        ("http://localhost/x/../y?z", "/y?z"),
        ("/x?", "/x?"),
    ];
    let list: Vec<(&str, &str)> = cases.iter().map(|(t, _)| ("GET", *t)).collect();
    let got = client_py(&ca, proxy.port, "user", &ca.write("echo.json", serde_json::to_string(&list).unwrap()));
    for ((target, want), (status, body)) in cases.iter().zip(&got) {
        assert_eq!(*status, 200, "{target}: {body}");
        let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{target}: {body}: {e}"));
        assert_eq!(v["path"], *want, "{target}");
    }
    // HTTP/2 the same.
    let (status, body) = curl_h2(&ca, "user", proxy.port, "GET", "/%61pi/../public/%7Ex?q=%2F");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["path"], "/public/~x?q=%2F");
}
