//! `ambos proxy` against real clients (curl HTTP/1.1 and HTTP/2, openssl
//! s_client, Python ssl, a Java 17 JSSE client) with ambos certificates.
use ambos_interop_tests::{
    ambos_bin, curl, free_port, poll, require, run, s_client, start_echo_server, start_http_upstream, terminate,
    Daemon, ProxyToml, TestCa,
};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const P12_PASSWORD: &str = "interop-pw";

/// A CA with a server and a cast of clients, and a running proxy.
struct Fixture {
    ca: TestCa,
    port: u16,
    metrics: u16,
    proxy: Option<Daemon>,
    audit: PathBuf,
}

impl Fixture {
    fn config(&self, upstream: &str, extra_routes: &str) -> String {
        ProxyToml::upstream(upstream)
            .tls("crl = [\"certs/crls.pem\"]")
            .routes(extra_routes)
            .audit(Path::new("audit.jsonl"), "")
            .metrics(self.metrics)
            .section("[limits]\nhandshake_timeout = \"5s\"\nshutdown_grace = \"10s\"")
            .to_string()
    }

    const HTTP_ROUTES: &'static str = r#"
[[route]]
path = "/payments/**"
methods = ["GET", "POST"]
allow = ["ou:payments"]

[[route]]
path = "/**"
allow = ["spiffe://acme.test/alice", "cn:dave"]
"#;

    fn new() -> Fixture {
        let ca = TestCa::new(&[]);
        ca.issue_expired("client", "expired", &[]);
        ca.issue("server", "localhost", &["--san", "ip:127.0.0.1"]);
        let pw = ca.write("p12-password.txt", P12_PASSWORD);
        ca.issue(
            "client",
            "alice",
            &[
                "--spiffe",
                "spiffe://acme.test/alice",
                "--ou",
                "payments",
                "--p12",
                "--p12-password-file",
                pw.to_str().unwrap(),
            ],
        );
        ca.issue("client", "bob", &["--p12", "--p12-password-file", pw.to_str().unwrap()]);
        ca.issue("client", "carol", &[]);
        ca.issue("client", "dave", &[]);
        ca.issue("server", "server-only", &["--san", "dns:server-only.test"]);
        ca.ambos(&["revoke", "carol", "--reason", "key-compromise"]).ok();
        ca.ambos(&["crl", "--all", "--out", "certs/crls.pem"]).ok();
        ca.export_truststore_p12(&ca.path("truststore.p12"), &pw);
        let audit = ca.dir().join("audit.jsonl");
        // The metrics listener logs its configured address, not the bound one.
        Fixture { ca, port: 0, metrics: free_port(), proxy: None, audit }
    }

    fn start(&mut self, config: &str) {
        let proxy = Daemon::proxy(self.ca.dir(), config, &[]);
        self.port = proxy.port;
        self.proxy = Some(proxy);
    }

    fn http(upstream_port: u16) -> Fixture {
        let mut f = Fixture::new();
        let cfg = f.config(&format!("url = \"http://127.0.0.1:{upstream_port}\""), Self::HTTP_ROUTES);
        f.start(&cfg);
        f
    }

    /// curl as `client` (None: no certificate); returns (exit code, HTTP status, body).
    fn curl(&self, client: Option<&str>, path: &str, extra: &[&str]) -> (i32, String, String) {
        let r = self.ca.curl(client, &format!("https://localhost:{}{path}", self.port), extra);
        (r.code, r.status, r.body)
    }

    fn audit_lines(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.audit)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad audit line {l}: {e}")))
            .collect()
    }

    /// Waits (up to 5 s) for an audit line satisfying `pred`.
    fn wait_audit(&self, what: &str, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(l) = self.audit_lines().into_iter().find(|l| pred(l)) {
                return l;
            }
            assert!(
                Instant::now() < deadline,
                "no audit line for {what}:\n{}",
                std::fs::read_to_string(&self.audit).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn sha256(&self, name: &str) -> String {
        let out = self.ca.ambos(&["inspect", self.ca.path(&format!("{name}.crt")).to_str().unwrap(), "--json"]).ok();
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        v["certificates"][0]["sha256"].as_str().unwrap().to_string()
    }
}

impl Fixture {
    /// `python3 SCRIPT PORT CA CERT KEY EXTRA...`: what every Python client
    /// script here takes, connecting as `who` (certificate and key files).
    fn python(&self, script: &Path, who: (&Path, &Path), extra: &[&str]) -> Command {
        let mut cmd = Command::new("python3");
        cmd.arg(script).arg(self.port.to_string()).arg(self.ca.path("ca.crt")).arg(who.0).arg(who.1).args(extra);
        cmd
    }

    /// alice's certificate and key.
    fn alice(&self) -> (PathBuf, PathBuf) {
        (self.ca.path("alice.crt"), self.ca.path("alice.key"))
    }
}

fn upstream_view(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("upstream body {body}: {e}"))
}

