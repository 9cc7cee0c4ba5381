//! The failure catalog: every entry diagnosed by `ambos probe`, against the
//! ambos proxy and against nginx with `ssl_verify_client on` (including
//! nginx's 400 after a TLS 1.3 handshake). Plus `ambos quickstart --exit`.
use ambos_interop_tests::{
    ambos_bin, free_port, require, run, start_echo_server, start_http_upstream, start_nginx, wait_file_contains,
    Daemon, ProxyToml, TestCa,
};
use std::path::Path;
use std::process::Command;

fn probe(ca: &TestCa, port: u16, who: Option<(&TestCa, &str)>, extra: &[&str]) -> serde_json::Value {
    let mut cmd = Command::new(ambos_bin());
    cmd.args(["probe", &format!("localhost:{port}"), "--json", "--ca"]).arg(ca.path("ca.crt"));
    if let Some((owner, name)) = who {
        cmd.args(owner.cert_flags(name));
    }
    cmd.args(extra);
    let out = run(&mut cmd);
    let v: serde_json::Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {} {}", out.stdout, out.stderr));
    assert_eq!(out.code, if v["ok"] == true { 0 } else { 1 }, "exit code follows the verdict");
    v
}

#[track_caller]
fn expect(v: &serde_json::Value, needle: &str, case: &str) {
    let cause = v["cause"].as_str().unwrap_or("");
    assert!(v["ok"] == false, "{case}: probe said OK: {v}");
    assert!(cause.contains(needle), "{case}: verdict should name '{needle}', got '{cause}'");
    assert!(v["verdict"].as_str().unwrap().starts_with("FAIL: "), "{case}");
    assert!(v["fix"].as_str().is_some_and(|f| !f.is_empty()), "{case}: no fix given");
}

struct Cast {
    ca: TestCa,
    other: TestCa,
}

fn cast() -> Cast {
    let ca = TestCa::new(&[]);
    ca.issue_expired("client", "expired", &[]);
    ca.issue("server", "localhost", &["--san", "ip:127.0.0.1"]);
    ca.issue("client", "alice", &["--spiffe", "spiffe://acme.test/alice"]);
    ca.issue("client", "bob", &[]);
    ca.issue("client", "carol", &[]);
    ca.issue("client", "future", &["--not-before", "+1h"]);
    ca.issue("server", "server-only", &["--san", "dns:server-only.test"]);
    ca.ambos(&["revoke", "carol"]).ok();
    ca.ambos(&["crl", "--all", "--out", "certs/crls.pem"]).ok();
    let other = TestCa::generated("Elsewhere", &[("alice", &[])]);
    Cast { ca, other }
}

