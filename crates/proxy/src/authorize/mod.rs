//! Authorization: ordered routes (path glob + methods), each with an allow
//! list of identity patterns. First matching route decides; none → deny.
//! [`RouteConfig`] is a route as configured (data); [`RouteTable::build`]
//! compiles the globs (a linear-time matcher, [`Glob`]) and resolves each
//! route's counters. `target` reads the request target that routes match.
pub mod jwks;
pub mod target;
pub mod token;

use crate::ProxyError;
use ambos_tls::Identity;
use http::Method;
use std::sync::Arc;

/// A glob over `sep`-separated text: `*` matches within one segment
/// (label or path segment), `**` across segments.
///
/// Compiled to a position automaton simulated bit-parallel (shift-and), so
/// matching costs O(text length × pattern tokens / 64) whatever the
/// pattern: no backtracking.
#[derive(Clone, Debug)]
pub struct Glob {
    /// The literal, when the pattern has no `*`.
    literal: Option<Box<[u8]>>,
    /// Byte value → its class: 0 for bytes the pattern does not name, else
    /// one class per distinct pattern byte (both cases together when folding
    /// case; UTF-8 text has at most 243 distinct bytes, so a u8 holds it).
    /// Empty for a literal pattern.
    class: Box<[u8]>,
    /// Per class `k`, words `k * words..`: the tokens (bits) a literal of
    /// that class advances.
    lit: Box<[u64]>,
    /// Tokens that are `*` (stay on any byte but `sep`).
    star: Vec<u64>,
    /// Tokens that are `**` (stay on any byte).
    dstar: Vec<u64>,
    /// Tokens `*` or `**`, which may also match nothing.
    any_star: Vec<u64>,
    /// Number of tokens; bit `tokens` means the whole pattern matched.
    tokens: usize,
    /// Pattern ends in `sep**`: the text may also end before that `sep`.
    trailing_all: bool,
    /// The longest run of consecutive stars (epsilon-closure iterations).
    max_star_run: usize,
    sep: u8,
    fold_case: bool,
}

#[derive(Clone, Copy, PartialEq)]
enum Token {
    Byte(u8),
    Star,
    DoubleStar,
}

impl Glob {
    /// A case-sensitive glob.
    pub fn new(pattern: &str, sep: u8) -> Glob {
        Glob::build(pattern, sep, false)
    }

    /// A glob that ignores ASCII case (route paths: see docs/proxy.md, "Paths").
    pub fn new_ignore_case(pattern: &str, sep: u8) -> Glob {
        Glob::build(pattern, sep, true)
    }

    fn build(pattern: &str, sep: u8, fold_case: bool) -> Glob {
        let p = pattern.as_bytes();
        let mut toks = Vec::new();
        let mut i = 0;
        while i < p.len() {
            if p[i] == b'*' {
                let mut n = 0;
                while i < p.len() && p[i] == b'*' {
                    n += 1;
                    i += 1;
                }
                toks.push(if n >= 2 { Token::DoubleStar } else { Token::Star });
            } else {
                toks.push(Token::Byte(if fold_case { p[i].to_ascii_lowercase() } else { p[i] }));
                i += 1;
            }
        }
        let tokens = toks.len();
        let words = (tokens + 1).div_ceil(64);
        let literal = toks
            .iter()
            .all(|t| matches!(t, Token::Byte(_)))
            .then(|| toks.iter().map(|t| if let Token::Byte(c) = t { *c } else { 0 }).collect::<Box<[u8]>>());
        let mut class = vec![0u8; if literal.is_some() { 0 } else { 256 }];
        let mut classes = 1usize;
        if literal.is_none() {
            for t in &toks {
                if let Token::Byte(c) = *t {
                    if class[c as usize] == 0 {
                        class[c as usize] = classes as u8;
                        if fold_case {
                            class[c.to_ascii_uppercase() as usize] = classes as u8;
                        }
                        classes += 1;
                    }
                }
            }
        }
        let mut lit = vec![0u64; if literal.is_some() { 0 } else { classes * words }];
        let mut star = vec![0u64; words];
        let mut dstar = vec![0u64; words];
        let mut any_star = vec![0u64; words];
        let (mut run, mut max_star_run) = (0, 0);
        for (k, t) in toks.iter().enumerate() {
            let (w, bit) = (k / 64, 1u64 << (k % 64));
            match *t {
                Token::Byte(c) => {
                    if literal.is_none() {
                        lit[class[c as usize] as usize * words + w] |= bit;
                    }
                    run = 0;
                }
                Token::Star => {
                    star[w] |= bit;
                    any_star[w] |= bit;
                    run += 1;
                }
                Token::DoubleStar => {
                    dstar[w] |= bit;
                    any_star[w] |= bit;
                    run += 1;
                }
            }
            max_star_run = max_star_run.max(run);
        }
        let trailing_all = tokens >= 2 && toks[tokens - 1] == Token::DoubleStar && toks[tokens - 2] == Token::Byte(sep);
        Glob {
            literal,
            class: class.into_boxed_slice(),
            lit: lit.into_boxed_slice(),
            star,
            dstar,
            any_star,
            tokens,
            trailing_all,
            max_star_run,
            sep,
            fold_case,
        }
    }