#[test]
fn curl_over_http1_and_http2_gets_through_and_upstream_sees_only_our_xfcc() {
    require("curl");
    let f = Fixture::http(start_http_upstream());
    let alice = f.sha256("alice");
    for version in ["--http1.1", "--http2"] {
        let (code, status, body) = f.curl(
            Some("alice"),
            "/hello",
            &[version, "-H", "X-Forwarded-Client-Cert: Hash=forged;URI=spiffe://acme.test/admin"],
        );
        assert_eq!((code, status.as_str()), (0, "200"), "{version}: {body}");
        let v = upstream_view(&body);
        let xfcc = v["xfcc"].as_array().unwrap();
        assert_eq!(xfcc.len(), 1, "{version}: upstream must see exactly one XFCC: {v}");
        let ours = xfcc[0].as_str().unwrap();
        assert!(ours.starts_with(&format!("Hash={alice};")), "{ours}");
        assert!(
            ours.contains("URI=spiffe://acme.test/alice")
                && ours.contains("Subject=\"CN=alice,OU=payments,O=Interop\""),
            "{ours}"
        );
        assert!(!ours.contains("forged"));
        assert_eq!(v["path"], "/hello");
    }
    // HTTP/2 was really negotiated.
    let out = f.ca.curl(Some("alice"), &format!("https://localhost:{}/", f.port), &["--http2"]);
    assert_eq!((out.status.as_str(), out.version.as_str()), ("200", "2"), "{}", out.stderr);
    let line = f.wait_audit("alice's request", |l| l["path"] == "/hello" && l["decision"] == "allow");
    assert_eq!(line["identity"]["spiffe"], "spiffe://acme.test/alice");
    assert_eq!(line["status"], 200);
    assert_eq!(line["route"], "/**");
}

