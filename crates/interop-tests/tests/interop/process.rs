//! One process model for every long-running command (`serve`, `proxy`,
//! `tunnel`, `agent`): SIGHUP reloads and keeps it running, SIGTERM stops it
//! with exit 0, systemd hears READY/RELOADING/STOPPING/WATCHDOG on
//! `NOTIFY_SOCKET`, logs can be JSON lines; the agent gives up on a revoked
//! or expired certificate and keeps trying while the CA is away; a broken
//! proxy.toml is logged once.
use ambos_interop_tests::{
    ambos_bin, cert_flags, curl, free_port, poll, run, spawn_logged, start_http_upstream, wait_file_contains,
    ChildGuard, Daemon, ProxyToml, TestCa,
};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// Waits up to `secs` for `child` to exit; its exit code (None: still running).
fn exit_code_within(child: &mut Child, secs: u64) -> Option<i32> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status.code().unwrap_or(-1));
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGHUP, then the process must still run a second later.
#[track_caller]
fn survives_sighup(child: &mut Child, log: &Path) {
    ambos_interop_tests::signal(child, "-HUP");
    let code = exit_code_within(child, 1);
    assert_eq!(code, None, "SIGHUP ended it: {}", std::fs::read_to_string(log).unwrap_or_default());
}

/// SIGTERM, then exit 0 within 10 s.
#[track_caller]
fn stops_cleanly_on_sigterm(child: &mut Child, log: &Path) {
    ambos_interop_tests::signal(child, "-TERM");
    let code = exit_code_within(child, 10);
    assert_eq!(code, Some(0), "after SIGTERM: {}", std::fs::read_to_string(log).unwrap_or_default());
}

/// `ambos serve` of `ca` on 127.0.0.1:0 with `env`.
fn serve(ca: &TestCa, log: &str, env: &[(&str, &str)]) -> Daemon {
    let mut cmd = ca.cmd();
    cmd.args(["serve", "--listen", "127.0.0.1:0"]).envs(env.iter().copied());
    Daemon::spawn(&mut cmd, ca.dir().join(log))
}

/// `ambos agent` for `certs/NAME` against `url`, logging to `log`.
fn agent(ca: &TestCa, url: &str, name: &str, log: &Path, env: &[(&str, &str)]) -> ChildGuard {
    spawn_logged(
        ca.cmd()
            .args(["agent", "--ca-url", url, "--root"])
            .arg(ca.path("ca.crt"))
            .args(ca.cert_flags(name))
            .args(["--renew-at", "0.1"])
            .envs(env.iter().copied()),
        log,
    )
}

/// A client certificate for `name` whose renewal is due at once (`--renew-at
/// 0.1`): 60 s of life, 30 s of it gone.
fn issue_due(ca: &TestCa, name: &str) {
    let not_before = time::OffsetDateTime::now_utc() - time::Duration::seconds(30);
    let not_before = not_before.format(&time::format_description::well_known::Rfc3339).unwrap();
    ca.issue("client", name, &["--not-before", &not_before, "--ttl", "60s"]);
}

/// On one core (`taskset -c 0`) the daemons run a single-threaded runtime:
/// the proxy serves HTTP/1.1 and HTTP/2, reloads on SIGHUP and stops on
/// SIGTERM with exit 0; `ambos serve` answers and enrolls.
#[test]
fn on_one_core_the_daemons_run_single_threaded_and_do_their_whole_job() {
    ambos_interop_tests::require("taskset");
    let ca = TestCa::with_localhost(&["alice"]);
    let upstream = start_http_upstream();
    let path = Daemon::proxy_config(ca.dir(), &ProxyToml::http(upstream).to_string());
    let log = ca.dir().join("one-core-proxy.log");
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", "0"]).arg(ambos_bin()).args(["proxy", "--config"]).arg(&path);
    let mut proxy = Daemon::spawn(cmd.current_dir(ca.dir()).env("AMBOS_LOG", "debug"), log.clone());
    assert!(proxy.log().contains("one core: a single-threaded runtime"), "{}", proxy.log());
    for version in ["--http1.1", "--http2"] {
        let reply = ca.curl(Some("alice"), &format!("https://localhost:{}/one-core", proxy.port), &[version]);
        assert_eq!(reply.status, "200", "{version}: {} {}", reply.body, reply.stderr);
        assert!(reply.body.contains("/one-core"), "{version}: {}", reply.body);
    }
    survives_sighup(&mut proxy.child.0, &log);
    let reply = ca.curl(Some("alice"), &format!("https://localhost:{}/after", proxy.port), &["--http2"]);
    assert_eq!(reply.status, "200", "after the reload: {} {}", reply.body, reply.stderr);
    stops_cleanly_on_sigterm(&mut proxy.child.0, &log);

    let log = ca.dir().join("one-core-serve.log");
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", "0"]).arg(ambos_bin()).arg("--dir").arg(ca.data()).args(["serve", "--listen", "127.0.0.1:0"]);
    let serve = Daemon::spawn(cmd.env("AMBOS_LOG", "debug"), log.clone());
    assert!(serve.log().contains("one core: a single-threaded runtime"), "{}", serve.log());
    let token = ca.ambos(&["token", "create", "one-core-dev"]).ok().stdout.trim().to_string();
    let out = ca.dir().join("one-core-out");
    let (url, root) = (format!("https://localhost:{}", serve.port), ca.path("ca.crt"));
    let args = ["enroll", "--ca-url", &url, "--root", root.to_str().unwrap(), "--token", &token, "--out"];
    run(ca.cmd().args(args).arg(&out)).ok();
    assert!(out.join("one-core-dev.crt").exists(), "enrolled: {}", serve.log());
}

