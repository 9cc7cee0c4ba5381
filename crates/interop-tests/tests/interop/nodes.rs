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
    // Two holders of each token, each with a key of its own (a stolen
    // token raced against its owner): a CSR that is not a retry of the
    // winner's buys nothing.
    let csrs: Vec<String> = ["a", "b"]
        .iter()
        .map(|k| std::fs::read_to_string(openssl_csr(ca.dir(), &format!("dev-{k}"), "/CN=dev", &[]).1).unwrap())
        .collect();
    // Each token to both nodes at once, eight tokens at a time.
    let ca = Arc::new(ca);
    let outcomes: Vec<(String, String)> = std::thread::scope(|scope| {
        let mut all = Vec::new();
        for chunk in tokens.chunks(TOKENS / 8) {
            let (ca, csrs, ports) = (ca.clone(), csrs.clone(), [a.port, b.port]);
            all.push(scope.spawn(move || {
                let mut seen = Vec::new();
                for token in chunk {
                    let barrier = Arc::new(Barrier::new(2));
                    let pair: Vec<(String, String)> = std::thread::scope(|inner| {
                        let hs: Vec<_> = ports
                            .iter()
                            .zip(&csrs)
                            .map(|(port, csr)| {
                                let body = serde_json::json!({"token": token, "csr": csr}).to_string();
                                let (ca, barrier) = (ca.clone(), barrier.clone());
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

/// A PostgreSQL cluster of a test's own (the shared one must not restart
/// under other tests), stopped when dropped.
struct Cluster {
    script: PathBuf,
    dir: PathBuf,
    url: String,
    _tmp: tempfile::TempDir,
}

impl Cluster {
    /// `None` without the test server (as [`TestCa::on_postgres`]).
    fn start() -> Option<Cluster> {
        TestCa::on_postgres()?;
        let tmp = tempfile::tempdir().unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/pg-cluster.sh");
        let dir = tmp.path().join("pg");
        let started = run(Command::new(&script).arg("start").arg(&dir));
        assert_eq!(started.code, 0, "{}", started.stderr);
        Some(Cluster { script, dir, url: started.stdout.trim().to_string(), _tmp: tmp })
    }

    /// `down` (the server stopped, its data kept) or `up` (started again on its port).
    fn set(&self, how: &str) {
        let r = run(Command::new(&self.script).arg(how).arg(&self.dir));
        assert_eq!(r.code, 0, "pg-cluster.sh {how}: {}", r.stderr);
    }

    /// A CA with no CA yet in this cluster's database.
    fn ca(&self) -> TestCa {
        let mut ca = TestCa::empty();
        ca.store = Some(self.url.clone());
        ca
    }

    /// One number from psql.
    fn count(&self, sql: &str) -> usize {
        let r = run(Command::new("psql").arg(&self.url).args(["-tAc", sql]));
        r.stdout.trim().parse().unwrap_or(0)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(&self.script).arg("stop").arg(&self.dir).status();
    }
}

#[test]
fn a_node_answers_503_while_its_database_is_down_and_recovers_by_itself() {
    let Some(pg) = Cluster::start() else { return };
    let ca = pg.ca();
    ca.ambos(&["init", "--no-passphrase"]).ok();
    std::fs::create_dir_all(ca.certs()).unwrap();
    std::fs::copy(ca.data().join("root.crt"), ca.path("ca.crt")).unwrap();
    let n = node(&ca, "a");
    let health = || ca.curl(None, &format!("https://localhost:{}/healthz", n.port), &[]);
    assert_eq!(health().status, "200");
    pg.set("down");
    let r = poll(10, Duration::from_millis(200), health, |r| r.status == "503");
    assert_eq!(r.status, "503", "{}", r.body);
    assert!(r.body.contains("store unavailable"), "{}", r.body);
    // An enrollment meanwhile: 503 too, the token untouched.
    let token = "ambos_no-database-to-ask";
    let enroll = |body: &str| {
        ca.curl(
            None,
            &format!("https://localhost:{}/v1/enroll", n.port),
            &["-X", "POST", "-H", "Content-Type: application/json", "-d", body],
        )
    };
    let (_, csr) = openssl_csr(ca.dir(), "dev", "/CN=dev", &[]);
    let csr = std::fs::read_to_string(csr).unwrap();
    let r = enroll(&serde_json::json!({"token": token, "csr": csr}).to_string());
    assert_eq!((r.status.as_str(), r.body.contains("store unavailable")), ("503", true), "{}", r.body);
    pg.set("up");
    let r = poll(10, Duration::from_millis(200), health, |r| r.status == "200");
    assert_eq!(r.status, "200", "no recovery: {}", r.body);
    // And it works again: a token is sold.
    let token = ca.ambos(&["token", "create", "dev"]).ok().stdout.trim().to_string();
    let r = enroll(&serde_json::json!({"token": token, "csr": csr}).to_string());
    assert_eq!(r.status, "201", "{}", r.body);
}

/// The issue's whole scenario in one run: three nodes on one database take
/// 20,000 enrollments from concurrent clients that fail over between them
/// (`ambos bench enroll` with the three nodes), while one node is killed
/// with SIGKILL and started again, 200 other tokens are each presented to
/// two nodes at the same moment, and the database is stopped and started
/// again. Every token buys exactly one certificate, every client holds the
/// certificate the store has for it, nothing is lost or doubled.
#[test]
fn three_nodes_take_20000_enrollments_through_a_sigkill_and_a_database_restart() {
    let Some(pg) = Cluster::start() else { return };
    let ca = pg.ca();
    ca.ambos(&["init", "--no-passphrase"]).ok();
    std::fs::create_dir_all(ca.certs()).unwrap();
    std::fs::copy(ca.data().join("root.crt"), ca.path("ca.crt")).unwrap();
    const N: usize = 20_000;
    const RACED: usize = 200;
    let tokens = ca.ambos(&["token", "create", "dev", "--count", &N.to_string(), "--ttl", "1h"]).ok().stdout;
    let tokens_file = ca.write("tokens.txt", &tokens);
    let raced: Vec<String> = ca
        .ambos(&["token", "create", "race", "--count", &RACED.to_string()])
        .ok()
        .stdout
        .lines()
        .map(str::to_string)
        .collect();
    let mut nodes = [node(&ca, "a"), node(&ca, "b"), node(&ca, "c")];
    let ports: Vec<u16> = nodes.iter().map(|n| n.port).collect();
    let targets: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let serials_file = ca.path("serials.txt");
    let mut bench = ca.cmd();
    bench.args(["bench", "enroll", "--target", &targets.join(","), "--tokens"]).arg(&tokens_file);
    bench.args(["--ca"]).arg(ca.path("ca.crt")).args(["--count", &N.to_string(), "--concurrency", "12", "--json"]);
    bench.arg("--serials").arg(&serials_file);
    let out = ca.path("bench.json");
    let mut clients = ambos_interop_tests::ChildGuard(
        bench.stdout(std::fs::File::create(&out).unwrap()).stderr(std::process::Stdio::piped()).spawn().unwrap(),
    );
    let stored = || pg.count("SELECT count(*) FROM certificate WHERE name = 'dev'");
    let wait_for = |n: usize| {
        let got = poll(300, Duration::from_millis(250), stored, |&c| c >= n);
        assert!(got >= n, "stuck at {got} certificates");
    };
    // Node A killed mid-run, then started again on its port.
    wait_for(N / 5);
    nodes[0].signal("-KILL");
    let _ = nodes[0].child.0.wait();
    std::thread::sleep(Duration::from_millis(500));
    nodes[0] = Daemon::spawn(
        ca.cmd().args(["serve", "--listen", &targets[0], "--crl-validity", "1h", "--token-failure-limit", "100000"]),
        ca.dir().join("serve-a-again.log"),
    );
    // 200 tokens, each to nodes B and C at the same moment, while the clients run.
    wait_for(2 * N / 5);
    // Even tokens: two keys (one must lose); odd tokens: the same request
    // twice (a client retrying on another node: both answers carry the one certificate).
    let csrs: Vec<String> = ["a", "b"]
        .iter()
        .map(|k| std::fs::read_to_string(openssl_csr(ca.dir(), &format!("race-{k}"), "/CN=race", &[]).1).unwrap())
        .collect();
    let race: Vec<(usize, String, String)> = std::thread::scope(|scope| {
        let hs: Vec<_> = (0..4)
            .map(|part| {
                let (ca, csrs, ports, raced) = (&ca, &csrs, [ports[1], ports[2]], &raced);
                scope.spawn(move || {
                    let mut seen = Vec::new();
                    for (i, token) in raced.iter().enumerate().skip(part).step_by(4) {
                        let barrier = Barrier::new(2);
                        let pair: Vec<_> = std::thread::scope(|inner| {
                            let hs: Vec<_> = ports
                                .iter()
                                .enumerate()
                                .map(|(side, port)| {
                                    let csr = &csrs[if i % 2 == 0 { side } else { 0 }];
                                    let body = serde_json::json!({"token": token, "csr": csr}).to_string();
                                    let barrier = &barrier;
                                    inner.spawn(move || {
                                        let url = format!("https://localhost:{port}/v1/enroll");
                                        barrier.wait();
                                        let extra = ["-X", "POST", "-H", "Content-Type: application/json", "-d", &body];
                                        let r = ca.curl(None, &url, &extra);
                                        (i, r.status, r.body)
                                    })
                                })
                                .collect();
                            hs.into_iter().map(|h| h.join().unwrap()).collect()
                        });
                        seen.extend(pair);
                    }
                    seen
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    // The database stopped and started again: the nodes answer 503 meanwhile and recover by themselves.
    wait_for(3 * N / 5);
    pg.set("down");
    let health = |port: u16| ca.curl(None, &format!("https://localhost:{port}/healthz"), &[]).status;
    let r = poll(15, Duration::from_millis(250), || health(ports[1]), |s| s == "503");
    assert_eq!(r, "503", "node B while the database is down");
    std::thread::sleep(Duration::from_secs(2));
    pg.set("up");
    for (i, &port) in ports.iter().enumerate() {
        let r = poll(30, Duration::from_millis(250), || health(port), |s| s == "200");
        assert_eq!(r, "200", "node {i} did not recover: {}", nodes[i].log());
    }
    let status = poll(400, Duration::from_millis(250), || clients.0.try_wait().unwrap(), Option::is_some);
    let status = status.expect("the clients did not finish within 400 s");
    let mut stderr = String::new();
    std::io::Read::read_to_string(clients.0.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "ambos bench enroll: {stderr}");
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!((report["ops"].as_u64(), report["errors"].as_u64()), (Some(N as u64), Some(0)), "{report} {stderr}");
    assert!(report["resent"].as_u64().unwrap() > 0, "no client had to fail over: {report}");
    let again = pg.count("SELECT count(*) FROM audit WHERE detail LIKE 'retried%'");
    eprintln!("clients: {report}; {again} answers were a certificate already bought, sent again");

    // Every token bought one certificate; what the clients hold is what the store has, once each.
    let held: Vec<String> = std::fs::read_to_string(&serials_file).unwrap().lines().map(str::to_string).collect();
    let held_set: HashSet<&String> = held.iter().collect();
    assert_eq!((held.len(), held_set.len()), (N, N), "one certificate per client, none twice");
    let listed: Vec<serde_json::Value> = serde_json::from_str(&ca.ambos(&["list", "--json"]).ok().stdout).unwrap();
    let in_store = |name: &str| -> Vec<String> {
        listed.iter().filter(|c| c["name"] == name).map(|c| c["serial"].as_str().unwrap().to_string()).collect()
    };
    let dev = in_store("dev");
    assert_eq!(dev.len(), N, "the store has exactly one certificate per token");
    assert!(dev.iter().all(|s| held_set.contains(s)), "a stored certificate no client holds");
    assert_eq!(pg.count("SELECT count(*) FROM token WHERE spent_at IS NULL AND name = 'dev'"), 0);
    // The raced tokens: one certificate each; with two keys the other
    // request refused, with one the same certificate twice.
    let serial =
        |b: &str| serde_json::from_str::<serde_json::Value>(b).unwrap()["serial"].as_str().unwrap().to_string();
    let mut bought: Vec<Vec<String>> = vec![Vec::new(); RACED];
    for (i, status, body) in &race {
        match (i % 2, status.as_str()) {
            (_, "201") | (1, "200") => bought[*i].push(serial(body)),
            (0, "409") => assert!(body.contains("token already used"), "{body}"),
            _ => panic!("token {i}: {status} {body}"),
        }
    }
    for (i, got) in bought.iter().enumerate() {
        let want = if i % 2 == 0 { 1 } else { 2 };
        assert!(got.len() == want && got.iter().all(|s| *s == got[0]), "token {i}: {got:?}");
    }
    let created: HashSet<String> = bought.iter().map(|g| g[0].clone()).collect();
    assert_eq!(created.len(), RACED, "every raced token bought its own certificate");
    let stored_race: HashSet<String> = in_store("race").into_iter().collect();
    assert_eq!(stored_race, created, "the raced certificates are the stored ones");
    let other: Vec<&serde_json::Value> = listed
        .iter()
        .filter(|c| !matches!(c["name"].as_str(), Some("dev" | "race")) && c["profile"] == "client")
        .collect();
    assert!(other.is_empty(), "nothing else issued: {other:?}");
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
    const CERTS: usize = 10_000;
    let csv: String = (0..CERTS).map(|i| format!("dev{i},client,\n")).collect();
    let batch = ca.write("batch.csv", csv);
    ca.ambos(&["issue", "client", "--batch", batch.to_str().unwrap(), "--out", ca.certs().to_str().unwrap()]).ok();
    for i in (0..CERTS).step_by(200) {
        ca.ambos(&["revoke", &format!("dev{i}"), "--reason", "key-compromise"]).ok();
    }
    ca.ambos(&["token", "create", "later"]).ok();
    let (number, revoked) = crl_entries(&ca, &ca.ambos(&["crl"]).ok().stdout);
    let listed = ca.ambos(&["list", "--json"]).ok().stdout;
    let from = format!("sqlite:{}", ca.data().display());
    let out = ca.ambos(&["store", "copy", "--from", &from, "--to", &url]).ok().stdout;
    assert!(out.contains(&format!("copied {} certificates ({} revoked)", CERTS + 1, CERTS / 200)), "{out}");
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