    pub fn matches(&self, text: &str) -> bool {
        self.match_counting(text.as_bytes()).0
    }

    /// Whether `text` matches, and the number of bytes stepped through
    /// (at most the text's length: each byte is looked at once).
    pub fn match_counting(&self, text: &[u8]) -> (bool, usize) {
        if let Some(l) = &self.literal {
            let eq = if self.fold_case { l.eq_ignore_ascii_case(text) } else { **l == *text };
            return (eq, 0);
        }
        let words = self.star.len();
        if words == 1 {
            return self.match_one_word(text);
        }
        let mut d = vec![0u64; words];
        d[0] = 1;
        self.close(&mut d);
        let mut next = vec![0u64; words];
        let mut steps = 0;
        for &c in text {
            steps += 1;
            let lit = &self.lit[self.class[c as usize] as usize * words..][..words];
            let mut carry = 0u64;
            let mut live = 0u64;
            for w in 0..words {
                let adv = d[w] & lit[w];
                let stay = d[w] & (self.dstar[w] | if c == self.sep { 0 } else { self.star[w] });
                next[w] = (adv << 1) | carry | stay;
                carry = adv >> 63;
                live |= next[w];
            }
            if live == 0 {
                return (false, steps);
            }
            std::mem::swap(&mut d, &mut next);
            self.close(&mut d);
        }
        let bit = |k: usize| d[k / 64] & (1u64 << (k % 64)) != 0;
        (bit(self.tokens) || (self.trailing_all && bit(self.tokens - 2)), steps)
    }

    /// `match_counting` for patterns of fewer than 64 tokens: no allocation.
    fn match_one_word(&self, text: &[u8]) -> (bool, usize) {
        let (star, dstar, any) = (self.star[0], self.dstar[0], self.any_star[0]);
        let close = |mut d: u64| {
            for _ in 0..self.max_star_run {
                d |= (d & any) << 1;
            }
            d
        };
        let mut d = close(1);
        let mut steps = 0;
        for &c in text {
            steps += 1;
            let stay = d & (dstar | if c == self.sep { 0 } else { star });
            d = ((d & self.lit[self.class[c as usize] as usize]) << 1) | stay;
            if d == 0 {
                return (false, steps);
            }
            d = close(d);
        }
        let bit = |k: usize| d & (1u64 << k) != 0;
        (bit(self.tokens) || (self.trailing_all && bit(self.tokens - 2)), steps)
    }

