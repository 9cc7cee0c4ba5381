//! `ambos quickstart`: the whole system on one machine, with nothing else
//! installed: a CA, a server and two client certificates, a tiny upstream,
//! `ambos proxy` with a policy that admits one client, and four probes that
//! show an allowed call, a call without a certificate, a call the policy
//! denies, and a call after revocation.
use crate::cmd::probe;
use crate::files::{ensure_dir, input_error, write_atomic, PRIVATE, PUBLIC};
use ambos_ca::{CertSelector, CertificateAuthority, InitOptions};
use ambos_pki::{pem_encode, Authority, KeyType, LeafRequest, Profile, RevocationReason};
use ambos_probe::ProbeOptions;
use ambos_store::AuthorityRole;
use clap::Args;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct QuickstartArgs {
    /// Where to put the CA, certificates, proxy.toml and audit log.
    #[arg(long, default_value = "ambos-quickstart")]
    dir: PathBuf,
    /// Stop everything after the demo instead of waiting for Ctrl-C.
    #[arg(long)]
    exit: bool,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn write_leaf(certs: &Path, signer: &Authority, issued: &ambos_pki::IssuedCert) -> anyhow::Result<()> {
    let key = issued.key.as_ref().expect("generated key");
    write_atomic(&certs.join(format!("{}.key", issued.name)), key.pkcs8_pem().as_bytes(), PRIVATE, true)?;
    write_atomic(
        &certs.join(format!("{}.crt", issued.name)),
        signer.chain_pem(&issued.cert_der).as_bytes(),
        PUBLIC,
        true,
    )
}

fn write_crls(ca: &mut CertificateAuthority, signer: &Authority, root: &Authority, path: &Path) -> anyhow::Result<()> {
    let week = Duration::from_secs(7 * 86_400);
    let mut pem = pem_encode("X509 CRL", &ca.crl(AuthorityRole::Intermediate, signer, week)?);
    pem.push_str(&pem_encode("X509 CRL", &ca.crl(AuthorityRole::Root, root, week)?));
    write_atomic(path, pem.as_bytes(), PUBLIC, true)
}

/// A tiny upstream that tells the caller what the proxy told it.
fn start_upstream() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(match stream.try_clone() {
                    Ok(s) => s,
                    Err(_) => return,
                });
                let mut writer = stream;
                loop {
                    let mut xfcc = String::from("(none)");
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).unwrap_or(0) == 0 {
                            return;
                        }
                        let h = h.trim_end();
                        if h.is_empty() {
                            break;
                        }
                        if let Some((k, v)) = h.split_once(':') {
                            if k.eq_ignore_ascii_case("x-forwarded-client-cert") {
                                xfcc = v.trim().to_string();
                            }
                        }
                    }
                    let body = format!("hello from the upstream service\nthe proxy says you are: {xfcc}\n");
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if writer.write_all(resp.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok(port)
}

