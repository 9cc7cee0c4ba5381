//! Fair under load: `ambos proxy` with small `[limits]` against clients
//! that hold connections silent, send bodies that never finish, upstreams
//! that never answer, HTTP/2 connections kept up with PINGs alone, and
//! peers whose host is gone (TCP keepalive).
use ambos_interop_tests::{
    ambos_bin, free_port, poll, require, run, start_http_upstream, ChildGuard, Daemon, ProxyToml, TestCa,
};
use std::io::{BufRead, BufReader, Read};

type Output = BufReader<std::process::ChildStdout>;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A running `ambos proxy` (stopped when dropped) with its CA and metrics port.
struct Proxy {
    ca: TestCa,
    port: u16,
    metrics: u16,
    daemon: Daemon,
}

impl Proxy {
    /// `ambos proxy` in front of `upstream_port` with `limits` as its
    /// `[limits]` body.
    fn start(upstream_port: u16, limits: &str) -> Proxy {
        Proxy::start_mode("http", &format!("url = \"http://127.0.0.1:{upstream_port}\""), limits)
    }

    /// The same in `mode` ("http" or "tcp") with `upstream` as the
    /// `[upstream]` body.
    fn start_mode(mode: &str, upstream: &str, limits: &str) -> Proxy {
        let ca = TestCa::with_localhost(&["alice"]);
        // The metrics listener logs its configured address, not the bound one.
        let metrics = free_port();
        let config = ProxyToml::upstream(upstream)
            .listen(&format!("mode = \"{mode}\""))
            .section(&format!("[limits]\n{limits}"))
            .metrics(metrics)
            .to_string();
        let path = Daemon::proxy_config(ca.dir(), &config);
        run(Command::new(ambos_bin()).args(["proxy", "--check", "--config", path.to_str().unwrap()])).ok();
        let daemon = Daemon::proxy(ca.dir(), &config, &[("AMBOS_LOG", "debug")]);
        Proxy { ca, port: daemon.port, metrics, daemon }
    }

    /// curl with alice's certificate: (HTTP status, seconds taken).
    fn curl(&self, path: &str, extra: &[&str]) -> (String, f64) {
        let url = format!("https://localhost:{}{path}", self.port);
        let resolve = format!("localhost:{}:127.0.0.1", self.port);
        let mut args = vec!["--max-time", "20"];
        args.extend_from_slice(extra);
        args.extend(["--resolve", &resolve]);
        let r = self.ca.curl(Some("alice"), &url, &args);
        (r.status, r.secs)
    }

    fn metrics(&self) -> String {
        run(Command::new("curl").args(["-sS", &format!("http://127.0.0.1:{}/metrics", self.metrics)])).ok().stdout
    }

    fn log(&self) -> String {
        self.daemon.log()
    }

    /// A Python script in the CA's directory, started with `args`; it
    /// prints one line when ready, which is returned with its guard and
    /// its output, to read the next lines from.
    fn python(&self, name: &str, script: &str, args: &[String]) -> (ChildGuard, Output, String) {
        let path = self.ca.write(name, script);
        let mut child = Command::new("python3")
            .arg(path)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(self.ca.dir().join(format!("{name}.err"))).unwrap())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        (ChildGuard(child), out, line.trim().to_string())
    }

    /// [`Proxy::python`] with the client script's arguments: the proxy's
    /// port, then the CA, alice's certificate and key.
    fn tls_client(&self, name: &str, script: &str) -> (ChildGuard, Output, String) {
        let mut args = vec![self.port.to_string()];
        args.extend(self.ca.client_files("alice").map(|f| f.to_string_lossy().into_owned()));
        self.python(name, script, &args)
    }
}

/// Seconds a client script printed; -1 when it printed none (fails the
/// range checks).
fn seconds(field: Option<&str>) -> f64 {
    field.and_then(|s| s.parse().ok()).unwrap_or(-1.0)
}

/// The value of a counter line `name{labels} value` in /metrics text.
fn counter(metrics: &str, name_and_labels: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(name_and_labels))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// An upstream that accepts and reads but never answers; counts the
/// connections it has open (a connection is open until the proxy closes it).
fn start_silent_upstream() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let open = Arc::new(AtomicUsize::new(0));
    let counted = open.clone();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let open = counted.clone();
            open.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
                open.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    (port, open)
}

