//! Revocation as an attacker meets it: `ambos proxy` with CRLs against
//! openssl s_client, curl and Python clients sending decoys, junk, leaf-only
//! chains, holding connections open, and CRLs (made by pyca/cryptography)
//! that RFC 5280 says must not be used.
use ambos_interop_tests::{
    ambos_bin, curl as curl_as, free_port, require, run, start_http_upstream, ChildGuard, Daemon, TestCa,
};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A running `ambos proxy` with its audit log.
struct Proxy {
    daemon: Daemon,
    port: u16,
    audit: PathBuf,
}

impl Proxy {
    /// Starts `ambos proxy --config` with `tls` (the [tls] body) in `dir`.
    fn start(dir: &Path, tls: &str, upstream: &str, mode: &str) -> Proxy {
        let audit = tempfile::Builder::new().prefix("audit-").suffix(".jsonl").tempfile_in(dir).unwrap();
        let (_, audit) = audit.keep().unwrap();
        let config = format!(
            "[listen]\naddress = \"127.0.0.1:0\"\nmode = \"{mode}\"\n\n[tls]\n{tls}\n\n[upstream]\n{upstream}\n\n\
             [[route]]\npath = \"/**\"\nallow = [\"any\"]\n\n[audit]\npath = \"{}\"\n",
            audit.display()
        );
        let daemon = Daemon::proxy(dir, &config, &[]);
        Proxy { port: daemon.port, daemon, audit }
    }

    fn audit(&self) -> String {
        std::fs::read_to_string(&self.audit).unwrap_or_default()
    }

    /// Waits up to 3 s for an audit line containing every needle.
    fn wait_audit(&self, needles: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            if let Some(l) = self.audit().lines().find(|l| needles.iter().all(|n| l.contains(n))) {
                return l.to_string();
            }
            assert!(Instant::now() < deadline, "no audit line with {needles:?}:\n{}", self.audit());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        self.daemon.log()
    }
}

