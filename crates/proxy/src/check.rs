//! `ambos proxy --check`: loads every file a configuration names and builds
//! its runtime as `run` will, so a bad file is reported before listening,
//! and says what was loaded.
use crate::runtime::Runtime;
use crate::{ProxyConfig, ProxyError};
use ambos_tls::{CrlScope, UnknownStatus};

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
    fn a_missing_file_is_an_error_before_anything_is_said() {
        let files = TestPkiDir::new("Check");
        let config = ProxyFlags { cert: Some(files.path("nope.crt")), ..flags(&files) };
        let err = describe(&ProxyConfig::from_flags(&config).unwrap()).unwrap_err();
        assert!(err.to_string().contains("nope.crt"), "{err}");
        assert!(err.is_input());
    }
}
