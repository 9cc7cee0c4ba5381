//! Certificate lifecycle with no human in the loop: `ambos serve`, tokens,
//! `enroll`, `renew`, `agent`, revocation through the API, the proxy pulling
//! `crl_url`, and `ambos tunnel`.
use ambos_interop_tests::{
    ambos_bin, cert_flags, curl, openssl_csr, poll, require, run, s_client, spawn_logged, start_http_upstream,
    wait_file_contains, Daemon, Run, TestCa,
};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use time::format_description::well_known::Rfc3339;

struct Ca {
    ca: TestCa,
    /// 0 until serve has started and reported the port it got; then kept for restarts.
    port: u16,
    serve: Option<Daemon>,
    serve_args: Vec<String>,
}

impl Ca {
    fn new() -> Ca {
        Ca::with_serve_args(&[])
    }

    fn with_serve_args(args: &[&str]) -> Ca {
        let ca = TestCa::new(&[]);
        std::fs::create_dir_all(ca.certs()).unwrap();
        std::fs::copy(ca.data().join("root.crt"), ca.path("ca.crt")).unwrap();
        let serve_args = args.iter().map(|s| s.to_string()).collect();
        let mut c = Ca { ca, port: 0, serve: None, serve_args };
        c.start();
        c
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    fn start(&mut self) {
        let log = self.ca.dir().join(format!("serve-{}.log", if self.port == 0 { "first" } else { "again" }));
        let serve = Daemon::spawn(
            self.ca
                .cmd()
                .args(["serve", "--listen", &format!("127.0.0.1:{}", self.port), "--crl-validity", "1h"])
                .args(&self.serve_args),
            log,
        );
        assert!(self.port == 0 || serve.port == self.port, "serve came back on another port");
        self.port = serve.port;
        self.serve = Some(serve);
    }

    fn token(&self, args: &[&str]) -> String {
        let mut all = vec!["token", "create"];
        all.extend_from_slice(args);
        self.ca.ambos(&all).ok().stdout.trim().to_string()
    }

    fn enroll(&self, token: &str, out: &Path, name: Option<&str>) -> Run {
        let mut cmd = self.ca.cmd();
        cmd.args(["enroll", "--ca-url", &self.url(), "--root"])
            .arg(self.ca.path("ca.crt"))
            .args(["--token", token, "--out"])
            .arg(out);
        if let Some(n) = name {
            cmd.arg(n);
        }
        run(&mut cmd)
    }

    fn curl_api(&self, client: Option<&str>, method: &str, path: &str, body: Option<&str>) -> (String, String) {
        let mut extra = vec!["-X", method];
        if let Some(b) = body {
            extra.extend(["-H", "Content-Type: application/json", "-d", b]);
        }
        let r = self.ca.curl(client, &format!("https://localhost:{}{path}", self.port), &extra);
        (r.status, r.body)
    }
}

fn serial_of(ca: &TestCa, cert: &Path) -> String {
    let out = ca.ambos(&["inspect", cert.to_str().unwrap(), "--json"]).ok();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    v["certificates"][0]["serial"].as_str().unwrap().to_string()
}

#[test]
fn a_token_buys_one_certificate_even_under_20_concurrent_spends() {
    let c = Ca::new();
    let out = c.ca.dir().join("out");
    let t = c.token(&["web", "--spiffe", "spiffe://acme.test/web"]);
    assert!(t.starts_with("ambos_") && t.len() > 40, "{t}");
    c.enroll(&t, &out, None).ok();
    assert!(out.join("web.crt").exists() && out.join("web.key").exists() && out.join("ca.crt").exists());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(out.join("web.key")).unwrap().permissions().mode() & 0o777, 0o600);
    // The token is stored hashed only.
    let db = match &c.ca.store {
        Some(url) => run(Command::new("pg_dump").arg(url)).stdout.into_bytes(),
        None => std::fs::read(c.ca.data().join("ambos.db")).unwrap(),
    };
    assert!(!db.is_empty());
    assert!(!String::from_utf8_lossy(&db).contains(&t), "token secret stored in clear");
    // Reuse.
    c.enroll(&t, &c.ca.dir().join("again"), None).fails_with(1, "token already used");
    // Expiry.
    let short = c.token(&["late", "--ttl", "1s"]);
    std::thread::sleep(Duration::from_millis(1500));
    c.enroll(&short, &out, None).fails_with(1, "token expired");
    // Wrong names: a CN other than the token's, or a SAN it does not list.
    let named = c.token(&["api", "--profile", "server"]);
    c.enroll(&named, &out, Some("other")).fails_with(1, "names not allowed");
    let (_, csr) = openssl_csr(c.ca.dir(), "x", "/CN=api", &["-addext", "subjectAltName=DNS:api,DNS:evil.test"]);
    let body = serde_json::json!({"token": named, "csr": std::fs::read_to_string(&csr).unwrap()}).to_string();
    let (code, resp) = c.curl_api(None, "POST", "/v1/enroll", Some(&body));
    assert_eq!(code, "403", "{resp}");
    assert!(resp.contains("evil.test"), "{resp}");
    // A refused CSR does not spend the token.
    c.enroll(&named, &out, None).ok();
    // Unknown token.
    c.enroll("ambos_0000", &out, None).fails_with(1, "invalid token");
    // The audit trail has each enrollment and refusal, by token (never its secret).
    let trail = c.ca.ambos(&["audit", "--json"]).ok().stdout;
    assert!(!trail.contains(&t) && !trail.contains(&named), "a token secret in the audit trail");
    let entries: Vec<serde_json::Value> = serde_json::from_str(&trail).unwrap();
    let of = |action: &str, outcome: &str| {
        entries.iter().filter(|e| e["action"] == action && e["outcome"] == outcome).cloned().collect::<Vec<_>>()
    };
    let enrolled = of("enroll", "ok");
    assert_eq!(enrolled.len(), 2, "web and api: {trail}");
    assert!(enrolled.iter().all(|e| e["actor"].as_str().unwrap().starts_with("token:") && e["serial"].is_string()));
    let refused: Vec<String> = of("enroll", "refused").iter().map(|e| e["detail"].to_string()).collect();
    for why in ["already used", "expired", "does not allow", "evil.test", "unknown enrollment token"] {
        assert!(refused.iter().any(|d| d.contains(why)), "no refusal '{why}' in {refused:?}");
    }
    assert_eq!(of("token-create", "ok").len(), 3, "{trail}");

