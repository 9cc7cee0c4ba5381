//! ambos as the whole RFC 8705 chain: `ambos serve` issues certificate-bound
//! access tokens (`ambos oauth allow`, `ambos oauth token`), outside
//! libraries check them (authlib: RFC 8414 metadata, the token endpoint as
//! an mTLS OAuth client, its RFC 6749 errors; jwcrypto: the signature against
//! the published JWKS; openssl: the certificate thumbprint in `cnf`), and
//! `ambos proxy` enforces them with the JWKS pulled from `ambos serve`:
//! alice gets through, bob replaying her token does not, nor does alice
//! with a token of her certificate before renewal; after a signing-key
//! rotation tokens of both keys are accepted.
use ambos_interop_tests::{poll, require, run, start_http_upstream, Daemon, ProxyToml, TestCa};
use std::process::Command;
use std::time::Duration;

const CHECK: &str = include_str!("../../scripts/oauth_issuer_check.py");

/// curl through the proxy as `who` with `token` (empty: none): (status, WWW-Authenticate).
fn call(ca: &TestCa, port: u16, who: &str, token: &str) -> (String, String) {
    let headers = ca.dir().join(format!("headers-{who}.txt"));
    let auth = format!("Authorization: Bearer {token}");
    let mut extra = vec!["-D", headers.to_str().unwrap()];
    if !token.is_empty() {
        extra.extend(["-H", auth.as_str()]);
    }
    let r = ca.curl(Some(who), &format!("https://localhost:{port}/pay/now"), &extra);
    let head = std::fs::read_to_string(&headers).unwrap_or_default();
    let challenge = head
        .lines()
        .find_map(|l| l.split_once(':').filter(|(n, _)| n.eq_ignore_ascii_case("www-authenticate")))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default();
    (r.status, challenge)
}