#[test]
fn openssl_python_and_java_clients_get_through() {
    require("openssl");
    require("python3");
    require("java");
    let f = Fixture::http(start_http_upstream());

    // openssl s_client sends the chain (leaf + intermediate) and an HTTP request.
    let out =
        s_client(&f.ca, "alice", f.port, b"GET /from-openssl HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    assert!(out.stdout.starts_with("HTTP/1.1 200"), "openssl s_client: {} {}", out.stdout, out.stderr);

    // Python's ssl module.
    let script = f.ca.write("client.py", include_str!("../../scripts/proxy_client.py"));
    let (cert, key) = f.alice();
    let py = run(&mut f.python(&script, (&cert, &key), &[])).ok();
    assert_eq!(py.stdout.trim(), "200 TLSv1.3", "{}", py.stderr);

    // Java 17 JSSE with the PKCS#12 keystore and truststore exported by ambos.
    let java = f.ca.write("Client.java", include_str!("../../scripts/Client.java"));
    let java_run = |who: &str| {
        run(Command::new("java")
            .arg(&java)
            .arg(format!("https://localhost:{}/from-java", f.port))
            .arg(f.ca.path(&format!("{who}.p12")))
            .arg(f.ca.path("truststore.p12"))
            .arg(P12_PASSWORD))
    };
    let alice = java_run("alice").ok();
    assert_eq!(alice.stdout.trim(), "status 200", "{}", alice.stderr);
    let bob = java_run("bob").ok();
    assert_eq!(bob.stdout.trim(), "status 403", "bob is not on the allow list: {}", bob.stderr);
    f.wait_audit("java request", |l| l["path"] == "/from-java" && l["identity"]["cn"] == "alice");
}

#[test]
fn clients_that_must_not_pass_are_refused_with_the_reason_logged() {
    require("curl");
    let f = Fixture::http(start_http_upstream());
    let other = TestCa::generated("Elsewhere", &[("alice", &["spiffe://acme.test/alice"])]);

    // Identity not on the allow list: the handshake succeeds, the route says 403.
    let (code, status, _) = f.curl(Some("bob"), "/", &[]);
    assert_eq!((code, status.as_str()), (0, "403"));
    let (_, status, _) = f.curl(Some("dave"), "/payments/charge", &[]);
    assert_eq!(status, "403", "dave is not in OU payments");
    let (_, status, _) = f.curl(Some("alice"), "/payments/charge", &["-X", "POST"]);
    assert_eq!(status, "200");
    // DELETE is not a method of the payments route, so the catch-all route decides.
    let (_, status, _) = f.curl(Some("alice"), "/payments/charge", &["-X", "DELETE"]);
    assert_eq!(status, "200");
    let (_, status, _) = f.curl(Some("dave"), "/payments/charge", &["-X", "DELETE"]);
    assert_eq!(status, "200");
    // Dot segments are resolved before routing: dave reaches /payments/x's route, and is refused.
    let (_, status, _) = f.curl(Some("dave"), "/a/../payments/x", &["--path-as-is"]);
    assert_eq!(status, "403", "dot segments are resolved");
    let (_, status, _) = f.curl(Some("alice"), "/a/%2e%2e/payments/x", &["--path-as-is"]);
    assert_eq!(status, "400", "encoded dot segments are refused");

    // Refused in the handshake.
    let (code, _, _) = f.curl(None, "/", &[]);
    assert_ne!(code, 0, "no certificate");
    let (cert, key) = (other.path("alice.crt"), other.path("alice.key"));
    let out = curl(&format!("https://localhost:{}/", f.port), Some(&f.ca.path("ca.crt")), Some((&cert, &key)), &[]);
    assert_ne!(out.code, 0, "certificate from another CA");
    for who in ["expired", "carol", "server-only"] {
        let (code, status, _) = f.curl(Some(who), "/", &[]);
        assert_ne!(code, 0, "{who} got through with status {status}");
    }
    for (reason, what) in [
        ("the client sent no certificate", "no certificate"),
        ("issued by a CA this side does not trust", "other CA"),
        ("has expired", "expired"),
        ("revoked", "revoked"),
        ("wrong extended key usage", "server-only certificate"),
    ] {
        f.wait_audit(what, |l| l["event"] == "handshake" && l["reason"].as_str().unwrap_or("").contains(reason));
    }
    let denied = f.wait_audit("bob's 403", |l| l["identity"]["cn"] == "bob");
    assert_eq!((denied["decision"].as_str(), denied["status"].as_u64()), (Some("deny"), Some(403)));
    assert_eq!(denied["reason"], "identity not on the route's allow list");

    // Metrics tell the same story.
    let metrics =
        run(Command::new("curl").arg("-sS").arg(format!("http://127.0.0.1:{}/metrics", f.metrics))).ok().stdout;
    for needle in [
        "ambos_proxy_handshakes_total{outcome=\"failed\",reason=\"revoked\"}",
        "ambos_proxy_handshakes_total{outcome=\"failed\",reason=\"unknown_ca\"}",
        "ambos_proxy_handshakes_total{outcome=\"failed\",reason=\"wrong_eku\"}",
        "ambos_proxy_handshakes_total{outcome=\"failed\",reason=\"expired\"}",
        "ambos_proxy_handshakes_total{outcome=\"failed\",reason=\"no_client_certificate\"}",
        "ambos_proxy_requests_total{route=\"/**\",decision=\"deny\"}",
        "ambos_proxy_requests_total{route=\"/payments/**\",decision=\"allow\"}",
        "ambos_proxy_certificate_expiry_timestamp_seconds",
        "ambos_proxy_active_connections",
    ] {
        assert!(metrics.contains(needle), "metrics lack {needle}:\n{metrics}");
    }
    let health = run(Command::new("curl").arg("-sS").arg(format!("http://127.0.0.1:{}/healthz", f.metrics))).ok();
    assert_eq!(health.stdout.trim(), "ok");
}

/// curl with its defaults (ALPN h2, TLS 1.3: it sends its HTTP/2 preface
/// before it learns its certificate was refused) prints the proxy's alert
/// every time, not a reset: the proxy reads what the client sent before it
/// closes (`conn::close_after_alert`).
#[test]
fn refused_clients_see_the_alert_with_curls_defaults_every_time() {
    require("curl");
    let f = Fixture::http(start_http_upstream());
    let other = TestCa::generated("Elsewhere", &[("alice", &["spiffe://acme.test/alice"])]);
    let url = format!("https://localhost:{}/", f.port);
    let (other_cert, other_key) = (other.path("alice.crt"), other.path("alice.key"));
    let (carol_cert, carol_key) = (f.ca.path("carol.crt"), f.ca.path("carol.key"));
    type Case<'a> = (&'a str, Option<(&'a Path, &'a Path)>, &'a str);
    let cases: [Case; 3] = [
        ("no certificate", None, "alert certificate required"),
        ("revoked", Some((&carol_cert, &carol_key)), "alert certificate revoked"),
        ("other CA", Some((&other_cert, &other_key)), "alert unknown ca"),
    ];
    for (what, who, alert) in cases {
        let mut missed = Vec::new();
        for _ in 0..20 {
            let out = curl(&url, Some(&f.ca.path("ca.crt")), who, &[]);
            assert_ne!(out.code, 0, "{what}: got through");
            if !out.stderr.contains(alert) {
                missed.push(out.stderr.trim().to_string());
            }
        }
        assert!(missed.is_empty(), "{what}: {} of 20 runs did not print '{alert}': {missed:?}", missed.len());
    }
}

#[test]
fn a_newly_revoked_client_is_refused_after_crl_reload_and_a_broken_cert_keeps_the_old_config() {
    require("curl");
    let f = Fixture::http(start_http_upstream());
    assert_eq!(f.curl(Some("dave"), "/", &[]).1, "200");
    f.ca.ambos(&["revoke", "dave"]).ok();
    f.ca.ambos(&["crl", "--all", "--out", "certs/crls.pem"]).ok();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (code, status, _) = f.curl(Some("dave"), "/", &[]);
        if code != 0 {
            break;
        }
        assert!(Instant::now() < deadline, "dave still gets {status} 5 s after the CRL changed");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(f.curl(Some("alice"), "/", &[]).1, "200", "others unaffected");

    // A broken certificate file: logged, and the old config keeps serving.
    let cert = f.ca.path("localhost.crt");
    let good = std::fs::read(&cert).unwrap();
    std::fs::write(&cert, b"-----BEGIN CERTIFICATE-----\ngarbage\n").unwrap();
    let log = f.proxy.as_ref().unwrap().wait_log("reload failed", 5);
    assert!(log.contains("localhost.crt"), "the log names the bad file: {log}");
    assert_eq!(f.curl(Some("alice"), "/", &[]).1, "200", "still serving with the previous certificate");
    std::fs::write(&cert, good).unwrap();

    // SIGHUP reloads too.
    let proxy = f.proxy.as_ref().unwrap();
    proxy.signal("-HUP");
    proxy.wait_log("trigger=\"SIGHUP\"", 5);
    assert_eq!(f.curl(Some("alice"), "/", &[]).1, "200");
}

#[test]
fn tcp_mode_carries_a_line_protocol_for_an_allowed_identity_and_closes_for_others() {
    require("openssl");
    let echo = start_echo_server();
    let mut f = Fixture::new();
    let routes = "[[route]]\nallow = [\"spiffe://acme.test/alice\"]\n";
    let cfg = fix_tcp_config(&f.config(&format!("address = \"127.0.0.1:{echo}\""), routes));
    f.start(&cfg);
    let alice = s_client(&f.ca, "alice", f.port, b"hello over mtls\n");
    assert!(alice.stdout.contains("echo: hello over mtls"), "{} {}", alice.stdout, alice.stderr);
    let bob = s_client(&f.ca, "bob", f.port, b"let me in\n");
    assert!(!bob.stdout.contains("echo:"), "bob must not reach the upstream: {}", bob.stdout);
    let line = f.wait_audit("bob's TCP denial", |l| l["event"] == "connection" && l["identity"]["cn"] == "bob");
    assert_eq!(line["decision"], "deny");
    f.wait_audit("alice's TCP connection", |l| l["event"] == "connection" && l["decision"] == "allow");
}

/// gRPC needs ALPN h2: through a TCP-mode proxy with `[listen] alpn`, a
/// grpcio client reaches a plaintext grpcio server (all four call kinds and
/// a 16 MB message); without it the client refuses the connection, as the
/// issue saw.
#[test]
fn grpc_through_tcp_mode_needs_and_gets_alpn_h2() {
    require("python3");
    if run(Command::new("python3").args(["-c", "import grpc"])).code != 0 {
        panic!("python3 grpcio is missing: scripts/install-deps.sh installs it");
    }
    let script = include_str!("../../scripts/proxy_grpc.py");
    let f0 = Fixture::new();
    // Not grpc.py: it would shadow the grpc package it imports.
    let path = f0.ca.write("grpc_echo.py", script);
    let mut server = Command::new("python3")
        .arg(&path)
        .arg("server")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(f0.ca.dir().join("grpc-server.err")).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(server.stdout.take().unwrap()), &mut line).unwrap();
    let _server = ambos_interop_tests::ChildGuard(server);
    let upstream: u16 = line.trim().parse().unwrap_or_else(|_| {
        let err = std::fs::read_to_string(f0.ca.dir().join("grpc-server.err")).unwrap_or_default();
        panic!("grpc server said {line:?}: {err}")
    });
    let call = |f: &Fixture, calls: &[&str]| {
        let out = run(Command::new("python3")
            .arg(&path)
            .arg("client")
            .arg(f.port.to_string())
            .arg(f.ca.path("ca.crt"))
            .arg(f.ca.path("alice.crt"))
            .arg(f.ca.path("alice.key"))
            .args(calls));
        serde_json::from_str::<serde_json::Value>(out.stdout.trim())
            .unwrap_or_else(|e| panic!("grpc client: {e}: {} {}", out.stdout, out.stderr))
    };
    let routes = "[[route]]\nallow = [\"spiffe://acme.test/alice\"]\n";
    for (alpn, works) in [("alpn = [\"h2\"]\n", true), ("", false)] {
        let mut f = Fixture::new();
        let cfg = fix_tcp_config(&f.config(&format!("address = \"127.0.0.1:{upstream}\""), routes))
            .replace("mode = \"tcp\"\n", &format!("mode = \"tcp\"\n{alpn}"));
        f.start(&cfg);
        let v = call(&f, &[]);
        if works {
            assert_eq!(v["get"], "echo:ping", "{v}");
            assert_eq!(v["stream"], serde_json::json!(["0:x", "1:x", "2:x"]), "{v}");
            let v = call(&f, &["collect", "chat", "big"]);
            assert_eq!(v["collect"], "a+b+c", "client streaming: {v}");
            assert_eq!(v["chat"], serde_json::json!(["re:1", "re:2", "re:3"]), "bidi: {v}");
            assert_eq!(v["big"], serde_json::json!({"len": 16 * 1024 * 1024, "same": true}), "{v}");
        } else {
            assert!(v["error"].as_str().is_some_and(|e| e.starts_with("UNAVAILABLE")), "without ALPN: {v}");
        }
    }
}

