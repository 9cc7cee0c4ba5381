//! A hostile client with a valid, unprivileged certificate against
//! `ambos proxy` in front of a WSGI upstream (python3 wsgiref, which folds
//! `_` and `-` in header names into one `HTTP_*` variable): it never gets
//! its own `X-Forwarded-Client-Cert` through under any spelling; Host,
//! `Connection` and `Transfer-Encoding` tricks are refused; a malformed
//! request body is the client's 400, not an upstream error.
use ambos_interop_tests::{ambos_bin, free_port, require, run, wait_for_port, ChildGuard, Daemon, ProxyToml, TestCa};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The WSGI app: answers JSON with every `HTTP_*` variable plus
/// `CONTENT_LENGTH`, the path and the body it read (the whole
/// `Content-Length`); each request is also appended to `LOG` as a line.
const WSGI_UPSTREAM: &str = include_str!("../../scripts/header_attacks_wsgi_upstream.py");

/// Sends raw bytes over TLS (so nothing fixes the request up) and prints
/// what came back: `PORT CA CERT KEY REQUEST_FILE [close]`. With `close`
/// the connection is closed right after sending (a truncated body).
const RAW_CLIENT: &str = include_str!("../../scripts/header_attacks_raw_client.py");

const ADMIN: &str = "spiffe://acme.test/admin";
const WEB: &str = "spiffe://acme.test/web";

