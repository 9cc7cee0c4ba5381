//! WebSocket through `ambos proxy` (HTTP/1.1 Upgrade), Python `websockets`
//! on both sides: echo of text and binary frames, close codes, identity
//! headers at the upstream, a route without `websocket = true` or an
//! identity off its allow list refused with 403 before any upgrade, the
//! idle timeout, and an upgraded connection closed when its client's
//! certificate is revoked.
use ambos_interop_tests::{require, run, wait_file_contains, ChildGuard, Daemon, ProxyToml, TestCa};
use serde_json::Value;
use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Command, Stdio};

const SCRIPT: &str = include_str!("../../scripts/proxy_websocket.py");

struct Ws {
    ca: TestCa,
    script: PathBuf,
    _server: ChildGuard,
    proxy: Daemon,
}

impl Ws {
    /// The echo server behind a proxy with `routes` (and `more` sections).
    fn start(routes: &str, more: &str) -> Ws {
        Ws::start_with(routes, "", more, |_| {})
    }

    /// The same with `tls` lines in `[tls]`, after `prepare` ran on the CA.
    fn start_with(routes: &str, tls: &str, more: &str, prepare: impl FnOnce(&TestCa)) -> Ws {
        require("python3");
        if run(Command::new("python3").args(["-c", "import websockets"])).code != 0 {
            panic!("python3 websockets is missing: scripts/install-deps.sh installs it");
        }
        let ca = TestCa::with_localhost(&["alice", "bob"]);
        prepare(&ca);
        let script = ca.write("ws_peer.py", SCRIPT);
        let err = ca.dir().join("ws-server.err");
        let mut child = Command::new("python3")
            .arg(&script)
            .arg("server")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let server = ChildGuard(child);
        let port: u16 =
            line.trim().parse().unwrap_or_else(|_| panic!("{line:?}: {}", std::fs::read_to_string(&err).unwrap()));
        let config = ProxyToml::http(port).tls(tls).routes(routes).section(more).to_string();
        let proxy = Daemon::proxy(ca.dir(), &config, &[]);
        Ws { ca, script, _server: server, proxy }
    }

    fn client(&self, who: &str, path: &str, steps: &[&str]) -> Value {
        self.client_as("client", who, path, steps)
    }

    /// `mode` "client" (HTTP/1.1, websockets) or "client-h2" (RFC 8441, h2).
    fn client_as(&self, mode: &str, who: &str, path: &str, steps: &[&str]) -> Value {
        let out = run(Command::new("python3")
            .arg(&self.script)
            .arg(mode)
            .arg(self.proxy.port.to_string())
            .args(self.ca.client_files(who))
            .arg(path)
            .args(steps));
        serde_json::from_str(out.stdout.trim())
            .unwrap_or_else(|e| panic!("ws client: {e}: {} {}\nproxy: {}", out.stdout, out.stderr, self.proxy.log()))
    }
}

const CHAT: &str = "[[route]]\npath = \"/chat\"\nallow = [\"cn:alice\"]\nwebsocket = true\n\n\
                    [[route]]\npath = \"/plain\"\nallow = [\"cn:alice\"]\n";

#[test]
fn text_and_binary_frames_and_a_close_code_pass_and_the_upstream_sees_the_identity() {
    let ws = Ws::start(CHAT, "");
    let v = ws.client("alice", "/chat", &["text:hello", "bin:00ff10", "headers", "close:4001"]);
    let r = &v["results"];
    assert_eq!((r[0].as_str(), r[1].as_str()), (Some("hello"), Some("00ff10")), "{v}");
    let headers = &r[2];
    assert!(headers["x-forwarded-client-cert"].as_str().unwrap_or("").contains("Hash="), "{headers}");
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1", "{headers}");
    assert_eq!(headers["upgrade"], "websocket", "{headers}");
    assert_eq!(r[3]["close"], 4001, "{v}");
}

