//! Helpers for end-to-end tests: run the real `ambos` binary and real
//! outside programs (openssl, curl, keytool, java, nginx) on 127.0.0.1.
//! A missing program fails the test: nothing here skips, except the
//! browser tests outside CI (see [`browser_available`]).
#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Path of the `ambos` binary: `$AMBOS_BIN`, else next to the test executable's deps dir.
pub fn ambos_bin() -> PathBuf {
    if let Ok(p) = std::env::var("AMBOS_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("ambos");
    assert!(bin.exists(), "{} not found: run `cargo build -p ambos` first (scripts/test.sh does)", bin.display());
    bin
}

/// `--cert DIR/NAME.crt --key DIR/NAME.key`: the certificate and key an
/// ambos command presents.
pub fn cert_flags(dir: &Path, name: &str) -> [OsString; 4] {
    let file = |ext: &str| dir.join(format!("{name}.{ext}")).into_os_string();
    ["--cert".into(), file("crt"), "--key".into(), file("key")]
}

/// Panics with a clear message if `program` is not on PATH.
pub fn require(program: &str) {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
        .unwrap_or(false);
    assert!(found, "required program '{program}' is not installed (scripts/test.sh installs it)");
}

/// A TCP port that was free a moment ago on 127.0.0.1, for what cannot
/// bind port 0 and report it (a port written into certificates, the
/// metrics listener). Taken below the kernel's ephemeral range, so that no
/// child binding port 0 can be handed it meanwhile.
pub fn free_port() -> u16 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    let (base, span) = (10_000u32, low.saturating_sub(10_000).max(1000));
    // Test processes (other test binaries too) start at different places.
    let start = std::process::id().wrapping_mul(7919) % span;
    for _ in 0..span {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let port = (base + (start + n) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between {base} and {}", base + span);
}

/// Output of a finished command, with helpers for assertions.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(self.code, 0, "command failed\nstdout: {}\nstderr: {}", self.stdout, self.stderr);
        self
    }

    /// Asserts exit `code` and a single-line error on stderr without a panic.
    #[track_caller]
    pub fn fails_with(self, code: i32, needle: &str) -> Run {
        assert_eq!(self.code, code, "unexpected exit code\nstdout: {}\nstderr: {}", self.stdout, self.stderr);
        assert!(!self.stderr.contains("panicked"), "panic: {}", self.stderr);
        let lines: Vec<&str> = self.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "error should be one line, got: {}", self.stderr);
        assert!(
            self.stderr.to_lowercase().contains(&needle.to_lowercase()),
            "stderr should mention '{needle}': {}",
            self.stderr
        );
        self
    }
}

pub fn run(cmd: &mut Command) -> Run {
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    Run::from(out)
}

/// A temporary CA directory driven through the `ambos` CLI.
pub struct TestCa {
    pub tmp: tempfile::TempDir,
    /// With `AMBOS_TEST_STORE=postgres`: a database of its own on the
    /// `AMBOS_TEST_POSTGRES` server, given to every command as `AMBOS_STORE`
    /// (the same tests then check the CA on PostgreSQL).
    pub store: Option<String>,
}

impl TestCa {
    /// `ambos init` with unencrypted keys and the given extra flags.
    pub fn new(extra: &[&str]) -> TestCa {
        let ca = TestCa::empty();
        let mut args = vec!["init", "--no-passphrase"];
        if !extra.contains(&"--name") {
            args.extend_from_slice(&["--name", "Interop"]);
        }
        args.extend_from_slice(extra);
        ca.ambos(&args).ok();
        ca
    }

    /// `ambos init`, a server certificate for localhost (SAN ip:127.0.0.1),
    /// then a client certificate for each of `clients`: what a proxy test
    /// starts from.
    pub fn with_localhost(clients: &[&str]) -> TestCa {
        let ca = TestCa::new(&[]);
        ca.issue("server", "localhost", &["--san", "ip:127.0.0.1"]);
        for name in clients {
            ca.issue("client", name, &[]);
        }
        ca
    }

