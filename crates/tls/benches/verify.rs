//! The client-verification hot path: identity extraction, and verifying a
//! client chain with a 1,000,000-entry CRL loaded — a cache miss (webpki
//! path building, then revocation over the path: a hash-table lookup per
//! certificate) and a cache hit (the chain's verdict, kept for its window).
//! Also the time to load that CRL into a `Trust`.
//! Run: cargo bench -p ambos-tls --bench verify  (CRL_ENTRIES=1000000 by default)
//! Smoke: cargo bench -p ambos-tls --bench verify -- --test
use ambos_pki::{build_crl, OffsetDateTime, Profile, RevocationReason, RevokedEntry, Serial};
use ambos_testpki::{LeafSpec, TestPki};
use ambos_tls::{ClientVerifier, Identity, Trust, TrustOptions};
use criterion::{criterion_group, criterion_main, Criterion};
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn entries() -> usize {
    std::env::var("CRL_ENTRIES").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000)
}

/// A `Trust` as the proxy builds one: the root as the only CA certificate,
/// and with CRLs, revocation checked over the whole path (the default).
fn trust(root: &[u8], crls: &[CertificateRevocationListDer<'static>]) -> Arc<Trust> {
    let opts = TrustOptions {
        ca_certs: vec![CertificateDer::from(root.to_vec())],
        crls: crls.iter().map(|c| ("bench".to_string(), c.clone())).collect(),
        revocation: (!crls.is_empty()).then(Default::default),
        eku_if_present: false,
    };
    Arc::new(Trust::new(opts).unwrap())
}

fn bench(c: &mut Criterion) {
    let now = OffsetDateTime::now_utc();
    let pki = TestPki::with_key_type("bench", ambos_pki::KeyType::EcP256, 365);
    let (authority, root) = (&pki.intermediate, &pki.root);
    let mut spec = LeafSpec::new("web", Profile::Client).sans(&["spiffe://acme.test/ns/prod/web", "dns:web.acme.test"]);
    spec.organizational_units = vec!["payments".into()];
    let leaf = pki.issue(&spec);
    let ee = CertificateDer::from(leaf.cert_der().to_vec());
    let chain = [CertificateDer::from(authority.cert_der().to_vec())];

    c.bench_function("identity_from_der", |b| b.iter(|| Identity::from_der(leaf.cert_der()).unwrap()));

    // The intermediate's CRL with n revoked serials (not ours), and the
    // root's (empty), so that the whole path has a CRL.
    let n = entries();
    let next = now + Duration::from_secs(86_400);
    let t = Instant::now();
    let revoked: Vec<RevokedEntry> = (0..n)
        .map(|_| RevokedEntry { serial: Serial::random(), revoked_at: now, reason: RevocationReason::KeyCompromise })
        .collect();
    let big = CertificateRevocationListDer::from(build_crl(authority, 1, &revoked, now, next).unwrap());
    let root_crl = CertificateRevocationListDer::from(build_crl(root, 1, &[], now, next).unwrap());
    eprintln!("built a {n}-entry CRL ({} bytes) in {:?}", big.len(), t.elapsed());
    let crls = [big, root_crl];
    let t = Instant::now();
    let with_crl = trust(&pki.root_der, &crls);
    eprintln!("loaded it into a Trust (one DER walk into a serial table) in {:?}", t.elapsed());
    let no_crl = trust(&pki.root_der, &[]);
    let at = UnixTime::now();

    let mut g = c.benchmark_group("crl_load");
    g.sample_size(10);
    g.bench_function(format!("trust_with_crl_{n}"), |b| b.iter(|| trust(&pki.root_der, &crls)));
    g.finish();

    let mut g = c.benchmark_group("verify_client_chain");
    // A miss: a fresh verifier (empty cache) over the same Trust, so the
    // CRLs' signatures, checked once per Trust, are not counted again.
    for (name, t) in [("miss_no_crl".to_string(), &no_crl), (format!("miss_crl_{n}"), &with_crl)] {
        ClientVerifier::new(t.clone(), true).verify_client_cert(&ee, &chain, at).unwrap();
        g.bench_function(name, |b| {
            b.iter(|| ClientVerifier::new(t.clone(), true).verify_client_cert(&ee, &chain, at).unwrap())
        });
    }
    for (name, t) in [("hit_no_crl".to_string(), &no_crl), (format!("hit_crl_{n}"), &with_crl)] {
        let v = ClientVerifier::new(t.clone(), true);
        v.verify_client_cert(&ee, &chain, at).unwrap();
        g.bench_function(name, |b| b.iter(|| v.verify_client_cert(&ee, &chain, at).unwrap()));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