/// `openssl x509 -outform DER | sha256 | base64url` of a certificate file.
fn openssl_thumbprint(cert: &std::path::Path) -> String {
    let der = run(Command::new("openssl")
        .arg("x509")
        .arg("-in")
        .arg(cert)
        .args(["-outform", "DER", "-out"])
        .arg(cert.with_extension("der")));
    assert_eq!(der.code, 0, "{}", der.stderr);
    let pipeline = format!(
        "openssl dgst -sha256 -binary {} | openssl base64 -A | tr '+/' '-_' | tr -d '='",
        cert.with_extension("der").display()
    );
    let out = run(Command::new("sh").args(["-c", &pipeline]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    out.stdout.trim().to_string()
}

#[test]
fn ambos_serve_issues_bound_tokens_that_outside_libraries_and_the_proxy_accept() {
    for p in ["python3", "openssl", "curl"] {
        require(p);
    }
    if run(Command::new("python3").args(["-c", "import authlib, jwcrypto, requests"])).code != 0 {
        panic!("python3 authlib/jwcrypto/requests missing: scripts/install-deps.sh installs them");
    }
    let ca = TestCa::with_localhost(&[]);
    ca.issue("client", "alice", &["--spiffe", "spiffe://acme.test/alice"]);
    ca.issue("client", "bob", &["--spiffe", "spiffe://acme.test/bob"]);
    let serve = Daemon::spawn(
        ca.cmd().args(["serve", "--listen", "127.0.0.1:0", "--crl-validity", "1h", "--access-token-ttl", "10m"]),
        ca.dir().join("serve.log"),
    );
    let issuer = format!("https://localhost:{}", serve.port);
    ca.ambos(&["oauth", "allow", "spiffe://acme.test/alice", "--audience", "payments", "--scope", "pay:write"]).ok();
    ca.ambos(&["oauth", "allow", "spiffe://acme.test/alice", "--audience", "payments", "--scope", "pay:read"]).ok();
    let listed = ca.ambos(&["oauth", "list", "--json"]).ok().stdout;
    assert_eq!(serde_json::from_str::<serde_json::Value>(&listed).unwrap().as_array().unwrap().len(), 2, "{listed}");

    let root = ca.path("ca.crt");
    let token_of = |who: &str, scope: &str| {
        let [_, cert, key] = ca.client_files(who);
        let args = ["oauth", "token", "--ca-url", &issuer, "--root", root.to_str().unwrap(), "--cert"];
        let mut cmd = ca.cmd();
        cmd.args(args).arg(cert).arg("--key").arg(key).args(["--audience", "payments", "--scope", scope]);
        let r = run(&mut cmd);
        (r.code, r.stdout.trim().to_string(), r.stderr)
    };
    let (code, alice_token, err) = token_of("alice", "pay:write");
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = token_of("bob", "pay:write");
    assert_eq!(code, 1, "bob has no grant: {err}");
    assert!(err.contains("unauthorized_client"), "{err}");

    // Outside libraries: authlib (metadata, client, errors), jwcrypto (signature).
    let script = ca.write("check.py", CHECK);
    let [_, cert, key] = ca.client_files("alice");
    let [_, bob_cert, bob_key] = ca.client_files("bob");
    let out = run(Command::new("python3")
        .arg(script)
        .arg(&issuer)
        .arg(&root)
        .args([&cert, &key, &bob_cert, &bob_key])
        .arg(&alice_token));
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let v: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(v["cli"]["sub"], "spiffe://acme.test/alice");
    assert_eq!((v["cli"]["scope"].as_str(), v["authlib"]["scope"].as_str()), (Some("pay:write"), Some("pay:read")));
    let thumbprint = openssl_thumbprint(&cert);
    assert_eq!(v["cli"]["cnf"]["x5t#S256"], thumbprint.as_str());
    assert_eq!(v["authlib"]["cnf"]["x5t#S256"], thumbprint.as_str());
    let errors = &v["errors"];
    assert_eq!(errors["scope"], "invalid_scope", "{v}");
    assert_eq!(errors["audience"], "invalid_target", "{v}");
    assert_eq!(errors["other_client"], "unauthorized_client", "{v}");
    assert_eq!(errors["no_certificate"], "invalid_client", "{v}");

    // The proxy, with the JWKS pulled from ambos serve.
    let upstream = start_http_upstream();
    let route = format!(
        "[[route]]\npath = \"/pay/**\"\nallow = [\"any\"]\ntoken = {{ issuer = \"{issuer}\", jwks = \"{issuer}/v1/oauth/jwks\", audience = \"payments\", scopes = [\"pay:write\"] }}\n"
    );
    let proxy = Daemon::proxy(ca.dir(), &ProxyToml::http(upstream).routes(&route).to_string(), &[]);
    assert_eq!(call(&ca, proxy.port, "alice", &alice_token).0, "200");
    let (status, why) = call(&ca, proxy.port, "bob", &alice_token);
    assert_eq!(status, "401");
    assert!(why.contains("bound to another certificate"), "{why}");
    // The same token tampered with: one signature byte flipped, or `alg: none`.
    let parts: Vec<&str> = alice_token.split('.').collect();
    let mut sig = parts[2].as_bytes().to_vec();
    sig[10] = if sig[10] == b'A' { b'B' } else { b'A' };
    let flipped = format!("{}.{}.{}", parts[0], parts[1], String::from_utf8(sig).unwrap());
    let none = {
        use base64::Engine;
        let header = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"at+jwt"}"#);
        format!("{header}.{}.", parts[1])
    };
    for (token, reason) in [(flipped.as_str(), "signature"), (none.as_str(), "invalid_token")] {
        let (status, why) = call(&ca, proxy.port, "alice", token);
        assert_eq!(status, "401", "{reason}: {why}");
        assert!(why.contains(reason), "{why}");
    }
    // No token at all: RFC 6750's bare challenge.
    assert_eq!(call(&ca, proxy.port, "alice", ""), ("401".to_string(), "Bearer".to_string()));
    // A token ambos serve issued for another audience.
    ca.ambos(&["oauth", "allow", "spiffe://acme.test/alice", "--audience", "billing", "--scope", "pay:write"]).ok();
    let mut cmd = ca.cmd();
    cmd.args(["oauth", "token", "--ca-url", &issuer, "--root", root.to_str().unwrap(), "--audience", "billing"]);
    let billing = run(cmd.arg("--cert").arg(&cert).arg("--key").arg(&key)).stdout.trim().to_string();
    let (status, why) = call(&ca, proxy.port, "alice", &billing);
    assert_eq!(status, "401");
    assert!(why.contains("audience"), "{why}");

    // Alice renews her certificate: her old token was bound to the old one.
    let renew = ca.ambos(&[
        "renew",
        "--ca-url",
        &issuer,
        "--root",
        root.to_str().unwrap(),
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ]);
    renew.ok();
    let (status, why) = call(&ca, proxy.port, "alice", &alice_token);
    assert_eq!(status, "401", "a token of the certificate before renewal");
    assert!(why.contains("bound to another certificate"), "{why}");
    let (_, renewed_token, _) = token_of("alice", "pay:write");
    assert_eq!(call(&ca, proxy.port, "alice", &renewed_token).0, "200");

    // Key rotation: ambos serve signs with the new key within seconds, both
    // keys are published, and the proxy takes the new kid without a reload.
    let kid_of = |t: &str| {
        use base64::Engine;
        let header = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(t.split('.').next().unwrap()).unwrap();
        serde_json::from_slice::<serde_json::Value>(&header).unwrap()["kid"].as_str().unwrap().to_string()
    };
    ca.ambos(&["oauth", "rotate-key"]).ok();
    let rotated = poll(
        15,
        Duration::from_millis(300),
        || token_of("alice", "pay:write").1,
        |t| !t.is_empty() && kid_of(t) != kid_of(&renewed_token),
    );
    assert_ne!(kid_of(&rotated), kid_of(&renewed_token), "ambos serve still signs with the old key");
    assert_eq!(call(&ca, proxy.port, "alice", &rotated).0, "200", "the new key's token");
    assert_eq!(call(&ca, proxy.port, "alice", &renewed_token).0, "200", "the old key's token, still valid");
    let log = serve.log();
    assert!(log.contains("access token issued to spiffe://acme.test/alice"), "{log}");
    assert!(log.contains("access token refused"), "{log}");
}
