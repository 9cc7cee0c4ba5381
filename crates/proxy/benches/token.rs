//! A token route's cost per request: a token seen before (hash, lookup,
//! binding compare) against its first use (one ES256 signature check and
//! the claims), on a route with `bound = true`.
use ambos_proxy::authorize::token::{JwksSource, TokenConfig, TokenPolicy};
use base64::Engine;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use jsonwebtoken::{Algorithm, EncodingKey, Header};

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let (pkcs8, jwks) = ambos_testpki::jwt_signer(dir.path());
    let key = EncodingKey::from_ec_der(&pkcs8);
    let config = TokenConfig {
        issuer: "https://ca.test".into(),
        jwks: JwksSource::File(jwks),
        audience: "payments".into(),
        scopes: vec!["payments:write".into()],
        bound: true,
        forward: false,
    };
    let leaf = "a1".repeat(32);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let claims = serde_json::json!({
        "iss": "https://ca.test", "sub": "alice", "aud": "payments", "iat": now, "exp": now + 3600,
        "scope": "payments:write",
        "cnf": {"x5t#S256": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(hex::decode(&leaf).unwrap())},
    });
    let token = jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &key).unwrap();
    let auth = http::HeaderValue::try_from(format!("Bearer {token}")).unwrap();
    let policy = TokenPolicy::load(&config, &Default::default(), &[]).unwrap();
    assert!(policy.check(Some(&auth), Some(&leaf)).is_ok());
    let mut g = c.benchmark_group("token_route");
    g.bench_function("cached", |b| b.iter(|| policy.check(Some(&auth), Some(&leaf)).is_ok()));
    g.bench_function("first_use", |b| {
        b.iter_batched(
            || TokenPolicy::load(&config, &Default::default(), &[]).unwrap(),
            |fresh| fresh.check(Some(&auth), Some(&leaf)).is_ok(),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