struct Fixture {
    ca: TestCa,
    upstream_port: u16,
    upstream_log: PathBuf,
    _upstream: ChildGuard,
    port: u16,
    metrics: u16,
    proxy: Option<Daemon>,
    audit: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        require("python3");
        require("curl");
        let ca = TestCa::with_localhost(&[]);
        ca.issue("client", "admin", &["--spiffe", ADMIN]);
        ca.issue("client", "web", &["--spiffe", WEB]);
        let script = ca.write("wsgi_upstream.py", WSGI_UPSTREAM);
        ca.write("raw_client.py", RAW_CLIENT);
        let upstream_log = ca.dir().join("upstream.jsonl");
        let upstream_port = free_port();
        let stderr = std::fs::File::create(ca.dir().join("upstream.err")).unwrap();
        let mut child = Command::new("python3")
            .arg(&script)
            .arg(upstream_port.to_string())
            .arg(&upstream_log)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        wait_for_port(upstream_port, &mut child, &ca.dir().join("upstream.err"));
        let audit = ca.dir().join("audit.jsonl");
        Fixture {
            ca,
            upstream_port,
            upstream_log,
            _upstream: ChildGuard(child),
            port: 0,
            metrics: 0,
            proxy: None,
            audit,
        }
    }

    /// (Re)starts the proxy on fresh ports with `[headers] underscores`
    /// (None: the default).
    fn start(&mut self, underscores: Option<&str>) {
        self.start_with(underscores, "");
    }

    /// The same, with extra `[listen]` lines.
    fn start_with(&mut self, underscores: Option<&str>, listen: &str) {
        let headers = underscores.map(|u| format!("[headers]\nunderscores = \"{u}\"\n")).unwrap_or_default();
        self.launch(&headers, listen);
    }

    /// (Re)starts the proxy with `headers` as its whole `[headers]` section.
    fn launch(&mut self, headers: &str, listen: &str) {
        self.proxy = None;
        if self.audit.exists() {
            std::fs::remove_file(&self.audit).unwrap();
        }
        // The metrics listener logs its configured address, not the bound one.
        self.metrics = free_port();
        let config = ProxyToml::http(self.upstream_port)
            .listen(listen)
            .section(headers)
            .route("/admin/**", ADMIN)
            .audit(Path::new("audit.jsonl"), "")
            .metrics(self.metrics)
            .to_string();
        let path = Daemon::proxy_config(self.ca.dir(), &config);
        run(Command::new(ambos_bin()).args(["proxy", "--check", "--config", path.to_str().unwrap()])).ok();
        let proxy = Daemon::proxy(self.ca.dir(), &config, &[]);
        self.port = proxy.port;
        self.proxy = Some(proxy);
    }

    /// `request` sent as raw bytes by the unprivileged client over
    /// HTTP/1.1; returns (status, body). Status "" when nothing came back.
    fn raw(&self, request: &str) -> (String, String) {
        let out = self.raw_run(request, false);
        let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
        let status = head.strip_prefix("HTTP/1.").and_then(|s| s.get(2..5)).unwrap_or("").to_string();
        (status, body.to_string())
    }

    fn raw_run(&self, request: &str, close: bool) -> String {
        let req = self.ca.write("request.bin", request);
        let mut cmd = Command::new("python3");
        cmd.arg(self.ca.dir().join("raw_client.py"))
            .arg(self.port.to_string())
            .arg(self.ca.path("ca.crt"))
            .arg(self.ca.path("web.crt"))
            .arg(self.ca.path("web.key"))
            .arg(req);
        if close {
            cmd.arg("close");
        }
        let out = run(&mut cmd);
        assert_eq!(out.code, 0, "raw client: {}", out.stderr);
        out.stdout
    }

    /// curl --http2 as the unprivileged client with extra headers; (status, body).
    fn h2(&self, path: &str, headers: &[&str]) -> (String, String) {
        let mut args = vec!["--http2"];
        for h in headers {
            args.extend(["-H", h]);
        }
        let out = self.ca.curl(Some("web"), &format!("https://localhost:{}{path}", self.port), &args);
        assert_eq!(out.code, 0, "curl: {}", out.stderr);
        (out.status, out.body)
    }

    fn metrics(&self) -> String {
        run(Command::new("curl").args(["-sS", &format!("http://127.0.0.1:{}/metrics", self.metrics)])).ok().stdout
    }

    fn upstream_requests(&self) -> String {
        std::fs::read_to_string(&self.upstream_log).unwrap_or_default()
    }

    /// Waits (up to 5 s) for an audit line satisfying `pred`.
    fn wait_audit(&self, what: &str, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let text = std::fs::read_to_string(&self.audit).unwrap_or_default();
            if let Some(l) = text.lines().map(|l| serde_json::from_str(l).unwrap()).find(|l| pred(l)) {
                return l;
            }
            assert!(Instant::now() < deadline, "no audit line for {what}:\n{text}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Header lines a hostile client adds to claim the admin identity.
const SPOOFS: [&[&str]; 5] = [
    &["X_Forwarded_Client_Cert: URI=spiffe://acme.test/admin"],
    &["x_forwarded_client_cert: URI=spiffe://acme.test/admin"],
    &["X-Forwarded_Client-Cert: URI=spiffe://acme.test/admin"],
    &[
        "X-Forwarded-Client-Cert: URI=spiffe://acme.test/admin",
        "X_FORWARDED_CLIENT_CERT: URI=spiffe://acme.test/admin",
        "x-forwarded_client_cert: URI=spiffe://acme.test/admin",
        "X_Forwarded_Proto: http",
    ],
    &["X-Forwarded-Client-Cert: URI=spiffe://acme.test/admin", "x_forwarded_client_cert: Hash=evil"],
];

fn get(path: &str, headers: &[&str]) -> String {
    let mut r = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n");
    for h in headers {
        r.push_str(h);
        r.push_str("\r\n");
    }
    r.push_str("Connection: close\r\n\r\n");
    r
}

/// The upstream saw exactly the proxy's XFCC for the web client.
fn assert_only_ours(what: &str, body: &str) -> serde_json::Value {
    let v: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{what}: upstream said {body}: {e}"));
    let xfcc = v["HTTP_X_FORWARDED_CLIENT_CERT"].as_str().unwrap_or_else(|| panic!("{what}: no XFCC: {v}"));
    assert!(xfcc.starts_with("Hash=") && xfcc.ends_with(&format!(";URI={WEB}")), "{what}: {xfcc}");
    assert!(!xfcc.contains("admin") && !xfcc.contains("evil") && xfcc.matches("Hash=").count() == 1, "{what}: {xfcc}");
    assert_eq!(v["HTTP_X_FORWARDED_PROTO"], "https", "{what}: {v}");
    v
}

#[test]
fn client_sent_identity_headers_never_reach_a_wsgi_upstream_under_any_spelling() {
    let mut f = Fixture::new();
    // Default: underscores dropped (and counted); our names stripped whatever the spelling.
    f.start(None);
    for spoof in SPOOFS {
        let (status, body) = f.raw(&get("/hello", &[spoof, &["X_Custom: 1"][..]].concat()));
        assert_eq!(status, "200", "HTTP/1.1 {spoof:?}: {body}");
        let v = assert_only_ours(&format!("HTTP/1.1 {spoof:?}"), &body);
        assert!(v.get("HTTP_X_CUSTOM").is_none(), "underscore names are dropped by default: {v}");
        let (status, body) = f.h2("/hello", &[spoof, &["X_Custom: 1"][..]].concat());
        assert_eq!(status, "200", "HTTP/2 {spoof:?}: {body}");
        let v = assert_only_ours(&format!("HTTP/2 {spoof:?}"), &body);
        assert!(v.get("HTTP_X_CUSTOM").is_none(), "{v}");
    }
    // An unprivileged client does not reach /admin/** whatever it claims.
    let (status, _) = f.raw(&get("/admin/x", SPOOFS[3]));
    assert_eq!(status, "403");
    let dropped = f
        .metrics()
        .lines()
        .find(|l| l.starts_with("ambos_proxy_headers_dropped_total{reason=\"underscore\"}"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .unwrap_or(0.0);
    assert!(dropped >= 20.0, "dropped underscore headers counted: {dropped}");

    // allow: other underscore names go through, ours still never do.
    f.start(Some("allow"));
    for spoof in SPOOFS {
        let (status, body) = f.raw(&get("/hello", &[spoof, &["X_Custom: 1"][..]].concat()));
        assert_eq!(status, "200", "allow, HTTP/1.1 {spoof:?}: {body}");
        let v = assert_only_ours(&format!("allow, HTTP/1.1 {spoof:?}"), &body);
        assert_eq!(v["HTTP_X_CUSTOM"], "1", "{v}");
        let (status, body) = f.h2("/hello", spoof);
        assert_eq!(status, "200", "allow, HTTP/2 {spoof:?}: {body}");
        assert_only_ours(&format!("allow, HTTP/2 {spoof:?}"), &body);
    }

    // reject: any underscore name is a 400, audited; nothing reaches the upstream.
    f.start(Some("reject"));
    let before = f.upstream_requests().lines().count();
    for spoof in SPOOFS {
        let (status, body) = f.raw(&get("/rejected", spoof));
        assert_eq!(status, "400", "reject, HTTP/1.1 {spoof:?}: {body}");
        // Each set ends with an underscore name.
        let (status, body) = f.h2("/rejected", &spoof[spoof.len() - 1..]);
        assert_eq!(status, "400", "reject, HTTP/2 {spoof:?}: {body}");
    }
    let line = f.wait_audit("underscore refusal", |l| l["path"] == "/rejected");
    assert_eq!(line["reason"], "header name with an underscore", "{line}");
    assert_eq!(line["status"], 400);
    assert_eq!(line["decision"], "deny");
    let (status, body) = f.raw(&get("/hello", &["X-Custom: 1"]));
    assert_eq!(status, "200", "dashes are fine: {body}");
    assert_eq!(f.upstream_requests().lines().count(), before + 1, "refused requests never reach the upstream");
}

#[test]
fn host_connection_and_framing_tricks_are_refused_and_bad_bodies_are_the_clients_fault() {
    let mut f = Fixture::new();
    f.start(None);
    // Each refused request: what it is, its header lines and body, and the
    // audit reason. The Nth goes to /hN; one with a body is a POST.
    const CHUNKED_HELLO: &str = "5\r\nhello\r\n0\r\n\r\n";
    let refused = [
        ("two Host", "Host: localhost\r\nHost: localhost\r\n", "", "more than one Host"),
        ("two Hosts", "Host: localhost\r\nHost: admin.test\r\n", "", "more than one Host"),
        ("no Host", "", "", "no Host"),
        ("userinfo Host", "Host: admin@localhost\r\n", "", "malformed Host"),
        ("Connection: host", "Host: localhost\r\nConnection: host\r\n", "", "Connection"),
        ("Connection: close, Host", "Host: localhost\r\nConnection: close, Host\r\n", "", "Connection"),
        (
            "Connection: content-length",
            "Host: localhost\r\nConnection: Content-Length\r\nContent-Length: 2\r\n",
            "hi",
            "Connection",
        ),
        (
            "Connection: x_forwarded_client_cert",
            "Host: localhost\r\nConnection: x_forwarded_client_cert\r\n",
            "",
            "Connection",
        ),
        (
            "identity, chunked",
            "Host: localhost\r\nTransfer-Encoding: identity, chunked\r\n",
            CHUNKED_HELLO,
            "Transfer-Encoding",
        ),
        (
            "two Transfer-Encoding lines",
            "Host: localhost\r\nTransfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n",
            CHUNKED_HELLO,
            "Transfer-Encoding",
        ),
    ];
    for (i, (what, headers, body, _)) in refused.iter().enumerate() {
        let method = if body.is_empty() { "GET" } else { "POST" };
        let (status, answer) = f.raw(&format!("{method} /h{} HTTP/1.1\r\n{headers}\r\n{body}", i + 1));
        assert_eq!(status, "400", "{what}: {answer}");
    }
    let (status, body) = f.raw("GET http://admin.test/h11 HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(status, "400", "absolute form, other Host: {body}");
    for (i, (what, _, _, reason)) in refused.iter().enumerate() {
        let path = format!("/h{}", i + 1);
        let line = f.wait_audit(what, |l| l["path"] == path.as_str());
        assert!(line["reason"].as_str().unwrap().contains(reason), "{what}: {line}");
        assert_eq!((line["status"].as_u64(), line["decision"].as_str()), (Some(400), Some("deny")), "{what}: {line}");
    }
    let seen = f.upstream_requests();
    assert!(!seen.contains("/h"), "no refused request reached the upstream: {seen}");
    assert!(!seen.to_ascii_lowercase().contains("identity"), "{seen}");

    // Chunked with a Content-Length: hyper drops the length (RFC 9112 6.3),
    // and the body goes on chunked, without it.
    let (status, body) = f.raw(
        "POST /te-cl HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    );
    assert_eq!(status, "200", "{body}");
    let v = assert_only_ours("chunked and Content-Length", &body);
    assert_eq!(
        (v["HTTP_TRANSFER_ENCODING"].as_str(), v["CONTENT_LENGTH"].as_str()),
        (Some("chunked"), Some("")),
        "{v}"
    );
    // A good chunked body is sent on with framing the proxy chose.
    let (status, body) =
        f.raw("POST /chunked HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
    assert_eq!(status, "200", "{body}");
    let v = assert_only_ours("chunked", &body);
    assert_eq!(v["HTTP_TRANSFER_ENCODING"], "chunked", "{v}");
    // A Content-Length body keeps its length (as a number hyper read).
    let (status, body) =
        f.raw("POST /sized HTTP/1.1\r\nHost: localhost\r\nContent-Length: 005\r\nConnection: close\r\n\r\nhello");
    assert_eq!(status, "200", "{body}");
    let v = assert_only_ours("sized", &body);
    assert_eq!((v["CONTENT_LENGTH"].as_str(), v["BODY"].as_str()), (Some("5"), Some("hello")), "{v}");
    assert!(v.get("HTTP_TRANSFER_ENCODING").is_none(), "{v}");
    // HTTP/2: :authority becomes the one Host.
    let (status, body) = f.h2("/h2-host", &[]);
    assert_eq!(status, "200", "{body}");
    let v = assert_only_ours("HTTP/2", &body);
    assert_eq!(v["HTTP_HOST"], format!("localhost:{}", f.port), "{v}");

    // Malformed bodies: bad chunk size, and a body cut short by the client.
    let out = f.raw_run(
        "POST /bad-chunk HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        false,
    );
    assert!(out.is_empty() || out.starts_with("HTTP/1.1 400"), "bad chunk: {out}");
    f.raw_run("POST /short HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\nonly ten b", true);
    for path in ["/bad-chunk", "/short"] {
        let line = f.wait_audit(path, |l| l["path"] == path);
        assert_eq!(line["status"], 400, "{path}: {line}");
        assert!(line["reason"].as_str().unwrap().starts_with("malformed request body"), "{path}: {line}");
    }
    let metrics = f.metrics();
    assert!(
        !metrics.lines().any(|l| l.starts_with("ambos_proxy_upstream_errors_total") && !l.ends_with(" 0")),
        "client body errors are not upstream errors:\n{metrics}"
    );
}

#[test]
fn a_host_the_listener_does_not_serve_or_that_differs_from_sni_is_misdirected() {
    let mut f = Fixture::new();
    // The raw client always sends SNI "localhost".
    f.start_with(None, "hosts = [\"localhost\", \"admin.test\"]");
    let req = |path: &str, host: &str| format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    let (status, body) = f.raw(&req("/served", &format!("LOCALHOST:{}", f.port)));
    assert_eq!(status, "200", "{body}");
    for (path, host, reason) in [
        ("/m1", "other.test", "Host not served by this listener"),
        ("/m2", "admin.test", "Host differs from the TLS server name (SNI)"),
        ("/m3", "127.0.0.1", "Host not served by this listener"),
    ] {
        let (status, body) = f.raw(&req(path, host));
        assert_eq!(status, "421", "{host}: {body}");
        let line = f.wait_audit(host, |l| l["path"] == path);
        assert_eq!((line["reason"].as_str(), line["status"].as_u64()), (Some(reason), Some(421)), "{line}");
    }
    // HTTP/2: curl's :authority is localhost:PORT, its SNI localhost.
    let (status, body) = f.h2("/served-h2", &[]);
    assert_eq!(status, "200", "{body}");
    assert!(!f.upstream_requests().contains("/m"), "misdirected requests never reach the upstream");
}

#[test]
fn the_upstream_sees_the_clients_address_and_host_never_values_the_client_sent() {
    let mut f = Fixture::new();
    f.start(Some("allow"));
    let spoof = [
        "X-Forwarded-For: 6.6.6.6",
        "x-forwarded-for: 6.6.6.7, 10.0.0.1",
        "X_Forwarded_For: 6.6.6.8",
        "Forwarded: for=6.6.6.9;host=evil.test",
        "X-Forwarded-Host: evil.test",
    ];
    let (status, body) = f.raw(&get("/hello", &spoof));
    assert_eq!(status, "200", "HTTP/1.1: {body}");
    let v = assert_only_ours("HTTP/1.1 X-Forwarded-For", &body);
    assert_eq!(v["HTTP_X_FORWARDED_FOR"], "127.0.0.1", "HTTP/1.1: {v}");
    assert_eq!(v["HTTP_X_FORWARDED_HOST"], "localhost", "HTTP/1.1: {v}");
    assert!(v.get("HTTP_FORWARDED").is_none(), "HTTP/1.1: {v}");
    let (status, body) = f.h2("/hello", &spoof);
    assert_eq!(status, "200", "HTTP/2: {body}");
    let v = assert_only_ours("HTTP/2 X-Forwarded-For", &body);
    assert_eq!(v["HTTP_X_FORWARDED_FOR"], "127.0.0.1", "HTTP/2: {v}");
    assert_eq!(v["HTTP_X_FORWARDED_HOST"], format!("localhost:{}", f.port), "HTTP/2: {v}");
    assert!(v.get("HTTP_FORWARDED").is_none(), "HTTP/2: {v}");
}

/// `[headers] trusted_proxies`: a proxy in front of ambos (127.0.0.1 here)
/// keeps the client list it sent, this hop appended, in X-Forwarded-For and
/// (with `forwarded = "both"`) RFC 7239 `Forwarded`; when the client is not
/// in the list, `forwarded = "rfc7239"` replaces what it sent.
#[test]
fn a_trusted_proxys_forwarded_list_is_extended_and_an_untrusted_clients_replaced() {
    let sent = ["X-Forwarded-For: 203.0.113.5", "Forwarded: for=203.0.113.5"];
    let mut f = Fixture::new();
    f.launch("[headers]\nforwarded = \"both\"\ntrusted_proxies = [\"127.0.0.0/8\"]\n", "");
    let (status, body) = f.raw(&get("/hello", &sent));
    assert_eq!(status, "200", "{body}");
    let v = assert_only_ours("trusted", &body);
    assert_eq!(v["HTTP_X_FORWARDED_FOR"], "203.0.113.5, 127.0.0.1", "{v}");
    assert_eq!(v["HTTP_FORWARDED"], "for=203.0.113.5, for=127.0.0.1;host=localhost;proto=https", "{v}");
    let mut f = Fixture::new();
    f.launch("[headers]\nforwarded = \"rfc7239\"\ntrusted_proxies = [\"10.0.0.0/8\"]\n", "");
    let (status, body) = f.h2("/hello", &sent);
    assert_eq!(status, "200", "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["HTTP_FORWARDED"], format!("for=127.0.0.1;host=\"localhost:{}\";proto=https", f.port), "{v}");
    assert!(v.get("HTTP_X_FORWARDED_FOR").is_none() && v.get("HTTP_X_FORWARDED_HOST").is_none(), "{v}");
}

/// RFC 9440: with `client_cert = "both"` the upstream gets Client-Cert (the
/// verified leaf, byte for byte) and Client-Cert-Chain (the intermediate,
/// not the root) beside XFCC; a client's own Client-Cert never arrives.
#[test]
fn rfc9440_client_cert_headers_carry_the_verified_leaf_and_intermediate() {
    use base64::Engine;
    let mut f = Fixture::new();
    f.launch("[headers]\nclient_cert = \"both\"\n", "");
    let spoof = ["Client-Cert: :ZXZpbA==:", "Client-Cert-Chain: :ZXZpbA==:"];
    let decode = |v: &serde_json::Value, key: &str| -> Vec<Vec<u8>> {
        let text = v[key].as_str().unwrap_or_else(|| panic!("no {key}: {v}"));
        text.split(", ")
            .map(|item| {
                let b64 = item.strip_prefix(':').and_then(|i| i.strip_suffix(':')).unwrap_or_else(|| panic!("{item}"));
                base64::engine::general_purpose::STANDARD.decode(b64).unwrap()
            })
            .collect()
    };
    let pem_ders = |file: &str| -> Vec<Vec<u8>> {
        let text = std::fs::read_to_string(f.ca.path(file)).unwrap();
        text.split("-----BEGIN CERTIFICATE-----")
            .skip(1)
            .map(|b| {
                let b64: String = b.split("-----END").next().unwrap().chars().filter(|c| !c.is_whitespace()).collect();
                base64::engine::general_purpose::STANDARD.decode(b64).unwrap()
            })
            .collect()
    };
    // web.crt is the leaf then the intermediate.
    let chain = pem_ders("web.crt");
    assert_eq!(chain.len(), 2, "web.crt: leaf and intermediate");
    for (what, body) in [("HTTP/1.1", f.raw(&get("/hello", &spoof)).1), ("HTTP/2", f.h2("/hello", &spoof).1)] {
        let v = assert_only_ours(what, &body);
        assert_eq!(decode(&v, "HTTP_CLIENT_CERT"), vec![chain[0].clone()], "{what}: the leaf");
        assert_eq!(decode(&v, "HTTP_CLIENT_CERT_CHAIN"), vec![chain[1].clone()], "{what}: the intermediate only");
    }
}