    /// Epsilon closure: an active star token also activates the next token.
    fn close(&self, d: &mut [u64]) {
        for _ in 0..self.max_star_run {
            let mut carry = 0u64;
            for (dw, star) in d.iter_mut().zip(&self.any_star) {
                let s = *dw & star;
                *dw |= (s << 1) | carry;
                carry = s >> 63;
            }
        }
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

/// A validated `[[route]]` (or the flags' one route), as plain data:
/// [`RouteTable::build`] compiles it and resolves its counters.
#[derive(Clone, Debug)]
pub struct RouteConfig {
    /// The path glob as written (already checked to be normalized).
    pub path: String,
    /// None: every method.
    pub methods: Option<Vec<Method>>,
    pub allow: Vec<AllowRule>,
    /// `websocket = true`: an `Upgrade: websocket` request may pass.
    pub websocket: bool,
    /// `token = {...}`: a bound access token is needed too.
    pub token: Option<token::TokenConfig>,
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
    /// `Upgrade: websocket` allowed on this route.
    pub websocket: bool,
    /// The route's token rule, its JWKS loaded.
    pub token: Option<Arc<token::TokenPolicy>>,
    /// Handles resolved once, so the request path does no metric lookup;
    /// they bind to the recorder installed when the route is built
    /// (`run` installs it before `Runtime::build`).
    pub allowed: metrics::Counter,
    pub denied: metrics::Counter,
}

impl Route {
    pub fn new(path: &str, methods: Option<Vec<Method>>, allow: Vec<AllowRule>) -> Route {
        let name: Arc<str> = Arc::from(path);
        Route {
            allowed: metrics::counter!("ambos_proxy_requests_total", "route" => name.to_string(), "decision" => "allow"),
            denied: metrics::counter!("ambos_proxy_requests_total", "route" => name.to_string(), "decision" => "deny"),
            path: Glob::new_ignore_case(path, b'/'),
            methods,
            allow,
            websocket: false,
            token: None,
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
    /// Every method some route lists in `methods`.
    listed_methods: Vec<Method>,
}

/// `/payments/x` → `payments`; `/` → ``; in lower case, as the index is
/// (route paths ignore ASCII case).
fn first_segment(path: &str) -> std::borrow::Cow<'_, str> {
    let p = path.strip_prefix('/').unwrap_or(path);
    let seg = p.split('/').next().unwrap_or("");
    if seg.bytes().any(|c| c.is_ascii_uppercase()) {
        seg.to_ascii_lowercase().into()
    } else {
        seg.into()
    }
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
        let mut listed_methods: Vec<Method> = Vec::new();
        for (i, r) in routes.iter().enumerate() {
            for m in r.methods.iter().flatten() {
                if !listed_methods.contains(m) {
                    listed_methods.push(m.clone());
                }
            }
            let seg = first_segment(&r.name);
            if seg.contains('*') {
                wildcard_first.push(i);
            } else {
                by_first_segment.entry(seg.into()).or_default().push(i);
            }
        }
        RouteTable { routes, by_first_segment, wildcard_first, listed_methods }
    }

    /// The table of the configured routes, in config order; a route's JWKS
    /// file that cannot be used is an error naming it. A JWKS URL's keys
    /// are taken from `pulled` (`client_ca`: what its server must chain to).
    pub fn build(
        routes: &[RouteConfig],
        pulled: &jwks::PulledJwks,
        client_ca: &[std::path::PathBuf],
    ) -> Result<RouteTable, String> {
        let mut built = Vec::with_capacity(routes.len());
        for r in routes {
            let token = match &r.token {
                Some(t) => Some(Arc::new(token::TokenPolicy::load(t, pulled, client_ca)?)),
                None => None,
            };
            built.push(Route {
                websocket: r.websocket,
                token,
                ..Route::new(&r.path, r.methods.clone(), r.allow.clone())
            });
        }
        Ok(RouteTable::new(built))
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// The token rules of the routes that have one.
    pub fn token_policies(&self) -> impl Iterator<Item = &Arc<token::TokenPolicy>> {
        self.routes.iter().filter_map(|r| r.token.as_ref())
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Whether a route lists `m` in its `methods` (a route without
    /// `methods` lists none).
    pub fn lists_method(&self, m: &Method) -> bool {
        self.listed_methods.contains(m)
    }

    /// First route (in config order) whose path glob and methods cover the
    /// request. `path` is the normalized path (`target::normalize_path`).
    /// A route without `methods` covers every method but CONNECT, which
    /// has no path: the first route that lists CONNECT decides it.
    pub fn find(&self, method: &Method, path: &str) -> Option<&Route> {
        if method == Method::CONNECT {
            return self.routes.iter().find(|r| r.methods.as_ref().is_some_and(|m| m.contains(method)));
        }
        let bucket: &[usize] = self.by_first_segment.get(&*first_segment(path)).map(Vec::as_slice).unwrap_or(&[]);
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

/// The identity a server we connect to must carry beyond its CA and name
/// (`ambos tunnel --expect`, `[upstream.tls] expect`): one allow-list entry,
/// checked against the verified leaf after the handshake.
#[derive(Clone, Debug)]
pub struct Expected {
    /// As written, for messages.
    pub text: String,
    rule: AllowRule,
}

impl PartialEq for Expected {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for Expected {}

impl Expected {
    pub fn parse(text: &str) -> Result<Expected, String> {
        let rule = AllowRule::parse(text)?;
        if matches!(rule, AllowRule::Anonymous) {
            return Err("'anonymous' never matches: a server always has a certificate".into());
        }
        Ok(Expected { text: text.trim().to_string(), rule })
    }

    /// Whether the peer's verified leaf carries the identity; else why not
    /// (`identity X is not the expected Y`, or `sent no certificate`).
    pub fn check(&self, peer: &rustls::CommonState) -> Result<(), String> {
        let der = peer.peer_certificates().and_then(|c| c.first()).ok_or("sent no certificate")?;
        let id = Identity::from_der(der).map_err(|e| format!("certificate unreadable: {e}"))?;
        if !self.rule.matches(Some(&id)) {
            return Err(format!("identity {} is not the expected {}", id.display_name(), self.text));
        }
        Ok(())
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
    fn globs_agree_with_a_reference_matcher() {
        // The backtracking definition, kept as the reference.
        fn reference(p: &[u8], t: &[u8], sep: u8) -> bool {
            match p.first() {
                None => t.is_empty(),
                Some(b'*') if p.get(1) == Some(&b'*') => (0..=t.len()).any(|i| reference(&p[2..], &t[i..], sep)),
                Some(b'*') => {
                    let end = t.iter().position(|c| *c == sep).unwrap_or(t.len());
                    (0..=end).any(|i| reference(&p[1..], &t[i..], sep))
                }
                Some(c) => t.first() == Some(c) && reference(&p[1..], &t[1..], sep),
            }
        }
        let patterns = ["/**", "/a/**", "/*/b", "/a*b/**/c", "/**/x/**", "**", "*", "/a/*", "/*a*/**b", "/**/**/**"];
        let alphabet = [b'/', b'a', b'b', b'c', b'x'];
        let mut texts = vec![String::new()];
        for len in 1..=6 {
            let n = alphabet.len().pow(len);
            for k in 0..n {
                let mut k2 = k;
                let t: String = (0..len)
                    .map(|_| {
                        let c = alphabet[k2 % alphabet.len()];
                        k2 /= alphabet.len();
                        c as char
                    })
                    .collect();
                texts.push(t);
            }
        }
        for p in patterns {
            let g = Glob::new(p, b'/');
            for t in &texts {
                let mut want = reference(p.as_bytes(), t.as_bytes(), b'/');
                // `prefix/**` also covers `prefix` itself.
                if p.ends_with("/**") && reference(&p.as_bytes()[..p.len() - 3], t.as_bytes(), b'/') {
                    want = true;
                }
                assert_eq!(g.matches(t), want, "{p} vs {t}");
            }
        }
    }

    #[test]
    fn long_patterns_use_several_words() {
        let seg = "/abcdefghij".repeat(8);
        let g = Glob::new(&format!("{seg}/**/z*"), b'/');
        assert!(g.matches(&format!("{seg}/q/r/zed")));
        assert!(!g.matches(&format!("{seg}/q/r/zed/x")));
        assert!(g.matches(&format!("{seg}//z")) && !g.matches(&format!("{seg}/z")));
        assert!(!g.matches(&format!("{seg}X/z")));
    }

    #[test]
    fn six_double_stars_against_a_64k_path_are_linear() {
        let g = Glob::new_ignore_case("/**/a/**/b/**/c/**/d/**/e/**/f", b'/');
        // Every segment almost matches, the end never does: the worst case
        // for a backtracking matcher.
        let path = "/a/b/c/d/e".repeat(64 * 1024 / 10) + "/x";
        assert!(path.len() >= 64 * 1024 - 16);
        let (matched, steps) = g.match_counting(path.as_bytes());
        assert!(!matched);
        assert!(steps <= path.len(), "{steps} steps for {} bytes", path.len());
        let ok = "/a/b/c/d/e".repeat(6000) + "/f";
        assert_eq!(g.match_counting(ok.as_bytes()), (true, ok.len()));
    }

    #[test]
    fn route_paths_ignore_case_identities_do_not() {
        let any = || vec![AllowRule::Any];
        let routes = RouteTable::new(vec![Route::new("/Admin/**", None, any()), Route::new("/x/*.TXT", None, any())]);
        for p in ["/admin/x", "/ADMIN/x", "/aDmIn", "/Admin/"] {
            assert_eq!(routes.find(&Method::GET, p).map(|r| &*r.name), Some("/Admin/**"), "{p}");
        }
        assert!(routes.find(&Method::GET, "/x/a.txt").is_some());
        assert!(!AllowRule::parse("cn:admin").unwrap().matches(Some(&Identity { cn: Some("ADMIN".into()), ..id() })));
    }

    #[test]
    fn connect_needs_a_route_that_lists_it() {
        let any = || vec![AllowRule::Any];
        let routes = RouteTable::new(vec![Route::new("/**", None, any())]);
        assert!(routes.find(&Method::CONNECT, "").is_none() && !routes.lists_method(&Method::CONNECT));
        let routes = RouteTable::new(vec![
            Route::new("/**", Some(vec![Method::GET]), any()),
            Route::new("/tunnel", Some(vec![Method::CONNECT]), any()),
        ]);
        assert_eq!(routes.find(&Method::CONNECT, "").map(|r| &*r.name), Some("/tunnel"));
        assert!(routes.lists_method(&Method::CONNECT) && routes.lists_method(&Method::GET));
        assert!(!routes.lists_method(&Method::POST));
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
