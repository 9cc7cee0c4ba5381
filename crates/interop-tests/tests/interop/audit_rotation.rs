//! Operational limits: the audit log rotating under load (by size, and
//! logrotate-style: rename + SIGUSR1) with no line lost or split; SPIFFE IDs
//! held to the SPIFFE spec; XFCC quoting of awkward subjects; and `ambos
//! serve` under token guessing and idle connections.
use ambos_interop_tests::{require, run, start_http_upstream, Daemon, ProxyToml, TestCa};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `ambos proxy` (HTTP, `/**` for any client) whose `[audit]` section is
/// `audit` (without the path).
fn start_proxy(ca: &TestCa, audit_path: &Path, audit: &str) -> Daemon {
    let config = ProxyToml::http(start_http_upstream()).audit(audit_path, audit).to_string();
    Daemon::proxy(ca.dir(), &config, &[])
}

/// Sends GET /r/<i> for i in 0..n over `conns` keep-alive connections as
/// `who`; prints the number of 200 answers.
const LOAD: &str = include_str!("../../scripts/audit_rotation_load.py");

fn load(ca: &TestCa, port: u16, who: &str, n: usize, conns: usize) -> usize {
    let out = run(Command::new("python3")
        .arg("-c")
        .arg(LOAD)
        .arg(port.to_string())
        .args(ca.client_files(who))
        .arg(n.to_string())
        .arg(conns.to_string()));
    assert_eq!(out.code, 0, "load failed: {}{}", out.stdout, out.stderr);
    out.stdout.trim().parse().unwrap()
}

/// Every file in `dir` whose name starts with `stem`, and its text. A file
/// renamed or removed by a rotation between the listing and its reading
/// means the listing is stale: it is taken again.
fn audit_files(dir: &Path, stem: &str) -> Vec<(String, String)> {
    loop {
        let read: Result<Vec<_>, _> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(stem))
            .map(|e| std::fs::read_to_string(e.path()).map(|t| (e.file_name().to_string_lossy().into_owned(), t)))
            .collect();
        match read {
            Ok(mut files) => {
                files.sort();
                return files;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => panic!("{}: {e}", dir.display()),
        }
    }
}

/// Checks the files hold exactly one whole JSON line per request /r/0..n:
/// every file ends at a line end, every line parses, no request is missing
/// or repeated. Waits up to 10 s for the writer to catch up.
fn check_lines(dir: &Path, stem: &str, n: usize) -> Vec<(String, String)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let files = audit_files(dir, stem);
        let requests = |t: &str| t.lines().filter(|l| l.contains("\"event\":\"request\"")).count();
        let total: usize = files.iter().map(|(_, t)| requests(t)).sum();
        // Judged only on a listing the writer left alone while it was read:
        // a rotation in between shifts every numbered file by one.
        let settled = || audit_files(dir, stem) == files;
        if (total >= n && settled()) || Instant::now() > deadline {
            let mut seen = BTreeSet::new();
            for (name, text) in &files {
                assert!(text.is_empty() || text.ends_with('\n'), "{name} ends inside a line");
                for line in text.lines() {
                    let v: serde_json::Value =
                        serde_json::from_str(line).unwrap_or_else(|e| panic!("{name}: not JSON ({e}): {line}"));
                    if v["event"] != "request" {
                        continue; // the readiness probe's handshake
                    }
                    assert_eq!(v["status"], 200, "{line}");
                    let path = v["path"].as_str().unwrap().to_string();
                    assert!(seen.insert(path.clone()), "{path} logged twice");
                }
            }
            assert_eq!(total, n, "audit lines in {} files", files.len());
            assert_eq!(seen.len(), n);
            return files;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn ca_with_certs() -> TestCa {
    let ca = TestCa::with_localhost(&[]);
    ca.issue("client", "alice", &["--spiffe", "spiffe://acme.test/alice"]);
    ca
}

#[test]
fn audit_log_rotates_by_size_under_load_without_losing_or_splitting_a_line() {
    require("python3");
    let ca = ca_with_certs();
    let dir = ca.dir().join("logs");
    std::fs::create_dir_all(&dir).unwrap();
    let proxy = start_proxy(&ca, &dir.join("audit.jsonl"), "max_size = \"16KB\"\nkeep = 1000");
    let n = 3000;
    assert_eq!(load(&ca, proxy.port, "alice", n, 8), n);
    let files = check_lines(&dir, "audit.jsonl", n);
    assert!(files.len() > 20, "only {} files", files.len());
    eprintln!("{n} requests, {} audit files of at most 16 KB", files.len());
    for (name, text) in &files {
        assert!(text.len() <= 16 * 1024, "{name} has {} bytes", text.len());
    }
    // keep: the oldest files beyond it are removed.
    let dir2 = ca.dir().join("logs2");
    std::fs::create_dir_all(&dir2).unwrap();
    let proxy2 = start_proxy(&ca, &dir2.join("audit.jsonl"), "max_size = \"4KB\"\nkeep = 2");
    assert_eq!(load(&ca, proxy2.port, "alice", 300, 2), 300);
    std::thread::sleep(Duration::from_millis(500));
    let names: Vec<String> = audit_files(&dir2, "audit.jsonl").into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["audit.jsonl", "audit.jsonl.1", "audit.jsonl.2"]);
    assert!(proxy.log().is_empty() || !proxy.log().contains("ERROR"), "{}", proxy.log());
}

