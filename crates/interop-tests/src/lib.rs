//! Helpers for end-to-end tests: run the real `ambos` binary and real
//! outside programs (openssl, curl, keytool, java, nginx) on 127.0.0.1.
//! A missing program fails the test: nothing here skips.
#![forbid(unsafe_code)]

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

/// Panics with a clear message if `program` is not on PATH.
pub fn require(program: &str) {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
        .unwrap_or(false);
    assert!(found, "required program '{program}' is not installed (scripts/test.sh installs it)");
}

/// A TCP port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
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

    /// A temp dir with no CA yet.
    pub fn empty() -> TestCa {
        TestCa { tmp: tempfile::tempdir().unwrap() }
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

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(ambos_bin());
        c.current_dir(self.tmp.path()).env("AMBOS_DIR", self.data()).env_remove("AMBOS_PASSPHRASE");
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
/// `/slow` answers after 1.5 s (for graceful-shutdown tests).
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
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
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
