//! The real-browser harness (tests/browser/run.mjs: Debian's headless
//! Chromium driven by playwright-core, axe-core injected) proven against
//! what serves pages today: `ambos proxy` in front of a JSON upstream, and
//! `ambos serve`. Chromium trusts only the test CA: nothing ignores
//! certificate errors.
use ambos_interop_tests::{
    browser, browser_available, start_http_upstream, wait_file_contains, Browser, Daemon, ProxyToml, TestCa,
};
use serde_json::{json, Value};
use std::path::Path;

/// A CA with localhost and alice, and a proxy (auditing to audit.jsonl) in
/// front of a JSON upstream.
fn proxy_fixture() -> (TestCa, Daemon) {
    let ca = TestCa::with_localhost(&["alice"]);
    let upstream = start_http_upstream();
    let config = ProxyToml::http(upstream).audit(Path::new("audit.jsonl"), "");
    let proxy = Daemon::proxy(ca.dir(), &config.to_string(), &[]);
    (ca, proxy)
}

/// A job for `url` trusting `ca`'s root, presenting `who`'s certificate to
/// the proxy's origin if given.
fn job(ca: &TestCa, port: u16, path: &str, who: Option<&str>) -> Value {
    job_in(Browser::Chromium, ca, port, path, who)
}

fn job_in(b: Browser, ca: &TestCa, port: u16, path: &str, who: Option<&str>) -> Value {
    let origin = format!("https://localhost:{port}");
    let [root, cert, key] = ca.client_files(who.unwrap_or("alice"));
    let certificates = match who {
        Some(_) => json!([{ "origin": origin, "certPath": cert, "keyPath": key }]),
        None => json!([]),
    };
    json!({ "browser": b.name(), "url": format!("{origin}{path}"), "ca": root, "clientCertificates": certificates })
}

