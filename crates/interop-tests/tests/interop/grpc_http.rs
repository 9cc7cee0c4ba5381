//! gRPC through `ambos proxy` in HTTP mode, HTTP/2 to the upstream: Python
//! grpcio on both sides (scripts/proxy_grpc.py), the upstream over h2c
//! (prior knowledge) or TLS with ALPN h2, the client with its mTLS
//! certificate; and the ALPN choice against nginx. Each test runs its own
//! upstream and proxy.
use ambos_interop_tests::{
    free_port, require, run, start_http_upstream, start_nginx, wait_file_contains, ChildGuard, Daemon, TestCa,
};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Command, Stdio};

const SCRIPT: &str = include_str!("../../scripts/proxy_grpc.py");

/// Only `/echo.Echo/*` for alice.
const ALICE: &str = "[[route]]\npath = \"/echo.Echo/**\"\nallow = [\"spiffe://acme.test/alice\"]\n";

enum Upstream {
    /// The grpcio server in plaintext: `h2c://`.
    H2c,
    /// The grpcio server with localhost's certificate: `https://` with `[upstream.tls] ca`.
    Tls,
    /// Something else listening on this port, reached as `h2c://`.
    Other(u16),
}

struct Grpc {
    ca: TestCa,
    script: PathBuf,
    /// What the grpcio server observed, a line each.
    events: PathBuf,
    _server: Option<ChildGuard>,
    proxy: Daemon,
}

impl Grpc {
    fn start(upstream: Upstream, routes: &str) -> Grpc {
        Self::start_with(upstream, routes, "")
    }

    /// With `limits` added to `[limits]`.
    fn start_with(upstream: Upstream, routes: &str, limits: &str) -> Grpc {
        require("python3");
        if run(Command::new("python3").args(["-c", "import grpc"])).code != 0 {
            panic!("python3 grpcio is missing: scripts/install-deps.sh installs it");
        }
        let ca = TestCa::new(&[]);
        ca.issue("server", "localhost", &["--san", "ip:127.0.0.1"]);
        ca.issue("client", "alice", &["--spiffe", "spiffe://acme.test/alice"]);
        ca.issue("client", "bob", &[]);
        // Not grpc.py: it would shadow the grpc package it imports.
        let script = ca.write("grpc_echo.py", SCRIPT);
        let events = ca.dir().join("grpc-events.txt");
        let (server, url) = match upstream {
            Upstream::H2c => {
                let (s, port) = Self::server(&ca, &script, &events, false);
                (Some(s), format!("url = \"h2c://127.0.0.1:{port}\""))
            }
            Upstream::Tls => {
                let (s, port) = Self::server(&ca, &script, &events, true);
                (Some(s), format!("url = \"https://localhost:{port}\"\n\n[upstream.tls]\nca = \"certs/ca.crt\""))
            }
            Upstream::Other(port) => (None, format!("url = \"h2c://127.0.0.1:{port}\"")),
        };
        let config = format!(
            r#"
[listen]
address = "127.0.0.1:0"

[tls]
cert = "certs/localhost.crt"
key = "certs/localhost.key"
client_ca = "certs/ca.crt"

[audit]
path = "audit.jsonl"

[limits]
shutdown_grace = "1s"
{limits}

{routes}

[upstream]
{url}
"#
        );
        let proxy = Daemon::proxy(ca.dir(), &config, &[]);
        Grpc { ca, script, events, _server: server, proxy }
    }

    /// The grpcio server, plaintext or TLS; its port.
    fn server(ca: &TestCa, script: &PathBuf, events: &PathBuf, tls: bool) -> (ChildGuard, u16) {
        let mut cmd = Command::new("python3");
        cmd.arg(script).arg("server").arg(events);
        if tls {
            cmd.arg(ca.path("localhost.crt")).arg(ca.path("localhost.key"));
        }
        let err = ca.dir().join("grpc-server.err");
        let mut child = cmd.stdout(Stdio::piped()).stderr(std::fs::File::create(&err).unwrap()).spawn().unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
        let guard = ChildGuard(child);
        let port = line.trim().parse().unwrap_or_else(|_| {
            panic!("grpc server said {line:?}: {}", std::fs::read_to_string(&err).unwrap_or_default())
        });
        (guard, port)
    }

