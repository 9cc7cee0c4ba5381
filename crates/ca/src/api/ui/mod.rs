//! `/ui/`: the CA's web console for administrators. The browser signs in
//! with an admin client certificate, checked on every request (no session);
//! pages are rendered here (maud escapes every value) and work without
//! JavaScript; actions are POST forms behind a confirmation page, guarded
//! against cross-site forgery by [`csrf`].
use super::{blocking, ApiError, CaState, Peer, PeerCert};
use crate::{CaError, CertSelector};
use ambos_pki::{rfc3339_unix as rfc3339, RevocationReason, Serial};
use ambos_store::{Activity, AuditRecord, AuthorityRole, CertFilter, CertRecord};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use bytes::Bytes;
use maud::{html, Markup, DOCTYPE};
use serde::Deserialize;
use std::sync::Arc;

pub(super) mod csrf;

const FORGED: &str = "forged request refused";
const CSS: &str = include_str!("console.css");
const PAGE_SIZE: u32 = 50;
const DAY: i64 = 86_400;
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

pub(super) fn routes() -> Router<Arc<CaState>> {
    Router::new()
        .route("/ui", get(overview))
        .route("/ui/", get(overview))
        .route("/ui/static/console.css", get(css))
        .route("/ui/certs", get(cert_list))
        .route("/ui/certs/{serial}", get(cert_page))
        .route("/ui/certs/{serial}/revoke", get(revoke_confirm).post(revoke))
        .route("/ui/crl/publish", get(publish_confirm).post(publish))
        .route("/ui/tokens", get(tokens))
        .route("/ui/tokens/new", get(token_confirm).post(token_create))
        .route("/ui/audit", get(audit))
        .layer(axum::middleware::map_response(security_headers))
}

/// Every console answer: no framing, no sniffing, no referrer, a strict CSP
/// (no inline script or style), and pages never cached.
async fn security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    r
}

async fn css() -> Response {
    // Immutable for a build: the binary embeds it.
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        CSS,
    )
        .into_response()
}

/// A console error: an HTML page with the status; refusals say which
/// certificate the console needs.
struct UiError(ApiError);

impl From<ApiError> for UiError {
    fn from(e: ApiError) -> UiError {
        UiError(e)
    }
}

impl From<CaError> for UiError {
    fn from(e: CaError) -> UiError {
        UiError(e.into())
    }
}

impl UiError {
    fn new(status: StatusCode, error: &'static str, detail: impl Into<String>) -> UiError {
        UiError(ApiError::new(status, error, detail))
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let ApiError { status, error, detail } = self.0;
        let refused = matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN);
        let about_certificate = refused && error != FORGED;
        let body = page(
            error,
            html! {
                div.refused {
                    h1 { (error) }
                    @if !detail.is_empty() { p { (detail) } }
                    @if about_certificate {
                        p { "The console needs an administrator's client certificate of this CA, not revoked. Make one with" }
                        pre { code { "ambos issue client NAME --admin --p12" } }
                        p { "and import the .p12 file into your browser, then reload this page." }
                    }
                }
            },
        );
        // A refusal is always 403 here (401 would ask the browser for a password).
        let status = if refused { StatusCode::FORBIDDEN } else { status };
        (status, body).into_response()
    }
}

type UiResult = Result<Response, UiError>;

fn page(title: &str, body: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · ambos CA" }
                link rel="stylesheet" href="/ui/static/console.css";
            }
            body {
                header {
                    strong { "ambos CA" }
                    nav {
                        a href="/ui/" { "Overview" } " " a href="/ui/certs" { "Certificates" } " "
                        a href="/ui/tokens" { "Tokens" } " " a href="/ui/audit" { "Audit" }
                    }
                }
                main { (body) }
            }
        }
    };
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], markup.into_string()).into_response()
}

/// The admin behind this request, checked against the store now.
fn admin(st: &CaState, peer: &Peer) -> Result<Arc<PeerCert>, UiError> {
    let peer = peer.0.clone().ok_or_else(|| {
        UiError::new(StatusCode::FORBIDDEN, "client certificate required", "your browser sent no client certificate")
    })?;
    st.ca.lock().expect("ca lock").admin(&peer.serial)?;
    Ok(peer)
}

fn now() -> i64 {
    crate::OffsetDateTime::now_utc().unix_timestamp()
}

