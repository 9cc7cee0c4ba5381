//! Operational limits: the audit log rotating under load (by size, and
//! logrotate-style: rename + SIGUSR1) with no line lost or split; SPIFFE IDs
//! held to the SPIFFE spec; XFCC quoting of awkward subjects; and `ambos
//! serve` under token guessing and idle connections.
use ambos_interop_tests::{ambos_bin, free_port, require, run, start_http_upstream, wait_for_port, ChildGuard, TestCa};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A running `ambos proxy` (HTTP, `/**` for any client) whose `[audit]`
/// section is `audit` (without the path).
struct Proxy {
    child: ChildGuard,
    port: u16,
    log: PathBuf,
}

impl Proxy {
    fn start(ca: &TestCa, audit_path: &Path, audit: &str) -> Proxy {
        let port = free_port();
        let log = ca.dir().join(format!("proxy-{port}.log"));
        let config = format!(
            "[listen]\naddress = \"127.0.0.1:{port}\"\n\n[tls]\ncert = \"certs/localhost.crt\"\nkey = \"certs/localhost.key\"\n\
             client_ca = \"certs/ca.crt\"\n\n[upstream]\nurl = \"http://127.0.0.1:{}\"\n\n\
             [[route]]\npath = \"/**\"\nallow = [\"any\"]\n\n[audit]\npath = \"{}\"\n{audit}\n",
            start_http_upstream(),
            audit_path.display()
        );
        let path = ca.write(&format!("proxy-{port}.toml"), config);
        let mut child = Command::new(ambos_bin())
            .args(["proxy", "--config", path.to_str().unwrap()])
            .current_dir(ca.dir())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        wait_for_port(port, &mut child, &log);
        Proxy { child: ChildGuard(child), port, log }
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill").args([sig, &self.child.0.id().to_string()]).status().unwrap().success();
        assert!(ok, "kill {sig}");
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Sends GET /r/<i> for i in 0..n over `conns` keep-alive connections as
/// `who`; prints the number of 200 answers.
const LOAD: &str = r#"
import http.client, ssl, sys, threading
port, ca, cert, key, n, conns = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
ctx = ssl.create_default_context(cafile=ca)
ctx.load_cert_chain(cert, key)
ok = []
def worker(k):
    c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=30)
    good = 0
    for i in range(k, n, conns):
        c.request("GET", "/r/%d" % i)
        r = c.getresponse()
        r.read()
        good += r.status == 200
    ok.append(good)
ts = [threading.Thread(target=worker, args=(k,)) for k in range(conns)]
[t.start() for t in ts]
[t.join() for t in ts]
print(sum(ok))
"#;

fn load(ca: &TestCa, port: u16, who: &str, n: usize, conns: usize) -> usize {
    let out = run(Command::new("python3")
        .arg("-c")
        .arg(LOAD)
        .arg(port.to_string())
        .arg(ca.path("ca.crt"))
        .arg(ca.path(&format!("{who}.crt")))
        .arg(ca.path(&format!("{who}.key")))
        .arg(n.to_string())
        .arg(conns.to_string()));
    assert_eq!(out.code, 0, "load failed: {}{}", out.stdout, out.stderr);
    out.stdout.trim().parse().unwrap()
}

/// Every file in `dir` whose name starts with `stem`, and its text.
fn audit_files(dir: &Path, stem: &str) -> Vec<(String, String)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(stem))
        .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read_to_string(e.path()).unwrap()))
        .collect();
    files.sort();
    files
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
        if total >= n || Instant::now() > deadline {
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
    let ca = TestCa::new(&[]);
    ca.issue("server", "localhost", &["--san", "ip:127.0.0.1"]);
    ca.issue("client", "alice", &["--spiffe", "spiffe://acme.test/alice"]);
    ca
}

#[test]
fn audit_log_rotates_by_size_under_load_without_losing_or_splitting_a_line() {
    require("python3");
    let ca = ca_with_certs();
    let dir = ca.dir().join("logs");
    std::fs::create_dir_all(&dir).unwrap();
    let proxy = Proxy::start(&ca, &dir.join("audit.jsonl"), "max_size = \"16KB\"\nkeep = 1000");
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
    let proxy2 = Proxy::start(&ca, &dir2.join("audit.jsonl"), "max_size = \"4KB\"\nkeep = 2");
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
    let proxy = Proxy::start(&ca, &audit, "");
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
        let config = format!(
            "[listen]\naddress = \"127.0.0.1:1\"\n\n[tls]\ncert = \"certs/localhost.crt\"\nkey = \"certs/localhost.key\"\n\
             client_ca = \"certs/ca.crt\"\n\n[upstream]\nurl = \"http://127.0.0.1:2\"\n\n\
             [[route]]\npath = \"/**\"\nallow = [\"any\"]\n\n[audit]\npath = \"a.jsonl\"\n{audit}\n"
        );
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
    let ca = TestCa::new(&[]);
    ca.issue("server", "localhost", &["--san", "ip:127.0.0.1"]);
    let ou = "pay,ments\"x;y=z";
    let o = "Acme; \"Evil\", Inc=1";
    ca.issue("client", "carol", &["--spiffe", "spiffe://acme.test/carol", "--ou", ou, "--o", o]);
    let audit = ca.dir().join("a.jsonl");
    let proxy = Proxy::start(&ca, &audit, "");
    let out = run(Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(ca.path("ca.crt"))
        .arg("--cert")
        .arg(ca.path("carol.crt"))
        .arg("--key")
        .arg(ca.path("carol.key"))
        .arg(format!("https://127.0.0.1:{}/x", proxy.port)));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let xfcc = v["xfcc"][0].as_str().unwrap().to_string();
    let pairs = xfcc_pairs(&xfcc);
    let keys: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["Hash", "Subject", "URI"], "{xfcc}");
    assert_eq!(pairs[2].1, "spiffe://acme.test/carol");
    let dn = dn_values(&pairs[1].1);
    assert!(dn.contains(&("OU".to_string(), ou.to_string())), "{xfcc} -> {dn:?}");
    assert!(dn.contains(&("O".to_string(), o.to_string())), "{xfcc} -> {dn:?}");
    assert!(dn.contains(&("CN".to_string(), "carol".to_string())), "{xfcc} -> {dn:?}");
}