/// Opens `N` TCP connections to `PORT` and stays silent on all of them;
/// with a third argument, half of them, then the rest 1.2 s later.
const SILENT: &str = include_str!("../../scripts/fairness_silent.py");

#[test]
fn silent_connections_past_the_cap_do_not_lock_out_a_client_with_a_certificate() {
    require("curl");
    require("python3");
    // The per-source handshake limit above the cap: the cap's eviction is what makes room.
    let p = Proxy::start(
        start_http_upstream(),
        "max_connections = 50\nmax_handshakes_per_source = 1000\nhandshake_timeout = \"30s\"",
    );
    let (_silent, _, ready) = p.python("silent.py", SILENT, &[p.port.to_string(), "200".into()]);
    assert_eq!(ready, "open");
    for i in 0..5 {
        let (status, secs) = p.curl("/hello", &[]);
        assert_eq!(status, "200", "request {i} ({secs} s); proxy log:\n{}", p.log());
    }
    let name = "ambos_proxy_connections_evicted_total{reason=\"max_connections\"}";
    let m = poll(5, Duration::from_millis(100), || p.metrics(), |m| counter(m, name) >= 150.0);
    let evicted = counter(&m, name);
    assert!(evicted >= 150.0, "silent connections evicted at the cap: {evicted}\n{m}");
    assert_eq!(counter(&m, "ambos_proxy_connections_rejected_total"), 0.0, "{m}");
}

#[test]
fn silent_connections_from_one_source_past_its_handshake_limit_are_refused_and_a_client_that_speaks_takes_a_place() {
    require("curl");
    require("python3");
    let p = Proxy::start(start_http_upstream(), "max_handshakes_per_source = 20\nhandshake_timeout = \"30s\"");
    // 100, then 100 more once the first are over a second old: the second
    // hundred find the source holding silent handshakes past its limit, wait
    // on probation (100 ms) for a first byte, and are refused. A burst of
    // honest clients (younger than a second) is not refused for this limit.
    let (_silent, _, ready) = p.python("silent.py", SILENT, &[p.port.to_string(), "200".into(), "halves".into()]);
    assert_eq!(ready, "open");
    let rejected = "ambos_proxy_connections_rejected_total{reason=\"source_handshakes\"}";
    let m = poll(5, Duration::from_millis(100), || p.metrics(), |m| counter(m, rejected) >= 100.0);
    assert!(
        counter(&m, rejected) >= 100.0,
        "refused by the per-source handshake limit: {}\n{m}",
        counter(&m, rejected)
    );
    // A client from the same address that speaks takes a silent one's place.
    let (status, _) = p.curl("/hello", &[]);
    assert_eq!(status, "200", "{}", p.log());
    let m = p.metrics();
    let evicted = counter(&m, "ambos_proxy_connections_evicted_total{reason=\"source_handshakes\"}");
    assert!(evicted >= 1.0, "the client took a silent connection's place: {evicted}\n{m}");
}

#[test]
fn an_upstream_that_never_answers_gets_504_at_upstream_timeout() {
    require("curl");
    let (upstream, open) = start_silent_upstream();
    let p = Proxy::start(upstream, "upstream_timeout = \"1500ms\"");
    for version in ["--http1.1", "--http2"] {
        let (status, secs) = p.curl("/hang", &[version]);
        assert_eq!(status, "504", "{version}: {}", p.log());
        assert!((1.4..4.0).contains(&secs), "{version}: 504 after {secs} s, upstream_timeout is 1.5 s");
    }
    // The timed-out upstream connections are closed, not pooled.
    let still_open = poll(3, Duration::from_millis(50), || open.load(Ordering::SeqCst), |n| *n == 0);
    assert_eq!(still_open, 0, "upstream connections still open");
    assert_eq!(counter(&p.metrics(), "ambos_proxy_timeouts_total{kind=\"upstream\"}"), 2.0);
}

/// Sends a POST whose body trickles at about 3 bytes/s (1 byte every
/// 300 ms) and never finishes; prints the seconds until the proxy answered,
/// until the connection closed, and the status line (or "closed").
const SLOW_BODY: &str = include_str!("../../scripts/fairness_slow_body.py");

