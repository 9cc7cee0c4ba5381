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

/// Keys as openssl writes them by default or on request: PKCS#1 and SEC1
/// PEM, PKCS#8 DER, encrypted PKCS#8 DER (with --key-passphrase-file).
#[test]
fn p12_takes_pkcs1_sec1_and_der_keys_from_openssl() {
    require("openssl");
    require("keytool");
    let ca = TestCa::new(&[]);
    let dir = ca.dir();
    let pw = ca.write("pw.txt", "changeit-not\n");
    let key_pw = ca.write("key-pw.txt", "key secret\n");
    let openssl = |args: &[&str]| run(Command::new("openssl").args(args).current_dir(dir)).ok();
    openssl(&["genrsa", "-traditional", "-out", "rsa.key", "2048"]);
    openssl(&["ecparam", "-genkey", "-name", "prime256v1", "-noout", "-out", "ec.key"]);
    openssl(&["pkcs8", "-topk8", "-nocrypt", "-in", "ec.key", "-outform", "DER", "-out", "ec.der"]);
    let passout = format!("file:{}", key_pw.display());
    openssl(&["pkcs8", "-topk8", "-in", "rsa.key", "-outform", "DER", "-out", "rsa-enc.der", "-passout", &passout]);
    assert!(std::fs::read_to_string(dir.join("rsa.key")).unwrap().starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    assert!(std::fs::read_to_string(dir.join("ec.key")).unwrap().starts_with("-----BEGIN EC PRIVATE KEY-----"));
    for (stem, pem_key) in [("rsa", "rsa.key"), ("ec", "ec.key")] {
        openssl(&["req", "-new", "-key", pem_key, "-subj", &format!("/CN={stem}"), "-out", &format!("{stem}.csr")]);
        let csr = dir.join(format!("{stem}.csr"));
        let crt = dir.join(format!("{stem}.crt"));
        ca.ambos(&["sign", csr.to_str().unwrap(), "--profile", "client", "--out", crt.to_str().unwrap()]).ok();
    }
    for (cert, key) in [("rsa", "rsa.key"), ("ec", "ec.key"), ("ec", "ec.der"), ("rsa", "rsa-enc.der")] {
        let out = dir.join(format!("{key}.p12"));
        let mut cmd = ca.cmd();
        cmd.args(["p12", "--cert"]).arg(dir.join(format!("{cert}.crt"))).arg("--key").arg(dir.join(key));
        cmd.arg("--out").arg(&out).arg("--password-file").arg(&pw).arg("--key-passphrase-file").arg(&key_pw);
        run(&mut cmd).ok();
        let list = keytool_list(&out, "changeit-not", true).ok().stdout;
        assert!(list.contains("PrivateKeyEntry") && list.contains("Certificate chain length: 2"), "{key}: {list}");
        let dump = openssl_pkcs12(&["-nodes"], &out, &format!("file:{}", pw.display())).ok().stdout;
        assert!(dump.contains("BEGIN PRIVATE KEY"), "{key}: {dump}");
    }
    // `ambos inspect` knows a DER key too.
    let shown = ca.ambos(&["inspect", dir.join("ec.der").to_str().unwrap()]).ok().stdout;
    assert!(shown.contains("ec-p256"), "{shown}");
    // An encrypted key without its passphrase: exit 2, one line naming the flag.
    let mut cmd = ca.cmd();
    cmd.args(["p12", "--cert"]).arg(dir.join("rsa.crt")).arg("--key").arg(dir.join("rsa-enc.der"));
    cmd.arg("--out").arg(dir.join("x.p12")).arg("--password-file").arg(&pw).env_remove("AMBOS_KEY_PASSPHRASE");
    run(&mut cmd).fails_with(2, "--key-passphrase-file");
    assert!(!dir.join("x.p12").exists());
}
