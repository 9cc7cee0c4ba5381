//! Certificate-bound access tokens (RFC 8705) at `ambos proxy`: tokens
//! minted by an independent JOSE library (Python jwcrypto, its own key,
//! the JWKS as a file) bound to alice's certificate. Alice gets through;
//! bob replaying her token, missing, expired, foreign, forged, `alg: none`
//! and HMAC-with-the-public-key tokens get 401 with the reason in
//! `WWW-Authenticate` and the audit line; a missing scope gets 403; the
//! upstream never sees the token.
use ambos_interop_tests::{free_port, require, run, wait_for_port, ChildGuard, Daemon, ProxyToml, TestCa};
use std::process::{Command, Stdio};

const MINT: &str = include_str!("../../scripts/proxy_token.py");
const WSGI_UPSTREAM: &str = include_str!("../../scripts/header_attacks_wsgi_upstream.py");

struct Fixture {
    ca: TestCa,
    _upstream: ChildGuard,
    proxy: Daemon,
}

impl Fixture {
    fn start() -> Fixture {
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
        let routes = "[[route]]\npath = \"/pay/**\"\nallow = [\"any\"]\n\
                      token = { issuer = \"https://ca.test\", jwks = \"jwks.json\", audience = \"payments\", scopes = [\"payments:write\"] }\n\n\
                      [[route]]\npath = \"/other\"\nallow = [\"any\"]\n";
        let config = ProxyToml::http(port).routes(routes).section("[audit]\npath = \"audit.jsonl\"").to_string();
        let proxy = Daemon::proxy(ca.dir(), &config, &[]);
        Fixture { ca, _upstream: ChildGuard(child), proxy }
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
    let audit = std::fs::read_to_string(f.ca.dir().join("audit.jsonl")).unwrap();
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