#[test]
fn a_body_at_3_bytes_per_second_is_cut_off_at_body_timeout_and_frees_its_upstream_connection() {
    require("python3");
    let (upstream, open) = start_silent_upstream();
    let p = Proxy::start(upstream, "body_timeout = \"1500ms\"\nupstream_timeout = \"30s\"");
    let (_client, mut client_out, ready) = p.tls_client("slow_body.py", SLOW_BODY);
    assert_eq!(ready, "sent");
    // The upstream got the request and holds a connection while the body trickles.
    let opened = poll(3, Duration::from_millis(20), || open.load(Ordering::SeqCst), |n| *n > 0);
    assert_eq!(opened, 1, "the upstream has the request");
    let mut out = String::new();
    client_out.read_line(&mut out).unwrap();
    let mut parts = out.trim().splitn(3, ' ');
    let (answered, closed) = (seconds(parts.next()), seconds(parts.next()));
    let status = parts.next().unwrap_or("");
    assert_eq!(status, "HTTP/1.1 408 Request Timeout", "{out}\n{}", p.log());
    assert!((1.4..4.0).contains(&answered), "408 after {answered} s, body_timeout is 1.5 s");
    assert!(closed < 5.0, "the client connection closed after {closed} s");
    // The proxy closes the upstream side as it answers; the upstream sees
    // it a moment later.
    let still_open = poll(3, Duration::from_millis(20), || open.load(Ordering::SeqCst), |n| *n == 0);
    assert_eq!(still_open, 0, "the upstream connection was closed");
    assert_eq!(counter(&p.metrics(), "ambos_proxy_timeouts_total{kind=\"body\"}"), 1.0);
}

/// One HTTP/2 client of raw frames (`PORT CA CERT KEY [MODE N]`). Without
/// a mode it never opens a stream, answers the server's SETTINGS and PINGs
/// and sends its own PING every 300 ms; prints the seconds until a GOAWAY
/// came and until the connection closed. With a mode it abuses the proxy.
const H2_CLIENT: &str = include_str!("../../scripts/fairness_h2.py");

#[test]
fn an_http2_connection_without_streams_closes_at_idle_timeout_despite_pings() {
    require("python3");
    let p = Proxy::start(start_http_upstream(), "idle_timeout = \"2s\"");
    let (_client, mut client_out, ready) = p.tls_client("h2_client.py", H2_CLIENT);
    assert_eq!(ready, "open", "{}", p.log());
    let mut out = String::new();
    client_out.read_to_string(&mut out).unwrap();
    let mut parts = out.split_whitespace();
    let (goaway, closed) = (seconds(parts.next()), seconds(parts.next()));
    assert!((1.9..4.0).contains(&goaway), "GOAWAY after {goaway} s, idle_timeout is 2 s: {out}\n{}", p.log());
    assert!((goaway..5.0).contains(&closed), "closed after {closed} s: {out}");
    assert_eq!(counter(&p.metrics(), "ambos_proxy_timeouts_total{kind=\"idle\"}"), 1.0);
}

/// TCP mode: sends one line, then nothing; prints the seconds from the
/// line until the proxy closed the connection.
const IDLE_TCP: &str = include_str!("../../scripts/fairness_idle_tcp.py");

#[test]
fn a_tcp_mode_connection_without_a_byte_either_way_closes_at_idle_timeout() {
    require("python3");
    let (upstream, open) = start_silent_upstream();
    let p = Proxy::start_mode("tcp", &format!("address = \"127.0.0.1:{upstream}\""), "idle_timeout = \"2s\"");
    let (_client, mut client_out, ready) = p.tls_client("idle_tcp.py", IDLE_TCP);
    assert_eq!(ready, "sent", "{}", p.log());
    let mut out = String::new();
    client_out.read_line(&mut out).unwrap();
    let closed = seconds(Some(out.trim()));
    // Checked every quarter of idle_timeout (0.5 s): closed within 2-2.5 s.
    assert!((1.9..3.5).contains(&closed), "closed after {closed} s, idle_timeout is 2 s\n{}", p.log());
    let still_open = poll(2, Duration::from_millis(20), || open.load(Ordering::SeqCst), |n| *n == 0);
    assert_eq!(still_open, 0, "the upstream side was closed too");
    assert_eq!(counter(&p.metrics(), "ambos_proxy_timeouts_total{kind=\"idle\"}"), 1.0);
}

