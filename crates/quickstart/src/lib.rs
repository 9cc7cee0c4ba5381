//! `ambos quickstart` as steps `narration` tells: a CA, a server and two
//! client certificates, a tiny upstream, `ambos proxy` with a policy that
//! admits one client, calls through it with `ambos_probe`, an access token
//! bound to alice's certificate that is worthless when bob replays it, and
//! a revocation the running proxy picks up from its CRL file.
#![forbid(unsafe_code)]

use ambos_ca::{CaError, CertSelector, CertificateAuthority, InitOptions};
use ambos_files::{write_atomic, write_identity, FilesError, PUBLIC};
use ambos_pki::{pem_encode, Authority, LeafRequest, PkiError, Profile, RevocationReason};
use ambos_probe::{ProbeError, ProbeOptions, Report};
use ambos_proxy::ProxyError;
use ambos_store::AuthorityRole;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use thiserror::Error;

mod narration;
pub use narration::{narrate, Narrated, QuickstartOptions};

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum QuickstartError {
    #[error(transparent)]
    Ca(#[from] CaError),
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error(transparent)]
    Files(#[from] FilesError),
    #[error(transparent)]
    Proxy(#[from] ProxyError),
    #[error(transparent)]
    Probe(#[from] ProbeError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("the proxy did not start on 127.0.0.1:{0}")]
    ProxyDidNotStart(u16),
    #[error("the proxy thread panicked")]
    ProxyPanicked,
    #[error("{} already holds a quickstart: remove it or pass --dir", .0.display())]
    AlreadyThere(PathBuf),
    #[error("the demo did not go as expected (see above)")]
    NotAsExpected,
}

impl QuickstartError {
    /// Whether what the caller gave was wrong (exit code 2), not the demo (1).
    pub fn is_input(&self) -> bool {
        match self {
            QuickstartError::Ca(e) => e.is_input(),
            QuickstartError::Pki(e) => e.is_input(),
            QuickstartError::Files(e) => e.is_input(),
            QuickstartError::Proxy(e) => e.is_input(),
            QuickstartError::Probe(e) => e.is_input(),
            QuickstartError::AlreadyThere(_) => true,
            _ => false,
        }
    }
}

pub type Result<T> = std::result::Result<T, QuickstartError>;

/// The demo's CA and files under one directory, and the proxy once started.
pub struct Demo {
    pub dir: PathBuf,
    pub certs: PathBuf,
    ca: CertificateAuthority,
    signer: Authority,
    root: Authority,
    proxy: Option<RunningProxy>,
    /// Alice's access token for `/pay/` (bound to her certificate).
    pub alice_token: String,
}

/// The `iss` of the demo's access tokens (made in-process: no `ambos serve`).
const ISSUER: &str = "https://quickstart.test";

/// `ambos proxy` on a thread of its own, and the upstream behind it.
pub struct RunningProxy {
    pub port: u16,
    pub upstream: u16,
    stop: ambos_proxy::Trigger,
    thread: JoinHandle<Result<()>>,
}

impl Demo {
    /// Step 1: CA "quickstart" in DIR/ca (keys unencrypted: a throwaway demo,
    /// mode 0600), certificates for localhost, alice and bob, the root and
    /// both CRLs in DIR/certs, which must exist.
    pub fn create(dir: &Path) -> Result<Demo> {
        let certs = dir.join("certs");
        let mut ca = CertificateAuthority::init(&dir.join("ca"), &InitOptions::unencrypted("quickstart"))?;
        let signer = ca.authority(AuthorityRole::Intermediate, None)?;
        let root = ca.authority(AuthorityRole::Root, None)?;
        let mut server = LeafRequest::new("localhost", Profile::Server);
        server.sans.push("ip:127.0.0.1".parse()?);
        let mut alice = LeafRequest::new("alice", Profile::Client);
        alice.sans.push("spiffe://quickstart.test/alice".parse()?);
        let mut bob = LeafRequest::new("bob", Profile::Client);
        bob.sans.push("spiffe://quickstart.test/bob".parse()?);
        let mut alice_der = Vec::new();
        for issued in ca.issue(&signer, &[server, alice, bob])? {
            if issued.name == "alice" {
                alice_der = issued.cert_der.clone();
            }
            let key = issued.key.as_ref().ok_or(FilesError::NoGeneratedKey)?;
            let (key_path, cert_path) =
                (certs.join(format!("{}.key", issued.name)), certs.join(format!("{}.crt", issued.name)));
            write_identity(&key_path, key, &cert_path, &signer.chain_pem(&issued.cert_der))?;
        }
        write_atomic(&certs.join("ca.crt"), pem_encode("CERTIFICATE", ca.root_der()).as_bytes(), PUBLIC, true)?;
        // A grant, the signing key's JWKS for the proxy, and alice's token.
        ca.allow("spiffe://quickstart.test/alice", "payments", &["pay".into()])?;
        let keys = ca.token_keys(None)?;
        write_atomic(&certs.join("jwks.json"), keys.jwks.as_bytes(), PUBLIC, true)?;
        let granted = ca.grant_for(&alice_der, &ambos_ca::oauth::TokenRequest::default())?;
        let alice_token = keys.signer.sign(ISSUER, granted, &alice_der, Duration::from_secs(3600))?.token;
        write_atomic(&certs.join("alice.token"), alice_token.as_bytes(), PUBLIC, true)?;
        let mut demo = Demo { dir: dir.to_path_buf(), certs, ca, signer, root, proxy: None, alice_token };
        demo.write_crls()?;
        Ok(demo)
    }

    pub fn crls_path(&self) -> PathBuf {
        self.certs.join("crls.pem")
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("proxy.toml")
    }

    fn write_crls(&mut self) -> Result<()> {
        let week = Duration::from_secs(7 * 86_400);
        let mut pem = pem_encode("X509 CRL", &self.ca.crl(AuthorityRole::Intermediate, &self.signer, week)?);
        pem.push_str(&pem_encode("X509 CRL", &self.ca.crl(AuthorityRole::Root, &self.root, week)?));
        Ok(write_atomic(&self.crls_path(), pem.as_bytes(), PUBLIC, true)?)
    }

    /// Step 2: the upstream and `ambos proxy` in front of it (only alice
    /// allowed), from a proxy.toml written to DIR; returns once it accepts.
    pub fn start_proxy(&mut self) -> Result<&RunningProxy> {
        let upstream = start_upstream()?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        write_atomic(&self.config_path(), proxy_toml(port, upstream).as_bytes(), PUBLIC, true)?;
        let config = ambos_proxy::ProxyConfig::from_file(&self.config_path())?;
        let (stop, control) = ambos_proxy::Control::manual();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
            rt.block_on(ambos_proxy::run(config, control))?;
            Ok(())
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if thread.is_finished() || Instant::now() > deadline {
                return Err(QuickstartError::ProxyDidNotStart(port));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(self.proxy.insert(RunningProxy { port, upstream, stop, thread }))
    }

    fn port(&self) -> u16 {
        self.proxy.as_ref().map_or(0, |p| p.port)
    }

    /// A probe of the proxy as `who` (alice, bob; `None`: no certificate) with `GET /`.
    pub fn probe_options(&self, who: Option<&str>) -> ProbeOptions {
        ProbeOptions {
            target: format!("localhost:{}", self.port()),
            cert: who.map(|w| self.certs.join(format!("{w}.crt"))),
            key: who.map(|w| self.certs.join(format!("{w}.key"))),
            ca: Some(self.certs.join("ca.crt")),
            http_path: Some("/".into()),
            ..ProbeOptions::default()
        }
    }

    /// The same call with curl, for the reader to try by hand.
    pub fn curl(&self, who: Option<&str>) -> String {
        let certs = self.certs.display();
        let id = who.map(|w| format!(" --cert {certs}/{w}.crt --key {certs}/{w}.key")).unwrap_or_default();
        format!("curl --cacert {certs}/ca.crt{id} https://localhost:{}/", self.port())
    }

    pub fn call(&self, who: Option<&str>) -> Result<Report> {
        Ok(ambos_probe::probe(&self.probe_options(who))?)
    }

    /// `who` calls `/pay/` with alice's access token, and the curl for it.
    pub fn call_with_alice_token(&self, who: &str) -> Result<(Report, String)> {
        let opts = ProbeOptions {
            http_path: Some("/pay/".into()),
            token: Some(self.alice_token.clone()),
            ..self.probe_options(Some(who))
        };
        let header = format!(" -H \"Authorization: Bearer $(cat {}/alice.token)\" https://", self.certs.display());
        let curl = self.curl(Some(who)).replace(" https://", &header);
        Ok((ambos_probe::probe(&opts)?, format!("{curl}pay/")))
    }

    /// Revokes alice and publishes new CRLs; the proxy sees the new CRL file
    /// and reloads by itself: waits (at most 5 s) until it refuses her.
    pub fn revoke_alice(&mut self) -> Result<()> {
        self.ca.revoke(&CertSelector::Name("alice".into()), RevocationReason::KeyCompromise)?;
        self.write_crls()?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.call(Some("alice"))?.ok && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// Every file the demo made and what it is.
    pub fn files(&self) -> Vec<(PathBuf, &'static str)> {
        let certs = &self.certs;
        vec![
            (self.dir.join("ca"), "the CA (SQLite store, keys unencrypted: a demo)"),
            (certs.join("ca.crt"), "root certificate: trust anchor for clients and the proxy"),
            (certs.join("localhost.crt"), "server certificate chain (+ localhost.key)"),
            (certs.join("alice.crt"), "client certificate spiffe://quickstart.test/alice (+ alice.key), now revoked"),
            (certs.join("bob.crt"), "client certificate spiffe://quickstart.test/bob (+ bob.key)"),
            (certs.join("alice.token"), "alice's access token for /pay/, bound to her certificate"),
            (certs.join("jwks.json"), "the public key that signed it (JWKS), read by the proxy"),
            (self.crls_path(), "CRLs of the intermediate and the root"),
            (self.config_path(), "the proxy's configuration"),
            (self.dir.join("audit.jsonl"), "one JSON line per decision the proxy made"),
        ]
    }

    /// Stops the proxy (graceful) and reports how its run ended.
    pub fn stop(self) -> Result<()> {
        let Some(p) = self.proxy else { return Ok(()) };
        p.stop.stop();
        p.thread.join().map_err(|_| QuickstartError::ProxyPanicked)??;
        Ok(())
    }
}

fn proxy_toml(port: u16, upstream: u16) -> String {
    format!(
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

# Any client certificate, but only with an access token bound to it.
[[route]]
path = "/pay/**"
allow = ["any"]
token = {{ issuer = "{ISSUER}", jwks = "certs/jwks.json", audience = "payments", scopes = ["pay"] }}

[[route]]
path = "/**"
allow = ["spiffe://quickstart.test/alice"]

[audit]
path = "audit.jsonl"
"#
    )
}

/// A tiny upstream that tells the caller what the proxy told it.
fn start_upstream() -> std::io::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || answer(stream));
        }
    });
    Ok(port)
}