/// `[upstream] proxy_protocol = "v2"` in TCP mode: nginx with
/// `listen ... proxy_protocol` (a real PROXY v2 receiver) sees the client's
/// address and port; without the header nginx refuses the connection.
#[test]
fn tcp_mode_tells_an_nginx_upstream_the_client_address_with_proxy_protocol_v2() {
    require("nginx");
    require("curl");
    let f0 = Fixture::new();
    let nginx_port = free_port();
    let _nginx = ambos_interop_tests::start_nginx(
        f0.ca.dir(),
        &format!(
            "server {{ listen 127.0.0.1:{nginx_port} proxy_protocol; \
             location / {{ default_type text/plain; return 200 \"$proxy_protocol_addr $proxy_protocol_port\"; }} }}"
        ),
        nginx_port,
    );
    let routes = "[[route]]\nallow = [\"spiffe://acme.test/alice\"]\n";
    for (extra, works) in [("proxy_protocol = \"v2\"\n", true), ("", false)] {
        let mut f = Fixture::new();
        let cfg = fix_tcp_config(&f.config(&format!("address = \"127.0.0.1:{nginx_port}\"\n{extra}"), routes));
        f.start(&cfg);
        let out = f.ca.curl(
            Some("alice"),
            &format!("https://localhost:{}/", f.port),
            &["--http1.1", "--local-port", "45000-45999"],
        );
        if works {
            assert_eq!(out.status, "200", "{} {}", out.body, out.stderr);
            let (addr, port) = out.body.trim().split_once(' ').unwrap_or_else(|| panic!("nginx said {:?}", out.body));
            assert_eq!(addr, "127.0.0.1", "{}", out.body);
            let port: u16 = port.parse().unwrap();
            assert!((45000..46000).contains(&port), "nginx saw curl's own port: {port}");
        } else {
            assert_ne!(out.status, "200", "nginx without a PROXY header: {} {}", out.body, out.stderr);
        }
    }
}