pub fn run(a: QuickstartArgs) -> anyhow::Result<()> {
    let dir = &a.dir;
    if dir.join("ca").exists() {
        return Err(input_error(format!("{} already holds a quickstart: remove it or pass --dir", dir.display())));
    }
    let certs = dir.join("certs");
    ensure_dir(&certs)?;
    println!("== 1. a CA, a server certificate and two client certificates in {}", dir.display());
    let opts = InitOptions {
        name: "quickstart".into(),
        key_type: KeyType::EcP256,
        root_ttl: Duration::from_secs(10 * 365 * 86_400),
        intermediate_ttl: Duration::from_secs(5 * 365 * 86_400),
        passphrase: None, // a throwaway demo CA: keys unencrypted, mode 0600
        crl_url: None,
    };
    let mut ca = CertificateAuthority::init(&dir.join("ca"), &opts)?;
    let signer = ca.authority(AuthorityRole::Intermediate, None)?;
    let root = ca.authority(AuthorityRole::Root, None)?;
    let mut server = LeafRequest::new("localhost", Profile::Server);
    server.sans.push("ip:127.0.0.1".parse()?);
    let mut alice = LeafRequest::new("alice", Profile::Client);
    alice.sans.push("spiffe://quickstart.test/alice".parse()?);
    let mut bob = LeafRequest::new("bob", Profile::Client);
    bob.sans.push("spiffe://quickstart.test/bob".parse()?);
    for issued in ca.issue(&signer, &[server, alice, bob])? {
        write_leaf(&certs, &signer, &issued)?;
    }
    write_atomic(&certs.join("ca.crt"), pem_encode("CERTIFICATE", ca.root_der()).as_bytes(), PUBLIC, true)?;
    let crls = certs.join("crls.pem");
    write_crls(&mut ca, &signer, &root, &crls)?;

    println!("== 2. an upstream service and `ambos proxy` in front of it (only alice allowed)");
    let upstream = start_upstream()?;
    let port = free_port()?;
    let config_text = format!(
        r#"# written by ambos quickstart
[listen]
address = "127.0.0.1:{port}"

[tls]
cert = "certs/localhost.crt"
key = "certs/localhost.key"
client_ca = "certs/ca.crt"
crl = ["certs/crls.pem"]

[upstream]
url = "http://127.0.0.1:{upstream}"

[[route]]
path = "/**"
allow = ["spiffe://quickstart.test/alice"]

[audit]
path = "audit.jsonl"
"#
    );
    let config_path = dir.join("proxy.toml");
    write_atomic(&config_path, config_text.as_bytes(), PUBLIC, true)?;
    ambos_proxy::telemetry::install();
    let config = ambos_proxy::ProxyConfig::from_file(&config_path)?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let proxy = std::thread::spawn(move || -> anyhow::Result<()> {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        rt.block_on(ambos_proxy::run(config, async {
            let _ = stop_rx.await;
        }))?;
        Ok(())
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if proxy.is_finished() || Instant::now() > deadline {
            return Err(anyhow::anyhow!("the proxy did not start on 127.0.0.1:{port}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("   proxy on https://localhost:{port} -> upstream http://127.0.0.1:{upstream}\n");

    let target = format!("localhost:{port}");
    let probe = |who: Option<&str>| ProbeOptions {
        target: target.clone(),
        cert: who.map(|w| certs.join(format!("{w}.crt"))),
        key: who.map(|w| certs.join(format!("{w}.key"))),
        ca: Some(certs.join("ca.crt")),
        http_path: Some("/".into()),
        ..ProbeOptions::default()
    };
    let curl = |who: Option<&str>| {
        let id = who.map(|w| format!(" --cert {0}/{w}.crt --key {0}/{w}.key", certs.display())).unwrap_or_default();
        format!("curl --cacert {}/ca.crt{id} https://localhost:{port}/", certs.display())
    };
    let mut as_expected = true;
    let mut show = |title: &str, who: Option<&str>, expect_ok: bool| -> anyhow::Result<ambos_probe::Report> {
        println!("== {title}");
        println!("   by hand: {}", curl(who));
        let r = ambos_probe::probe(&probe(who))?;
        probe::print(&r);
        println!();
        as_expected &= r.ok == expect_ok;
        Ok(r)
    };
    show("3. alice, who is on the allow list: allowed", Some("alice"), true)?;
    show("4. no client certificate: refused in the TLS handshake", None, false)?;
    show("5. bob, a valid certificate but not on the allow list: 403 from the route policy", Some("bob"), false)?;
    ca.revoke(&CertSelector::Name("alice".into()), RevocationReason::KeyCompromise)?;
    write_crls(&mut ca, &signer, &root, &crls)?;
    // The proxy sees the new CRL file and reloads by itself.
    let deadline = Instant::now() + Duration::from_secs(5);
    while ambos_probe::probe(&probe(Some("alice")))?.ok && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    show("6. alice again, after `ambos revoke alice` and a new CRL: refused, revoked", Some("alice"), false)?;

    println!("== files");
    for (path, what) in [
        (dir.join("ca"), "the CA (SQLite store, keys unencrypted: a demo)"),
        (certs.join("ca.crt"), "root certificate: trust anchor for clients and the proxy"),
        (certs.join("localhost.crt"), "server certificate chain (+ localhost.key)"),
        (certs.join("alice.crt"), "client certificate spiffe://quickstart.test/alice (+ alice.key), now revoked"),
        (certs.join("bob.crt"), "client certificate spiffe://quickstart.test/bob (+ bob.key)"),
        (crls.clone(), "CRLs of the intermediate and the root"),
        (config_path.clone(), "the proxy's configuration"),
        (dir.join("audit.jsonl"), "one JSON line per decision the proxy made"),
    ] {
        println!("   {:<44} {what}", path.display().to_string());
    }
    println!(
        "   more: ambos --dir {} list; ambos probe localhost:{port} --ca {}/ca.crt --cert ... --key ...",
        dir.join("ca").display(),
        certs.display()
    );

    if !a.exit {
        println!("\nThe proxy keeps running on https://localhost:{port}; Ctrl-C stops it.");
        crate::process::small_runtime()?.block_on(crate::process::shutdown_signal());
    }
    let _ = stop_tx.send(());
    proxy.join().map_err(|_| anyhow::anyhow!("the proxy thread panicked"))??;
    if !as_expected {
        anyhow::bail!("the demo did not go as expected (see above)");
    }
    println!("quickstart: all four calls behaved as expected");
    Ok(())
}
