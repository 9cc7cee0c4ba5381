//! CRL reading never panics: random bytes and random mutations (bit flips,
//! truncations, inserted and deleted bytes) of a valid CRL, as DER and as
//! PEM, through `parse_crls` (the files layer), `CrlSet::load` (the DER
//! walk) and a `Trust` verifying a chain against what loaded. Errors are
//! fine; panics are not. Also plain tests of the files layer's PEM reading.
use ambos_pki::{build_crl, Authority, LeafRequest, NewCa, OffsetDateTime, Profile, RevocationReason, RevokedEntry};
use ambos_tls::{CrlScope, CrlSet, HandshakeFailure, Peer, RevocationPolicy, Trust, TrustOptions};
use proptest::prelude::*;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

struct Fixture {
    root: Vec<u8>,
    intermediate: Vec<u8>,
    /// Issued by the intermediate; `revoked_leaf` is on the CRL, `good_leaf` is not.
    good_leaf: Vec<u8>,
    revoked_leaf: Vec<u8>,
    /// The intermediate's CRL: 12 entries, with every reason code.
    crl: Vec<u8>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let now = OffsetDateTime::now_utc();
        let day = Duration::from_secs(86_400);
        let ca = NewCa::create("Fuzz", ambos_pki::KeyType::EcP256, day * 30, day * 30, now).unwrap();
        let authority = Authority::new(&ca.intermediate_cert_der, ca.intermediate_key, &ca.root_cert_der).unwrap();
        let issue = |name: &str| authority.issue(&LeafRequest::new(name, Profile::Client), now).unwrap();
        let (good, bad) = (issue("good"), issue("revoked"));
        let mut revoked: Vec<RevokedEntry> = (0..11)
            .map(|i| RevokedEntry {
                serial: ambos_pki::Serial::random(),
                revoked_at: now,
                reason: RevocationReason::ALL[i % RevocationReason::ALL.len()],
            })
            .collect();
        revoked.push(RevokedEntry {
            serial: bad.serial.clone(),
            revoked_at: now,
            reason: RevocationReason::Superseded,
        });
        let crl = build_crl(&authority, 3, &revoked, now, now + day).unwrap();
        Fixture {
            root: ca.root_cert_der,
            intermediate: authority.cert_der().to_vec(),
            good_leaf: good.cert_der,
            revoked_leaf: bad.cert_der,
            crl,
        }
    })
}

fn pem(der: &[u8]) -> Vec<u8> {
    ambos_pki::pem_encode("X509 CRL", der).into_bytes()
}

/// Every way the bytes reach the CRL code; panics are the only failure.
fn feed(bytes: &[u8]) {
    if let Ok(crls) = ambos_tls::parse_crls(bytes, Path::new("x")) {
        let named: Vec<_> = crls.into_iter().map(|c| ("x".to_string(), c)).collect();
        if let Ok(set) = CrlSet::load(&named) {
            let _ = (set.entries(), set.summaries());
        }
    }
    let _ = CrlSet::load(&[("x".to_string(), CertificateRevocationListDer::from(bytes.to_vec()))]);
}

/// Loads `der` into a `Trust` and verifies both leaves with it: whatever
/// the CRL became, verification must answer, not panic, and the revoked
/// leaf must never be accepted on a CRL that still verifies.
fn verify_with(der: &[u8]) {
    let f = fixture();
    let opts = TrustOptions {
        ca_certs: vec![CertificateDer::from(f.root.clone())],
        crls: vec![("x".to_string(), CertificateRevocationListDer::from(der.to_vec()))],
        revocation: Some(RevocationPolicy { scope: CrlScope::Leaf, ..Default::default() }),
        eku_if_present: false,
    };
    let Ok(trust) = Trust::new(opts) else { return };
    let chain = [CertificateDer::from(f.intermediate.clone())];
    let now = UnixTime::now();
    let _ = trust.verify(&CertificateDer::from(f.good_leaf.as_slice()), &chain, now, Peer::Client);
    let revoked = trust.verify(&CertificateDer::from(f.revoked_leaf.as_slice()), &chain, now, Peer::Client);
    assert!(revoked.is_err(), "a revoked leaf was accepted with a mutated CRL");
}

#[derive(Clone, Debug)]
enum Mutation {
    Flip(usize, u8),
    Set(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), 0u8..8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        2 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        2 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        1 => any::<usize>().prop_map(Mutation::Delete),
        1 => any::<usize>().prop_map(Mutation::Truncate),
    ]
}

