//! proxy.toml and the `ambos proxy` flags: raw serde structs (unknown keys
//! refused) → validated [`ProxyConfig`], pure data (paths, addresses,
//! limits, route rules): parsing one touches no file but the config, no
//! socket and no metric. `runtime.rs` builds the objects it describes.
use crate::audit::AuditConfig;
use crate::authorize::{parse_allow, RouteConfig};
use crate::ProxyError;
use ambos_tls::{ClientAuth, CrlScope, RevocationPolicy, ServerTlsConfig, TlsVersion, UnknownStatus};
use http::Method;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: RawListen,
    tls: RawTls,
    upstream: RawUpstream,
    #[serde(default)]
    headers: RawHeaders,
    #[serde(default, rename = "route")]
    routes: Vec<RawRoute>,
    audit: Option<RawAudit>,
    metrics: Option<RawMetrics>,
    #[serde(default)]
    limits: RawLimits,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListen {
    address: String,
    mode: Option<String>,
    hosts: Option<Vec<String>>,
    alpn: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: String,
    key: String,
    client_ca: OneOrMany,
    crl: Option<OneOrMany>,
    crl_url: Option<String>,
    crl_refresh: Option<String>,
    crl_from_distribution_points: Option<bool>,
    revocation: Option<String>,
    unknown_revocation: Option<String>,
    crl_grace: Option<String>,
    client_auth: Option<String>,
    min_version: Option<String>,
    session_resumption: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    url: Option<String>,
    address: Option<String>,
    proxy_protocol: Option<String>,
    protocol: Option<String>,
    tls: Option<RawUpstreamTls>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstreamTls {
    ca: OneOrMany,
    cert: Option<String>,
    key: Option<String>,
    server_name: Option<String>,
    expect: Option<String>,
    alpn: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHeaders {
    client_cert: Option<String>,
    underscores: Option<String>,
    forwarded: Option<String>,
    trusted_proxies: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    path: Option<String>,
    methods: Option<Vec<String>>,
    allow: Vec<String>,
    websocket: Option<bool>,
    token: Option<RawToken>,
}

/// `[[route]] token = { issuer, jwks, jwks_refresh, audience, scopes, bound, forward }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    issuer: String,
    jwks: String,
    jwks_refresh: Option<String>,
    audience: String,
    #[serde(default)]
    scopes: Vec<String>,
    bound: Option<bool>,
    forward: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    path: String,
    max_size: Option<String>,
    keep: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    address: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    handshake_timeout: Option<String>,
    idle_timeout: Option<String>,
    max_connections: Option<usize>,
    max_connections_per_source: Option<usize>,
    max_handshakes_per_source: Option<usize>,
    connection_rate_per_source: Option<u32>,
    upstream_connect_timeout: Option<String>,
    upstream_timeout: Option<String>,
    body_timeout: Option<String>,
    body_min_rate: Option<u64>,
    max_upstream_per_connection: Option<usize>,
    upstream_queue_timeout: Option<String>,
    shutdown_grace: Option<String>,
    max_grpc_message: Option<String>,
}

/// `[headers] forwarded`: which headers tell the upstream the client's
/// address, the Host it asked for and the scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ForwardedHeaders {
    /// X-Forwarded-For, X-Forwarded-Host, X-Forwarded-Proto.
    #[default]
    XForwarded,
    /// RFC 7239 `Forwarded: for=...;host=...;proto=https`.
    Rfc7239,
    Both,
}

/// What happens to a request header whose name contains `_`
/// (`[headers] underscores`). CGI, WSGI, PHP and Django fold `_` and `-`
/// into one variable, so such a name can shadow a header the proxy sets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Underscores {
    /// Removed before forwarding, counted in `ambos_proxy_headers_dropped_total`.
    #[default]
    Drop,
    /// The request is refused with 400.
    Reject,
    /// Forwarded (names that fold to one of the proxy's own are still removed).
    Allow,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Http,
    Tcp,
}

/// `[upstream.tls]`: TLS (and mTLS) to an `https://` upstream, or to a
/// TCP-mode one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamTlsConfig {
    /// CA certificates the upstream's certificate must chain to.
    pub ca: Vec<PathBuf>,
    /// The proxy's own client certificate chain and key, if the upstream asks for one.
    pub client: Option<(PathBuf, PathBuf)>,
    /// The name the upstream's certificate must carry (default: the URL's or address's host).
    pub server_name: String,
    /// An identity the upstream's verified leaf must also carry (`expect`).
    pub expect: Option<crate::authorize::Expected>,
    /// TCP mode: the protocols offered in ALPN (none by default). HTTP
    /// mode offers its own, from `protocol`.
    pub alpn: Vec<Vec<u8>>,
}

/// The HTTP version spoken to an HTTP-mode upstream (`[upstream] protocol`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamProtocol {
    /// HTTP/1.1 over pooled keep-alive connections (`http://`).
    Http1,
    /// HTTP/2 over one shared, multiplexed connection: prior knowledge in
    /// cleartext (`h2c://`), or `h2` required in ALPN (`https://`).
    H2,
    /// `https://` only: ALPN offers h2 and http/1.1, the upstream chooses.
    Auto,
}

#[derive(Clone, Debug)]
pub enum Upstream {
    /// `http://`, `h2c://` or `https://host:port` (HTTP mode): its
    /// authority, for https how the upstream is verified and who we are,
    /// and the HTTP version to speak.
    Http { authority: http::uri::Authority, tls: Option<UpstreamTlsConfig>, protocol: UpstreamProtocol },
    /// `host:port` (TCP mode), with TLS to it when `[upstream.tls]` is given.
    Tcp { address: String, tls: Option<UpstreamTlsConfig> },
}

impl Upstream {
    /// `[upstream.tls]`, in either mode.
    pub fn tls(&self) -> Option<&UpstreamTlsConfig> {
        match self {
            Upstream::Http { tls, .. } | Upstream::Tcp { tls, .. } => tls.as_ref(),
        }
    }
}

/// The host of a `host:port` address, an IPv6 one without its brackets.
pub fn address_host(address: &str) -> &str {
    let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

#[derive(Clone, Debug)]
pub struct Limits {
    pub handshake_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    /// Connections one source address (IPv6: its /64) may hold.
    pub max_connections_per_source: usize,
    /// Connections one source address may have in their TLS handshake.
    pub max_handshakes_per_source: usize,
    /// New connections per second one source address may open that do not
    /// complete a handshake (burst: twice it); 0 (the default): no limit.
    pub connection_rate_per_source: u32,
    /// Connecting to the upstream (HTTP and TCP mode).
    pub upstream_connect_timeout: Duration,
    /// From the request sent to the upstream's response head: 504 after it.
    pub upstream_timeout: Duration,
    /// The window over which a request body must make progress.
    pub body_timeout: Duration,
    /// Bytes per second a request body must average over each
    /// `body_timeout` window (0: at least one byte per window).
    pub body_min_rate: u64,
    /// Upstream connections one client connection (all the streams of an
    /// HTTP/2 one) may hold at once; past it a request queues.
    pub max_upstream_per_connection: usize,
    /// How long a queued request waits for one of them: 503 after it.
    pub upstream_queue_timeout: Duration,
    pub shutdown_grace: Duration,
    /// The largest message a gRPC request (`application/grpc*`) may carry
    /// to the upstream; 0: no limit.
    pub max_grpc_message: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            max_connections_per_source: 1_000,
            max_handshakes_per_source: 128,
            connection_rate_per_source: 0,
            upstream_connect_timeout: Duration::from_secs(10),
            upstream_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(30),
            body_min_rate: 500,
            max_upstream_per_connection: 32,
            upstream_queue_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(30),
            max_grpc_message: 0,
        }
    }
}

/// A CRL pulled over HTTPS (`ambos serve`'s `/v1/crl`), refreshed with conditional GETs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrlSource {
    /// The first URL given: the name the pulled CRLs are kept under.
    pub url: http::Uri,
    /// Further CA nodes (`crl_url = "https://ca1/v1/crl,https://ca2/v1/crl"`),
    /// asked in order when the one before cannot be had.
    pub also: Vec<http::Uri>,
    pub refresh: Duration,
}

impl CrlSource {
    /// `text`: one or more https:// URLs, comma-separated; `what` names
    /// the setting in errors.
    pub fn parse(text: &str, refresh: Duration, what: &str) -> Result<CrlSource, ProxyError> {
        let mut urls = Vec::new();
        for url in text.split(',').map(str::trim).filter(|u| !u.is_empty()) {
            let uri: http::Uri = url.parse().map_err(|_| invalid(format!("{what} '{url}' is not a URL")))?;
            if uri.scheme_str() != Some("https") || uri.host().is_none() {
                return Err(invalid(format!("{what} '{url}' must be an https:// URL")));
            }
            urls.push(uri);
        }
        if urls.is_empty() {
            return Err(invalid(format!("{what} is empty")));
        }
        let url = urls.remove(0);
        Ok(CrlSource { url, also: urls, refresh })
    }
}