    // 20 concurrent spends of one token: exactly one wins.
    let race = c.token(&["racer"]);
    let handles: Vec<_> = (0..20)
        .map(|i| {
            let mut cmd = c.ca.cmd();
            cmd.args(["enroll", "--ca-url", &c.url(), "--root"])
                .arg(c.ca.path("ca.crt"))
                .args(["--token", &race, "--out"])
                .arg(c.ca.dir().join(format!("race-{i}")))
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            cmd.spawn().unwrap()
        })
        .collect();
    let wins = handles.into_iter().map(|mut h| h.wait().unwrap()).filter(|s| s.success()).count();
    assert_eq!(wins, 1, "exactly one of 20 concurrent enrollments may spend the token");
    let list = c.ca.ambos(&["list", "--json"]).ok().stdout;
    assert_eq!(list.matches("\"name\": \"racer\"").count(), 1, "{list}");
}

#[test]
fn the_api_answers_curl_and_openssl_with_credentials_and_refuses_without() {
    require("curl");
    require("openssl");
    let c = Ca::new();
    c.ca.issue("client", "admin", &["--admin"]);
    c.ca.issue("client", "plain", &[]);
    let (code, roots) = c.curl_api(None, "GET", "/v1/roots", None);
    assert_eq!(code, "200");
    assert_eq!(roots, std::fs::read_to_string(c.ca.path("ca.crt")).unwrap());
    // The CRL in DER, read by openssl.
    let crl = c.ca.dir().join("crl.der");
    let got = c.ca.curl(None, &format!("https://localhost:{}/v1/crl", c.port), &["-o", crl.to_str().unwrap()]);
    assert_eq!((got.code, got.status.as_str()), (0, "200"), "{}", got.stderr);
    run(Command::new("openssl").args(["crl", "-inform", "DER", "-noout", "-in"]).arg(&crl)).ok();

    let plain = serial_of(&c.ca, &c.ca.path("plain.crt"));
    let body = format!("{{\"serial\":\"{plain}\",\"reason\":\"key-compromise\"}}");
    let (code, resp) = c.curl_api(None, "POST", "/v1/revoke", Some(&body));
    assert_eq!(code, "401", "{resp}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&resp).unwrap()["error"], "client certificate required");
    let (code, resp) = c.curl_api(Some("plain"), "POST", "/v1/revoke", Some(&body));
    assert_eq!(code, "403", "{resp}");
    let (code, _) = c.curl_api(Some("plain"), "GET", "/v1/certs", None);
    assert_eq!(code, "403");
    let (code, resp) = c.curl_api(Some("admin"), "GET", "/v1/certs", None);
    assert_eq!(code, "200", "{resp}");
    assert!(resp.contains("\"name\":\"plain\""), "{resp}");
    let (code, resp) = c.curl_api(Some("admin"), "POST", "/v1/revoke", Some(&body));
    assert_eq!(code, "200", "{resp}");
    let (code, _) = c.curl_api(Some("admin"), "POST", "/v1/revoke", Some(&body));
    assert_eq!(code, "409", "already revoked");
    // The new CRL lists it at once.
    assert_eq!(c.curl_api(None, "GET", "/v1/crl", None).0, "200");
    let got = c.ca.curl(None, &format!("https://localhost:{}/v1/crl", c.port), &["-o", crl.to_str().unwrap()]);
    assert_eq!((got.code, got.status.as_str()), (0, "200"), "{}", got.stderr);
    let text =
        run(Command::new("openssl").args(["crl", "-inform", "DER", "-noout", "-text", "-in"]).arg(&crl)).ok().stdout;
    assert!(text.to_lowercase().contains(&plain[..8]), "{text}");
    // A revoked certificate cannot use the API any more, not even to renew.
    let (code, _) = c.curl_api(Some("plain"), "POST", "/v1/renew", Some("{}"));
    assert_eq!(code, "403");

    // openssl s_client with the admin certificate.
    let out =
        s_client(&c.ca, "admin", c.port, b"GET /v1/certs HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    assert!(out.stdout.starts_with("HTTP/1.1 200"), "{}", out.stderr);
    // Without trusting our root, the API's certificate is refused.
    let out = curl(&format!("https://localhost:{}/v1/roots", c.port), None, None, &["--max-time", "5"]);
    assert_ne!(out.code, 0);
}

/// The leaf of a PKCS#12 file, as `openssl pkcs12 -clcerts -nokeys` prints it (PEM).
fn p12_leaf(p12: &Path, pw: &Path) -> String {
    let out = run(Command::new("openssl")
        .args(["pkcs12", "-clcerts", "-nokeys", "-passin", &format!("file:{}", pw.display()), "-in"])
        .arg(p12))
    .ok()
    .stdout;
    let begin = out.find("-----BEGIN CERTIFICATE-----").expect("a certificate");
    out[begin..].to_string()
}

#[test]
fn enroll_and_renew_with_p12_keep_the_keystore_in_step_with_the_pems() {
    require("openssl");
    require("keytool");
    let c = Ca::new();
    let d = c.ca.dir().join("d");
    let pw = c.ca.write("p12-pw.txt", "p12-secret\n");
    let token = c.token(&["web", "--spiffe", "spiffe://acme.test/web"]);
    let mut cmd = c.ca.cmd();
    cmd.args(["enroll", "--ca-url", &c.url(), "--root"]).arg(c.ca.path("ca.crt"));
    cmd.args(["--token", &token, "--out"]).arg(&d).arg("--p12").arg("--p12-password-file").arg(&pw);
    run(&mut cmd).ok();
    let (crt, p12) = (d.join("web.crt"), d.join("web.p12"));
    let leaf = |crt: &Path| {
        let text = std::fs::read_to_string(crt).unwrap();
        text[..text.find("-----END CERTIFICATE-----").unwrap() + 26].to_string()
    };
    assert_eq!(p12_leaf(&p12, &pw), leaf(&crt));
    #[cfg(unix)]
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&p12).unwrap().permissions()) & 0o777, 0o600);
    let list = run(Command::new("keytool")
        .args(["-list", "-storetype", "PKCS12", "-storepass", "p12-secret", "-keystore"])
        .arg(&p12))
    .ok()
    .stdout;
    assert!(list.contains("PrivateKeyEntry"), "{list}");

    let enrolled = leaf(&crt);
    let mut cmd = c.ca.cmd();
    cmd.args(["renew", "--ca-url", &c.url(), "--root"]).arg(d.join("ca.crt")).args(cert_flags(&d, "web"));
    cmd.arg("--p12").arg("--p12-password-file").arg(&pw);
    run(&mut cmd).ok();
    assert_ne!(leaf(&crt), enrolled, "renewed");
    assert_eq!(p12_leaf(&p12, &pw), leaf(&crt), "NAME.p12 follows the renewal");
}

