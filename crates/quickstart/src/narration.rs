//! `ambos quickstart`'s story: each step of the [`Demo`] as it happens, the
//! same call by hand with curl, probe's report of it, and the files made.
use crate::{Demo, QuickstartError, Result};
use std::io::Write;
use std::path::PathBuf;

/// Settings of `ambos quickstart`.
#[derive(Clone, Debug)]
pub struct QuickstartOptions {
    /// Where the CA, certificates, proxy.toml and audit log go.
    pub dir: PathBuf,
    /// Probe reports with coloured ticks (for a terminal).
    pub color: bool,
}

/// The demo after its six calls, its proxy still running.
pub struct Narrated {
    pub demo: Demo,
    /// The proxy's port on localhost.
    pub port: u16,
    /// Whether each call was allowed or refused as the story says.
    pub as_expected: bool,
}

/// Builds the demo in `opts.dir` (which must not hold one), starts the
/// proxy, makes the six calls and tells `out` about each.
pub fn narrate(opts: &QuickstartOptions, out: &mut impl Write) -> Result<Narrated> {
    let dir = &opts.dir;
    if dir.join("ca").exists() {
        return Err(QuickstartError::AlreadyThere(dir.clone()));
    }
    ambos_files::ensure_dir(&dir.join("certs"))?;
    writeln!(out, "== 1. a CA, a server certificate and two client certificates in {}", dir.display())?;
    let mut demo = Demo::create(dir)?;
    writeln!(out, "== 2. an upstream service and `ambos proxy` in front of it (only alice allowed)")?;
    let proxy = demo.start_proxy()?;
    let port = proxy.port;
    writeln!(out, "   proxy on https://localhost:{port} -> upstream http://127.0.0.1:{}\n", proxy.upstream)?;
    let mut as_expected = true;
    // (title, who: None without a certificate, with alice's token on /pay/, allowed)
    let mut show = |demo: &Demo, title: &str, who: Option<&str>, token: bool, expect_ok: bool| -> Result<()> {
        writeln!(out, "== {title}")?;
        let (r, curl) = match (who, token) {
            (Some(who), true) => demo.call_with_alice_token(who)?,
            _ => (demo.call(who)?, demo.curl(who)),
        };
        writeln!(out, "   by hand: {curl}")?;
        writeln!(out, "{}", r.render(opts.color))?;
        as_expected &= r.ok == expect_ok;
        Ok(())
    };
    show(&demo, "3. alice, who is on the allow list: allowed", Some("alice"), false, true)?;
    show(&demo, "4. no client certificate: refused in the TLS handshake", None, false, false)?;
    let title = "5. bob, a valid certificate but not on the allow list: 403 from the route policy";
    show(&demo, title, Some("bob"), false, false)?;
    let title = "6. alice with an access token bound to her certificate, on /pay/ (a token route): allowed";
    show(&demo, title, Some("alice"), true, true)?;
    let title = "7. bob replays alice's stolen token with his own valid certificate: 401, bound to another certificate";
    show(&demo, title, Some("bob"), true, false)?;
    demo.revoke_alice()?;
    let title = "8. alice again, after `ambos revoke alice` and a new CRL: refused, revoked";
    show(&demo, title, Some("alice"), false, false)?;
    writeln!(out, "== files")?;
    for (path, what) in demo.files() {
        writeln!(out, "   {:<44} {what}", path.display().to_string())?;
    }
    writeln!(
        out,
        "   more: ambos --dir {} list; ambos probe localhost:{port} --ca {}/ca.crt --cert ... --key ...",
        dir.join("ca").display(),
        demo.certs.display()
    )?;
    Ok(Narrated { demo, port, as_expected })
}

impl Narrated {
    /// Stops the proxy; an error if a call did not behave as the story said.
    pub fn finish(self, out: &mut impl Write) -> Result<()> {
        self.demo.stop()?;
        if !self.as_expected {
            return Err(QuickstartError::NotAsExpected);
        }
        writeln!(out, "quickstart: all six calls behaved as expected")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_four_calls_are_told_in_order_and_behave_as_the_story_says() {
        let dir = tempfile::tempdir().unwrap();
        let opts = QuickstartOptions { dir: dir.path().join("q"), color: false };
        let mut out = Vec::new();
        let done = narrate(&opts, &mut out).unwrap();
        assert!(done.as_expected);
        let port = done.port;
        done.finish(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let titles: Vec<&str> = text.lines().filter(|l| l.starts_with("== ")).collect();
        assert_eq!(titles.len(), 9, "{text}");
        assert!(titles[7].starts_with("== 8. alice again"), "{text}");
        assert!(text.contains("the token is bound to another certificate"), "bob's replay:\n{text}");
        assert!(text.contains(&format!("proxy on https://localhost:{port} -> upstream")), "{text}");
        assert!(text.contains("probe localhost:"), "probe's report follows each call:\n{text}");
        assert!(text.ends_with("...\nquickstart: all six calls behaved as expected\n"), "{text}");
        let again = narrate(&opts, &mut Vec::new()).err().unwrap();
        assert!(matches!(again, QuickstartError::AlreadyThere(_)), "{again}");
        assert!(again.is_input());
        assert!(again.to_string().ends_with("q already holds a quickstart: remove it or pass --dir"), "{again}");
    }

    #[test]
    fn a_demo_that_went_wrong_is_a_failure_not_bad_input() {
        assert!(!QuickstartError::NotAsExpected.is_input());
        assert_eq!(QuickstartError::NotAsExpected.to_string(), "the demo did not go as expected (see above)");
    }
}