#[test]
fn audit_log_reopens_on_sigusr1_and_sighup_after_an_external_rename() {
    require("python3");
    let ca = ca_with_certs();
    let dir = ca.dir().join("logs");
    std::fs::create_dir_all(&dir).unwrap();
    let audit = dir.join("audit.jsonl");
    let proxy = start_proxy(&ca, &audit, "");
    let n = 3000;
    let done = std::sync::atomic::AtomicBool::new(false);
    let rotations = std::thread::scope(|s| {
        let rotator = s.spawn(|| {
            // logrotate's create mode: rename, then signal (postrotate).
            let mut k = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(150));
                if std::fs::rename(&audit, dir.join(format!("audit.jsonl-{k:04}"))).is_ok() {
                    proxy.signal(if k % 2 == 0 { "-USR1" } else { "-HUP" });
                    k += 1;
                }
            }
            k
        });
        let got = load(&ca, proxy.port, "alice", n, 8);
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(got, n);
        rotator.join().unwrap()
    });
    assert!(rotations >= 3, "only {rotations} rotations during the load");
    eprintln!("{n} requests, {rotations} renames + signals");
    let files = check_lines(&dir, "audit.jsonl", n);
    // The lines went to several of the renamed files, and to a fresh file after the last signal.
    let used = files.iter().filter(|(_, t)| !t.is_empty()).count();
    assert!(used >= 3, "lines in {used} files: {:?}", files.iter().map(|(n, t)| (n, t.len())).collect::<Vec<_>>());
    // SIGUSR1 did not kill it, SIGHUP reloaded it: it still answers.
    assert_eq!(load(&ca, proxy.port, "alice", 1, 1), 1);
}

#[test]
fn audit_settings_are_checked() {
    let ca = ca_with_certs();
    for (audit, needle) in [
        ("max_size = \"lots\"", "audit.max_size"),
        ("max_size = \"10\"", "audit.max_size"),
        ("max_size = \"99999999999TB\"", "audit.max_size"),
        ("max_size = \"1MB\"\nkeep = 0", "audit.keep"),
    ] {
        let config = ProxyToml::http(2).audit(Path::new("a.jsonl"), audit).to_string();
        let path = ca.write("bad.toml", config);
        ca.ambos(&["proxy", "--config", path.to_str().unwrap(), "--check"]).fails_with(2, needle);
    }
}

#[test]
fn spiffe_ids_outside_the_spec_are_refused_at_issuance_and_for_tokens() {
    let ca = TestCa::new(&[]);
    let out = ca.certs();
    let out = out.to_str().unwrap();
    for bad in [
        "spiffe://acme.test/w;URI=spiffe://acme.test/admin",
        "spiffe://acme.test/w\"x",
        "spiffe://acme.test/%61dmin",
        "spiffe://acme.test/a/../admin",
        "spiffe://Acme.test/a",
        "spiffe://acme.test:443/a",
    ] {
        ca.ambos(&["issue", "client", "x", "--spiffe", bad, "--out", out]).fails_with(2, "--spiffe");
        ca.ambos(&["token", "create", "x", "--spiffe", bad]).fails_with(2, "--spiffe");
        ca.ambos(&["issue", "client", "x", "--san", &format!("uri:{bad}"), "--out", out]).fails_with(2, "SPIFFE ID");
    }
    ca.issue("client", "ok", &["--spiffe", "spiffe://acme.test/ns/prod/sa/web-1_x.y"]);
}

