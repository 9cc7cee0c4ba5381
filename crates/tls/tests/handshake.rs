//! A real handshake over 127.0.0.1 between a rustls client and a server
//! config built by `ServerTlsConfig::load`, with certificates from the
//! generated test PKI (ambos-testpki).
use ambos_pki::Profile;
use ambos_testpki::{Leaf, LeafSpec, TestPki};
use ambos_tls::{ClientAuth, HandshakeFailure, Identity, ServerTlsConfig, TlsVersion};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

struct Pki {
    dir: tempfile::TempDir,
    root: Vec<u8>,
    pki: TestPki,
}

type ClientCert = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// A leaf's chain and key as a rustls client sends them.
fn client_cert(leaf: &Leaf) -> ClientCert {
    let chain = leaf.chain.iter().map(|c| CertificateDer::from(c.clone())).collect();
    (chain, PrivateKeyDer::Pkcs8(leaf.key_pkcs8_der.clone().into()))
}

impl Pki {
    fn new() -> Pki {
        let pki = TestPki::new("Hs");
        let dir = tempfile::tempdir().unwrap();
        pki.write_root(dir.path());
        Pki { dir, root: pki.root_der.clone(), pki }
    }

    /// Issues and writes NAME.crt / NAME.key; returns chain and key for a client.
    fn issue(&self, name: &str, profile: Profile, sans: &[&str]) -> ClientCert {
        let leaf = self.pki.issue(&LeafSpec::new(name, profile).sans(sans));
        leaf.write(self.dir.path(), name);
        client_cert(&leaf)
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    fn server(&self, client_auth: ClientAuth) -> ServerTlsConfig {
        self.issue("localhost", Profile::Server, &[]);
        ServerTlsConfig {
            cert: self.path("localhost.crt"),
            key: self.path("localhost.key"),
            client_ca: vec![self.path("ca.crt")],
            crl: Vec::new(),
            revocation: None,
            client_auth,
            min_version: TlsVersion::Tls12,
            alpn: vec![b"http/1.1".to_vec()],
            session_resumption: true,
        }
    }
}

/// Runs one handshake; returns the client's negotiated group and the server's result.
fn handshake(
    server: Arc<rustls::ServerConfig>,
    root: &[u8],
    client: Option<ClientCert>,
) -> (Option<String>, Result<Option<Identity>, HandshakeFailure>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server_thread = std::thread::spawn(move || {
        let (mut sock, _) = listener.accept().unwrap();
        let mut conn = rustls::ServerConnection::new(server).unwrap();
        let res = loop {
            if !conn.is_handshaking() {
                break Ok(());
            }
            if let Err(e) = conn.complete_io(&mut sock) {
                break Err(HandshakeFailure::from_io(&e));
            }
        };
        let res =
            res.map(|()| conn.peer_certificates().and_then(|c| c.first()).map(|c| Identity::from_der(c).unwrap()));
        let _ = conn.complete_io(&mut sock);
        res
    });
    ambos_tls::install_default_provider();
    let roots = ambos_tls::root_store_of([CertificateDer::from(root.to_vec())], Path::new("root")).unwrap();
    let client = match client {
        Some((chain, key)) => ambos_tls::ClientCert::Chain(chain, key),
        None => ambos_tls::ClientCert::None,
    };
    let config = ambos_tls::client_config(ambos_tls::ServerAuth::Roots(roots), client).unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap()).unwrap();
    let mut sock = std::net::TcpStream::connect(addr).unwrap();
    let mut group = None;
    while conn.is_handshaking() {
        if conn.complete_io(&mut sock).is_err() {
            break;
        }
    }
    if !conn.is_handshaking() {
        group = conn.negotiated_key_exchange_group().map(|g| format!("{:?}", g.name()));
        // TLS 1.3: the server judges our certificate after our Finished; read its verdict.
        let _ = conn.writer().write_all(b"x");
        let _ = conn.complete_io(&mut sock);
        let mut buf = [0u8; 1];
        let _ = sock.set_read_timeout(Some(Duration::from_millis(500)));
        let _ = conn.complete_io(&mut sock);
        let _ = conn.reader().read(&mut buf);
    }
    (group, server_thread.join().unwrap())
}