/// Answers each request on a keep-alive connection with the XFCC header it got.
fn answer(stream: TcpStream) {
    let Ok(read_half) = stream.try_clone() else { return };
    let (mut reader, mut writer) = (BufReader::new(read_half), stream);
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
        let resp =
            format!("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        if writer.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn the_upstream_echoes_the_forwarded_identity_per_request() {
        let port = start_upstream().unwrap();
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nX-Forwarded-Client-Cert: URI=spiffe://q/alice\r\n\r\nGET / HTTP/1.1\r\n\r\n")
            .unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut got = String::new();
        s.read_to_string(&mut got).unwrap();
        let bodies: Vec<_> = got.split("HTTP/1.1 200 OK").skip(1).collect();
        assert_eq!(bodies.len(), 2, "{got}");
        assert!(bodies[0].ends_with("the proxy says you are: URI=spiffe://q/alice\n"), "{got}");
        assert!(bodies[1].ends_with("the proxy says you are: (none)\n"), "{got}");
    }

    #[test]
    fn the_demo_pki_has_a_server_two_clients_the_root_and_both_crls() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("certs")).unwrap();
        let demo = Demo::create(dir.path()).unwrap();
        for name in ["localhost", "alice", "bob"] {
            let chain = std::fs::read_to_string(demo.certs.join(format!("{name}.crt"))).unwrap();
            assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2, "{name}: leaf and intermediate");
            assert!(demo.certs.join(format!("{name}.key")).exists());
        }
        let crls = std::fs::read_to_string(demo.crls_path()).unwrap();
        assert_eq!(crls.matches("BEGIN X509 CRL").count(), 2);
        assert_eq!(demo.files().len(), 10);
        assert!(demo.files().iter().all(|(path, _)| path.starts_with(&demo.dir)));
        // Alice's token is bound to her certificate and verifies with the JWKS file.
        let jwks: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(demo.certs.join("jwks.json")).unwrap()).unwrap();
        assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(1));
        assert_eq!(std::fs::read_to_string(demo.certs.join("alice.token")).unwrap(), demo.alice_token);
        assert!(demo.curl(Some("bob")).contains("--cert "), "{}", demo.curl(Some("bob")));
        assert_eq!(demo.probe_options(None).cert, None);
        demo.stop().unwrap();
    }

    #[test]
    fn the_proxy_config_admits_alice_only_and_names_the_ports() {
        let text = proxy_toml(8443, 9000);
        assert!(text.contains("address = \"127.0.0.1:8443\""));
        assert!(text.contains("url = \"http://127.0.0.1:9000\""));
        assert!(text.contains("allow = [\"spiffe://quickstart.test/alice\"]"));
    }
}