/// Applies `ms` to `bytes`; positions are taken modulo the current length,
/// and (half the time) within its first 64 bytes, where the headers are.
fn mutate(mut bytes: Vec<u8>, ms: &[Mutation], headers: bool) -> Vec<u8> {
    for m in ms {
        let span = if headers { bytes.len().min(64) } else { bytes.len() };
        let at = |i: usize| if span == 0 { 0 } else { i % span };
        match *m {
            Mutation::Flip(i, bit) if !bytes.is_empty() => {
                let i = at(i);
                bytes[i] ^= 1 << bit;
            }
            Mutation::Set(i, b) if !bytes.is_empty() => {
                let i = at(i);
                bytes[i] = b;
            }
            Mutation::Insert(i, b) => {
                let i = at(i);
                bytes.insert(i, b);
            }
            Mutation::Delete(i) if !bytes.is_empty() => {
                let i = at(i);
                bytes.remove(i);
            }
            Mutation::Truncate(i) => bytes.truncate(i % (bytes.len() + 1)),
            _ => {}
        }
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        feed(&bytes);
        // The same as a DER SEQUENCE, and inside a PEM block.
        let mut seq = vec![0x30, 0x82, (bytes.len() >> 8) as u8, bytes.len() as u8];
        seq.extend_from_slice(&bytes);
        feed(&seq);
        feed(&pem(&bytes));
    }

    #[test]
    fn mutated_der(ms in proptest::collection::vec(mutation(), 1..5), headers in any::<bool>()) {
        let der = mutate(fixture().crl.clone(), &ms, headers);
        feed(&der);
        feed(&pem(&der));
    }

    #[test]
    fn mutated_pem(ms in proptest::collection::vec(mutation(), 1..5), headers in any::<bool>()) {
        feed(&mutate(pem(&fixture().crl), &ms, headers));
    }
}

proptest! {
    // Each case builds a Trust and verifies two chains: fewer cases.
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn mutated_crl_in_a_trust(ms in proptest::collection::vec(mutation(), 1..4), headers in any::<bool>()) {
        verify_with(&mutate(fixture().crl.clone(), &ms, headers));
    }
}

#[test]
fn the_unmutated_crl_loads_and_revokes() {
    let f = fixture();
    for bytes in [f.crl.clone(), pem(&f.crl)] {
        let crls = ambos_tls::parse_crls(&bytes, Path::new("x")).unwrap();
        assert_eq!(crls.len(), 1);
        assert_eq!(crls[0].as_ref(), f.crl.as_slice());
        let set = CrlSet::load(&[("x".to_string(), crls[0].clone())]).unwrap();
        assert_eq!(set.entries(), 12);
        assert_eq!(set.summaries()[0].problem, None);
    }
    let opts = TrustOptions {
        ca_certs: vec![CertificateDer::from(f.root.clone())],
        crls: vec![("x".to_string(), CertificateRevocationListDer::from(f.crl.clone()))],
        revocation: Some(RevocationPolicy { scope: CrlScope::Leaf, ..Default::default() }),
        eku_if_present: false,
    };
    let trust = Trust::new(opts).unwrap();
    let chain = [CertificateDer::from(f.intermediate.clone())];
    let now = UnixTime::now();
    trust.verify(&CertificateDer::from(f.good_leaf.as_slice()), &chain, now, Peer::Client).unwrap();
    let revoked = trust.verify(&CertificateDer::from(f.revoked_leaf.as_slice()), &chain, now, Peer::Client);
    assert!(matches!(revoked, Err(HandshakeFailure::Revoked)), "{revoked:?}");
}

// ---- The files layer's PEM and DER reading.

fn parse_err(bytes: &[u8]) -> String {
    ambos_tls::parse_crls(bytes, Path::new("crl.pem")).unwrap_err().to_string()
}

/// tag + definite length + contents (lengths below 65,536).
fn tlv(tag: u8, contents: &[u8]) -> Vec<u8> {
    let n = contents.len();
    let mut out = match n {
        0..=0x7f => vec![tag, n as u8],
        0x80..=0xff => vec![tag, 0x81, n as u8],
        _ => vec![tag, 0x82, (n >> 8) as u8, n as u8],
    };
    out.extend_from_slice(contents);
    out
}