    /// A CA made by the generated test PKI (ambos-testpki), not by the CLI,
    /// for the cases where another CA is needed and the CLI is not the
    /// subject: `certs/ca.crt` (its root) and, for each `(name, sans)`, a
    /// client certificate `certs/NAME.crt` (with its intermediate) and `.key`.
    pub fn generated(ca_name: &str, clients: &[(&str, &[&str])]) -> TestCa {
        let ca = TestCa::empty();
        std::fs::create_dir_all(ca.certs()).unwrap();
        let pki = ambos_testpki::TestPki::new(ca_name);
        pki.write_root(&ca.certs());
        for (name, sans) in clients {
            pki.client(name, sans).write(&ca.certs(), name);
        }
        ca
    }

    /// Where a new [`TestCa`] keeps its state: `None` (SQLite in its
    /// directory) unless `AMBOS_TEST_STORE=postgres`, then a new database on
    /// the `AMBOS_TEST_POSTGRES` server (made with psql).
    fn postgres_store() -> Option<String> {
        if std::env::var("AMBOS_TEST_STORE").ok()? != "postgres" {
            return None;
        }
        Self::postgres_database()
    }

    /// A new database on the `AMBOS_TEST_POSTGRES` server (made with psql).
    fn postgres_database() -> Option<String> {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let base = std::env::var("AMBOS_TEST_POSTGRES").expect("a PostgreSQL CA needs AMBOS_TEST_POSTGRES");
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("ambos_ca_{}_{n}", std::process::id());
        let made = run(Command::new("psql").arg(&base).args(["-qc", &format!("CREATE DATABASE {name}")]));
        assert_eq!(made.code, 0, "psql: {}", made.stderr);
        let (head, query) = base.split_once('?').unwrap_or((&base, ""));
        Some(format!("{}/{name}?{query}", &head[..head.rfind('/').expect("a database in AMBOS_TEST_POSTGRES")]))
    }

    /// A temp dir with no CA yet whose store is a new PostgreSQL database,
    /// whatever `AMBOS_TEST_STORE` says; `None` without `AMBOS_TEST_POSTGRES`
    /// (a failure if `AMBOS_REQUIRE_POSTGRES` is set: scripts/test.sh sets both).
    pub fn on_postgres() -> Option<TestCa> {
        if std::env::var("AMBOS_TEST_POSTGRES").is_err() {
            assert!(
                std::env::var("AMBOS_REQUIRE_POSTGRES").is_err(),
                "AMBOS_REQUIRE_POSTGRES without AMBOS_TEST_POSTGRES"
            );
            return None;
        }
        Some(TestCa { tmp: tempfile::tempdir().unwrap(), store: Self::postgres_database() })
    }

    /// A temp dir with no CA yet.
    pub fn empty() -> TestCa {
        TestCa { tmp: tempfile::tempdir().unwrap(), store: Self::postgres_store() }
    }

    pub fn dir(&self) -> &Path {
        self.tmp.path()
    }

    pub fn data(&self) -> PathBuf {
        self.tmp.path().join("ca")
    }

    pub fn certs(&self) -> PathBuf {
        self.tmp.path().join("certs")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.certs().join(name)
    }

    /// `certs/ca.crt`, `certs/WHO.crt`, `certs/WHO.key`: the trust and the
    /// identity the tests' Python clients take as arguments.
    pub fn client_files(&self, who: &str) -> [PathBuf; 3] {
        [self.path("ca.crt"), self.path(&format!("{who}.crt")), self.path(&format!("{who}.key"))]
    }

    /// `--cert certs/NAME.crt --key certs/NAME.key`.
    pub fn cert_flags(&self, name: &str) -> [OsString; 4] {
        cert_flags(&self.certs(), name)
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(ambos_bin());
        c.current_dir(self.tmp.path()).env("AMBOS_DIR", self.data()).env_remove("AMBOS_PASSPHRASE");
        match &self.store {
            Some(url) => c.env("AMBOS_STORE", url),
            None => c.env_remove("AMBOS_STORE"),
        };
        c
    }

