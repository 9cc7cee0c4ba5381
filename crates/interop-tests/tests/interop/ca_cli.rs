//! The CA commands as a user meets them: outputs, listings, batch issuance,
//! and every kind of bad input (one-line error, exit code, store unchanged).
use ambos_interop_tests::{ambos_bin, openssl_csr, require, run, ProxyToml, TestCa};
use std::process::Command;

fn count(ca: &TestCa) -> usize {
    let out = ca.ambos(&["list", "--json"]).ok();
    serde_json::from_str::<serde_json::Value>(&out.stdout).unwrap().as_array().unwrap().len()
}

#[test]
fn issue_writes_chain_key_and_root_with_private_key_mode_0600() {
    use std::os::unix::fs::PermissionsExt;
    let ca = TestCa::new(&[]);
    let out = ca.issue("server", "api.acme.test", &["--json"]);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["sans"], serde_json::json!(["dns:api.acme.test"]), "server NAME is its default SAN");
    let chain = std::fs::read_to_string(ca.path("api.acme.test.crt")).unwrap();
    assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2, "leaf + intermediate");
    let mode = std::fs::metadata(ca.path("api.acme.test.key")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let root = std::fs::read_to_string(ca.path("ca.crt")).unwrap();
    assert_eq!(root, std::fs::read_to_string(ca.data().join("root.crt")).unwrap());
    // Issuing the same name again would overwrite files: refused without --force.
    let again = ca.ambos(&["issue", "server", "api.acme.test", "--out", ca.certs().to_str().unwrap()]);
    again.fails_with(2, "--force");
    let inode = || std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(ca.path("ca.crt")).unwrap());
    let before = inode();
    ca.issue("server", "api.acme.test", &["--force"]);
    assert_eq!(count(&ca), 3, "intermediate + two leaves");
    // An unchanged ca.crt is not rewritten, so a proxy watching it does not reload.
    assert_eq!(inode(), before);
}

#[test]
fn inspect_reports_names_usage_and_fingerprint() {
    let ca = TestCa::new(&[]);
    ca.issue(
        "client",
        "web",
        &["--spiffe", "spiffe://acme.test/web", "--ou", "payments", "--san", "email:web@acme.test"],
    );
    let out = ca.ambos(&["inspect", ca.path("web.crt").to_str().unwrap(), "--json"]).ok();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let leaf = &v["certificates"][0];
    assert_eq!(v["kind"], "certificates");
    assert_eq!(v["certificates"].as_array().unwrap().len(), 2);
    assert_eq!(leaf["extended_key_usage"], serde_json::json!(["clientAuth"]));
    assert!(leaf["subject"].as_str().unwrap().contains("OU=payments"), "{leaf}");
    let sans = leaf["sans"].as_array().unwrap();
    assert!(sans.contains(&"uri:spiffe://acme.test/web".into()) && sans.contains(&"email:web@acme.test".into()));
    // The fingerprint agrees with OpenSSL's.
    let fp =
        run(Command::new("openssl").args(["x509", "-noout", "-fingerprint", "-sha256", "-in"]).arg(ca.path("web.crt")))
            .ok()
            .stdout;
    let fp = fp.trim().rsplit('=').next().unwrap().replace(':', "").to_lowercase();
    assert_eq!(leaf["sha256"], fp.as_str());
    // And the serial agrees with `openssl x509 -serial`.
    let serial =
        run(Command::new("openssl").args(["x509", "-noout", "-serial", "-in"]).arg(ca.path("web.crt"))).ok().stdout;
    assert_eq!(leaf["serial"], serial.trim().trim_start_matches("serial=").to_lowercase().as_str());
    let human = ca.ambos(&["inspect", ca.path("web.crt").to_str().unwrap()]).ok().stdout;
    assert!(human.contains("clientAuth") && human.contains("spiffe://acme.test/web"), "{human}");
}

