//! `ambos serve`'s settings as given (the flags' text and numbers), checked
//! into [`ServeOptions`]: errors name the flag.
use super::{ServeLimits, ServeOptions};
use crate::CaError;
use ambos_pki::{parse_duration, San};
use std::time::Duration;

/// The flags of `ambos serve`, unparsed (with the `cli` feature, the
/// binary's own flags: clap reads them into this).
#[derive(Clone, Debug)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct ServeFlags {
    /// Address of the HTTPS API.
    #[cfg_attr(feature = "cli", arg(long, default_value = "127.0.0.1:9443"))]
    pub listen: String,
    /// Extra SANs for the API's own certificate (localhost, 127.0.0.1, ::1 and the host name are always in).
    #[cfg_attr(feature = "cli", arg(long = "san", value_name = "KIND:VALUE"))]
    pub sans: Vec<String>,
    /// nextUpdate of the published CRLs (re-signed at half of it and on every revocation).
    #[cfg_attr(feature = "cli", arg(long, default_value = "24h"))]
    pub crl_validity: String,
    /// Lifetime of the API's own certificate (renewed by itself at 2/3).
    #[cfg_attr(feature = "cli", arg(long, default_value = "24h"))]
    pub server_cert_ttl: String,
    /// Connections open at once; at the cap the oldest idle or handshaking one is closed for a new one.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 1000))]
    pub max_connections: usize,
    /// Connections open at once from one address (IPv6: one /64).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 256))]
    pub max_connections_per_source: usize,
    /// Time for a request head, from when the connection waits for a request (also the keep-alive idle time).
    #[cfg_attr(feature = "cli", arg(long, default_value = "10s"))]
    pub header_timeout: String,
    /// Failed enrollment tokens from one address within --token-failure-window before it gets 429.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 10))]
    pub token_failure_limit: usize,
    #[cfg_attr(feature = "cli", arg(long, default_value = "1m"))]
    pub token_failure_window: String,
    /// OAuth issuer identifier: `iss` of access tokens and the base of the
    /// RFC 8414 metadata [default: https://<first --san DNS name, else localhost>:<port>].
    #[cfg_attr(feature = "cli", arg(long, value_name = "URL"))]
    pub issuer: Option<String>,
    /// Lifetime of access tokens from /v1/oauth/token (10s to 1h).
    #[cfg_attr(feature = "cli", arg(long, default_value = "5m"))]
    pub access_token_ttl: String,
}

impl ServeOptions {
    /// Parses and checks `f`; the limits it does not set keep their defaults.
    pub fn from_flags(f: &ServeFlags) -> Result<ServeOptions, CaError> {
        let listen = f.listen.parse().map_err(|_| invalid(format!("--listen '{}' is not an address", f.listen)))?;
        Ok(ServeOptions {
            listen,
            sans: f.sans.iter().map(|s| s.parse::<San>()).collect::<Result<_, _>>()?,
            crl_validity: duration(&f.crl_validity, "crl-validity")?,
            server_cert_ttl: duration(&f.server_cert_ttl, "server-cert-ttl")?,
            limits: ServeLimits {
                max_connections: positive(f.max_connections, "max-connections")?,
                max_connections_per_source: positive(f.max_connections_per_source, "max-connections-per-source")?,
                header_timeout: bounded(&f.header_timeout, "header-timeout")?,
                token_failure_limit: positive(f.token_failure_limit, "token-failure-limit")?,
                token_failure_window: bounded(&f.token_failure_window, "token-failure-window")?,
                ..ServeLimits::default()
            },
            issuer: f.issuer.as_deref().map(issuer).transpose()?,
            token_ttl: token_ttl(&f.access_token_ttl)?,
        })
    }
}

fn invalid(message: String) -> CaError {
    CaError::InvalidSetting(message)
}

fn duration(text: &str, flag: &str) -> Result<Duration, CaError> {
    parse_duration(text).map_err(|e| invalid(format!("--{flag}: {e}")))
}

/// A duration between 1 s and 24 h (0 would close every connection or
/// never count a failure; a huge one would overflow the timers).
fn bounded(text: &str, flag: &str) -> Result<Duration, CaError> {
    let d = duration(text, flag)?;
    if d < Duration::from_secs(1) || d > Duration::from_secs(86_400) {
        return Err(invalid(format!("--{flag} '{text}' must be between 1s and 24h")));
    }
    Ok(d)
}

/// An https URL without query or fragment, kept without a trailing `/`
/// (RFC 8414 §2); tokens' `iss` must be exactly this.
fn issuer(url: &str) -> Result<String, CaError> {
    let ok = url
        .strip_prefix("https://")
        .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/') && !rest.contains(['?', '#', ' ']));
    if !ok {
        return Err(invalid(format!("--issuer '{url}' must be an https:// URL without query or fragment")));
    }
    Ok(url.trim_end_matches('/').to_string())
}

