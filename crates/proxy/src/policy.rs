//! Authorization: ordered routes (path glob + methods), each with an allow
//! list of identity patterns. First matching route decides; none → deny.
use crate::ProxyError;
use ambos_tls::Identity;
use http::Method;
use std::sync::Arc;

/// A glob over `sep`-separated text: `*` matches within one segment
/// (label or path segment), `**` across segments.
#[derive(Clone, Debug)]
pub struct Glob {
    pattern: Box<[u8]>,
    sep: u8,
    literal: bool,
}

impl Glob {
    pub fn new(pattern: &str, sep: u8) -> Glob {
        Glob { literal: !pattern.contains('*'), pattern: pattern.as_bytes().into(), sep }
    }

    pub fn matches(&self, text: &str) -> bool {
        if self.literal {
            return *self.pattern == *text.as_bytes();
        }
        let p = &self.pattern;
        // `/prefix/**` also covers `/prefix` itself.
        if p.ends_with(&[self.sep, b'*', b'*']) && text.as_bytes() == &p[..p.len() - 3] {
            return true;
        }
        glob(p, text.as_bytes(), self.sep)
    }
}

fn glob(p: &[u8], t: &[u8], sep: u8) -> bool {
    match p.first() {
        None => t.is_empty(),
        Some(b'*') if p.get(1) == Some(&b'*') => {
            let rest = &p[2..];
            (0..=t.len()).any(|i| glob(rest, &t[i..], sep))
        }
        Some(b'*') => {
            let rest = &p[1..];
            let end = t.iter().position(|c| *c == sep).unwrap_or(t.len());
            (0..=end).any(|i| glob(rest, &t[i..], sep))
        }
        Some(c) => t.first() == Some(c) && glob(&p[1..], &t[1..], sep),
    }
}

/// One entry of an allow list (DESIGN.md, "Identities and policy").
#[derive(Clone, Debug)]
pub enum AllowRule {
    Uri(Glob),
    Dns(Glob),
    Cn(Glob),
    Ou(Glob),
    O(Glob),
    Email(Glob),
    Sha256(String),
    Any,
    Anonymous,
}

impl AllowRule {
    pub fn parse(entry: &str) -> Result<AllowRule, String> {
        let e = entry.trim();
        if e == "any" {
            return Ok(AllowRule::Any);
        }
        if e == "anonymous" {
            return Ok(AllowRule::Anonymous);
        }
        if e.starts_with("spiffe://") {
            return Ok(AllowRule::Uri(Glob::new(e, b'/')));
        }
        let (kind, value) = e.split_once(':').ok_or_else(|| {
            format!("'{entry}' is not an identity (expected spiffe://..., uri:, dns:, cn:, ou:, o:, email:, sha256:, any or anonymous)")
        })?;
        if value.is_empty() {
            return Err(format!("'{entry}' has an empty value"));
        }
        Ok(match kind {
            "uri" => AllowRule::Uri(Glob::new(value, b'/')),
            "dns" => AllowRule::Dns(Glob::new(&value.to_ascii_lowercase(), b'.')),
            "cn" => AllowRule::Cn(Glob::new(value, b'/')),
            "ou" => AllowRule::Ou(Glob::new(value, b'/')),
            "o" => AllowRule::O(Glob::new(value, b'/')),
            "email" => AllowRule::Email(Glob::new(value, b'@')),
            "sha256" => {
                let hex: String = value.chars().filter(|c| *c != ':').collect::<String>().to_ascii_lowercase();
                if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                    return Err(format!("'{entry}': sha256 needs 64 hex digits"));
                }
                AllowRule::Sha256(hex)
            }
            other => return Err(format!("'{entry}': unknown identity kind '{other}'")),
        })
    }

    /// Whether `id` (None: no client certificate) satisfies this rule.
    pub fn matches(&self, id: Option<&Identity>) -> bool {
        let Some(id) = id else { return matches!(self, AllowRule::Anonymous) };
        match self {
            AllowRule::Uri(g) => id.uris.iter().any(|u| g.matches(u)),
            AllowRule::Dns(g) => id.dns.iter().any(|d| g.matches(d)),
            AllowRule::Cn(g) => id.cn.as_deref().is_some_and(|c| g.matches(c)),
            AllowRule::Ou(g) => id.ou.iter().any(|o| g.matches(o)),
            AllowRule::O(g) => id.o.iter().any(|o| g.matches(o)),
            AllowRule::Email(g) => id.emails.iter().any(|e| g.matches(e)),
            AllowRule::Sha256(h) => id.sha256 == *h,
            AllowRule::Any => true,
            AllowRule::Anonymous => false,
        }
    }
}

