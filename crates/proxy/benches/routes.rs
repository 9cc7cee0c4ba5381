//! Route matching with 1,000 routes: the request that matches the last
//! route (the worst case of first-match order) and one that matches none.
use ambos_proxy::policy::{AllowRule, Route, RouteTable};
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
                ambos_proxy::policy::Decision::Allow(_)
            )
        })
    });
    g.bench_function("no_route", |b| b.iter(|| table.find(&Method::GET, "/nothing/here").is_none()));
    g.bench_function("first_route", |b| b.iter(|| table.find(&Method::GET, "/svc-0/v1/items/1").is_some()));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
