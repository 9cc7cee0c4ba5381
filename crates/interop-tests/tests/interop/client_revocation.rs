//! The client side verifies servers with the proxy's path verifier
//! (`ambos_tls::ServerVerifier`): `probe`, `tunnel`, `enroll` and `renew`
//! refuse a revoked server with `--crl`/`--crl-url` (fail closed: every CA
//! level needs its CRL), and a client that sends only its leaf is completed
//! by the intermediate in the proxy's client CA file.
use ambos_interop_tests::{
    ambos_bin, cert_flags, curl, free_port, require, run, start_http_upstream, wait_file_contains, Daemon, Reply, Run,
    TestCa,
};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A CA with two server certificates for localhost / 127.0.0.1: `revoked`
/// (in the CRLs) and `good`, a client `alice`, and the CRL files
/// `crls.pem` (intermediate + root, `ambos crl --all`) and `crl-int.pem`
/// (the intermediate's only).
fn cast() -> TestCa {
    let ca = TestCa::new(&[]);
    ca.issue("server", "revoked", &["--san", "dns:localhost", "--san", "ip:127.0.0.1"]);
    ca.issue("server", "good", &["--san", "dns:localhost", "--san", "ip:127.0.0.1"]);
    ca.issue("client", "alice", &["--spiffe", "spiffe://acme.test/alice"]);
    ca.ambos(&["revoke", "revoked", "--reason", "key-compromise"]).ok();
    ca.ambos(&["crl", "--all", "--out", "certs/crls.pem"]).ok();
    ca.ambos(&["crl", "--out", "certs/crl-int.pem"]).ok();
    ca
}

/// `ambos proxy` with the server certificate `server`, clients checked against `client_ca`.
fn proxy(ca: &TestCa, server: &str, client_ca: &Path) -> (Daemon, u16) {
    let upstream = start_http_upstream();
    let n = ca.dir().read_dir().unwrap().count();
    let proxy = Daemon::spawn(
        Command::new(ambos_bin())
            .args(["proxy", "--listen", "127.0.0.1:0"])
            .args(["--upstream", &format!("http://127.0.0.1:{upstream}")])
            .args(ca.cert_flags(server))
            .arg("--client-ca")
            .arg(client_ca),
        ca.dir().join(format!("proxy-{n}.log")),
    );
    let port = proxy.port;
    (proxy, port)
}

/// `ambos probe localhost:PORT --json` as alice with `extra` flags.
fn probe(ca: &TestCa, port: u16, extra: &[&str]) -> (Run, serde_json::Value) {
    let mut cmd = ca.cmd();
    cmd.args(["probe", &format!("localhost:{port}"), "--json", "--ca"])
        .arg(ca.path("ca.crt"))
        .args(ca.cert_flags("alice"))
        .args(extra);
    let out = run(&mut cmd);
    let v: serde_json::Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {} {}", out.stdout, out.stderr));
    assert_eq!(out.code, if v["ok"] == true { 0 } else { 1 }, "exit code follows the verdict: {v}");
    (out, v)
}

#[track_caller]
fn refused(v: &serde_json::Value, reason: &str, needle: &str) {
    assert_eq!(v["ok"], false, "probe said OK: {v}");
    assert_eq!(v["reason"], reason, "{v}");
    let verdict = v["verdict"].as_str().unwrap();
    assert!(verdict.starts_with("FAIL: ") && verdict.contains(needle), "verdict should name '{needle}': {verdict}");
    assert!(v["fix"].as_str().is_some_and(|f| !f.is_empty()), "no fix: {v}");
}