#[test]
fn sighup_keeps_serve_running_and_renews_its_certificate_and_sigterm_exits_0() {
    let ca = TestCa::new(&[]);
    let mut d = serve(&ca, "serve.log", &[]);
    survives_sighup(&mut d.child.0, &d.log);
    d.wait_log("renewed the API's own certificate", 10);
    std::fs::create_dir_all(ca.certs()).unwrap();
    std::fs::copy(ca.data().join("root.crt"), ca.path("ca.crt")).unwrap();
    let r = ca.curl(None, &format!("https://127.0.0.1:{}/v1/roots", d.port), &[]);
    assert_eq!(r.status, "200", "still serving after SIGHUP: {}", r.stderr);
    stops_cleanly_on_sigterm(&mut d.child.0, &d.log);
}

#[test]
fn sighup_makes_the_tunnel_read_a_new_certificate_and_sigterm_exits_0() {
    let ca = TestCa::with_localhost(&["alice", "bob"]);
    let upstream = start_http_upstream();
    let _proxy = Daemon::proxy(ca.dir(), &ProxyToml::http(upstream).to_string(), &[]);
    let proxy_port = _proxy.port;
    let certs = ca.certs();
    std::fs::copy(certs.join("alice.crt"), certs.join("me.crt")).unwrap();
    std::fs::copy(certs.join("alice.key"), certs.join("me.key")).unwrap();
    let mut tunnel = Daemon::spawn(
        Command::new(ambos_bin())
            .args(["tunnel", "--listen", "127.0.0.1:0", "--connect", &format!("127.0.0.1:{proxy_port}")])
            .args(cert_flags(&certs, "me"))
            .arg("--ca")
            .arg(certs.join("ca.crt")),
        ca.dir().join("tunnel.log"),
    );
    let get = || curl(&format!("http://127.0.0.1:{}/who", tunnel.port), None, None, &["--max-time", "5"]);
    let r = get();
    assert!(r.status == "200" && r.body.contains("CN=alice"), "{r:?}");
    // Replace the files (as the agent does), then SIGHUP: read at once, before any connection.
    for ext in ["key", "crt"] {
        let tmp = certs.join(format!(".me.{ext}"));
        std::fs::copy(certs.join(format!("bob.{ext}")), &tmp).unwrap();
        std::fs::rename(&tmp, certs.join(format!("me.{ext}"))).unwrap();
    }
    survives_sighup(&mut tunnel.child.0, &tunnel.log);
    tunnel.wait_log("reloaded the client certificate", 5);
    let r = get();
    assert!(r.status == "200" && r.body.contains("CN=bob"), "the new certificate: {r:?}");
    stops_cleanly_on_sigterm(&mut tunnel.child.0, &tunnel.log);
}

#[test]
fn sighup_makes_the_agent_read_its_files_again_and_sigterm_exits_0() {
    let ca = TestCa::new(&[]);
    ca.issue("client", "web", &["--ttl", "1h"]);
    let server = serve(&ca, "serve.log", &[]);
    let log = ca.dir().join("agent.log");
    let mut a = agent(&ca, &format!("https://127.0.0.1:{}", server.port), "web", &log, &[]);
    wait_file_contains(&log, "next renewal in", 10);
    survives_sighup(&mut a.0, &log);
    let text = poll(
        5,
        Duration::from_millis(100),
        || std::fs::read_to_string(&log).unwrap(),
        |t| t.matches("next renewal in").count() >= 2,
    );
    assert!(text.contains("reading the certificate again"), "{text}");
    assert_eq!(text.matches("next renewal in").count(), 2, "files read again after SIGHUP: {text}");
    stops_cleanly_on_sigterm(&mut a.0, &log);
}

