//! `ambos proxy --check`: loads every file a configuration names and builds
//! its runtime as `run` will, so a bad file is reported before listening,
//! and says what was loaded.
use crate::runtime::Runtime;
use crate::{ProxyConfig, ProxyError};
use ambos_tls::{CrlScope, UnknownStatus};

/// `ambos proxy --check`: every problem found, one line each naming the
/// config file and field, or what [`describe`] says. Besides what stops
/// the proxy from starting, it fails on what the proxy starts with but
/// logs at ERROR (an expired or non-serverAuth serving certificate, an
/// expired client CA, a CRL past nextUpdate + crl_grace) and on an
/// address it cannot bind now.
pub fn check(config: &ProxyConfig) -> Result<String, ProxyError> {
    let mut problems = problems(config);
    let described = describe(config);
    if let Err(e) = &described {
        problems.push(e.to_string());
    }
    if problems.is_empty() {
        return described;
    }
    let file = config.source.as_ref().map(|p| format!("{}: ", p.display())).unwrap_or_default();
    let mut lines: Vec<String> = Vec::new();
    for p in problems {
        // The error of a file the config names may already name the config file.
        let line = if p.starts_with(&file) { p } else { format!("{file}{p}") };
        if !lines.contains(&line) {
            lines.push(line);
        }
    }
    Err(ProxyError::Check(lines))
}

/// What [`check`] finds besides [`describe`]'s errors; a file that cannot
/// be read is left to `describe`.
fn problems(config: &ProxyConfig) -> Vec<String> {
    let now = crate::runtime::unix_now();
    let mut out = crate::certs::serving_problems(&config.tls.cert, now);
    for path in &config.tls.client_ca {
        for c in crate::certs::read(path).unwrap_or_default() {
            if !c.is_ca {
                out.push(crate::certs::not_a_ca(path, &c));
            } else if c.not_after < now {
                out.push(format!("tls.client_ca {}: '{}' expired on {}", path.display(), c.subject, c.not_after_text));
            }
        }
    }
    ambos_tls::install_default_provider();
    if let (Ok(loaded), Some(policy)) = (config.load_tls(&[]), config.tls.revocation) {
        let grace = i64::try_from(policy.grace.as_secs()).unwrap_or(i64::MAX);
        for crl in loaded.verifier.trust().crls().summaries() {
            if let Some(next) = crl.next_update.filter(|n| n.saturating_add(grace) < now) {
                out.push(format!(
                    "tls.crl {}: stale: nextUpdate {} is more than crl_grace ({grace} s) ago",
                    crl.source,
                    crate::certs::rfc3339(next)
                ));
            }
        }
    }
    let addresses = std::iter::once(("listen.address", config.listen));
    for (field, addr) in addresses.chain(config.metrics.map(|m| ("metrics.address", m))) {
        // Bound and released at once: only whether the proxy could listen now.
        if let Err(e) = std::net::TcpListener::bind(addr) {
            let why = e.to_string();
            let why = why.split(" (os error").next().unwrap_or(&why);
            out.push(format!("{field}: cannot listen on {addr}: {why}"));
        }
    }
    out
}