#[test]
fn the_certs_endpoint_takes_the_list_filters_and_answers_in_rfc3339() {
    require("curl");
    let c = Ca::new();
    c.ca.issue("client", "admin", &["--admin"]);
    c.ca.issue("client", "web", &["--ttl", "30m"]);
    c.ca.issue("client", "web", &["--force"]);
    let get = |query: &str| {
        let (code, body) = c.curl_api(Some("admin"), "GET", &format!("/v1/certs{query}"), None);
        assert_eq!(code, "200", "{query}: {body}");
        serde_json::from_str::<serde_json::Value>(&body).unwrap()
    };
    let all = get("?name=web");
    assert_eq!(all.as_array().unwrap().len(), 2, "{all}");
    assert!(all[0]["not_after"].as_str().unwrap().ends_with('Z'), "RFC 3339, not unix seconds: {all}");
    let current = get("?name=web&current=true");
    assert_eq!(current.as_array().unwrap().len(), 1, "{current}");
    assert_eq!(current[0]["serial"], all[1]["serial"], "the newest");
    assert_eq!(get("?expiring=1h").as_array().unwrap().len(), 1);
    let current_all = get("?current=true").as_array().unwrap().len();
    assert_eq!(get("?summary=true&current=true")["total"], current_all, "counts of the same filter");
    assert_eq!(get("?summary=true")["total"], current_all + 1, "the renewed web certificate");
    let (code, body) = c.curl_api(Some("admin"), "GET", "/v1/certs?expiring=soon", None);
    assert_eq!(code, "400", "{body}");
    assert!(body.contains("invalid duration 'soon'"), "{body}");
}