fn state_of(c: &CertRecord, now: i64) -> &'static str {
    if c.revocation.is_some() {
        "revoked"
    } else if c.not_after <= now {
        "expired"
    } else {
        "valid"
    }
}

fn reason_text(code: u8) -> &'static str {
    RevocationReason::from_code(code).map_or("unspecified", |r| r.as_str())
}

/// `GET /ui/`: counts by state, the CRL, the issuing CA, the expiry timeline
/// and the last 30 days' activity.
async fn overview(State(st): State<Arc<CaState>>, Extension(peer): Extension<Peer>) -> UiResult {
    let now = now();
    let leaves = CertFilter { issuer: Some(AuthorityRole::Intermediate), ..CertFilter::default() };
    let filters = [
        ("Valid", CertFilter { valid_at: Some(now), ..leaves.clone() }, "/ui/certs?state=valid"),
        (
            "Expiring within 7 days",
            CertFilter { expiring_before: Some((now, now + 7 * DAY)), ..leaves.clone() },
            "/ui/certs?state=valid",
        ),
        (
            "Expiring within 30 days",
            CertFilter { expiring_before: Some((now, now + 30 * DAY)), ..leaves.clone() },
            "/ui/certs?state=valid",
        ),
        ("Expired", CertFilter { expired_at: Some(now), ..leaves.clone() }, "/ui/certs?state=expired"),
        ("Revoked", CertFilter { revoked_only: true, ..leaves.clone() }, "/ui/certs?state=revoked"),
    ];
    // Counted in the store, the timeline too: no certificate is read.
    let horizon = CertFilter { expiring_before: Some((now, now + 90 * DAY)), ..leaves };
    let st2 = st.clone();
    // Day 29 is the last 24 hours, this second included.
    let since = now + 1 - 30 * DAY;
    let (cards, soon, done) = blocking(move || {
        admin(&st2, &peer).map_err(|e| e.0)?;
        let ca = st2.ca.lock().expect("ca lock");
        let mut cards = Vec::with_capacity(filters.len());
        for (label, filter, href) in filters {
            cards.push((label, ca.count(&filter)?, href));
        }
        Ok((cards, ca.expiries_per_day(&horizon, now)?, ca.activity_per_day(since)?))
    })
    .await?;
    let crl = st.crl.load_full();
    let crl_info = x509_parser::parse_x509_crl(crl.der()).ok().map(|(_, c)| {
        let number = c.crl_number().map(|n| n.to_string()).unwrap_or_else(|| "none".into());
        let this = c.last_update().timestamp();
        (number, this, c.next_update().map(|t| t.timestamp()))
    });
    let ca_expiry =
        x509_parser::parse_x509_certificate(st.signer.cert_der()).ok().map(|(_, c)| c.validity().not_after.timestamp());
    let mut per_day = [0usize; 90];
    for (day, count) in soon {
        if let Some(n) = usize::try_from(day).ok().and_then(|d| per_day.get_mut(d)) {
            *n = count as usize;
        }
    }
    let mut activity = [[0usize; 3]; 30];
    for (day, class, count) in done {
        if let Some(d) = usize::try_from(day).ok().and_then(|d| activity.get_mut(d)) {
            d[class as usize] = count as usize;
        }
    }
    Ok(page(
        "Overview",
        html! {
            h1 { "Overview" }
            div.cards {
                @for (label, n, href) in cards {
                    a.card href=(href) { b { (n) } (label) }
                }
            }
            h2 { "Certificate revocation list" }
            @match crl_info {
                Some((number, this, next)) => {
                    p { "CRL number " b.crl-number { (number) } ", signed " (rfc3339(this)) " (" (age(now - this)) " ago), next update "
                        (next.map(rfc3339).unwrap_or_else(|| "none".into())) "." }
                }
                None => p { "The published CRL could not be read." }
            }
            form method="get" action="/ui/crl/publish" { button type="submit" { "Publish a new CRL now…" } }
            h2 { "Issuing CA" }
            p { "The intermediate CA expires " (ca_expiry.map(rfc3339).unwrap_or_else(|| "(unreadable)".into())) "." }
            h2 { "Expiring in the next 90 days" }
            (timeline(&per_day))
            h2 { "Activity in the last 30 days" }
            (activity_chart(&activity))
        },
    ))
}