/// A validated proxy configuration: nothing in it can be invalid.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    pub listen: SocketAddr,
    pub mode: Mode,
    pub tls: ServerTlsConfig,
    pub crl_url: Option<CrlSource>,
    /// Fetch the CRLs named by the CRL distribution points of verified
    /// paths (and of the configured CAs), refreshed every `crl_refresh`.
    pub crl_from_distribution_points: bool,
    /// How often pulled CRLs (URL or distribution points) are refreshed.
    pub crl_refresh: Duration,
    pub upstream: Upstream,
    pub xfcc: bool,
    /// `[headers] client_cert = "rfc9440"|"both"`: Client-Cert and
    /// Client-Cert-Chain (RFC 9440) to the upstream.
    pub rfc9440: bool,
    /// `[upstream] proxy_protocol = "v2"` (TCP mode): a PROXY protocol v2
    /// header with the client's address and identity opens each upstream
    /// connection.
    pub proxy_protocol: bool,
    pub underscores: Underscores,
    /// `[headers] forwarded`: X-Forwarded-* (default), RFC 7239 `Forwarded`, or both.
    pub forwarded: ForwardedHeaders,
    /// `[headers] trusted_proxies`: clients whose X-Forwarded-For and
    /// Forwarded are kept (this hop appended) instead of replaced.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// `[listen] hosts`: the host names this listener serves (lower case).
    /// When set, a request's `Host` must be one of them and match the
    /// client's SNI, else 421. Empty: any `Host`.
    pub hosts: Vec<String>,
    /// In config order; `Runtime::build` makes the `RouteTable`.
    pub routes: Vec<RouteConfig>,
    pub audit: Option<AuditConfig>,
    pub metrics: Option<SocketAddr>,
    pub limits: Limits,
    /// The file it came from; reloads read it again.
    pub source: Option<PathBuf>,
}

/// The flags-only form: `ambos proxy --listen A --upstream U --cert C ...`
/// (with the `cli` feature, the binary's flags; the four the proxy cannot
/// run without are checked by [`ProxyConfig::from_flags`], as the binary's
/// `--config` is the alternative to all of them).
#[derive(Clone, Debug, Default)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct ProxyFlags {
    /// Address to listen on, e.g. 127.0.0.1:8443.
    #[cfg_attr(feature = "cli", arg(long))]
    pub listen: Option<String>,
    /// http://, h2c:// (HTTP/2) or https://host:port (HTTP mode), or host:port (with --tcp).
    #[cfg_attr(feature = "cli", arg(long))]
    pub upstream: Option<String>,
    /// Server certificate chain (PEM, leaf first).
    #[cfg_attr(feature = "cli", arg(long))]
    pub cert: Option<PathBuf>,
    /// Server private key (PEM, unencrypted).
    #[cfg_attr(feature = "cli", arg(long))]
    pub key: Option<PathBuf>,
    /// CA certificate(s) client certificates must chain to (repeatable).
    #[cfg_attr(feature = "cli", arg(long = "client-ca"))]
    pub client_ca: Vec<PathBuf>,
    /// CRL file(s), reloaded when they change (repeatable).
    #[cfg_attr(feature = "cli", arg(long))]
    pub crl: Vec<PathBuf>,
    /// Pull the CRL from `ambos serve` (https://ca:9443/v1/crl) and refresh it.
    #[cfg_attr(feature = "cli", arg(long))]
    pub crl_url: Option<String>,
    /// Fetch CRLs from the distribution points that verified client chains
    /// (and the --client-ca certificates) name, and refresh them.
    #[cfg_attr(feature = "cli", arg(long))]
    pub crl_from_distribution_points: bool,
    /// How often to refresh --crl-url and distribution points (default 60s).
    #[cfg_attr(feature = "cli", arg(long))]
    pub crl_refresh: Option<String>,
    /// Which certificates need a CRL: `chain` (default: every certificate
    /// below the root, as nginx's ssl_crl) or `leaf` (the client's own only).
    #[cfg_attr(feature = "cli", arg(long, value_name = "chain|leaf"))]
    pub revocation: Option<String>,
    /// Clients whose revocation status is unknown (no usable or fresh CRL for
    /// a CA of their chain): `deny` (default) or `allow`.
    #[cfg_attr(feature = "cli", arg(long, value_name = "deny|allow"))]
    pub unknown_revocation: Option<String>,
    /// How long past its nextUpdate a CRL is still enforced before the status
    /// becomes unknown (default 1h).
    #[cfg_attr(feature = "cli", arg(long))]
    pub crl_grace: Option<String>,
    /// TLS to the upstream (https://, or with --tcp): CA certificate(s) its certificate must chain to (repeatable).
    #[cfg_attr(feature = "cli", arg(long = "upstream-ca"))]
    pub upstream_ca: Vec<PathBuf>,
    /// For a TLS upstream: the proxy's own client certificate chain (mTLS to the upstream).
    #[cfg_attr(feature = "cli", arg(long, requires = "upstream_key"))]
    pub upstream_cert: Option<PathBuf>,
    /// The key of --upstream-cert (PEM, unencrypted).
    #[cfg_attr(feature = "cli", arg(long, requires = "upstream_cert"))]
    pub upstream_key: Option<PathBuf>,
    /// For a TLS upstream: the name its certificate must carry (default: the host of --upstream).
    #[cfg_attr(feature = "cli", arg(long))]
    pub upstream_server_name: Option<String>,
    /// For a TLS upstream: an identity its certificate must also carry, as `ambos tunnel --expect`.
    #[cfg_attr(feature = "cli", arg(long))]
    pub upstream_expect: Option<String>,
    /// Identity allowed through, e.g. spiffe://acme.test/web, cn:web, ou:payments (repeatable; default any).
    #[cfg_attr(feature = "cli", arg(long))]
    pub allow: Vec<String>,
    /// Raw TCP instead of HTTP: pipe bytes after the handshake and the allow check.
    #[cfg_attr(feature = "cli", arg(long))]
    pub tcp: bool,
    #[cfg_attr(feature = "cli", arg(skip))]
    pub optional_client_auth: bool,
    /// Audit log (JSON lines) path.
    #[cfg_attr(feature = "cli", arg(long))]
    pub audit: Option<PathBuf>,
    /// Metrics listener address for /metrics and /healthz.
    #[cfg_attr(feature = "cli", arg(long))]
    pub metrics: Option<String>,
}

fn invalid(msg: impl Into<String>) -> ProxyError {
    ProxyError::Invalid(msg.into())
}

/// The longest duration any setting takes: beyond it a value is a typo,
/// and deadlines computed from it could overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(10 * 365 * 86_400);

/// A setting's duration in the one grammar (`ambos_pki::parse_duration_within`),
/// at most [`MAX_DURATION`]; 0 is allowed here (the callers that need more
/// than 0 say so with [`positive`]).
fn duration(text: &str, field: &str) -> Result<Duration, ProxyError> {
    ambos_pki::parse_duration_within(text, MAX_DURATION).map_err(|e| invalid(format!("{field}: {e}")))
}

/// A duration that must be more than 0 (a timeout of 0 would refuse everything).
fn positive(text: &str, field: &str) -> Result<Duration, ProxyError> {
    let d = duration(text, field)?;
    if d.is_zero() {
        return Err(invalid(format!("{field}: duration '{text}' must be more than 0")));
    }
    Ok(d)
}

/// The revocation policy, when any CRL source is configured.
fn revocation(
    configured: bool,
    check: Option<&str>,
    unknown: Option<&str>,
    grace: Option<&str>,
    at: &str,
) -> Result<Option<RevocationPolicy>, ProxyError> {
    let mut p = RevocationPolicy {
        scope: CrlScope::Chain,
        unknown: UnknownStatus::Deny,
        grace: RevocationPolicy::default().grace,
    };
    p.scope = match check.unwrap_or("chain") {
        "chain" => CrlScope::Chain,
        "leaf" => CrlScope::Leaf,
        other => return Err(invalid(format!("{at}revocation: '{other}' (expected \"chain\" or \"leaf\")"))),
    };
    p.unknown = match unknown.unwrap_or("deny") {
        "deny" => UnknownStatus::Deny,
        "allow" => UnknownStatus::Allow,
        other => return Err(invalid(format!("{at}unknown_revocation: '{other}' (expected \"deny\" or \"allow\")"))),
    };
    if let Some(g) = grace {
        p.grace = duration(g, &format!("{at}crl_grace"))?;
    }
    let tuned = check.is_some() || unknown.is_some() || grace.is_some();
    if tuned && !configured {
        return Err(invalid(format!(
            "{at}revocation, {at}unknown_revocation and {at}crl_grace need a CRL (crl or crl_url)"
        )));
    }
    Ok(configured.then_some(p))
}

fn socket_addr(text: &str, field: &str) -> Result<SocketAddr, ProxyError> {
    text.parse().map_err(|_| invalid(format!("{field}: '{text}' is not an address like 127.0.0.1:8443")))
}

/// How often pulled CRLs are refreshed; only with a URL or distribution points.
fn crl_refresh(refresh: Option<&str>, pulled: bool, field: &str) -> Result<Duration, ProxyError> {
    let every = match refresh {
        Some(_) if !pulled => {
            return Err(invalid(format!("{field}_refresh needs {field}_url or crl_from_distribution_points")))
        }
        Some(r) => duration(r, &format!("{field}_refresh"))?,
        None => Duration::from_secs(60),
    };
    if every.is_zero() {
        return Err(invalid(format!("{field}_refresh must be more than 0")));
    }
    Ok(every)
}

fn crl_source(url: Option<&str>, refresh: Option<&str>, field: &str) -> Result<Option<CrlSource>, ProxyError> {
    let Some(url) = url else {
        return Ok(None);
    };
    let refresh = match refresh {
        Some(r) => duration(r, &format!("{field}_refresh"))?,
        None => Duration::from_secs(60),
    };
    if refresh.is_zero() {
        return Err(invalid(format!("{field}_refresh must be more than 0")));
    }
    Ok(Some(CrlSource::parse(url, refresh, &format!("{field}_url:"))?))
}