/// Opens `N` TCP connections to `PORT` at once and stays silent on all of
/// them; prints how many the proxy closed within 2 s and the longest any
/// of those stayed open (seconds), then holds the rest.
const BURST: &str = include_str!("../../scripts/fairness_burst.py");

#[test]
fn a_connection_flood_from_one_address_is_refused_at_accept_past_its_rate() {
    require("curl");
    require("python3");
    // 20 a second, a burst of 40: of 200 silent connections opened at
    // once, about 160 are closed as soon as they are accepted, before any
    // TLS work (the per-source handshake limit would wait 1 s, the
    // handshake timeout 30 s).
    let p = Proxy::start(start_http_upstream(), "connection_rate_per_source = 20\nhandshake_timeout = \"30s\"");
    let (_burst, _, line) = p.python("burst.py", BURST, &[p.port.to_string(), "200".into()]);
    let (closed, slowest) = line.split_once(' ').expect(&line);
    let closed: f64 = closed.parse().unwrap();
    let slowest: f64 = slowest.parse().unwrap();
    assert!(closed >= 120.0, "closed at accept: {closed} of 200\n{}", p.log());
    // Refused at accept, not evicted (a silent connection would be after
    // 1 s, counted as evicted) nor timed out (30 s); the bound leaves room
    // for a connection the full accept queue delayed by 1 s.
    assert!(slowest < 1.5, "a refused connection stayed open {slowest} s");
    let m = p.metrics();
    let rate = counter(&m, "ambos_proxy_connections_rejected_total{reason=\"rate\"}");
    assert!(rate >= closed - 5.0 && rate <= 200.0, "refused for the rate: {rate}, closed: {closed}\n{m}");
    assert_eq!(counter(&m, "ambos_proxy_connections_evicted_total"), 0.0, "{m}");
    // The address's bucket refills at 20 a second: a client with a
    // certificate from the same address gets through a second later.
    std::thread::sleep(Duration::from_millis(1100));
    let (status, secs) = p.curl("/hello", &[]);
    assert_eq!(status, "200", "after {secs} s; proxy log:\n{}", p.log());
}

#[test]
fn one_http2_connection_holds_at_most_max_upstream_per_connection_and_the_rest_get_503_after_the_queue_timeout() {
    require("curl");
    // The upstream holds every request (until upstream_timeout: 504 at 3 s);
    // five streams of one HTTP/2 connection: two take upstream
    // connections, three queue and get 503 at 1 s.
    let (upstream, open) = start_silent_upstream();
    let p = Proxy::start(
        upstream,
        "max_upstream_per_connection = 2\nupstream_queue_timeout = \"1s\"\nupstream_timeout = \"3s\"",
    );
    let most = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (open, most, done) = (open.clone(), most.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                most.fetch_max(open.load(Ordering::SeqCst), Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--http2", "--parallel", "--parallel-max", "10", "--max-time", "20"])
        .args([
            "-w",
            "%{http_code} %{time_total} %{http_version} %{num_connects} [%header{retry-after}]\\n",
            "--cacert",
        ])
        .arg(p.ca.path("ca.crt"))
        .args(p.ca.cert_flags("alice"))
        .args(["--resolve", &format!("localhost:{}:127.0.0.1", p.port)]);
    for i in 0..5 {
        cmd.args(["-o", "/dev/null"]).arg(format!("https://localhost:{}/hold/{i}", p.port));
    }
    let out = run(&mut cmd);
    done.store(true, Ordering::SeqCst);
    watcher.join().unwrap();
    let mut by_status: Vec<(String, f64)> = Vec::new();
    let mut connects = 0;
    for line in out.stdout.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        assert_eq!(f.len(), 5, "{}", out.stdout);
        assert_eq!(f[2], "2", "HTTP/2: {line}");
        let retry_after = if f[0] == "503" { "[1]" } else { "[]" };
        assert_eq!(f[4], retry_after, "Retry-After only on the queue's 503: {line}");
        connects += f[3].parse::<u32>().unwrap();
        by_status.push((f[0].to_string(), f[1].parse().unwrap()));
    }
    assert_eq!(connects, 1, "one client connection for all five: {}", out.stdout);
    let of = |s: &str| by_status.iter().filter(|(st, _)| st == s).map(|(_, t)| *t).collect::<Vec<f64>>();
    let (queued, held) = (of("503"), of("504"));
    assert_eq!((queued.len(), held.len()), (3, 2), "{}\n{}", out.stdout, p.log());
    assert!(queued.iter().all(|t| (0.9..2.5).contains(t)), "503 after {queued:?} s, the queue timeout is 1 s");
    assert!(held.iter().all(|t| (2.9..5.0).contains(t)), "504 after {held:?} s, upstream_timeout is 3 s");
    assert_eq!(most.load(Ordering::SeqCst), 2, "upstream connections in use at once");
    let m = p.metrics();
    assert_eq!(counter(&m, "ambos_proxy_timeouts_total{kind=\"upstream_queue\"}"), 3.0, "{m}");
    assert!(p.log().contains("upstream queue timed out"), "{}", p.log());
}

/// An HTTP/1.1 upstream that answers every request 200 and counts them.
fn start_counting_upstream() -> (u16, Arc<AtomicUsize>) {
    use std::io::Write;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = requests.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let requests = counted.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap_or(0) > 0 {
                    if line.starts_with("GET ") {
                        requests.fetch_add(1, Ordering::SeqCst);
                    }
                    if line == "\r\n" && writer.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").is_err() {
                        return;
                    }
                    line.clear();
                }
            });
        }
    });
    (port, requests)
}