#[test]
fn ca_server_limits_are_checked_before_it_starts() {
    let ca = TestCa::new(&[]);
    for (flag, value) in [
        ("--header-timeout", "0s"),
        ("--header-timeout", "5124095576030433h"),
        ("--token-failure-window", "0s"),
        ("--max-connections", "0"),
        ("--token-failure-limit", "0"),
    ] {
        ca.ambos(&["serve", "--listen", "127.0.0.1:1", flag, value]).fails_with(2, flag);
    }
}

/// Splits an XFCC element into (key, value) pairs the way Envoy reads it:
/// `;` separates pairs, `"..."` quotes a value, `\` escapes inside quotes.
fn xfcc_pairs(element: &str) -> Vec<(String, String)> {
    let (mut pairs, mut key, mut val) = (Vec::new(), String::new(), String::new());
    let (mut in_key, mut quoted, mut chars) = (true, false, element.chars());
    while let Some(c) = chars.next() {
        match c {
            '\\' if quoted => val.extend(chars.next()),
            '"' => quoted = !quoted,
            '=' if in_key => in_key = false,
            ';' | ',' if !quoted => {
                assert_ne!(c, ',', "an unquoted ',' would start a second element: {element}");
                pairs.push((std::mem::take(&mut key), std::mem::take(&mut val)));
                in_key = true;
            }
            c if in_key => key.push(c),
            c => val.push(c),
        }
    }
    assert!(!quoted, "unterminated quote: {element}");
    pairs.push((key, val));
    pairs
}

/// RFC 4514 attribute values of a DN: `,` separates, `\` escapes.
fn dn_values(dn: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let (mut cur, mut chars) = (String::new(), dn.chars());
    let mut parts = Vec::new();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                cur.push('\\');
                cur.extend(chars.next());
            }
            ',' => parts.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    parts.push(cur);
    for p in parts {
        let (k, v) = p.split_once('=').unwrap();
        let mut val = String::new();
        let mut cs = v.chars();
        while let Some(c) = cs.next() {
            if c == '\\' {
                val.extend(cs.next());
            } else {
                val.push(c);
            }
        }
        out.push((k.to_string(), val));
    }
    out
}

#[test]
fn xfcc_quotes_subjects_that_need_it() {
    require("curl");
    let ca = TestCa::with_localhost(&[]);
    let ou = "pay,ments\"x;y=z";
    let o = "Acme; \"Evil\", Inc=1";
    ca.issue("client", "carol", &["--spiffe", "spiffe://acme.test/carol", "--ou", ou, "--o", o]);
    let audit = ca.dir().join("a.jsonl");
    let proxy = start_proxy(&ca, &audit, "");
    let out = ca.curl(Some("carol"), &format!("https://127.0.0.1:{}/x", proxy.port), &[]);
    assert_eq!((out.code, out.status.as_str()), (0, "200"), "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.body).unwrap();
    let xfcc = v["xfcc"][0].as_str().unwrap().to_string();
    eprintln!("XFCC: {xfcc}");
    let pairs = xfcc_pairs(&xfcc);
    let keys: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["Hash", "Subject", "URI"], "{xfcc}");
    assert_eq!(pairs[2].1, "spiffe://acme.test/carol");
    let dn = dn_values(&pairs[1].1);
    assert!(dn.contains(&("OU".to_string(), ou.to_string())), "{xfcc} -> {dn:?}");
    assert!(dn.contains(&("O".to_string(), o.to_string())), "{xfcc} -> {dn:?}");
    assert!(dn.contains(&("CN".to_string(), "carol".to_string())), "{xfcc} -> {dn:?}");
}

/// A running `ambos serve` with extra flags; `ca.crt` (the root) in certs/.
struct Serve {
    ca: TestCa,
    daemon: Daemon,
}

