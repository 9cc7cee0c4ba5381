//! `GET /v1/crl`, `/v1/crl/root` and `/v1/roots`: the published CRLs (re-signed
//! at half their validity and at once after a revocation) and the root.
use super::CaState;
use crate::{CaError, CertificateAuthority};
use ambos_pki::{pem_encode, Authority};
use ambos_store::AuthorityRole;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;

pub(super) struct CrlDoc {
    der: Bytes,
    pem: Bytes,
    /// The root's CRL (covering the intermediate), DER and PEM.
    root_der: Bytes,
    root_pem: Bytes,
    etag: String,
}

/// Builds the CRL document: DER of the intermediate's CRL, PEM of both;
/// the root's alone for `/v1/crl/root` (the intermediate's distribution point).
pub(super) fn build_crl(
    ca: &mut CertificateAuthority,
    signer: &Authority,
    root: &Authority,
    validity: Duration,
) -> Result<CrlDoc, CaError> {
    let der = ca.crl(AuthorityRole::Intermediate, signer, validity)?;
    let root_der = ca.crl(AuthorityRole::Root, root, validity)?;
    let mut pem = pem_encode("X509 CRL", &der);
    let root_pem = pem_encode("X509 CRL", &root_der);
    pem.push_str(&root_pem);
    let etag = format!("\"{}\"", &ambos_pki::sha256_hex(pem.as_bytes())[..32]);
    Ok(CrlDoc {
        der: der.into(),
        pem: pem.into_bytes().into(),
        root_der: root_der.into(),
        root_pem: root_pem.into_bytes().into(),
        etag,
    })
}

impl CaState {
    pub(super) fn refresh_crl(&self) -> Result<(), CaError> {
        let mut ca = self.ca.lock().expect("ca lock");
        let doc = build_crl(&mut ca, &self.signer, &self.root_signer, self.crl_validity)?;
        self.crl.store(Arc::new(doc));
        Ok(())
    }
}

/// `GET /v1/roots`
pub(super) async fn roots(State(st): State<Arc<CaState>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/x-pem-file")], st.root_pem.clone())
}

/// `GET /v1/crl`
pub(super) async fn intermediate(State(st): State<Arc<CaState>>, headers: HeaderMap) -> Response {
    crl_response(&st, &headers, false)
}

/// `GET /v1/crl/root`
pub(super) async fn root(State(st): State<Arc<CaState>>, headers: HeaderMap) -> Response {
    crl_response(&st, &headers, true)
}

/// The intermediate's CRL (PEM: with the root's), or the root's alone; ETag
/// for conditional GETs (the same for both: they are published together).
fn crl_response(st: &CaState, headers: &HeaderMap, root: bool) -> Response {
    let doc = st.crl.load_full();
    if headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(doc.etag.as_str()) {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, doc.etag.clone())]).into_response();
    }
    let pem = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("pem"));
    let (ctype, body) = match (pem, root) {
        (true, false) => ("application/x-pem-file", doc.pem.clone()),
        (false, false) => ("application/pkix-crl", doc.der.clone()),
        (true, true) => ("application/x-pem-file", doc.root_pem.clone()),
        (false, true) => ("application/pkix-crl", doc.root_der.clone()),
    };
    ([(header::CONTENT_TYPE, ctype.to_string()), (header::ETAG, doc.etag.clone())], body).into_response()
}