#[test]
fn a_server_client_token_enrolls_a_certificate_with_both_ekus() {
    require("openssl");
    let c = Ca::new();
    let d = c.ca.dir().join("d");
    let token = c.token(&["mesh.acme.test", "--profile", "server,client", "--spiffe", "spiffe://acme.test/mesh"]);
    c.enroll(&token, &d, None).ok();
    let text = run(Command::new("openssl")
        .args(["x509", "-noout", "-ext", "extendedKeyUsage,subjectAltName", "-in"])
        .arg(d.join("mesh.acme.test.crt")))
    .ok()
    .stdout;
    assert!(text.contains("TLS Web Server Authentication, TLS Web Client Authentication"), "{text}");
    assert!(text.contains("URI:spiffe://acme.test/mesh"), "{text}");
}

/// `openssl x509 -fingerprint -sha256` of a PEM file: `AB:CD:...` (upper case, colons).
fn openssl_fingerprint(pem: &Path) -> String {
    let out = run(Command::new("openssl").args(["x509", "-noout", "-fingerprint", "-sha256", "-in"]).arg(pem)).ok();
    out.stdout.trim().rsplit('=').next().unwrap().to_string()
}

#[test]
fn bootstrap_takes_the_root_only_by_its_fingerprint_and_only_from_a_server_under_it() {
    require("openssl");
    let c = Ca::new();
    let root = c.ca.data().join("root.crt");
    let fingerprint = openssl_fingerprint(&root);
    assert!(fingerprint.contains(':') && fingerprint.len() == 95, "{fingerprint}");
    let bootstrap = |url: &str, fp: &str, out: &Path| {
        run(c.ca.cmd().args(["bootstrap", "--ca-url", url, "--fingerprint", fp, "--out"]).arg(out))
    };
    // A wrong fingerprint: exit 2, one line, nothing written.
    let wrong = format!("{}00", &fingerprint[..fingerprint.len() - 2]);
    let none = c.ca.dir().join("none");
    bootstrap(&c.url(), &wrong, &none).fails_with(2, "no root with SHA-256 fingerprint");
    assert!(!none.exists());
    bootstrap(&c.url(), "3f:a9", &none).fails_with(2, "--fingerprint '3f:a9' is not a SHA-256");

    // The right one, as openssl prints it (upper case, colons): root.crt, 0644, the CA's root.
    let out = c.ca.dir().join("boot");
    let done = bootstrap(&c.url(), &fingerprint, &out).ok();
    assert!(done.stdout.contains("root.crt"), "{}", done.stdout);
    let written = out.join("root.crt");
    assert_eq!(std::fs::read_to_string(&written).unwrap(), std::fs::read_to_string(&root).unwrap());
    #[cfg(unix)]
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&written).unwrap().permissions()) & 0o777,
        0o644
    );
    // The root it wrote is what enroll trusts next.
    let token = c.token(&["dev"]);
    let mut cmd = c.ca.cmd();
    cmd.args(["enroll", "--ca-url", &c.url(), "--root"]).arg(&written).args(["--token", &token, "--out"]).arg(&out);
    run(&mut cmd).ok();

    // A server that hands out the right root but whose own certificate is
    // from another CA (openssl s_server serving ./v1/roots): refused, nothing written.
    let other = TestCa::with_localhost(&[]);
    let www = c.ca.dir().join("www");
    std::fs::create_dir_all(www.join("v1")).unwrap();
    std::fs::copy(&root, www.join("v1/roots")).unwrap();
    let port = ambos_interop_tests::free_port();
    let mut server = ambos_interop_tests::spawn_logged(
        Command::new("openssl")
            .args(["s_server", "-WWW", "-accept", &port.to_string(), "-cert"])
            .arg(other.path("localhost.crt"))
            .arg("-key")
            .arg(other.path("localhost.key"))
            .current_dir(&www),
        &c.ca.dir().join("s_server.log"),
    );
    ambos_interop_tests::wait_for_port(port, &mut server.0, &c.ca.dir().join("s_server.log"));
    let elsewhere = c.ca.dir().join("elsewhere");
    let url = format!("https://127.0.0.1:{port}");
    let refused = bootstrap(&url, &fingerprint, &elsewhere);
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(refused.stderr.contains("does not chain to the root with that fingerprint"), "{}", refused.stderr);
    assert!(!elsewhere.exists());
}