#[test]
fn list_filters_revoked_and_expiring_certificates() {
    let ca = TestCa::new(&[]);
    ca.issue("client", "short", &["--ttl", "2d"]);
    ca.issue("client", "long", &["--ttl", "60d"]);
    ca.issue("client", "gone", &[]);
    let serial = serde_json::from_str::<serde_json::Value>(&ca.ambos(&["list", "--json"]).ok().stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "gone")
        .unwrap()["serial"]
        .as_str()
        .unwrap()
        .to_uppercase();
    // Revoke by serial in OpenSSL's colon form.
    let colon: Vec<String> = serial.as_bytes().chunks(2).map(|c| String::from_utf8(c.to_vec()).unwrap()).collect();
    ca.ambos(&["revoke", &colon.join(":"), "--reason", "superseded"]).ok();
    ca.ambos(&["revoke", &serial]).fails_with(2, "already revoked");
    let revoked = ca.ambos(&["list", "--revoked", "--json"]).ok().stdout;
    let revoked: serde_json::Value = serde_json::from_str(&revoked).unwrap();
    assert_eq!(revoked.as_array().unwrap().len(), 1);
    assert_eq!(revoked[0]["revocation_reason"], "superseded");
    let expiring: serde_json::Value =
        serde_json::from_str(&ca.ambos(&["list", "--expiring", "7d", "--json"]).ok().stdout).unwrap();
    let names: Vec<&str> = expiring.as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["short"]);
    let table = ca.ambos(&["list"]).ok().stdout;
    assert!(table.contains("SERIAL") && table.contains("revoked") && table.contains("long"), "{table}");
}

#[test]
fn batch_issues_a_fleet_from_csv_and_json_lines() {
    let ca = TestCa::new(&[]);
    let mut csv = String::from("name,profile,sans\n");
    for i in 0..40 {
        csv.push_str(&format!("device-{i},client,uri:spiffe://acme.test/device/{i} dns:device-{i}.acme.test\n"));
    }
    csv.push_str("gateway,server,dns:gw.acme.test ip:10.0.0.1\n");
    let file = ca.write("fleet.csv", csv);
    ca.ambos(&["issue", "client", "--batch", file.to_str().unwrap(), "--out", ca.certs().to_str().unwrap()]).ok();
    assert_eq!(count(&ca), 42);
    for name in ["device-0", "device-39", "gateway"] {
        assert!(ca.path(&format!("{name}.crt")).exists() && ca.path(&format!("{name}.key")).exists());
    }
    let gw = ca.ambos(&["inspect", ca.path("gateway.crt").to_str().unwrap(), "--json"]).ok().stdout;
    assert!(gw.contains("serverAuth") && gw.contains("ip:10.0.0.1"), "{gw}");

    let jsonl = ca.write(
        "more.jsonl",
        "{\"name\":\"sensor-a\",\"spiffe\":\"spiffe://acme.test/sensor/a\",\"ou\":[\"iot\"]}\n{\"name\":\"sensor-b\",\"ttl\":\"1h\"}\n",
    );
    let out = ca
        .ambos(&[
            "issue",
            "client",
            "--batch",
            jsonl.to_str().unwrap(),
            "--out",
            ca.certs().to_str().unwrap(),
            "--json",
        ])
        .ok();
    assert_eq!(out.stdout.lines().count(), 2, "one JSON line per certificate: {}", out.stdout);
    assert_eq!(count(&ca), 44);
}

#[test]
fn a_bad_batch_line_is_named_and_nothing_is_issued() {
    let ca = TestCa::new(&[]);
    let file = ca.write("fleet.csv", "ok-1,client,\nok-2,client,dns:bad_host!\nok-3,client,\n");
    ca.ambos(&["issue", "client", "--batch", file.to_str().unwrap(), "--out", ca.certs().to_str().unwrap()])
        .fails_with(2, "fleet.csv:2");
    assert_eq!(count(&ca), 1, "only the intermediate");
    assert!(!ca.path("ok-1.crt").exists());
}

