//! Several `ambos serve` nodes on one PostgreSQL database (the test
//! cluster of scripts/test.sh): a token presented to two nodes at the same
//! moment buys exactly one certificate, every serial is unique, and every
//! certificate a client got is in the store once.
use ambos_interop_tests::{openssl_csr, Daemon, TestCa};
use std::collections::HashSet;
use std::sync::{Arc, Barrier};

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
