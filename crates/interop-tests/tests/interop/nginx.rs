//! nginx with `ssl_verify_client on` and ambos certificates, called with curl.
use ambos_interop_tests::{free_port, require, run, wait_for_port, ChildGuard, ProxyToml, TestCa};
use std::process::{Command, Stdio};

fn nginx_conf(ca: &TestCa, port: u16) -> String {
    let d = ca.dir().display();
    let certs = ca.certs();
    let c = certs.display();
    format!(
        r#"daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {d}/nginx-access.log;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name localhost;
        ssl_certificate {c}/server.crt;
        ssl_certificate_key {c}/server.key;
        ssl_client_certificate {c}/ca.crt;
        ssl_verify_client on;
        ssl_verify_depth 2;
        ssl_crl {c}/crls.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {{
            return 200 "hello $ssl_client_s_dn\n";
        }}
    }}
}}
"#
    )
}

fn curl(ca: &TestCa, port: u16, client: Option<&str>) -> (String, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-o", "-", "-w", "\n%{http_code}", "--max-time", "10", "--cacert"]).arg(ca.path("ca.crt"));
    if let Some(name) = client {
        cmd.args(ca.cert_flags(name));
    }
    cmd.arg(format!("https://localhost:{port}/"));
    let out = run(&mut cmd);
    let (body, code) = out.stdout.rsplit_once('\n').unwrap_or(("", &out.stdout));
    (code.trim().to_string(), body.to_string())
}

#[test]
fn nginx_accepts_an_ambos_client_and_refuses_missing_or_revoked_ones() {
    require("nginx");
    require("curl");
    let ca = TestCa::new(&[]);
    ca.issue("server", "server", &["--san", "dns:localhost", "--san", "ip:127.0.0.1"]);
    ca.issue("client", "alice", &["--ou", "payments"]);
    ca.issue("client", "mallory", &[]);
    ca.ambos(&["revoke", "mallory", "--reason", "key-compromise"]).ok();
    let crls = ca.path("crls.pem");
    ca.ambos(&["crl", "--all", "--out", crls.to_str().unwrap()]).ok();

    let port = free_port();
    let conf = ca.write("nginx.conf", nginx_conf(&ca, port));
    let log = ca.dir().join("nginx-error.log");
    let mut child = Command::new("nginx")
        .arg("-p")
        .arg(ca.dir())
        .arg("-c")
        .arg(&conf)
        .arg("-e")
        .arg(ca.dir().join("nginx-startup.log"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nginx");
    wait_for_port(port, &mut child, &log);
    let _guard = ChildGuard(child);

    let (code, body) = curl(&ca, port, Some("alice"));
    assert_eq!(code, "200", "alice refused: {body}");
    assert!(body.contains("CN=alice"), "{body}");

    let (code, body) = curl(&ca, port, None);
    assert_eq!(code, "400", "no client certificate should be refused: {body}");
    assert!(body.contains("No required SSL certificate"), "{body}");

    let (code, body) = curl(&ca, port, Some("mallory"));
    assert_eq!(code, "400", "revoked certificate should be refused: {body}");
    let errors = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(errors.contains("certificate revoked"), "nginx should log the revocation: {errors}");

    // A server certificate presented as a client one fails the clientAuth purpose check.
    let (code, _) = curl(&ca, port, Some("server"));
    assert_eq!(code, "400");
}

/// nginx serving `certs/upstream.crt` with `ssl_verify_client on` trusting
/// `certs/ca.crt`, answering `upstream saw <client DN>`; its port.
pub(crate) fn start_mtls_upstream(ca: &TestCa) -> (u16, ChildGuard) {
    let port = free_port();
    let c = ca.certs();
    let c = c.display();
    let nginx = ambos_interop_tests::start_nginx(
        ca.dir(),
        &format!(
            "server {{ listen 127.0.0.1:{port} ssl; ssl_certificate {c}/upstream.crt; ssl_certificate_key {c}/upstream.key; \
             ssl_client_certificate {c}/ca.crt; ssl_verify_client on; ssl_verify_depth 2; \
             location / {{ default_type text/plain; return 200 \"upstream saw $ssl_client_s_dn\"; }} }}"
        ),
        port,
    );
    (port, nginx)
}

/// `ambos proxy` in front of an `https://` upstream that is nginx with
/// `ssl_verify_client on` trusting the ambos CA: the proxy presents its own
/// client certificate and verifies nginx's; with another CA, or a
/// server_name nginx's certificate does not carry, the client gets 502 and
/// the audit line says why.
#[test]
fn the_proxy_speaks_mtls_to_an_nginx_upstream_and_refuses_one_it_cannot_verify() {
    require("nginx");
    require("curl");
    let ca = TestCa::new(&[]);
    ca.issue("server", "upstream", &["--san", "dns:upstream.test"]);
    ca.issue("server", "localhost", &["--san", "ip:127.0.0.1"]);
    ca.issue("client", "proxy", &["--spiffe", "spiffe://acme.test/proxy"]);
    ca.issue("client", "alice", &[]);
    let other = TestCa::generated("Elsewhere", &[]);
    let (port, _nginx) = start_mtls_upstream(&ca);
    let c = ca.certs();
    let c = c.display();
    let other_ca = other.path("ca.crt");
    for (what, ca_file, server_name, works) in [
        ("right CA and name", c.to_string() + "/ca.crt", "upstream.test", true),
        ("another CA", other_ca.display().to_string(), "upstream.test", false),
        ("a name the certificate lacks", c.to_string() + "/ca.crt", "elsewhere.test", false),
    ] {
        let audit = ca.dir().join(format!("audit-{}.jsonl", server_name.len() + ca_file.len()));
        let config = ProxyToml::upstream(&format!(
            "url = \"https://127.0.0.1:{port}\"\n\n[upstream.tls]\nca = \"{ca_file}\"\n\
             cert = \"certs/proxy.crt\"\nkey = \"certs/proxy.key\"\nserver_name = \"{server_name}\""
        ))
        .audit(&audit, "")
        .to_string();
        let proxy = ambos_interop_tests::Daemon::proxy(ca.dir(), &config, &[]);
        let out = ca.curl(Some("alice"), &format!("https://127.0.0.1:{}/", proxy.port), &[]);
        if works {
            assert_eq!(out.status, "200", "{what}: {} {}\n{}", out.body, out.stderr, proxy.log());
            assert!(out.body.contains("CN=proxy"), "{what}: nginx saw the proxy's certificate: {}", out.body);
        } else {
            assert_eq!(out.status, "502", "{what}: {} {}", out.body, out.stderr);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            let line = loop {
                let text = std::fs::read_to_string(&audit).unwrap_or_default();
                if let Some(l) = text.lines().find(|l| l.contains("\"status\":502")) {
                    break l.to_string();
                }
                assert!(std::time::Instant::now() < deadline, "{what}: no 502 audit line: {text}");
                std::thread::sleep(std::time::Duration::from_millis(50));
            };
            assert!(line.contains("TLS handshake failed"), "{what}: the audit line says why: {line}");
        }
    }
}