fn age(secs: i64) -> String {
    match secs.max(0) {
        s if s < 120 => format!("{s} s"),
        s if s < 2 * 3600 => format!("{} min", s / 60),
        s if s < 2 * DAY => format!("{} h", s / 3600),
        s => format!("{} days", s / DAY),
    }
}

/// Certificates expiring per day as bars, in SVG (no script, no inline style).
fn timeline(per_day: &[usize; 90]) -> Markup {
    let max = per_day.iter().copied().max().unwrap_or(0).max(1);
    let total: usize = per_day.iter().sum();
    html! {
        svg.timeline xmlns="http://www.w3.org/2000/svg" viewBox="0 0 900 130" width="900" height="130" role="img"
            aria-label=(format!("{total} certificates expire in the next 90 days")) {
            title { (total) " certificates expire in the next 90 days" }
            line x1="0" y1="110" x2="900" y2="110" stroke="#888" {}
            @for (day, n) in per_day.iter().enumerate() {
                @if *n > 0 {
                    @let h = (*n * 100).div_ceil(max);
                    rect.day x=(day * 10 + 1) y=(110 - h) width="8" height=(h) fill="#1d3557" {
                        title { "in " (day) " days: " (n) }
                    }
                }
            }
            @for week in (0..=12) {
                text x=(week * 70) y="126" font-size="10" fill="#555" { (week * 7) "d" }
            }
        }
    }
}