    pub fn ambos(&self, args: &[&str]) -> Run {
        run(self.cmd().args(args))
    }

    /// `ambos issue PROFILE NAME --out certs ARGS...`
    pub fn issue(&self, profile: &str, name: &str, args: &[&str]) -> Run {
        let out = self.certs();
        let mut all = vec!["issue", profile, name, "--out", out.to_str().unwrap()];
        all.extend_from_slice(args);
        self.ambos(&all).ok()
    }

    /// `issue` of a certificate that expired an hour ago (its validity window
    /// lies in the past), so that no test sleeps for one to expire.
    pub fn issue_expired(&self, profile: &str, name: &str, args: &[&str]) -> Run {
        let not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(2);
        let not_before = not_before.format(&time::format_description::well_known::Rfc3339).expect("RFC 3339");
        let mut all = vec!["--not-before", &not_before, "--ttl", "1h"];
        all.extend_from_slice(args);
        self.issue(profile, name, &all)
    }

    /// [`curl`] trusting this CA's `certs/ca.crt`, as `certs/WHO.crt` and `.key`.
    pub fn curl(&self, who: Option<&str>, url: &str, extra: &[&str]) -> Reply {
        let cert = who.map(|w| (self.path(&format!("{w}.crt")), self.path(&format!("{w}.key"))));
        curl(url, Some(&self.path("ca.crt")), cert.as_ref().map(|(c, k)| (c.as_path(), k.as_path())), extra)
    }
    /// `ambos export truststore --format p12` to `ts` with the password in
    /// `password_file`.
    pub fn export_truststore_p12(&self, ts: &Path, password_file: &Path) {
        let out = self.ambos(&[
            "export",
            "truststore",
            "--format",
            "p12",
            "--out",
            ts.to_str().unwrap(),
            "--password-file",
            password_file.to_str().unwrap(),
        ]);
        assert_eq!(out.code, 0, "export truststore: {}", out.stderr);
    }

    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let p = self.tmp.path().join(name);
        std::fs::write(&p, contents).unwrap();
        p
    }
}

/// A child process killed (and reaped) when dropped, so no test leaves one behind.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `cmd` with stdout discarded and stderr written to `log`.
pub fn spawn_logged(cmd: &mut Command, log: &Path) -> ChildGuard {
    let stderr = std::fs::File::create(log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
    ChildGuard(cmd.stdout(Stdio::null()).stderr(stderr).spawn().unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}")))
}

/// Waits until something accepts TCP connections on `port`.
pub fn wait_for_port(port: u16, child: &mut Child, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("process exited ({status}) before listening: {}", std::fs::read_to_string(log).unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listening on 127.0.0.1:{port} after 15s");
}

/// A small real HTTP/1.1 upstream (keep-alive) on 127.0.0.1. Every response
/// is JSON describing the request it got: `{"path", "host", "xfcc": [...]}`.
/// `/slow` answers after 1.5 s (for graceful-shutdown tests; see
/// [`slow_requests_seen`]).
pub fn start_http_upstream() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve_upstream_conn(stream));
        }
    });
    port
}

static SLOW_SEEN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// How many `/slow` requests the upstreams of this process have received:
/// a shutdown test waits for one to be in flight instead of guessing a delay.
pub fn slow_requests_seen() -> usize {
    SLOW_SEEN.load(std::sync::atomic::Ordering::SeqCst)
}

fn serve_upstream_conn(stream: std::net::TcpStream) {
    use std::io::{BufRead, BufReader, Read, Write};
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let path = request_line.split_whitespace().nth(1).unwrap_or("").to_string();
        let mut xfcc = Vec::new();
        let mut host = String::new();
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_string());
                match k.as_str() {
                    "x-forwarded-client-cert" => xfcc.push(v),
                    "host" => host = v,
                    "content-length" => length = v.parse().unwrap_or(0),
                    _ => {}
                }
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        if path == "/slow" {
            SLOW_SEEN.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(1500));
        }
        let json = format!(
            "{{\"path\":{},\"host\":{},\"body_len\":{},\"xfcc\":[{}]}}",
            json_str(&path),
            json_str(&host),
            body.len(),
            xfcc.iter().map(|v| json_str(v)).collect::<Vec<_>>().join(",")
        );
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{json}",
            json.len()
        );
        if writer.write_all(resp.as_bytes()).is_err() {
            return;
        }
        if path == "/close-after" {
            // Like an upstream whose keep-alive timeout just ran out.
            return;
        }
    }
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A line echo server: reads one line, writes it back, closes.
pub fn start_echo_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                use std::io::{BufRead, BufReader, Write};
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_ok() {
                    let mut w = stream;
                    let _ = w.write_all(format!("echo: {line}").as_bytes());
                }
            });
        }
    });
    port
}

