//! Several `ambos serve` nodes on one PostgreSQL database (the test
//! cluster of scripts/test.sh): a token presented to two nodes at the same
//! moment buys exactly one certificate, every serial is unique, and every
//! certificate a client got is in the store once; a revocation through one
//! node is in the other's CRL within seconds, with a higher number; a node
//! whose database goes away answers 503 and recovers by itself.
use ambos_interop_tests::{free_port, openssl_csr, poll, run, start_http_upstream, Daemon, ProxyToml, TestCa};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Barrier};
use std::time::Duration;

/// `ambos serve` on 127.0.0.1:0 over the CA's store.
fn node(ca: &TestCa, name: &str) -> Daemon {
    Daemon::spawn(
        // Every client here is 127.0.0.1: no throttling of the refused half.
        ca.cmd().args(["serve", "--listen", "127.0.0.1:0", "--crl-validity", "1h", "--token-failure-limit", "100000"]),
        ca.dir().join(format!("serve-{name}.log")),
    )
}

#[test]
fn two_nodes_on_one_database_sell_each_token_once() {
    let Some(ca) = TestCa::on_postgres() else { return };
    ca.ambos(&["init", "--no-passphrase"]).ok();
    std::fs::create_dir_all(ca.certs()).unwrap();
    std::fs::copy(ca.data().join("root.crt"), ca.path("ca.crt")).unwrap();
    const TOKENS: usize = 200;
    let count = TOKENS.to_string();
    let tokens: Vec<String> =
        ca.ambos(&["token", "create", "dev", "--count", &count]).ok().stdout.lines().map(str::to_string).collect();
    assert_eq!(tokens.len(), TOKENS);
    let (a, b) = (node(&ca, "a"), node(&ca, "b"));
    let (_, csr) = openssl_csr(ca.dir(), "dev", "/CN=dev", &[]);
    let csr = std::fs::read_to_string(csr).unwrap();
    // Each token to both nodes at once, eight tokens at a time.
    let ca = Arc::new(ca);
    let outcomes: Vec<(String, String)> = std::thread::scope(|scope| {
        let mut all = Vec::new();
        for chunk in tokens.chunks(TOKENS / 8) {
            let (ca, csr, ports) = (ca.clone(), csr.clone(), [a.port, b.port]);
            all.push(scope.spawn(move || {
                let mut seen = Vec::new();
                for token in chunk {
                    let barrier = Arc::new(Barrier::new(2));
                    let body = serde_json::json!({"token": token, "csr": csr}).to_string();
                    let pair: Vec<(String, String)> = std::thread::scope(|inner| {
                        let hs: Vec<_> = ports
                            .iter()
                            .map(|port| {
                                let (ca, barrier, body) = (ca.clone(), barrier.clone(), body.clone());
                                inner.spawn(move || {
                                    let url = format!("https://localhost:{port}/v1/enroll");
                                    let extra = ["-X", "POST", "-H", "Content-Type: application/json", "-d", &body];
                                    barrier.wait();
                                    let r = ca.curl(None, &url, &extra);
                                    (r.status, r.body)
                                })
                            })
                            .collect();
                        hs.into_iter().map(|h| h.join().unwrap()).collect()
                    });
                    seen.extend(pair);
                }
                seen
            }));
        }
        all.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let created: Vec<&String> = outcomes.iter().filter(|(s, _)| s == "201").map(|(_, body)| body).collect();
    let refused = outcomes.iter().filter(|(s, body)| s == "409" && body.contains("token already used")).count();
    let other: Vec<&(String, String)> = outcomes.iter().filter(|(s, _)| s != "201" && s != "409").collect();
    assert!(other.is_empty(), "{} unexpected answers, first: {:?}", other.len(), other.first());
    assert_eq!((created.len(), refused), (TOKENS, TOKENS), "one certificate and one refusal per token");
    let serials: HashSet<String> = created
        .iter()
        .map(|body| serde_json::from_str::<serde_json::Value>(body).unwrap()["serial"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(serials.len(), TOKENS, "every serial unique");
    let listed: Vec<serde_json::Value> = serde_json::from_str(&ca.ambos(&["list", "--json"]).ok().stdout).unwrap();
    let stored: Vec<&str> =
        listed.iter().filter(|c| c["name"] == "dev").map(|c| c["serial"].as_str().unwrap()).collect();
    assert_eq!(stored.len(), TOKENS, "every certificate a client holds is stored, once");
    assert!(stored.iter().all(|s| serials.contains(*s)), "the store holds what the clients got");
    // Both nodes did some of the work.
    let (la, lb) = (a.log(), b.log());
    assert!(!la.is_empty() && !lb.is_empty());
}

/// The intermediate's CRL as node `port` serves it: (CRL number, its
/// revoked entries in upper case).
fn served_crl(ca: &TestCa, port: u16) -> (u64, String) {
    let r = ca.curl(None, &format!("https://localhost:{port}/v1/crl"), &["-H", "Accept: application/x-pem-file"]);
    assert_eq!(r.status, "200", "{}", r.stderr);
    let (number, entries) = crl_entries(ca, &r.body);
    (number, entries.to_uppercase())
}

#[test]
fn a_revocation_through_one_node_is_in_the_other_nodes_crl_with_a_higher_number() {
    let Some(ca) = TestCa::on_postgres() else { return };
    ca.ambos(&["init", "--no-passphrase"]).ok();
    std::fs::create_dir_all(ca.certs()).unwrap();
    std::fs::copy(ca.data().join("root.crt"), ca.path("ca.crt")).unwrap();
    ca.issue("client", "admin", &["--admin"]);
    ca.issue("client", "web", &[]);
    let serial = serde_json::from_str::<serde_json::Value>(&ca.ambos(&["list", "--json"]).ok().stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "web")
        .unwrap()["serial"]
        .as_str()
        .unwrap()
        .to_string();
    let (a, b) = (node(&ca, "a"), node(&ca, "b"));
    let (before, _) = served_crl(&ca, b.port);
    let body = format!("{{\"serial\":\"{serial}\",\"reason\":\"key-compromise\"}}");
    let r = ca.curl(
        Some("admin"),
        &format!("https://localhost:{}/v1/revoke", a.port),
        &["-X", "POST", "-H", "Content-Type: application/json", "-d", &body],
    );
    assert_eq!(r.status, "200", "{}", r.body);
    // Node B re-signs within its 2 s look at the store.
    let (after, text) =
        poll(10, Duration::from_millis(200), || served_crl(&ca, b.port), |(_, t)| t.contains(&serial.to_uppercase()));
    assert!(text.contains(&serial.to_uppercase()), "node B's CRL lacks {serial}: {text}");
    assert!(after > before, "CRL number {after} after {before}");
    assert!(b.log().contains("re-signing the CRL"), "{}", b.log());
    // A proxy whose crl_url lists a node that is down first, then node B:
    // it loads B's CRL and refuses the revoked client.
    ca.issue("server", "localhost", &["--san", "ip:127.0.0.1"]);
    let dead = free_port();
    let config = ProxyToml::http(start_http_upstream())
        .tls(&format!("crl_url = \"https://localhost:{dead}/v1/crl, https://localhost:{}/v1/crl\"", b.port))
        .to_string();
    let proxy = Daemon::proxy(ca.dir(), &config, &[]);
    let url = format!("https://localhost:{}/", proxy.port);
    assert_eq!(ca.curl(Some("admin"), &url, &[]).status, "200", "{}", proxy.log());
    let refused = ca.curl(Some("web"), &url, &[]);
    assert_ne!(refused.status, "200", "a revoked client got through");
    assert!(proxy.log().contains("trying the next CA node"), "{}", proxy.log());
}

#[test]
fn a_node_answers_503_while_its_database_is_down_and_recovers_by_itself() {
    if TestCa::on_postgres().is_none() {
        return;
    }
    // A cluster of its own: the shared one must not restart under other tests.
    let pg = tempfile::tempdir().unwrap();
    let cluster = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/pg-cluster.sh");
    let pg_dir = pg.path().join("pg");
    let started = run(Command::new(&cluster).arg("start").arg(&pg_dir));
    assert_eq!(started.code, 0, "{}", started.stderr);
    struct Stop(PathBuf, PathBuf);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = Command::new(&self.0).arg("stop").arg(&self.1).status();
        }
    }
    let _stop = Stop(cluster.clone(), pg_dir.clone());
    let mut ca = TestCa::empty();
    ca.store = Some(started.stdout.trim().to_string());
    ca.ambos(&["init", "--no-passphrase"]).ok();
    std::fs::create_dir_all(ca.certs()).unwrap();
    std::fs::copy(ca.data().join("root.crt"), ca.path("ca.crt")).unwrap();
    let n = node(&ca, "a");
    let health = || ca.curl(None, &format!("https://localhost:{}/healthz", n.port), &[]);
    assert_eq!(health().status, "200");
    let down = run(Command::new(&cluster).arg("down").arg(&pg_dir));
    assert_eq!(down.code, 0, "{}", down.stderr);
    let r = poll(10, Duration::from_millis(200), health, |r| r.status == "503");
    assert_eq!(r.status, "503", "{}", r.body);
    assert!(r.body.contains("store unavailable"), "{}", r.body);
    let up = run(Command::new(&cluster).arg("up").arg(&pg_dir));
    assert_eq!(up.code, 0, "{}", up.stderr);
    let r = poll(10, Duration::from_millis(200), health, |r| r.status == "200");
    assert_eq!(r.status, "200", "no recovery: {}", r.body);
    // And it works again: a token is sold.
    let token = ca.ambos(&["token", "create", "dev"]).ok().stdout.trim().to_string();
    let (_, csr) = openssl_csr(ca.dir(), "dev", "/CN=dev", &[]);
    let body = serde_json::json!({"token": token, "csr": std::fs::read_to_string(csr).unwrap()}).to_string();
    let r = ca.curl(
        None,
        &format!("https://localhost:{}/v1/enroll", n.port),
        &["-X", "POST", "-H", "Content-Type: application/json", "-d", &body],
    );
    assert_eq!(r.status, "201", "{}", r.body);
}

/// `openssl crl -text` of a PEM CRL: (CRL number, the revoked entries).
fn crl_entries(ca: &TestCa, pem: &str) -> (u64, String) {
    let file = ca.write("crl-check.pem", pem);
    let text = run(Command::new("openssl").args(["crl", "-noout", "-text", "-in"]).arg(&file)).stdout;
    let number = text
        .lines()
        .skip_while(|l| !l.contains("X509v3 CRL Number"))
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("no CRL number: {text}"));
    let entries = text.split("Revoked Certificates:").nth(1).unwrap_or_default();
    (number, entries.split("Signature Algorithm").next().unwrap_or_default().to_string())
}

#[test]
fn store_copy_moves_a_sqlite_ca_to_postgres_with_the_same_serials_revocations_and_crl_numbers() {
    let Some(target) = TestCa::on_postgres() else { return };
    let url = target.store.clone().unwrap();
    let mut ca = TestCa::empty();
    ca.store = None;
    ca.ambos(&["init", "--no-passphrase"]).ok();
    const CERTS: usize = 2000;
    let csv: String = (0..CERTS).map(|i| format!("dev{i},client,\n")).collect();
    let batch = ca.write("batch.csv", csv);
    ca.ambos(&["issue", "client", "--batch", batch.to_str().unwrap(), "--out", ca.certs().to_str().unwrap()]).ok();
    for i in (0..CERTS).step_by(40) {
        ca.ambos(&["revoke", &format!("dev{i}"), "--reason", "key-compromise"]).ok();
    }
    ca.ambos(&["token", "create", "later"]).ok();
    let (number, revoked) = crl_entries(&ca, &ca.ambos(&["crl"]).ok().stdout);
    let listed = ca.ambos(&["list", "--json"]).ok().stdout;
    let from = format!("sqlite:{}", ca.data().display());
    let out = ca.ambos(&["store", "copy", "--from", &from, "--to", &url]).ok().stdout;
    assert!(out.contains(&format!("copied {} certificates ({} revoked)", CERTS + 1, CERTS / 40)), "{out}");
    // The same CA, read through PostgreSQL.
    let on_pg = |args: &[&str]| {
        let mut cmd = ca.cmd();
        cmd.env("AMBOS_STORE", &url).args(args);
        run(&mut cmd)
    };
    assert_eq!(on_pg(&["list", "--json"]).stdout, listed, "ambos list --json identical");
    let (after, revoked_after) = crl_entries(&ca, &on_pg(&["crl"]).stdout);
    assert_eq!(revoked_after, revoked, "the same revocations, dates and reasons");
    assert_eq!(after, number + 1, "the CRL numbers go on");
    // A store that holds a CA is never written over.
    let again = ca.ambos(&["store", "copy", "--from", &from, "--to", &url]);
    assert_eq!(again.code, 2, "{}", again.stderr);
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);
}