/// Loads the TLS files and builds the runtime (routes, the upstream's TLS)
/// from `config`; the text `--check` prints: routes, client CAs, the
/// revocation policy with its risky choices, and each CRL.
pub fn describe(config: &ProxyConfig) -> Result<String, ProxyError> {
    ambos_tls::install_default_provider();
    let loaded = config.load_tls(&[])?;
    Runtime::build(config.clone(), &[], &Default::default())?;
    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    line(format!("configuration OK: {} route(s), listening on {}", config.routes.len(), config.listen));
    let trust = loaded.verifier.trust();
    line(format!(
        "client CAs: {} trust anchor(s), {} known intermediate(s)",
        trust.anchor_count(),
        trust.intermediate_count()
    ));
    let Some(p) = trust.revocation() else {
        line("revocation: not checked (no crl or crl_url)".into());
        return Ok(out);
    };
    line(format!(
        "revocation: CRLs checked for {}, unknown status {}, grace {} s past nextUpdate",
        if p.scope == CrlScope::Chain { "every CA level" } else { "the leaf only" },
        if p.unknown == UnknownStatus::Deny { "refused" } else { "allowed" },
        p.grace.as_secs()
    ));
    if p.scope == CrlScope::Leaf {
        line("warning: revocation = \"leaf\": a revoked intermediate CA is not detected".into());
    }
    if p.unknown == UnknownStatus::Allow {
        line("warning: unknown_revocation = \"allow\": clients whose CRL is missing, unusable or stale get in".into());
    }
    for crl in trust.crls().summaries() {
        let state = match &crl.problem {
            Some(p) => format!("UNUSABLE: {p}"),
            None => "ok".to_string(),
        };
        line(format!("  CRL {} of '{}': {} entries, {state}", crl.source, crl.issuer, crl.entries));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ProxyFlags;
    use ambos_testpki::TestPkiDir;

    /// Flags for a proxy with the test PKI's server certificate and root.
    fn flags(files: &TestPkiDir) -> ProxyFlags {
        let (cert, key) = files.write(&files.pki.server("localhost", &["dns:localhost"]), "api");
        ProxyFlags {
            listen: Some("127.0.0.1:8443".into()),
            upstream: Some("http://127.0.0.1:8080".into()),
            cert: Some(cert),
            key: Some(key),
            client_ca: vec![files.path("ca.crt")],
            ..Default::default()
        }
    }

    #[test]
    fn without_crls_revocation_is_not_checked() {
        let files = TestPkiDir::new("Check");
        let text = describe(&ProxyConfig::from_flags(&flags(&files)).unwrap()).unwrap();
        assert_eq!(
            text,
            "configuration OK: 1 route(s), listening on 127.0.0.1:8443\n\
             client CAs: 1 trust anchor(s), 0 known intermediate(s)\n\
             revocation: not checked (no crl or crl_url)\n"
        );
    }

    #[test]
    fn crls_and_risky_revocation_choices_are_named() {
        let files = TestPkiDir::new("Check");
        let crl = files.path("crl.der");
        std::fs::write(&crl, files.pki.crl(&[])).unwrap();
        let config = ProxyFlags {
            crl: vec![crl.clone()],
            revocation: Some("leaf".into()),
            unknown_revocation: Some("allow".into()),
            ..flags(&files)
        };
        let text = describe(&ProxyConfig::from_flags(&config).unwrap()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[2],
            "revocation: CRLs checked for the leaf only, unknown status allowed, grace 3600 s past nextUpdate"
        );
        assert!(lines[3].starts_with("warning: revocation = \"leaf\""), "{text}");
        assert!(lines[4].starts_with("warning: unknown_revocation = \"allow\""), "{text}");
        assert_eq!(lines[5], format!("  CRL {} of 'CN=Check Intermediate CA,O=Check': 0 entries, ok", crl.display()));
        assert_eq!(lines.len(), 6, "{text}");
    }

    #[test]
    fn the_default_policy_checks_every_level_and_refuses_unknown_status() {
        let files = TestPkiDir::new("Check");
        let crl = files.path("crl.der");
        std::fs::write(&crl, files.pki.crl(&[])).unwrap();
        let config = ProxyFlags { crl: vec![crl], ..flags(&files) };
        let text = describe(&ProxyConfig::from_flags(&config).unwrap()).unwrap();
        assert!(text.contains("\nrevocation: CRLs checked for every CA level, unknown status refused,"), "{text}");
        assert!(!text.contains("warning"), "{text}");
    }

    #[test]
    fn check_names_every_problem_the_proxy_would_start_with() {
        let files = TestPkiDir::new("Check");
        // A client certificate, expired an hour ago, as the serving one.
        let (cert, key) = files.write(&files.pki.expired("api"), "expired-api");
        let (leaf, _) = files.write(&files.pki.client("alice", &[]), "alice");
        let crl = files.path("crl.der");
        std::fs::write(&crl, files.pki.stale_crl()).unwrap();
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let listen = taken.local_addr().unwrap();
        let config = ProxyFlags {
            listen: Some(listen.to_string()),
            cert: Some(cert.clone()),
            key: Some(key),
            client_ca: vec![files.path("ca.crt"), leaf.clone()],
            crl: vec![crl.clone()],
            ..flags(&files)
        };
        let config = ProxyConfig::from_flags(&config).unwrap();
        // Only the client CA that is not a CA stops the proxy itself.
        let started = describe(&config).unwrap_err().to_string();
        assert!(started.contains("is not a CA certificate"), "{started}");
        let err = check(&config).unwrap_err();
        assert!(err.is_input());
        let text = err.to_string();
        let lines: Vec<&str> = text.lines().collect();
        let cert = cert.display();
        assert!(lines[0].starts_with(&format!("tls.cert {cert}: expired on 20")), "{text}");
        assert_eq!(
            lines[1],
            format!("tls.cert {cert}: its extended key usage (clientAuth) lacks serverAuth: clients refuse it")
        );
        assert_eq!(
            lines[2],
            format!(
                "tls.client_ca {}: 'O=Check, CN=alice' is not a CA certificate (basicConstraints CA:FALSE)",
                leaf.display()
            )
        );
        assert!(lines[3].starts_with(&format!("tls.crl {}: stale: nextUpdate 20", crl.display())), "{text}");
        assert!(lines[3].ends_with("is more than crl_grace (3600 s) ago"), "{text}");
        assert!(lines[4].starts_with(&format!("listen.address: cannot listen on {listen}: Address")), "{text}");
        assert_eq!(lines.len(), 5, "{text}");
    }

    #[test]
    fn a_good_configuration_passes_the_check() {
        let files = TestPkiDir::new("Check");
        let config = ProxyFlags { listen: Some("127.0.0.1:0".into()), ..flags(&files) };
        let text = check(&ProxyConfig::from_flags(&config).unwrap()).unwrap();
        assert!(text.starts_with("configuration OK"), "{text}");
    }

    #[test]
    fn a_missing_file_is_an_error_before_anything_is_said() {
        let files = TestPkiDir::new("Check");
        let config = ProxyFlags { cert: Some(files.path("nope.crt")), ..flags(&files) };
        let err = describe(&ProxyConfig::from_flags(&config).unwrap()).unwrap_err();
        assert!(err.to_string().contains("nope.crt"), "{err}");
        assert!(err.is_input());
    }
}