/// Access tokens live between 10 s and [`crate::oauth::MAX_TOKEN_TTL`].
fn token_ttl(text: &str) -> Result<Duration, CaError> {
    let d = duration(text, "access-token-ttl")?;
    if d < Duration::from_secs(10) || d > crate::oauth::MAX_TOKEN_TTL {
        return Err(invalid(format!("--access-token-ttl '{text}' must be between 10s and 1h")));
    }
    Ok(d)
}

fn positive(n: usize, flag: &str) -> Result<usize, CaError> {
    if n == 0 {
        return Err(invalid(format!("--{flag} must be at least 1")));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ambos serve`'s defaults.
    fn defaults() -> ServeFlags {
        ServeFlags {
            listen: "127.0.0.1:9443".into(),
            sans: vec![],
            crl_validity: "24h".into(),
            server_cert_ttl: "24h".into(),
            max_connections: 1000,
            max_connections_per_source: 256,
            header_timeout: "10s".into(),
            token_failure_limit: 10,
            token_failure_window: "1m".into(),
            issuer: None,
            access_token_ttl: "5m".into(),
        }
    }

    fn error(f: ServeFlags) -> String {
        let e = ServeOptions::from_flags(&f).unwrap_err();
        assert!(e.is_input(), "{e}");
        e.to_string()
    }

    #[test]
    fn the_defaults_are_the_libraries_defaults() {
        let o = ServeOptions::from_flags(&ServeFlags { sans: vec!["dns:ca.acme.test".into()], ..defaults() }).unwrap();
        assert_eq!(o.listen, "127.0.0.1:9443".parse().unwrap());
        assert_eq!(o.sans, vec!["dns:ca.acme.test".parse::<San>().unwrap()]);
        assert_eq!((o.crl_validity, o.server_cert_ttl), (Duration::from_secs(86_400), Duration::from_secs(86_400)));
        let (l, d) = (o.limits, ServeLimits::default());
        assert_eq!(
            (l.max_connections, l.max_connections_per_source),
            (d.max_connections, d.max_connections_per_source)
        );
        assert_eq!((l.header_timeout, l.token_failure_window), (d.header_timeout, d.token_failure_window));
        assert_eq!(l.token_failure_limit, d.token_failure_limit);
    }

    #[test]
    fn each_error_names_its_flag() {
        assert_eq!(error(ServeFlags { listen: "nope".into(), ..defaults() }), "--listen 'nope' is not an address");
        assert_eq!(
            error(ServeFlags { header_timeout: "500ms".into(), ..defaults() }),
            "--header-timeout '500ms' must be between 1s and 24h"
        );
        assert_eq!(
            error(ServeFlags { header_timeout: "0s".into(), ..defaults() }),
            "--header-timeout: duration '0s' must be more than 0"
        );
        assert_eq!(
            error(ServeFlags { token_failure_window: "25h".into(), ..defaults() }),
            "--token-failure-window '25h' must be between 1s and 24h"
        );
        assert_eq!(error(ServeFlags { max_connections: 0, ..defaults() }), "--max-connections must be at least 1");
        assert_eq!(
            error(ServeFlags { max_connections_per_source: 0, ..defaults() }),
            "--max-connections-per-source must be at least 1"
        );
        assert_eq!(
            error(ServeFlags { token_failure_limit: 0, ..defaults() }),
            "--token-failure-limit must be at least 1"
        );
        assert!(error(ServeFlags { crl_validity: "7q".into(), ..defaults() })
            .starts_with("--crl-validity: invalid duration '7q'"));
        assert!(error(ServeFlags { server_cert_ttl: "x".into(), ..defaults() }).starts_with("--server-cert-ttl: "));
        assert!(error(ServeFlags { sans: vec!["foo:bar".into()], ..defaults() }).contains("'foo:bar'"));
        for bad in ["http://ca.test", "https://", "https://ca.test/?x=1", "ca.test"] {
            let e = error(ServeFlags { issuer: Some(bad.into()), ..defaults() });
            assert!(e.starts_with("--issuer "), "{bad}: {e}");
        }
        assert_eq!(
            error(ServeFlags { access_token_ttl: "2h".into(), ..defaults() }),
            "--access-token-ttl '2h' must be between 10s and 1h"
        );
        let o = ServeOptions::from_flags(&ServeFlags { issuer: Some("https://ca.test:9443/".into()), ..defaults() });
        assert_eq!(o.unwrap().issuer.as_deref(), Some("https://ca.test:9443"));
    }

    #[test]
    fn one_second_and_a_day_are_the_bounds() {
        let o = ServeOptions::from_flags(&ServeFlags {
            header_timeout: "1s".into(),
            token_failure_window: "24h".into(),
            ..defaults()
        })
        .unwrap();
        assert_eq!(
            (o.limits.header_timeout, o.limits.token_failure_window),
            (Duration::from_secs(1), Duration::from_secs(86_400))
        );
        assert!(ServeOptions::from_flags(&ServeFlags { header_timeout: "999ms".into(), ..defaults() }).is_err());
    }
}