#[test]
fn the_agent_with_a_revoked_or_expired_certificate_exits_and_says_re_enroll() {
    let ca = TestCa::new(&[]);
    issue_due(&ca, "gone");
    ca.ambos(&["revoke", "gone"]).ok();
    ca.issue_expired("client", "old", &[]);
    let server = serve(&ca, "serve.log", &[]);
    let url = format!("https://127.0.0.1:{}", server.port);
    for (name, why) in
        [("gone", "re-enroll: this certificate is revoked"), ("old", "re-enroll: this certificate has expired")]
    {
        let log = ca.dir().join(format!("agent-{name}.log"));
        let mut a = agent(&ca, &url, name, &log, &[]);
        let code = exit_code_within(&mut a.0, 10);
        let text = std::fs::read_to_string(&log).unwrap();
        assert_eq!(code, Some(1), "the agent of '{name}' must give up: {text}");
        assert!(text.contains(why), "{text}");
        assert!(!text.contains("cannot reach"), "{text}");
    }
    // `ambos renew` says the same, once.
    let renew = |name: &str, root: &Path| {
        run(ca.cmd().args(["renew", "--ca-url", &url, "--root"]).arg(root).args(ca.cert_flags(name)))
    };
    renew("gone", &ca.path("ca.crt")).fails_with(1, "re-enroll: this certificate is revoked");
    // A server that does not chain to --root is named as such, not as unreachable.
    let other = TestCa::new(&["--name", "Elsewhere"]);
    other.issue("client", "x", &[]);
    issue_due(&ca, "web");
    renew("web", &other.path("ca.crt")).fails_with(1, "failed verification against --root");
}

#[test]
fn the_agent_keeps_retrying_with_backoff_while_the_ca_is_unreachable() {
    let ca = TestCa::new(&[]);
    issue_due(&ca, "web");
    let dead = free_port();
    let log = ca.dir().join("agent.log");
    let mut a = agent(&ca, &format!("https://127.0.0.1:{dead}"), "web", &log, &[]);
    wait_file_contains(&log, "retrying in 2s", 10);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("retrying in 1s") && text.contains("cannot reach the CA at https://127.0.0.1"), "{text}");
    assert_eq!(exit_code_within(&mut a.0, 1), None, "the agent gave up on a CA that is away: {text}");
    stops_cleanly_on_sigterm(&mut a.0, &log);
}

#[test]
fn a_broken_proxy_config_is_logged_once_and_the_old_one_keeps_serving() {
    let ca = TestCa::with_localhost(&["alice"]);
    let upstream = start_http_upstream();
    let mut proxy = Daemon::proxy(ca.dir(), &ProxyToml::http(upstream).to_string(), &[]);
    let config = proxy.config.clone().unwrap();
    let errors = |log: &str| log.lines().filter(|l| l.contains("ERROR")).count();
    std::fs::write(&config, "[listen\nbroken").unwrap();
    proxy.wait_log("reload failed", 5);
    // The log file lives next to the config: its own writes are events in that directory.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(errors(&proxy.log()), 1, "one ERROR for one bad edit:\n{}", proxy.log());
    let r = ca.curl(Some("alice"), &format!("https://localhost:{}/", proxy.port), &[]);
    assert_eq!(r.status, "200", "the previous configuration serves: {}", r.stderr);
    // Another broken edit is another failure: logged once more.
    std::fs::write(&config, "[listen]\naddress = 5").unwrap();
    let text = poll(5, Duration::from_millis(100), || proxy.log(), |t| errors(t) >= 2);
    assert_eq!(errors(&text), 2, "{text}");
    survives_sighup(&mut proxy.child.0, &proxy.log);
    stops_cleanly_on_sigterm(&mut proxy.child.0, &proxy.log);
}

/// A NOTIFY_SOCKET to hand a daemon, and what it was told.
struct Notifications {
    socket: UnixDatagram,
    path: String,
}

impl Notifications {
    fn new(dir: &Path, name: &str) -> Notifications {
        let path = dir.join(format!("{name}.notify"));
        let socket = UnixDatagram::bind(&path).unwrap();
        socket.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        Notifications { socket, path: path.to_str().unwrap().to_string() }
    }

    /// The next message (its lines), or a failure after 15 s.
    #[track_caller]
    fn next(&self) -> Vec<String> {
        let mut buf = [0u8; 4096];
        let n = self.socket.recv(&mut buf).expect("a notification within 15 s");
        String::from_utf8_lossy(&buf[..n]).lines().map(str::to_string).collect()
    }

