use crate::PkiError;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

/// What a leaf certificate is for; decides EKU, key usage and default SANs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    Server,
    Client,
    /// Both EKUs (serverAuth and clientAuth): a service that is also a
    /// client of others, as SPIFFE X509-SVIDs are.
    #[cfg_attr(feature = "cli", value(name = "server,client"))]
    #[serde(rename = "server,client")]
    ServerClient,
    /// An intermediate CA certificate (only `ambos init` makes these).
    #[cfg_attr(feature = "cli", value(skip))]
    Ca,
}

impl Profile {
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Server => "server",
            Profile::Client => "client",
            Profile::ServerClient => "server,client",
            Profile::Ca => "ca",
        }
    }

    /// Whether it carries EKU serverAuth (and so a server's SAN rules).
    pub fn server_auth(self) -> bool {
        matches!(self, Profile::Server | Profile::ServerClient)
    }

    /// Whether it carries EKU clientAuth.
    pub fn client_auth(self) -> bool {
        matches!(self, Profile::Client | Profile::ServerClient)
    }

    /// Default lifetime: servers rotate monthly, clients daily (as step-ca).
    pub fn default_ttl(self) -> Duration {
        match self {
            Profile::Server | Profile::ServerClient => Duration::from_secs(30 * 86_400),
            Profile::Client => Duration::from_secs(86_400),
            Profile::Ca => Duration::from_secs(5 * 365 * 86_400),
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Profile {
    type Err = PkiError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "server" => Ok(Profile::Server),
            "client" => Ok(Profile::Client),
            "server,client" | "client,server" => Ok(Profile::ServerClient),
            _ => Err(PkiError::UnknownProfile(s.to_string())),
        }
    }
}

/// A subject alternative name as written on the command line: `dns:H`,
/// `ip:A`, `uri:U`, `email:E` (a bare `spiffe://` URI is accepted too).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum San {
    Dns(String),
    Ip(IpAddr),
    Uri(String),
    Email(String),
}

impl San {
    pub(crate) fn to_rcgen(&self) -> Result<rcgen::SanType, PkiError> {
        let bad = |why| PkiError::InvalidSan { value: self.to_string(), why };
        Ok(match self {
            San::Dns(h) => rcgen::SanType::DnsName(h.clone().try_into().map_err(|_| bad("not IA5"))?),
            San::Ip(a) => rcgen::SanType::IpAddress(*a),
            San::Uri(u) => rcgen::SanType::URI(u.clone().try_into().map_err(|_| bad("not IA5"))?),
            San::Email(e) => rcgen::SanType::Rfc822Name(e.clone().try_into().map_err(|_| bad("not IA5"))?),
        })
    }

    /// A DNS name or IP for a bare NAME, used as the server default SAN.
    pub fn from_host(name: &str) -> Option<San> {
        if let Ok(ip) = name.parse::<IpAddr>() {
            return Some(San::Ip(ip));
        }
        valid_dns(name).then(|| San::Dns(name.to_ascii_lowercase()))
    }
}

fn valid_dns(h: &str) -> bool {
    let h = h.strip_prefix("*.").unwrap_or(h);
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

impl fmt::Display for San {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            San::Dns(v) => write!(f, "dns:{v}"),
            San::Ip(v) => write!(f, "ip:{v}"),
            San::Uri(v) => write!(f, "uri:{v}"),
            San::Email(v) => write!(f, "email:{v}"),
        }
    }
}

/// The `kind:value` text of a subjectAltName entry, `San`'s own form
/// (`dns:`, `ip:`, `uri:`, `email:`), for showing what a certificate holds:
/// not validated; an IP of the wrong length is `ip:invalid`, other kinds `other:…`.
pub fn general_name_text(name: &x509_parser::extensions::GeneralName<'_>) -> String {
    use x509_parser::extensions::GeneralName;
    let san = match name {
        GeneralName::DNSName(h) => San::Dns(h.to_string()),
        GeneralName::URI(u) => San::Uri(u.to_string()),
        GeneralName::RFC822Name(e) => San::Email(e.to_string()),
        GeneralName::IPAddress(b) => match san_ip(b) {
            Some(ip) => San::Ip(ip),
            None => return "ip:invalid".into(),
        },
        other => return format!("other:{other}"),
    };
    san.to_string()
}

/// The address in an iPAddress subjectAltName (4 or 16 bytes).
pub fn san_ip(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

impl FromStr for San {
    type Err = PkiError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why| PkiError::InvalidSan { value: s.to_string(), why };
        let s = s.trim();
        if s.starts_with("spiffe://") {
            return parse_uri(s).map(San::Uri).map_err(bad);
        }
        let (kind, value) = s.split_once(':').ok_or_else(|| bad("expected dns:, ip:, uri: or email: prefix"))?;
        match kind.to_ascii_lowercase().as_str() {
            "dns" => {
                if valid_dns(value) {
                    Ok(San::Dns(value.to_ascii_lowercase()))
                } else {
                    Err(bad("not a valid DNS name"))
                }
            }
            "ip" => value.parse().map(San::Ip).map_err(|_| bad("not an IP address")),
            "uri" => parse_uri(value).map(San::Uri).map_err(bad),
            "email" => {
                let ok = value.split_once('@').is_some_and(|(l, d)| !l.is_empty() && valid_dns(d))
                    && value.is_ascii()
                    && !value.contains(char::is_whitespace);
                if ok {
                    Ok(San::Email(value.to_string()))
                } else {
                    Err(bad("not an email address"))
                }
            }
            _ => Err(bad("expected dns:, ip:, uri: or email: prefix")),
        }
    }
}