/// Sends SIGTERM (graceful shutdown) to a child.
pub fn terminate(child: &Child) {
    signal(child, "-TERM");
}

/// `kill SIG PID`, asserting that the signal was delivered.
#[track_caller]
pub fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill").args([sig, &child.id().to_string()]).status().expect("run kill").success();
    assert!(ok, "kill {sig} {}", child.id());
}

/// Waits until a child that was told to bind port 0 logs the address it
/// got ("listening on 127.0.0.1:PORT" from `ambos proxy`, `tunnel` and
/// `serve`) and returns its port: no port is picked and released first.
pub fn wait_for_listen(child: &mut Child, log: &Path) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(port) = text.lines().find_map(listening_port) {
            return port;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("process exited ({status}) before listening: {text}");
        }
        assert!(Instant::now() < deadline, "no 'listening on' line after 15s: {text}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn listening_port(line: &str) -> Option<u16> {
    let rest = line.split_once("listening on ")?.1;
    let rest = rest.strip_prefix("https://").unwrap_or(rest);
    let addr: String = rest.chars().take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':').collect();
    addr.parse::<std::net::SocketAddr>().ok().map(|a| a.port())
}

/// The proxy.toml of a test, as text: `[listen]` on 127.0.0.1:0, `[tls]`
/// serving `certs/localhost.crt` to clients of `certs/ca.crt`, `[upstream]`,
/// the routes added and then one letting any client through `/**` (unless
/// all routes are given as text), then the sections added, in order. Each
/// part takes TOML lines.
#[derive(Clone, Debug)]
pub struct ProxyToml {
    listen: String,
    tls: String,
    upstream: String,
    routes: String,
    /// The last route lets any client through `/**`.
    any_client: bool,
    sections: String,
}

const ANY_CLIENT_ROUTE: &str = "[[route]]\npath = \"/**\"\nallow = [\"any\"]\n";

impl ProxyToml {
    /// Forwarding to an `[upstream]` of these lines.
    pub fn upstream(lines: &str) -> ProxyToml {
        ProxyToml {
            listen: String::new(),
            tls: String::new(),
            upstream: lines.to_string(),
            routes: String::new(),
            any_client: true,
            sections: String::new(),
        }
    }

    /// Forwarding to plain HTTP on 127.0.0.1:`port`.
    pub fn http(port: u16) -> ProxyToml {
        ProxyToml::upstream(&format!("url = \"http://127.0.0.1:{port}\""))
    }

    /// More `[listen]` lines (`mode`, `alpn`, ...).
    pub fn listen(mut self, lines: &str) -> ProxyToml {
        self.listen = lines.to_string();
        self
    }

    /// More `[tls]` lines (`crl`, `min_version`, ...).
    pub fn tls(mut self, lines: &str) -> ProxyToml {
        self.tls = lines.to_string();
        self
    }

    /// A route for `path` allowing `allow` (one rule), before the one for
    /// any client.
    pub fn route(mut self, path: &str, allow: &str) -> ProxyToml {
        self.routes += &format!("[[route]]\npath = \"{path}\"\nallow = [\"{allow}\"]\n\n");
        self
    }

    /// These `[[route]]` tables, and no other.
    pub fn routes(mut self, routes: &str) -> ProxyToml {
        self.routes = routes.to_string();
        self.any_client = false;
        self
    }