impl Serve {
    fn start(args: &[&str]) -> Serve {
        let ca = TestCa::new(&[]);
        std::fs::create_dir_all(ca.certs()).unwrap();
        std::fs::copy(ca.data().join("root.crt"), ca.path("ca.crt")).unwrap();
        let log = ca.dir().join("serve.log");
        let daemon =
            Daemon::spawn(ca.cmd().args(["serve", "--listen", "127.0.0.1:0", "--crl-validity", "1h"]).args(args), log);
        Serve { ca, daemon }
    }

    fn port(&self) -> u16 {
        self.daemon.port
    }

    /// curl against the API: (status, response headers + body).
    fn curl(&self, method: &str, path: &str, body: Option<&Path>) -> (String, String) {
        let data = body.map(|b| format!("@{}", b.display()));
        let mut extra = vec!["-i", "-X", method];
        if let Some(d) = &data {
            extra.extend(["-H", "Content-Type: application/json", "--data-binary", d]);
        }
        let r = self.ca.curl(None, &format!("https://localhost:{}{path}", self.port()), &extra);
        (r.status, format!("{}{}", r.body, r.stderr))
    }

    fn enroll(&self, token: &str) -> ambos_interop_tests::Run {
        let out = self.ca.dir().join(format!("out-{}", &token[token.len() - 8..]));
        run(self
            .ca
            .cmd()
            .args(["enroll", "--ca-url", &format!("https://127.0.0.1:{}", self.port()), "--root"])
            .arg(self.ca.path("ca.crt"))
            .args(["--token", token, "--out"])
            .arg(out))
    }
}

#[test]
fn ca_server_answers_429_after_a_burst_of_bad_tokens_and_never_logs_them() {
    require("curl");
    require("openssl");
    let serve = Serve::start(&["--token-failure-limit", "5", "--token-failure-window", "3s"]);
    let good = serve.ca.ambos(&["token", "create", "web"]).ok().stdout.trim().to_string();
    let (_, csr) = ambos_interop_tests::openssl_csr(serve.ca.dir(), "web", "/CN=web", &[]);
    let csr = std::fs::read_to_string(csr).unwrap();
    let guess = |i: usize| {
        let token = format!("ambos_guess{i:04}xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
        let body = serve.ca.write("guess.json", serde_json::json!({"token": token, "csr": csr}).to_string());
        (token, serve.curl("POST", "/v1/enroll", Some(&body)))
    };
    let mut guesses = Vec::new();
    for i in 0..5 {
        let (token, (code, text)) = guess(i);
        assert_eq!(code, "401", "{text}");
        guesses.push(token);
    }
    let started = Instant::now();
    let (token, (code, text)) = guess(5);
    guesses.push(token);
    assert_eq!(code, "429", "{text}");
    let retry: u64 = text
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("retry-after:").map(|v| v.trim().parse().unwrap()))
        .unwrap_or_else(|| panic!("no Retry-After: {text}"));
    assert!((1..=3).contains(&retry), "Retry-After {retry}");
    // A good token from the same address waits too (the token is not looked at)...
    serve.enroll(&good).fails_with(1, "too many failed tokens");
    // ... and works once the window has passed.
    std::thread::sleep(Duration::from_secs(retry).saturating_sub(started.elapsed()) + Duration::from_millis(300));
    serve.enroll(&good).ok();
    // Failures are logged with the peer address, never with the token.
    let log = serve.daemon.log();
    assert!(log.contains("failed token") && log.contains("127.0.0.1"), "{log}");
    for t in &guesses {
        assert!(!log.contains(&t[6..20]), "token in the log: {log}");
    }
    // Other endpoints are not throttled.
    assert_eq!(serve.curl("GET", "/healthz", None).0, "200");
    // A body over the limit is refused, not read.
    // With `Expect: 100-continue` (what clients send before a large body)
    // the server answers before the body is sent; without it a client
    // still sending when the connection closes may see a reset instead.
    let big = serve.ca.write("big.json", format!("{{\"token\":\"{}\",\"csr\":\"\"}}", "a".repeat(100_000)));
    let data = format!("@{}", big.display());
    let extra =
        ["--http1.1", "-H", "Expect: 100-continue", "-H", "Content-Type: application/json", "--data-binary", &data];
    let r = serve.ca.curl(None, &format!("https://localhost:{}/v1/enroll", serve.port()), &extra);
    assert_eq!(r.status, "413", "{}{}", r.body, r.stderr);
}

