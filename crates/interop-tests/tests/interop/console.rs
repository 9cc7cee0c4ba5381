//! The web console (`/ui/` on `ambos serve`) with curl as the browser: an
//! admin certificate sees the right counts, pages and escaped values; no
//! certificate and a non-admin get a 403 page naming the certificate to
//! make; a revoke through the form lands in `ambos list` and the CRL, and a
//! forged one (foreign Origin, no or wrong token) changes nothing.
use ambos_interop_tests::{run, Daemon, Reply, TestCa};
use std::process::Command;

const SCRIPT_OU: &str = "<script>alert(1)</script>";
const IMG_OU: &str = "\"><img src=x onerror=alert(1)>";

/// A CA of known contents and its `ambos serve`: admin, user (90 days),
/// soon (3 days), month (20 days), old (expired), gone (revoked), and two
/// whose OU is markup; the server's own certificate (24 h) makes one more.
pub(crate) fn console() -> (TestCa, Daemon) {
    let ca = TestCa::new(&[]);
    std::fs::create_dir_all(ca.certs()).unwrap();
    std::fs::copy(ca.data().join("root.crt"), ca.path("ca.crt")).unwrap();
    ca.issue("client", "admin", &["--admin", "--ttl", "90d"]);
    ca.issue("client", "user", &["--ttl", "90d"]);
    ca.issue("client", "soon", &["--ttl", "3d"]);
    ca.issue("server", "month", &["--ttl", "20d"]);
    ca.issue_expired("client", "old", &[]);
    ca.issue("client", "gone", &["--ttl", "90d"]);
    ca.ambos(&["revoke", "gone"]).ok();
    ca.issue("client", "xss-script", &["--ttl", "90d", "--ou", SCRIPT_OU]);
    ca.issue("client", "xss-img", &["--ttl", "90d", "--ou", IMG_OU]);
    let serve = Daemon::spawn(
        ca.cmd().args(["serve", "--listen", "127.0.0.1:0", "--crl-validity", "1h"]),
        ca.dir().join("serve.log"),
    );
    (ca, serve)
}

fn get(ca: &TestCa, who: Option<&str>, port: u16, path: &str) -> Reply {
    ca.curl(who, &format!("https://localhost:{port}{path}"), &[])
}

pub(crate) fn serial_of(ca: &TestCa, name: &str) -> String {
    let list: serde_json::Value = serde_json::from_str(&ca.ambos(&["list", "--json"]).ok().stdout).unwrap();
    let found = list.as_array().unwrap().iter().find(|c| c["name"] == name);
    found.unwrap_or_else(|| panic!("{name} in {list}"))["serial"].as_str().unwrap().to_string()
}

pub(crate) fn status_of(ca: &TestCa, serial: &str) -> String {
    let list: serde_json::Value = serde_json::from_str(&ca.ambos(&["list", "--json"]).ok().stdout).unwrap();
    let found = list.as_array().unwrap().iter().find(|c| c["serial"] == serial).unwrap();
    found["status"].as_str().unwrap().to_string()
}

#[test]
fn the_overview_counts_a_known_ca_and_every_answer_carries_the_security_headers() {
    let (ca, serve) = console();
    let r = get(&ca, Some("admin"), serve.port, "/ui/");
    assert_eq!(r.status, "200", "{}", r.stderr);
    for (n, label) in
        [(7, "Valid"), (2, "Expiring within 7 days"), (3, "Expiring within 30 days"), (1, "Expired"), (1, "Revoked")]
    {
        assert!(r.body.contains(&format!("<b>{n}</b>{label}</a>")), "{n} {label}:\n{}", r.body);
    }
    assert!(r.body.contains("CRL number"), "{}", r.body);
    assert!(r.body.contains("<svg class=\"timeline\""), "the expiry timeline");
    // Eight issued here and the server's own; gone revoked (counted from the audit trail).
    let activity = "aria-label=\"In the last 30 days: 9 issued, 0 renewed, 1 revoked\"";
    assert!(r.body.contains("<svg class=\"activity\"") && r.body.contains(activity), "{}", r.body);
    assert!(!r.body.contains("<script") && !r.body.contains("style="), "no inline script or style");

    let head =
        ca.curl(Some("admin"), &format!("https://localhost:{}/ui/", serve.port), &["-D", "-", "-o", "/dev/null"]);
    let head = head.body.to_lowercase();
    for line in [
        "content-security-policy: default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        "x-frame-options: deny",
        "x-content-type-options: nosniff",
        "referrer-policy: no-referrer",
        "cache-control: no-store",
        "content-type: text/html; charset=utf-8",
    ] {
        assert!(head.contains(line), "{line}:\n{head}");
    }
    let css = ca.curl(Some("admin"), &format!("https://localhost:{}/ui/static/console.css", serve.port), &["-D", "-"]);
    let css = css.body.to_lowercase();
    for line in [
        "cache-control: public, max-age=31536000, immutable",
        "content-type: text/css",
        "x-content-type-options: nosniff",
    ] {
        assert!(css.contains(line), "{line}:\n{css}");
    }
}

