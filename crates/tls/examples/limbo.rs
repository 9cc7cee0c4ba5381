//! The x509-limbo suite through ambos's production verifiers.
//!
//! ```text
//! cargo run -p ambos-tls --example limbo -- [--json x509-limbo.json.gz] [--out results.json]
//!     [--markdown cases.md] [--max-wrongly-accepted 14]
//! ```
//!
//! CLIENT cases go through `ClientVerifier::verify_client_cert`, SERVER
//! cases through `ServerVerifier::verify_server_cert` with the expected peer
//! name, each with a `Trust` built from the case alone (trusted certificates
//! as CA certificates, the case's CRLs with the default revocation policy).
//!
//! Two passes: "fresh" (a new verifier, one call: its answer counts) and
//! "primed" (a new verifier, two calls at the same time: the second answer
//! counts, the first must agree with it). The cache of `ClientVerifier` is
//! also put to work on every chain of the suite: a `ClientVerifier` built
//! from each case's trust verifies the case's chain fresh and twice; any
//! verdict that changes is a cache bug whatever the case expects.
//!
//! A case asking for what these verifiers cannot be told (a maximum chain
//! depth, a key usage, an EKU other than the one of its side, peer names
//! that are not a server's DNS name or IP address) is SKIPPED; its context
//! still says what the verifier answered.
//!
//! Exit status 1 when more cases than `--max-wrongly-accepted` are wrongly
//! accepted, when any CRL case is wrongly accepted, or when a primed verdict
//! differs from a fresh one; 2 on a usage or input error.
use ambos_tls::{ClientVerifier, HandshakeFailure, RevocationPolicy, ServerVerifier, Trust, TrustOptions};
use rustls::client::danger::ServerCertVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, ServerName, UnixTime};
use serde_json::{json, Value};
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Args {
    json: PathBuf,
    out: Option<PathBuf>,
    markdown: Option<PathBuf>,
    max_wrongly_accepted: usize,
}

fn usage(why: &str) -> ! {
    eprintln!("limbo: {why}");
    eprintln!(
        "usage: limbo [--json x509-limbo.json.gz] [--out results.json] [--markdown cases.md] [--max-wrongly-accepted N]"
    );
    std::process::exit(2)
}

fn args() -> Args {
    let mut a = Args {
        json: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/x509-limbo.json.gz"),
        out: None,
        markdown: None,
        max_wrongly_accepted: 14,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        match flag.as_str() {
            "--json" => a.json = value().into(),
            "--out" => a.out = Some(value().into()),
            "--markdown" => a.markdown = Some(value().into()),
            "--max-wrongly-accepted" => {
                a.max_wrongly_accepted = value().parse().unwrap_or_else(|_| usage("--max-wrongly-accepted: a number"))
            }
            "-h" | "--help" => usage("help"),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    a
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Outcome {
    Success,
    Failure,
    Skipped,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "SUCCESS",
            Outcome::Failure => "FAILURE",
            Outcome::Skipped => "SKIPPED",
        }
    }
}

/// What a verifier answered: Ok, or the error in words.
type Verdict = Result<(), String>;

/// One case, decoded.
struct Case {
    id: String,
    description: String,
    expected: Outcome,
    client: bool,
    crl_case: bool,
    /// Why the case cannot be expressed to our verifiers, if it cannot.
    skip: Option<String>,
    /// For SERVER cases: the name to verify for, or why there is none.
    name: Result<ServerName<'static>, String>,
    opts: Result<TrustOptions, String>,
    end_entity: Result<CertificateDer<'static>, String>,
    intermediates: Result<Vec<CertificateDer<'static>>, String>,
    now: UnixTime,
}

/// The first `label` block of `text`.
fn pem_der(text: &str, what: &str, label: &str) -> Result<Vec<u8>, String> {
    let items = ambos_pki::pem_items_in_place(text.as_bytes().to_vec(), label);
    let first = items.map_err(|e| format!("{what}: PEM does not parse: {e}"))?.into_iter().next();
    first.ok_or_else(|| format!("{what}: PEM does not parse: no {label}"))
}

fn pem_list(v: &Value, what: &str, label: &str) -> Result<Vec<Vec<u8>>, String> {
    v.as_array().into_iter().flatten().map(|p| pem_der(p.as_str().unwrap_or_default(), what, label)).collect()
}

fn str_list(v: &Value) -> Vec<&str> {
    v.as_array().into_iter().flatten().filter_map(Value::as_str).collect()
}

fn peer_name(v: &Value) -> Result<ServerName<'static>, String> {
    let kind = v["kind"].as_str().unwrap_or_default();
    let value = v["value"].as_str().unwrap_or_default();
    match kind {
        "DNS" => ServerName::try_from(value.to_string())
            .map_err(|e| format!("expected peer name '{value}' is not a name rustls can connect to: {e}")),
        "IP" => value
            .parse::<std::net::IpAddr>()
            .map(|ip| ServerName::IpAddress(ip.into()))
            .map_err(|e| format!("expected peer IP '{value}' does not parse: {e}")),
        other => Err(format!("peer names of kind {other} cannot be given to ServerVerifier")),
    }
}

