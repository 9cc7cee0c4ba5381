//! Issuance throughput through the library: key generation + signing +
//! durable storage (SQLite WAL, synchronous=FULL, one transaction per batch),
//! next to the crypto floor (one P-256 key generation + one ECDSA signature).
//! Run: taskset -c 0 cargo bench -p ambos-ca --bench issuance
use ambos_ca::{CertificateAuthority, InitOptions};
use ambos_pki::{LeafRequest, Profile};
use ambos_store::AuthorityRole;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

const BATCH: usize = 500;

fn requests(round: usize) -> Vec<LeafRequest> {
    (0..BATCH)
        .map(|i| {
            let mut r = LeafRequest::new(&format!("device-{round}-{i}"), Profile::Client);
            r.sans.push(format!("uri:spiffe://acme.test/device/{round}/{i}").parse().unwrap());
            r
        })
        .collect()
}

fn issuance(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut ca = CertificateAuthority::init(dir.path(), &InitOptions::unencrypted("bench")).unwrap();
    let signer = ca.authority(AuthorityRole::Intermediate, None).unwrap();

    let mut group = c.benchmark_group("issuance");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(20);
    let mut round = 0;
    group.bench_function("ec_p256_keygen_sign_store_batch500", |b| {
        b.iter_batched(
            || {
                round += 1;
                requests(round)
            },
            |reqs| ca.issue(&signer, &reqs).unwrap(),
            BatchSize::PerIteration,
        )
    });
    let now = ambos_ca::OffsetDateTime::now_utc();
    group.bench_function("ec_p256_keygen_sign_no_store_batch500", |b| {
        b.iter_batched(
            || requests(0),
            |reqs| reqs.iter().map(|r| signer.issue(r, now).unwrap()).collect::<Vec<_>>(),
            BatchSize::PerIteration,
        )
    });
    group.finish();

    // The floor: what one certificate costs in public-key work alone.
    let rng = SystemRandom::new();
    let issuer_key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
    let tbs = vec![0x5a_u8; 420]; // about the size of a leaf's TBSCertificate
    let mut floor = c.benchmark_group("crypto_floor");
    floor.throughput(Throughput::Elements(1));
    floor.bench_function("p256_keygen_plus_sign", |b| {
        b.iter(|| {
            let k = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
            std::hint::black_box(k.public_key().as_ref());
            issuer_key.sign(&rng, &tbs).unwrap()
        })
    });
    floor.finish();
}

/// Signing one access token: ours (the parsed key kept) against
/// `jsonwebtoken::encode` with the same key as PKCS#8 (parsed per call).
fn access_token(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut ca = CertificateAuthority::init(dir.path(), &InitOptions::unencrypted("bench")).unwrap();
    let keys = ca.token_keys(None).unwrap();
    let granted = ambos_ca::oauth::Granted {
        subject: "spiffe://acme.test/alice".into(),
        audience: "payments".into(),
        scopes: vec!["pay:write".into()],
    };
    let ttl = std::time::Duration::from_secs(300);
    let mut group = c.benchmark_group("access_token");
    group.bench_function("sign_es256_kept_key", |b| {
        b.iter(|| keys.signer.sign("https://ca.test", granted.clone(), &[7u8; 600], ttl).unwrap())
    });
    let (pkcs8, _) = ambos_testpki::jwt_signer(dir.path());
    let key = jsonwebtoken::EncodingKey::from_ec_der(&pkcs8);
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    let claims = serde_json::json!({"iss": "https://ca.test", "sub": "spiffe://acme.test/alice", "aud": "payments", "exp": 4102444800u64});
    group.bench_function("sign_es256_jsonwebtoken", |b| {
        b.iter(|| jsonwebtoken::encode(&header, &claims, &key).unwrap())
    });
    group.finish();
}

criterion_group!(benches, issuance, access_token);
criterion_main!(benches);