#[test]
fn probe_with_crl_refuses_a_revoked_server_and_names_a_missing_crl() {
    let ca = cast();
    let crls = ca.path("crls.pem");
    let crls = crls.to_str().unwrap();
    let int_only = ca.path("crl-int.pem");
    let int_only = int_only.to_str().unwrap();
    let (_bad, bad) = proxy(&ca, "revoked", &ca.path("ca.crt"));
    let (_good, good) = proxy(&ca, "good", &ca.path("ca.crt"));

    // Revoked server, CRLs given: refused, the verdict names revocation.
    let (_, v) = probe(&ca, bad, &["--crl", crls]);
    refused(&v, "revoked", "revoked");
    assert!(v["server_chain"][0]["subject"].as_str().unwrap().contains("CN=revoked"), "{v}");
    let step = v["steps"].as_array().unwrap().iter().find(|s| s["step"] == "TLS handshake").unwrap();
    assert!(step["detail"].as_str().unwrap().contains("(revoked)"), "{step}");
    // The same in text.
    let mut cmd = ca.cmd();
    cmd.args(["probe", &format!("localhost:{bad}"), "--ca"])
        .arg(ca.path("ca.crt"))
        .args(["--crl", crls, "--cert"])
        .arg(ca.path("alice.crt"))
        .arg("--key")
        .arg(ca.path("alice.key"));
    let text = run(&mut cmd);
    assert_eq!(text.code, 1, "{} {}", text.stdout, text.stderr);
    assert!(text.stdout.contains("FAIL: the server's certificate is revoked"), "{}", text.stdout);
    assert!(text.stdout.contains("local: CRLs: 2 CRL(s)"), "{}", text.stdout);

    // Without --crl the revoked server passes: revocation is not checked.
    let (_, v) = probe(&ca, bad, &[]);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["http_status"], 200, "{v}");
    let verified = v["steps"].as_array().unwrap().iter().find(|s| s["step"] == "server verified").unwrap();
    assert!(verified["detail"].as_str().unwrap().contains("revocation not checked"), "{verified}");

    // Good server with every CA level's CRL: passes.
    let (_, v) = probe(&ca, good, &["--crl", crls]);
    assert_eq!(v["ok"], true, "{v}");
    assert!(v["reason"].is_null(), "{v}");

    // Only the intermediate's CRL (`ambos crl` without --all): the root's is
    // missing, so the intermediate's status is unknown: refused, named.
    let (_, v) = probe(&ca, good, &["--crl", int_only]);
    refused(&v, "crl_missing", "no CRL of CA");
    assert!(v["cause"].as_str().unwrap().contains("Interop Root CA"), "{v}");
    // The two files together are as good as crls.pem (--crl repeats).
    let root_crl = ca.path("crl-root.pem");
    let all = std::fs::read_to_string(ca.path("crls.pem")).unwrap();
    let int = std::fs::read_to_string(ca.path("crl-int.pem")).unwrap();
    std::fs::write(&root_crl, all.replace(&int, "")).unwrap();
    let (_, v) = probe(&ca, good, &["--crl", int_only, "--crl", root_crl.to_str().unwrap()]);
    assert_eq!(v["ok"], true, "{v}");
    // A CRL of another CA is no CRL of ours.
    let other = TestCa::new(&["--name", "Elsewhere"]);
    other.ambos(&["crl", "--all", "--out", "crls.pem"]).ok();
    let (_, v) = probe(&ca, good, &["--crl", other.dir().join("crls.pem").to_str().unwrap()]);
    refused(&v, "crl_missing", "no CRL of CA");

    // A CRL that cannot be read: one line naming it, exit 2, no connection.
    let probe_bad = |flag: &str, value: &str| {
        let mut cmd = ca.cmd();
        cmd.args(["probe", &format!("localhost:{good}"), "--json", "--ca"]).arg(ca.path("ca.crt")).args([flag, value]);
        run(&mut cmd)
    };
    probe_bad("--crl", "no-such.pem").fails_with(2, "no-such.pem");
    let junk = ca.write("junk.pem", "-----BEGIN X509 CRL-----\nnot base64\n-----END X509 CRL-----\n");
    probe_bad("--crl", junk.to_str().unwrap()).fails_with(2, "junk.pem");
    probe_bad("--crl", ca.path("ca.crt").to_str().unwrap()).fails_with(2, "no X509 CRL");
    probe_bad("--crl-url", "http://127.0.0.1:1/v1/crl").fails_with(2, "https://");
    let dead = free_port();
    probe_bad("--crl-url", &format!("https://127.0.0.1:{dead}/v1/crl"))
        .fails_with(2, &format!("--crl-url https://127.0.0.1:{dead}/v1/crl"));
    let r = run(ca.cmd().args(["probe", &format!("localhost:{good}"), "--crl", crls]));
    r.fails_with(2, "need --ca");
}

/// `ambos tunnel --listen 127.0.0.1:0 --connect 127.0.0.1:SERVER` as `cert`/alice with `extra` flags.
fn tunnel(ca: &TestCa, server: u16, cert: &Path, extra: &[&str]) -> (Daemon, u16, PathBuf) {
    let n = ca.dir().read_dir().unwrap().count();
    let tunnel = Daemon::spawn(
        Command::new(ambos_bin())
            .args(["tunnel", "--listen", "127.0.0.1:0", "--connect", &format!("127.0.0.1:{server}")])
            .arg("--cert")
            .arg(cert)
            .arg("--key")
            .arg(ca.path("alice.key"))
            .arg("--ca")
            .arg(ca.path("ca.crt"))
            .args(extra),
        ca.dir().join(format!("tunnel-{n}.log")),
    );
    let (port, log) = (tunnel.port, tunnel.log.clone());
    (tunnel, port, log)
}