/// Puts `mode = "tcp"` in [listen] only.
fn fix_tcp_config(cfg: &str) -> String {
    let mut out = String::new();
    let mut section = "";
    for line in cfg.lines() {
        if line.starts_with('[') {
            section = if line == "[listen]" { "listen" } else { "other" };
        }
        if line.starts_with("mode = ") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
        if section == "listen" && line.starts_with("address") {
            out.push_str("mode = \"tcp\"\n");
        }
    }
    out
}

#[test]
fn bad_config_is_refused_naming_the_line_and_field() {
    let f = Fixture::new();
    let good = f.config("url = \"http://127.0.0.1:9\"", Fixture::HTTP_ROUTES);
    let bad = f.ca.write("bad.toml", good.replace("[tls]\n", "[tls]\nclient_certificate = \"x\"\n"));
    let line = good.lines().position(|l| l == "[tls]").unwrap() + 2;
    f.ca.ambos(&["proxy", "--config", bad.to_str().unwrap()])
        .fails_with(2, &format!("bad.toml:{line}: unknown field `client_certificate`"));
    let broken = f.ca.write("broken.toml", "[listen]\naddress = \"127.0.0.1:1\"\n[tls\ncert = 1\n");
    f.ca.ambos(&["proxy", "--config", broken.to_str().unwrap()]).fails_with(2, "broken.toml:3");
    let missing = f.ca.write("missing.toml", good.replace("certs/localhost.key", "certs/nope.key"));
    f.ca.ambos(&["proxy", "--config", missing.to_str().unwrap()]).fails_with(2, "nope.key");
    f.ca.ambos(&["proxy", "--config", "does-not-exist.toml"]).fails_with(2, "does-not-exist.toml");
    f.ca.ambos(&["proxy", "--listen", "127.0.0.1:1"]).code.eq(&2).then_some(()).expect("missing flags exit 2");
    let ok = f.ca.write("ok.toml", good);
    f.ca.ambos(&["proxy", "--config", ok.to_str().unwrap(), "--check"]).ok();
}

#[test]
fn garbage_and_aborted_handshakes_do_not_disturb_other_clients() {
    use std::io::Write;
    require("curl");
    let f = Fixture::http(start_http_upstream());
    let mut held = Vec::new();
    for i in 0..20 {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", f.port)).unwrap();
        match i % 3 {
            0 => s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap(),
            1 => s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc]).unwrap(), // truncated ClientHello
            _ => s.write_all(&[0xde, 0xad, 0xbe, 0xef].repeat(64)).unwrap(),
        }
        if i % 2 == 0 {
            drop(s);
        } else {
            held.push(s); // left hanging mid-handshake
        }
    }
    for _ in 0..5 {
        assert_eq!(f.curl(Some("alice"), "/", &[]).1, "200");
    }
    f.wait_audit("a client that did not speak TLS", |l| {
        l["event"] == "handshake" && l["reason"].as_str().unwrap_or("").contains("did not speak TLS")
    });
    drop(held);
}

