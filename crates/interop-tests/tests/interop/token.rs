//! Certificate-bound access tokens (RFC 8705) at `ambos proxy`: tokens
//! minted by an independent JOSE library (Python jwcrypto, its own key,
//! the JWKS as a file) bound to alice's certificate. Alice gets through;
//! bob replaying her token, missing, expired, foreign, forged, `alg: none`
//! and HMAC-with-the-public-key tokens get 401 with the reason in
//! `WWW-Authenticate` and the audit line; a missing scope gets 403; the
//! upstream never sees the token. With the JWKS at a URL (a Python HTTPS
//! server with ETags, its certificate from the proxy's client CA): a new
//! key is used without a reload, refreshes are conditional, a server that
//! fails or serves garbage leaves the last good keys, random kids do not
//! become fetches, and without the JWKS at start the proxy does not start.
use ambos_interop_tests::{free_port, poll, require, run, wait_for_port, ChildGuard, Daemon, ProxyToml, TestCa};
use std::process::{Command, Stdio};
use std::time::Duration;

const MINT: &str = include_str!("../../scripts/proxy_token.py");
const WSGI_UPSTREAM: &str = include_str!("../../scripts/header_attacks_wsgi_upstream.py");
const JWKS_SERVER: &str = include_str!("../../scripts/token_jwks_server.py");

struct Fixture {
    ca: TestCa,
    _upstream: ChildGuard,
    proxy: Daemon,
    /// With a pulled JWKS: its server and port.
    jwks_server: Option<(ChildGuard, u16)>,
    metrics: u16,
}

impl Fixture {
    fn start() -> Fixture {
        Fixture::new(false)
    }