/// curl through the tunnel's plaintext port.
fn get(port: u16) -> Reply {
    curl(&format!("http://127.0.0.1:{port}/through"), None, None, &[])
}

#[track_caller]
fn wait_log(log: &Path, needle: &str) -> String {
    wait_file_contains(log, needle, 10)
}

#[test]
fn tunnel_with_crl_closes_on_a_revoked_server_and_reloads_the_crl_file() {
    require("curl");
    let ca = cast();
    let (_bad, bad) = proxy(&ca, "revoked", &ca.path("ca.crt"));
    let (_good, good) = proxy(&ca, "good", &ca.path("ca.crt"));
    // The tunnel's own copy of the CRLs, rewritten below.
    let crl = ca.dir().join("tunnel-crls.pem");
    std::fs::copy(ca.path("crls.pem"), &crl).unwrap();
    let crl = crl.to_str().unwrap().to_string();

    // Revoked server: the plaintext client gets nothing, the tunnel says why.
    let (_t, port, log) = tunnel(&ca, bad, &ca.path("alice.crt"), &["--crl", &crl]);
    assert!(wait_log(&log, "tunnel listening").contains("checked against CRLs"));
    let r = get(port);
    assert_ne!(r.code, 0, "a revoked server answered through the tunnel: {}", r.body);
    assert!(r.status != "200" && !r.body.contains("200"), "{r:?}");
    let text = wait_log(&log, "failed: TLS handshake failed (revoked)");
    assert!(text.contains("the certificate is revoked"), "{text}");
    // Without --crl the same server is reached (revocation not checked).
    let (_t2, port2, _) = tunnel(&ca, bad, &ca.path("alice.crt"), &[]);
    let r = get(port2);
    assert_eq!(r.status, "200", "{} {}", r.body, r.stderr);

    // Good server: the request goes through, the upstream sees alice.
    let (_t3, port3, log3) = tunnel(&ca, good, &ca.path("alice.crt"), &["--crl", &crl]);
    let r = get(port3);
    assert_eq!(r.status, "200", "{} {}", r.body, r.stderr);
    assert!(r.body.contains("URI=spiffe://acme.test/alice"), "{}", r.body);
    // Revoke it and rewrite the tunnel's CRL file: the next connection is refused.
    ca.ambos(&["revoke", "good"]).ok();
    ca.ambos(&["crl", "--all", "--out", &crl]).ok();
    let r = get(port3);
    assert_ne!(r.code, 0, "server revoked after the CRL reload answered: {}", r.body);
    let text = wait_log(&log3, "failed: TLS handshake failed (revoked)");
    assert!(text.contains("reloaded"), "{text}");

    // A CRL file that cannot be read: the tunnel does not start.
    let r = run(Command::new(ambos_bin())
        .args(["tunnel", "--listen", &format!("127.0.0.1:{}", free_port()), "--connect", &format!("127.0.0.1:{good}")])
        .args(ca.cert_flags("alice"))
        .arg("--ca")
        .arg(ca.path("ca.crt"))
        .args(["--crl", "missing-crls.pem"]));
    r.fails_with(2, "missing-crls.pem");
}

/// The PEM blocks of a file, each with its BEGIN/END lines.
fn pem_blocks(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    text.split_inclusive("-----END CERTIFICATE-----\n").filter(|b| b.contains("BEGIN")).map(str::to_string).collect()
}