#[test]
fn clients_fail_over_when_a_node_is_killed_and_nothing_is_lost_or_doubled() {
    let Some(ca) = TestCa::on_postgres() else { return };
    ca.ambos(&["init", "--no-passphrase"]).ok();
    std::fs::create_dir_all(ca.certs()).unwrap();
    std::fs::copy(ca.data().join("root.crt"), ca.path("ca.crt")).unwrap();
    let tokens: Vec<String> =
        ca.ambos(&["token", "create", "dev", "--count", "40"]).ok().stdout.lines().map(str::to_string).collect();
    let mut a = node(&ca, "a");
    let a_port = a.port;
    let b = node(&ca, "b");
    // Node A first in every client's list; B when A cannot be reached.
    let urls = format!("https://127.0.0.1:{a_port},https://127.0.0.1:{}", b.port);
    let enroll = |i: usize| {
        let mut cmd = ca.cmd();
        cmd.args(["enroll", "--ca-url", &urls, "--root"]).arg(ca.path("ca.crt"));
        cmd.args(["--token", &tokens[i], "--out"]).arg(ca.dir().join(format!("out{i}")));
        run(&mut cmd)
    };
    for i in 0..10 {
        enroll(i).ok();
    }
    a.signal("-KILL");
    let _ = a.child.0.wait();
    for i in 10..25 {
        enroll(i).ok();
    }
    // A comes back on its port; clients use it again.
    drop(a);
    let a = Daemon::spawn(
        ca.cmd().args(["serve", "--listen", &format!("127.0.0.1:{a_port}"), "--crl-validity", "1h"]),
        ca.dir().join("serve-a-again.log"),
    );
    for i in 25..40 {
        enroll(i).ok();
    }
    assert!(a.log().contains("CA API listening"), "{}", a.log());
    let listed: Vec<serde_json::Value> = serde_json::from_str(&ca.ambos(&["list", "--json"]).ok().stdout).unwrap();
    let stored: HashSet<String> = listed
        .iter()
        .filter(|c| c["name"].as_str().is_some_and(|n| n.starts_with("dev")))
        .map(|c| c["serial"].to_string())
        .collect();
    assert_eq!(stored.len(), 40, "one certificate per enrollment, none lost, none doubled");
    for i in 0..40 {
        let out = ca.ambos(&["inspect", ca.dir().join(format!("out{i}/dev.crt")).to_str().unwrap(), "--json"]).ok();
        let serial =
            serde_json::from_str::<serde_json::Value>(&out.stdout).unwrap()["certificates"][0]["serial"].to_string();
        assert!(stored.contains(&serial), "dev{i}'s certificate {serial} is in the store");
    }
}