#[test]
fn no_certificate_a_non_admin_and_a_revoked_admin_get_a_403_page_naming_the_certificate_to_make() {
    let (ca, serve) = console();
    ca.issue("client", "fired", &["--admin", "--ttl", "90d"]);
    ca.ambos(&["revoke", "fired"]).ok();
    for who in [None, Some("user"), Some("fired")] {
        for path in ["/ui/", "/ui/certs", "/ui/audit", "/ui/certs/01"] {
            let r = get(&ca, who, serve.port, path);
            assert_eq!(r.status, "403", "{who:?} {path}: {}", r.body);
            assert!(r.body.contains("ambos issue client NAME --admin --p12"), "{who:?} {path}: {}", r.body);
            assert!(r.body.starts_with("<!DOCTYPE html>"), "{}", r.body);
        }
    }
}

#[test]
fn the_list_pages_filters_and_escapes_and_bad_input_is_a_400_page() {
    let (ca, serve) = console();
    let mut csv = String::from("name,profile,sans\n");
    for i in 0..60 {
        csv.push_str(&format!("dev-{i:02},client,\n"));
    }
    let file = ca.write("fleet.csv", csv);
    ca.ambos(&["issue", "client", "--batch", file.to_str().unwrap(), "--out", ca.certs().to_str().unwrap()]).ok();
    let rows = |r: &Reply| r.body.matches("<a href=\"/ui/certs/").count();

    // 8 leaves + ambos-serve + the intermediate + 60 = 70: 50, then 20.
    let first = get(&ca, Some("admin"), serve.port, "/ui/certs");
    assert_eq!((first.status.as_str(), rows(&first)), ("200", 50), "{}", first.body);
    assert!(first.body.contains("rel=\"next\""));
    let second = get(&ca, Some("admin"), serve.port, "/ui/certs?page=2");
    assert_eq!(rows(&second), 20, "{}", second.body);
    assert!(!second.body.contains("rel=\"next\"") && second.body.contains("rel=\"prev\""));
    // Soonest expiry first: the expired one leads.
    let old = serial_of(&ca, "old");
    let firsts: Vec<&str> = first.body.split("<a href=\"/ui/certs/").skip(1).collect();
    assert!(firsts[0].starts_with(&format!("{old}\"")), "{}", firsts[0]);

    let only = |q: &str| get(&ca, Some("admin"), serve.port, &format!("/ui/certs?{q}"));
    assert_eq!(rows(&only("state=revoked")), 1);
    assert_eq!(rows(&only("state=expired")), 1);
    assert_eq!(rows(&only("name=dev-07")), 1);
    assert_eq!(rows(&only("profile=server")), 2, "month and ambos-serve");
    let gone = serial_of(&ca, "gone");
    assert!(only(&format!("serial={}", &gone[..12])).body.contains(&gone));
    assert_eq!(rows(&only("san=DNS:MONTH")), 1, "a SAN, any case");
    assert_eq!(rows(&only("san=%25")), 0, "a wildcard is literal");
    let root = only("issuer=root");
    assert_eq!(rows(&root), 1, "the intermediate: {}", root.body);
    assert!(root.body.contains("<option value=\"root\" selected>"), "{}", root.body);
    assert!(only("issuer=root&page=1").body.contains(">Page 1<") && rows(&only("issuer=intermediate&page=2")) == 19);
    assert_eq!(only("issuer=other").status, "400");

    // Values from certificates are text, never markup.
    let xss = only("name=xss-script");
    assert!(xss.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{}", xss.body);
    assert!(!xss.body.contains(SCRIPT_OU));
    for name in ["xss-script", "xss-img"] {
        let page = get(&ca, Some("admin"), serve.port, &format!("/ui/certs/{}", serial_of(&ca, name)));
        assert_eq!(page.status, "200");
        assert!(!page.body.contains(SCRIPT_OU) && !page.body.contains("<img"), "{}", page.body);
    }
    let img = get(&ca, Some("admin"), serve.port, &format!("/ui/certs/{}", serial_of(&ca, "xss-img")));
    assert!(img.body.contains("&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"), "{}", img.body);

    for (path, status) in [
        ("/ui/certs?page=0", "400"),
        ("/ui/certs?page=abc", "400"),
        ("/ui/certs?state=weird", "400"),
        ("/ui/certs/not-hex", "400"),
        ("/ui/certs/0badc0ffee", "404"),
        ("/ui/certs?page=99", "200"),
    ] {
        let r = get(&ca, Some("admin"), serve.port, path);
        assert_eq!(r.status, status, "{path}: {}", r.body);
        assert!(r.body.starts_with("<!DOCTYPE html>"), "{path}: {}", r.body);
    }
}

#[test]
fn the_certificate_page_shows_its_details_and_history_and_serves_its_pem() {
    let (ca, serve) = console();
    ca.issue("client", "user", &["--ttl", "90d", "--force"]);
    let serial = serial_of(&ca, "month");
    let page = get(&ca, Some("admin"), serve.port, &format!("/ui/certs/{serial}"));
    for needle in ["dns:month", "serverAuth", "ECDSA P-256", "SHA-256 fingerprint"] {
        assert!(page.body.contains(needle), "{needle}: {}", page.body);
    }
    // The chain: the intermediate (linked, its page answers), then the root, as openssl reads their serials.
    let serial_in = |file: &str| {
        let out = run(Command::new("openssl").args(["x509", "-noout", "-serial", "-in"]).arg(ca.data().join(file)));
        out.stdout.trim().trim_start_matches("serial=").trim_start_matches('0').to_lowercase()
    };
    let (inter, root) = (serial_in("intermediate.crt"), serial_in("root.crt"));
    let chain = page.body.split("<table class=\"chain\">").nth(1).expect("a chain").split("</table>").next().unwrap();
    let at = |needle: &str| chain.find(needle).unwrap_or_else(|| panic!("{needle} in {chain}"));
    assert!(at(&format!("<a href=\"/ui/certs/{inter}\">")) < at(&format!(">{root}</td>")), "{chain}");
    assert!(at("<td>intermediate</td>") < at("<td>root</td>"), "{chain}");
    assert_eq!(get(&ca, Some("admin"), serve.port, &format!("/ui/certs/{inter}")).status, "200");
    let gone = get(&ca, Some("admin"), serve.port, &format!("/ui/certs/{}", serial_of(&ca, "gone")));
    assert!(gone.body.contains("revoked</td>") || gone.body.contains("reason unspecified"), "{}", gone.body);
    let pem = get(&ca, Some("admin"), serve.port, &format!("/ui/certs/{serial}.pem"));
    let file = ca.write("month-served.pem", &pem.body);
    let out = run(Command::new("openssl").args(["x509", "-noout", "-subject", "-in"]).arg(&file));
    assert!(out.stdout.contains("month"), "{}", out.stderr);
}

/// The revoke form's token, from its confirmation page.
fn form_token(ca: &TestCa, port: u16, serial: &str) -> String {
    let confirm = get(ca, Some("admin"), port, &format!("/ui/certs/{serial}/revoke"));
    assert_eq!(confirm.status, "200", "{}", confirm.body);
    let at = confirm.body.find("name=\"token\" value=\"").expect("a token field") + 20;
    confirm.body[at..].split('"').next().unwrap().to_string()
}

fn post(ca: &TestCa, port: u16, serial: &str, body: &str, headers: &[&str]) -> Reply {
    let mut extra = vec!["--data", body];
    for h in headers {
        extra.extend_from_slice(&["-H", h]);
    }
    ca.curl(Some("admin"), &format!("https://localhost:{port}/ui/certs/{serial}/revoke"), &extra)
}

#[test]
fn a_revoke_through_the_form_is_in_the_list_and_the_crl_and_a_forged_one_changes_nothing() {
    let (ca, serve) = console();
    let port = serve.port;
    let serial = serial_of(&ca, "user");
    let token = form_token(&ca, port, &serial);
    let origin = format!("Origin: https://localhost:{port}");
    let other = serial_of(&ca, "soon");
    for (body, headers, why) in [
        (format!("token={token}&reason=keyCompromise"), vec!["Origin: https://evil.test"], "foreign Origin"),
        (
            format!("token={token}&reason=keyCompromise"),
            vec!["Origin: https://evil.test", "Sec-Fetch-Site: same-origin"],
            "foreign Origin, same-origin claimed",
        ),
        (format!("token={token}&reason=keyCompromise"), vec![], "neither Origin nor Sec-Fetch-Site"),
        ("reason=keyCompromise".to_string(), vec![origin.as_str()], "no token"),
        (format!("token={}&reason=keyCompromise", "ab".repeat(32)), vec![origin.as_str()], "wrong token"),
    ] {
        let r = post(&ca, port, &serial, &body, &headers);
        assert_eq!(r.status, if why == "no token" { "400" } else { "403" }, "{why}: {}", r.body);
        assert_eq!(status_of(&ca, &serial), "valid", "{why}: nothing revoked");
    }
    // A token is for one certificate: this one's does not revoke another.
    let r = post(&ca, port, &other, &format!("token={token}"), &[&origin]);
    assert_eq!(r.status, "403");
    assert_eq!(status_of(&ca, &other), "valid");

    let r = post(&ca, port, &serial, &format!("token={token}&reason=keyCompromise"), &[&origin]);
    assert_eq!(r.status, "200", "{}", r.body);
    assert_eq!(status_of(&ca, &serial), "revoked");
    let crl = ca.curl(None, &format!("https://localhost:{port}/v1/crl"), &["-H", "Accept: application/x-pem-file"]);
    let file = ca.write("served.crl", &crl.body);
    let text = run(Command::new("openssl").args(["crl", "-noout", "-text", "-in"]).arg(&file)).stdout;
    assert!(text.to_uppercase().contains(&serial.to_uppercase()), "{serial} in\n{text}");
    assert!(text.contains("Key Compromise"), "{text}");
    // The audit page names the admin, filtered by action and actor.
    let trail = get(&ca, Some("admin"), port, "/ui/audit?action=revoke&actor=admin%3A").body;
    assert_eq!(trail.matches("<tr><td>").count(), 1, "only the console's revoke (gone was by the CLI): {trail}");
    assert!(trail.contains(&serial) && trail.contains(&format!("admin:{}", serial_of(&ca, "admin"))), "{trail}");
    assert_eq!(get(&ca, Some("admin"), port, "/ui/audit?action=revoke").body.matches("<tr><td>").count(), 2);

    // The Sec-Fetch-Site path (no Origin) works too, for the CRL form.
    let confirm = get(&ca, Some("admin"), port, "/ui/crl/publish");
    let at = confirm.body.find("name=\"token\" value=\"").unwrap() + 20;
    let token = confirm.body[at..].split('"').next().unwrap();
    let url = format!("https://localhost:{port}/ui/crl/publish");
    let r = ca.curl(Some("admin"), &url, &["--data", &format!("token={token}"), "-H", "Sec-Fetch-Site: same-origin"]);
    assert_eq!(r.status, "200", "{}", r.body);
    let r = ca.curl(Some("admin"), &url, &["--data", &format!("token={token}"), "-H", "Sec-Fetch-Site: cross-site"]);
    assert_eq!(r.status, "403", "{}", r.body);
}

#[test]
fn a_token_made_in_the_console_is_shown_once_with_its_command_and_buys_a_certificate() {
    let (ca, serve) = console();
    let port = serve.port;
    let url = format!("https://localhost:{port}/ui/tokens/new");
    let origin = format!("Origin: https://localhost:{port}");
    let confirm = get(&ca, Some("admin"), port, "/ui/tokens/new");
    let at = confirm.body.find("name=\"token\" value=\"").expect("a token field") + 20;
    let token = confirm.body[at..].split('"').next().unwrap().to_string();

    let forged = ca.curl(Some("admin"), &url, &["--data", "name=dev&profile=client", "-H", &origin]);
    assert_eq!(forged.status, "400", "no token: {}", forged.body);
    let forged = ca.curl(Some("admin"), &url, &["--data", &format!("token={token}&name=dev&profile=client")]);
    assert_eq!(forged.status, "403", "{}", forged.body);
    assert!(!forged.body.contains("--admin --p12"), "a forgery is not about the certificate: {}", forged.body);
    assert!(!get(&ca, Some("admin"), port, "/ui/tokens").body.contains("outstanding"), "nothing made");

    let body = format!("token={token}&name=dev&profile=client&sans=dns%3Adev.internal&ttl=10m");
    let made = ca.curl(Some("admin"), &url, &["--data", &body, "-H", &origin]);
    assert_eq!(made.status, "200", "{}", made.body);
    let at = made.body.find("<code class=\"secret\">").unwrap() + 21;
    let secret = made.body[at..].split('<').next().unwrap().to_string();
    assert!(secret.starts_with("ambos_"), "{secret}");
    let command = format!("ambos enroll --ca-url https://localhost:{port} --root ca.crt --token {secret}");
    assert!(made.body.contains(&command), "{}", made.body);
    assert!(get(&ca, Some("admin"), port, "/ui/tokens").body.contains("outstanding"));

    let out = ca.dir().join("enrolled");
    let root = ca.path("ca.crt");
    let ca_url = format!("https://localhost:{port}");
    let args = ["enroll", "--ca-url", &ca_url, "--root", root.to_str().unwrap(), "--token", &secret, "--out"];
    run(ca.cmd().args(args).arg(&out)).ok();
    assert!(out.join("dev.crt").exists(), "enrolled with the console's token");
    let list = get(&ca, Some("admin"), port, "/ui/tokens").body;
    assert!(list.contains("spent: ") && !list.contains("outstanding"), "{list}");
}