#[test]
fn full_loop_enroll_proxy_renew_and_revoke_through_the_api() {
    require("curl");
    let c = Ca::new();
    let d = c.ca.dir().join("d");
    const CERT_TTL: Duration = Duration::from_secs(15);
    let server_token = c.token(&["localhost", "--profile", "server", "--san", "ip:127.0.0.1", "--cert-ttl", "15s"]);
    let client_token = c.token(&["web", "--spiffe", "spiffe://acme.test/web", "--cert-ttl", "15s"]);
    let enrolled = Instant::now();
    c.enroll(&server_token, &d, None).ok();
    c.enroll(&client_token, &d, None).ok();
    c.ca.issue("client", "admin", &["--admin"]);

    let upstream = start_http_upstream();
    let config = format!(
        r#"
[listen]
address = "127.0.0.1:0"
[tls]
cert = "d/localhost.crt"
key = "d/localhost.key"
client_ca = "d/ca.crt"
crl_url = "{url}/v1/crl"
crl_refresh = "1s"
[upstream]
url = "http://127.0.0.1:{upstream}"
[[route]]
path = "/**"
allow = ["spiffe://acme.test/web"]
"#,
        url = c.url()
    );
    let proxy = Daemon::proxy(c.ca.dir(), &config, &[]);
    let port = proxy.port;
    let agent = |name: &str, log: &str| {
        spawn_logged(
            Command::new(ambos_bin())
                .args(["agent", "--ca-url", &c.url(), "--root"])
                .arg(d.join("ca.crt"))
                .args(cert_flags(&d, name))
                .args(["--exec", &format!("touch {}", c.ca.dir().join(format!("{log}.renewed")).display())]),
            &c.ca.dir().join(log),
        )
    };
    let _server_agent = agent("localhost", "agent-server.log");
    let _client_agent = agent("web", "agent-web.log");

    let (web_crt, web_key) = (d.join("web.crt"), d.join("web.key"));
    let get = || {
        let url = format!("https://localhost:{port}/");
        curl(&url, Some(&d.join("ca.crt")), Some((&web_crt, &web_key)), &["--max-time", "5", "-o", "/dev/null"])
    };
    let first = (serial_of(&c.ca, &d.join("web.crt")), serial_of(&c.ca, &d.join("localhost.crt")));
    let mut web_serials = std::collections::HashSet::new();
    let mut server_serials = std::collections::HashSet::new();
    // Calls keep working until each side has been renewed twice (15 s
    // certificates renew about every 10 s) and the first certificates have
    // expired: events, not a fixed time, with a deadline for slow machines.
    let deadline = enrolled + Duration::from_secs(90);
    loop {
        let mut ok = get().status == "200";
        if !ok {
            // The agent writes key then certificate; a read between the two can mismatch.
            std::thread::sleep(Duration::from_millis(300));
            ok = get().status == "200";
        }
        assert!(ok, "call failed across renewals: {}\nproxy: {}", get().stderr, proxy.log());
        let web_renewed = web_serials.insert(serial_of(&c.ca, &d.join("web.crt")));
        server_serials.insert(serial_of(&c.ca, &d.join("localhost.crt")));
        // Stopping just after a client renewal leaves the revocation below
        // most of a lifetime before the agent renews again.
        let renewed_twice = web_serials.len() >= 3 && server_serials.len() >= 3;
        if renewed_twice && web_renewed && enrolled.elapsed() > CERT_TTL + Duration::from_secs(2) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no two renewals of each within 90 s: client {web_serials:?} server {server_serials:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        web_serials.len() >= 3 && server_serials.len() >= 3,
        "renewals: client {web_serials:?} server {server_serials:?}"
    );
    assert!(!web_serials.is_empty() && web_serials.contains(&first.0));
    assert!(c.ca.dir().join("agent-web.log.renewed").exists(), "--exec ran");

    // Revoke the client through the API; the proxy learns it from crl_url.
    let current = serial_of(&c.ca, &d.join("web.crt"));
    let mut cmd = c.ca.cmd();
    cmd.args(["revoke", &current, "--reason", "key-compromise", "--ca-url", &c.url(), "--root"])
        .arg(c.ca.path("ca.crt"))
        .args(c.ca.cert_flags("admin"));
    run(&mut cmd).ok();
    let revoked_at = Instant::now();
    loop {
        let r = get();
        if r.status != "200" && serial_of(&c.ca, &d.join("web.crt")) == current {
            break;
        }
        assert!(
            revoked_at.elapsed() < Duration::from_secs(4),
            "revoked client still accepted 4 s after revocation (refresh 1 s)"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_agent_keeps_its_files_while_the_ca_is_away_and_renews_when_it_returns() {
    let mut c = Ca::new();
    let d = c.ca.dir().join("d");
    // 30 s of life, renewal due after a tenth of it: the CA can stay away for
    // a while (slow CI) without the certificate expiring under the agent.
    let t = c.token(&["device", "--cert-ttl", "30s"]);
    c.enroll(&t, &d, None).ok();
    drop(c.serve.take()); // the CA goes away
    let before = (std::fs::read(d.join("device.crt")).unwrap(), std::fs::read(d.join("device.key")).unwrap());
    let log = c.ca.dir().join("agent.log");
    let _agent = spawn_logged(
        Command::new(ambos_bin())
            .args(["agent", "--ca-url", &c.url(), "--root"])
            .arg(d.join("ca.crt"))
            .args(cert_flags(&d, "device"))
            .args(["--renew-at", "0.1"]),
        &log,
    );
    wait_file_contains(&log, "renewal failed", 15);
    // The first retry comes within the 1 s backoff: 2 s at the most.
    let text = poll(
        2,
        Duration::from_millis(100),
        || std::fs::read_to_string(&log).unwrap(),
        |t| t.matches("renewal failed").count() >= 2,
    );
    assert!(text.matches("renewal failed").count() >= 2, "no retry: {text}");
    assert_eq!((std::fs::read(d.join("device.crt")).unwrap(), std::fs::read(d.join("device.key")).unwrap()), before);
    c.start(); // back on the same port
    let cert =
        poll(15, Duration::from_millis(200), || std::fs::read(d.join("device.crt")).unwrap(), |c| *c != before.0);
    assert!(cert != before.0, "no renewal after the CA came back: {}", std::fs::read_to_string(&log).unwrap());
    // The log line follows the file writes.
    wait_file_contains(&log, "renewed;", 5);
}

#[test]
fn kill_9_of_serve_during_an_enrollment_burst_keeps_every_serial_exactly_once() {
    // 40 devices behind one address, retrying spent tokens after the crash:
    // more failed tokens than the default per-address limit (10 a minute).
    let mut c = Ca::with_serve_args(&["--token-failure-limit", "1000"]);
    let tokens: Vec<String> = (0..40).map(|i| c.token(&[&format!("dev-{i}")])).collect();
    let out = c.ca.dir().join("fleet");
    let spawn = |c: &Ca, t: &str| {
        let mut cmd = c.ca.cmd();
        cmd.args(["enroll", "--ca-url", &c.url(), "--root"])
            .arg(c.ca.path("ca.crt"))
            .args(["--token", t, "--out"])
            .arg(&out)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd.spawn().unwrap()
    };
    let first: Vec<_> = tokens.iter().map(|t| spawn(&c, t)).collect();
    std::thread::sleep(Duration::from_millis(400));
    let mut serve = c.serve.take().unwrap();
    serve.child.0.kill().unwrap(); // SIGKILL mid-burst
    serve.child.0.wait().unwrap();
    // Whether an enrollment cut off by the crash failed is not the question.
    for mut h in first {
        h.wait().expect("wait for enroll");
    }
    c.start();
    // Every token not spent before the crash works now; spent ones are refused.
    for t in &tokens {
        spawn(&c, t).wait().expect("wait for enroll");
    }
    let list: serde_json::Value = serde_json::from_str(&c.ca.ambos(&["list", "--json"]).ok().stdout).unwrap();
    let mut serials: Vec<String> =
        list.as_array().unwrap().iter().map(|r| r["serial"].as_str().unwrap().to_string()).collect();
    let n = serials.len();
    serials.sort();
    serials.dedup();
    assert_eq!(serials.len(), n, "a serial is stored twice");
    // A device whose answer was lost in the crash (token spent, certificate
    // committed, response never sent) has no file; every file that exists is stored.
    let mut on_disk = 0;
    for i in 0..40 {
        let cert = out.join(format!("dev-{i}.crt"));
        if !cert.exists() {
            continue;
        }
        on_disk += 1;
        let s = serial_of(&c.ca, &cert);
        assert!(serials.binary_search(&s).is_ok(), "dev-{i}'s certificate {s} is not in the store");
    }
    assert!(on_disk >= 30, "only {on_disk} of 40 devices got a certificate");
    let devs = list.as_array().unwrap().iter().filter(|r| r["name"].as_str().unwrap().starts_with("dev-")).count();
    assert_eq!(devs, 40, "one stored certificate per token");
}

#[test]
fn a_plaintext_client_reaches_an_mtls_service_through_the_tunnel() {
    require("curl");
    let ca = TestCa::with_localhost(&[]);
    ca.issue("client", "web", &["--spiffe", "spiffe://acme.test/web"]);
    ca.issue("client", "gone", &[]);
    ca.ambos(&["revoke", "gone"]).ok();
    ca.ambos(&["crl", "--all", "--out", "certs/crls.pem"]).ok();
    let other = TestCa::new(&["--name", "Elsewhere"]);
    other.issue("client", "web", &[]);
    let upstream = start_http_upstream();
    let certs = ca.certs();
    let proxy = Daemon::spawn(
        Command::new(ambos_bin())
            .args(["proxy", "--listen", "127.0.0.1:0", "--upstream", &format!("http://127.0.0.1:{upstream}")])
            .args(cert_flags(&certs, "localhost"))
            .arg("--client-ca")
            .arg(certs.join("ca.crt"))
            .arg("--crl")
            .arg(certs.join("crls.pem")),
        ca.dir().join("proxy.log"),
    );
    let port = proxy.port;
    let tunnels = std::cell::Cell::new(0);
    let tunnel = |dir: &PathBuf, who: &str, expect: Option<&str>| {
        tunnels.set(tunnels.get() + 1);
        let mut cmd = Command::new(ambos_bin());
        cmd.args(["tunnel", "--listen", "127.0.0.1:0", "--connect", &format!("localhost:{port}")])
            .args(cert_flags(dir, who))
            .arg("--ca")
            .arg(certs.join("ca.crt"));
        if let Some(e) = expect {
            cmd.args(["--expect", e]);
        }
        let tunnel = Daemon::spawn(&mut cmd, ca.dir().join(format!("tunnel-{}.log", tunnels.get())));
        let port = tunnel.port;
        (tunnel, port)
    };
    let get = |tport: u16| curl(&format!("http://127.0.0.1:{tport}/via-tunnel"), None, None, &["--max-time", "5"]);
    let (_t1, p1) = tunnel(&certs, "web", Some("dns:localhost"));
    let r = get(p1);
    assert_eq!(r.status, "200", "{} {}", r.body, r.stderr);
    assert!(r.body.contains("URI=spiffe://acme.test/web"), "upstream sees the tunnel's identity: {}", r.body);
    let (_t2, p2) = tunnel(&certs, "gone", None);
    assert_ne!(get(p2).code, 0, "revoked certificate through the tunnel");
    let (_t3, p3) = tunnel(&other.certs(), "web", None);
    assert_ne!(get(p3).code, 0, "certificate from another CA through the tunnel");
    let (_t4, p4) = tunnel(&certs, "web", Some("spiffe://acme.test/someone-else"));
    assert_ne!(get(p4).code, 0, "server identity does not match --expect");
}

#[test]
fn serve_renews_its_own_certificate_and_reports_metrics() {
    require("curl");
    let c = Ca::with_serve_args(&["--server-cert-ttl", "3s"]);
    let t = c.token(&["m"]);
    c.enroll(&t, &c.ca.dir().join("m"), None).ok();
    // Until serve's first certificate has expired (by the store's record of
    // it), so that only a renewed one lets curl in.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let list: serde_json::Value = serde_json::from_str(&c.ca.ambos(&["list", "--json"]).ok().stdout).unwrap();
        let first_expiry = list
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["name"] == "ambos-serve")
            .map(|r| time::OffsetDateTime::parse(r["not_after"].as_str().unwrap(), &Rfc3339).unwrap())
            .min()
            .expect("serve's certificate is in the store");
        if time::OffsetDateTime::now_utc() > first_expiry + time::Duration::milliseconds(200) {
            break;
        }
        assert!(Instant::now() < deadline, "serve's first certificate did not expire: {list}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (code, body) = c.curl_api(None, "GET", "/healthz", None);
    assert_eq!(code, "200", "{body}");
    let (code, metrics) = c.curl_api(None, "GET", "/metrics", None);
    assert_eq!(code, "200");
    assert!(metrics.contains("ambos_ca_enrollments_total{result=\"ok\"} 1"), "{metrics}");
    let list = c.ca.ambos(&["list", "--json"]).ok().stdout;
    assert!(list.matches("\"name\": \"ambos-serve\"").count() >= 2, "renewals are recorded: {list}");
}

#[test]
fn enroll_into_an_out_dir_it_cannot_write_spends_nothing() {
    let c = Ca::new();
    let t = c.token(&["web"]);
    // A file where the directory should be (the tests run as root, whom permissions do not stop).
    let blocker = c.ca.write("not-a-dir", "x");
    let r = c.enroll(&t, &blocker.join("certs"), None);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("cannot create directory") && r.stderr.contains("not-a-dir"), "{}", r.stderr);
    // The token was not spent: it still buys the certificate.
    let out = c.ca.dir().join("out");
    c.enroll(&t, &out, None).ok();
    assert!(out.join("web.crt").exists());
}