/// An idle keep-alive connection is parked (its HTTP state freed) and
/// served again on the same TLS session when the client comes back;
/// parked connections close at once on SIGTERM.
/// `[limits] idle_timeout` closes a connection whose request head does not
/// complete in time (trickled or stalled) and an idle keep-alive
/// connection, but not one that sends a request now and then.
#[test]
fn idle_timeout_closes_stalled_heads_and_idle_connections_but_not_slow_clients() {
    require("python3");
    let upstream = start_http_upstream();
    let mut f = Fixture::new();
    let cfg = f
        .config(&format!("url = \"http://127.0.0.1:{upstream}\""), Fixture::HTTP_ROUTES)
        .replace("[limits]\n", "[limits]\nidle_timeout = \"2s\"\n");
    f.start(&cfg);
    let script = f.ca.write("timeouts.py", include_str!("../../scripts/proxy_timeouts.py"));
    let (cert, key) = f.alice();
    let out = run(&mut f.python(&script, (&cert, &key), &[])).ok();
    let lines: std::collections::HashMap<&str, &str> = out.stdout.lines().filter_map(|l| l.split_once(' ')).collect();
    for what in ["trickle", "stalled", "idle"] {
        let secs: f64 = lines[what].parse().unwrap_or_else(|_| panic!("{what} was never closed: {}", out.stdout));
        assert!((1.9..4.0).contains(&secs), "{what}: closed after {secs:.1} s with idle_timeout 2s");
    }
    assert_eq!(lines["status"], "HTTP/1.1 200 OK");
    assert_eq!(
        lines["slow-client"],
        "['HTTP/1.1 200 OK', 'HTTP/1.1 200 OK', 'HTTP/1.1 200 OK', 'HTTP/1.1 200 OK', 'HTTP/1.1 200 OK']"
    );
}