fn parse_time(v: &Value) -> Result<UnixTime, String> {
    let Some(s) = v.as_str() else { return Ok(UnixTime::now()) };
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("validation_time '{s}': {e}"))?;
    let secs = u64::try_from(t.unix_timestamp()).map_err(|_| format!("validation_time '{s}' is before 1970"))?;
    Ok(UnixTime::since_unix_epoch(Duration::from_secs(secs)))
}

fn decode(tc: &Value) -> Result<Case, String> {
    let id = tc["id"].as_str().ok_or("a testcase without id")?.to_string();
    let description = tc["description"].as_str().unwrap_or_default().to_string();
    let expected = match tc["expected_result"].as_str() {
        Some("SUCCESS") => Outcome::Success,
        Some("FAILURE") => Outcome::Failure,
        other => return Err(format!("{id}: expected_result {other:?}")),
    };
    let client = match tc["validation_kind"].as_str() {
        Some("CLIENT") => true,
        Some("SERVER") => false,
        other => return Err(format!("{id}: validation_kind {other:?}")),
    };
    let features = str_list(&tc["features"]);
    let crl_case = features.contains(&"has-crl")
        || id.to_ascii_lowercase().contains("crl")
        || description.to_ascii_lowercase().contains("crl")
        || tc["crls"].as_array().is_some_and(|c| !c.is_empty());

    let mut skips = Vec::new();
    if !tc["max_chain_depth"].is_null() {
        skips.push(format!("max_chain_depth {} cannot be configured", tc["max_chain_depth"]));
    }
    let key_usage = str_list(&tc["key_usage"]);
    if !key_usage.is_empty() {
        skips.push(format!("a required key usage ({}) cannot be configured", key_usage.join(", ")));
    }
    let own_eku = if client { "clientAuth" } else { "serverAuth" };
    let eku = str_list(&tc["extended_key_usage"]);
    if eku.iter().any(|e| *e != own_eku) {
        skips.push(format!("extended key usage {} cannot be required (only {own_eku})", eku.join(", ")));
    }
    if !str_list(&tc["signature_algorithms"]).is_empty() {
        skips.push("a set of signature algorithms cannot be configured".into());
    }
    let names = tc["expected_peer_names"].as_array().cloned().unwrap_or_default();
    if !names.is_empty() {
        let kinds: Vec<&str> = names.iter().filter_map(|n| n["kind"].as_str()).collect();
        skips.push(if client {
            format!("ClientVerifier matches no peer name (expected_peer_names: {})", kinds.join(", "))
        } else {
            format!("expected_peer_names ({}) cannot be given to ServerVerifier", kinds.join(", "))
        });
    }
    let name = if client {
        Err("CLIENT case".to_string())
    } else if tc["expected_peer_name"].is_null() {
        skips.push("ServerVerifier needs a peer name and the case has none".into());
        Err("no expected peer name".to_string())
    } else {
        let n = peer_name(&tc["expected_peer_name"]);
        if let Err(why) = &n {
            if !["DNS", "IP"].contains(&tc["expected_peer_name"]["kind"].as_str().unwrap_or_default()) {
                skips.push(why.clone());
            }
        }
        n
    };

    let opts = (|| {
        let ca_certs = pem_list(&tc["trusted_certs"], "trusted certificate", "CERTIFICATE")?
            .into_iter()
            .map(CertificateDer::from)
            .collect();
        let crls: Vec<(String, CertificateRevocationListDer<'static>)> = pem_list(&tc["crls"], "CRL", "X509 CRL")?
            .into_iter()
            .enumerate()
            .map(|(i, d)| (format!("{id} crl #{i}"), CertificateRevocationListDer::from(d)))
            .collect();
        let revocation = (!crls.is_empty()).then(RevocationPolicy::default);
        Ok(TrustOptions { ca_certs, crls, revocation, eku_if_present: false })
    })();
    let end_entity = pem_der(tc["peer_certificate"].as_str().unwrap_or_default(), "peer certificate", "CERTIFICATE")
        .map(CertificateDer::from);
    let intermediates = pem_list(&tc["untrusted_intermediates"], "untrusted intermediate", "CERTIFICATE")
        .map(|v| v.into_iter().map(CertificateDer::from).collect());
    let now = parse_time(&tc["validation_time"])?;
    Ok(Case {
        id,
        description,
        expected,
        client,
        crl_case,
        skip: (!skips.is_empty()).then(|| skips.join("; ")),
        name,
        opts,
        end_entity,
        intermediates,
        now,
    })
}

/// Which production verifier a run uses.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    /// The case's own side: ClientVerifier for CLIENT, ServerVerifier for SERVER.
    Case,
    /// ClientVerifier whatever the case: the cache cross-check.
    ClientCache,
}