    /// Runs the grpcio client as `who` through the proxy; each call's
    /// result, or "CODE: details".
    fn call(&self, who: &str, calls: &[&str]) -> Value {
        let out = run(Command::new("python3")
            .arg(&self.script)
            .arg("client")
            .arg(self.proxy.port.to_string())
            .arg(self.ca.path("ca.crt"))
            .arg(self.ca.path(&format!("{who}.crt")))
            .arg(self.ca.path(&format!("{who}.key")))
            .args(calls)
            .env("GRPC_EVENTS", &self.events));
        serde_json::from_str(out.stdout.trim())
            .unwrap_or_else(|e| panic!("grpc client: {e}: {} {}\nproxy: {}", out.stdout, out.stderr, self.proxy.log()))
    }

    fn audit(&self) -> Vec<Value> {
        std::fs::read_to_string(self.ca.dir().join("audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The audit line of the request to `path`.
    fn audited(&self, path: &str) -> Value {
        let lines = self.audit();
        lines.iter().rev().find(|l| l["path"] == path).cloned().unwrap_or_else(|| panic!("no {path} in {lines:?}"))
    }
}

fn assert_all_kinds_of_call_work(g: &Grpc) {
    let v = g.call("alice", &["get", "stream", "collect", "chat"]);
    assert_eq!(v["get"], "echo:ping", "unary: {v}");
    assert_eq!(v["stream"], json!(["0:x", "1:x", "2:x"]), "server streaming: {v}");
    assert_eq!(v["collect"], "a+b+c", "client streaming: {v}");
    assert_eq!(v["chat"], json!(["re:1", "re:2", "re:3"]), "bidi: {v}");
    let line = g.audited("/echo.Echo/Chat");
    assert_eq!((line["decision"].as_str(), line["status"].as_u64()), (Some("allow"), Some(200)), "{line}");
    assert_eq!(line["identity"]["spiffe"], "spiffe://acme.test/alice", "{line}");
}

#[test]
fn all_four_kinds_of_call_pass_to_an_h2c_upstream() {
    assert_all_kinds_of_call_work(&Grpc::start(Upstream::H2c, ALICE));
}

#[test]
fn all_four_kinds_of_call_pass_to_a_tls_upstream_that_chose_h2() {
    assert_all_kinds_of_call_work(&Grpc::start(Upstream::Tls, ALICE));
}

#[test]
fn a_non_ok_status_and_its_message_reach_the_client() {
    let g = Grpc::start(Upstream::H2c, ALICE);
    let v = g.call("alice", &["fail", "get"]);
    assert_eq!(v["fail"], "FAILED_PRECONDITION: refused: no such account", "{v}");
    assert_eq!(v["get"], "echo:ping", "the next call on the channel: {v}");
}

/// The client's deadline goes to the upstream as `grpc-timeout`; when it
/// expires the call ends there too.
#[test]
fn a_deadline_reaches_the_upstream_and_expires_there() {
    let g = Grpc::start(Upstream::Tls, ALICE);
    let v = g.call("alice", &["deadline"]);
    assert_eq!(v["deadline"], "DEADLINE_EXCEEDED: Deadline Exceeded", "{v}");
    let events = wait_file_contains(&g.events, "Sleep ended, active=False", 5);
    let left: f64 = events
        .lines()
        .find_map(|l| l.strip_prefix("Sleep deadline "))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("the upstream saw no deadline: {events}"));
    // Less the time the call took to get there (generous: test machines are busy).
    assert!(left > 0.2 && left <= 1.5, "the upstream's deadline: {left} s of the client's 1.5 s");
}

/// A cancelled server stream: the client resets its stream, the proxy the
/// upstream's, and the server's handler sees its call end while the
/// client's channel (and connection) stays open.
#[test]
fn a_client_cancel_reaches_the_upstream() {
    let g = Grpc::start(Upstream::H2c, ALICE);
    let v = g.call("alice", &["cancel", "get"]);
    assert_eq!(v["cancel"], "cancelled after 0; the upstream saw it", "{v}");
    assert_eq!(v["get"], "echo:ping", "{v}");
}

#[test]
fn a_16_mb_message_passes_both_ways() {
    let g = Grpc::start(Upstream::H2c, ALICE);
    let v = g.call("alice", &["big"]);
    assert_eq!(v["big"], json!({"len": 16 * 1024 * 1024, "same": true}), "{v}");
}

/// `[limits] max_grpc_message`: a 20 MB message is refused from its
/// prefix with RESOURCE_EXHAUSTED (audited as 413), 16 MB passes, and the
/// channel goes on.
#[test]
fn a_message_over_max_grpc_message_is_resource_exhausted() {
    let g = Grpc::start_with(Upstream::H2c, ALICE, "max_grpc_message = \"16MB\"");
    let v = g.call("alice", &["huge", "big", "get"]);
    assert_eq!(v["huge"], "RESOURCE_EXHAUSTED: ambos proxy: 413 Payload Too Large", "{v}");
    assert_eq!(v["big"], json!({"len": 16 * 1024 * 1024, "same": true}), "{v}");
    assert_eq!(v["get"], "echo:ping", "{v}");
    let line = g.audit().into_iter().find(|l| l["status"] == 413).unwrap_or_else(|| panic!("{:?}", g.audit()));
    assert_eq!((line["path"].as_str(), line["decision"].as_str()), (Some("/echo.Echo/Big"), Some("deny")), "{line}");
    let reason = line["reason"].as_str().unwrap_or_default();
    assert!(reason.starts_with("gRPC message too large: over limits.max_grpc_message (16777216 bytes)"), "{line}");
}

/// Per-method authorization: the proxy's own 403 is gRPC's PERMISSION_DENIED
/// (HTTP 200, trailers-only), audited as the 403 it is.
#[test]
fn a_route_for_get_only_refuses_set_with_permission_denied() {
    let routes = "[[route]]\npath = \"/echo.Echo/Get\"\nallow = [\"spiffe://acme.test/alice\"]\n";
    let g = Grpc::start(Upstream::H2c, routes);
    let v = g.call("alice", &["get", "set"]);
    assert_eq!(v["get"], "echo:ping", "{v}");
    assert_eq!(v["set"], "PERMISSION_DENIED: ambos proxy: 403 Forbidden", "{v}");
    let line = g.audited("/echo.Echo/Set");
    assert_eq!((line["decision"].as_str(), line["status"].as_u64()), (Some("deny"), Some(403)), "{line}");
    assert_eq!(line["reason"], "no route matches", "{line}");
    let v = g.call("bob", &["get"]);
    assert_eq!(v["get"], "PERMISSION_DENIED: ambos proxy: 403 Forbidden", "{v}");
    let line = g.audited("/echo.Echo/Get");
    assert_eq!(line["reason"], "identity not on the route's allow list", "{line}");
}

/// An h2c upstream that answers in HTTP/1.1, or with bytes that are not
/// HTTP at all: UNAVAILABLE for gRPC, 502 for curl, and the audit line
/// says what the upstream spoke.
#[test]
fn an_h2c_upstream_that_is_not_http2_is_unavailable_with_the_reason() {
    require("curl");
    for (port, says) in [
        (start_http_upstream(), "the upstream answered in HTTP/1.x, not HTTP/2"),
        (start_ssh_like_server(), "the upstream does not speak HTTP/2: its first bytes were \"SSH-2.0-OpenSSH_\""),
    ] {
        let g = Grpc::start(Upstream::Other(port), ALICE);
        let v = g.call("alice", &["get"]);
        assert_eq!(v["get"], "UNAVAILABLE: ambos proxy: 502 Bad Gateway", "{v}");
        let line = g.audited("/echo.Echo/Get");
        assert_eq!(line["status"], 502, "{line}");
        assert!(line["reason"].as_str().is_some_and(|r| r.contains(says)), "{says}: {line}");
        let r = g.ca.curl(Some("alice"), &format!("https://localhost:{}/echo.Echo/Get", g.proxy.port), &[]);
        assert_eq!(r.status, "502", "{r:?}");
        assert!(g.proxy.log().contains(says), "{}", g.proxy.log());
    }
}

/// A server that greets every connection with an SSH banner (a wrong port
/// in the config) and then reads until the client closes: closing at once,
/// with our bytes unread, would reset the connection before we read it.
fn start_ssh_like_server() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                use std::io::Write;
                let _ = stream.write_all(b"SSH-2.0-OpenSSH_9.6\r\n");
                let _ = std::io::copy(&mut stream, &mut std::io::sink());
            });
        }
    });
    port
}