/// A route: which requests it covers and who may make them.
#[derive(Clone, Debug)]
pub struct Route {
    /// The pattern as written, used as the route's name in logs and metrics.
    pub name: Arc<str>,
    path: Glob,
    /// None: every method.
    methods: Option<Vec<Method>>,
    allow: Vec<AllowRule>,
    /// Handles resolved once, so the request path does no metric lookup.
    /// They bind to the recorder installed when the route is built:
    /// call `telemetry::install()` before parsing a config.
    pub allowed: metrics::Counter,
    pub denied: metrics::Counter,
}

impl Route {
    pub fn new(path: &str, methods: Option<Vec<Method>>, allow: Vec<AllowRule>) -> Route {
        let name: Arc<str> = Arc::from(path);
        Route {
            allowed: metrics::counter!("ambos_proxy_requests_total", "route" => name.to_string(), "decision" => "allow"),
            denied: metrics::counter!("ambos_proxy_requests_total", "route" => name.to_string(), "decision" => "deny"),
            path: Glob::new(path, b'/'),
            methods,
            allow,
            name,
        }
    }

    pub fn admits(&self, id: Option<&Identity>) -> bool {
        self.allow.iter().any(|r| r.matches(id))
    }
}

/// Routes in config order, indexed by the literal first path segment of
/// their pattern, so a lookup checks only the routes that can match: those
/// in the request's segment bucket and those whose first segment is a
/// wildcard, merged in config order (the first match still wins).
#[derive(Clone, Debug, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
    by_first_segment: std::collections::HashMap<Box<str>, Vec<usize>>,
    wildcard_first: Vec<usize>,
}

/// `/payments/x` → `payments`; `/` → ``.
fn first_segment(path: &str) -> &str {
    let p = path.strip_prefix('/').unwrap_or(path);
    p.split('/').next().unwrap_or("")
}