#[test]
fn tls_to_the_database_is_verified_as_verify_full_and_a_wrong_ca_is_refused() {
    if TestCa::on_postgres().is_none() {
        return;
    }
    // The database's certificate from one CA, a decoy CA for the refusal.
    let pki = TestCa::with_localhost(&[]);
    let decoy = TestCa::new(&["--name", "Decoy"]);
    decoy.issue("server", "localhost", &["--san", "ip:127.0.0.1"]);
    let pg = tempfile::tempdir().unwrap();
    let pg_dir = pg.path().join("pg");
    let cluster = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/pg-cluster.sh");
    let started = run(Command::new(&cluster)
        .arg("start")
        .arg(&pg_dir)
        .env("PG_TLS_CERT", pki.path("localhost.crt"))
        .env("PG_TLS_KEY", pki.path("localhost.key")));
    assert_eq!(started.code, 0, "{}", started.stderr);
    struct Stop(PathBuf, PathBuf);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = Command::new(&self.0).arg("stop").arg(&self.1).status();
        }
    }
    let _stop = Stop(cluster, pg_dir);
    let plain = started.stdout.trim().to_string();
    let base = plain.trim_end_matches("?sslmode=disable").replace("127.0.0.1", "localhost");
    let with = |query: &str| {
        let mut ca = TestCa::empty();
        ca.store = Some(format!("{base}?{query}"));
        ca
    };
    let ca_file = pki.path("ca.crt").display().to_string();
    // verify-full with the right CA: a CA in a database reached over TLS.
    let good = with(&format!("sslmode=verify-full&sslrootcert={ca_file}"));
    good.ambos(&["init", "--no-passphrase"]).ok();
    good.ambos(&["list"]).ok();
    // The server's certificate from another CA: refused, naming why.
    let wrong = with(&format!("sslmode=verify-full&sslrootcert={}", decoy.path("ca.crt").display()));
    let r = wrong.ambos(&["list"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("cannot connect to the database") && r.stderr.to_lowercase().contains("certificate"),
        "{}",
        r.stderr
    );
    // TLS asked for without a CA to check the server with: refused before connecting.
    let r = with("sslmode=require").ambos(&["list"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("sslrootcert"), "{}", r.stderr);
}