/// Every catalog entry against a server on `port`; `mismatch` is a server
/// that shares no TLS version or cipher with us (or with `--tls-version
/// 1.2`), the flags, and what probe must say about it.
fn catalog(c: &Cast, port: u16, mismatch: (u16, &[&str], &str), server: &str) {
    let ca = &c.ca;
    let ok = probe(ca, port, Some((ca, "alice")), &[]);
    assert_eq!(ok["ok"], true, "{server}: alice should pass: {ok}");
    assert_eq!(ok["client_cert_requested"], true);
    assert!(
        ok["acceptable_cas"].as_array().unwrap().iter().any(|n| n.as_str().unwrap().contains("Interop Root CA")),
        "{ok}"
    );
    expect(&probe(ca, port, None, &[]), "no client certificate sent", &format!("{server}: no certificate"));
    let v = probe(ca, port, Some((&c.other, "alice")), &[]);
    let cause = v["cause"].as_str().unwrap_or("");
    assert!(cause.contains("CA") && cause.contains("trust"), "{server}: other CA: {cause}");
    expect(&probe(ca, port, Some((ca, "expired")), &[]), "has expired", &format!("{server}: expired"));
    expect(&probe(ca, port, Some((ca, "future")), &[]), "not valid yet", &format!("{server}: not yet valid"));
    expect(&probe(ca, port, Some((ca, "server-only")), &[]), "clientAuth", &format!("{server}: wrong EKU"));
    expect(&probe(ca, port, Some((ca, "carol")), &[]), "revoked", &format!("{server}: revoked"));
    expect(
        &probe(&c.other, port, Some((ca, "alice")), &[]),
        "not trusted by --ca",
        &format!("{server}: server untrusted"),
    );
    expect(
        &probe(ca, port, Some((ca, "alice")), &["--server-name", "wrong.test"]),
        "server name mismatch",
        &format!("{server}: name"),
    );
    let v = probe(ca, port, Some((ca, "bob")), &[]);
    expect(&v, "denied by route policy", &format!("{server}: 403"));
    if server == "ambos proxy" {
        assert!(v["cause"].as_str().unwrap().contains("our identity (cn:bob)"), "{v}");
    }
    // A key that is not the certificate's is found before connecting.
    let mut cmd = Command::new(ambos_bin());
    cmd.args(["probe", &format!("localhost:{port}"), "--json", "--ca"])
        .arg(ca.path("ca.crt"))
        .arg("--cert")
        .arg(ca.path("alice.crt"))
        .arg("--key")
        .arg(ca.path("bob.key"));
    let v: serde_json::Value = serde_json::from_str(&run(&mut cmd).stdout).unwrap();
    expect(&v, "private key does not match", &format!("{server}: key mismatch"));
    assert!(!v["steps"].as_array().unwrap().iter().any(|s| s["step"] == "TCP connect"), "{server}: connected anyway");
    expect(&probe(ca, mismatch.0, Some((ca, "alice")), mismatch.1), mismatch.2, &format!("{server}: versions"));
}

#[test]
fn probe_names_every_catalog_entry_against_the_ambos_proxy() {
    let c = cast();
    let upstream = start_http_upstream();
    let config = ProxyToml::http(upstream)
        .tls("crl = \"certs/crls.pem\"\nmin_version = \"1.3\"")
        .routes("[[route]]\npath = \"/**\"\nallow = [\"cn:alice\"]\n")
        .audit(Path::new("audit.jsonl"), "")
        .to_string();
    let proxy = Daemon::proxy(c.ca.dir(), &config, &[]);
    catalog(&c, proxy.port, (proxy.port, &["--tls-version", "1.2"], "the server requires TLS 1.3"), "ambos proxy");
    // The server side names the same causes in its audit log (written by a
    // background thread: wait for it).
    for reason in
        ["sent no certificate", "revoked", "does not trust", "allow list", "no TLS version in common (TLS 1.3 required"]
    {
        wait_file_contains(&c.ca.dir().join("audit.jsonl"), reason, 5);
    }
}

#[test]
fn probe_names_every_catalog_entry_against_nginx() {
    require("nginx");
    let c = cast();
    let port = free_port();
    let block = format!(
        "server {{\n listen 127.0.0.1:{port} ssl;\n ssl_certificate {{dir}}/certs/localhost.crt;\n ssl_certificate_key {{dir}}/certs/localhost.key;\n\
         ssl_client_certificate {{dir}}/certs/ca.crt;\n ssl_verify_client on;\n ssl_verify_depth 2;\n ssl_crl {{dir}}/certs/crls.pem;\n\
         ssl_protocols TLSv1.2 TLSv1.3;\n location / {{\n  if ($ssl_client_s_dn !~ \"CN=alice\") {{ return 403; }}\n  return 200 \"hello\\n\";\n }}\n}}"
    );
    let _nginx = start_nginx(c.ca.dir(), &block, port);
    // A second nginx that offers only a cipher rustls refuses (RSA key exchange, CBC).
    let weak = free_port();
    let weak_block = format!(
        "server {{\n listen 127.0.0.1:{weak} ssl;\n ssl_certificate {{dir}}/certs/localhost.crt;\n ssl_certificate_key {{dir}}/certs/localhost.key;\n\
         ssl_protocols TLSv1.2;\n ssl_ciphers AES128-SHA;\n location / {{ return 200; }}\n}}"
    );
    let _weak = start_nginx(c.ca.dir(), &weak_block, weak);
    catalog(&c, port, (weak, &[], "TLS version or cipher mismatch"), "nginx");
}