#[test]
fn malformed_or_truncated_pem_is_refused_naming_the_file() {
    let ca = TestCa::new(&[]);
    ca.issue("client", "web", &[]);
    let good = std::fs::read_to_string(ca.path("web.crt")).unwrap();
    let cut = ca.write("cut.pem", &good[..good.len() / 3]);
    ca.ambos(&["inspect", cut.to_str().unwrap()]).fails_with(2, "cut.pem");
    let garbage =
        ca.write("garbage.pem", "-----BEGIN CERTIFICATE-----\nnot base64 at all!!\n-----END CERTIFICATE-----\n");
    ca.ambos(&["inspect", garbage.to_str().unwrap()]).fails_with(2, "garbage.pem");
    let junk = ca.write("junk.bin", [0u8, 1, 2, 3, 255, 254]);
    ca.ambos(&["inspect", junk.to_str().unwrap()]).fails_with(2, "junk.bin");
    let key = ca.path("web.key");
    ca.ambos(&["p12", "--cert", cut.to_str().unwrap(), "--key", key.to_str().unwrap(), "--out", "x.p12"])
        .fails_with(2, "cut.pem");
    ca.ambos(&["inspect", "does-not-exist.pem"]).fails_with(2, "does-not-exist.pem");
}

#[test]
fn a_csr_with_a_bad_signature_is_refused() {
    let ca = TestCa::new(&[]);
    let (_, csr) = openssl_csr(ca.dir(), "x", "/CN=x.test", &["-outform", "DER"]);
    let mut der = std::fs::read(&csr).unwrap();
    let n = der.len();
    der[n - 5] ^= 0x55; // inside the signature value
    let bad = ca.write("bad.csr", der);
    ca.ambos(&["sign", bad.to_str().unwrap(), "--profile", "server"]).fails_with(2, "signature");
    ca.ambos(&["sign", csr.to_str().unwrap(), "--profile", "server"]).ok();
    assert_eq!(count(&ca), 2);
}