#[test]
fn pem_with_several_blocks_and_other_labels() {
    let f = fixture();
    let other = ambos_pki::pem_encode("CERTIFICATE", &f.root);
    let crl = String::from_utf8(pem(&f.crl)).unwrap();
    let text = format!("leading text\n{other}{crl}between\r\n{}{other}trailing", crl.replace('\n', "\r\n"));
    let crls = ambos_tls::parse_crls(text.as_bytes(), Path::new("x")).unwrap();
    assert_eq!(crls.len(), 2);
    assert!(crls.iter().all(|c| c.as_ref() == f.crl.as_slice()));
    // Blocks of different lengths, every length modulo 3 (padding "", "=",
    // "=="), decode exactly, in order. Only the framing is checked here, so
    // a CertificateList shape with junk inside passes.
    let ders: Vec<Vec<u8>> = (0..7)
        .map(|n| [tlv(0x04, &vec![0xa5; n * 37]), tlv(0x30, &[]), tlv(0x03, &[0, 0xff])].concat())
        .map(|body| tlv(0x30, &[tlv(0x30, &body[..]), tlv(0x30, &[]), tlv(0x03, &[0])].concat()))
        .collect();
    assert_eq!(ders.iter().map(|d| d.len() % 3).collect::<std::collections::BTreeSet<_>>().len(), 3);
    let text: Vec<u8> = ders.iter().flat_map(|d| pem(d)).collect();
    let crls = ambos_tls::parse_crls(&text, Path::new("x")).unwrap();
    assert_eq!(crls.iter().map(|c| c.as_ref().to_vec()).collect::<Vec<_>>(), ders);
}

#[test]
fn load_crls_reads_pem_and_der_files() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let (pem_path, der_path) = (dir.path().join("crl.pem"), dir.path().join("crl.der"));
    std::fs::write(&pem_path, pem(&f.crl)).unwrap();
    std::fs::write(&der_path, &f.crl).unwrap();
    for p in [&pem_path, &der_path] {
        let crls = ambos_tls::load_crls(p).unwrap();
        assert_eq!(crls.len(), 1);
        assert_eq!(crls[0].as_ref(), f.crl.as_slice());
    }
    let missing = ambos_tls::load_crls(&dir.path().join("nope.pem")).unwrap_err().to_string();
    assert!(missing.contains("nope.pem"), "{missing}");
}

#[test]
fn files_layer_errors_name_the_source() {
    let f = fixture();
    let text = String::from_utf8(pem(&f.crl)).unwrap();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        // No CRL at all.
        (b"".to_vec(), "no X509 CRL found"),
        (b"hello".to_vec(), "no X509 CRL found"),
        (ambos_pki::pem_encode("CERTIFICATE", &f.root).into_bytes(), "no X509 CRL found"),
        // A PEM block cut short, or its END line wrong.
        (text.as_bytes()[..text.len() - 10].to_vec(), "truncated or unterminated PEM block"),
        (text.as_bytes()[..text.len() / 2].to_vec(), "truncated or unterminated PEM block"),
        (text.replace("END X509 CRL", "END X509 CRX").into_bytes(), "truncated or unterminated PEM block"),
        (format!("{text}-----BEGIN X509 CRL-----\nAAAA\n").into_bytes(), "truncated or unterminated PEM block"),
        (b"-----BEGIN X509 CRL\nAAAA\n-----END X509 CRL-----\n".to_vec(), "bad BEGIN line"),
        // Bad base64: a stray character, data after padding, bad padding.
        (text.replacen('M', "*", 1).into_bytes(), "bad base64"),
        (b"-----BEGIN X509 CRL-----\nMA==MA==\n-----END X509 CRL-----\n".to_vec(), "bad base64"),
        (b"-----BEGIN X509 CRL-----\nMAA\n-----END X509 CRL-----\n".to_vec(), "bad base64"),
        (b"-----BEGIN X509 CRL-----\nMB==\n-----END X509 CRL-----\n".to_vec(), "bad base64"),
        // DER that is not a whole CertificateList.
        (f.crl[..f.crl.len() - 1].to_vec(), "malformed CRL"),
        ([f.crl.as_slice(), &[0]].concat(), "malformed CRL"),
        (pem(&f.crl[..f.crl.len() - 1]), "malformed CRL"),
        (vec![0x30, 0x00], "malformed CRL"),
    ];
    for (bytes, want) in cases {
        let e = parse_err(&bytes);
        assert!(e.contains("crl.pem") && e.contains(want), "{e} (wanted '{want}')");
    }
}

#[test]
fn entries_are_checked_when_loaded_not_when_read() {
    // A CertificateList whose entry is garbage: the files layer (framing
    // only) takes it; the single walk in CrlSet::load refuses it, naming it.
    let f = fixture();
    let bad_entry = f.crl.windows(3).position(|w| w == [0x30, 0x21, 0x02]).expect("an entry");
    let mut der = f.crl.clone();
    der[bad_entry + 2] = 0x04; // serial no longer an INTEGER
    let crls = ambos_tls::parse_crls(&der, Path::new("crl.pem")).unwrap();
    let e = CrlSet::load(&[("crl.pem".to_string(), crls[0].clone())]).unwrap_err().to_string();
    assert!(e.contains("crl.pem") && e.contains("malformed CRL"), "{e}");
}
