//! Cross-site request forgery: the browser sends the admin's client
//! certificate with any request, so a console POST must come from our own
//! pages (Origin / Sec-Fetch-Site) and carry a token only our pages hold.
use aws_lc_rs::hmac;
use axum::http::{header, HeaderMap};

/// Signs form tokens; made at start, so a restart voids open forms.
pub(crate) struct FormKey(hmac::Key);

impl FormKey {
    pub(crate) fn random() -> FormKey {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        // Only fails without an OS random source, where no CA can run.
        FormKey(hmac::Key::generate(hmac::HMAC_SHA256, &rng).expect("system random source"))
    }

    fn message(action: &str, target: &str, admin_sha256: &str) -> Vec<u8> {
        // Length-prefixed: no action/target pair reads as another.
        let mut m = Vec::new();
        for part in [action, target, admin_sha256] {
            m.extend_from_slice(&(part.len() as u64).to_be_bytes());
            m.extend_from_slice(part.as_bytes());
        }
        m
    }

    /// The token for `action` on `target` by the admin whose certificate has this SHA-256.
    pub(crate) fn token(&self, action: &str, target: &str, admin_sha256: &str) -> String {
        hex::encode(hmac::sign(&self.0, &Self::message(action, target, admin_sha256)).as_ref())
    }

    /// Whether `token` is ours for exactly this action, target and admin (constant time).
    pub(crate) fn verify(&self, token: &str, action: &str, target: &str, admin_sha256: &str) -> bool {
        let Ok(tag) = hex::decode(token.trim()) else { return false };
        hmac::verify(&self.0, &Self::message(action, target, admin_sha256), &tag).is_ok()
    }
}

/// Whether the request comes from a page of this server: its Origin is
/// `https://HOST` (a foreign one is refused whatever else it says), or,
/// without an Origin, the browser says `Sec-Fetch-Site: same-origin`.
/// `Origin: null` counts as no Origin: Chromium sends it for our own form
/// posts because the pages say `Referrer-Policy: no-referrer` (found by the
/// Chromium test), and a cross-site sender of `null` (a file, a sandboxed
/// frame) is `Sec-Fetch-Site: cross-site`.
pub(crate) fn same_origin(headers: &HeaderMap) -> bool {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if get("sec-fetch-site").is_some_and(|s| s != "same-origin") {
        return false;
    }
    let origin = get(header::ORIGIN.as_str()).filter(|o| *o != "null");
    match (origin, get(header::HOST.as_str())) {
        (Some(origin), Some(host)) => origin == format!("https://{host}"),
        (Some(_), None) => false,
        (None, _) => get("sec-fetch-site") == Some("same-origin"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_bound_to_its_action_target_and_admin() {
        let key = FormKey::random();
        let t = key.token("revoke", "0a1b", "aa");
        assert!(key.verify(&t, "revoke", "0a1b", "aa"));
        assert!(!key.verify(&t, "revoke", "0a1c", "aa"), "another certificate");
        assert!(!key.verify(&t, "crl", "0a1b", "aa"), "another action");
        assert!(!key.verify(&t, "revoke", "0a1b", "bb"), "another admin");
        assert!(!FormKey::random().verify(&t, "revoke", "0a1b", "aa"), "a key from another start");
        assert!(!key.verify("", "revoke", "0a1b", "aa"));
        assert!(!key.verify("zz-not-hex", "revoke", "0a1b", "aa"));
        assert!(!key.verify(&t[..t.len() - 2], "revoke", "0a1b", "aa"), "truncated");
        let joined = key.token("a\0b", "c", "aa");
        assert!(!key.verify(&joined, "a", "b\0c", "aa"), "parts do not run into each other");
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (header::HeaderName::from_static(k), v.parse().unwrap())).collect()
    }

    #[test]
    fn only_our_own_origin_may_post() {
        let host = ("host", "ca.test:8443");
        assert!(same_origin(&headers(&[host, ("origin", "https://ca.test:8443")])));
        assert!(same_origin(&headers(&[host, ("sec-fetch-site", "same-origin")])));
        assert!(!same_origin(&headers(&[host])), "neither header");
        assert!(!same_origin(&headers(&[host, ("origin", "https://evil.test")])));
        assert!(!same_origin(&headers(&[host, ("origin", "http://ca.test:8443")])), "another scheme");
        assert!(!same_origin(&headers(&[host, ("origin", "null")])));
        assert!(
            same_origin(&headers(&[host, ("origin", "null"), ("sec-fetch-site", "same-origin")])),
            "Chromium, no-referrer"
        );
        assert!(
            !same_origin(&headers(&[host, ("origin", "null"), ("sec-fetch-site", "cross-site")])),
            "a file or sandboxed frame"
        );
        let foreign = [host, ("origin", "https://evil.test"), ("sec-fetch-site", "same-origin")];
        assert!(!same_origin(&headers(&foreign)), "a foreign Origin always loses");
        let cross = [host, ("origin", "https://ca.test:8443"), ("sec-fetch-site", "cross-site")];
        assert!(!same_origin(&headers(&cross)));
    }
}