/// An HTTP/1.1 client (curl) to an h2c upstream: its request goes out as an
/// HTTP/2 stream, the answer comes back in HTTP/1.1.
#[test]
fn an_http1_client_reaches_an_h2c_upstream() {
    require("curl");
    let g = Grpc::start(Upstream::H2c, ALICE);
    // One gRPC message: not compressed, 4 bytes, "ping".
    let body = g.ca.write("ping.grpc", b"\x00\x00\x00\x00\x04ping");
    let r = g.ca.curl(
        Some("alice"),
        &format!("https://localhost:{}/echo.Echo/Get", g.proxy.port),
        &[
            "--http1.1",
            "-H",
            "content-type: application/grpc",
            "-H",
            "te: trailers",
            "--data-binary",
            &format!("@{}", body.display()),
        ],
    );
    assert_eq!((r.code, r.status.as_str(), r.version.as_str()), (0, "200", "1.1"), "{r:?}");
    assert!(r.body.ends_with("echo:ping"), "{r:?}");
}

/// `https://` upstreams and ALPN, against nginx: with the default
/// `protocol = "auto"` the proxy speaks HTTP/2 to an nginx that offers h2
/// and HTTP/1.1 to one that does not; `protocol = "h2"` refuses the latter
/// with a 502 that says why, `protocol = "http1"` keeps the former on HTTP/1.1.
#[test]
fn alpn_picks_http2_when_nginx_offers_it_and_http1_when_not() {
    require("nginx");
    require("curl");
    let ca = TestCa::new(&[]);
    ca.issue("server", "localhost", &["--san", "ip:127.0.0.1"]);
    ca.issue("client", "alice", &[]);
    let (h2, h1) = (free_port(), free_port());
    let c = ca.certs();
    let c = c.display();
    let server = |port: u16, http2: &str| {
        format!(
            "server {{ listen 127.0.0.1:{port} ssl{http2}; ssl_certificate {c}/localhost.crt; \
             ssl_certificate_key {c}/localhost.key; \
             location / {{ default_type text/plain; return 200 \"$server_protocol\"; }} }}\n"
        )
    };
    let _nginx = start_nginx(ca.dir(), &(server(h2, " http2") + &server(h1, "")), h2);
    for (port, protocol, want) in [
        (h2, "", "HTTP/2.0"),
        (h1, "", "HTTP/1.1"),
        (h2, "protocol = \"http1\"", "HTTP/1.1"),
        (h1, "protocol = \"h2\"", "502"),
    ] {
        let config = format!(
            "[listen]\naddress = \"127.0.0.1:0\"\n\n[tls]\ncert = \"certs/localhost.crt\"\nkey = \"certs/localhost.key\"\n\
             client_ca = \"certs/ca.crt\"\n\n[audit]\npath = \"audit-{port}-{}.jsonl\"\n\n\
             [[route]]\npath = \"/**\"\nallow = [\"any\"]\n\n\
             [upstream]\nurl = \"https://localhost:{port}\"\n{protocol}\n\n[upstream.tls]\nca = \"certs/ca.crt\"\n",
            protocol.len()
        );
        let proxy = Daemon::proxy(ca.dir(), &config, &[]);
        let what = format!("upstream {} with '{protocol}'", if port == h2 { "offering h2" } else { "without h2" });
        let out = ca.curl(Some("alice"), &format!("https://localhost:{}/", proxy.port), &[]);
        if want == "502" {
            assert_eq!(out.status, "502", "{what}: {out:?}");
            let audit = ca.dir().join(format!("audit-{port}-{}.jsonl", protocol.len()));
            let text = wait_file_contains(&audit, "\"status\":502", 5);
            assert!(
                text.contains("it does not speak h2, which upstream.protocol = \\\"h2\\\" requires"),
                "{what}: {text}"
            );
        } else {
            assert_eq!((out.status.as_str(), out.body.as_str()), ("200", want), "{what}: {out:?}\n{}", proxy.log());
        }
    }
}