/// openssl s_client with `cert` + `key`, `chain` as -cert_chain (none:
/// leaf only); sends one HTTP request. Returns stdout + stderr.
fn s_client(port: u16, ca: &Path, cert: &Path, key: &Path, chain: Option<&Path>) -> String {
    use std::io::Write;
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-quiet", "-connect", &format!("127.0.0.1:{port}"), "-servername", "localhost"])
        .arg("-CAfile")
        .arg(ca)
        .arg("-cert")
        .arg(cert)
        .arg("-key")
        .arg(key);
    if let Some(c) = chain {
        cmd.arg("-cert_chain").arg(c);
    }
    let mut child =
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("openssl s_client");
    let _ = child.stdin.take().unwrap().write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let out = child.wait_with_output().unwrap();
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The PEM blocks of a file.
fn blocks(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    text.split_inclusive("-----END CERTIFICATE-----\n").filter(|b| b.contains("BEGIN")).map(str::to_string).collect()
}

/// Python with pyca/cryptography: `script` is run with `args`.
fn python(script: &str, args: &[&Path]) {
    let out = run(Command::new("python3").arg("-c").arg(script).args(args));
    assert_eq!(out.code, 0, "python failed: {}{}", out.stdout, out.stderr);
}

/// A decoy (self-signed, same subject as `inter`, another key), an
/// unrelated certificate that expired yesterday, and junk: `inter` with its
/// notBefore overwritten by letters (OpenSSL loads and sends it; it does
/// not parse as a certificate).
const DECOYS: &str = include_str!("../../scripts/revocation_decoys.py");

#[test]
fn decoys_and_extra_certificates_do_not_hide_a_revoked_client() {
    require("openssl");
    require("python3");
    let ca = TestCa::with_localhost(&["alice", "bob"]);
    ca.ambos(&["revoke", "alice", "--reason", "key-compromise"]).ok();
    ca.ambos(&["crl", "--all", "--out", "certs/crls.pem"]).ok();
    let inter = ca.write("inter.pem", &blocks(&ca.path("alice.crt"))[1]);
    let (decoy, expired, junk) = (ca.dir().join("decoy.pem"), ca.dir().join("expired.pem"), ca.dir().join("junk.pem"));
    python(DECOYS, &[&inter, &decoy, &expired, &junk]);
    let read = |p: &Path| std::fs::read_to_string(p).unwrap();
    let chains = [
        ("decoy before the intermediate", read(&decoy) + &read(&inter)),
        ("decoy after the intermediate", read(&inter) + &read(&decoy)),
        ("an unrelated expired certificate added", read(&inter) + &read(&expired)),
        ("junk after the chain", read(&inter) + &read(&junk)),
        ("the decoy alone", read(&decoy)),
    ];
    let proxy = Proxy::start(
        ca.dir(),
        "cert = \"certs/localhost.crt\"\nkey = \"certs/localhost.key\"\nclient_ca = \"certs/ca.crt\"\ncrl = \"certs/crls.pem\"",
        &format!("url = \"http://127.0.0.1:{}\"", start_http_upstream()),
        "http",
    );
    for (i, (what, chain)) in chains.iter().enumerate() {
        let file = ca.write(&format!("chain-{i}.pem"), chain);
        let leaf = ca.write("alice-leaf.pem", &blocks(&ca.path("alice.crt"))[0]);
        let out = s_client(proxy.port, &ca.path("ca.crt"), &leaf, &ca.path("alice.key"), Some(&file));
        assert!(!out.contains("200 OK"), "{what}: {out}");
        if i < 4 {
            assert!(out.contains("certificate revoked"), "{what}: revoked alice must see the alert:\n{out}");
        }
        // The same bytes around a good certificate do not make a valid path fail.
        let bob_leaf = ca.write("bob-leaf.pem", &blocks(&ca.path("bob.crt"))[0]);
        let out = s_client(proxy.port, &ca.path("ca.crt"), &bob_leaf, &ca.path("bob.key"), Some(&file));
        if i < 4 {
            assert!(out.contains("HTTP/1.1 200 OK"), "{what}: bob must get through:\n{out}");
        } else {
            assert!(!out.contains("200 OK"), "{what}: without the real intermediate bob has no path:\n{out}");
        }
    }
    // With only the decoy there is no path at all, and the reason names the decoy.
    proxy.wait_audit(&["\"handshake\"", "a decoy CA with the same name"]);
    let audit = proxy.audit();
    assert!(!audit.lines().any(|l| l.contains("\"allow\"") && l.contains("\"cn\":\"alice\"")), "{audit}");
    proxy.wait_audit(&["\"handshake\"", "revoked"]);
}

#[test]
fn leaf_only_clients_are_completed_from_configured_intermediates() {
    require("openssl");
    let ca = TestCa::with_localhost(&["alice"]);
    ca.ambos(&["crl", "--all", "--out", "certs/crls.pem"]).ok();
    let alice = blocks(&ca.path("alice.crt"));
    let leaf = ca.write("alice-leaf.pem", &alice[0]);
    let both = ca.write("root-and-intermediate.pem", std::fs::read_to_string(ca.path("ca.crt")).unwrap() + &alice[1]);
    let upstream = format!("url = \"http://127.0.0.1:{}\"", start_http_upstream());
    let tls = |client_ca: &str| {
        format!(
            "cert = \"certs/localhost.crt\"\nkey = \"certs/localhost.key\"\nclient_ca = \"{client_ca}\"\ncrl = \"certs/crls.pem\""
        )
    };
    // The intermediate in client_ca: a known intermediate, not an anchor; the
    // root's CRL still applies to it.
    let proxy = Proxy::start(ca.dir(), &tls(both.to_str().unwrap()), &upstream, "http");
    let out = s_client(proxy.port, &ca.path("ca.crt"), &leaf, &ca.path("alice.key"), None);
    assert!(out.contains("HTTP/1.1 200 OK"), "leaf-only alice with the intermediate configured:\n{out}");
    // Only the root configured: the chain cannot be completed, and the reason says so.
    let proxy = Proxy::start(ca.dir(), &tls("certs/ca.crt"), &upstream, "http");
    let out = s_client(proxy.port, &ca.path("ca.crt"), &leaf, &ca.path("alice.key"), None);
    assert!(!out.contains("200 OK"), "{out}");
    let line = proxy.wait_audit(&["\"handshake\"", "incomplete"]);
    assert!(line.contains("Intermediate"), "the reason names the missing intermediate: {line}");
}

/// An upstream that echoes every line and keeps the connection open.
fn start_line_echo() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                use std::io::Write;
                let mut w = stream.try_clone().unwrap();
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if w.write_all(format!("{line}\n").as_bytes()).is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

/// Connects as a client and holds the connection until the proxy closes it:
/// prints "ready" once the connection works, "closed" at EOF.
const HOLD: &str = include_str!("../../scripts/revocation_hold.py");

#[test]
fn open_connections_of_a_newly_revoked_client_close_within_a_second() {
    require("python3");
    let ca = TestCa::new(&[]);
    ca.issue("server", "localhost", &["--san", "ip:127.0.0.1", "--san", "dns:localhost"]);
    ca.issue("client", "alice", &[]);
    ca.issue("client", "bob", &[]);
    ca.ambos(&["crl", "--all", "--out", "certs/crls.pem"]).ok();
    let tls =
        "cert = \"certs/localhost.crt\"\nkey = \"certs/localhost.key\"\nclient_ca = \"certs/ca.crt\"\ncrl = \"certs/crls.pem\"";
    let http = Proxy::start(ca.dir(), tls, &format!("url = \"http://127.0.0.1:{}\"", start_http_upstream()), "http");
    let tcp = Proxy::start(ca.dir(), tls, &format!("address = \"127.0.0.1:{}\"", start_line_echo()), "tcp");
    let hold = |port: u16, who: &str, mode: &str| {
        let mut child = ChildGuard(
            Command::new("python3")
                .arg("-c")
                .arg(HOLD)
                .arg(port.to_string())
                .args(ca.client_files(who))
                .arg(mode)
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap(),
        );
        let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
        assert_eq!(lines.next().unwrap().unwrap(), "ready", "{who} over {mode}");
        (child, lines)
    };
    let mut held = Vec::new();
    for (port, mode) in [(http.port, "h1"), (http.port, "h2"), (tcp.port, "tcp")] {
        held.push((mode, "alice", hold(port, "alice", mode)));
        held.push((mode, "bob", hold(port, "bob", mode)));
    }
    ca.ambos(&["revoke", "alice", "--reason", "key-compromise"]).ok();
    ca.ambos(&["crl", "--all", "--out", "certs/crls.pem"]).ok();
    let written = Instant::now();
    for (mode, who, (_child, lines)) in held.iter_mut().filter(|h| h.1 == "alice") {
        assert_eq!(lines.next().map(|l| l.unwrap()).as_deref(), Some("closed"), "{who} over {mode}");
        let took = written.elapsed();
        assert!(took < Duration::from_millis(1500), "{who} over {mode} closed after {took:?}");
        eprintln!("{who}'s {mode} connection closed {took:?} after the CRL was written");
    }
    for proxy in [&http, &tcp] {
        proxy.wait_audit(&["\"revoked\"", "\"cn\":\"alice\"", "\"close\""]);
        assert!(!proxy.audit().lines().any(|l| l.contains("\"revoked\"") && l.contains("\"cn\":\"bob\"")));
    }
    assert!(http.log().contains("closing 2 open connection(s)"), "{}", http.log());
    // bob's connections are untouched: they still answer.
    drop(held);
}

/// The CRL cases made by pyca/cryptography (scripts/crl_cases.py).
fn crl_cases(dir: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/crl_cases.py");
    let out = run(Command::new("python3").arg(script).arg(dir));
    assert_eq!(out.code, 0, "crl_cases.py: {}{}", out.stdout, out.stderr);
}

fn curl(port: u16, dir: &Path, who: &str) -> String {
    let (cert, key) = (dir.join(format!("{who}.pem")), dir.join(format!("{who}.key")));
    let url = format!("https://localhost:{port}/");
    curl_as(&url, Some(&dir.join("root.pem")), Some((&cert, &key)), &["--http1.1"]).status
}

#[test]
fn crls_that_must_not_be_used_make_the_status_unknown_and_refuse() {
    require("python3");
    require("curl");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    crl_cases(dir);
    let upstream = format!("url = \"http://127.0.0.1:{}\"", start_http_upstream());
    // (CRL file, extra [tls] lines, client, expected: "200" or the audit reason's words)
    let cases: &[(&str, &str, &str, &str)] = &[
        ("good", "", "client", "200"),
        ("revoked", "", "client", "revoked"),
        ("no-number", "", "client", "no CRL number"),
        ("critical-number", "", "client", "CRL number extension is marked critical"),
        ("unknown-critical", "", "client", "unknown critical CRL extension 1.3.6.1.4.1.99999.1"),
        ("impostor", "", "client", "does not verify with the key"),
        ("no-crlsign", "", "client2", "does not allow cRLSign"),
        ("stale", "", "client", "beyond the grace"),
        ("late", "", "client", "200"),
        ("late", "crl_grace = \"10m\"", "client", "beyond the grace"),
        ("missing", "", "client", "no CRL of CA 'CN=pyca Intermediate,O=pyca' is loaded"),
        ("missing", "unknown_revocation = \"allow\"", "client", "200"),
        ("leaf-only", "", "client", "no CRL of CA 'CN=pyca Root,O=pyca' is loaded"),
        ("leaf-only", "revocation = \"leaf\"", "client", "200"),
    ];
    // A CRL file that does not parse is a load error naming it, not a CRL dropped.
    let mut junk = std::fs::read(dir.join("crl-good.pem")).unwrap();
    let n = junk.len();
    junk.truncate(n - 200);
    junk.extend_from_slice(b"\n-----END X509 CRL-----\n");
    std::fs::write(dir.join("crl-junk.pem"), junk).unwrap();
    let config = dir.join("junk.toml");
    std::fs::write(
        &config,
        format!(
            "[listen]\naddress = \"127.0.0.1:0\"\n[tls]\ncert = \"server.pem\"\nkey = \"server.key\"\nclient_ca = \"root.pem\"\n\
             crl = \"crl-junk.pem\"\n[upstream]\n{upstream}\n[[route]]\npath = \"/**\"\nallow = [\"any\"]\n"
        ),
    )
    .unwrap();
    run(Command::new(ambos_bin()).args(["proxy", "--check", "--config"]).arg(&config)).fails_with(2, "crl-junk.pem");
    for (crl, extra, who, expect) in cases {
        let tls = format!(
            "cert = \"server.pem\"\nkey = \"server.key\"\nclient_ca = \"root.pem\"\ncrl = \"crl-{crl}.pem\"\n{extra}"
        );
        let proxy = Proxy::start(dir, &tls, &upstream, "http");
        let status = curl(proxy.port, dir, who);
        if *expect == "200" {
            assert_eq!(status, "200", "crl-{crl} {extra}: {}", proxy.audit());
        } else {
            assert_ne!(status, "200", "crl-{crl} {extra}: must be refused");
            let line = proxy.wait_audit(&["\"handshake\"", expect]);
            assert!(line.contains("\"deny\""), "{line}");
        }
        if *crl == "late" && extra.is_empty() {
            // Within the grace: still enforced, and the log says it is stale.
            assert!(proxy.log().contains("past its nextUpdate"), "{}", proxy.log());
        }
        if !extra.is_empty() && !extra.contains("grace") {
            let check = run(Command::new(ambos_bin())
                .args(["proxy", "--check", "--config"])
                .arg(proxy.daemon.config.as_ref().unwrap()));
            assert!(check.stdout.contains("warning:"), "--check names the knob: {}", check.stdout);
        }
    }
}

#[test]
fn the_proxy_fetches_crls_from_distribution_points_and_follows_revocations() {
    require("curl");
    require("openssl");
    let port = free_port();
    let url = format!("https://127.0.0.1:{port}/v1/crl");
    let ca = TestCa::new(&["--crl-url", &url]);
    ca.issue("server", "localhost", &["--san", "ip:127.0.0.1"]);
    ca.issue("client", "alice", &[]);
    ca.issue("client", "admin", &["--admin"]);
    // The distribution points, as OpenSSL reads them: leaves name the
    // intermediate's CRL, the intermediate names the root's.
    let dp = |pem: &str| {
        let file = ca.write("one.pem", pem);
        run(Command::new("openssl").args(["x509", "-noout", "-ext", "crlDistributionPoints", "-in"]).arg(file)).stdout
    };
    let alice = blocks(&ca.path("alice.crt"));
    assert!(dp(&alice[0]).contains(&format!("URI:{url}\n")), "{}", dp(&alice[0]));
    assert!(dp(&alice[1]).contains(&format!("URI:{url}/root")), "{}", dp(&alice[1]));
    // `ambos crl --set-url` changes it for certificates issued from then on.
    ca.ambos(&["crl", "--set-url", "http://crl.acme.test/ca.crl"]).ok();
    ca.issue("client", "later", &[]);
    assert!(dp(&blocks(&ca.path("later.crt"))[0]).contains("URI:http://crl.acme.test/ca.crl"));
    ca.ambos(&["crl", "--set-url", "ftp://x"]).fails_with(2, "--set-url");
    ca.ambos(&["crl", "--set-url", &url]).ok();

    // The CRL URL is in the certificates before serve starts: this port is picked first.
    let serve = Daemon::spawn(
        ca.cmd().args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--crl-validity", "1h"]),
        ca.dir().join("serve.log"),
    );
    assert_eq!(serve.port, port);
    let proxy = Proxy::start(
        ca.dir(),
        "cert = \"certs/localhost.crt\"\nkey = \"certs/localhost.key\"\nclient_ca = \"certs/ca.crt\"\n\
         crl_from_distribution_points = true\ncrl_refresh = \"1s\"",
        &format!("url = \"http://127.0.0.1:{}\"", start_http_upstream()),
        "http",
    );
    let curl = |who: &str| {
        ca.curl(Some(who), &format!("https://localhost:{}/", proxy.port), &["--max-time", "5", "--http1.1"]).status
    };
    // No CRL yet: the first client is refused (status unknown) and teaches
    // the proxy where the CRLs are; it gets in once they are loaded.
    let started = Instant::now();
    let mut first = None;
    let status = loop {
        let s = curl("alice");
        first.get_or_insert(s.clone());
        if s == "200" || started.elapsed() > Duration::from_secs(10) {
            break s;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(status, "200", "{}\n{}", proxy.audit(), proxy.log());
    assert_ne!(first.as_deref(), Some("200"), "the first request, before any CRL, must be refused");
    proxy.wait_audit(&["\"handshake\"", "no CRL of CA"]);
    eprintln!("alice got in {:?} after her first attempt", started.elapsed());
    // Revoked through the CA's API: the CA publishes at once, the proxy's
    // next conditional GET (1 s) loads it.
    let serial = run(Command::new("openssl").args(["x509", "-noout", "-serial", "-in"]).arg(ca.path("alice.crt")))
        .stdout
        .trim()
        .trim_start_matches("serial=")
        .to_string();
    let mut revoke = ca.cmd();
    revoke
        .args(["revoke", &serial, "--reason", "key-compromise", "--ca-url", &format!("https://127.0.0.1:{port}")])
        .arg("--root")
        .arg(ca.path("ca.crt"))
        .args(ca.cert_flags("admin"));
    run(&mut revoke).ok();
    let started = Instant::now();
    while curl("alice") == "200" {
        assert!(started.elapsed() < Duration::from_secs(10), "still allowed after revocation: {}", proxy.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    let refused = started.elapsed();
    // That first refusal may close a connection whose handshake came just
    // before the new CRL (audited as event "revoked"); a new connection is
    // refused at its handshake.
    assert_ne!(curl("alice"), "200", "allowed again after revocation: {}", proxy.log());
    proxy.wait_audit(&["\"handshake\"", "revoked"]);
    eprintln!("alice refused {refused:?} after her revocation");
}