fn parse_uri(u: &str) -> Result<String, &'static str> {
    let (scheme, _) = u.split_once("://").ok_or("not an absolute URI (scheme://...)")?;
    if scheme.is_empty() || !scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) {
        return Err("bad URI scheme");
    }
    if !u.is_ascii() || u.contains(char::is_whitespace) {
        return Err("URI must be ASCII without spaces");
    }
    if scheme.eq_ignore_ascii_case("spiffe") {
        if scheme != "spiffe" {
            return Err("a SPIFFE ID's scheme must be lower-case spiffe://");
        }
        validate_spiffe_id(u)?;
    }
    Ok(u.to_string())
}

/// The longest SPIFFE ID the spec allows (bytes).
const SPIFFE_ID_MAX: usize = 2048;

/// Checks a SPIFFE ID against the SPIFFE ID spec: `spiffe://` + a trust
/// domain of lower-case letters, digits, `.`, `-`, `_` (no port, user info,
/// query or fragment) + an optional path whose segments are non-empty,
/// not `.` or `..`, and made of letters, digits, `.`, `-`, `_`; at most
/// 2048 bytes. (Anything else, such as `;` or `"`, is misread by naive
/// XFCC and URI parsers, so it is refused at issuance.)
pub fn validate_spiffe_id(id: &str) -> Result<(), &'static str> {
    if id.len() > SPIFFE_ID_MAX {
        return Err("a SPIFFE ID is at most 2048 bytes");
    }
    let rest = id.strip_prefix("spiffe://").ok_or("a SPIFFE ID starts with spiffe://")?;
    if rest.contains('?') {
        return Err("a SPIFFE ID cannot have a query");
    }
    if rest.contains('#') {
        return Err("a SPIFFE ID cannot have a fragment");
    }
    let (domain, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if domain.is_empty() {
        return Err("a SPIFFE ID needs a trust domain: spiffe://domain/path");
    }
    if domain.contains('@') {
        return Err("a SPIFFE ID's trust domain cannot have user info");
    }
    if domain.contains(':') {
        return Err("a SPIFFE ID's trust domain cannot have a port");
    }
    if domain.len() > 255 {
        return Err("a SPIFFE ID's trust domain is at most 255 characters");
    }
    if !domain.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b)) {
        return Err("a SPIFFE ID's trust domain is lower-case letters, digits, '.', '-' and '_' only");
    }
    if path.is_empty() {
        return Ok(());
    }
    for segment in path[1..].split('/') {
        if segment.is_empty() {
            return Err("a SPIFFE ID's path cannot have empty segments ('//' or a trailing '/')");
        }
        if segment == "." || segment == ".." {
            return Err("a SPIFFE ID's path cannot have '.' or '..' segments");
        }
        if !segment.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
            return Err(
                "a SPIFFE ID's path segments are letters, digits, '.', '-' and '_' only (no ';', '\"', '%' ...)",
            );
        }
    }
    Ok(())
}

/// Checks NAME: it becomes the CN and the file names NAME.crt / NAME.key.
pub fn validate_name(name: &str) -> Result<(), PkiError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && !name.starts_with('-')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || ".-_@".contains(c));
    if ok {
        Ok(())
    } else {
        Err(PkiError::InvalidName(name.to_string()))
    }
}

/// Everything needed to issue one leaf certificate.
#[derive(Clone, Debug)]
pub struct LeafRequest {
    pub name: String,
    pub profile: Profile,
    pub sans: Vec<San>,
    pub organizational_units: Vec<String>,
    pub organization: Option<String>,
    pub ttl: Duration,
    pub key_type: crate::KeyType,
    /// Start of validity when not "now minus the back-dating" (e.g. a
    /// certificate that becomes valid at a planned cut-over).
    pub not_before: Option<time::OffsetDateTime>,
}

impl LeafRequest {
    pub fn new(name: &str, profile: Profile) -> Self {
        LeafRequest {
            name: name.to_string(),
            profile,
            sans: Vec::new(),
            organizational_units: Vec::new(),
            organization: None,
            ttl: profile.default_ttl(),
            key_type: crate::KeyType::EcP256,
            not_before: None,
        }
    }

    /// SANs as they will appear: a server's NAME, when it is a host name or
    /// IP, comes first (clients match SANs, never the CN), then the --san values.
    pub(crate) fn effective_sans(&self) -> Vec<San> {
        let mut sans = Vec::with_capacity(self.sans.len() + 1);
        if self.profile.server_auth() {
            sans.extend(San::from_host(&self.name));
        }
        sans.extend(self.sans.iter().cloned());
        let mut seen = std::collections::HashSet::new();
        sans.retain(|s| seen.insert(s.clone()));
        sans
    }
}