    /// Skips watchdog pings until a message with `state` comes.
    #[track_caller]
    fn expect(&self, state: &str) -> Vec<String> {
        loop {
            let m = self.next();
            if m.iter().any(|l| l == state) {
                return m;
            }
            assert!(m == ["WATCHDOG=1"], "expected {state}, got {m:?}");
        }
    }
}

#[test]
fn every_daemon_tells_notify_socket_ready_reloading_stopping_and_pings_the_watchdog() {
    let ca = TestCa::with_localhost(&["alice"]);
    let upstream = start_http_upstream();
    let n = Notifications::new(ca.dir(), "proxy");
    let env = [("NOTIFY_SOCKET", n.path.as_str()), ("WATCHDOG_USEC", "400000")];
    let mut proxy = Daemon::proxy(ca.dir(), &ProxyToml::http(upstream).to_string(), &env);
    assert_eq!(n.expect("READY=1"), ["READY=1"]);
    assert_eq!(n.next(), ["WATCHDOG=1"], "a ping within half of WATCHDOG_USEC");
    proxy.signal("-HUP");
    let reloading = n.expect("RELOADING=1");
    assert!(reloading.iter().any(|l| l.starts_with("MONOTONIC_USEC=")), "{reloading:?}");
    n.expect("READY=1");
    proxy.signal("-TERM");
    n.expect("STOPPING=1");
    assert_eq!(exit_code_within(&mut proxy.child.0, 10), Some(0));

    // serve, tunnel and agent: READY=1, and STOPPING=1 on SIGTERM.
    let n = Notifications::new(ca.dir(), "serve");
    let mut server = serve(&ca, "serve-notify.log", &[("NOTIFY_SOCKET", n.path.as_str())]);
    n.expect("READY=1");
    server.signal("-HUP");
    n.expect("RELOADING=1");
    n.expect("READY=1");

    let t = Notifications::new(ca.dir(), "tunnel");
    let mut tunnel = Daemon::spawn(
        Command::new(ambos_bin())
            .args(["tunnel", "--listen", "127.0.0.1:0", "--connect", &format!("127.0.0.1:{}", server.port)])
            .args(ca.cert_flags("alice"))
            .arg("--ca")
            .arg(ca.path("ca.crt"))
            .env("NOTIFY_SOCKET", &t.path),
        ca.dir().join("tunnel-notify.log"),
    );
    t.expect("READY=1");
    tunnel.signal("-HUP");
    t.expect("RELOADING=1");
    t.expect("READY=1");
    tunnel.signal("-TERM");
    t.expect("STOPPING=1");
    assert_eq!(exit_code_within(&mut tunnel.child.0, 10), Some(0));

    let g = Notifications::new(ca.dir(), "agent");
    let log = ca.dir().join("agent-notify.log");
    let mut a = agent(&ca, &format!("https://127.0.0.1:{}", server.port), "alice", &log, &[("NOTIFY_SOCKET", &g.path)]);
    g.expect("READY=1");
    ambos_interop_tests::signal(&a.0, "-TERM");
    g.expect("STOPPING=1");
    assert_eq!(exit_code_within(&mut a.0, 10), Some(0));

    server.signal("-TERM");
    n.expect("STOPPING=1");
    assert_eq!(exit_code_within(&mut server.child.0, 10), Some(0));
}

#[test]
fn log_format_json_writes_one_json_object_per_line() {
    let ca = TestCa::with_localhost(&[]);
    let upstream = start_http_upstream();
    for how in ["flag", "env"] {
        let config = Daemon::proxy_config(ca.dir(), &ProxyToml::http(upstream).to_string());
        let mut cmd = Command::new(ambos_bin());
        cmd.args(["proxy", "--config"]).arg(&config).current_dir(ca.dir());
        match how {
            "flag" => cmd.args(["--log-format", "json"]),
            _ => cmd.env("AMBOS_LOG_FORMAT", "json"),
        };
        let mut proxy = Daemon::spawn(&mut cmd, config.with_extension("log"));
        proxy.signal("-HUP");
        proxy.wait_log("configuration reloaded", 5);
        stops_cleanly_on_sigterm(&mut proxy.child.0, &proxy.log);
        let log = proxy.log();
        for line in log.lines() {
            let v: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{how}: not JSON ({e}): {line}"));
            assert!(v["level"].is_string() && v["fields"]["message"].is_string(), "{line}");
        }
        assert!(log.lines().count() >= 3, "{log}");
    }
    let bad = run(Command::new(ambos_bin()).args(["proxy", "--log-format", "xml", "--config", "x.toml"]));
    assert!(bad.code == 2 && bad.stderr.contains("invalid value 'xml'"), "{}", bad.stderr);
}
