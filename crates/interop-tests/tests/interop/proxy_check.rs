//! `ambos proxy --check` on configurations the proxy would start with but
//! should not be trusted to serve: each problem is one line naming the
//! config file and field, exit 2; and what the running proxy does instead.
use ambos_interop_tests::{ambos_bin, run, Daemon, ProxyToml, Run, TestCa};
use std::path::Path;
use std::process::Command;

fn check(dir: &Path, name: &str, config: &str) -> Run {
    let path = dir.join(name);
    std::fs::write(&path, config).unwrap();
    run(Command::new(ambos_bin()).args(["proxy", "--check", "--config"]).arg(&path).current_dir(dir))
}

fn config(listen: &str, tls: &str, methods: &str, metrics: &str) -> String {
    format!(
        "[listen]\naddress = \"{listen}\"\n\n[tls]\n{tls}\n\n[upstream]\nurl = \"http://127.0.0.1:8080\"\n\n\
         [[route]]\npath = \"/**\"\nmethods = [{methods}]\nallow = [\"any\"]\n\n[metrics]\naddress = \"{metrics}\"\n"
    )
}

#[test]
fn check_reports_each_problem_on_one_line_and_exits_2() {
    let ca = TestCa::with_localhost(&["alice"]);
    ca.issue_expired("server", "expired-api", &["--san", "dns:localhost"]).ok();
    // A stale CRL (nextUpdate a day ago, crl_grace 1 h) from the generated test PKI.
    std::fs::write(ca.path("stale.der"), ambos_testpki::TestPki::new("Stale").stale_crl()).unwrap();
    let (listen, metrics) =
        (std::net::TcpListener::bind("127.0.0.1:0").unwrap(), std::net::TcpListener::bind("127.0.0.1:0").unwrap());
    let (listen, metrics) = (listen.local_addr().unwrap(), metrics.local_addr().unwrap());

    let expired = "cert = \"certs/expired-api.crt\"\nkey = \"certs/expired-api.key\"\nclient_ca = \"certs/ca.crt\"";
    let r = check(ca.dir(), "expired.toml", &config("127.0.0.1:0", expired, "\"GET\"", "127.0.0.1:0"));
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{}", r.stderr);
    let want = format!(
        "error: {}: tls.cert {}: expired on 20",
        ca.dir().join("expired.toml").display(),
        ca.path("expired-api.crt").display()
    );
    assert!(lines[0].starts_with(&want), "{}", r.stderr);

    // A client-only certificate serving, a client certificate as client CA,
    // a stale CRL, and both addresses taken: all reported, in one run.
    let tls =
        "cert = \"certs/alice.crt\"\nkey = \"certs/alice.key\"\nclient_ca = [\"certs/ca.crt\", \"certs/alice.crt\"]\n\
               crl = \"certs/stale.der\"";
    let r = check(ca.dir(), "many.toml", &config(&listen.to_string(), tls, "\"GET\"", &metrics.to_string()));
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    let lines: Vec<&str> = r.stderr.lines().collect();
    let file = ca.dir().join("many.toml");
    let certs = ca.certs();
    for (i, want) in [
        format!(
            "tls.cert {}: its extended key usage (clientAuth) lacks serverAuth: clients refuse it",
            certs.join("alice.crt").display()
        ),
        format!(
            "tls.client_ca {}: 'O=Interop, CN=alice' is not a CA certificate (basicConstraints CA:FALSE)",
            certs.join("alice.crt").display()
        ),
        format!("tls.crl {}: stale: nextUpdate 20", certs.join("stale.der").display()),
        format!("listen.address: cannot listen on {listen}: Address already in use"),
        format!("metrics.address: cannot listen on {metrics}: Address already in use"),
    ]
    .iter()
    .enumerate()
    {
        let want = format!("error: {}: {want}", file.display());
        assert!(lines.get(i).is_some_and(|l| l.starts_with(&want)), "line {i} is not {want}:\n{}", r.stderr);
    }
    assert_eq!(lines.len(), 5, "{}", r.stderr);

    // A typo of a standard method, with the method it resembles.
    let good = "cert = \"certs/localhost.crt\"\nkey = \"certs/localhost.key\"\nclient_ca = \"certs/ca.crt\"";
    let r = check(ca.dir(), "typo.toml", &config("127.0.0.1:0", good, "\"GTE\"", "127.0.0.1:0"));
    r.fails_with(2, "typo.toml: route[0].methods: 'GTE' is not an HTTP method (did you mean GET?)");
    // An extension method that is a valid token is accepted.
    let r = check(ca.dir(), "propfind.toml", &config("127.0.0.1:0", good, "\"PROPFIND\"", "127.0.0.1:0"));
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.starts_with("configuration OK"), "{}", r.stdout);
}

/// As nginx and Envoy do, the proxy starts with an expired serving
/// certificate (an agent may be about to replace it) but says so at ERROR.
#[test]
fn the_proxy_starts_with_an_expired_serving_certificate_and_logs_an_error() {
    let ca = TestCa::with_localhost(&[]);
    ca.issue_expired("server", "expired-api", &["--san", "dns:localhost"]).ok();
    let config = ProxyToml::http(8080).to_string().replace("certs/localhost.", "certs/expired-api.");
    let proxy = Daemon::proxy(ca.dir(), &config, &[]);
    let log = proxy.wait_log("certs/expired-api.crt: expired on", 10);
    assert!(log.contains("ERROR"), "{log}");
}