/// A CSR for `key` naming `name` (CN) and `sans`, as `enroll` and `renew` send it.
pub fn create_csr(key: &crate::PrivateKey, name: Option<&str>, sans: &[San]) -> Result<Vec<u8>, PkiError> {
    let mut p = rcgen::CertificateParams::default();
    let mut dn = rcgen::DistinguishedName::new();
    if let Some(n) = name {
        dn.push(rcgen::DnType::CommonName, n);
    }
    p.distinguished_name = dn;
    p.subject_alt_names = sans.iter().map(San::to_rcgen).collect::<Result<_, _>>()?;
    Ok(p.serialize_request(key.key_pair())?.der().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn general_names_print_as_san_parses_them() {
        use x509_parser::extensions::GeneralName;
        let cases = [
            (GeneralName::DNSName("api.acme.test"), "dns:api.acme.test"),
            (GeneralName::URI("spiffe://acme.test/web"), "uri:spiffe://acme.test/web"),
            (GeneralName::RFC822Name("ops@acme.test"), "email:ops@acme.test"),
            (GeneralName::IPAddress(&[127, 0, 0, 1]), "ip:127.0.0.1"),
            (GeneralName::IPAddress(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]), "ip:::1"),
            (GeneralName::IPAddress(&[1, 2, 3]), "ip:invalid"),
        ];
        for (name, text) in cases {
            assert_eq!(general_name_text(&name), text);
            if text != "ip:invalid" {
                assert_eq!(text.parse::<San>().unwrap().to_string(), text, "round trip");
            }
        }
        assert!(general_name_text(&GeneralName::RegisteredID(x509_parser::oid_registry::OID_X509_COMMON_NAME))
            .starts_with("other:"));
        assert_eq!(san_ip(&[10, 0, 0, 1]), Some(IpAddr::from([10, 0, 0, 1])));
        assert_eq!(san_ip(&[]), None);
    }

    #[test]
    fn san_syntax() {
        assert_eq!("dns:api.example.com".parse::<San>().unwrap(), San::Dns("api.example.com".into()));
        assert_eq!("ip:127.0.0.1".parse::<San>().unwrap(), San::Ip("127.0.0.1".parse().unwrap()));
        assert!(matches!("spiffe://acme.test/web".parse::<San>().unwrap(), San::Uri(_)));
        assert!(matches!("uri:spiffe://acme.test/a/b".parse::<San>().unwrap(), San::Uri(_)));
        assert!("email:ops@acme.test".parse::<San>().is_ok());
        for bad in ["api", "dns:bad_host!", "ip:300.1.1.1", "uri:nope", "uri:spiffe:///x", "x:y"] {
            assert!(bad.parse::<San>().is_err(), "{bad}");
        }
    }

    #[test]
    fn spiffe_ids_follow_the_spiffe_spec() {
        for good in [
            "spiffe://acme.test",
            "spiffe://acme.test/web",
            "spiffe://acme-prod_1.test/ns/default/sa/Web.API-v2_x",
            "uri:spiffe://acme.test/a/b",
            "spiffe://acme.test/...x",
        ] {
            assert!(good.parse::<San>().is_ok(), "{good}");
        }
        let long_ok = format!("spiffe://acme.test/{}", "a".repeat(SPIFFE_ID_MAX - 19));
        assert_eq!(long_ok.len(), SPIFFE_ID_MAX);
        assert!(long_ok.parse::<San>().is_ok());
        let too_long = format!("{long_ok}b");
        for bad in [
            "spiffe://acme.test/w;URI=spiffe://acme.test/admin",
            "spiffe://acme.test/w\"x",
            "spiffe://acme.test/w%2Fadmin",
            "spiffe://acme.test/a//b",
            "spiffe://acme.test/a/",
            "spiffe://acme.test/",
            "spiffe://acme.test/./a",
            "spiffe://acme.test/a/..",
            "spiffe://acme.test/a?x=1",
            "spiffe://acme.test/a#f",
            "spiffe://ACME.test/a",
            "spiffe://acme.test:8443/a",
            "spiffe://user@acme.test/a",
            "spiffe:///a",
            "spiffe://",
            "SPIFFE://acme.test/a",
            "uri:Spiffe://acme.test/a",
            "spiffe://acme.test/a b",
            "spiffe://acme.test/a,b",
            "spiffe://acme.test/a=b",
            "spiffe://acme.test/é",
            too_long.as_str(),
        ] {
            assert!(bad.parse::<San>().is_err(), "{bad}");
        }
        let err = "spiffe://acme.test/w;URI=x".parse::<San>().unwrap_err().to_string();
        assert!(err.contains("';'") && !err.contains('\n'), "{err}");
    }

    #[test]
    fn names_that_would_escape_the_output_directory_are_refused() {
        assert!(validate_name("web-1.acme").is_ok());
        for bad in ["", "../x", "a/b", ".hidden", "-flag", "a b"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }
}