/// The outcome of authorization for one request or TCP connection.
pub enum Decision<'a> {
    Allow(&'a Route),
    /// The route exists but the identity is not on its allow list.
    NotAllowed(&'a Route),
    NoRoute,
}

impl RouteTable {
    pub fn new(routes: Vec<Route>) -> RouteTable {
        let mut by_first_segment: std::collections::HashMap<Box<str>, Vec<usize>> = Default::default();
        let mut wildcard_first = Vec::new();
        for (i, r) in routes.iter().enumerate() {
            let seg = first_segment(&r.name);
            if seg.contains('*') {
                wildcard_first.push(i);
            } else {
                by_first_segment.entry(seg.into()).or_default().push(i);
            }
        }
        RouteTable { routes, by_first_segment, wildcard_first }
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// First route (in config order) whose path glob and methods cover the request.
    pub fn find(&self, method: &Method, path: &str) -> Option<&Route> {
        let bucket: &[usize] = self.by_first_segment.get(first_segment(path)).map(Vec::as_slice).unwrap_or(&[]);
        let wild = self.wildcard_first.as_slice();
        let (mut i, mut j) = (0, 0);
        loop {
            let next = match (bucket.get(i), wild.get(j)) {
                (Some(&a), Some(&b)) if a < b => {
                    i += 1;
                    a
                }
                (_, Some(&b)) => {
                    j += 1;
                    b
                }
                (Some(&a), None) => {
                    i += 1;
                    a
                }
                (None, None) => return None,
            };
            let r = &self.routes[next];
            if r.methods.as_ref().is_none_or(|m| m.contains(method)) && r.path.matches(path) {
                return Some(r);
            }
        }
    }

    pub fn decide(&self, method: &Method, path: &str, id: Option<&Identity>) -> Decision<'_> {
        match self.find(method, path) {
            Some(r) if r.admits(id) => Decision::Allow(r),
            Some(r) => Decision::NotAllowed(r),
            None => Decision::NoRoute,
        }
    }
}

/// Parses an allow list, naming the offending entry.
pub fn parse_allow(entries: &[String], context: &str) -> Result<Vec<AllowRule>, ProxyError> {
    entries
        .iter()
        .map(|e| AllowRule::parse(e).map_err(|why| ProxyError::Invalid(format!("{context}: {why}"))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> Identity {
        Identity {
            spiffe: Some("spiffe://acme.test/ns/prod/checkout".into()),
            uris: vec!["spiffe://acme.test/ns/prod/checkout".into()],
            dns: vec!["web.acme.test".into()],
            cn: Some("checkout".into()),
            ou: vec!["payments".into()],
            o: vec!["acme".into()],
            sha256: "ab".repeat(32),
            ..Identity::default()
        }
    }

    #[test]
    fn single_star_stays_in_one_segment_double_star_crosses() {
        let g = Glob::new("spiffe://acme.test/ns/*/checkout", b'/');
        assert!(g.matches("spiffe://acme.test/ns/prod/checkout"));
        assert!(!g.matches("spiffe://acme.test/ns/a/b/checkout"));
        let g = Glob::new("/payments/**", b'/');
        assert!(g.matches("/payments/x/y") && g.matches("/payments") && g.matches("/payments/"));
        assert!(!g.matches("/paymentsX") && !g.matches("/other/payments/x"));
        let d = Glob::new("*.acme.test", b'.');
        assert!(d.matches("web.acme.test") && !d.matches("a.web.acme.test") && !d.matches("acme.test"));
        assert!(Glob::new("**.acme.test", b'.').matches("a.web.acme.test"));
        assert!(Glob::new("/api/v*/items", b'/').matches("/api/v2/items"));
    }

    #[test]
    fn allow_rules_match_each_identity_field() {
        let id = id();
        for (rule, expect) in [
            ("spiffe://acme.test/ns/prod/checkout", true),
            ("spiffe://acme.test/ns/*/checkout", true),
            ("spiffe://acme.test/ns/dev/checkout", false),
            ("uri:spiffe://acme.test/**", true),
            ("dns:*.acme.test", true),
            ("dns:WEB.acme.test", true),
            ("cn:checkout", true),
            ("cn:check", false),
            ("ou:payments", true),
            ("o:acme", true),
            ("o:evil", false),
            ("any", true),
            ("anonymous", false),
        ] {
            assert_eq!(AllowRule::parse(rule).unwrap().matches(Some(&id)), expect, "{rule}");
        }
        assert!(AllowRule::parse(&format!("sha256:{}", "AB".repeat(32))).unwrap().matches(Some(&id)));
        assert!(AllowRule::parse("anonymous").unwrap().matches(None));
        assert!(!AllowRule::parse("any").unwrap().matches(None));
        for bad in ["web", "foo:bar", "sha256:12", "cn:"] {
            assert!(AllowRule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn config_order_wins_across_index_buckets() {
        let any = || vec![AllowRule::Any];
        let routes = RouteTable::new(vec![
            Route::new("/**", Some(vec![Method::GET]), any()),
            Route::new("/a/**", None, any()),
            Route::new("/*/b", None, any()),
            Route::new("/a/b", None, any()),
        ]);
        assert_eq!(&*routes.find(&Method::GET, "/a/x").unwrap().name, "/**");
        assert_eq!(&*routes.find(&Method::POST, "/a/x").unwrap().name, "/a/**");
        assert_eq!(&*routes.find(&Method::POST, "/c/b").unwrap().name, "/*/b");
        assert_eq!(&*routes.find(&Method::POST, "/a/b").unwrap().name, "/a/**");
        assert!(routes.find(&Method::POST, "/c/d").is_none());
        assert_eq!(&*routes.find(&Method::POST, "/a").unwrap().name, "/a/**");
    }

    #[test]
    fn first_matching_route_decides_and_no_route_denies() {
        let routes = RouteTable::new(vec![
            Route::new("/healthz", None, vec![AllowRule::Anonymous, AllowRule::Any]),
            Route::new(
                "/payments/**",
                Some(vec![Method::GET, Method::POST]),
                parse_allow(&["ou:payments".into()], "t").unwrap(),
            ),
            Route::new("/**", Some(vec![Method::GET]), vec![AllowRule::Cn(Glob::new("admin", b'/'))]),
        ]);
        let id = id();
        assert!(matches!(routes.decide(&Method::GET, "/healthz", None), Decision::Allow(_)));
        assert!(matches!(routes.decide(&Method::POST, "/payments/charge", Some(&id)), Decision::Allow(_)));
        assert!(matches!(routes.decide(&Method::DELETE, "/payments/charge", Some(&id)), Decision::NoRoute));
        assert!(matches!(routes.decide(&Method::GET, "/admin", Some(&id)), Decision::NotAllowed(_)));
    }
}
