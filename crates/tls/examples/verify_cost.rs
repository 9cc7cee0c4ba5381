//! What a full (cache-miss) client-chain verification costs: webpki alone,
//! `Trust::verify` (webpki + the stricter RFC 5280 checks), and with CRLs
//! for both CA levels. For callgrind, which counts instructions however
//! the VM drifts:
//!   valgrind --tool=callgrind target/release/examples/verify_cost MODE N
//! with MODE = webpki | trust | trust-crl, and N = 0 for the setup alone.
use ambos_pki::{LeafRequest, NewCa, OffsetDateTime, Profile};
use ambos_tls::{Peer, RevocationPolicy, Trust, TrustOptions};
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map(String::as_str).unwrap_or("trust").to_string();
    let n: u32 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let now = OffsetDateTime::now_utc();
    let day = Duration::from_secs(86_400);
    let ca = NewCa::create("Cost", ambos_pki::KeyType::EcP256, day * 30, day * 30, now).unwrap();
    let root = ca.root_cert_der.clone();
    let root_key = ca.root_key;
    let authority =
        ambos_pki::Authority::new(&ca.intermediate_cert_der, ca.intermediate_key, &ca.root_cert_der).unwrap();
    let issued = authority.issue(&LeafRequest::new("client", Profile::Client), now).unwrap();
    let leaf = CertificateDer::from(issued.cert_der.clone());
    let inter = CertificateDer::from(authority.cert_der().to_vec());
    let root_authority = ambos_pki::Authority::new(&root, root_key, &root).unwrap();
    let crls: Vec<(String, CertificateRevocationListDer<'static>)> = [&authority, &root_authority]
        .iter()
        .map(|a| ("mem".to_string(), ambos_pki::build_crl(a, 1, &[], now, now + day).unwrap().into()))
        .collect();
    let with_crls = mode == "trust-crl";
    let trust = Trust::new(TrustOptions {
        ca_certs: vec![CertificateDer::from(root.clone())],
        crls: if with_crls { crls } else { Vec::new() },
        revocation: with_crls.then(RevocationPolicy::default),
        eku_if_present: false,
    })
    .unwrap();
    let anchor = webpki::anchor_from_trusted_cert(&CertificateDer::from(root.clone())).unwrap().to_owned();
    let algs = ambos_tls::provider().signature_verification_algorithms;
    let t = UnixTime::now();
    let started = Instant::now();
    for _ in 0..n {
        match mode.as_str() {
            "webpki" => {
                let ee = webpki::EndEntityCert::try_from(&leaf).unwrap();
                ee.verify_for_usage(
                    algs.all,
                    std::slice::from_ref(&anchor),
                    std::slice::from_ref(&inter),
                    t,
                    webpki::KeyUsage::client_auth(),
                    None,
                    None,
                )
                .unwrap();
            }
            _ => {
                trust.verify(&leaf, std::slice::from_ref(&inter), t, Peer::Client).unwrap();
            }
        }
    }
    if n > 0 {
        println!("{mode}: {:.1} us per verification ({n} runs)", started.elapsed().as_secs_f64() * 1e6 / n as f64);
    }
}
