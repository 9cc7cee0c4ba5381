//! kill -9 during bulk issuance: the store stays consistent and every
//! certificate on disk is recorded (nothing handed out unrecorded).
use ambos_interop_tests::{ambos_bin, TestCa};
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn kill_9_during_batch_issuance_loses_and_duplicates_nothing() {
    let ca = TestCa::new(&[]);
    let mut csv = String::new();
    for i in 0..4000 {
        csv.push_str(&format!("dev-{i},client,\n"));
    }
    let file = ca.write("fleet.csv", csv);
    let mut killed_mid_run = 0;
    for (round, delay_ms) in [150u64, 400, 900].into_iter().enumerate() {
        let out_dir = ca.dir().join(format!("out-{round}"));
        let mut child = Command::new(ambos_bin())
            .current_dir(ca.dir())
            .env("AMBOS_DIR", ca.data())
            .args(["issue", "client", "--batch", file.to_str().unwrap(), "--out", out_dir.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        if child.try_wait().unwrap().is_none() {
            killed_mid_run += 1;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        // The store opens and lists; serials are unique.
        let list = ca.ambos(&["list", "--json"]).ok();
        let rows: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
        let rows = rows.as_array().unwrap();
        let mut serials: Vec<&str> = rows.iter().map(|r| r["serial"].as_str().unwrap()).collect();
        let n = serials.len();
        serials.sort();
        serials.dedup();
        assert_eq!(serials.len(), n, "duplicate serials after kill -9");

        // Every certificate written to disk is in the store.
        let Ok(entries) = std::fs::read_dir(&out_dir) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "crt") && p.file_name().unwrap() != "ca.crt" {
                let out = ca.ambos(&["inspect", p.to_str().unwrap(), "--json"]).ok();
                let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
                let serial = v["certificates"][0]["serial"].as_str().unwrap().to_string();
                assert!(
                    serials.binary_search(&serial.as_str()).is_ok(),
                    "{} on disk but not in the store",
                    p.display()
                );
            }
        }
    }
    assert!(killed_mid_run > 0, "the batch always finished before the kill; the test proved nothing");
    // The CA still works after the crashes.
    ca.issue("client", "after-crash", &[]);
}