#[test]
fn a_leaf_only_tunnel_client_is_completed_by_the_intermediate_in_the_client_ca_file() {
    require("curl");
    let ca = cast();
    // alice.crt is leaf + intermediate: keep the leaf alone, and put the
    // intermediate beside the root in the proxy's client CA file.
    let blocks = pem_blocks(&ca.path("alice.crt"));
    assert_eq!(blocks.len(), 2, "alice.crt should hold leaf + intermediate");
    let leaf = ca.write("alice-leaf.crt", &blocks[0]);
    let root = std::fs::read_to_string(ca.path("ca.crt")).unwrap();
    let bundle = ca.write("client-ca-bundle.pem", format!("{root}{}", blocks[1]));

    let (_p, port) = proxy(&ca, "good", &bundle);
    let (_t, tport, _) = tunnel(&ca, port, &leaf, &["--crl", ca.path("crls.pem").to_str().unwrap()]);
    let r = get(tport);
    assert_eq!(r.status, "200", "{} {}", r.body, r.stderr);
    assert!(r.body.contains("URI=spiffe://acme.test/alice"), "{}", r.body);

    // Control: with the root alone in the client CA file the leaf cannot be chained.
    let (_p2, port2) = proxy(&ca, "good", &ca.path("ca.crt"));
    let (_t2, tport2, log2) = tunnel(&ca, port2, &leaf, &[]);
    let r = get(tport2);
    assert_ne!(r.status, "200", "a leaf-only client passed without the intermediate: {}", r.body);
    wait_log(&log2, "tunnel to 127.0.0.1");
}

#[test]
fn enroll_renew_and_tunnel_check_servers_against_crls_pulled_from_the_ca() {
    let ca = cast();
    std::fs::copy(ca.data().join("root.crt"), ca.path("root.crt")).unwrap();
    let serve = Daemon::spawn(
        ca.cmd().args(["serve", "--listen", "127.0.0.1:0", "--crl-validity", "1h"]),
        ca.dir().join("serve.log"),
    );
    let port = serve.port;
    let url = format!("https://127.0.0.1:{port}");
    let crl_url = format!("{url}/v1/crl");
    let token = || ca.ambos(&["token", "create", "web"]).ok().stdout.trim().to_string();
    let out = ca.dir().join("web");
    let enroll = |extra: &[&str]| {
        let mut cmd = ca.cmd();
        cmd.args(["enroll", "--ca-url", &url, "--root"])
            .arg(ca.path("root.crt"))
            .args(["--token", &token(), "--out"])
            .arg(&out)
            .args(extra);
        run(&mut cmd)
    };
    // The CA server's chain with every level's CRL, pulled from the CA itself.
    enroll(&["--crl-url", &crl_url]).ok();
    // Only the intermediate's CRL: the API server's chain cannot be checked.
    let r = enroll(&["--crl", ca.path("crl-int.pem").to_str().unwrap()]);
    assert_eq!(r.code, 1, "{} {}", r.stdout, r.stderr);
    assert!(r.stderr.contains("no CRL of CA") && r.stderr.contains("Root CA"), "{}", r.stderr);
    enroll(&["--crl", "nope.pem"]).fails_with(2, "nope.pem");

    let renew = |extra: &[&str]| {
        let mut cmd = ca.cmd();
        cmd.args(["renew", "--ca-url", &url, "--root"])
            .arg(ca.path("root.crt"))
            .args(cert_flags(&out, "web"))
            .args(extra);
        run(&mut cmd)
    };
    renew(&["--crl", ca.path("crls.pem").to_str().unwrap()]).ok();
    renew(&["--crl-url", &crl_url]).ok();
    let r = renew(&["--crl", ca.path("crl-int.pem").to_str().unwrap()]);
    assert_eq!(r.code, 1, "{} {}", r.stdout, r.stderr);
    assert!(r.stderr.contains("no CRL of CA"), "{}", r.stderr);
    renew(&["--crl-url", &format!("https://127.0.0.1:{}/v1/crl", free_port())]).fails_with(2, "--crl-url");
    // The tunnel pulls them from the CA too: the revoked server is refused, the good one reached.
    require("curl");
    let (_bad, bad) = proxy(&ca, "revoked", &ca.path("ca.crt"));
    let (_t, tport, log) = tunnel(&ca, bad, &ca.path("alice.crt"), &["--crl-url", &crl_url]);
    assert_ne!(get(tport).code, 0, "a revoked server answered through the tunnel");
    wait_log(&log, "failed: TLS handshake failed (revoked)");
    let (_good, good) = proxy(&ca, "good", &ca.path("ca.crt"));
    let (_t2, tport2, _) = tunnel(&ca, good, &ca.path("alice.crt"), &["--crl-url", &crl_url]);
    let r = get(tport2);
    assert_eq!(r.status, "200", "{} {}", r.body, r.stderr);

    // The agent reads them before anything else: a bad one stops it at once.
    let mut cmd = ca.cmd();
    cmd.args(["agent", "--ca-url", &url, "--root"])
        .arg(ca.path("root.crt"))
        .args(cert_flags(&out, "web"))
        .args(["--crl", "gone.pem"]);
    run(&mut cmd).fails_with(2, "gone.pem");
}
