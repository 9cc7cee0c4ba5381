//! `ambos proxy` originating TLS to its upstream: in TCP mode to a Python
//! TLS server that requires a client certificate (after a PROXY protocol
//! v2 header), and `expect` pinning the upstream's identity in both modes
//! (HTTP mode: nginx with `ssl_verify_client on`).
use ambos_interop_tests::{
    ambos_bin, free_port, require, s_client, spawn_logged, wait_file_contains, wait_for_port, ChildGuard, Daemon,
    ProxyToml, TestCa,
};
use std::process::Command;

/// `PORT CA CERT KEY`: answers one line with the client's CN, the ALPN
/// chosen and the PROXY header's source address (`-` when none).
const ECHO_PY: &str = include_str!("../../scripts/upstream_tls_echo.py");

/// A CA with `localhost` (the proxy's listener), `alice` (its client),
/// `proxy` (its client certificate to the upstream) and `upstream`
/// (`dns:upstream.test`, `spiffe://acme.test/api`).
fn pki() -> TestCa {
    let ca = TestCa::with_localhost(&["alice", "proxy"]);
    ca.issue("server", "upstream", &["--san", "dns:upstream.test", "--spiffe", "spiffe://acme.test/api"]);
    ca
}

fn start_echo(ca: &TestCa) -> (u16, ChildGuard) {
    let port = free_port();
    let script = ca.write("upstream_tls_echo.py", ECHO_PY);
    let log = ca.dir().join("upstream-echo.log");
    let mut cmd = Command::new("python3");
    cmd.arg(script).arg(port.to_string());
    cmd.arg(ca.path("ca.crt")).arg(ca.path("upstream.crt")).arg(ca.path("upstream.key"));
    let mut guard = spawn_logged(&mut cmd, &log);
    wait_for_port(port, &mut guard.0, &log);
    (port, guard)
}

/// The audit line containing `needle` (waiting up to 5 s for it).
fn audit_line(audit: &std::path::Path, needle: &str) -> String {
    let text = wait_file_contains(audit, needle, 5);
    text.lines().find(|l| l.contains(needle)).unwrap_or_default().to_string()
}

#[test]
fn tcp_mode_originates_mtls_after_the_proxy_protocol_header_and_reloads_its_ca() {
    require("python3");
    require("openssl");
    let ca = pki();
    let (port, _upstream) = start_echo(&ca);
    // The upstream CA file starts out as another CA's.
    let other = TestCa::generated("Elsewhere", &[]);
    std::fs::copy(other.path("ca.crt"), ca.path("up-ca.crt")).unwrap();
    let audit = ca.dir().join("audit.jsonl");
    let config = ProxyToml::upstream(&format!(
        "address = \"127.0.0.1:{port}\"\nproxy_protocol = \"v2\"\n\n[upstream.tls]\nca = \"certs/up-ca.crt\"\n\
         cert = \"certs/proxy.crt\"\nkey = \"certs/proxy.key\"\nserver_name = \"upstream.test\"\nalpn = [\"echo/1\"]"
    ))
    .listen("mode = \"tcp\"")
    .audit(&audit, "")
    .to_string();
    let proxy = Daemon::proxy(ca.dir(), &config, &[]);

    // Another CA: the handshake fails, the client's connection is closed, the audit line says why.
    let out = s_client(&ca, "alice", proxy.port, b"hello\n");
    assert!(!out.stdout.contains("hello"), "nothing gets through: {}", out.stdout);
    let line = audit_line(&audit, "TLS handshake failed");
    assert!(line.contains("\"decision\":\"deny\"") && line.contains("issued by a CA"), "{line}");
    assert!(proxy.log().contains("upstream error"), "{}", proxy.log());

    // The right CA, by replacing the file: reloaded like the listener's files.
    let tmp = ca.path(".up-ca.tmp");
    std::fs::copy(ca.path("ca.crt"), &tmp).unwrap();
    std::fs::rename(&tmp, ca.path("up-ca.crt")).unwrap();
    proxy.wait_log("configuration reloaded", 10);
    let out = s_client(&ca, "alice", proxy.port, b"hello\n");
    // The upstream read the PROXY header before TLS, saw the proxy's certificate and the ALPN offered.
    assert_eq!(out.stdout.trim(), "CN=proxy alpn=echo/1 src=127.0.0.1 hello", "{}\n{}", out.stderr, proxy.log());
    let line = audit_line(&audit, "\"decision\":\"allow\"");
    assert!(line.contains("\"reason\":\"allowed\""), "{line}");
}