    /// Appends a section (`[limits]`, `[headers]`, ...) as text.
    pub fn section(mut self, text: &str) -> ProxyToml {
        self.sections.push('\n');
        self.sections.push_str(text);
        self.sections.push('\n');
        self
    }

    /// `[audit]` writing to `path`, with `more` lines (`max_size`, ...).
    pub fn audit(self, path: &Path, more: &str) -> ProxyToml {
        self.section(&format!("[audit]\npath = \"{}\"\n{more}", path.display()))
    }

    /// `[metrics]` on 127.0.0.1:`port`.
    pub fn metrics(self, port: u16) -> ProxyToml {
        self.section(&format!("[metrics]\naddress = \"127.0.0.1:{port}\""))
    }
}

impl std::fmt::Display for ProxyToml {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ProxyToml { listen, tls, upstream, routes, any_client, sections } = self;
        let last = if *any_client { ANY_CLIENT_ROUTE } else { "" };
        write!(
            f,
            "[listen]\naddress = \"127.0.0.1:0\"\n{listen}\n\n\
             [tls]\ncert = \"certs/localhost.crt\"\nkey = \"certs/localhost.key\"\nclient_ca = \"certs/ca.crt\"\n{tls}\n\n\
             [upstream]\n{upstream}\n\n{routes}{last}\n{sections}"
        )
    }
}

/// A running `ambos` server (`proxy`, `tunnel` or `serve`), stopped when
/// dropped: the one fixture for them all. It binds port 0 and reports the
/// port it got on stderr, which goes to `log`.
pub struct Daemon {
    pub child: ChildGuard,
    pub port: u16,
    pub log: PathBuf,
    /// The config file of a [`Daemon::proxy`].
    pub config: Option<PathBuf>,
}

impl Daemon {
    /// Starts `cmd` (an `ambos` server told to listen on 127.0.0.1:0) with
    /// stderr to `log` and waits for the port it reports.
    pub fn spawn(cmd: &mut Command, log: PathBuf) -> Daemon {
        let mut child = spawn_logged(cmd, &log);
        let port = wait_for_listen(&mut child.0, &log);
        Daemon { child, port, log, config: None }
    }

    /// `ambos proxy --config` with `config` (whose `[listen] address` is
    /// `127.0.0.1:0`) written to `dir/proxy-N.toml`, run in `dir` so that
    /// relative paths resolve there; `env` is added to its environment.
    pub fn proxy(dir: &Path, config: &str, env: &[(&str, &str)]) -> Daemon {
        let path = Daemon::proxy_config(dir, config);
        let mut cmd = Command::new(ambos_bin());
        cmd.args(["proxy", "--config"]).arg(&path).current_dir(dir).envs(env.iter().copied());
        Daemon { config: Some(path.clone()), ..Daemon::spawn(&mut cmd, path.with_extension("log")) }
    }

    /// Writes `config` to a new `dir/proxy-N.toml` and returns its path.
    pub fn proxy_config(dir: &Path, config: &str) -> PathBuf {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = dir.join(format!("proxy-{n}.toml"));
        std::fs::write(&path, config).unwrap();
        path
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    #[track_caller]
    pub fn signal(&self, sig: &str) {
        signal(&self.child.0, sig);
    }

    /// Waits (up to `secs`) until the log contains `needle`; returns the log.
    #[track_caller]
    pub fn wait_log(&self, needle: &str, secs: u64) -> String {
        wait_file_contains(&self.log, needle, secs)
    }
}

/// Calls `probe` every `every` until its answer satisfies `done` or `secs`
/// have passed; returns the last answer, for the caller to assert on.
pub fn poll<T>(secs: u64, every: Duration, mut probe: impl FnMut() -> T, done: impl Fn(&T) -> bool) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let answer = probe();
        if done(&answer) || Instant::now() >= deadline {
            return answer;
        }
        std::thread::sleep(every);
    }
}