#[test]
fn idle_keep_alive_connections_park_and_come_back() {
    require("python3");
    let mut f = Fixture::http(start_http_upstream());
    let script = f.ca.write("park.py", include_str!("../../scripts/proxy_park.py"));
    let (cert, key) = f.alice();
    let metrics = f.metrics.to_string();
    let python = |mode: &str| {
        f.python(&script, (&cert, &key), &[&metrics, mode])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let out = python("close").wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        ["first 200 /first", "second 200 /payments/after-park 100000 same-connection", "parked again", "closed"],
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // SIGTERM with a parked connection: it is closed and the proxy exits well
    // within the grace period.
    let mut child = python("stay");
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.starts_with("parked again") {
        line.clear();
        assert!(std::io::BufRead::read_line(&mut stdout, &mut line).unwrap() > 0, "python client ended early");
    }
    let guard = f.proxy.take().unwrap();
    let stopping = Instant::now();
    terminate(&guard.child.0);
    let mut guard = guard;
    while guard.child.0.try_wait().unwrap().is_none() {
        assert!(stopping.elapsed() < Duration::from_secs(5), "proxy waited for a parked connection");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(child.stdin.take());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert_eq!(rest.trim(), "eof");
    child.wait().unwrap();
}

/// The proxy keeps upstream connections alive between requests; one the
/// upstream has closed meanwhile is replaced, not answered with 502.
#[test]
fn a_pooled_upstream_connection_closed_by_the_upstream_is_replaced() {
    require("curl");
    let f = Fixture::http(start_http_upstream());
    for i in 0..3 {
        let (_, status, body) = f.curl(Some("alice"), "/close-after", &[]);
        assert_eq!(status, "200", "round {i}: {body}");
        std::thread::sleep(Duration::from_millis(300));
        let (_, status, body) = f.curl(Some("alice"), "/next", &[]);
        assert_eq!(status, "200", "round {i}, after the upstream closed: {body}");
        assert_eq!(upstream_view(&body)["path"], "/next");
    }
}

/// Two connections from Python's ssl (OpenSSL) with `who` (certificate and
/// key files), the second
/// `pause` seconds later offering the first one's session; returns (status
/// line, resumed, upstream view) of each. A connection the proxy closes
/// without a response has status "closed".
fn python_twice(f: &Fixture, who: (&Path, &Path), pause: f64) -> Vec<(String, bool, serde_json::Value)> {
    let script = f.ca.write("resume.py", include_str!("../../scripts/proxy_resume.py"));
    let out = run(&mut f.python(&script, who, &[&pause.to_string()])).ok();
    let v: Vec<serde_json::Value> = serde_json::from_str(out.stdout.trim()).unwrap();
    v.iter()
        .map(|c| {
            (
                c["status"].as_str().unwrap().to_string(),
                c["reused"].as_bool().unwrap(),
                upstream_view(c["body"].as_str().unwrap()),
            )
        })
        .collect()
}

/// Resumption is on by default (and a resumed client keeps its identity);
/// `session_resumption = false` makes every handshake a full one, as
/// nginx with tickets and session cache off.
#[test]
fn session_resumption_keeps_the_identity_not_an_expired_certificate_and_can_be_off() {
    require("python3");
    let upstream = start_http_upstream();
    let f = Fixture::http(upstream);
    let alice = f.sha256("alice");
    let (cert, key) = f.alice();
    let conns = python_twice(&f, (&cert, &key), 0.0);
    assert_eq!((conns[0].1, conns[1].1), (false, true), "the second connection resumes: {conns:?}");
    for (status, _, view) in &conns {
        assert_eq!(status, "HTTP/1.1 200 OK");
        let xfcc = view["xfcc"][0].as_str().unwrap();
        assert!(xfcc.starts_with(&format!("Hash={alice};")), "{xfcc}");
    }

    // A session outlives a short certificate; resuming it after the
    // certificate expired is refused.
    // Issued elsewhere: `issue --out certs` rewrites certs/ca.crt, which
    // the proxy watches, and a reload would start a new session cache.
    let short = f.ca.dir().join("short");
    f.ca.ambos(&[
        "issue",
        "client",
        "brief",
        "--out",
        short.to_str().unwrap(),
        "--ttl",
        "3s",
        "--spiffe",
        "spiffe://acme.test/alice",
    ])
    .ok();
    let conns = python_twice(&f, (&short.join("brief.crt"), &short.join("brief.key")), 4.0);
    assert_eq!(conns[0].0, "HTTP/1.1 200 OK", "{conns:?}");
    assert_eq!(
        (conns[1].0.as_str(), conns[1].1),
        ("closed", true),
        "the session resumed, and the expired certificate's connection was closed: {conns:?}"
    );
    f.wait_audit("expired session", |l| {
        l["event"] == "handshake" && l["reason"].as_str().unwrap_or("").contains("has expired")
    });
    drop(f);

    let mut f = Fixture::new();
    let cfg = f
        .config(&format!("url = \"http://127.0.0.1:{upstream}\""), Fixture::HTTP_ROUTES)
        .replace("crl = [\"certs/crls.pem\"]", "crl = [\"certs/crls.pem\"]\nsession_resumption = false");
    f.start(&cfg);
    let (cert, key) = f.alice();
    let conns = python_twice(&f, (&cert, &key), 0.0);
    assert_eq!((conns[0].1, conns[1].1), (false, false), "no resumption: {conns:?}");
    assert_eq!(conns[1].0, "HTTP/1.1 200 OK");
}

impl Fixture {
    /// `ambos bench MODE` against the proxy as `client`; returns (exit code, the JSON report).
    fn bench(&self, mode: &str, client: &str, target_port: u16, extra: &[&str]) -> (i32, serde_json::Value) {
        let out = run(Command::new(ambos_bin())
            .arg("bench")
            .arg(mode)
            .arg("--target")
            .arg(format!("127.0.0.1:{target_port}"))
            .args(self.ca.cert_flags(client))
            .arg("--ca")
            .arg(self.ca.path("ca.crt"))
            .args(["--concurrency", "2", "--json"])
            .args(extra));
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
        let report = serde_json::from_str(out.stdout.trim())
            .unwrap_or_else(|e| panic!("bench {mode} {extra:?}: {e}\nstdout: {}\nstderr: {}", out.stdout, out.stderr));
        (out.code, report)
    }
}

/// The load generator of bench/compare.sh speaks HTTP/1.1 and HTTP/2 to a
/// real proxy, reports percentiles, and files failures by kind.
#[test]
fn bench_measures_http1_http2_and_handshakes_and_counts_failures_by_kind() {
    let f = Fixture::http(start_http_upstream());
    for (mode, extra) in [
        ("http", &["--count", "300"][..]),
        ("http", &["--count", "300", "--http2"][..]),
        ("handshake", &["--count", "20"][..]),
        ("handshake", &["--count", "20", "--cheap-client"][..]),
    ] {
        let (code, r) = f.bench(mode, "alice", f.port, extra);
        assert_eq!(code, 0, "{mode} {extra:?}: {r}");
        let want_ops: u64 = extra[1].parse().unwrap();
        assert_eq!((r["ops"].as_u64(), r["errors"].as_u64()), (Some(want_ops), Some(0)), "{mode} {extra:?}: {r}");
        let protocol = if extra.contains(&"--http2") { "h2" } else { "http/1.1" };
        assert_eq!(r["protocol"], protocol);
        assert_eq!(r["server_verified"], !extra.contains(&"--cheap-client"));
        let p: Vec<u64> = ["p50_us", "p90_us", "p99_us", "max_us"].iter().map(|k| r[k].as_u64().unwrap()).collect();
        assert!(p[0] > 0 && p.windows(2).all(|w| w[0] <= w[1]), "percentiles out of order: {r}");
    }

    // bob passes the handshake and gets 403 from the route; server-only is
    // refused in the handshake; nothing listens on a fresh port.
    for (mode, client, port, extra, kind) in [
        ("http", "bob", f.port, &["--count", "6"][..], "status 403"),
        ("http", "bob", f.port, &["--count", "6", "--http2"][..], "status 403"),
        ("handshake", "bob", f.port, &["--count", "6"][..], "status 403"),
        ("handshake", "server-only", f.port, &["--count", "6"][..], "tls"),
        ("http", "alice", free_port(), &["--count", "6"][..], "connect"),
    ] {
        let (code, r) = f.bench(mode, client, port, extra);
        assert_eq!(code, 1, "all failed, so the exit code says so: {r}");
        assert_eq!((r["ops"].as_u64(), r["errors"].as_u64()), (Some(0), Some(6)), "{mode} {client} {extra:?}: {r}");
        assert_eq!(r["errors_by_kind"][kind], 6, "{mode} {client} {extra:?}: {r}");
    }
}

#[test]
fn upstream_down_gives_502_and_sigterm_lets_in_flight_requests_finish() {
    require("curl");
    let mut f = Fixture::new();
    let cfg = f.config(&format!("url = \"http://127.0.0.1:{}\"", free_port()), Fixture::HTTP_ROUTES);
    f.start(&cfg);
    let (_, status, body) = f.curl(Some("alice"), "/", &[]);
    assert_eq!(status, "502", "{body}");
    let line = f.wait_audit("502", |l| l["status"] == 502);
    assert!(line["reason"].as_str().unwrap().contains("upstream"), "{line}");
    drop(f.proxy.take());

    let mut f = Fixture::http(start_http_upstream());
    let port = f.port;
    let ca_dir = f.ca.dir().to_path_buf();
    let seen = ambos_interop_tests::slow_requests_seen();
    let slow = std::thread::spawn(move || {
        let certs = ca_dir.join("certs");
        let who = (certs.join("alice.crt"), certs.join("alice.key"));
        curl(&format!("https://localhost:{port}/slow"), Some(&certs.join("ca.crt")), Some((&who.0, &who.1)), &[])
    });
    // SIGTERM once the request is at the upstream, in flight (not while
    // curl is still connecting: a connection with no request yet is idle,
    // and idle connections are closed at once).
    poll(20, Duration::from_millis(20), ambos_interop_tests::slow_requests_seen, |&n| n > seen);
    let mut guard = f.proxy.take().unwrap();
    terminate(&guard.child.0);
    let done = slow.join().unwrap();
    assert_eq!(done.status, "200", "in-flight request cut off: {}", done.stderr);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = guard.child.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "proxy did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status}");
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "still listening after shutdown");
}