#[test]
fn post_quantum_hybrid_is_negotiated_and_identity_is_extracted() {
    let pki = Pki::new();
    let loaded = pki.server(ClientAuth::Required).load(&[]).unwrap();
    let client =
        pki.issue("web", Profile::Client, &["spiffe://acme.test/web", "dns:web.acme.test", "email:w@acme.test"]);
    let (group, result) = handshake(loaded.config, &pki.root, Some(client));
    assert_eq!(group.as_deref(), Some("X25519MLKEM768"));
    let id = result.unwrap().expect("client identity");
    assert_eq!(id.spiffe.as_deref(), Some("spiffe://acme.test/web"));
    assert_eq!(id.dns, vec!["web.acme.test".to_string()]);
    assert_eq!(id.emails, vec!["w@acme.test".to_string()]);
    assert_eq!(id.cn.as_deref(), Some("web"));
    assert_eq!(id.subject, "CN=web,O=Hs");
    assert_eq!(id.sha256.len(), 64);
}

#[test]
fn missing_or_wrong_purpose_client_certificates_are_named() {
    let pki = Pki::new();
    let loaded = pki.server(ClientAuth::Required).load(&[]).unwrap();
    let (_, result) = handshake(loaded.config.clone(), &pki.root, None);
    assert_eq!(result.unwrap_err(), HandshakeFailure::NoClientCertificate);
    let server_cert = client_cert(&pki.pki.wrong_eku("not-a-client"));
    let (_, result) = handshake(loaded.config, &pki.root, Some(server_cert));
    assert_eq!(result.unwrap_err(), HandshakeFailure::WrongExtendedKeyUsage);
    // Optional client auth lets anonymous clients finish the handshake.
    let optional = pki.server(ClientAuth::Optional).load(&[]).unwrap();
    let (_, result) = handshake(optional.config, &pki.root, None);
    assert_eq!(result.unwrap(), None);
}

#[test]
fn a_key_that_does_not_match_the_certificate_is_refused_naming_the_file() {
    let pki = Pki::new();
    let mut cfg = pki.server(ClientAuth::Required);
    pki.issue("other", Profile::Server, &[]);
    cfg.key = pki.path("other.key");
    let err = cfg.load(&[]).err().expect("mismatch").to_string();
    assert!(err.contains("other.key") && err.contains("does not match"), "{err}");
    assert!(Path::new(&cfg.cert).exists());
}

#[test]
fn a_chain_listed_intermediate_first_is_named_out_of_order_not_a_key_mismatch() {
    let pki = Pki::new();
    let mut cfg = pki.server(ClientAuth::Required);
    let leaf = pki.pki.issue(&LeafSpec::new("swapped", Profile::Server));
    let swapped: String = leaf.chain.iter().rev().map(|c| ambos_pki::pem_encode("CERTIFICATE", c)).collect();
    std::fs::write(pki.path("swapped.crt"), swapped).unwrap();
    std::fs::write(pki.path("swapped.key"), leaf.key_pem()).unwrap();
    (cfg.cert, cfg.key) = (pki.path("swapped.crt"), pki.path("swapped.key"));
    let err = cfg.load(&[]).err().expect("out of order").to_string();
    assert!(err.starts_with(&format!("{}: the chain is out of order", cfg.cert.display())), "{err}");
    assert!(err.contains("the first certificate must be the leaf (the key matches certificate 2, CN=swapped"), "{err}");
    // The same pair, leaf first, loads.
    leaf.write(pki.dir.path(), "swapped");
    assert!(cfg.load(&[]).is_ok());
}

mod cache {
    use super::*;
    use ambos_tls::{ClientVerifier, RevocationPolicy, Trust, TrustOptions};
    use rustls::server::danger::ClientCertVerifier;
    use rustls_pki_types::{CertificateRevocationListDer, UnixTime};

    fn verifier(root: &[u8], crls: Vec<CertificateRevocationListDer<'static>>) -> ClientVerifier {
        let revocation =
            (!crls.is_empty()).then(|| RevocationPolicy { scope: ambos_tls::CrlScope::Leaf, ..Default::default() });
        let trust = Trust::new(TrustOptions {
            ca_certs: vec![CertificateDer::from(root.to_vec())],
            crls: crls.into_iter().map(|c| ("test".to_string(), c)).collect(),
            revocation,
            eku_if_present: false,
        })
        .unwrap();
        ClientVerifier::new(Arc::new(trust), true)
    }