/// Issuances, renewals and revocations per day (the oldest day first, the
/// last 24 hours last) as grouped bars, in SVG like [`timeline`].
fn activity_chart(per_day: &[[usize; 3]; 30]) -> Markup {
    const CLASSES: [(Activity, &str, &str); 3] = [
        (Activity::Issuance, "issued", "#1d3557"),
        (Activity::Renewal, "renewed", "#2a9d8f"),
        (Activity::Revocation, "revoked", "#c1121f"),
    ];
    let max = per_day.iter().flatten().copied().max().unwrap_or(0).max(1);
    let totals = CLASSES.map(|(class, ..)| per_day.iter().map(|d| d[class as usize]).sum::<usize>());
    let summary = format!("In the last 30 days: {} issued, {} renewed, {} revoked", totals[0], totals[1], totals[2]);
    html! {
        svg.activity xmlns="http://www.w3.org/2000/svg" viewBox="0 0 900 150" width="900" height="150" role="img"
            aria-label=(summary) {
            title { (summary) }
            @for (i, (_, label, colour)) in CLASSES.iter().enumerate() {
                rect x=(i * 110) y="2" width="10" height="10" fill=(colour) {}
                text x=(i * 110 + 14) y="11" font-size="11" fill="#333" { (label) " (" (totals[i]) ")" }
            }
            line x1="0" y1="130" x2="900" y2="130" stroke="#888" {}
            @for (day, counts) in per_day.iter().enumerate() {
                @for (i, (_, label, colour)) in CLASSES.iter().enumerate() {
                    @let n = counts[i];
                    @if n > 0 {
                        @let h = (n * 100).div_ceil(max);
                        rect.day x=(day * 30 + 2 + i * 9) y=(130 - h) width="8" height=(h) fill=(colour) {
                            title { (29 - day) " days ago: " (n) " " (label) }
                        }
                    }
                }
            }
            @for d in (0..30).step_by(5) {
                text x=(d * 30) y="146" font-size="10" fill="#555" { (30 - d) "d ago" }
            }
            text x="900" y="146" font-size="10" fill="#555" text-anchor="end" { "today" }
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ListParams {
    name: String,
    profile: String,
    state: String,
    serial: String,
    san: String,
    issuer: String,
    page: String,
}

/// `GET /ui/certs`: 50 a page, soonest expiry first, filtered in the store.
async fn cert_list(
    State(st): State<Arc<CaState>>,
    Extension(peer): Extension<Peer>,
    q: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> UiResult {
    let Query(q) = q.map_err(|e| UiError::new(StatusCode::BAD_REQUEST, "bad request", e.body_text()))?;
    let page_no: u64 =
        match q.page.trim() {
            "" => 1,
            p => p.parse().ok().filter(|n| (1..=10_000_000).contains(n)).ok_or_else(|| {
                UiError::new(StatusCode::BAD_REQUEST, "bad page number", "page= takes a number from 1")
            })?,
        };
    let now = now();
    let some = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
    let mut filter = CertFilter {
        name: some(&q.name),
        profile: some(&q.profile),
        serial_prefix: some(&q.serial),
        san: some(&q.san),
        by_expiry: true,
        // One more than a page: whether there is a next one.
        limit: Some(PAGE_SIZE + 1),
        offset: (page_no - 1) * u64::from(PAGE_SIZE),
        ..CertFilter::default()
    };
    match q.state.as_str() {
        "" | "all" => {}
        "valid" => filter.valid_at = Some(now),
        "expired" => filter.expired_at = Some(now),
        "revoked" => filter.revoked_only = true,
        _ => return Err(UiError::new(StatusCode::BAD_REQUEST, "bad state", "state= is valid, expired or revoked")),
    }
    filter.issuer = match q.issuer.as_str() {
        "" | "any" => None,
        "intermediate" => Some(AuthorityRole::Intermediate),
        "root" => Some(AuthorityRole::Root),
        _ => return Err(UiError::new(StatusCode::BAD_REQUEST, "bad issuer", "issuer= is intermediate or root")),
    };
    let mut certs = blocking(move || {
        admin(&st, &peer).map_err(|e| e.0)?;
        Ok(st.ca.lock().expect("ca lock").list(&filter)?)
    })
    .await?;
    let more = certs.len() > PAGE_SIZE as usize;
    certs.truncate(PAGE_SIZE as usize);
    let link = |p: u64| {
        let query = [
            ("name", &q.name),
            ("profile", &q.profile),
            ("state", &q.state),
            ("serial", &q.serial),
            ("san", &q.san),
            ("issuer", &q.issuer),
        ];
        let mut pairs: Vec<(&str, String)> =
            query.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| (*k, v.to_string())).collect();
        pairs.push(("page", p.to_string()));
        format!("/ui/certs?{}", serde_urlencoded::to_string(pairs).unwrap_or_default())
    };
    Ok(page(
        "Certificates",
        html! {
            h1 { "Certificates" }
            form.filters method="get" action="/ui/certs" {
                label { "Name" input name="name" value=(q.name); }
                label { "Profile" input name="profile" value=(q.profile); }
                label { "Serial starts with" input name="serial" value=(q.serial); }
                label { "SAN contains" input name="san" value=(q.san); }
                label { "Issuer" select name="issuer" {
                    @for s in ["any", "intermediate", "root"] {
                        option value=(s) selected[q.issuer == s] { (s) }
                    }
                } }
                label { "State" select name="state" {
                    @for s in ["all", "valid", "expired", "revoked"] {
                        option value=(s) selected[q.state == s] { (s) }
                    }
                } }
                button type="submit" { "Filter" }
            }
            table.certs {
                thead { tr { th { "Serial" } th { "Name" } th { "Subject" } th { "Profile" } th { "Not after" } th { "State" } } }
                tbody {
                    @for c in &certs {
                        @let state = state_of(c, now);
                        tr {
                            td.mono { a href=(format!("/ui/certs/{}", c.serial)) { (c.serial) } }
                            td { (c.name) }
                            td { (c.subject) }
                            td { (c.profile) }
                            td { (rfc3339(c.not_after)) }
                            td class=(state) { (state) }
                        }
                    }
                }
            }
            @if certs.is_empty() { p { "No certificates match." } }
            div.pager {
                @if page_no > 1 { a rel="prev" href=(link(page_no - 1)) { "← Previous" } }
                span { "Page " (page_no) }
                @if more { a rel="next" href=(link(page_no + 1)) { "Next →" } }
            }
        },
    ))
}

/// A serial from the path: canonical hex, or 400.
fn serial_of(s: &str) -> Result<String, UiError> {
    let serial: Serial =
        s.parse().map_err(|_| UiError::new(StatusCode::BAD_REQUEST, "bad serial", "a serial is hex"))?;
    Ok(serial.to_hex())
}

/// The certificate and its renewals (every certificate of its name), or 404.
fn find(st: &CaState, serial: &str) -> Result<(CertRecord, Vec<CertRecord>), ApiError> {
    let ca = st.ca.lock().expect("ca lock");
    let rec = ca.resolve(&CertSelector::Serial(serial.parse().map_err(CaError::from)?))?;
    let history = ca.list(&CertFilter { name: Some(rec.name.clone()), ..CertFilter::default() })?;
    Ok((rec, history))
}

/// `GET /ui/certs/{serial}` and `/ui/certs/{serial}.pem`.
async fn cert_page(
    State(st): State<Arc<CaState>>,
    Extension(peer): Extension<Peer>,
    Path(arg): Path<String>,
) -> UiResult {
    let (arg, pem) = match arg.strip_suffix(".pem") {
        Some(s) => (s.to_string(), true),
        None => (arg, false),
    };
    let serial = serial_of(&arg)?;
    let st2 = st.clone();
    let (rec, history, root) = blocking(move || {
        admin(&st2, &peer).map_err(|e| e.0)?;
        let (rec, history) = find(&st2, &serial)?;
        let root = st2.ca.lock().expect("ca lock").root_der().to_vec();
        Ok((rec, history, root))
    })
    .await?;
    if pem {
        let disposition = format!("attachment; filename=\"{}.pem\"", rec.serial);
        let body = ambos_pki::pem_encode("CERTIFICATE", &rec.cert_der);
        return Ok((
            [(header::CONTENT_TYPE, "application/x-pem-file".to_string()), (header::CONTENT_DISPOSITION, disposition)],
            body,
        )
            .into_response());
    }
    let now = now();
    // Who signed it, up to the root: this CA has one intermediate.
    let mut issuers = vec![("root", root.as_slice())];
    if rec.issuer == AuthorityRole::Intermediate {
        issuers.insert(0, ("intermediate", st.signer.cert_der()));
    }
    let chain: Vec<_> = issuers.into_iter().filter_map(|(role, der)| chain_link(role, der)).collect();
    let (eku, key) = details(&rec.cert_der);
    let state = state_of(&rec, now);
    Ok(page(
        &rec.name,
        html! {
            h1 { "Certificate " (rec.name) }
            table.detail {
                tr { th { "Subject" } td.subject { (rec.subject) } }
                tr { th { "Serial" } td.mono { (rec.serial) } }
                tr { th { "Profile" } td { (rec.profile) } }
                tr { th { "Subject alternative names" } td { @for s in &rec.sans { code { (s) } " " } } }
                tr { th { "Extended key usage" } td { (eku) } }
                tr { th { "Key" } td { (key) } }
                tr { th { "Valid" } td { (rfc3339(rec.not_before)) " to " (rfc3339(rec.not_after)) } }
                tr { th { "SHA-256 fingerprint" } td.mono { (rec.sha256) } }
                tr { th { "State" } td class=(state) {
                    (state)
                    @if let Some(r) = rec.revocation { " on " (rfc3339(r.revoked_at)) ", reason " (reason_text(r.reason)) }
                } }
                tr { th { "Administrator" } td { @if rec.admin { "yes" } @else { "no" } } }
            }
            p { a href=(format!("/ui/certs/{}.pem", rec.serial)) download { "Download PEM" } }
            @if rec.revocation.is_none() {
                form method="get" action=(format!("/ui/certs/{}/revoke", rec.serial)) {
                    button.danger type="submit" { "Revoke…" }
                }
            }
            h2 { "Chain" }
            table.chain {
                thead { tr { th { "Issuer" } th { "Subject" } th { "Serial" } th { "Not after" } } }
                tbody {
                    @for (role, subject, serial, not_after) in &chain {
                        tr {
                            td { (role) }
                            td.subject { (subject) }
                            td.mono {
                                // The root is not in the certificate store; the intermediate is.
                                @if *role == "root" { (serial) } @else { a href=(format!("/ui/certs/{serial}")) { (serial) } }
                            }
                            td { (rfc3339(*not_after)) }
                        }
                    }
                }
            }
            h2 { "Every certificate named " (rec.name) }
            table {
                thead { tr { th { "Serial" } th { "Issued" } th { "Not after" } th { "State" } } }
                tbody {
                    @for c in &history {
                        tr {
                            td.mono { a href=(format!("/ui/certs/{}", c.serial)) { (c.serial) } }
                            td { (rfc3339(c.issued_at)) }
                            td { (rfc3339(c.not_after)) }
                            td { (state_of(c, now)) }
                        }
                    }
                }
            }
        },
    ))
}

/// An issuer's row in the chain: role, subject, serial (hex) and expiry.
fn chain_link(role: &'static str, der: &[u8]) -> Option<(&'static str, String, String, i64)> {
    let (_, c) = x509_parser::parse_x509_certificate(der).ok()?;
    Some((role, c.subject().to_string(), format!("{:x}", c.serial), c.validity().not_after.timestamp()))
}

/// The extended key usages and the key type, read from the certificate.
fn details(der: &[u8]) -> (String, String) {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return ("(unreadable)".into(), "(unreadable)".into());
    };
    let eku = match cert.extended_key_usage() {
        Ok(Some(e)) => {
            let e = e.value;
            let mut names = Vec::new();
            if e.server_auth {
                names.push("serverAuth".to_string());
            }
            if e.client_auth {
                names.push("clientAuth".to_string());
            }
            names.extend(e.other.iter().map(|o| o.to_id_string()));
            names.join(", ")
        }
        _ => "none".into(),
    };
    let spki = cert.public_key();
    let key = match spki.parsed() {
        Ok(x509_parser::public_key::PublicKey::RSA(k)) => format!("RSA {} bits", k.key_size()),
        Ok(x509_parser::public_key::PublicKey::EC(k)) => format!("ECDSA P-{}", k.key_size()),
        _ if spki.algorithm.algorithm.to_id_string() == "1.3.101.112" => "Ed25519".into(),
        _ => spki.algorithm.algorithm.to_id_string(),
    };
    (eku, key)
}

/// `GET /ui/certs/{serial}/revoke`: the confirmation, with the form's token.
async fn revoke_confirm(
    State(st): State<Arc<CaState>>,
    Extension(peer): Extension<Peer>,
    Path(arg): Path<String>,
) -> UiResult {
    let serial = serial_of(&arg)?;
    let st2 = st.clone();
    let (admin, (rec, _)) = blocking(move || {
        let admin = admin(&st2, &peer).map_err(|e| e.0)?;
        Ok((admin, find(&st2, &serial)?))
    })
    .await?;
    let token = st.form_key.token("revoke", &rec.serial, &admin.sha256);
    Ok(page(
        "Revoke",
        html! {
            h1 { "Revoke " (rec.name) "?" }
            p { "Serial " code { (rec.serial) } ", subject " span.subject { (rec.subject) } ". Revocation cannot be undone; the CRL is published at once." }
            form method="post" action=(format!("/ui/certs/{}/revoke", rec.serial)) {
                input type="hidden" name="token" value=(token);
                label { "Reason" select name="reason" {
                    @for r in RevocationReason::ALL { option value=(r.as_str()) { (r.as_str()) } }
                } }
                p { button.danger type="submit" { "Revoke" } " " a href=(format!("/ui/certs/{}", rec.serial)) { "Cancel" } }
            }
        },
    ))
}

#[derive(Deserialize)]
struct RevokeForm {
    token: String,
    reason: Option<String>,
}

/// A posted form's fields; a body that is not one is a 400 page.
fn parse_form<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, UiError> {
    serde_urlencoded::from_bytes(body).map_err(|e| UiError::new(StatusCode::BAD_REQUEST, "bad form", e.to_string()))
}

/// Refuses a POST that is not from our own page with a valid token.
fn check_form(
    st: &CaState,
    headers: &HeaderMap,
    admin: &PeerCert,
    token: &str,
    action: &str,
    target: &str,
) -> Result<(), UiError> {
    if !csrf::same_origin(headers) {
        return Err(UiError::new(StatusCode::FORBIDDEN, FORGED, "the form was not sent from this console"));
    }
    if !st.form_key.verify(token, action, target, &admin.sha256) {
        return Err(UiError::new(
            StatusCode::FORBIDDEN,
            FORGED,
            "the form's token is missing or wrong; open the page again",
        ));
    }
    Ok(())
}

/// `POST /ui/certs/{serial}/revoke`
async fn revoke(
    State(st): State<Arc<CaState>>,
    Extension(peer): Extension<Peer>,
    Path(arg): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> UiResult {
    let serial = serial_of(&arg)?;
    let form: RevokeForm = parse_form(&body)?;
    let reason: RevocationReason = match form.reason.as_deref() {
        None | Some("") => RevocationReason::Unspecified,
        Some(r) => r.parse().map_err(|e: String| UiError::new(StatusCode::BAD_REQUEST, "bad reason", e))?,
    };
    let st2 = st.clone();
    let rec = blocking(move || {
        let admin = admin(&st2, &peer).map_err(|e| e.0)?;
        check_form(&st2, &headers, &admin, &form.token, "revoke", &serial).map_err(|e| e.0)?;
        let rec = {
            let mut ca = st2.ca.lock().expect("ca lock");
            ca.acting_as(format!("admin:{}", admin.serial));
            ca.revoke(&CertSelector::Serial(serial.parse().map_err(CaError::from)?), reason)?
        };
        st2.refresh_crl()?;
        Ok(rec)
    })
    .await?;
    metrics::counter!("ambos_ca_revocations_total").increment(1);
    Ok(page(
        "Revoked",
        html! {
            h1 { "Revoked " (rec.name) }
            p { "Serial " code { (rec.serial) } " is revoked (" (reason.as_str()) ") and the new CRL is published." }
            p { a href=(format!("/ui/certs/{}", rec.serial)) { "Back to the certificate" } }
        },
    ))
}

/// `GET /ui/crl/publish`: the confirmation.
async fn publish_confirm(State(st): State<Arc<CaState>>, Extension(peer): Extension<Peer>) -> UiResult {
    let st2 = st.clone();
    let admin = blocking(move || admin(&st2, &peer).map_err(|e| e.0)).await?;
    let token = st.form_key.token("publish-crl", "", &admin.sha256);
    Ok(page(
        "Publish CRL",
        html! {
            h1 { "Publish a new CRL now?" }
            p { "The CRLs are re-signed with the next number; proxies get them on their next pull." }
            form method="post" action="/ui/crl/publish" {
                input type="hidden" name="token" value=(token);
                button type="submit" { "Publish" } " " a href="/ui/" { "Cancel" }
            }
        },
    ))
}

#[derive(Deserialize)]
struct TokenForm {
    token: String,
}

/// `POST /ui/crl/publish`
async fn publish(
    State(st): State<Arc<CaState>>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    body: Bytes,
) -> UiResult {
    let form: TokenForm = parse_form(&body)?;
    let st2 = st.clone();
    blocking(move || {
        let admin = admin(&st2, &peer).map_err(|e| e.0)?;
        check_form(&st2, &headers, &admin, &form.token, "publish-crl", "").map_err(|e| e.0)?;
        Ok(st2.refresh_crl()?)
    })
    .await?;
    Ok(page("CRL published", html! { h1 { "CRL published" } p { a href="/ui/" { "Back to the overview" } } }))
}

/// `GET /ui/tokens`: the newest 200 enrollment tokens (never their secrets).
async fn tokens(State(st): State<Arc<CaState>>, Extension(peer): Extension<Peer>) -> UiResult {
    let list = blocking(move || {
        admin(&st, &peer).map_err(|e| e.0)?;
        Ok(st.ca.lock().expect("ca lock").recent_tokens(200)?)
    })
    .await?;
    let now = now();
    Ok(page(
        "Tokens",
        html! {
            h1 { "Enrollment tokens" }
            form method="get" action="/ui/tokens/new" { button type="submit" { "Create a token…" } }
            table.tokens {
                thead { tr { th { "Token" } th { "Name" } th { "Profile" } th { "Created" } th { "Expires" } th { "State" } } }
                tbody {
                    @for t in &list {
                        tr {
                            td.mono { (ambos_store::token_actor(&t.hash)) }
                            td { (t.name) } td { (t.profile) }
                            td { (rfc3339(t.created_at)) } td { (rfc3339(t.expires_at)) }
                            td {
                                @if let Some(serial) = &t.spent_serial {
                                    "spent: " a href=(format!("/ui/certs/{serial}")) { (serial) }
                                } @else if t.expires_at <= now { "expired" } @else { "outstanding" }
                            }
                        }
                    }
                }
            }
            @if list.is_empty() { p { "No tokens yet." } }
        },
    ))
}

/// `GET /ui/tokens/new`: what the token will buy, to confirm.
async fn token_confirm(State(st): State<Arc<CaState>>, Extension(peer): Extension<Peer>) -> UiResult {
    let st2 = st.clone();
    let admin = blocking(move || admin(&st2, &peer).map_err(|e| e.0)).await?;
    let token = st.form_key.token("token-create", "", &admin.sha256);
    Ok(page(
        "New token",
        html! {
            h1 { "Create an enrollment token" }
            p { "The token buys one certificate with these terms; its secret is shown once." }
            form method="post" action="/ui/tokens/new" {
                input type="hidden" name="token" value=(token);
                label { "Name (CN)" input name="name" required; }
                label { "Profile" select name="profile" {
                    @for p in ["client", "server", "server,client"] { option value=(p) { (p) } }
                } }
                label { "SANs (space-separated, e.g. dns:web.internal)" input name="sans"; }
                label { "Token valid for" input name="ttl" value="10m"; }
                p { button type="submit" { "Create" } " " a href="/ui/tokens" { "Cancel" } }
            }
        },
    ))
}

#[derive(Deserialize)]
struct NewTokenForm {
    token: String,
    name: String,
    profile: String,
    #[serde(default)]
    sans: String,
    #[serde(default)]
    ttl: String,
}

/// `POST /ui/tokens/new`: the secret, once, with the command to spend it.
async fn token_create(
    State(st): State<Arc<CaState>>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    body: Bytes,
) -> UiResult {
    let form: NewTokenForm = parse_form(&body)?;
    let bad = |e: String| UiError::new(StatusCode::BAD_REQUEST, "bad token terms", e);
    let profile: ambos_pki::Profile = form.profile.parse().map_err(|e: ambos_pki::PkiError| bad(e.to_string()))?;
    let sans = form.sans.split_whitespace().map(str::parse).collect::<Result<Vec<ambos_pki::San>, _>>();
    let sans = sans.map_err(|e| bad(e.to_string()))?;
    let ttl = match form.ttl.trim() {
        "" => std::time::Duration::from_secs(600),
        t => ambos_pki::parse_duration(t).map_err(|e| bad(e.to_string()))?,
    };
    let opts = crate::TokenOptions {
        name: form.name.trim().to_string(),
        profile,
        sans,
        ous: vec![],
        cert_ttl: profile.default_ttl(),
        ttl,
    };
    let st2 = st.clone();
    let secret = blocking(move || {
        let admin = admin(&st2, &peer).map_err(|e| e.0)?;
        check_form(&st2, &headers, &admin, &form.token, "token-create", "").map_err(|e| e.0)?;
        let mut ca = st2.ca.lock().expect("ca lock");
        ca.acting_as(format!("admin:{}", admin.serial));
        Ok(ca.create_tokens(&opts, 1)?.remove(0))
    })
    .await?;
    let command = format!("ambos enroll --ca-url {} --root ca.crt --token {secret}", st.issuer);
    Ok(page(
        "Token created",
        html! {
            h1 { "Token created" }
            p { "Copy it now: it is not shown again (the CA keeps only its hash)." }
            pre { code.secret { (secret) } }
            p { "On the machine that needs the certificate, with the CA's root as ca.crt:" }
            pre { code.command { (command) } }
            p { a href="/ui/tokens" { "Back to the tokens" } }
        },
    ))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct AuditParams {
    action: String,
    actor: String,
}

/// `GET /ui/audit?action=&actor=`: the newest 500 matching entries.
async fn audit(
    State(st): State<Arc<CaState>>,
    Extension(peer): Extension<Peer>,
    q: Result<Query<AuditParams>, axum::extract::rejection::QueryRejection>,
) -> UiResult {
    let Query(q) = q.map_err(|e| UiError::new(StatusCode::BAD_REQUEST, "bad request", e.body_text()))?;
    let (action, actor) = (q.action.trim().to_string(), q.actor.trim().to_string());
    let (a2, b2) = (action.clone(), actor.clone());
    let entries: Vec<AuditRecord> = blocking(move || {
        admin(&st, &peer).map_err(|e| e.0)?;
        let some = |s: &str| Some(s.to_string()).filter(|s| !s.is_empty());
        let (action, actor) = (some(&a2), some(&b2));
        Ok(st.ca.lock().expect("ca lock").audit_recent(action.as_deref(), actor.as_deref(), 500)?)
    })
    .await?;
    Ok(page(
        "Audit",
        html! {
            h1 { "Audit trail" }
            form.filters method="get" action="/ui/audit" {
                label { "Action" input name="action" value=(action); }
                label { "Actor contains" input name="actor" value=(actor); }
                button type="submit" { "Filter" }
            }
            table.audit {
                thead { tr { th { "At" } th { "Actor" } th { "Action" } th { "Outcome" } th { "Subject" } th { "Serial" } th { "Detail" } } }
                tbody {
                    @for e in &entries {
                        tr {
                            td { (rfc3339(e.at)) } td.mono { (e.actor) } td { (e.action) } td { (e.outcome) }
                            td { (e.subject) } td.mono { (e.serial.as_deref().unwrap_or("")) } td { (e.detail) }
                        }
                    }
                }
            }
        },
    ))
}