#[test]
fn expect_pins_the_upstream_identity_in_tcp_mode_with_the_flags() {
    require("python3");
    require("openssl");
    let ca = pki();
    let (port, _upstream) = start_echo(&ca);
    for (expect, works) in [("spiffe://acme.test/api", true), ("spiffe://acme.test/other", false)] {
        let audit = ca.dir().join(format!("audit-{works}.jsonl"));
        let mut cmd = Command::new(ambos_bin());
        cmd.current_dir(ca.dir()).args(["proxy", "--tcp", "--listen", "127.0.0.1:0", "--client-ca", "certs/ca.crt"]);
        cmd.args(["--upstream", &format!("127.0.0.1:{port}")]).args(ca.cert_flags("localhost"));
        cmd.args(["--upstream-ca", "certs/ca.crt", "--upstream-cert", "certs/proxy.crt"]);
        cmd.args(["--upstream-key", "certs/proxy.key", "--upstream-server-name", "upstream.test"]);
        cmd.args(["--upstream-expect", expect, "--audit"]).arg(&audit);
        let proxy = Daemon::spawn(&mut cmd, ca.dir().join(format!("proxy-{works}.log")));
        let out = s_client(&ca, "alice", proxy.port, b"hello\n");
        if works {
            assert_eq!(out.stdout.trim(), "CN=proxy alpn=- src=- hello", "{}\n{}", out.stderr, proxy.log());
        } else {
            assert!(!out.stdout.contains("hello"), "nothing gets through: {}", out.stdout);
            let line = audit_line(&audit, "is not the expected");
            let want = "identity spiffe://acme.test/api is not the expected spiffe://acme.test/other";
            assert!(line.contains(want) && line.contains("\"decision\":\"deny\""), "{line}");
        }
    }
}

/// One proxy whose `expect` changes by reload: a keep-alive connection
/// pooled under one `expect` (the HTTP/1.1 pool: `protocol = "http1"`) is
/// not reused under the next.
#[test]
fn expect_pins_the_upstream_identity_in_http_mode_with_502_and_the_reason() {
    require("nginx");
    require("curl");
    let ca = pki();
    let (port, _nginx) = crate::nginx::start_mtls_upstream(&ca);
    let audit = ca.dir().join("audit.jsonl");
    let config = |expect: &str| {
        ProxyToml::upstream(&format!(
            "url = \"https://127.0.0.1:{port}\"\nprotocol = \"http1\"\n\n[upstream.tls]\nca = \"certs/ca.crt\"\ncert = \"certs/proxy.crt\"\n\
             key = \"certs/proxy.key\"\nserver_name = \"upstream.test\"\nexpect = \"{expect}\""
        ))
        .audit(&audit, "")
        .to_string()
    };
    let proxy = Daemon::proxy(ca.dir(), &config("spiffe://acme.test/api"), &[]);
    let path = proxy.config.clone().unwrap();
    for (i, (expect, works)) in
        [("spiffe://acme.test/api", true), ("dns:upstream.test", true), ("spiffe://acme.test/other", false)]
            .into_iter()
            .enumerate()
    {
        if i > 0 {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, config(expect)).unwrap();
            std::fs::rename(&tmp, &path).unwrap();
            let reloaded = |log: &String| log.matches("configuration reloaded").count() >= i;
            let log = ambos_interop_tests::poll(10, std::time::Duration::from_millis(50), || proxy.log(), reloaded);
            assert!(reloaded(&log), "{expect}: not reloaded: {log}");
        }
        let out = ca.curl(Some("alice"), &format!("https://127.0.0.1:{}/", proxy.port), &[]);
        if works {
            assert_eq!(out.status, "200", "{expect}: {} {}\n{}", out.body, out.stderr, proxy.log());
            assert!(out.body.contains("CN=proxy"), "{expect}: {}", out.body);
        } else {
            assert_eq!(out.status, "502", "{expect}: {} {}", out.body, out.stderr);
            let line = audit_line(&audit, "\"status\":502");
            let want = "identity spiffe://acme.test/api is not the expected spiffe://acme.test/other";
            assert!(line.contains(want), "the audit line says why: {line}");
        }
    }
}
