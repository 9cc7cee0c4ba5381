//! PKCS#12 keystores and truststores from ambos, opened by OpenSSL 3 and Java keytool.
use ambos_interop_tests::{require, run, Run, TestCa};
use std::path::Path;
use std::process::Command;

/// `openssl pkcs12 -in STORE -passin PASSIN` with `args` before them.
fn openssl_pkcs12(args: &[&str], store: &Path, passin: &str) -> Run {
    run(Command::new("openssl").arg("pkcs12").args(args).arg("-in").arg(store).args(["-passin", passin]))
}

/// `keytool -list` (with `-v`: every certificate in full) of a PKCS#12 store.
fn keytool_list(store: &Path, password: &str, verbose: bool) -> Run {
    let mut cmd = Command::new("keytool");
    cmd.arg("-list");
    if verbose {
        cmd.arg("-v");
    }
    run(cmd.args(["-storetype", "PKCS12", "-keystore"]).arg(store).args(["-storepass", password]))
}

#[test]
fn pkcs12_keystore_opens_in_openssl_without_legacy_and_in_keytool() {
    require("openssl");
    require("keytool");
    let ca = TestCa::new(&[]);
    let pw = ca.write("pw.txt", "changeit-not\n");
    let pw_s = pw.to_str().unwrap();
    ca.issue("client", "web", &["--spiffe", "spiffe://acme.test/web", "--p12", "--p12-password-file", pw_s]);
    let p12 = ca.path("web.p12");

    let passin = format!("file:{pw_s}");
    let info = openssl_pkcs12(&["-info", "-noout"], &p12, &passin).ok();
    let all = format!("{}{}", info.stdout, info.stderr);
    assert!(all.contains("PBES2") && all.contains("AES-256-CBC"), "{all}");
    assert!(all.contains("sha256"), "MAC should be HMAC-SHA256: {all}");
    assert!(!all.contains("RC2") && !all.contains("3DES"), "{all}");
    // The key and both certificates come out again.
    let dump = openssl_pkcs12(&["-nodes"], &p12, &passin).ok().stdout;
    assert_eq!(dump.matches("BEGIN CERTIFICATE").count(), 2, "{dump}");
    assert!(dump.contains("BEGIN PRIVATE KEY"), "{dump}");

    let list = keytool_list(&p12, "changeit-not", true).ok().stdout;
    assert!(list.contains("PrivateKeyEntry"), "{list}");
    assert!(list.contains("Certificate chain length: 2"), "{list}");

    // A wrong password is refused by keytool, not silently accepted.
    let bad = keytool_list(&p12, "wrong-password", false);
    assert_ne!(bad.code, 0);

    // `ambos p12` builds the same from PEM files.
    let out = ca.path("again.p12");
    ca.ambos(&[
        "p12",
        "--cert",
        ca.path("web.crt").to_str().unwrap(),
        "--key",
        ca.path("web.key").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--password-file",
        pw_s,
    ])
    .ok();
    keytool_list(&out, "changeit-not", false).ok();
}

#[test]
fn pkcs12_truststore_lists_the_root_as_trusted_cert_entry() {
    require("openssl");
    require("keytool");
    let ca = TestCa::new(&[]);
    let pw = ca.write("pw.txt", "truststore-pw\n");
    let ts = ca.dir().join("truststore.p12");
    ca.export_truststore_p12(&ts, &pw);
    let list = keytool_list(&ts, "truststore-pw", true).ok().stdout;
    assert!(list.contains("trustedCertEntry"), "{list}");
    assert!(list.contains("Interop Root CA"), "{list}");
    openssl_pkcs12(&["-info", "-noout"], &ts, "pass:truststore-pw").ok();

    let pem = ca.dir().join("truststore.pem");
    ca.ambos(&["export", "truststore", "--out", pem.to_str().unwrap()]).ok();
    let subject = run(Command::new("openssl").args(["x509", "-noout", "-subject", "-in"]).arg(&pem)).ok().stdout;
    assert!(subject.contains("Interop Root CA"), "{subject}");
}
