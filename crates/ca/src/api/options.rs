//! `ambos serve`'s settings as given (the flags' text and numbers), checked
//! into [`ServeOptions`]: errors name the flag.
use super::{ServeLimits, ServeOptions};
use crate::CaError;
use ambos_pki::{parse_duration, San};
use std::time::Duration;

/// The flags of `ambos serve`, unparsed.
#[derive(Clone, Debug)]
pub struct ServeFlags {
    pub listen: String,
    pub sans: Vec<String>,
    pub crl_validity: String,
    pub server_cert_ttl: String,
    pub max_connections: usize,
    pub max_connections_per_source: usize,
    pub header_timeout: String,
    pub token_failure_limit: usize,
    pub token_failure_window: String,
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