/// Waits (up to `secs`) until the file at `path` contains `needle`; returns its text.
#[track_caller]
pub fn wait_file_contains(path: &Path, needle: &str, secs: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(Instant::now() < deadline, "{} lacks '{needle}' after {secs}s:\n{text}", path.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What `curl` answered: its exit code, the HTTP status ("000" when none),
/// the body, the time taken, the HTTP version ("1.1", "2") and stderr.
#[derive(Debug)]
pub struct Reply {
    pub code: i32,
    pub status: String,
    pub body: String,
    pub secs: f64,
    pub version: String,
    pub stderr: String,
}

/// The one curl helper: `curl -sS --max-time 10 URL` trusting `ca` (None:
/// the system's roots), as `who` (certificate and key; None: no client
/// certificate), with `extra` arguments (a later `--max-time` wins; `-o
/// FILE` leaves the body empty).
pub fn curl(url: &str, ca: Option<&Path>, who: Option<(&Path, &Path)>, extra: &[&str]) -> Reply {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "10", "-w", "\n%{http_code} %{time_total} %{http_version}"]);
    if let Some(ca) = ca {
        cmd.arg("--cacert").arg(ca);
    }
    if let Some((cert, key)) = who {
        cmd.arg("--cert").arg(cert).arg("--key").arg(key);
    }
    let out = run(cmd.args(extra).arg(url));
    let (body, tail) = out.stdout.rsplit_once('\n').unwrap_or(("", &out.stdout));
    let mut fields = tail.split(' ');
    let (status, secs, version) = (fields.next(), fields.next(), fields.next());
    Reply {
        code: out.code,
        status: status.unwrap_or_default().to_string(),
        body: body.to_string(),
        secs: secs.and_then(|s| s.parse().ok()).unwrap_or(0.0),
        version: version.unwrap_or_default().to_string(),
        stderr: out.stderr,
    }
}

/// Starts nginx (single process, foreground) with `server_block` inside
/// `http {}`; paths in the block may use `{dir}`. Returns the guard.
pub fn start_nginx(dir: &Path, server_block: &str, port: u16) -> ChildGuard {
    let d = dir.display();
    let conf = format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx-{port}.pid;\nerror_log {d}/nginx-{port}-error.log info;\n\
         events {{ worker_connections 64; }}\nhttp {{\n    access_log off;\n    client_body_temp_path {d}/body;\n    proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n    uwsgi_temp_path {d}/uwsgi;\n    scgi_temp_path {d}/scgi;\n{}\n}}\n",
        server_block.replace("{dir}", &d.to_string())
    );
    let path = dir.join(format!("nginx-{port}.conf"));
    std::fs::write(&path, conf).unwrap();
    let log = dir.join(format!("nginx-{port}-error.log"));
    let mut child = Command::new("nginx")
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&path)
        .arg("-e")
        .arg(dir.join(format!("nginx-{port}-startup.log")))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nginx");
    wait_for_port(port, &mut child, &log);
    ChildGuard(child)
}

/// `openssl s_client -quiet` to 127.0.0.1:`port` as `who` (a TestCa and a
/// certificate name, sending leaf + intermediate), with `input` on stdin.
pub fn s_client(ca: &TestCa, who: &str, port: u16, input: &[u8]) -> Run {
    use std::io::Write;
    let mut child = Command::new("openssl")
        .args(["s_client", "-quiet", "-connect", &format!("127.0.0.1:{port}"), "-servername", "localhost"])
        .arg("-CAfile")
        .arg(ca.path("ca.crt"))
        .arg("-cert")
        .arg(ca.path(&format!("{who}.crt")))
        .arg("-cert_chain")
        .arg(ca.path(&format!("{who}.crt")))
        .arg("-key")
        .arg(ca.path(&format!("{who}.key")))
        .arg("-verify_return_error")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start openssl s_client");
    child.stdin.take().expect("stdin").write_all(input).expect("write to s_client");
    Run::from(child.wait_with_output().expect("openssl s_client"))
}