    /// `pulled`: the route's JWKS is `https://localhost:PORT/jwks`,
    /// refreshed every 2 s, served from `served.json` (key k1 at first).
    fn new(pulled: bool) -> Fixture {
        require("python3");
        if run(Command::new("python3").args(["-c", "import jwcrypto"])).code != 0 {
            panic!("python3 jwcrypto is missing: scripts/install-deps.sh installs it");
        }
        let ca = TestCa::with_localhost(&["alice", "bob"]);
        ca.write("mint.py", MINT);
        let keys = run(Command::new("python3").arg(ca.dir().join("mint.py")).arg("keys").arg(ca.dir()));
        assert_eq!(keys.code, 0, "{}", keys.stderr);
        let script = ca.write("wsgi_upstream.py", WSGI_UPSTREAM);
        let port = free_port();
        let err = ca.dir().join("upstream.err");
        let mut child = Command::new("python3")
            .arg(&script)
            .arg(port.to_string())
            .arg(ca.dir().join("upstream.jsonl"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .unwrap();
        wait_for_port(port, &mut child, &err);
        let (jwks, jwks_server) = match pulled {
            false => ("jwks = \"jwks.json\"".to_string(), None),
            true => {
                let keys =
                    run(Command::new("python3").arg(ca.dir().join("mint.py")).arg("keys").arg(ca.dir()).arg("k2"));
                assert_eq!(keys.code, 0, "{}", keys.stderr);
                std::fs::copy(ca.dir().join("jwks.json"), ca.dir().join("served.json")).unwrap();
                let port = free_port();
                let script = ca.write("jwks_server.py", JWKS_SERVER);
                let err = ca.dir().join("jwks_server.err");
                let mut child = Command::new("python3")
                    .arg(&script)
                    .arg(port.to_string())
                    .arg(ca.dir())
                    .arg(ca.path("localhost.crt"))
                    .arg(ca.path("localhost.key"))
                    .stdout(Stdio::null())
                    .stderr(std::fs::File::create(&err).unwrap())
                    .spawn()
                    .unwrap();
                wait_for_port(port, &mut child, &err);
                let url = format!("jwks = \"https://localhost:{port}/jwks\", jwks_refresh = \"2s\"");
                (url, Some((ChildGuard(child), port)))
            }
        };
        let routes = format!(
            "[[route]]\npath = \"/pay/**\"\nallow = [\"any\"]\n\
             token = {{ issuer = \"https://ca.test\", {jwks}, audience = \"payments\", scopes = [\"payments:write\"] }}\n\n\
             [[route]]\npath = \"/other\"\nallow = [\"any\"]\n"
        );
        let metrics = free_port();
        let config = ProxyToml::http(port)
            .routes(&routes)
            .section("[audit]\npath = \"audit.jsonl\"")
            .metrics(metrics)
            .to_string();
        let proxy = Daemon::proxy(ca.dir(), &config, &[]);
        Fixture { ca, _upstream: ChildGuard(child), proxy, jwks_server, metrics }
    }

    /// A good token for alice signed by key `kid`; or, `random`: that many
    /// signed by k2 each naming a random unknown kid.
    fn tokens_of(&self, kid: &str, random: usize) -> Vec<String> {
        let out = run(Command::new("python3")
            .arg(self.ca.dir().join("mint.py"))
            .arg("token")
            .arg(self.ca.dir())
            .arg(self.ca.path("alice.crt"))
            .arg("good")
            .env("KID", kid)
            .env("RANDOM_KIDS", if random > 0 { random.to_string() } else { String::new() }));
        assert_eq!(out.code, 0, "{}", out.stderr);
        out.stdout.lines().map(str::to_string).collect()
    }

    /// The JWKS server's counts: requests, conditional ones, 304s.
    fn jwks_stats(&self) -> (u64, u64, u64) {
        let text = std::fs::read_to_string(self.ca.dir().join("jwks_stats.json")).unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let n = |k: &str| v[k].as_u64().unwrap_or(0);
        (n("requests"), n("conditional"), n("not_modified"))
    }

    /// A token for alice's certificate (`kind` and claim changes as the script takes them).
    fn token(&self, kind: &str, claims: &[&str]) -> String {
        let out = run(Command::new("python3")
            .arg(self.ca.dir().join("mint.py"))
            .arg("token")
            .arg(self.ca.dir())
            .arg(self.ca.path("alice.crt"))
            .arg(kind)
            .args(claims));
        assert_eq!(out.code, 0, "{}", out.stderr);
        out.stdout.trim().to_string()
    }

    /// curl as `who` with `token`: (status, WWW-Authenticate, body).
    fn call(&self, who: &str, token: Option<&str>) -> (String, String, String) {
        self.call_at("/pay/now", who, token, &[])
    }

    fn call_at(&self, path: &str, who: &str, token: Option<&str>, more: &[&str]) -> (String, String, String) {
        let url = format!("https://localhost:{}{path}", self.proxy.port);
        let headers = self.ca.dir().join("headers.txt");
        let auth = token.map(|t| format!("Authorization: Bearer {t}"));
        let mut extra = vec!["-D", headers.to_str().unwrap()];
        if let Some(a) = &auth {
            extra.extend(["-H", a.as_str()]);
        }
        extra.extend(more);
        let r = self.ca.curl(Some(who), &url, &extra);
        let head = std::fs::read_to_string(&headers).unwrap_or_default();
        let challenge = head
            .lines()
            .find_map(|l| l.split_once(':').filter(|(n, _)| n.eq_ignore_ascii_case("www-authenticate")))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default();
        (r.status, challenge, r.body)
    }
}

#[test]
fn a_bound_token_works_for_its_certificate_and_is_worthless_to_anyone_else() {
    let f = Fixture::start();
    let token = f.token("good", &["sub=\"alice\""]);
    let spoof = ["-H", "X-Token-Subject: admin", "-H", "X_Token_Scope: everything"];
    let (status, _, body) = f.call_at("/pay/now", "alice", Some(&token), &spoof);
    assert_eq!(status, "200", "{body}\n{}", f.proxy.log());
    let seen: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(seen.get("HTTP_AUTHORIZATION").is_none(), "the token went upstream: {seen}");
    // The verified claims, never the client's copies of their headers.
    assert_eq!(seen["HTTP_X_TOKEN_SUBJECT"], "alice", "{seen}");
    assert_eq!(seen["HTTP_X_TOKEN_SCOPE"], "payments:read payments:write", "{seen}");
    let (status, _, body) = f.call_at("/other", "alice", None, &spoof);
    assert_eq!(status, "200", "{body}");
    let seen: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(seen.get("HTTP_X_TOKEN_SUBJECT").is_none() && seen.get("HTTP_X_TOKEN_SCOPE").is_none(), "{seen}");
    let (status, challenge, _) = f.call("bob", Some(&token));
    assert_eq!(status, "401");
    assert!(
        challenge.contains("error=\"invalid_token\"") && challenge.contains("bound to another certificate"),
        "{challenge}"
    );
    // The audit line is written after the answer: wait for it.
    let audit_file = f.ca.dir().join("audit.jsonl");
    let read = || std::fs::read_to_string(&audit_file).unwrap_or_default();
    let audit = poll(10, Duration::from_millis(50), read, |a| a.contains("the token is bound to another certificate"));
    assert!(audit.contains("the token is bound to another certificate"), "{audit}");
    // `ambos inspect` shows whom the token is bound to: alice's certificate, by the same SHA-256.
    let file = f.ca.write("token.txt", &token);
    let jwt: serde_json::Value =
        serde_json::from_str(&f.ca.ambos(&["inspect", file.to_str().unwrap(), "--json"]).stdout).unwrap();
    let cert: serde_json::Value =
        serde_json::from_str(&f.ca.ambos(&["inspect", f.ca.path("alice.crt").to_str().unwrap(), "--json"]).stdout)
            .unwrap();
    assert_eq!(jwt["kind"], "jwt", "{jwt}");
    assert_eq!(jwt["bound_to_sha256"], cert["certificates"][0]["sha256"], "{jwt}\n{cert}");
}

/// `ambos probe --token` says in plain words why a route refuses a token.
#[test]
fn probe_says_whom_a_replayed_token_was_issued_to() {
    let f = Fixture::start();
    let token = f.token("good", &["sub=\"alice\""]);
    let probe = |who: &str, token: Option<&str>| -> serde_json::Value {
        let target = format!("localhost:{}", f.proxy.port);
        let mut args = vec!["probe", target.as_str(), "--path", "/pay/now", "--json"];
        let (cert, key, ca) = (f.ca.path(&format!("{who}.crt")), f.ca.path(&format!("{who}.key")), f.ca.path("ca.crt"));
        args.extend(["--cert", cert.to_str().unwrap(), "--key", key.to_str().unwrap(), "--ca", ca.to_str().unwrap()]);
        if let Some(t) = token {
            args.extend(["--token", t]);
        }
        serde_json::from_str(&f.ca.ambos(&args).stdout).unwrap()
    };
    assert_eq!(probe("alice", Some(&token))["ok"], true);
    let v = probe("bob", Some(&token));
    assert_eq!(
        v["cause"], "the token is bound to another certificate: it was issued to alice, this connection presents bob",
        "{v}"
    );
    let v = probe("alice", None);
    assert!(v["cause"].as_str().unwrap_or("").starts_with("the route needs an access token (HTTP 401"), "{v}");
}

#[test]
fn missing_stale_foreign_and_forged_tokens_get_401_and_a_missing_scope_403() {
    let f = Fixture::start();
    let (status, challenge, _) = f.call("alice", None);
    assert_eq!((status.as_str(), challenge.as_str()), ("401", "Bearer"));
    for (kind, claims, why) in [
        ("good", vec!["exp=-3600"], "has expired"),
        ("good", vec!["aud=\"shipping\""], "another audience"),
        ("good", vec!["iss=\"https://evil.test\""], "another issuer"),
        ("good", vec!["cnf=null"], "not bound"),
        ("flipped", vec![], "signature does not verify"),
        ("none", vec![], "not a JWT this route accepts"),
        ("hs256", vec![], "key not in the route's JWKS"),
    ] {
        let token = f.token(kind, &claims);
        let (status, challenge, _) = f.call("alice", Some(&token));
        assert_eq!(status, "401", "{kind} {claims:?}");
        assert!(challenge.contains(why), "{kind} {claims:?}: {challenge}");
    }
    let token = f.token("good", &["scope=\"payments:read\""]);
    let (status, challenge, _) = f.call("alice", Some(&token));
    assert_eq!(status, "403");
    assert!(challenge.contains("error=\"insufficient_scope\""), "{challenge}");
}

/// `jwks = "https://..."`: a key rotated in is used at once, refreshes are
/// conditional, a flood of unknown kids costs at most two fetches, and a
/// JWKS server serving garbage or gone leaves the last good keys in use.
#[test]
fn a_jwks_url_is_refreshed_on_an_unknown_kid_and_its_last_good_keys_kept() {
    let mut f = Fixture::new(true);
    let jwks_port = f.jwks_server.as_ref().map(|(_, p)| *p).unwrap();
    let url = format!("https://localhost:{jwks_port}/jwks");
    let one = f.tokens_of("k1", 0).remove(0);
    let (status, _, body) = f.call("alice", Some(&one));
    assert_eq!(status, "200", "{body}\n{}", f.proxy.log());
    // Key 2 replaces key 1 at the server: a k2 token is accepted without a
    // reload, and the k1 token, verified and cached before, no longer is.
    std::fs::copy(f.ca.dir().join("jwks-k2.json"), f.ca.dir().join("served.json")).unwrap();
    let two = f.tokens_of("k2", 0).remove(0);
    let (status, _, body) = f.call("alice", Some(&two));
    assert_eq!(status, "200", "{body}\n{}", f.proxy.log());
    let (status, challenge, _) = f.call("alice", Some(&one));
    assert_eq!(status, "401");
    assert!(challenge.contains("key not in the route's JWKS"), "{challenge}");
    // The periodic refresh sends If-None-Match and gets 304s.
    let stats = poll(10, Duration::from_millis(100), || f.jwks_stats(), |s| s.2 >= 1);
    assert!(stats.1 >= 1 && stats.2 >= 1, "no conditional GET answered 304: {stats:?}");
    // 50 tokens naming random kids, in parallel: at most two fetches.
    let random = f.tokens_of("k2", 50);
    let before = f.jwks_stats().0;
    let mut segments = Vec::new();
    for t in &random {
        segments.push(format!(
            "url = \"https://localhost:{}/pay/now\"\ncacert = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n\
             header = \"Authorization: Bearer {t}\"\noutput = \"/dev/null\"\nsilent\nwrite-out = \"%{{http_code}}\\n\"\n",
            f.proxy.port,
            f.ca.path("ca.crt").display(),
            f.ca.path("alice.crt").display(),
            f.ca.path("alice.key").display(),
        ));
    }
    let file = f.ca.write("flood.curl", segments.join("next\n"));
    let flood = run(Command::new("curl").args(["--parallel", "--parallel-max", "50", "-K"]).arg(&file));
    let statuses: Vec<&str> = flood.stdout.lines().collect();
    assert_eq!(statuses, vec!["401"; 50], "{}", flood.stderr);
    let fetches = f.jwks_stats().0 - before;
    assert!(fetches <= 2, "{fetches} fetches for 50 unknown kids");
    // Garbage at the URL: a warning naming it, the k2 keys stay in use.
    std::fs::write(f.ca.dir().join("served.json"), "garbage").unwrap();
    let log = f.proxy.wait_log(&format!("JWKS {url}: expected value"), 10);
    assert!(log.contains("keeping the last good keys (1)"), "{log}");
    let fresh = f.tokens_of("k2", 0).remove(0);
    assert_eq!(f.call("alice", Some(&fresh)).0, "200");
    // The server gone: the same.
    drop(f.jwks_server.take());
    let gone = f.proxy.log().matches("keeping the last good keys").count();
    poll(
        10,
        Duration::from_millis(100),
        || f.proxy.log().matches("keeping the last good keys").count(),
        |n| *n > gone + 1,
    );
    let log = f.proxy.log();
    let last = log.lines().rev().find(|l| l.contains("keeping the last good keys")).unwrap_or_default();
    assert!(last.contains(&url) && !last.contains("expected value"), "{last}");
    let fresh = f.tokens_of("k2", 0).remove(0);
    assert_eq!(f.call("alice", Some(&fresh)).0, "200");
    let metrics = ambos_interop_tests::curl(&format!("http://127.0.0.1:{}/metrics", f.metrics), None, None, &[]);
    let failures = metrics
        .body
        .lines()
        .find_map(|l| l.strip_prefix("ambos_proxy_jwks_refresh_failures_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(failures >= 2.0, "{}", metrics.body);
}

/// Without its JWKS at start, the proxy does not start: one line naming the URL.
#[test]
fn a_proxy_whose_jwks_url_is_down_at_start_does_not_start() {
    let ca = TestCa::with_localhost(&[]);
    let url = format!("https://localhost:{}/jwks", free_port());
    let routes = format!(
        "[[route]]\npath = \"/pay/**\"\nallow = [\"any\"]\n\
         token = {{ issuer = \"i\", jwks = \"{url}\", audience = \"payments\" }}\n"
    );
    let config = Daemon::proxy_config(ca.dir(), &ProxyToml::http(free_port()).routes(&routes).to_string());
    let mut cmd = ca.cmd();
    cmd.args(["proxy", "--config"]).arg(&config).current_dir(ca.dir());
    run(&mut cmd).fails_with(2, &format!("route[0] /pay/**: cannot load its JWKS: JWKS {url}"));
}