#[test]
fn probe_says_a_tcp_mode_proxy_closed_after_the_handshake_and_whom_it_refused() {
    let c = cast();
    let echo = start_echo_server();
    let config = ProxyToml::upstream(&format!("address = \"127.0.0.1:{echo}\""))
        .listen("mode = \"tcp\"")
        .tls("client_auth = \"optional\"")
        .routes("[[route]]\nallow = [\"cn:alice\"]\n")
        .to_string();
    let proxy = Daemon::proxy(c.ca.dir(), &config, &[]);
    let ok = probe(&c.ca, proxy.port, Some((&c.ca, "alice")), &["--no-http"]);
    assert_eq!(ok["ok"], true, "alice is allowed: {ok}");
    for extra in [&[][..], &["--no-http"][..]] {
        let v = probe(&c.ca, proxy.port, Some((&c.ca, "bob")), extra);
        expect(&v, "the TLS handshake succeeded, then the server closed the connection without answering", "bob");
        let cause = v["cause"].as_str().unwrap();
        assert!(cause.contains("TCP-mode proxy") && cause.contains("(cn:bob)"), "{extra:?}: {cause}");
        let anonymous = probe(&c.ca, proxy.port, None, extra);
        expect(&anonymous, "we presented no certificate", "anonymous");
        assert!(anonymous["fix"].as_str().unwrap().starts_with("pass --cert and --key"), "{anonymous}");
    }
}

#[test]
fn probe_asks_an_anonymous_client_for_a_certificate_on_a_403() {
    let c = cast();
    let upstream = start_http_upstream();
    let config = ProxyToml::http(upstream)
        .tls("client_auth = \"optional\"")
        .routes("[[route]]\npath = \"/**\"\nallow = [\"cn:alice\"]\n")
        .to_string();
    let proxy = Daemon::proxy(c.ca.dir(), &config, &[]);
    let v = probe(&c.ca, proxy.port, None, &[]);
    expect(&v, "we presented no client certificate", "anonymous");
    let fix = v["fix"].as_str().unwrap();
    assert!(fix.starts_with("present a client certificate") && !fix.starts_with("add our identity"), "{fix}");
}

#[test]
fn quickstart_exit_runs_the_demo_and_leaves_nothing_running() {
    let dir = tempfile::tempdir().unwrap();
    let qs = dir.path().join("qs");
    let out = run(Command::new(ambos_bin()).args(["quickstart", "--exit", "--dir"]).arg(&qs)).ok();
    for needle in [
        "OK: mTLS works",
        "FAIL: no client certificate sent",
        "FAIL: authorized by TLS but denied by route policy",
        "FAIL: our client certificate is revoked",
        "curl --cacert",
        "the token is bound to another certificate",
        "quickstart: all six calls behaved as expected",
    ] {
        assert!(out.stdout.contains(needle), "quickstart output lacks '{needle}':\n{}", out.stdout);
    }
    assert!(qs.join("proxy.toml").exists() && qs.join("certs/alice.crt").exists());
    // Its proxy port is closed again: nothing left running.
    let port: u16 = out.stdout.split("https://localhost:").nth(1).unwrap()[..5]
        .trim_end_matches(|c: char| !c.is_ascii_digit())
        .parse()
        .unwrap();
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "proxy still listening after --exit");
    // A second run refuses to overwrite the first.
    run(Command::new(ambos_bin()).args(["quickstart", "--exit", "--dir"]).arg(&qs))
        .fails_with(2, "already holds a quickstart");
}