/// Opens `n` TLS connections (handshake done, no request) to `port`, prints
/// "<open> <failed>", then on each line from stdin prints how many the
/// server has not closed yet.
const HOLD: &str = include_str!("../../scripts/audit_rotation_hold.py");

struct Holder {
    child: std::process::Child,
    out: std::io::BufReader<std::process::ChildStdout>,
}

impl Holder {
    fn open(serve: &Serve, n: usize) -> (Holder, usize, usize) {
        use std::io::BufRead;
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(HOLD)
            .arg(serve.port().to_string())
            .arg(serve.ca.path("ca.crt"))
            .arg(n.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let mut it = line.split_whitespace().map(|v| v.parse::<usize>().unwrap());
        let (open, failed) = (it.next().expect("python output"), it.next().unwrap());
        (Holder { child, out }, open, failed)
    }

    fn alive(&mut self) -> usize {
        use std::io::{BufRead, Write};
        self.child.stdin.as_mut().unwrap().write_all(b"\n").unwrap();
        let mut line = String::new();
        self.out.read_line(&mut line).unwrap();
        line.trim().parse().unwrap()
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn healthz_ok(serve: &Serve, times: usize) {
    for _ in 0..times {
        let t = Instant::now();
        let (code, text) = serve.curl("GET", "/healthz", None);
        assert_eq!(code, "200", "{text}\n{}", serve.daemon.log());
        assert!(t.elapsed() < Duration::from_secs(2), "/healthz took {:?}", t.elapsed());
    }
}

#[test]
fn ca_server_keeps_answering_healthz_with_300_idle_tls_connections() {
    require("python3");
    require("curl");
    // Defaults: 300 idle connections from one address; /healthz answers
    // while they are held. Past 256 from one address (the per-source cap)
    // the oldest idle ones were closed to make room, not the new ones.
    let serve = Serve::start(&[]);
    let (mut held, open, failed) = Holder::open(&serve, 300);
    assert_eq!((open, failed), (300, 0));
    healthz_ok(&serve, 5);
    let alive = held.alive();
    assert!((250..=256).contains(&alive), "{alive} idle connections open (per-source cap 256)");
    drop(held);

    // A cap below them: the oldest idle ones are closed for new ones (also
    // /healthz's), and the rest when the header timeout passes.
    let serve = Serve::start(&["--max-connections", "100", "--header-timeout", "2s"]);
    let (mut held, open, _) = Holder::open(&serve, 300);
    assert!(open > 0);
    let alive = held.alive();
    assert!(alive <= 100, "{alive} connections open past the cap of 100");
    healthz_ok(&serve, 5);
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(held.alive(), 0, "idle connections outlived the header timeout");
    healthz_ok(&serve, 1);
    eprintln!(
        "cap 100: {open} of 300 handshakes completed, {alive} still open, all closed after the 2 s header timeout"
    );
}

/// A half-sent request head and a half-sent body over TLS; prints how each
/// ended and after how many seconds.
const SLOW: &str = include_str!("../../scripts/audit_rotation_slow.py");

#[test]
fn ca_server_closes_a_stalled_request_head_and_answers_a_stalled_body_408() {
    require("python3");
    let serve = Serve::start(&["--header-timeout", "2s"]);
    let out =
        run(Command::new("python3").arg("-c").arg(SLOW).arg(serve.port().to_string()).arg(serve.ca.path("ca.crt")));
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let mut lines = out.stdout.lines().map(|l| {
        let (what, secs) = l.split_once(' ').unwrap();
        (what.to_string(), secs.parse::<f64>().unwrap())
    });
    // The head: closed at the header timeout (hyper may answer 408 first).
    let (what, secs) = lines.next().unwrap();
    assert!(what == "closed" || what == "408", "{what}");
    assert!((1.5..4.0).contains(&secs), "head closed after {secs} s");
    // The body: 408 at the 10 s body timeout (counted from the head, so
    // about 8 s after the head's connection closed).
    let (what, secs) = lines.next().unwrap();
    assert_eq!(what, "408");
    assert!((6.0..11.0).contains(&secs), "body answered after {secs} s more");
    healthz_ok(&serve, 1);
}