/// `openssl req`: a fresh P-256 key `DIR/STEM.key` and a CSR `DIR/STEM.csr`
/// for `subject`, with `extra` arguments (`-addext ...`, `-outform DER`).
pub fn openssl_csr(dir: &Path, stem: &str, subject: &str, extra: &[&str]) -> (PathBuf, PathBuf) {
    let key = dir.join(format!("{stem}.key"));
    let csr = dir.join(format!("{stem}.csr"));
    run(Command::new("openssl")
        .args(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", subject])
        .args(extra)
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&csr))
    .ok();
    (key, csr)
}

/// tests/browser/ at the workspace root: the Node driver and its npm packages.
fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/browser")
}

/// The browsers tests/browser/run.mjs drives (a job's `browser`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Browser {
    /// Debian's Chromium, through playwright-core (whose proxy presents
    /// the client certificate).
    Chromium,
    /// Debian's Firefox ESR, through puppeteer-core over WebDriver BiDi;
    /// Firefox makes the mTLS handshake itself (NSS).
    Firefox,
}

impl Browser {
    /// The job's `browser` value.
    pub fn name(self) -> &'static str {
        match self {
            Browser::Chromium => "chromium",
            Browser::Firefox => "firefox",
        }
    }

    /// Whether the browser, Node.js and the driver's npm packages are
    /// installed. Without them a browser test is skipped (a developer may
    /// not want a browser), unless `AMBOS_REQUIRE_BROWSER` is set, as
    /// scripts/test.sh does: then it fails.
    pub fn available(self) -> bool {
        let dir = browser_dir();
        let node_found = std::env::var_os("PATH")
            .map(|paths| std::env::split_paths(&paths).any(|d| d.join("node").is_file()))
            .unwrap_or(false);
        let (program, driver) = match self {
            Browser::Chromium => ("/usr/bin/chromium", "playwright-core"),
            Browser::Firefox => ("/usr/bin/firefox-esr", "puppeteer-core"),
        };
        let missing = if !Path::new(program).is_file() {
            Some(program)
        } else if !node_found {
            Some("node")
        } else if !dir.join("node_modules").join(driver).is_dir() || !dir.join("node_modules/axe-core").is_dir() {
            Some("tests/browser/node_modules")
        } else {
            None
        };
        let Some(what) = missing else { return true };
        assert!(
            std::env::var_os("AMBOS_REQUIRE_BROWSER").is_none(),
            "AMBOS_REQUIRE_BROWSER is set and {what} is missing (scripts/install-deps.sh installs it)"
        );
        eprintln!("browser test skipped: {what} is missing (scripts/install-deps.sh installs it)");
        false
    }
}

/// Whether Chromium can be driven ([`Browser::available`]).
pub fn browser_available() -> bool {
    Browser::Chromium.available()
}

/// Runs one job in a headless browser through tests/browser/run.mjs (its
/// header describes the job and the result) and returns the result. A page
/// that cannot be loaded is a result with `error`; a driver that crashes or
/// hangs (90 s) fails the test, and nothing it started outlives the call.
pub fn browser(job: &serde_json::Value) -> serde_json::Value {
    let out = tempfile::NamedTempFile::new().unwrap();
    let err = tempfile::NamedTempFile::new().unwrap();
    let mut node = Command::new("node");
    // Set here, run.mjs need not start a second node (which killing this
    // one on a timeout would leave behind).
    if let Some(ca) = job["ca"].as_str() {
        node.env("NODE_EXTRA_CA_CERTS", ca);
    }
    let mut child = ChildGuard(
        node.arg(browser_dir().join("run.mjs"))
            .arg(job.to_string())
            .stdin(Stdio::null())
            .stdout(out.reopen().unwrap())
            .stderr(err.reopen().unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start node: {e}")),
    );
    let status = poll(90, Duration::from_millis(50), || child.0.try_wait().unwrap(), Option::is_some);
    let stdout = std::fs::read_to_string(out.path()).unwrap();
    let stderr = std::fs::read_to_string(err.path()).unwrap();
    let Some(status) = status else {
        panic!("the browser job did not finish in 90 s: {job}\n{stderr}");
    };
    assert!(status.success(), "run.mjs exited with {status}: {stderr}\njob: {job}");
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("run.mjs printed no JSON result ({e}): {stdout}\n{stderr}"))
}