#[test]
fn unknown_key_type_and_bad_values_are_usage_errors() {
    let ca = TestCa::empty();
    ca.ambos(&["init", "--no-passphrase", "--key-type", "dsa-1024"]).fails_with(2, "dsa-1024");
    assert!(!ca.data().join("ambos.db").exists(), "nothing created");
    let ca = TestCa::new(&[]);
    ca.ambos(&["issue", "client", "web", "--key-type", "rsa-512"]).fails_with(2, "rsa-512");
    ca.ambos(&["issue", "client", "web", "--ttl", "ten days"]).fails_with(2, "ten days");
    ca.ambos(&["issue", "client", "web", "--san", "dns:not a host"]).fails_with(2, "dns:not a host");
    ca.ambos(&["issue", "client", "../escape"]).fails_with(2, "../escape");
    ca.ambos(&["revoke", "web", "--reason", "because"]).fails_with(2, "because");
    // Unknown flags are refused by the parser with exit code 2.
    let out = ca.ambos(&["issue", "client", "web", "--frobnicate"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert_eq!(count(&ca), 1);
}

#[test]
fn issue_before_init_and_unknown_serial_are_refused() {
    let ca = TestCa::empty();
    ca.ambos(&["issue", "client", "web"]).fails_with(2, "ambos init");
    ca.ambos(&["list"]).fails_with(2, "ambos init");
    let ca = TestCa::new(&[]);
    ca.ambos(&["revoke", "DEADBEEF00"]).fails_with(2, "DEADBEEF00");
    ca.ambos(&["revoke", "no-such-name"]).fails_with(2, "no-such-name");
}

#[test]
fn init_refuses_to_overwrite_an_existing_ca() {
    let ca = TestCa::new(&[]);
    let root = std::fs::read(ca.data().join("root.crt")).unwrap();
    ca.ambos(&["init", "--no-passphrase"]).fails_with(2, "already exists");
    assert_eq!(std::fs::read(ca.data().join("root.crt")).unwrap(), root);
}

#[test]
fn init_into_a_directory_it_cannot_use_names_it_before_any_warning() {
    // Tests run as root: a read-only place and a file stand for unwritable.
    let ca = TestCa::empty();
    let file = ca.write("a-file", "not a directory");
    for dir in [std::path::PathBuf::from("/proc/ambos-ca"), file] {
        let out = run(ca.cmd().args(["init", "--no-passphrase", "--dir"]).arg(&dir));
        let out = out.fails_with(2, &format!("cannot create the CA in {}: ", dir.display()));
        assert!(!out.stderr.contains("UNENCRYPTED") && !out.stderr.contains("ambos.db"), "{}", out.stderr);
    }
}

#[test]
fn wrong_passphrase_is_refused_and_the_store_is_unchanged() {
    let ca = TestCa::empty();
    let pass = ca.write("pass.txt", "right horse battery\n");
    let wrong = ca.write("wrong.txt", "wrong horse battery\n");
    ca.ambos(&["init", "--passphrase-file", pass.to_str().unwrap()]).ok();
    ca.ambos(&["--passphrase-file", wrong.to_str().unwrap(), "issue", "client", "web", "--out", "certs"])
        .fails_with(2, "wrong passphrase");
    assert!(!ca.path("web.crt").exists());
    // No terminal and no passphrase source: a clear error, not a hang.
    ca.ambos(&["issue", "client", "web", "--out", "certs"]).fails_with(2, "AMBOS_PASSPHRASE");
    let out =
        run(ca.cmd().env("AMBOS_PASSPHRASE", "right horse battery").args(["issue", "client", "web", "--out", "certs"]));
    out.ok();
    assert_eq!(count(&ca), 2);
    ca.ambos(&["--passphrase-file", pass.to_str().unwrap(), "crl", "--out", "crl.pem"]).ok();
}

#[test]
fn completions_load_in_bash_and_the_man_page_renders() {
    require("bash");
    require("groff");
    let bin = ambos_bin();
    let script = format!("source <('{}' completions bash) && complete -p ambos", bin.display());
    let bash = run(Command::new("bash").args(["-c", &script])).ok();
    assert!(bash.stdout.contains("-F _ambos ambos"), "{}", bash.stdout);
    let ca = TestCa::empty();
    assert!(ca.ambos(&["completions", "zsh"]).ok().stdout.starts_with("#compdef ambos"));
    assert!(ca.ambos(&["completions", "fish"]).ok().stdout.contains("complete -c ambos"));
    let tcsh = ca.ambos(&["completions", "tcsh"]);
    assert!(tcsh.code == 2 && tcsh.stderr.contains("invalid value 'tcsh'"), "{}", tcsh.stderr);

    let page = ca.dir().join("ambos.1");
    std::fs::write(&page, ca.ambos(&["man"]).ok().stdout).unwrap();
    // -ww: every groff warning; a page that renders cleanly prints none.
    let shown = run(Command::new("groff").args(["-man", "-Tutf8", "-ww"]).arg(&page)).ok();
    assert!(shown.stderr.is_empty(), "groff warns: {}", shown.stderr);
    assert!(shown.stdout.contains("ambos - mTLS for real services"), "{}", shown.stdout);
    // A reader that stops early is not an error.
    let head = run(Command::new("bash").args(["-c", &format!("'{}' man | head -1", bin.display())])).ok();
    assert!(head.stderr.is_empty(), "{}", head.stderr);
}

#[test]
fn list_current_expiring_name_and_summary_hide_what_renewals_replaced() {
    let ca = TestCa::new(&[]);
    ca.issue("client", "web", &["--ttl", "30m"]);
    ca.issue("client", "web", &["--force"]);
    ca.issue("client", "api", &[]);
    ca.issue("client", "gone", &[]);
    ca.ambos(&["revoke", "gone"]).ok();
    let rows = |args: &[&str]| -> Vec<serde_json::Value> {
        let mut all = vec!["list", "--json"];
        all.extend_from_slice(args);
        serde_json::from_str::<serde_json::Value>(&ca.ambos(&all).ok().stdout).unwrap().as_array().unwrap().clone()
    };
    let names =
        |rows: &[serde_json::Value]| rows.iter().map(|r| r["name"].as_str().unwrap().to_string()).collect::<Vec<_>>();
    assert_eq!(names(&rows(&["--name", "web"])), ["web", "web"], "every renewal of a name");
    let current = names(&rows(&["--current"]));
    assert_eq!(current.iter().filter(|n| *n == "web").count(), 1, "{current:?}");
    assert!(current.contains(&"api".to_string()) && !current.contains(&"gone".to_string()), "{current:?}");
    let newest = rows(&["--current", "--name", "web"]);
    assert!(newest[0]["not_after"].as_str().unwrap() > rows(&["--name", "web"])[0]["not_after"].as_str().unwrap());
    // The 30-minute one expires within an hour; the current web certificate does not.
    assert_eq!(rows(&["--expiring", "1h"]).len(), 1);
    assert!(rows(&["--current", "--expiring", "1h"]).is_empty());
    let summary: serde_json::Value =
        serde_json::from_str(&ca.ambos(&["list", "--summary", "--json"]).ok().stdout).unwrap();
    assert_eq!(
        summary,
        serde_json::json!({"valid": 4, "expired": 0, "revoked": 1, "total": 5}),
        "intermediate + 4 leaves"
    );
    let text = ca.ambos(&["list", "--summary"]).ok().stdout;
    assert_eq!(text, "valid 4  expired 0  revoked 1  total 5\n");
    ca.ambos(&["list", "--expiring", "soon"]).fails_with(2, "invalid duration 'soon'");
}

#[test]
fn a_server_client_certificate_verifies_in_openssl_for_both_purposes() {
    require("openssl");
    let ca = TestCa::new(&[]);
    let out = ca.ambos(&[
        "issue",
        "--profile",
        "server,client",
        "mesh.acme.test",
        "--out",
        ca.certs().to_str().unwrap(),
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out.ok().stdout).unwrap();
    assert_eq!(v["profile"], "server,client");
    let (leaf, root) = (ca.path("mesh.acme.test.crt"), ca.path("ca.crt"));
    for purpose in ["sslserver", "sslclient"] {
        // The chain file holds leaf + intermediate: the intermediate is untrusted, the root the anchor.
        let verified = run(Command::new("openssl")
            .args(["verify", "-purpose", purpose, "-CAfile"])
            .arg(&root)
            .arg("-untrusted")
            .arg(&leaf)
            .arg(&leaf))
        .ok();
        assert!(verified.stdout.contains(": OK"), "{purpose}: {}", verified.stdout);
    }
    let text = run(Command::new("openssl").args(["x509", "-noout", "-ext", "extendedKeyUsage", "-in"]).arg(&leaf)).ok();
    assert!(text.stdout.contains("TLS Web Server Authentication, TLS Web Client Authentication"), "{}", text.stdout);
    let listed = ca.ambos(&["list", "--name", "mesh.acme.test"]).ok().stdout;
    assert!(listed.contains("  server,client  "), "{listed}");
    // A client-only certificate is refused as a server by the same check.
    ca.issue("client", "web", &[]);
    let refused = run(Command::new("openssl")
        .args(["verify", "-purpose", "sslserver", "-CAfile"])
        .arg(&root)
        .arg("-untrusted")
        .arg(ca.path("web.crt"))
        .arg(ca.path("web.crt")));
    assert_ne!(refused.code, 0, "{}", refused.stdout);
}

#[test]
fn with_json_errors_are_one_json_line_on_stderr_with_the_exit_code() {
    let empty = TestCa::empty();
    let check = |r: ambos_interop_tests::Run, code: i32, needle: &str| {
        assert_eq!(r.code, code, "{}", r.stderr);
        assert!(r.stdout.is_empty(), "stdout keeps only data: {}", r.stdout);
        assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
        let v: serde_json::Value = serde_json::from_str(&r.stderr).unwrap_or_else(|e| panic!("{e}: {}", r.stderr));
        assert_eq!(v["exit_code"], code, "{v}");
        assert!(v["error"].as_str().unwrap().contains(needle), "{v}");
    };
    check(empty.ambos(&["list", "--json"]), 2, "ambos init");
    check(empty.ambos(&["inspect", "missing.pem", "--json"]), 2, "cannot read missing.pem");
    // A usage error that clap finds.
    check(empty.ambos(&["list", "--json", "--expiring"]), 2, "a value is required for '--expiring");
    let ca = TestCa::new(&[]);
    check(ca.ambos(&["issue", "client", "web", "--ttl", "5q", "--json"]), 2, "invalid duration '5q'");
    // Without --json: the plain line, as before.
    empty.ambos(&["list"]).fails_with(2, "error: no CA found");
}

/// `certs/localhost.crt` with its certificates in reverse order (intermediate first).
fn swapped_chain(ca: &TestCa) -> std::path::PathBuf {
    let chain = std::fs::read_to_string(ca.path("localhost.crt")).unwrap();
    let blocks: Vec<String> = chain.split_inclusive("-----END CERTIFICATE-----\n").map(str::to_string).collect();
    assert_eq!(blocks.len(), 2, "leaf + intermediate");
    ca.write("certs/swapped.crt", blocks.iter().rev().cloned().collect::<String>())
}

#[test]
fn a_chain_out_of_order_is_named_by_p12_probe_and_the_proxy_not_as_a_key_mismatch() {
    let ca = TestCa::with_localhost(&[]);
    swapped_chain(&ca);
    let why = "the chain is out of order: the first certificate must be the leaf (the key matches certificate 2, CN=localhost)";
    ca.write("pw.txt", "a p12 password");
    let p12 = ca.ambos(&[
        "p12",
        "--cert",
        "certs/swapped.crt",
        "--key",
        "certs/localhost.key",
        "--out",
        "x.p12",
        "--password-file",
        "pw.txt",
    ]);
    p12.fails_with(2, why);
    let probe = ca.ambos(&["probe", "localhost:1", "--cert", "certs/swapped.crt", "--key", "certs/localhost.key"]);
    probe.fails_with(2, &format!("--cert: certs/swapped.crt: {why}"));
    let config = ProxyToml::http(1).to_string().replace("certs/localhost.crt", "certs/swapped.crt");
    ca.write("proxy.toml", config);
    ca.ambos(&["proxy", "--config", "proxy.toml", "--check"])
        .fails_with(2, &format!("proxy.toml: tls.cert certs/swapped.crt: {why}"));
}

#[test]
fn a_missing_tls_file_names_its_setting_and_says_the_os_error_once() {
    let ca = TestCa::with_localhost(&[]);
    let config = ProxyToml::http(1).to_string().replace("certs/localhost.key", "certs/x.key");
    ca.write("proxy.toml", config);
    let out = ca.ambos(&["proxy", "--config", "proxy.toml", "--check"]);
    let out = out.fails_with(2, "proxy.toml: tls.key certs/x.key: No such file or directory (os error 2)");
    assert_eq!(out.stderr.matches("os error 2").count(), 1, "{}", out.stderr);
    let other = ProxyToml::http(1).to_string().replace("certs/localhost.key", "certs/ca.crt");
    ca.write("proxy.toml", other);
    ca.ambos(&["proxy", "--config", "proxy.toml", "--check"])
        .fails_with(2, "proxy.toml: tls.key certs/ca.crt: no PRIVATE KEY");
}

/// `ambos list | head -1`: the reader going away is not a failure (no panic, exit 0).
#[test]
fn output_into_a_closed_pipe_exits_quietly() {
    let ca = TestCa::with_localhost(&["alice"]);
    for args in [vec!["list"], vec!["inspect", ca.certs().join("alice.crt").to_str().unwrap()]] {
        // A pipe whose reader is gone before the first write: every write fails with EPIPE.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = ca.cmd().args(&args).stdout(writer).stderr(std::process::Stdio::piped()).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
    }
}