/// RFC 8441: an HTTP/2 client's extended CONNECT becomes an HTTP/1.1
/// upgrade to the upstream; frames, close code and refusals as over HTTP/1.1.
#[test]
fn websocket_over_http2_extended_connect_reaches_an_http1_upstream() {
    if run(Command::new("python3").args(["-c", "import h2"])).code != 0 {
        panic!("python3 h2 is missing: scripts/install-deps.sh installs it");
    }
    let ws = Ws::start(CHAT, "");
    let v = ws.client_as("client-h2", "alice", "/chat", &["text:hello", "bin:00ff10", "headers", "close:4002"]);
    let r = &v["results"];
    assert_eq!((r[0].as_str(), r[1].as_str()), (Some("hello"), Some("00ff10")), "{v}");
    assert!(r[2]["x-forwarded-client-cert"].as_str().unwrap_or("").contains("Hash="), "{v}");
    assert_eq!(r[2]["upgrade"], "websocket", "the upstream got an HTTP/1.1 upgrade: {v}");
    assert_eq!(r[3]["close"], 4002, "{v}");
    assert_eq!(ws.client_as("client-h2", "alice", "/plain", &["text:x"])["status"], 403);
    assert_eq!(ws.client_as("client-h2", "bob", "/chat", &["text:x"])["status"], 403);
}

#[test]
fn an_upgrade_off_a_websocket_route_or_by_another_identity_is_refused_before_it_starts() {
    let ws = Ws::start(CHAT, "[audit]\npath = \"audit.jsonl\"\n");
    assert_eq!(ws.client("alice", "/plain", &["text:x"])["status"], 403);
    assert_eq!(ws.client("bob", "/chat", &["text:x"])["status"], 403);
    let audit = std::fs::read_to_string(ws.ca.dir().join("audit.jsonl")).unwrap();
    assert!(audit.contains("WebSocket is not allowed on this route"), "{audit}");
    assert!(audit.contains("identity not on the route's allow list"), "{audit}");
    // Any other upgrade is refused too (curl asks for h2c on plain HTTP/1.1 only, so by hand).
    let reply = ws.ca.curl(
        Some("alice"),
        &format!("https://localhost:{}/chat", ws.proxy.port),
        &["--http1.1", "-H", "Connection: Upgrade", "-H", "Upgrade: h2c"],
    );
    assert_eq!(reply.status, "400", "{reply:?}");
}

#[test]
fn an_upgraded_connection_closes_at_the_idle_timeout() {
    let ws = Ws::start(CHAT, "[limits]\nidle_timeout = \"1s\"\n");
    let v = ws.client("alice", "/chat", &["text:hi", "idle:10"]);
    let secs = v["results"][1]["closed_after"].as_f64().unwrap_or_else(|| panic!("{v}"));
    assert!((0.9..5.0).contains(&secs), "closed after {secs} s: {v}");
}

#[test]
fn an_upgraded_connection_closes_when_its_certificate_is_revoked() {
    let ws = Ws::start_with(CHAT, "crl = [\"crl.pem\"]", "[audit]\npath = \"audit.jsonl\"\n", |ca| {
        ca.ambos(&["crl", "--all", "--out", "crl.pem"]);
    });
    let mut client = Command::new("python3")
        .arg(&ws.script)
        .arg("client")
        .arg(ws.proxy.port.to_string())
        .args(ws.ca.client_files("alice"))
        .args(["/chat", "text:hi", "idle:20"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = client.stdout.take().unwrap();
    let _client = ChildGuard(client);
    wait_file_contains(&ws.ca.dir().join("audit.jsonl"), "\"status\":101", 10);
    ws.ca.ambos(&["revoke", "alice"]);
    ws.ca.ambos(&["crl", "--all", "--out", "crl.pem"]);
    let mut line = String::new();
    std::io::BufReader::new(out).read_line(&mut line).unwrap();
    let v: Value = serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("{e}: {line}"));
    let secs = v["results"][1]["closed_after"].as_f64().unwrap_or_else(|| panic!("still open: {v}"));
    assert!(secs < 15.0, "{v}");
    let audit = wait_file_contains(&ws.ca.dir().join("audit.jsonl"), "\"event\":\"revoked\"", 5);
    assert!(audit.contains("\"decision\":\"close\""), "{audit}");
}