#[test]
fn chromium_with_a_client_certificate_gets_the_proxied_page_screenshot_and_axe_result() {
    if !browser_available() {
        return;
    }
    let (ca, proxy) = proxy_fixture();
    let shot = ca.dir().join("page.png");
    let mut job = job(&ca, proxy.port, "/hello", Some("alice"));
    job["steps"] = json!([{ "text": "body" }]);
    job["screenshot"] = json!(shot);
    job["axe"] = json!(true);
    let r = browser(&job);
    assert_eq!(r["status"], 200, "{r}\n{}", proxy.log());
    let text = r["texts"][0].as_str().unwrap_or_default();
    assert!(text.contains(r#""path":"/hello""#), "the upstream's JSON is on the page: {r}");
    assert!(text.contains("CN=alice"), "the proxy forwarded alice's identity: {r}");
    assert_eq!(r["consoleErrors"], json!([]), "{r}");
    assert_eq!(r["dialogs"], json!([]), "{r}");
    let png = std::fs::read(&shot).expect("the screenshot was written");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 1000, "a PNG: {} bytes", png.len());
    assert!(r["axe"]["violations"].is_array(), "axe ran: {r}");
    assert!(r["axe"]["passes"].as_u64() > Some(0), "axe checked something: {r}");
}

#[test]
fn chromium_without_a_client_certificate_is_refused_by_the_proxy() {
    if !browser_available() {
        return;
    }
    let (ca, proxy) = proxy_fixture();
    let r = browser(&job(&ca, proxy.port, "/", None));
    assert_eq!(r["status"], Value::Null, "{r}");
    // Chromium says ERR_BAD_SSL_CLIENT_AUTH_CERT, or (seen once in 30 runs on
    // a loaded machine) ERR_SOCKET_NOT_CONNECTED; never a trust error, and the
    // proxy's audit says why it refused.
    let error = r["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("page.goto: net::ERR_") && !error.contains("CERT_AUTHORITY_INVALID"), "{r}");
    wait_file_contains(&ca.dir().join("audit.jsonl"), "the client sent no certificate", 10);
}

#[test]
fn chromium_refuses_a_server_whose_ca_it_was_not_given() {
    if !browser_available() {
        return;
    }
    let (ca, proxy) = proxy_fixture();
    let other = TestCa::generated("Other", &[]);
    // Chromium's own check (no client certificate) and Playwright's proxy's
    // (which makes the connection when a client certificate is given).
    for (who, refusal) in
        [(None, "net::ERR_CERT_AUTHORITY_INVALID"), (Some("alice"), "unable to get local issuer certificate")]
    {
        let mut job = job(&ca, proxy.port, "/", who);
        job["ca"] = json!(other.path("ca.crt"));
        let r = browser(&job);
        assert_eq!(r["status"], Value::Null, "{r}");
        assert!(r["error"].as_str().unwrap_or_default().contains(refusal), "{who:?}: {r}");
    }
}

#[test]
fn chromium_reads_healthz_from_ambos_serve() {
    if !browser_available() {
        return;
    }
    let ca = TestCa::with_localhost(&[]);
    let serve = Daemon::spawn(
        ca.cmd().args(["serve", "--listen", "127.0.0.1:0", "--crl-validity", "1h"]),
        ca.dir().join("serve.log"),
    );
    let mut job = job(&ca, serve.port, "/healthz", None);
    job["steps"] = json!([{ "text": "body" }]);
    let r = browser(&job);
    assert_eq!(r["status"], 200, "{r}\n{}", serve.log());
    assert_eq!(r["texts"][0].as_str().map(str::trim), Some("ok"), "{r}");
    assert_eq!(r["consoleErrors"], json!([]), "{r}");
}

/// A form page (an alert on click, a submit to a second page that shows
/// the field) and a page under a strict CSP with an inline script, as
/// files: the driver's steps, dialogs and axe on pages of known contents.
fn write_pages(dir: &Path) {
    std::fs::write(
        dir.join("form.html"),
        r#"<!doctype html><html lang="en"><head><title>Form</title></head><body><main><h1>Form</h1>
<form id="f" action="done.html"><label>Name <input id="who" name="who"></label>
<button type="button" id="warn" onclick="alert('hi ' + document.getElementById('who').value)">Warn</button>
<button>Send</button></form></main></body></html>"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("done.html"),
        r#"<!doctype html><html lang="en"><head><title>Done</title></head><body><main><h1>Done</h1><p id="out"></p></main>
<script>document.getElementById('out').textContent = new URLSearchParams(location.search).get('who')</script></body></html>"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("strict.html"),
        r#"<!doctype html><html lang="en"><head><meta http-equiv="Content-Security-Policy" content="script-src 'self'">
<title>Strict</title></head><body><main><h1>Strict</h1><p>Text</p></main><script>alert('inline ran')</script></body></html>"#,
    )
    .unwrap();
}

#[test]
fn the_driver_fills_clicks_submits_and_records_the_alert_in_chromium() {
    the_driver_fills_clicks_submits_and_records_the_alert(Browser::Chromium);
}

#[test]
fn the_driver_fills_clicks_submits_and_records_the_alert_in_firefox() {
    the_driver_fills_clicks_submits_and_records_the_alert(Browser::Firefox);
}

fn the_driver_fills_clicks_submits_and_records_the_alert(b: Browser) {
    if !b.available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    write_pages(dir.path());
    let r = browser(&json!({
        "browser": b.name(),
        "url": format!("file://{}/form.html", dir.path().display()),
        "steps": [
            { "fill": ["#who", "alice"] },
            { "click": "#warn" },
            { "submit": "#f" },
            { "text": "#out" },
        ],
        "axe": true,
    }));
    assert_eq!(r["texts"], json!(["alice"]), "{r}");
    assert_eq!(r["title"], "Done", "{r}");
    assert_eq!(r["dialogs"], json!([{ "type": "alert", "message": "hi alice" }]), "{r}");
    assert_eq!(r["axe"]["violations"], json!([]), "a clean page has no findings: {r}");
}

#[test]
fn with_javascript_off_a_click_runs_no_script_and_a_form_still_submits() {
    if !browser_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    write_pages(dir.path());
    let r = browser(&json!({
        "url": format!("file://{}/form.html", dir.path().display()),
        "javascript": false,
        "steps": [{ "fill": ["#who", "alice"] }, { "click": "#warn" }, { "click": "button:not(#warn)" }],
    }));
    assert_eq!(r["dialogs"], json!([]), "the onclick handler did not run: {r}");
    assert_eq!(r["title"], "Done", "the form submitted without script: {r}");
    assert!(r["url"].as_str().unwrap_or_default().ends_with("done.html?who=alice"), "{r}");
}

#[test]
fn axe_runs_under_a_strict_csp_which_still_blocks_inline_script_in_chromium() {
    axe_runs_under_a_strict_csp_which_still_blocks_inline_script(Browser::Chromium);
}

#[test]
fn axe_runs_under_a_strict_csp_which_still_blocks_inline_script_in_firefox() {
    axe_runs_under_a_strict_csp_which_still_blocks_inline_script(Browser::Firefox);
}

fn axe_runs_under_a_strict_csp_which_still_blocks_inline_script(b: Browser) {
    if !b.available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    write_pages(dir.path());
    let url = format!("file://{}/strict.html", dir.path().display());
    let r = browser(&json!({ "browser": b.name(), "url": url, "axe": true }));
    assert_eq!(r["dialogs"], json!([]), "the inline script did not run: {r}");
    let errors = r["consoleErrors"].to_string();
    // Chromium says "Content Security Policy", Firefox "Content-Security-Policy".
    assert!(errors.replace('-', " ").contains("Content Security Policy"), "the refusal is reported: {r}");
    assert!(r["axe"]["passes"].as_u64() > Some(0), "axe ran: {r}");
}

/// Firefox makes the mTLS handshake with the proxy itself (NSS, the client
/// certificate from its profile): a TLS stack other than Chromium's
/// Playwright proxy. Without a certificate the proxy refuses it; a proxy
/// under a CA it was not given is refused by Firefox.
#[test]
fn firefox_presents_its_own_client_certificate_to_the_proxy_and_trusts_only_the_given_ca() {
    if !Browser::Firefox.available() {
        return;
    }
    let (ca, proxy) = proxy_fixture();
    let mut j = job_in(Browser::Firefox, &ca, proxy.port, "/hello", Some("alice"));
    j["steps"] = json!([{ "text": "body" }]);
    j["axe"] = json!(true);
    let r = browser(&j);
    assert_eq!(r["status"], 200, "{r}\n{}", proxy.log());
    let text = r["texts"][0].as_str().unwrap_or_default();
    assert!(text.contains("CN=alice"), "the proxy forwarded alice's identity: {r}");
    assert!(r["axe"]["passes"].as_u64() > Some(0), "axe ran in Firefox: {r}");

    let r = browser(&job_in(Browser::Firefox, &ca, proxy.port, "/", None));
    assert_eq!(r["status"], Value::Null, "no certificate: {r}");
    wait_file_contains(&ca.dir().join("audit.jsonl"), "the client sent no certificate", 10);

    let other = TestCa::generated("Other", &[]);
    let mut j = job_in(Browser::Firefox, &ca, proxy.port, "/", Some("alice"));
    j["ca"] = json!(other.path("ca.crt"));
    let r = browser(&j);
    assert_eq!(r["status"], Value::Null, "{r}");
    assert!(r["error"].as_str().unwrap_or_default().contains("SEC_ERROR_UNKNOWN_ISSUER"), "{r}");
}