    fn at(offset_secs: i64) -> UnixTime {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
        UnixTime::since_unix_epoch(Duration::from_secs((now + offset_secs) as u64))
    }

    #[test]
    fn a_cached_chain_is_still_checked_for_expiry_and_revocation() {
        let pki = Pki::new();
        let leaf = pki.pki.client("web", &[]);
        let (chain, _) = client_cert(&leaf);
        let (ee, rest) = chain.split_first().unwrap();

        // Expiry: verified now (a miss), refused as expired two days later.
        let v = verifier(&pki.root, Vec::new());
        v.verify_client_cert(ee, rest, at(0)).unwrap();
        v.verify_client_cert(ee, rest, at(0)).unwrap();
        let err = v.verify_client_cert(ee, rest, at(2 * 86_400)).unwrap_err();
        assert!(matches!(err, rustls::Error::InvalidCertificate(rustls::CertificateError::Expired)), "{err:?}");

        let revoke = |by: &TestPki| CertificateRevocationListDer::from(by.crl(&[&leaf]));
        let v = verifier(&pki.root, vec![revoke(&pki.pki)]);
        for _ in 0..2 {
            let err = v.verify_client_cert(ee, rest, at(0)).unwrap_err();
            assert!(matches!(err, rustls::Error::InvalidCertificate(rustls::CertificateError::Revoked)), "{err:?}");
        }
        // A CRL with the same issuer name but signed by another key is not used:
        // the status is unknown, and that refuses.
        let impostor = Pki::new();
        let v = verifier(&pki.root, vec![revoke(&impostor.pki)]);
        for _ in 0..2 {
            let err = HandshakeFailure::from_rustls(&v.verify_client_cert(ee, rest, at(0)).unwrap_err());
            assert_eq!(err.label(), "crl_unusable", "{err}");
        }
    }

    /// Every identity the generated PKI makes gets its own verdict, twice
    /// (the second answer may come from the cache and must agree).
    #[test]
    fn each_generated_identity_gets_its_verdict() {
        let pki = Pki::new();
        let (revoked, crl) = pki.pki.revoked("gone");
        let cases = [
            (pki.pki.client("ok", &[]), None),
            (pki.pki.expired("old"), Some("expired")),
            (pki.pki.not_yet_valid("early"), Some("not_yet_valid")),
            (pki.pki.other_ca("stranger"), Some("unknown_ca")),
            // Same names, other keys: the path is found, its signature fails.
            (TestPki::new(&pki.pki.name).client("impostor", &[]), Some("bad_chain_signature")),
            (pki.pki.leaf_only("alone"), Some("incomplete_chain")),
            (revoked, Some("revoked")),
        ];
        let v = verifier(&pki.root, vec![CertificateRevocationListDer::from(crl)]);
        for (leaf, want) in &cases {
            let (chain, _) = client_cert(leaf);
            for _ in 0..2 {
                let got =
                    v.verify_client_cert(&chain[0], &chain[1..], at(0)).map_err(|e| HandshakeFailure::from_rustls(&e));
                assert_eq!(got.as_ref().err().map(|e| e.label()), *want, "{:?}", leaf.not_before);
            }
        }
    }

    #[test]
    fn different_bytes_never_hit_the_cache() {
        let pki = Pki::new();
        let (chain, _) = pki.issue("web", Profile::Client, &[]);
        let v = verifier(&pki.root, Vec::new());
        v.verify_client_cert(&chain[0], &chain[1..], at(0)).unwrap();
        let mut forged = chain[0].to_vec();
        let n = forged.len();
        forged[n - 3] ^= 0x01; // inside the signature
        let err = v.verify_client_cert(&CertificateDer::from(forged), &chain[1..], at(0)).unwrap_err();
        assert!(matches!(err, rustls::Error::InvalidCertificate(_)), "{err:?}");
        // Same leaf without its intermediate is a different chain: verified afresh, and fails.
        let err = HandshakeFailure::from_rustls(&v.verify_client_cert(&chain[0], &[], at(0)).unwrap_err());
        assert_eq!(err.label(), "incomplete_chain", "{err}");
    }
}