/// An upstream whose answers are ambiguous (both lengths, two lengths, a
/// malformed chunk) gets its client 502, with the reason in the audit log
/// and the `protocol` upstream error counted; one that answers twice to one
/// request never has its second answer served to the next client.
#[test]
fn ambiguous_or_excess_upstream_answers_are_refused_and_never_reach_the_next_client() {
    require("curl");
    require("python3");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/proxy_ambiguous_upstream.py");
    let mut child = Command::new("python3").arg(&script).stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    let _upstream = ambos_interop_tests::ChildGuard(child);
    let f = Fixture::http(line.trim().parse().unwrap());
    for version in ["--http1.1", "--http2"] {
        for (path, why) in [("/both", "both Transfer-Encoding and Content-Length"), ("/two-lengths", "conflicting")] {
            let (_, status, body) = f.curl(Some("alice"), path, &[version]);
            assert_eq!(status, "502", "{version} {path}: {body}");
            assert!(!body.contains("evil"), "{version} {path}: {body}");
            f.wait_audit(path, |l| {
                l["path"] == path && l["status"] == 502 && l["reason"].as_str().unwrap().contains(why)
            });
        }
        let (_, status, body) = f.curl(Some("alice"), "/chunked", &[version]);
        assert_eq!((status.as_str(), body.as_str()), ("200", "chunked"), "{version}");
        // The chunk's CR is missing: the answer is cut off, never "chu" as a whole body.
        let (code, status, body) = f.curl(Some("alice"), "/bad-chunk", &[version]);
        assert!(code != 0 || status != "200" || body.is_empty(), "{version}: {code} {status} {body}");
        for _ in 0..3 {
            let (_, status, body) = f.curl(Some("alice"), "/double", &[version]);
            assert_eq!((status.as_str(), body.as_str()), ("200", "ok"), "{version}");
            let (_, status, body) = f.curl(Some("alice"), "/next", &[version]);
            assert_eq!((status.as_str(), body.as_str()), ("200", "fine"), "{version}: another request's answer leaked");
        }
    }
    let metrics =
        run(Command::new("curl").args(["-sS", &format!("http://127.0.0.1:{}/metrics", f.metrics)])).ok().stdout;
    let protocol = metrics
        .lines()
        .find(|l| l.starts_with("ambos_proxy_upstream_errors_total") && l.contains("kind=\"protocol\""))
        .unwrap_or_else(|| panic!("no protocol upstream errors:\n{metrics}"));
    assert!(protocol.ends_with(" 4"), "{protocol}");
}
