//! /metrics of `ambos proxy` and `ambos serve`, scraped with curl: the
//! series known in advance are there from the start, and (proxy, before
//! and after requests made with curl and openssl s_client) every refusal
//! and every answer is counted.
use ambos_interop_tests::{free_port, poll, require, run, s_client, start_http_upstream, Daemon, ProxyToml, TestCa};
use std::process::Command;
use std::time::Duration;

fn scrape(port: u16) -> String {
    run(Command::new("curl").arg("-sS").arg(format!("http://127.0.0.1:{port}/metrics"))).stdout
}

/// The value of the series `series` (name and labels, as printed).
fn value(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn every_refusal_and_answer_is_counted_and_known_series_start_at_zero() {
    require("curl");
    require("openssl");
    let ca = TestCa::with_localhost(&["alice"]);
    let metrics_port = free_port();
    // Nothing listens on the upstream's port: every forwarded request fails to connect.
    let config = ProxyToml::http(free_port())
        .routes("[[route]]\npath = \"/payments/**\"\nmethods = [\"GET\"]\nallow = [\"any\"]\n")
        .metrics(metrics_port)
        .to_string();
    let proxy = Daemon::proxy(ca.dir(), &config, &[]);
    let before = poll(10, Duration::from_millis(100), || scrape(metrics_port), |m| m.contains("ambos_proxy_"));
    for series in [
        "ambos_proxy_requests_total{route=\"\",decision=\"deny\"}",
        "ambos_proxy_requests_total{route=\"\",decision=\"refused\"}",
        "ambos_proxy_requests_total{route=\"/payments/**\",decision=\"allow\"}",
        "ambos_proxy_responses_total{status=\"4xx\"}",
        "ambos_proxy_responses_total{status=\"5xx\"}",
        "ambos_proxy_upstream_errors_total{kind=\"connect_refused\"}",
        "ambos_proxy_upstream_errors_total{kind=\"tls\"}",
        "ambos_proxy_request_duration_seconds_count",
        "ambos_proxy_handshakes_total{outcome=\"failed\",reason=\"unknown_ca\"}",
        "ambos_proxy_timeouts_total{kind=\"upstream\"}",
        "ambos_proxy_config_reloads_total{result=\"failed\"}",
    ] {
        assert_eq!(value(&before, series), Some(0.0), "{series} at start:\n{before}");
    }
    let serving = "ambos_proxy_certificate_expiry_seconds{cert=\"serving\",subject=\"O=Interop, CN=localhost\"}";
    let left = value(&before, serving).unwrap_or_else(|| panic!("no {serving}:\n{before}"));
    assert!(left > 86_400.0, "{serving} = {left}");
    assert!(before.contains("ambos_proxy_certificate_expiry_seconds{cert=\"client_ca\""), "{before}");

    let url = |path: &str| format!("https://localhost:{}{path}", proxy.port);
    // No route matches: 403, twice (once for a method the route does not list).
    assert_eq!(ca.curl(Some("alice"), &url("/elsewhere"), &[]).status, "403");
    assert_eq!(ca.curl(Some("alice"), &url("/payments/1"), &["-X", "DELETE"]).status, "403");
    // Allowed, but the upstream refuses the connection: 502.
    assert_eq!(ca.curl(Some("alice"), &url("/payments/1"), &[]).status, "502");
    // A head hyper cannot parse (a space in the target): its own 400.
    let bad = s_client(&ca, "alice", proxy.port, b"GET /a b HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert!(bad.stdout.starts_with("HTTP/1.1 400"), "{}{}", bad.stdout, bad.stderr);

    let after = poll(
        5,
        Duration::from_millis(100),
        || scrape(metrics_port),
        |m| value(m, "ambos_proxy_requests_total{route=\"\",decision=\"refused\"}") == Some(1.0),
    );
    for (series, want) in [
        ("ambos_proxy_requests_total{route=\"\",decision=\"deny\"}", 2.0),
        ("ambos_proxy_requests_total{route=\"\",decision=\"refused\"}", 1.0),
        ("ambos_proxy_requests_total{route=\"/payments/**\",decision=\"allow\"}", 1.0),
        ("ambos_proxy_responses_total{status=\"4xx\"}", 3.0),
        ("ambos_proxy_responses_total{status=\"5xx\"}", 1.0),
        ("ambos_proxy_upstream_errors_total{kind=\"connect_refused\"}", 1.0),
        ("ambos_proxy_upstream_errors_total{kind=\"tls\"}", 0.0),
        // hyper's own 400 has no latency of ours to report.
        ("ambos_proxy_request_duration_seconds_count", 3.0),
    ] {
        assert_eq!(value(&after, series), Some(want), "{series}:\n{after}");
    }
    assert!(after.contains("ambos_proxy_request_duration_seconds_bucket{le=\"0.005\"}"), "{after}");
}

/// Each way an upstream can fail is counted under its own kind, read from
/// the error itself: an `https://` upstream that speaks plain HTTP (tls),
/// an `h2c://` upstream that answers in HTTP/1.1 (protocol), and an
/// upstream that closes the connection after reading the request (reset).
/// Each is a 502 and nothing else is counted.
#[test]
fn upstream_failures_are_counted_by_their_kind() {
    require("curl");
    let ca = TestCa::with_localhost(&["alice"]);
    let http1 = start_http_upstream();
    let closer = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closer_port = closer.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut stream in closer.incoming().flatten() {
            // Reads (part of) the request, then closes without an answer.
            let _ = std::io::Read::read(&mut stream, &mut [0u8; 1024]);
        }
    });
    for (kind, upstream) in [
        ("tls", format!("url = \"https://127.0.0.1:{http1}\"\n\n[upstream.tls]\nca = \"certs/ca.crt\"\nserver_name = \"localhost\"")),
        ("protocol", format!("url = \"h2c://127.0.0.1:{http1}\"")),
        ("reset", format!("url = \"http://127.0.0.1:{closer_port}\"")),
    ] {
        let metrics_port = free_port();
        let config = ProxyToml::upstream(&upstream).metrics(metrics_port).to_string();
        let proxy = Daemon::proxy(ca.dir(), &config, &[]);
        let reply = ca.curl(Some("alice"), &format!("https://localhost:{}/x", proxy.port), &[]);
        assert_eq!(reply.status, "502", "{kind}: {}\n{}", reply.body, proxy.log());
        let want = format!("ambos_proxy_upstream_errors_total{{kind=\"{kind}\"}}");
        let m = poll(5, Duration::from_millis(100), || scrape(metrics_port), |m| value(m, &want) == Some(1.0));
        assert_eq!(value(&m, &want), Some(1.0), "{kind}:\n{m}\n{}", proxy.log());
        let counted: f64 = m
            .lines()
            .filter(|l| l.starts_with("ambos_proxy_upstream_errors_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        assert_eq!(counted, 1.0, "{kind}: one error, under one kind:\n{m}");
    }
}

#[test]
fn the_ca_exports_its_counters_at_zero_right_after_start() {
    require("curl");
    // Issuing writes certs/ca.crt, which curl trusts.
    let ca = TestCa::with_localhost(&[]);
    let serve = Daemon::spawn(
        ca.cmd().args(["serve", "--listen", "127.0.0.1:0", "--crl-validity", "1h"]),
        ca.dir().join("serve.log"),
    );
    let r = ca.curl(None, &format!("https://localhost:{}/metrics", serve.port), &[]);
    assert_eq!(r.status, "200", "{}", r.stderr);
    for series in [
        "ambos_ca_enrollments_total{result=\"ok\"}",
        "ambos_ca_enrollments_total{result=\"refused\"}",
        "ambos_ca_renewals_total",
        "ambos_ca_revocations_total",
        "ambos_ca_token_failures_total",
        "ambos_ca_access_tokens_total{result=\"issued\"}",
        "ambos_ca_access_tokens_total{result=\"refused\"}",
    ] {
        assert_eq!(value(&r.body, series), Some(0.0), "{series}:\n{}", r.body);
    }
}