/// `token.jwks`: a file, or an http(s):// URL refreshed every `jwks_refresh` (default 5m).
fn jwks_source(
    jwks: &str,
    refresh: Option<&str>,
    base: &Path,
    at: &str,
) -> Result<crate::authorize::token::JwksSource, ProxyError> {
    use crate::authorize::token::JwksSource;
    if !(jwks.starts_with("http://") || jwks.starts_with("https://")) {
        if refresh.is_some() {
            return Err(invalid(format!("{at}.jwks_refresh needs {at}.jwks to be a URL")));
        }
        return Ok(JwksSource::File(resolve(base, jwks)));
    }
    let url: http::Uri = jwks.parse().map_err(|_| invalid(format!("{at}.jwks: '{jwks}' is not a URL")))?;
    if url.host().is_none() {
        return Err(invalid(format!("{at}.jwks: '{jwks}' has no host")));
    }
    let refresh = match refresh {
        Some(r) => positive(r, &format!("{at}.jwks_refresh"))?,
        None => Duration::from_secs(300),
    };
    Ok(JwksSource::Url { url, refresh })
}

fn http_upstream(
    url: &str,
    protocol: Option<&str>,
    tls: Option<RawUpstreamTls>,
    base: &Path,
) -> Result<Upstream, ProxyError> {
    let uri: http::Uri = url.parse().map_err(|_| invalid(format!("upstream.url: '{url}' is not a URL")))?;
    let scheme = uri.scheme_str().unwrap_or("");
    let https = match scheme {
        "http" | "h2c" => false,
        "https" => true,
        _ => {
            return Err(invalid(format!(
                "upstream.url: '{url}' must be http://host:port, h2c://host:port or https://host:port"
            )))
        }
    };
    let protocol = match (scheme, protocol) {
        ("http", None | Some("http1")) | ("https", Some("http1")) => UpstreamProtocol::Http1,
        ("http" | "h2c" | "https", Some("h2")) | ("h2c", None) => UpstreamProtocol::H2,
        ("https", None | Some("auto")) => UpstreamProtocol::Auto,
        (_, Some(p @ ("http1" | "h2" | "auto"))) => {
            return Err(invalid(format!(
            "upstream.protocol: '{p}' does not go with a {scheme}:// url (auto needs https:// for ALPN; h2c:// is h2)"
        )))
        }
        (_, Some(other)) => {
            return Err(invalid(format!("upstream.protocol: '{other}' (expected \"http1\", \"h2\" or \"auto\")")))
        }
        (_, None) => unreachable!("schemes checked above"),
    };
    if uri.path() != "/" && !uri.path().is_empty() {
        return Err(invalid(format!("upstream.url: '{url}' must not have a path")));
    }
    let authority = uri.authority().cloned().ok_or_else(|| invalid(format!("upstream.url: '{url}' has no host")))?;
    let tls = match (https, tls) {
        (false, None) => None,
        (false, Some(_)) => return Err(invalid("upstream.tls needs an https:// upstream.url")),
        // Fail closed: no CA, no way to know whom we talk to.
        (true, None) => return Err(invalid("upstream.tls.ca is required for an https:// upstream")),
        (true, Some(t)) if t.alpn.is_some() => {
            return Err(invalid("upstream.tls.alpn applies to tcp mode (http mode offers what upstream.protocol says)"))
        }
        (true, Some(t)) => Some(upstream_tls(t, authority.host(), base)?),
    };
    Ok(Upstream::Http { authority, tls, protocol })
}

/// `[upstream.tls]` of either mode; `host` is the upstream's, the default server name.
fn upstream_tls(t: RawUpstreamTls, host: &str, base: &Path) -> Result<UpstreamTlsConfig, ProxyError> {
    let ca = t.ca.into_vec();
    if ca.is_empty() {
        return Err(invalid("upstream.tls.ca is required for a TLS upstream"));
    }
    let client = match (t.cert, t.key) {
        (Some(c), Some(k)) => Some((resolve(base, &c), resolve(base, &k))),
        (None, None) => None,
        _ => return Err(invalid("upstream.tls: cert and key go together")),
    };
    let server_name = t.server_name.unwrap_or_else(|| host.trim_matches(['[', ']']).to_string());
    if rustls::pki_types::ServerName::try_from(server_name.clone()).is_err() {
        return Err(invalid(format!("upstream.tls.server_name: '{server_name}' is not a host name")));
    }
    let expect = t.expect.map(|e| crate::authorize::Expected::parse(&e)).transpose();
    let expect = expect.map_err(|why| invalid(format!("upstream.tls.expect: {why}")))?;
    let alpn = match t.alpn {
        Some(list) => alpn_list(list, "upstream.tls.alpn")?,
        None => Vec::new(),
    };
    Ok(UpstreamTlsConfig { ca: ca.iter().map(|p| resolve(base, p)).collect(), client, server_name, expect, alpn })
}

/// `[upstream] address` (TCP mode), TLS to it with `[upstream.tls]`.
fn tcp_upstream(address: String, tls: Option<RawUpstreamTls>, base: &Path) -> Result<Upstream, ProxyError> {
    let tls = tls.map(|t| upstream_tls(t, address_host(&address), base)).transpose()?;
    Ok(Upstream::Tcp { address, tls })
}