enum Verifier {
    Client(ClientVerifier),
    Server(ServerVerifier, ServerName<'static>),
    /// A SERVER case without a peer name (SKIPPED): what `Trust` says of
    /// the chain for any name, for the context only.
    AnyName(Arc<Trust>),
}

impl Verifier {
    fn build(case: &Case, side: Side) -> Result<Verifier, String> {
        let opts = case.opts.clone()?;
        let trust = Arc::new(Trust::new(opts).map_err(|e| format!("Trust::new refused the case's trust: {e}"))?);
        if case.client || side == Side::ClientCache {
            return Ok(Verifier::Client(ClientVerifier::new(trust, true)));
        }
        match &case.name {
            Ok(name) => Ok(Verifier::Server(ServerVerifier::new(trust), name.clone())),
            Err(_) => Ok(Verifier::AnyName(trust)),
        }
    }

    fn verify(&self, case: &Case) -> Verdict {
        let ee = case.end_entity.as_ref().map_err(Clone::clone)?;
        let intermediates = case.intermediates.as_ref().map_err(Clone::clone)?;
        let r = match self {
            Verifier::Client(v) => v.verify_client_cert(ee, intermediates, case.now).map(|_| ()),
            Verifier::Server(v, name) => v.verify_server_cert(ee, intermediates, name, &[], case.now).map(|_| ()),
            Verifier::AnyName(t) => {
                return t
                    .verify(ee, intermediates, case.now, ambos_tls::Peer::Server(None))
                    .map(|_| ())
                    .map_err(|f| short(&f))
            }
        };
        r.map_err(|e| short(&HandshakeFailure::from_rustls(&e)))
    }
}

/// A failure as its label, and its details when it has some.
fn short(f: &HandshakeFailure) -> String {
    use HandshakeFailure as F;
    match f {
        F::BadCertificate(d)
        | F::ChainSignature(d)
        | F::IncompleteChain(d)
        | F::CrlMissing(d)
        | F::CrlUnusable(d)
        | F::CrlStale(d)
        | F::Other(d) => format!("{}: {d}", f.label()),
        _ => f.label().to_string(),
    }
}

/// A fresh verdict, and the primed one (first and second call of one verifier).
struct Run {
    fresh: Verdict,
    primed_first: Verdict,
    primed: Verdict,
}

fn run(case: &Case, side: Side) -> Run {
    let fresh = Verifier::build(case, side).and_then(|v| v.verify(case));
    let (primed_first, primed) = match Verifier::build(case, side) {
        Ok(v) => {
            let first = v.verify(case);
            (first, v.verify(case))
        }
        Err(e) => (Err(e.clone()), Err(e)),
    };
    Run { fresh, primed_first, primed }
}

fn outcome(case: &Case, v: &Verdict) -> Outcome {
    if case.skip.is_some() {
        Outcome::Skipped
    } else if v.is_ok() {
        Outcome::Success
    } else {
        Outcome::Failure
    }
}

fn context(case: &Case, v: &Verdict) -> String {
    let verdict = match v {
        Ok(()) => "verifier accepted".to_string(),
        Err(e) => format!("verifier refused: {e}"),
    };
    match &case.skip {
        Some(why) => format!("{why} (the chain alone: {verdict})"),
        None => verdict,
    }
}

#[derive(Default)]
struct Tally {
    pass: usize,
    wrongly_accepted: Vec<usize>,
    wrongly_rejected: Vec<usize>,
    skipped: usize,
}

fn tally(cases: &[Case], outcomes: &[Outcome]) -> Tally {
    let mut t = Tally::default();
    for (i, (c, o)) in cases.iter().zip(outcomes).enumerate() {
        match (c.expected, o) {
            (_, Outcome::Skipped) => t.skipped += 1,
            (e, o) if e == *o => t.pass += 1,
            (Outcome::Failure, _) => t.wrongly_accepted.push(i),
            _ => t.wrongly_rejected.push(i),
        }
    }
    t
}

/// Why a case ends as it does, for the ones the report lists (id prefix, note).
const NOTES: &[(&str, &str)] = &[
    (
        "webpki::cn::",
        "CABF 7.1.4.3 (the CN must repeat a SAN) is not checked: ambos names certificates by CN independently of their SANs, and names are matched on SANs only",
    ),
    ("webpki::san::public-suffix-", "a wildcard on a public suffix: needs the Public Suffix List, which ambos does not carry"),
    (
        "webpki::eku::ee-without-eku",
        "servers are verified with EKU serverAuth required only if an EKU is present (verifier.rs passes no required EKU to strict for Peer::Server)",
    ),
    (
        "webpki::eku::root-has-eku",
        "CABF only: an anchor with an EKU is kept (EKU-constrained private CAs are common); webpki still requires the purpose in every EKU on the path",
    ),
    (
        "rfc5280::aki::cross-signed-root-missing-aki",
        "a trust anchor is taken as configured (RFC 5280 6.1): cve::cve-2024-0567, which must pass, also anchors on a cross-signed CA without AKI",
    ),
    ("pathlen::validation-ignores-pathlen-in-leaf", "webpki refuses a CA certificate as end entity (CaUsedAsEndEntity)"),
    ("rfc5280::ca-as-leaf", "webpki refuses a CA certificate as end entity (CaUsedAsEndEntity)"),
    (
        "pathlen::self-issued-certs-pathlen",
        "webpki counts a self-issued intermediate against pathLenConstraint and finds no path (our checks never run)",
    ),
    (
        "rfc5280::nc::permitted-self-issued",
        "webpki applies name constraints to a self-issued intermediate and finds no path (our checks never run)",
    ),
    (
        "rfc5280::unknown-critical-extension-unrelated-root",
        "Trust::new refuses the whole configuration when one CA certificate has an unknown critical extension, even one no path uses",
    ),
    (
        "webpki::nc::permitted-dns-match-noncritical",
        "conflicts with rfc5280::nc::permitted-dns-match-noncritical: ambos follows RFC 5280, nameConstraints MUST be critical",
    ),
    (
        "rfc5280::nc::permitted-dn-match",
        "webpki does not support directoryName name constraints and fails closed (NameConstraintViolation)",
    ),
    (
        "rfc5280::nc::nc-permits-email",
        "webpki refuses any rfc822Name SAN under an rfc822Name name constraint (NameConstraintViolation, fail closed)",
    ),
];

fn note(id: &str) -> Option<&'static str> {
    NOTES.iter().find(|(prefix, _)| id.starts_with(prefix)).map(|(_, n)| *n)
}