/// The process's CPU time (user + system), in clock ticks (1/100 s).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses: utime and stime are the 12th and 13th.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// What one abusive HTTP/2 client did to the proxy.
struct Abuse {
    /// The script's report: frames sent, closed by the server, its GOAWAY code.
    report: serde_json::Value,
    /// Requests that reached the upstream from the abuser.
    upstream_requests: usize,
    /// The proxy's resident memory growth, in kB.
    rss_growth_kb: u64,
    /// The proxy's CPU time while it lasted (alice's requests included), in ms.
    cpu_ms: u64,
    log: String,
}

/// Runs the abuse `mode` with `frames` frames while alice sends requests
/// through the same proxy; every one of alice's requests must get 200.
fn h2_abuse(mode: &str, frames: usize) -> Abuse {
    let (upstream, requests) = start_counting_upstream();
    let p = Proxy::start(upstream, "");
    assert_eq!(p.curl("/", &["--http2"]).0, "200");
    let pid = p.daemon.child.0.id();
    let before = (rss_kb(pid), requests.load(Ordering::SeqCst), cpu_ticks(pid));
    let mut args = vec![p.port.to_string()];
    args.extend(p.ca.client_files("alice").map(|f| f.to_string_lossy().into_owned()));
    args.extend([mode.to_string(), frames.to_string()]);
    let (_attacker, mut out, line) = p.python("h2_client.py", H2_CLIENT, &args);
    assert_eq!(line, "open");
    let report = std::thread::spawn(move || {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        line
    });
    let mut served = 0;
    while !report.is_finished() || served < 3 {
        let (status, secs) = p.curl("/", &["--http2"]);
        assert_eq!(status, "200", "alice during the {mode} abuse, after {served} requests ({secs} s)");
        served += 1;
    }
    let report: serde_json::Value = serde_json::from_str(&report.join().unwrap()).unwrap();
    let rss_growth_kb = rss_kb(pid).saturating_sub(before.0);
    let cpu_ms = (cpu_ticks(pid) - before.2) * 10;
    let upstream_requests = requests.load(Ordering::SeqCst) - before.1 - served;
    eprintln!("{mode}: {report}, upstream requests {upstream_requests}, RSS +{rss_growth_kb} kB, CPU {cpu_ms} ms, alice {served}");
    assert!(rss_growth_kb < 64 * 1024, "{mode}: the proxy grew by {rss_growth_kb} kB");
    Abuse { report, upstream_requests, rss_growth_kb, cpu_ms, log: p.log() }
}

