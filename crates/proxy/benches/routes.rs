//! Route matching with 1,000 routes: the request that matches the last
//! route (the worst case of first-match order) and one that matches none.
use ambos_proxy::authorize::{AllowRule, Route, RouteTable};
use criterion::{criterion_group, criterion_main, Criterion};
use http::Method;

fn bench(c: &mut Criterion) {
    let routes: Vec<Route> = (0..1000)
        .map(|i| {
            Route::new(
                &format!("/svc-{i}/v*/items/**"),
                Some(vec![Method::GET, Method::POST]),
                vec![AllowRule::parse(&format!("spiffe://acme.test/ns/*/svc-{i}")).unwrap()],
            )
        })
        .collect();
    let table = RouteTable::new(routes);
    let id = ambos_tls::Identity { uris: vec!["spiffe://acme.test/ns/prod/svc-999".into()], ..Default::default() };
    let mut g = c.benchmark_group("route_match_1000");
    g.bench_function("last_route", |b| {
        b.iter(|| {
            matches!(
                table.decide(&Method::GET, "/svc-999/v2/items/42", Some(&id)),
                ambos_proxy::authorize::Decision::Allow(_)
            )
        })
    });
    g.bench_function("no_route", |b| b.iter(|| table.find(&Method::GET, "/nothing/here").is_none()));
    g.bench_function("first_route", |b| b.iter(|| table.find(&Method::GET, "/svc-0/v1/items/1").is_some()));
    g.finish();

    // Per request: reading the target (normalizing its path) before routing.
    let mut g = c.benchmark_group("normalize_path");
    g.bench_function("plain", |b| {
        b.iter(|| ambos_proxy::authorize::target::normalize_path(std::hint::black_box("/svc-999/v2/items/42")).is_ok())
    });
    g.bench_function("encoded_and_dot_segments", |b| {
        b.iter(|| {
            ambos_proxy::authorize::target::normalize_path(std::hint::black_box("/svc-%39/./v2/x/../items/%C3%A9"))
                .is_ok()
        })
    });
    g.finish();

    // The matcher's worst case: six `**` against a 64 KB path that almost
    // matches everywhere and fails at its end (a backtracking matcher took
    // seconds on three `**` and 6.4 KB).
    let g6 = ambos_proxy::authorize::Glob::new_ignore_case("/**/a/**/b/**/c/**/d/**/e/**/f", b'/');
    let long = "/a/b/c/d/e".repeat(64 * 1024 / 10) + "/x";
    let table = RouteTable::new(vec![Route::new("/**/a/**/b/**/c/**/d/**/e/**/f", None, vec![AllowRule::Any])]);
    let mut g = c.benchmark_group("glob_64k_path");
    g.bench_function("six_double_stars_no_match", |b| b.iter(|| g6.matches(std::hint::black_box(&long))));
    g.bench_function("route_table_six_double_stars", |b| {
        b.iter(|| table.find(&Method::GET, std::hint::black_box(&long)).is_none())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
