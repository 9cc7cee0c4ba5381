//! nginx with `ssl_verify_client on` and ambos certificates, called with curl.
use ambos_interop_tests::{free_port, require, run, wait_for_port, ChildGuard, TestCa};
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
        cmd.arg("--cert").arg(ca.path(&format!("{name}.crt"))).arg("--key").arg(ca.path(&format!("{name}.key")));
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
