//! Leaf requests as people write them (flags, a line of a batch file) made
//! into validated [`LeafRequest`]s: names, SANs, SPIFFE IDs, OUs and
//! lifetimes checked before anything is issued. Messages name the flag.
use crate::{parse_duration, validate_name, validate_spiffe_id, KeyType, LeafRequest, PkiError, Profile, San};
use std::collections::HashSet;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// A leaf certificate as asked for, before validation.
#[derive(Clone, Debug)]
pub struct LeafSpec {
    pub name: String,
    pub profile: Profile,
    /// `KIND:VALUE` each (`dns:`, `ip:`, `uri:`, `email:`).
    pub sans: Vec<String>,
    /// Added as URI SAN after `sans`.
    pub spiffe: Option<String>,
    pub ous: Vec<String>,
    pub organization: Option<String>,
    /// A duration (`30d`); `None`: the profile's default.
    pub ttl: Option<String>,
    pub key_type: KeyType,
}

fn invalid(msg: String) -> PkiError {
    PkiError::InvalidRequest(msg)
}

/// The SANs (`--san` values, then the SPIFFE ID as URI SAN) and OUs a
/// certificate or an enrollment token asks for, validated.
pub fn parse_names(sans: &[String], spiffe: Option<&str>, ous: &[String]) -> Result<(Vec<San>, Vec<String>), PkiError> {
    let mut parsed = sans.iter().map(|s| s.parse::<San>()).collect::<Result<Vec<_>, _>>()?;
    if let Some(id) = spiffe {
        validate_spiffe_id(id).map_err(|why| invalid(format!("--spiffe '{id}': {why}")))?;
        parsed.push(San::Uri(id.to_string()));
    }
    if let Some(ou) = ous.iter().find(|ou| ou.trim().is_empty() || ou.len() > 64) {
        return Err(invalid(format!("--ou '{ou}' must be 1-64 characters")));
    }
    Ok((parsed, ous.to_vec()))
}

impl LeafRequest {
    /// Validates `spec`: a server needs a SAN or a host name as its name.
    pub fn from_spec(spec: &LeafSpec) -> Result<LeafRequest, PkiError> {
        let name = spec.name.as_str();
        validate_name(name)?;
        let mut req = LeafRequest::new(name, spec.profile);
        (req.sans, req.organizational_units) = parse_names(&spec.sans, spec.spiffe.as_deref(), &spec.ous)?;
        req.organization = spec.organization.clone();
        if let Some(t) = &spec.ttl {
            req.ttl = parse_duration(t).map_err(|e| invalid(format!("--ttl: {e}")))?;
        }
        if spec.profile.server_auth() && req.sans.is_empty() && San::from_host(name).is_none() {
            return Err(invalid(format!(
                "server '{name}' needs --san dns:HOST or ip:ADDR (its name is not a host name)"
            )));
        }
        req.key_type = spec.key_type;
        Ok(req)
    }

    /// A start of validity as `--not-before` takes it: `+DURATION` from
    /// `now` (e.g. `+1h`) or an RFC 3339 time.
    pub fn parse_not_before(when: &str, now: OffsetDateTime) -> Result<OffsetDateTime, PkiError> {
        match when.strip_prefix('+') {
            Some(d) => Ok(now + parse_duration(d).map_err(|e| invalid(format!("--not-before: {e}")))?),
            None => OffsetDateTime::parse(when, &Rfc3339)
                .map_err(|_| invalid(format!("--not-before '{when}': expected +DURATION or an RFC 3339 time"))),
        }
    }
}

/// One line of a batch file in JSON form.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchLine {
    name: String,
    profile: Option<String>,
    #[serde(default)]
    sans: Vec<String>,
    spiffe: Option<String>,
    #[serde(default)]
    ou: Vec<String>,
    o: Option<String>,
    ttl: Option<String>,
    key_type: Option<String>,
}