/// `[headers] trusted_proxies`: addresses or CIDR blocks (`10.0.0.0/8`).
fn trusted_proxies(entries: Vec<String>) -> Result<Vec<ipnet::IpNet>, ProxyError> {
    let parse = |(i, e): (usize, &String)| {
        e.parse::<ipnet::IpNet>()
            .or_else(|_| e.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
            .map_err(|_| invalid(format!("headers.trusted_proxies[{i}]: '{e}' is not an address or CIDR block")))
    };
    entries.iter().enumerate().map(parse).collect()
}

/// `[listen] hosts`: DNS names (or IP addresses) without ports, lower case.
fn listen_hosts(list: Option<Vec<String>>) -> Result<Vec<String>, ProxyError> {
    let Some(list) = list else { return Ok(Vec::new()) };
    if list.is_empty() {
        return Err(invalid("listen.hosts is empty: every request would be refused (leave it out to serve any Host)"));
    }
    list.into_iter()
        .map(|h| {
            let a: Option<http::uri::Authority> = h.parse().ok();
            match a {
                Some(a) if !h.is_empty() && a.port().is_none() && a.host() == h && !h.contains('@') => {
                    Ok(h.trim_end_matches('.').to_ascii_lowercase())
                }
                _ => Err(invalid(format!("listen.hosts: '{h}' is not a host name (without a port)"))),
            }
        })
        .collect()
}

/// A route's methods: the standard ones (any case) and extension methods
/// (WebDAV's PROPFIND...) that are valid tokens; a near miss of a standard
/// one (`GTE`) is a typo, refused with the method it resembles.
fn methods(list: Option<Vec<String>>, at: &str) -> Result<Option<Vec<Method>>, ProxyError> {
    list.map(|l| {
        l.iter()
            .map(|m| {
                let upper = m.to_ascii_uppercase();
                let method = Method::from_bytes(upper.as_bytes())
                    .map_err(|_| invalid(format!("{at}.methods: '{m}' is not an HTTP method")))?;
                if !crate::authorize::target::is_standard(&method) {
                    if let Some(near) = crate::authorize::target::STANDARD_METHODS
                        .iter()
                        .find(|s| edits(upper.as_bytes(), s.as_str().as_bytes()) <= 1)
                    {
                        return Err(invalid(format!(
                            "{at}.methods: '{m}' is not an HTTP method (did you mean {near}?)"
                        )));
                    }
                }
                Ok(method)
            })
            .collect()
    })
    .transpose()
}

/// Edit distance counting a swap of neighbours as one edit (optimal string
/// alignment): `GTE` is one edit from `GET`.
fn edits(a: &[u8], b: &[u8]) -> usize {
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// `[audit]`: the path, and size-based rotation when `max_size` is set.
fn audit_config(base: &Path, a: RawAudit) -> Result<AuditConfig, ProxyError> {
    let max_size = match &a.max_size {
        Some(t) => {
            let n = crate::audit::parse_size(t).map_err(|e| invalid(format!("audit.max_size: {e}")))?;
            if n < AuditConfig::MIN_SIZE {
                return Err(invalid(format!("audit.max_size: '{t}' is below the minimum of 1KB")));
            }
            Some(n)
        }
        None => None,
    };
    let keep = a.keep.unwrap_or(AuditConfig::DEFAULT_KEEP);
    if keep == 0 || keep > AuditConfig::MAX_KEEP {
        return Err(invalid(format!("audit.keep: {keep} is not in 1..={}", AuditConfig::MAX_KEEP)));
    }
    Ok(AuditConfig { path: resolve(base, &a.path), max_size, keep })
}

fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

impl ProxyConfig {
    /// Loads `[tls]`'s files (and `pulled` CRLs); a file error names the
    /// setting it came from: `proxy.toml: tls.key certs/x.key: why`, or
    /// `--key x.key: why` for the flags-only form.
    pub fn load_tls(
        &self,
        pulled: &[(String, rustls::pki_types::CertificateRevocationListDer<'static>)],
    ) -> Result<ambos_tls::LoadedServerTls, ProxyError> {
        use ambos_tls::TlsError;
        let tls = &self.tls;
        let toml = self.source.is_some();
        let setting = |path: &Path| {
            let (key, flag) = if path == tls.cert {
                ("tls.cert", "--cert")
            } else if path == tls.key {
                ("tls.key", "--key")
            } else if tls.client_ca.iter().any(|p| p == path) {
                ("tls.client_ca", "--client-ca")
            } else if tls.crl.iter().any(|p| p == path) {
                ("tls.crl", "--crl")
            } else {
                return None;
            };
            let prefix = self.source.as_ref().map(|s| format!("{}: ", s.display())).unwrap_or_default();
            Some(format!("{prefix}{} {}", if toml { key } else { flag }, path.display()))
        };
        tls.load(pulled).map_err(|e| {
            let named = match &e {
                TlsError::Read { path, why } => setting(path).map(|s| format!("{s}: {why}")),
                TlsError::BadFile { path, why } => setting(path).map(|s| format!("{s}: {why}")),
                TlsError::KeyMismatch(path) => setting(path)
                    .map(|s| format!("{s}: the private key does not match the certificate {}", tls.cert.display())),
                _ => None,
            };
            named.map(ProxyError::Invalid).unwrap_or(ProxyError::Tls(e))
        })
    }

    /// Reads and validates a proxy.toml; paths are relative to its directory.
    pub fn from_file(path: &Path) -> Result<ProxyConfig, ProxyError> {
        let text = std::fs::read_to_string(path).map_err(|e| ProxyError::Read { path: path.to_path_buf(), why: e })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut cfg = Self::from_toml(&text, &base).map_err(|e| match e {
            ProxyError::Toml { line, message, .. } => ProxyError::Toml { path: path.to_path_buf(), line, message },
            ProxyError::Invalid(m) => ProxyError::Invalid(format!("{}: {m}", path.display())),
            other => other,
        })?;
        cfg.source = Some(path.to_path_buf());
        Ok(cfg)
    }

    pub fn from_toml(text: &str, base: &Path) -> Result<ProxyConfig, ProxyError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1).unwrap_or(0);
            ProxyError::Toml { path: PathBuf::new(), line, message: e.message().trim().replace('\n', " ") }
        })?;
        let mode = match raw.listen.mode.as_deref().unwrap_or("http") {
            "http" => Mode::Http,
            "tcp" => Mode::Tcp,
            other => return Err(invalid(format!("listen.mode: '{other}' (expected \"http\" or \"tcp\")"))),
        };
        let client_auth = match raw.tls.client_auth.as_deref().unwrap_or("required") {
            "required" => ClientAuth::Required,
            "optional" => ClientAuth::Optional,
            other => {
                return Err(invalid(format!("tls.client_auth: '{other}' (expected \"required\" or \"optional\")")))
            }
        };
        let min_version = match raw.tls.min_version.as_deref().unwrap_or("1.2") {
            "1.2" => TlsVersion::Tls12,
            "1.3" => TlsVersion::Tls13,
            other => return Err(invalid(format!("tls.min_version: '{other}' (expected \"1.2\" or \"1.3\")"))),
        };
        let upstream = match (mode, raw.upstream.url, raw.upstream.address) {
            (Mode::Http, Some(url), None) => {
                http_upstream(&url, raw.upstream.protocol.as_deref(), raw.upstream.tls, base)?
            }
            (Mode::Tcp, None, Some(address)) => tcp_upstream(address, raw.upstream.tls, base)?,
            (Mode::Http, _, _) => {
                return Err(invalid("upstream: http mode needs url = \"http://host:port\" (and no address)"))
            }
            (Mode::Tcp, _, _) => return Err(invalid("upstream: tcp mode needs address = \"host:port\" (and no url)")),
        };
        if mode == Mode::Tcp && raw.upstream.protocol.is_some() {
            return Err(invalid("upstream.protocol applies to http mode"));
        }
        let proxy_protocol = match (raw.upstream.proxy_protocol.as_deref(), mode) {
            (None, _) => false,
            (Some("v2"), Mode::Tcp) => true,
            (Some("v2"), Mode::Http) => {
                return Err(invalid("upstream.proxy_protocol applies to tcp mode (http mode sends X-Forwarded-For)"))
            }
            (Some(other), _) => return Err(invalid(format!("upstream.proxy_protocol: '{other}' (expected \"v2\")"))),
        };
        let (xfcc, rfc9440) = match raw.headers.client_cert.as_deref().unwrap_or("xfcc") {
            "xfcc" => (true, false),
            "rfc9440" => (false, true),
            "both" => (true, true),
            "none" => (false, false),
            other => {
                return Err(invalid(format!(
                    "headers.client_cert: '{other}' (expected \"xfcc\", \"rfc9440\", \"both\" or \"none\")"
                )))
            }
        };
        let underscores = match raw.headers.underscores.as_deref().unwrap_or("drop") {
            "drop" => Underscores::Drop,
            "reject" => Underscores::Reject,
            "allow" => Underscores::Allow,
            other => {
                return Err(invalid(format!(
                    "headers.underscores: '{other}' (expected \"drop\", \"reject\" or \"allow\")"
                )))
            }
        };
        let forwarded = match raw.headers.forwarded.as_deref().unwrap_or("x-forwarded") {
            "x-forwarded" => ForwardedHeaders::XForwarded,
            "rfc7239" => ForwardedHeaders::Rfc7239,
            "both" => ForwardedHeaders::Both,
            other => {
                return Err(invalid(format!(
                    "headers.forwarded: '{other}' (expected \"x-forwarded\", \"rfc7239\" or \"both\")"
                )))
            }
        };
        let trusted_proxies = trusted_proxies(raw.headers.trusted_proxies.unwrap_or_default())?;
        if mode == Mode::Tcp && raw.listen.hosts.is_some() {
            return Err(invalid("listen.hosts applies to http mode (tcp mode has no Host)"));
        }
        let hosts = listen_hosts(raw.listen.hosts)?;
        let alpn = listen_alpn(mode, raw.listen.alpn)?;
        let mut routes = Vec::new();
        for (i, r) in raw.routes.into_iter().enumerate() {
            let at = format!("route[{i}]");
            let path = match (mode, r.path) {
                (Mode::Http, Some(p)) if p.starts_with('/') => p,
                (Mode::Http, Some(p)) => return Err(invalid(format!("{at}.path: '{p}' must start with /"))),
                (Mode::Http, None) => return Err(invalid(format!("{at}.path is required in http mode"))),
                (Mode::Tcp, _) => "/**".to_string(),
            };
            let allow = parse_allow(&r.allow, &format!("{at}.allow"))?;
            if allow.is_empty() {
                return Err(invalid(format!("{at}.allow is empty: nobody could use this route")));
            }
            if client_auth == ClientAuth::Required
                && allow.iter().all(|a| matches!(a, crate::authorize::AllowRule::Anonymous))
            {
                return Err(invalid(format!("{at}.allow: 'anonymous' needs tls.client_auth = \"optional\"")));
            }
            // Routes are matched against the normalized path (`authorize::target`): a
            // pattern that is not normalized could never match as written.
            match crate::authorize::target::normalize_path(&path) {
                Err(why) => return Err(invalid(format!("{at}.path: '{path}' could never match: {why}"))),
                Ok(n) if !n.eq_ignore_ascii_case(&path) => {
                    return Err(invalid(format!("{at}.path: '{path}' is not in normalized form; write '{n}'")))
                }
                Ok(_) => {}
            }
            let methods = methods(r.methods, &at)?;
            let websocket = r.websocket.unwrap_or(false);
            if websocket && mode == Mode::Tcp {
                return Err(invalid(format!("{at}.websocket applies to http mode")));
            }
            if websocket && methods.as_ref().is_some_and(|m| !m.contains(&http::Method::GET)) {
                return Err(invalid(format!("{at}.websocket needs GET in methods (the WebSocket handshake is a GET)")));
            }
            let token = match r.token {
                None => None,
                Some(_) if mode == Mode::Tcp => return Err(invalid(format!("{at}.token applies to http mode"))),
                Some(t) => {
                    for (field, value) in [("issuer", &t.issuer), ("jwks", &t.jwks), ("audience", &t.audience)] {
                        if value.trim().is_empty() {
                            return Err(invalid(format!("{at}.token.{field} is empty")));
                        }
                    }
                    Some(crate::authorize::token::TokenConfig {
                        jwks: jwks_source(&t.jwks, t.jwks_refresh.as_deref(), base, &format!("{at}.token"))?,
                        issuer: t.issuer,
                        audience: t.audience,
                        scopes: t.scopes,
                        bound: t.bound.unwrap_or(true),
                        forward: t.forward.unwrap_or(false),
                    })
                }
            };
            routes.push(RouteConfig { path, methods, allow, websocket, token });
        }
        if routes.is_empty() {
            return Err(invalid(
                "no [[route]]: every request would be denied; add one (e.g. path = \"/**\", allow = [\"any\"])",
            ));
        }
        let mut limits = Limits::default();
        if let Some(t) = raw.limits.handshake_timeout {
            limits.handshake_timeout = positive(&t, "limits.handshake_timeout")?;
        }
        if let Some(t) = raw.limits.idle_timeout {
            limits.idle_timeout = positive(&t, "limits.idle_timeout")?;
        }
        if let Some(t) = raw.limits.shutdown_grace {
            limits.shutdown_grace = duration(&t, "limits.shutdown_grace")?;
        }
        if let Some(n) = raw.limits.max_connections {
            if n == 0 {
                return Err(invalid("limits.max_connections must be at least 1"));
            }
            limits.max_connections = n;
        }
        if let Some(r) = raw.limits.connection_rate_per_source {
            limits.connection_rate_per_source = r;
        }
        for (n, field, at) in [
            (
                raw.limits.max_connections_per_source,
                "limits.max_connections_per_source",
                &mut limits.max_connections_per_source,
            ),
            (
                raw.limits.max_handshakes_per_source,
                "limits.max_handshakes_per_source",
                &mut limits.max_handshakes_per_source,
            ),
            (
                raw.limits.max_upstream_per_connection,
                "limits.max_upstream_per_connection",
                &mut limits.max_upstream_per_connection,
            ),
        ] {
            match n {
                Some(0) => return Err(invalid(format!("{field} must be at least 1"))),
                Some(n) => *at = n,
                None => {}
            }
        }
        for (t, field, at) in [
            (
                raw.limits.upstream_connect_timeout,
                "limits.upstream_connect_timeout",
                &mut limits.upstream_connect_timeout,
            ),
            (raw.limits.upstream_timeout, "limits.upstream_timeout", &mut limits.upstream_timeout),
            (raw.limits.body_timeout, "limits.body_timeout", &mut limits.body_timeout),
            (raw.limits.upstream_queue_timeout, "limits.upstream_queue_timeout", &mut limits.upstream_queue_timeout),
        ] {
            if let Some(t) = t {
                *at = positive(&t, field)?;
            }
        }
        if let Some(r) = raw.limits.body_min_rate {
            limits.body_min_rate = r;
        }
        if let Some(m) = &raw.limits.max_grpc_message {
            let n = crate::audit::parse_size(m).map_err(|e| invalid(format!("limits.max_grpc_message: {e}")))?;
            if n == 0 || n > u64::from(u32::MAX) {
                return Err(invalid(format!("limits.max_grpc_message: '{m}' is not in 1B..4GB")));
            }
            limits.max_grpc_message = n;
        }
        let from_dps = raw.tls.crl_from_distribution_points.unwrap_or(false);
        let crl_configured = raw.tls.crl.is_some() || raw.tls.crl_url.is_some() || from_dps;
        let refresh = crl_refresh(raw.tls.crl_refresh.as_deref(), raw.tls.crl_url.is_some() || from_dps, "tls.crl")?;
        let revocation = revocation(
            crl_configured,
            raw.tls.revocation.as_deref(),
            raw.tls.unknown_revocation.as_deref(),
            raw.tls.crl_grace.as_deref(),
            "tls.",
        )?;
        Ok(ProxyConfig {
            listen: socket_addr(&raw.listen.address, "listen.address")?,
            mode,
            tls: ServerTlsConfig {
                cert: resolve(base, &raw.tls.cert),
                key: resolve(base, &raw.tls.key),
                client_ca: raw.tls.client_ca.into_vec().iter().map(|p| resolve(base, p)).collect(),
                crl: raw
                    .tls
                    .crl
                    .map(OneOrMany::into_vec)
                    .unwrap_or_default()
                    .iter()
                    .map(|p| resolve(base, p))
                    .collect(),
                revocation,
                client_auth,
                min_version,
                alpn,
                session_resumption: raw.tls.session_resumption.unwrap_or(true),
            },
            crl_url: crl_source(raw.tls.crl_url.as_deref(), raw.tls.crl_refresh.as_deref(), "tls.crl")?,
            crl_from_distribution_points: from_dps,
            crl_refresh: refresh,
            upstream,
            xfcc,
            rfc9440,
            proxy_protocol,
            underscores,
            forwarded,
            trusted_proxies,
            hosts,
            routes,
            audit: raw.audit.map(|a| audit_config(base, a)).transpose()?,
            metrics: raw.metrics.map(|m| socket_addr(&m.address, "metrics.address")).transpose()?,
            limits,
            source: None,
        })
    }

    /// The flags-only form: one route `/**` with `--allow` entries (default `any`).
    pub fn from_flags(f: &ProxyFlags) -> Result<ProxyConfig, ProxyError> {
        let required = |v: Option<String>, flag: &str| {
            v.filter(|v| !v.is_empty()).ok_or_else(|| invalid(format!("{flag} is required (or --config FILE)")))
        };
        let listen = required(f.listen.clone(), "--listen")?;
        let upstream_flag = required(f.upstream.clone(), "--upstream")?;
        let cert = PathBuf::from(required(f.cert.as_ref().map(|p| p.display().to_string()), "--cert")?);
        let key = PathBuf::from(required(f.key.as_ref().map(|p| p.display().to_string()), "--key")?);
        let mode = if f.tcp { Mode::Tcp } else { Mode::Http };
        let tls = (!f.upstream_ca.is_empty()
            || f.upstream_cert.is_some()
            || f.upstream_key.is_some()
            || f.upstream_server_name.is_some()
            || f.upstream_expect.is_some())
        .then(|| RawUpstreamTls {
            ca: OneOrMany::Many(f.upstream_ca.iter().map(|p| p.display().to_string()).collect()),
            cert: f.upstream_cert.as_ref().map(|p| p.display().to_string()),
            key: f.upstream_key.as_ref().map(|p| p.display().to_string()),
            server_name: f.upstream_server_name.clone(),
            expect: f.upstream_expect.clone(),
            alpn: None,
        });
        let upstream = match mode {
            Mode::Http => http_upstream(&upstream_flag, None, tls, Path::new("")),
            Mode::Tcp => tcp_upstream(upstream_flag.trim_start_matches("tcp://").to_string(), tls, Path::new("")),
        }
        .map_err(|e| {
            let e = e.to_string().replace("upstream.tls.ca", "--upstream-ca");
            invalid(
                e.replace("upstream.tls.server_name", "--upstream-server-name")
                    .replace("upstream.tls.expect", "--upstream-expect"),
            )
        })?;
        let allow_entries = if f.allow.is_empty() { vec!["any".to_string()] } else { f.allow.clone() };
        let allow = parse_allow(&allow_entries, "--allow")?;
        if f.client_ca.is_empty() {
            return Err(invalid("--client-ca is required"));
        }
        let revocation = revocation(
            !f.crl.is_empty() || f.crl_url.is_some() || f.crl_from_distribution_points,
            f.revocation.as_deref(),
            f.unknown_revocation.as_deref(),
            f.crl_grace.as_deref(),
            "--",
        )
        .map_err(|e| {
            invalid(
                e.to_string()
                    .replace("--crl_grace", "--crl-grace")
                    .replace("--unknown_revocation", "--unknown-revocation"),
            )
        })?;
        Ok(ProxyConfig {
            listen: socket_addr(&listen, "--listen")?,
            mode,
            tls: ServerTlsConfig {
                cert,
                key,
                client_ca: f.client_ca.clone(),
                crl: f.crl.clone(),
                revocation,
                client_auth: if f.optional_client_auth { ClientAuth::Optional } else { ClientAuth::Required },
                min_version: TlsVersion::Tls12,
                alpn: alpn(mode),
                session_resumption: true,
            },
            crl_url: crl_source(f.crl_url.as_deref(), f.crl_refresh.as_deref(), "--crl")?,
            crl_from_distribution_points: f.crl_from_distribution_points,
            crl_refresh: crl_refresh(
                f.crl_refresh.as_deref(),
                f.crl_url.is_some() || f.crl_from_distribution_points,
                "--crl",
            )
            .map_err(|e| {
                invalid(e.to_string().replace("--crl_refresh", "--crl-refresh").replace("--crl_url", "--crl-url"))
            })?,
            upstream,
            xfcc: true,
            rfc9440: false,
            proxy_protocol: false,
            underscores: Underscores::Drop,
            forwarded: ForwardedHeaders::XForwarded,
            trusted_proxies: Vec::new(),
            hosts: Vec::new(),
            routes: vec![RouteConfig { path: "/**".into(), methods: None, allow, websocket: false, token: None }],
            audit: f.audit.clone().map(AuditConfig::new),
            metrics: f.metrics.as_deref().map(|m| socket_addr(m, "--metrics")).transpose()?,
            limits: Limits::default(),
            source: None,
        })
    }

    /// Files whose change triggers a reload.
    pub fn watched_files(&self) -> Vec<PathBuf> {
        let mut v = self.tls.files();
        if let Some(t) = self.upstream.tls() {
            v.extend(t.ca.iter().cloned());
            v.extend(t.client.iter().flat_map(|(c, k)| [c.clone(), k.clone()]));
        }
        v.extend(self.source.iter().cloned());
        v
    }
}