#[test]
fn http2_rapid_reset_is_cut_off_with_enhance_your_calm_before_it_reaches_the_upstream() {
    let a = h2_abuse("rapid_reset", 20_000);
    assert_eq!(a.report["closed"], true, "{}", a.report);
    // ENHANCE_YOUR_CALM, unless the reset that closing with unread data
    // brings overtook the GOAWAY on its way to the client.
    assert!(matches!(a.report["goaway"].as_u64(), Some(11) | None), "{}\n{}", a.report, a.log);
    // Cut off before the attack was over. How many frames the client got
    // into the socket first depends on when the proxy was scheduled: alone
    // a few hundred, under the suite's parallel load up to 18,019 once. The
    // bounds that matter are below: streams that reached the upstream, CPU.
    assert!(a.report["sent"].as_u64().unwrap() < 20_000, "not cut off: {}", a.report);
    assert!(a.upstream_requests < 100, "{} reset streams reached the upstream", a.upstream_requests);
    assert!(a.cpu_ms < 2_000, "the proxy spent {} ms of CPU on it", a.cpu_ms);
}

#[test]
fn an_http2_header_block_that_never_ends_is_cut_off_after_a_bounded_size() {
    let a = h2_abuse("continuation", 2_000);
    assert_eq!(a.report["closed"], true, "{}", a.report);
    // 16 KiB a frame: the proxy stops reading a header block at a few MiB.
    assert!(a.report["sent"].as_u64().unwrap() < 256, "{}", a.report);
    assert_eq!(a.upstream_requests, 0);
    assert!(a.cpu_ms < 2_000, "the proxy spent {} ms of CPU on it", a.cpu_ms);
}

#[test]
fn an_http2_settings_flood_does_not_grow_the_proxy_or_slow_others() {
    let a = h2_abuse("settings", 300_000);
    assert!(a.rss_growth_kb < 16 * 1024, "SETTINGS ACKs queued: +{} kB", a.rss_growth_kb);
    assert_eq!(a.upstream_requests, 0);
}

/// (local port, remote port, timer kind, seconds until it fires).
type Socket = (u16, u16, u8, f64);

/// The kernel's view of TCP sockets in this network namespace: (local port,
/// remote port, timer kind, seconds until it fires) of the established ones
/// (`/proc/net/tcp`: timer kind 2 on an established socket is keepalive's,
/// in USER_HZ ticks, 100 a second).
fn established_sockets() -> Vec<Socket> {
    let port = |a: &str| u16::from_str_radix(a.rsplit(':').next().unwrap(), 16).unwrap();
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap()
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (kind, when) = f[5].split_once(':').unwrap();
            (f[3] == "01").then(|| {
                (port(f[1]), port(f[2]), kind.parse().unwrap(), u64::from_str_radix(when, 16).unwrap() as f64 / 100.0)
            })
        })
        .collect()
}

/// A client or upstream whose host is gone is found by TCP keepalive (the
/// proxy sends no HTTP/2 PINGs): on the connection a client opened, and on
/// the pooled one to the upstream.
#[test]
fn client_and_upstream_connections_have_tcp_keepalive() {
    let upstream = start_http_upstream();
    let p = Proxy::start(upstream, "");
    // A request leaves a pooled upstream connection; a client connection
    // that has not even started its handshake is already set up.
    assert_eq!(p.curl("/", &[]).0, "200", "{}", p.log());
    let client = std::net::TcpStream::connect(("127.0.0.1", p.port)).unwrap();
    let ours = client.local_addr().unwrap().port();
    let (accepted, pooled) = poll(
        5,
        Duration::from_millis(50),
        || {
            let s = established_sockets();
            let find = |f: &dyn Fn(&Socket) -> bool| s.iter().find(|t| f(t)).copied();
            (find(&|t| t.0 == p.port && t.1 == ours), find(&|t| t.1 == upstream))
        },
        // The kernel has the connection before the proxy accepts it.
        |(a, u)| [a, u].iter().all(|t| t.is_some_and(|t| t.2 == 2)),
    );
    for (what, socket) in [("client connection", accepted), ("upstream connection", pooled)] {
        let (_, _, kind, when) = socket.unwrap_or_else(|| panic!("no {what} in /proc/net/tcp"));
        assert_eq!(kind, 2, "the proxy's side of the {what} has no keepalive timer");
        assert!((40.0..=61.0).contains(&when), "{what}: first keepalive probe in {when} s, not after 60 s of silence");
    }
    drop(client);
}