/// What a case's description says it tests, in one sentence on one line:
/// without code blocks and quotations, and past the "Produces a chain" preamble.
fn gist(description: &str) -> String {
    let mut text = String::new();
    let mut fenced = false;
    for line in description.lines() {
        let l = line.trim_start();
        if l.starts_with("```") {
            fenced = !fenced;
        } else if !fenced && !l.starts_with('>') {
            text.push_str(l);
            text.push(' ');
        }
    }
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut rest = flat.as_str();
    loop {
        let end = rest.find(". ").map(|i| i + 1).unwrap_or(rest.len());
        let (first, after) = (&rest[..end], rest[end..].trim_start());
        if first.starts_with("Produces") {
            if let Some(colon) = first.find(": ") {
                rest = &rest[colon + 2..];
                continue;
            }
            if !after.is_empty() {
                rest = after;
                continue;
            }
        }
        let mut s = first.to_string();
        if s.len() > 240 {
            let cut = (0..=237).rev().find(|i| s.is_char_boundary(*i)).unwrap_or(0);
            s.truncate(cut);
            s.push_str("...");
        }
        return s;
    }
}

fn main() {
    let a = args();
    let started = Instant::now();
    let mut gz = Vec::new();
    let read = std::fs::File::open(&a.json).and_then(|f| flate2::read::GzDecoder::new(f).read_to_end(&mut gz));
    if let Err(e) = read {
        eprintln!("limbo: cannot read {}: {e}", a.json.display());
        std::process::exit(2);
    }
    let suite: Value = serde_json::from_slice(&gz).unwrap_or_else(|e| {
        eprintln!("limbo: {} is not limbo JSON: {e}", a.json.display());
        std::process::exit(2)
    });
    drop(gz);
    let cases: Vec<Case> = suite["testcases"]
        .as_array()
        .unwrap_or_else(|| usage("no testcases in the file"))
        .iter()
        .map(decode)
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| {
            eprintln!("limbo: {e}");
            std::process::exit(2)
        });
    drop(suite);
    let loaded = started.elapsed();

    let runs: Vec<Run> = cases.iter().map(|c| run(c, Side::Case)).collect();
    let cache: Vec<Run> = cases.iter().map(|c| run(c, Side::ClientCache)).collect();
    let verified = started.elapsed() - loaded;

    let fresh: Vec<Outcome> = cases.iter().zip(&runs).map(|(c, r)| outcome(c, &r.fresh)).collect();
    let primed: Vec<Outcome> = cases.iter().zip(&runs).map(|(c, r)| outcome(c, &r.primed)).collect();
    let ft = tally(&cases, &fresh);
    let pt = tally(&cases, &primed);

    // A verdict that changes between a fresh verifier and a primed one, or
    // between the first and second call of one verifier.
    let mut disagreements = Vec::new();
    for (label, set) in [("case verifier", &runs), ("ClientVerifier cache cross-check", &cache)] {
        for (c, r) in cases.iter().zip(set.iter()) {
            if r.fresh.is_ok() != r.primed.is_ok() || r.primed_first.is_ok() != r.primed.is_ok() {
                disagreements.push(format!(
                    "{} ({label}): fresh {:?}, primed first {:?}, primed second {:?}",
                    c.id, r.fresh, r.primed_first, r.primed
                ));
            }
        }
    }

    let results: Vec<Value> = cases
        .iter()
        .zip(&runs)
        .zip(&fresh)
        .map(|((c, r), o)| json!({"id": c.id, "actual_result": o.as_str(), "context": context(c, &r.fresh)}))
        .collect();
    if let Some(out) = &a.out {
        let doc = json!({"version": 1, "harness": "ambos-tls", "results": results});
        let text = serde_json::to_string_pretty(&doc).expect("JSON");
        if let Err(e) = std::fs::write(out, text + "\n") {
            eprintln!("limbo: cannot write {}: {e}", out.display());
            std::process::exit(2);
        }
    }

    let crl_accepted: Vec<&str> = ft
        .wrongly_accepted
        .iter()
        .chain(&pt.wrongly_accepted)
        .filter(|i| cases[**i].crl_case)
        .map(|i| cases[*i].id.as_str())
        .collect();
    let client_cases = cases.iter().filter(|c| c.client).count();
    // Skipped cases the verifier refused although they should pass: worth a look.
    let skipped_refused: Vec<usize> = (0..cases.len())
        .filter(|i| cases[*i].skip.is_some() && cases[*i].expected == Outcome::Success && runs[*i].fresh.is_err())
        .collect();

    if let Some(md) = &a.markdown {
        let mut s = String::new();
        let line = |s: &mut String, i: usize, why: String| {
            s.push_str(&format!("- `{}` — {}\n", cases[i].id, why.replace('|', "\\|")));
        };
        s.push_str(&format!("### Wrongly accepted ({})\n\n", ft.wrongly_accepted.len()));
        if ft.wrongly_accepted.is_empty() {
            s.push_str("None.\n");
        }
        for &i in &ft.wrongly_accepted {
            let why = note(&cases[i].id).map(|n| format!(" Accepted: {n}.")).unwrap_or_default();
            line(&mut s, i, format!("should fail: {}{why}", gist(&cases[i].description)));
        }
        s.push_str(&format!("\n### Wrongly rejected ({})\n\n", ft.wrongly_rejected.len()));
        if ft.wrongly_rejected.is_empty() {
            s.push_str("None.\n");
        }
        for &i in &ft.wrongly_rejected {
            let why = note(&cases[i].id).map(|n| format!(" Why: {n}.")).unwrap_or_default();
            line(
                &mut s,
                i,
                format!("{} Ours: {}.{why}", gist(&cases[i].description), context(&cases[i], &runs[i].fresh)),
            );
        }
        s.push_str(&format!(
            "\n### Skipped although expected to pass, and refused by the verifier ({})\n\n",
            skipped_refused.len()
        ));
        if skipped_refused.is_empty() {
            s.push_str("None.\n");
        }
        for &i in &skipped_refused {
            let why = note(&cases[i].id).map(|n| format!(" Why: {n}.")).unwrap_or_default();
            line(&mut s, i, format!("{}.{why}", context(&cases[i], &runs[i].fresh)));
        }
        if let Err(e) = std::fs::write(md, s) {
            eprintln!("limbo: cannot write {}: {e}", md.display());
            std::process::exit(2);
        }
    }

    for &i in &ft.wrongly_accepted {
        println!("wrongly accepted: {} — {}", cases[i].id, gist(&cases[i].description));
    }
    for &i in &ft.wrongly_rejected {
        println!("wrongly rejected: {} — {}", cases[i].id, context(&cases[i], &runs[i].fresh));
    }
    for d in &disagreements {
        println!("fresh/primed disagreement: {d}");
    }
    println!(
        "cases: {} ({} CLIENT), loaded in {:.1} s, verified in {:.1} s",
        cases.len(),
        client_cases,
        loaded.as_secs_f64(),
        verified.as_secs_f64()
    );
    for (label, t) in [("fresh", &ft), ("primed", &pt)] {
        let crl = t.wrongly_accepted.iter().filter(|i| cases[**i].crl_case).count();
        println!(
            "{label}: {} pass, {} wrongly accepted ({} CRL), {} wrongly rejected, {} skipped",
            t.pass,
            t.wrongly_accepted.len(),
            crl,
            t.wrongly_rejected.len(),
            t.skipped
        );
    }
    println!("fresh/primed disagreements: {}", disagreements.len());

    let mut failed = Vec::new();
    if ft.wrongly_accepted.len().max(pt.wrongly_accepted.len()) > a.max_wrongly_accepted {
        failed.push(format!("more than {} cases wrongly accepted", a.max_wrongly_accepted));
    }
    if !crl_accepted.is_empty() {
        failed.push(format!("CRL cases wrongly accepted: {}", crl_accepted.join(", ")));
    }
    if !disagreements.is_empty() {
        failed.push(format!("{} fresh/primed disagreements", disagreements.len()));
    }
    if !failed.is_empty() {
        println!("limbo: FAILED: {}", failed.join("; "));
        std::process::exit(1);
    }
    println!("limbo: ok");
}