fn alpn(mode: Mode) -> Vec<Vec<u8>> {
    match mode {
        Mode::Http => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        Mode::Tcp => Vec::new(),
    }
}

/// `[listen] alpn`: the protocols a TCP-mode listener offers in ALPN, in
/// preference order (gRPC clients require `h2`); HTTP mode offers its own.
fn listen_alpn(mode: Mode, list: Option<Vec<String>>) -> Result<Vec<Vec<u8>>, ProxyError> {
    let Some(list) = list else { return Ok(alpn(mode)) };
    if mode == Mode::Http {
        return Err(invalid("listen.alpn applies to tcp mode (http mode offers h2 and http/1.1 itself)"));
    }
    alpn_list(list, "listen.alpn")
}

/// A configured ALPN list (`listen.alpn`, `upstream.tls.alpn`), in preference order.
fn alpn_list(list: Vec<String>, field: &str) -> Result<Vec<Vec<u8>>, ProxyError> {
    if list.is_empty() {
        return Err(invalid(format!("{field} is empty (leave it out to offer no ALPN)")));
    }
    list.into_iter()
        .map(|p| {
            // RFC 7301: 1 to 255 bytes; printable ASCII keeps config and logs readable.
            if p.is_empty() || p.len() > 255 || !p.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(invalid(format!("{field}: '{p}' is not a protocol name like \"h2\" or \"http/1.1\"")));
            }
            Ok(p.into_bytes())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authorize::token::JwksSource;

    const GOOD: &str = r#"
[listen]
address = "127.0.0.1:8443"

[tls]
cert = "api.crt"
key = "api.key"
client_ca = "ca.crt"
crl = ["crl.pem"]

[upstream]
url = "http://127.0.0.1:8080"

[[route]]
path = "/payments/**"
methods = ["GET", "post"]
allow = ["spiffe://acme.test/checkout", "ou:payments"]
"#;

    #[test]
    fn a_good_config_validates_with_paths_relative_to_its_file() {
        let c = ProxyConfig::from_toml(GOOD, Path::new("/etc/ambos")).unwrap();
        assert_eq!(c.tls.cert, PathBuf::from("/etc/ambos/api.crt"));
        assert_eq!(c.routes.len(), 1);
        assert!(c.xfcc);
        assert_eq!(c.mode, Mode::Http);
    }

    #[test]
    fn listen_alpn_is_for_tcp_mode_and_checked() {
        let tcp = |alpn: &str| {
            GOOD.replace(
                "address = \"127.0.0.1:8443\"",
                &format!("address = \"127.0.0.1:8443\"\nmode = \"tcp\"\n{alpn}"),
            )
            .replace("url = \"http://127.0.0.1:8080\"", "address = \"127.0.0.1:8080\"")
        };
        let c = ProxyConfig::from_toml(&tcp("alpn = [\"h2\", \"http/1.1\"]"), Path::new(".")).unwrap();
        assert_eq!(c.tls.alpn, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
        assert!(ProxyConfig::from_toml(&tcp(""), Path::new(".")).unwrap().tls.alpn.is_empty());
        for bad in ["alpn = []", "alpn = [\"\"]", "alpn = [\"h 2\"]"] {
            let err = ProxyConfig::from_toml(&tcp(bad), Path::new(".")).unwrap_err().to_string();
            assert!(err.contains("listen.alpn"), "{bad}: {err}");
        }
        let http = GOOD.replace("address = \"127.0.0.1:8443\"", "address = \"127.0.0.1:8443\"\nalpn = [\"h2\"]");
        let err = ProxyConfig::from_toml(&http, Path::new(".")).unwrap_err().to_string();
        assert!(err.contains("listen.alpn applies to tcp mode"), "{err}");
    }

    #[test]
    fn an_https_upstream_from_flags_needs_upstream_ca_and_takes_a_client_certificate() {
        let flags = |ca: &[&str], cert: Option<&str>| ProxyFlags {
            listen: Some("127.0.0.1:8443".into()),
            upstream: Some("https://api.internal:9443".into()),
            cert: Some("c.crt".into()),
            key: Some("c.key".into()),
            client_ca: vec!["ca.crt".into()],
            upstream_ca: ca.iter().map(PathBuf::from).collect(),
            upstream_cert: cert.map(PathBuf::from),
            upstream_key: cert.map(|_| PathBuf::from("p.key")),
            ..Default::default()
        };
        let err = ProxyConfig::from_flags(&flags(&[], None)).unwrap_err().to_string();
        assert!(err.contains("--upstream-ca is required"), "{err}");
        let c = ProxyConfig::from_flags(&flags(&["up-ca.crt"], Some("p.crt"))).unwrap();
        let Upstream::Http { tls: Some(t), .. } = &c.upstream else { panic!("{:?}", c.upstream) };
        assert_eq!(t.ca, vec![PathBuf::from("up-ca.crt")]);
        assert_eq!(t.client, Some((PathBuf::from("p.crt"), PathBuf::from("p.key"))));
        assert_eq!(t.server_name, "api.internal");
        assert!(c.watched_files().contains(&PathBuf::from("p.key")), "reloaded like the listener's files");
    }

    #[test]
    fn a_tcp_mode_upstream_takes_tls_with_alpn_and_expect() {
        let tcp = |address: &str, tls: &str| {
            let t = GOOD
                .replace("address = \"127.0.0.1:8443\"", "address = \"127.0.0.1:8443\"\nmode = \"tcp\"")
                .replace("url = \"http://127.0.0.1:8080\"", &format!("address = \"{address}\""))
                .replace("[[route]]", &format!("{tls}\n\n[[route]]"));
            ProxyConfig::from_toml(&t, Path::new("/etc/ambos"))
        };
        let c = tcp(
            "db.internal:5432",
            "[upstream.tls]\nca = \"up.crt\"\ncert = \"p.crt\"\nkey = \"p.key\"\nalpn = [\"postgresql\"]\n\
             expect = \"spiffe://acme.test/db\"",
        )
        .unwrap();
        let Upstream::Tcp { address, tls: Some(t) } = &c.upstream else { panic!("{:?}", c.upstream) };
        assert_eq!(address, "db.internal:5432");
        assert_eq!(t.ca, vec![PathBuf::from("/etc/ambos/up.crt")]);
        assert_eq!(t.server_name, "db.internal", "the address's host");
        assert_eq!(t.alpn, vec![b"postgresql".to_vec()]);
        assert_eq!(t.expect.as_ref().map(|e| e.text.as_str()), Some("spiffe://acme.test/db"));
        assert!(c.watched_files().contains(&PathBuf::from("/etc/ambos/p.key")), "reloaded like the listener's files");
        // No [upstream.tls]: plaintext, as before.
        assert!(matches!(tcp("db.internal:5432", "").unwrap().upstream, Upstream::Tcp { tls: None, .. }));
        let name = |address: &str, tls: &str| match tcp(address, tls).unwrap().upstream {
            Upstream::Tcp { tls: Some(t), .. } => (t.server_name, t.alpn.is_empty(), t.expect.is_none()),
            other => panic!("{other:?}"),
        };
        assert_eq!(name("[::1]:5432", "[upstream.tls]\nca = \"up.crt\""), ("::1".to_string(), true, true));
        assert_eq!(
            name("10.0.0.5:5432", "[upstream.tls]\nca = \"up.crt\"\nserver_name = \"db.internal\"").0,
            "db.internal"
        );
        for (tls, needle) in [
            ("[upstream.tls]\nca = []", "upstream.tls.ca is required"),
            ("[upstream.tls]\ncert = \"p.crt\"", "missing field `ca`"),
            ("[upstream.tls]\nca = \"up.crt\"\nkey = \"p.key\"", "cert and key go together"),
            ("[upstream.tls]\nca = \"up.crt\"\nserver_name = \"a b\"", "upstream.tls.server_name: 'a b'"),
            ("[upstream.tls]\nca = \"up.crt\"\nalpn = []", "upstream.tls.alpn is empty"),
            ("[upstream.tls]\nca = \"up.crt\"\nalpn = [\"h 2\"]", "upstream.tls.alpn: 'h 2'"),
            ("[upstream.tls]\nca = \"up.crt\"\nexpect = \"team:db\"", "upstream.tls.expect: 'team:db'"),
            ("[upstream.tls]\nca = \"up.crt\"\nexpect = \"anonymous\"", "upstream.tls.expect: 'anonymous' never"),
            ("[upstream.tls]\nca = \"up.crt\"\nexpect = \"sha256:ab\"", "upstream.tls.expect: 'sha256:ab'"),
        ] {
            let err = tcp("db.internal:5432", tls).unwrap_err().to_string();
            assert!(err.contains(needle), "{tls}: {err}");
        }
    }

    #[test]
    fn an_https_upstream_takes_expect_but_not_alpn() {
        let https = |tls: &str| {
            let t = GOOD
                .replace("url = \"http://127.0.0.1:8080\"", "url = \"https://api.internal:9443\"")
                .replace("[[route]]", &format!("[upstream.tls]\nca = \"up.crt\"\n{tls}\n\n[[route]]"));
            ProxyConfig::from_toml(&t, Path::new("."))
        };
        let c = https("expect = \"dns:api.internal\"").unwrap();
        let t = c.upstream.tls().unwrap();
        assert_eq!(
            (t.server_name.as_str(), t.expect.as_ref().unwrap().text.as_str()),
            ("api.internal", "dns:api.internal")
        );
        let err = https("expect = \"dns:\"").unwrap_err().to_string();
        assert!(err.contains("upstream.tls.expect: 'dns:' has an empty value"), "{err}");
        let err = https("alpn = [\"h2\"]").unwrap_err().to_string();
        assert!(err.contains("upstream.tls.alpn applies to tcp mode"), "{err}");
    }

    #[test]
    fn the_upstream_tls_flags_work_with_tcp_and_name_themselves_in_errors() {
        let flags = |tcp: bool, server_name: Option<&str>, expect: Option<&str>| ProxyFlags {
            listen: Some("127.0.0.1:8443".into()),
            upstream: Some(if tcp { "db.internal:5432".into() } else { "https://api.internal:9443".into() }),
            tcp,
            cert: Some("c.crt".into()),
            key: Some("c.key".into()),
            client_ca: vec!["ca.crt".into()],
            upstream_ca: vec!["up-ca.crt".into()],
            upstream_cert: Some("p.crt".into()),
            upstream_key: Some("p.key".into()),
            upstream_server_name: server_name.map(String::from),
            upstream_expect: expect.map(String::from),
            ..Default::default()
        };
        let c = ProxyConfig::from_flags(&flags(true, None, Some("spiffe://acme.test/db"))).unwrap();
        let Upstream::Tcp { address, tls: Some(t) } = &c.upstream else { panic!("{:?}", c.upstream) };
        assert_eq!((address.as_str(), t.server_name.as_str()), ("db.internal:5432", "db.internal"));
        assert_eq!(t.client, Some((PathBuf::from("p.crt"), PathBuf::from("p.key"))));
        assert_eq!(t.expect.as_ref().unwrap().text, "spiffe://acme.test/db");
        let c = ProxyConfig::from_flags(&flags(false, Some("api.test"), None)).unwrap();
        assert_eq!(c.upstream.tls().unwrap().server_name, "api.test");
        for (f, needle) in [
            (flags(true, Some("a b"), None), "--upstream-server-name: 'a b'"),
            (flags(false, None, Some("team:x")), "--upstream-expect: 'team:x'"),
            (ProxyFlags { upstream_ca: Vec::new(), ..flags(true, None, None) }, "--upstream-ca is required"),
        ] {
            let err = ProxyConfig::from_flags(&f).unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
        }
    }

    #[test]
    fn upstream_protocol_follows_the_scheme_and_can_be_forced() {
        let with = |url: &str, protocol: &str, tls: bool| {
            let mut t = GOOD.replace("url = \"http://127.0.0.1:8080\"", &format!("url = \"{url}\"\n{protocol}"));
            if tls {
                t = t.replace("[[route]]", "[upstream.tls]\nca = \"up.crt\"\n\n[[route]]");
            }
            ProxyConfig::from_toml(&t, Path::new("."))
        };
        let protocol = |c: ProxyConfig| match c.upstream {
            Upstream::Http { protocol, .. } => protocol,
            other => panic!("{other:?}"),
        };
        for (url, line, tls, want) in [
            ("http://127.0.0.1:8080", "", false, UpstreamProtocol::Http1),
            ("h2c://127.0.0.1:8080", "", false, UpstreamProtocol::H2),
            ("h2c://127.0.0.1:8080", "protocol = \"h2\"", false, UpstreamProtocol::H2),
            ("http://127.0.0.1:8080", "protocol = \"h2\"", false, UpstreamProtocol::H2),
            ("https://api.internal:9443", "", true, UpstreamProtocol::Auto),
            ("https://api.internal:9443", "protocol = \"auto\"", true, UpstreamProtocol::Auto),
            ("https://api.internal:9443", "protocol = \"h2\"", true, UpstreamProtocol::H2),
            ("https://api.internal:9443", "protocol = \"http1\"", true, UpstreamProtocol::Http1),
        ] {
            let c = with(url, line, tls).unwrap_or_else(|e| panic!("{url} {line}: {e}"));
            assert_eq!(protocol(c), want, "{url} {line}");
        }
        for (url, line, tls, needle) in [
            (
                "h2c://127.0.0.1:8080",
                "protocol = \"http1\"",
                false,
                "upstream.protocol: 'http1' does not go with a h2c://",
            ),
            ("http://127.0.0.1:8080", "protocol = \"auto\"", false, "auto needs https://"),
            ("https://api.internal:9443", "protocol = \"h3\"", true, "upstream.protocol: 'h3' (expected"),
            ("h2c://127.0.0.1:8080", "", true, "upstream.tls needs an https://"),
            ("h2c://127.0.0.1:8080/x", "", false, "must not have a path"),
            ("h3://127.0.0.1:8080", "", false, "h2c://host:port"),
        ] {
            let err = with(url, line, tls).unwrap_err().to_string();
            assert!(err.contains(needle), "{url} {line}: {err}");
        }
        let tcp = GOOD
            .replace("address = \"127.0.0.1:8443\"", "address = \"127.0.0.1:8443\"\nmode = \"tcp\"")
            .replace("url = \"http://127.0.0.1:8080\"", "address = \"127.0.0.1:8080\"\nprotocol = \"h2\"");
        let err = ProxyConfig::from_toml(&tcp, Path::new(".")).unwrap_err().to_string();
        assert!(err.contains("upstream.protocol applies to http mode"), "{err}");
        // The flag takes h2c:// as it is.
        let flags = ProxyFlags {
            listen: Some("127.0.0.1:8443".into()),
            upstream: Some("h2c://127.0.0.1:50051".into()),
            cert: Some("c.crt".into()),
            key: Some("c.key".into()),
            client_ca: vec!["ca.crt".into()],
            ..Default::default()
        };
        assert_eq!(protocol(ProxyConfig::from_flags(&flags).unwrap()), UpstreamProtocol::H2);
    }

    #[test]
    fn unknown_key_names_line_and_field() {
        let text = GOOD.replace("key = \"api.key\"", "key = \"api.key\"\nclient_certs = \"x\"");
        let err = ProxyConfig::from_toml(&text, Path::new(".")).unwrap_err();
        match err {
            ProxyError::Toml { line, message, .. } => {
                assert_eq!(line, 8, "{message}");
                assert!(message.contains("client_certs"), "{message}");
            }
            other => panic!("{other}"),
        }
    }

    #[test]
    fn a_near_miss_of_a_standard_method_is_a_typo_and_extension_methods_pass() {
        let with = |list: &str| GOOD.replace("methods = [\"GET\", \"post\"]", &format!("methods = [{list}]"));
        assert!(GOOD.contains("methods = [\"GET\", \"post\"]"));
        for (typo, near) in [("GTE", "GET"), ("PSOT", "POST"), ("DELET", "DELETE"), ("optoins", "OPTIONS")] {
            let err = ProxyConfig::from_toml(&with(&format!("\"{typo}\"")), Path::new(".")).unwrap_err().to_string();
            assert!(
                err.ends_with(&format!("route[0].methods: '{typo}' is not an HTTP method (did you mean {near}?)")),
                "{err}"
            );
        }
        let ok = ProxyConfig::from_toml(&with("\"PROPFIND\", \"get\""), Path::new(".")).unwrap();
        assert_eq!(ok.routes[0].methods, Some(vec![Method::from_bytes(b"PROPFIND").unwrap(), Method::GET]));
    }

    #[test]
    fn malformed_toml_names_the_line() {
        let err = ProxyConfig::from_toml("[listen]\naddress = \n", Path::new(".")).unwrap_err();
        assert!(matches!(err, ProxyError::Toml { line: 2, .. }), "{err}");
    }

    #[test]
    fn invalid_values_name_the_field() {
        for (from, to, field) in [
            ("url = \"http://127.0.0.1:8080\"", "url = \"ftp://x\"", "upstream.url"),
            ("url = \"http://127.0.0.1:8080\"", "url = \"https://x\"", "upstream.tls.ca is required"),
            (
                "url = \"http://127.0.0.1:8080\"",
                "url = \"https://x\"\n[upstream.tls]\nca = \"ca.crt\"\ncert = \"c.crt\"",
                "cert and key go together",
            ),
            (
                "url = \"http://127.0.0.1:8080\"",
                "url = \"http://x\"\n[upstream.tls]\nca = \"ca.crt\"",
                "needs an https://",
            ),
            ("ou:payments", "team:payments", "route[0].allow"),
            ("\"GET\", \"post\"", "\"GET\", \"no such\"", "route[0].methods"),
            ("path = \"/payments/**\"", "path = \"/%70ayments/**\"", "write '/payments/**'"),
            ("path = \"/payments/**\"", "path = \"/a/../payments/**\"", "route[0].path"),
            ("path = \"/payments/**\"", "path = \"/pay;x/**\"", "; path parameter"),
            ("address = \"127.0.0.1:8443\"", "address = \"nowhere\"", "listen.address"),
        ] {
            let err = ProxyConfig::from_toml(&GOOD.replace(from, to), Path::new(".")).unwrap_err().to_string();
            assert!(err.contains(field), "{field}: {err}");
        }
    }

    #[test]
    fn durations_parse_units_and_refuse_overflow_with_the_field_named() {
        for (text, want) in [
            ("250ms", Duration::from_millis(250)),
            ("90", Duration::from_secs(90)),
            ("10s", Duration::from_secs(10)),
            ("5m", Duration::from_secs(300)),
            ("1h", Duration::from_secs(3600)),
            ("2d", Duration::from_secs(2 * 86_400)),
            ("1w", Duration::from_secs(7 * 86_400)),
            ("10y", MAX_DURATION),
            ("0s", Duration::ZERO),
        ] {
            assert_eq!(duration(text, "f").unwrap(), want, "{text}");
        }
        for text in [
            "5124095576030433h",
            "18446744073709551615s",
            "99999999999999999999999s",
            "3651d",
            "11y",
            "315360000001ms",
            "18446744073709551615ms",
        ] {
            let err = duration(text, "limits.idle_timeout").unwrap_err().to_string();
            assert!(err.contains("limits.idle_timeout") && err.contains("maximum of 10y"), "{text}: {err}");
        }
        for text in ["", "s", "1.5h", "-1s", "10x", "1 h", "ms"] {
            let err = duration(text, "limits.idle_timeout").unwrap_err().to_string();
            assert!(err.contains("limits.idle_timeout") && err.contains("invalid duration"), "{text}: {err}");
        }
    }

    #[test]
    fn limits_refuse_zero_timeouts_and_overflow_naming_the_field() {
        let with = |limits: &str| GOOD.to_string() + "\n[limits]\n" + limits + "\n";
        for (limits, field) in [
            ("handshake_timeout = \"0s\"", "limits.handshake_timeout"),
            ("handshake_timeout = \"0ms\"", "limits.handshake_timeout"),
            ("idle_timeout = \"0\"", "limits.idle_timeout"),
            ("idle_timeout = \"5124095576030433h\"", "limits.idle_timeout"),
            ("handshake_timeout = \"11y\"", "limits.handshake_timeout"),
            ("shutdown_grace = \"5124095576030433h\"", "limits.shutdown_grace"),
            ("max_connections = 0", "limits.max_connections"),
            ("max_connections_per_source = 0", "limits.max_connections_per_source"),
            ("max_handshakes_per_source = 0", "limits.max_handshakes_per_source"),
            ("upstream_timeout = \"0s\"", "limits.upstream_timeout"),
            ("upstream_connect_timeout = \"0\"", "limits.upstream_connect_timeout"),
            ("body_timeout = \"11y\"", "limits.body_timeout"),
            ("max_upstream_per_connection = 0", "limits.max_upstream_per_connection"),
            ("upstream_queue_timeout = \"0s\"", "limits.upstream_queue_timeout"),
            ("max_grpc_message = \"0\"", "limits.max_grpc_message"),
            ("max_grpc_message = \"5GB\"", "limits.max_grpc_message"),
            ("max_grpc_message = \"4 parsecs\"", "limits.max_grpc_message"),
        ] {
            let err = ProxyConfig::from_toml(&with(limits), Path::new(".")).unwrap_err().to_string();
            assert!(err.contains(field), "{limits}: {err}");
        }
        // shutdown_grace = 0 is meaningful: close at once.
        let c =
            ProxyConfig::from_toml(&with("shutdown_grace = \"0s\"\nidle_timeout = \"10y\""), Path::new(".")).unwrap();
        assert_eq!(c.limits.shutdown_grace, Duration::ZERO);
        assert_eq!(c.limits.idle_timeout, MAX_DURATION);
        let c = ProxyConfig::from_toml(&with("max_grpc_message = \"4MB\""), Path::new(".")).unwrap();
        assert_eq!(c.limits.max_grpc_message, 4 << 20);
        let crl =
            GOOD.replace("crl = [\"crl.pem\"]", "crl_url = \"https://ca.test/v1/crl\"\ncrl_refresh = \"99999999999d\"");
        let err = ProxyConfig::from_toml(&crl, Path::new(".")).unwrap_err().to_string();
        assert!(err.contains("tls.crl_refresh"), "{err}");
    }

    #[test]
    fn underscores_default_to_drop_and_take_three_values() {
        let c = ProxyConfig::from_toml(GOOD, Path::new(".")).unwrap();
        assert_eq!(c.underscores, Underscores::Drop);
        for (v, want) in [("drop", Underscores::Drop), ("reject", Underscores::Reject), ("allow", Underscores::Allow)] {
            let text = format!("{GOOD}\n[headers]\nunderscores = \"{v}\"\n");
            assert_eq!(ProxyConfig::from_toml(&text, Path::new(".")).unwrap().underscores, want);
        }
        let text = format!("{GOOD}\n[headers]\nunderscores = \"keep\"\n");
        let err = ProxyConfig::from_toml(&text, Path::new(".")).unwrap_err().to_string();
        assert!(err.contains("headers.underscores"), "{err}");
    }

    #[test]
    fn a_route_token_rule_is_checked_and_its_jwks_resolved() {
        let with = |token: &str| {
            let text = GOOD.replace(
                "allow = [\"spiffe://acme.test/checkout\", \"ou:payments\"]",
                &format!("allow = [\"any\"]\n{token}"),
            );
            ProxyConfig::from_toml(&text, Path::new("/etc/ambos"))
        };
        let c = with("token = { issuer = \"https://ca\", jwks = \"jwks.json\", audience = \"pay\" }").unwrap();
        let t = c.routes[0].token.as_ref().unwrap();
        let file = JwksSource::File("/etc/ambos/jwks.json".into());
        assert_eq!((&t.jwks, t.bound, t.forward), (&file, true, false));
        let c = with("token = { issuer = \"i\", jwks = \"https://ca:9443/v1/jwks\", audience = \"a\" }").unwrap();
        let url =
            JwksSource::Url { url: "https://ca:9443/v1/jwks".parse().unwrap(), refresh: Duration::from_secs(300) };
        assert_eq!(c.routes[0].token.as_ref().unwrap().jwks, url, "5m by default");
        let c = with("token = { issuer = \"i\", jwks = \"http://ca/jwks\", jwks_refresh = \"30s\", audience = \"a\" }")
            .unwrap();
        let url = JwksSource::Url { url: "http://ca/jwks".parse().unwrap(), refresh: Duration::from_secs(30) };
        assert_eq!(c.routes[0].token.as_ref().unwrap().jwks, url);
        for (token, want) in [
            ("token = { issuer = \"\", jwks = \"j\", audience = \"a\" }", "route[0].token.issuer is empty"),
            (
                "token = { issuer = \"i\", jwks = \"j\", jwks_refresh = \"1m\", audience = \"a\" }",
                "route[0].token.jwks_refresh needs route[0].token.jwks to be a URL",
            ),
            (
                "token = { issuer = \"i\", jwks = \"https://ca/j\", jwks_refresh = \"0s\", audience = \"a\" }",
                "route[0].token.jwks_refresh",
            ),
            ("token = { issuer = \"i\", jwks = \"https://\", audience = \"a\" }", "route[0].token.jwks"),
            ("token = { issuer = \"i\", jwks = \"j\" }", "audience"),
            ("token = { issuer = \"i\", jwks = \"j\", audience = \"a\", bount = true }", "bount"),
        ] {
            let err = with(token).unwrap_err().to_string();
            assert!(err.contains(want), "{token}: {err}");
        }
    }

    #[test]
    fn websocket_routes_are_http_mode_get_routes() {
        let route = |extra: &str| {
            GOOD.replace(
                "allow = [\"spiffe://acme.test/checkout\", \"ou:payments\"]",
                &format!("allow = [\"any\"]\n{extra}"),
            )
        };
        let c = ProxyConfig::from_toml(&route("websocket = true"), Path::new(".")).unwrap();
        assert!(c.routes[0].websocket);
        assert!(!ProxyConfig::from_toml(GOOD, Path::new(".")).unwrap().routes[0].websocket);
        let err = ProxyConfig::from_toml(&route("websocket = true").replace("\"GET\", ", ""), Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(err.contains("route[0].websocket needs GET in methods"), "{err}");
        let tcp = route("websocket = true")
            .replace("[listen]\n", "[listen]\nmode = \"tcp\"\n")
            .replace("url = \"http://", "address = \"");
        let err = ProxyConfig::from_toml(&tcp, Path::new(".")).unwrap_err().to_string();
        assert!(err.contains("route[0].websocket applies to http mode"), "{err}");
    }

    #[test]
    fn forwarded_headers_and_trusted_proxies_are_checked() {
        let with = |body: &str| ProxyConfig::from_toml(&format!("{GOOD}\n[headers]\n{body}\n"), Path::new("."));
        let c = with("forwarded = \"both\"\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\", \"192.0.2.7\"]").unwrap();
        assert_eq!(c.forwarded, ForwardedHeaders::Both);
        let ips: [std::net::IpAddr; 4] =
            ["10.9.8.7".parse().unwrap(), "::1".parse().unwrap(), [192, 0, 2, 7].into(), [192, 0, 2, 8].into()];
        let trusted: Vec<bool> = ips.iter().map(|ip| c.trusted_proxies.iter().any(|n| n.contains(ip))).collect();
        assert_eq!(trusted, [true, true, true, false]);
        assert_eq!(ProxyConfig::from_toml(GOOD, Path::new(".")).unwrap().forwarded, ForwardedHeaders::XForwarded);
        for (body, want) in [
            ("forwarded = \"7239\"", "headers.forwarded: '7239'"),
            ("trusted_proxies = [\"10.0.0.0/33\"]", "headers.trusted_proxies[0]: '10.0.0.0/33'"),
            ("trusted_proxies = [\"::1\", \"proxy.internal\"]", "headers.trusted_proxies[1]"),
        ] {
            let err = with(body).unwrap_err().to_string();
            assert!(err.contains(want), "{body}: {err}");
        }
    }

    #[test]
    fn listen_hosts_are_host_names_without_ports() {
        let with = |hosts: &str| {
            GOOD.replace("address = \"127.0.0.1:8443\"", &format!("address = \"127.0.0.1:8443\"\nhosts = {hosts}"))
        };
        let c = ProxyConfig::from_toml(&with("[\"API.acme.test\", \"127.0.0.1\"]"), Path::new(".")).unwrap();
        assert_eq!(c.hosts, vec!["api.acme.test", "127.0.0.1"]);
        assert!(ProxyConfig::from_toml(GOOD, Path::new(".")).unwrap().hosts.is_empty());
        for bad in ["[]", "[\"api.test:8443\"]", "[\"\"]", "[\"a b\"]", "[\"u@api.test\"]", "[\"api.test/x\"]"] {
            let err = ProxyConfig::from_toml(&with(bad), Path::new(".")).unwrap_err().to_string();
            assert!(err.contains("listen.hosts"), "{bad}: {err}");
        }
        let tcp = with("[\"api.test\"]")
            .replace("address = \"127.0.0.1:8443\"\n", "address = \"127.0.0.1:8443\"\nmode = \"tcp\"\n")
            .replace("url = \"http://127.0.0.1:8080\"", "address = \"127.0.0.1:5432\"");
        let err = ProxyConfig::from_toml(&tcp, Path::new(".")).unwrap_err().to_string();
        assert!(err.contains("listen.hosts applies to http mode"), "{err}");
    }
}
