//! The client-verification hot path: identity extraction, and verifying a
//! client chain with a 1,000,000-entry CRL loaded (a cache miss goes to
//! webpki, whose owned CRL is a BTreeMap: O(log n); a hit re-checks the
//! CRL in `RevokedSet`, a hash map: O(1)). Also the time to load that CRL.
//! Run: cargo bench -p ambos-tls --bench verify  (CRL_ENTRIES=1000000 by default)
use ambos_pki::{
    build_crl, Authority, LeafRequest, NewCa, OffsetDateTime, Profile, RevocationReason, RevokedEntry, Serial,
};
use ambos_tls::{CachingClientVerifier, Identity, RevokedSet};
use criterion::{criterion_group, criterion_main, Criterion};
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn entries() -> usize {
    std::env::var("CRL_ENTRIES").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000)
}

fn verifier(root: &[u8], crls: &[CertificateRevocationListDer<'static>]) -> Arc<CachingClientVerifier> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(root.to_vec())).unwrap();
    // As the proxy does: CRLs go to our verifier only.
    let b = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), ambos_tls::provider());
    Arc::new(CachingClientVerifier::new(
        b.build().unwrap(),
        RevokedSet::from_crls(crls, &[CertificateDer::from(root.to_vec())]),
    ))
}

fn bench(c: &mut Criterion) {
    let now = OffsetDateTime::now_utc();
    let ca = NewCa::create(
        "bench",
        ambos_pki::KeyType::EcP256,
        Duration::from_secs(86_400 * 365),
        Duration::from_secs(86_400 * 365),
        now,
    )
    .unwrap();
    let authority = Authority::new(&ca.intermediate_cert_der, ca.intermediate_key, &ca.root_cert_der).unwrap();
    let mut req = LeafRequest::new("web", Profile::Client);
    req.sans = vec!["spiffe://acme.test/ns/prod/web".parse().unwrap(), "dns:web.acme.test".parse().unwrap()];
    req.organizational_units = vec!["payments".into()];
    let leaf = authority.issue(&req, now).unwrap();
    let ee = CertificateDer::from(leaf.cert_der.clone());
    let chain = [CertificateDer::from(authority.cert_der().to_vec())];

    c.bench_function("identity_from_der", |b| b.iter(|| Identity::from_der(&leaf.cert_der).unwrap()));

    // A CRL with n revoked serials (not ours).
    let n = entries();
    let t = Instant::now();
    let revoked: Vec<RevokedEntry> = (0..n)
        .map(|_| RevokedEntry { serial: Serial::random(), revoked_at: now, reason: RevocationReason::KeyCompromise })
        .collect();
    let crl = CertificateRevocationListDer::from(
        build_crl(&authority, 1, &revoked, now, now + Duration::from_secs(86_400)).unwrap(),
    );
    eprintln!("built a {n}-entry CRL ({} bytes) in {:?}", crl.len(), t.elapsed());
    let t = Instant::now();
    let big = verifier(&ca.root_cert_der, std::slice::from_ref(&crl));
    eprintln!("loaded it (RevokedSet: serials into a hash set) in {:?}", t.elapsed());
    let empty = verifier(&ca.root_cert_der, &[]);
    let at = UnixTime::now();

    let mut g = c.benchmark_group("verify_client_chain");
    g.bench_function("miss_no_crl", |b| {
        b.iter(|| {
            let fresh = verifier(&ca.root_cert_der, &[]);
            fresh.verify_client_cert(&ee, &chain, at).unwrap()
        })
    });
    // A miss is the inner webpki verifier's work: time it directly (a fresh
    // cache per iteration would re-parse the whole CRL each time).
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(ca.root_cert_der.clone())).unwrap();
    let inner_big = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), ambos_tls::provider())
        .with_crls([crl.clone()])
        .allow_unknown_revocation_status()
        .build()
        .unwrap();
    g.bench_function(format!("webpki_with_crl_{n}"), |b| {
        b.iter(|| inner_big.verify_client_cert(&ee, &chain, at).unwrap())
    });
    // Our miss path with the big CRL: webpki without CRLs + our O(1) lookup
    // (the CRL's signature was checked once, on the first miss above).
    let fresh_miss = || {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from(ca.root_cert_der.clone())).unwrap();
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), ambos_tls::provider()).build().unwrap()
    };
    let plain = fresh_miss();
    g.bench_function(format!("miss_crl_{n}"), |b| {
        b.iter(|| {
            plain.verify_client_cert(&ee, &chain, at).unwrap();
            big.verify_client_cert(&ee, &chain, at).unwrap()
        })
    });
    big.verify_client_cert(&ee, &chain, at).unwrap();
    empty.verify_client_cert(&ee, &chain, at).unwrap();
    g.bench_function("hit_no_crl", |b| b.iter(|| empty.verify_client_cert(&ee, &chain, at).unwrap()));
    g.bench_function(format!("hit_crl_{n}"), |b| b.iter(|| big.verify_client_cert(&ee, &chain, at).unwrap()));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
