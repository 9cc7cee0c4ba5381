//! Certificates and CRLs from ambos, judged by OpenSSL.
use ambos_interop_tests::{openssl_csr, require, run, TestCa};
use std::process::Command;

fn verify(ca: &TestCa, purpose: &str, chain: &str, extra: &[&str]) -> ambos_interop_tests::Run {
    let root = ca.path("ca.crt");
    let chain = ca.path(chain);
    let mut cmd = Command::new("openssl");
    cmd.args(["verify", "-x509_strict", "-purpose", purpose, "-CAfile"])
        .arg(&root)
        .arg("-untrusted")
        .arg(&chain)
        .args(extra)
        .arg(&chain);
    run(&mut cmd)
}

#[test]
fn openssl_accepts_issued_chains_for_every_key_type() {
    require("openssl");
    for key_type in ["ec-p256", "ec-p384", "ed25519", "rsa-2048", "rsa-3072", "rsa-4096"] {
        let ca = TestCa::new(&["--key-type", key_type]);
        ca.issue("server", "api", &["--san", "dns:api.test", "--san", "ip:127.0.0.1", "--key-type", key_type]);
        ca.issue("client", "web", &["--spiffe", "spiffe://acme.test/web", "--key-type", key_type]);
        let v = verify(&ca, "sslserver", "api.crt", &[]);
        assert!(v.code == 0 && v.stdout.contains(": OK"), "{key_type} server: {}{}", v.stdout, v.stderr);
        let v = verify(&ca, "sslclient", "web.crt", &[]);
        assert!(v.code == 0 && v.stdout.contains(": OK"), "{key_type} client: {}{}", v.stdout, v.stderr);
        // A client certificate must not pass as a server one, and vice versa.
        assert_ne!(verify(&ca, "sslserver", "web.crt", &[]).code, 0, "{key_type}: client cert passed as server");
        assert_ne!(verify(&ca, "sslclient", "api.crt", &[]).code, 0, "{key_type}: server cert passed as client");
    }
}

#[test]
fn openssl_crl_check_rejects_a_revoked_certificate() {
    require("openssl");
    let ca = TestCa::new(&[]);
    ca.issue("client", "good", &[]);
    ca.issue("client", "bad", &[]);
    ca.ambos(&["revoke", "bad", "--reason", "key-compromise"]).ok();
    let crl = ca.path("crl.pem");
    ca.ambos(&["crl", "--out", crl.to_str().unwrap()]).ok();
    let crl_s = crl.to_str().unwrap();

    let v = verify(&ca, "sslclient", "bad.crt", &["-crl_check", "-CRLfile", crl_s]);
    assert_ne!(v.code, 0, "revoked cert accepted: {}", v.stdout);
    assert!(format!("{}{}", v.stdout, v.stderr).contains("certificate revoked"), "{}{}", v.stdout, v.stderr);
    verify(&ca, "sslclient", "good.crt", &["-crl_check", "-CRLfile", crl_s]).ok();

    // --all adds the root's CRL, so the whole chain can be checked.
    let all = ca.path("crls.pem");
    ca.ambos(&["crl", "--all", "--out", all.to_str().unwrap()]).ok();
    verify(&ca, "sslclient", "good.crt", &["-crl_check_all", "-CRLfile", all.to_str().unwrap()]).ok();
    let v = verify(&ca, "sslclient", "bad.crt", &["-crl_check_all", "-CRLfile", all.to_str().unwrap()]);
    assert_ne!(v.code, 0);

    // CRL v2 fields as OpenSSL reads them.
    let text = run(Command::new("openssl").args(["crl", "-noout", "-text", "-in", crl_s])).ok().stdout;
    for needle in ["Version 2", "X509v3 CRL Number", "X509v3 Authority Key Identifier", "Key Compromise", "Next Update"]
    {
        assert!(text.contains(needle), "CRL lacks {needle}:\n{text}");
    }
    // The CRL number grows with every publication.
    let second = run(Command::new("openssl").args(["crl", "-noout", "-crlnumber", "-in", all.to_str().unwrap()])).ok();
    let first = run(Command::new("openssl").args(["crl", "-noout", "-crlnumber", "-in", crl_s])).ok();
    assert_ne!(first.stdout, second.stdout);
    // Signed by the intermediate.
    run(Command::new("openssl")
        .args(["crl", "-noout", "-in", crl_s, "-CAfile"])
        .arg(ca.data().join("intermediate.crt")))
    .ok();
}

#[test]
fn openssl_accepts_a_certificate_signed_from_its_own_csr() {
    require("openssl");
    let ca = TestCa::new(&[]);
    let (key, csr) =
        openssl_csr(ca.dir(), "app", "/CN=app.test/OU=ops", &["-addext", "subjectAltName=DNS:app.test,IP:127.0.0.1"]);
    std::fs::create_dir_all(ca.certs()).unwrap();
    let out = ca.path("app.crt");
    ca.ambos(&["sign", csr.to_str().unwrap(), "--profile", "server", "--out", out.to_str().unwrap()]).ok();
    std::fs::write(ca.path("ca.crt"), std::fs::read(ca.data().join("root.crt")).unwrap()).unwrap();
    verify(&ca, "sslserver", "app.crt", &[]).ok();
    let text = run(Command::new("openssl").args(["x509", "-noout", "-text", "-in"]).arg(&out)).ok().stdout;
    assert!(text.contains("DNS:app.test") && text.contains("IP Address:127.0.0.1"), "{text}");
    assert!(text.contains("OU = ops") || text.contains("OU=ops"), "{text}");
    // The key in the certificate is the CSR's key.
    let from_cert = run(Command::new("openssl").args(["x509", "-noout", "-pubkey", "-in"]).arg(&out)).ok().stdout;
    let from_key = run(Command::new("openssl").args(["pkey", "-pubout", "-in"]).arg(&key)).ok().stdout;
    assert_eq!(from_cert, from_key);

    // A server profile refuses names it does not allow.
    let (_, csr) = openssl_csr(ca.dir(), "x", "/CN=x", &["-addext", "subjectAltName=URI:spiffe://acme.test/x"]);
    ca.ambos(&["sign", csr.to_str().unwrap(), "--profile", "server"]).fails_with(2, "spiffe://acme.test/x");
}

#[test]
fn openssl_reads_the_encrypted_ca_key_with_the_passphrase() {
    require("openssl");
    let ca = TestCa::empty();
    let pass = ca.write("pass.txt", "s3cret passphrase\n");
    ca.ambos(&["init", "--passphrase-file", pass.to_str().unwrap()]).ok();
    // Pull the stored key out through sqlite-free means: `ambos` never prints it, so
    // check the PEM label in the database file and that issuing needs the passphrase.
    let db = std::fs::read(ca.data().join("ambos.db")).unwrap();
    let db = String::from_utf8_lossy(&db);
    assert!(db.contains("BEGIN ENCRYPTED PRIVATE KEY"), "CA key not encrypted at rest");
    assert!(!db.contains("BEGIN PRIVATE KEY"), "plain CA key in the store");
    let start = db.find("-----BEGIN ENCRYPTED PRIVATE KEY-----").unwrap();
    let end = db[start..].find("-----END ENCRYPTED PRIVATE KEY-----").unwrap() + start + 35;
    let pem = ca.write("ca-key.pem", &db[start..end]);
    let out = run(Command::new("openssl")
        .args(["pkey", "-noout", "-in"])
        .arg(&pem)
        .args(["-passin", &format!("file:{}", pass.display())]));
    out.ok();
}
