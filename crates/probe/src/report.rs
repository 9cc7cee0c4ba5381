//! What probe saw, and its text form.
use serde::Serialize;

/// One line of the walk-through.
#[derive(Serialize, Clone, Debug)]
pub struct Step {
    pub step: String,
    pub ok: bool,
    pub detail: String,
}

#[derive(Serialize, Default, Clone, Debug)]
pub struct ServerCert {
    pub subject: String,
    pub issuer: String,
    pub sans: Vec<String>,
    pub not_before: String,
    pub not_after: String,
}

/// Everything probe saw, for humans ([`Report::render`]) and for `--json`.
#[derive(Serialize, Default, Clone, Debug)]
pub struct Report {
    pub target: String,
    pub steps: Vec<Step>,
    pub protocol: Option<String>,
    pub cipher_suite: Option<String>,
    pub key_exchange: Option<String>,
    pub post_quantum: bool,
    pub server_chain: Vec<ServerCert>,
    pub client_cert_requested: bool,
    pub acceptable_cas: Vec<String>,
    pub sent_client_cert: bool,
    pub http_status: Option<u16>,
    pub ok: bool,
    pub verdict: String,
    /// Stable label of a certificate failure on our side (`revoked`,
    /// `crl_missing`, `incomplete_chain`, ...: `HandshakeFailure::label`).
    pub reason: Option<String>,
    pub cause: Option<String>,
    pub fix: Option<String>,
}

impl Report {
    pub(crate) fn step(&mut self, step: &str, ok: bool, detail: impl Into<String>) {
        self.steps.push(Step { step: step.into(), ok, detail: detail.into() });
    }

    pub(crate) fn fail(mut self, cause: &str, fix: &str) -> Report {
        self.ok = false;
        self.verdict = format!("FAIL: {cause}");
        self.cause = Some(cause.into());
        self.fix = Some(fix.into());
        self
    }

    pub(crate) fn fail_with(self, v: &ambos_tls::Verdict) -> Report {
        self.fail(&v.cause, v.fix)
    }

    pub(crate) fn pass(mut self, verdict: String) -> Report {
        self.ok = true;
        self.verdict = verdict;
        self
    }

    /// The walk-through as lines of at most 78 columns; `color` marks steps
    /// with green and red ticks (for a terminal) instead of `ok `/`-- `.
    pub fn render(&self, color: bool) -> String {
        let mut out = format!("probe {}\n", self.target);
        for (i, s) in self.steps.iter().enumerate() {
            let head = format!("{:>2}. {} {}: ", i + 1, mark(color, s.ok), s.step);
            out.push_str(&wrap(&format!("{head}{}", s.detail), 78, 7));
            out.push('\n');
        }
        out.push_str(&wrap(&self.verdict, 78, 2));
        out.push('\n');
        if let Some(fix) = &self.fix {
            out.push_str(&wrap(&format!("fix: {fix}"), 78, 5));
            out.push('\n');
        }
        out
    }
}

fn mark(color: bool, ok: bool) -> &'static str {
    match (color, ok) {
        (true, true) => "\x1b[32m✓\x1b[0m",
        (true, false) => "\x1b[31m✗\x1b[0m",
        (false, true) => "ok ",
        (false, false) => "-- ",
    }
}

/// Wraps `text` to `width` columns with `indent` spaces on continuation lines.
fn wrap(text: &str, width: usize, indent: usize) -> String {
    let mut out = String::new();
    let mut col = 0;
    for word in text.split_whitespace() {
        if col > 0 && col + 1 + word.chars().count() > width {
            out.push('\n');
            out.push_str(&" ".repeat(indent));
            col = indent;
        } else if col > 0 {
            out.push(' ');
            col += 1;
        }
        out.push_str(word);
        col += word.chars().count();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_breaks_at_the_width_and_indents_continuations() {
        let text = "one two three four five";
        assert_eq!(wrap(text, 9, 2), "one two\n  three\n  four\n  five");
        assert_eq!(wrap("a  b", 78, 5), "a b");
    }

    #[test]
    fn render_numbers_steps_and_ends_with_verdict_and_fix() {
        let mut r = Report { target: "h:1".into(), ..Report::default() };
        r.step("TCP connect", true, "127.0.0.1:1 in 0.1 ms");
        r.step("TLS handshake", false, "refused");
        let r = r.fail("the cause", "the fix");
        assert_eq!(
            r.render(false),
            "probe h:1\n1. ok TCP connect: 127.0.0.1:1 in 0.1 ms\n2. -- TLS handshake: refused\nFAIL: the cause\nfix: the fix\n"
        );
        assert!(r.render(true).contains("\x1b[31m✗\x1b[0m TLS handshake"));
        assert!(!r.ok);
        assert_eq!(r.cause.as_deref(), Some("the cause"));
    }
}