/// Parses and validates a whole batch file (`source` names it in errors)
/// before anything is issued. A line is CSV `name,profile,sans` (SANs
/// separated by spaces; a `name,...` header is skipped) or a JSON object
/// with `name`, `profile`, `sans`, `spiffe`, `ou`, `o`, `ttl`, `key_type`;
/// blank lines and `#` comments are skipped. What a line leaves out comes
/// from `defaults` (its name, SANs and SPIFFE ID are not used).
pub fn parse_batch(text: &str, source: &str, defaults: &LeafSpec) -> Result<Vec<LeafRequest>, PkiError> {
    let mut out = Vec::new();
    let mut names = HashSet::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let at = || format!("{source}:{}", i + 1);
        if line.is_empty() || line.starts_with('#') || (i == 0 && line.to_ascii_lowercase().starts_with("name,")) {
            continue;
        }
        let entry: BatchLine = if line.starts_with('{') {
            serde_json::from_str(line).map_err(|e| invalid(format!("{}: {e}", at())))?
        } else {
            let mut cols = line.splitn(3, ',').map(str::trim);
            let name = cols.next().unwrap_or_default().to_string();
            let profile = cols.next().filter(|s| !s.is_empty()).map(str::to_string);
            let sans = cols.next().map(|s| s.split_whitespace().map(str::to_string).collect()).unwrap_or_default();
            BatchLine { name, profile, sans, spiffe: None, ou: Vec::new(), o: None, ttl: None, key_type: None }
        };
        let profile = match &entry.profile {
            Some(p) => p.parse::<Profile>().map_err(|e| invalid(format!("{}: {e}", at())))?,
            None => defaults.profile,
        };
        let key_type = match &entry.key_type {
            Some(k) => k.parse::<KeyType>().map_err(|e| invalid(format!("{}: {e}", at())))?,
            None => defaults.key_type,
        };
        let spec = LeafSpec {
            name: entry.name,
            profile,
            sans: entry.sans,
            spiffe: entry.spiffe,
            ous: if entry.ou.is_empty() { defaults.ous.clone() } else { entry.ou },
            organization: entry.o.or_else(|| defaults.organization.clone()),
            ttl: entry.ttl.or_else(|| defaults.ttl.clone()),
            key_type,
        };
        let req = LeafRequest::from_spec(&spec).map_err(|e| invalid(format!("{}: {e}", at())))?;
        if !names.insert(req.name.clone()) {
            return Err(invalid(format!("{}: name '{}' appears twice", at(), req.name)));
        }
        out.push(req);
    }
    if out.is_empty() {
        return Err(invalid(format!("{source} holds no certificates to issue")));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn spec(name: &str, profile: Profile) -> LeafSpec {
        LeafSpec {
            name: name.into(),
            profile,
            sans: Vec::new(),
            spiffe: None,
            ous: Vec::new(),
            organization: None,
            ttl: None,
            key_type: KeyType::EcP256,
        }
    }

    fn refused(s: &LeafSpec) -> String {
        let Err(e) = LeafRequest::from_spec(s) else { panic!("accepted") };
        e.to_string()
    }

    #[test]
    fn a_client_request_carries_its_names_and_lifetime() {
        let s = LeafSpec {
            sans: vec!["dns:web.test".into()],
            spiffe: Some("spiffe://acme.test/web".into()),
            ous: vec!["payments".into()],
            organization: Some("Acme".into()),
            ttl: Some("2h".into()),
            ..spec("web", Profile::Client)
        };
        let r = LeafRequest::from_spec(&s).unwrap();
        assert_eq!(r.sans, vec![San::Dns("web.test".into()), San::Uri("spiffe://acme.test/web".into())]);
        assert_eq!(r.organizational_units, vec!["payments"]);
        assert_eq!(r.organization.as_deref(), Some("Acme"));
        assert_eq!(r.ttl, Duration::from_secs(7200));
        assert_eq!(LeafRequest::from_spec(&spec("web", Profile::Client)).unwrap().ttl, Profile::Client.default_ttl());
    }

    #[test]
    fn not_before_is_a_duration_from_now_or_an_rfc3339_time() {
        let now = OffsetDateTime::from_unix_timestamp(1_798_761_600).unwrap();
        let at = |w: &str| LeafRequest::parse_not_before(w, now).map_err(|e| e.to_string());
        assert_eq!(at("+1h"), Ok(now + Duration::from_secs(3600)));
        assert_eq!(at("2027-01-02T00:00:00Z"), Ok(now + Duration::from_secs(86_400)));
        assert_eq!(at("yesterday").unwrap_err(), "--not-before 'yesterday': expected +DURATION or an RFC 3339 time");
        assert!(at("+5x").unwrap_err().starts_with("--not-before: invalid duration '5x'"), "{:?}", at("+5x"));
    }

    #[test]
    fn a_server_needs_a_host_name_or_a_san() {
        assert!(LeafRequest::from_spec(&spec("api.acme.test", Profile::Server)).is_ok());
        assert!(LeafRequest::from_spec(&spec("10.0.0.5", Profile::Server)).is_ok());
        assert_eq!(
            refused(&spec("my_api", Profile::Server)),
            "server 'my_api' needs --san dns:HOST or ip:ADDR (its name is not a host name)"
        );
        let with_san = LeafSpec { sans: vec!["dns:api.test".into()], ..spec("my_api", Profile::Server) };
        assert!(LeafRequest::from_spec(&with_san).is_ok());
    }

    #[test]
    fn bad_fields_are_refused_naming_the_flag() {
        assert!(refused(&spec("-web", Profile::Client)).starts_with("invalid name '-web'"));
        let s = LeafSpec { spiffe: Some("https://x".into()), ..spec("web", Profile::Client) };
        assert!(refused(&s).starts_with("--spiffe 'https://x': "), "{}", refused(&s));
        let s = LeafSpec { ous: vec![" ".into()], ..spec("web", Profile::Client) };
        assert_eq!(refused(&s), "--ou ' ' must be 1-64 characters");
        let s = LeafSpec { ttl: Some("5q".into()), ..spec("web", Profile::Client) };
        assert!(refused(&s).starts_with("--ttl: invalid duration '5q'"));
        let s = LeafSpec { sans: vec!["ftp:x".into()], ..spec("web", Profile::Client) };
        assert!(refused(&s).starts_with("invalid subject alternative name 'ftp:x'"));
    }

    #[test]
    fn batch_lines_in_csv_and_json_take_defaults_for_what_they_leave_out() {
        let text = "name,profile,sans\n# fleet\n\ndev-1,,dns:dev-1.test ip:10.0.0.1\napi.test,server\n{\"name\":\"cam\",\"ou\":[\"video\"],\"ttl\":\"1h\",\"key_type\":\"ed25519\"}\n";
        let defaults = LeafSpec { ous: vec!["fleet".into()], ttl: Some("2h".into()), ..spec("", Profile::Client) };
        let reqs = parse_batch(text, "devices.csv", &defaults).unwrap();
        let names: Vec<&str> = reqs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["dev-1", "api.test", "cam"]);
        assert_eq!(reqs[0].profile, Profile::Client);
        assert_eq!(reqs[0].sans.len(), 2);
        assert_eq!(reqs[0].organizational_units, vec!["fleet"]);
        assert_eq!(reqs[0].ttl, Duration::from_secs(7200));
        assert_eq!(reqs[1].profile, Profile::Server);
        assert_eq!(reqs[2].organizational_units, vec!["video"]);
        assert_eq!(reqs[2].ttl, Duration::from_secs(3600));
        assert_eq!(reqs[2].key_type, KeyType::Ed25519);
    }

    #[test]
    fn batch_errors_name_file_and_line() {
        let d = spec("", Profile::Client);
        let err = |text: &str| {
            let Err(e) = parse_batch(text, "f.csv", &d) else { panic!("accepted: {text}") };
            e.to_string()
        };
        assert_eq!(err("a\nb\na\n"), "f.csv:3: name 'a' appears twice");
        assert!(err("a,desktop\n").starts_with("f.csv:1: unknown profile 'desktop'"));
        assert!(err("{\"name\":\"a\",\"colour\":\"red\"}\n").starts_with("f.csv:1: unknown field `colour`"));
        assert!(err("ok\nbad name\n").starts_with("f.csv:2: invalid name 'bad name'"));
        assert_eq!(err("# nothing\n\n"), "f.csv holds no certificates to issue");
        assert!(err("my_api,server\n").starts_with("f.csv:1: server 'my_api' needs --san"));
    }
}
