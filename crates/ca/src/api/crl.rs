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

impl CrlDoc {
    /// The intermediate's CRL, DER.
    pub(super) fn der(&self) -> &[u8] {
        &self.der
    }
}

impl CaState {
    pub(super) fn refresh_crl(&self) -> Result<(), CaError> {
        let mut ca = self.ca.lock().expect("ca lock");
        let mark = ca.revocation_mark()?;
        let doc = build_crl(&mut ca, &self.signer, &self.root_signer, self.crl_validity)?;
        self.crl.store(Arc::new(doc));
        *self.crl_mark.lock().expect("mark lock") = mark;
        Ok(())
    }

    /// Re-signs the CRL when the store's revocations changed since it was
    /// signed: another CA node on the same database revoked something.
    pub(super) fn follow_revocations(&self) -> Result<(), CaError> {
        let mark = self.ca.lock().expect("ca lock").revocation_mark()?;
        if mark != *self.crl_mark.lock().expect("mark lock") {
            tracing::info!("revocations changed in the store: re-signing the CRL");
            self.refresh_crl()?;
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::test_api::state;
    use crate::api::ServeLimits;
    use crate::test_ca::test_ca;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (k.clone(), v.parse().unwrap())).collect()
    }

    #[tokio::test]
    async fn crls_come_as_der_or_pem_and_a_matching_etag_is_304() {
        let t = test_ca("api");
        let st = state(&t, ServeLimits::default());
        let der = intermediate(State(st.clone()), HeaderMap::new()).await;
        assert_eq!(der.headers()[header::CONTENT_TYPE], "application/pkix-crl");
        let etag = der.headers()[header::ETAG].to_str().unwrap().to_string();
        let pem = intermediate(State(st.clone()), headers(&[(header::ACCEPT, "application/x-pem-file")])).await;
        let body = axum::body::to_bytes(pem.into_body(), usize::MAX).await.unwrap();
        assert_eq!(String::from_utf8_lossy(&body).matches("BEGIN X509 CRL").count(), 2, "with the root's");
        let root_pem = root(State(st.clone()), headers(&[(header::ACCEPT, "application/x-pem-file")])).await;
        let body = axum::body::to_bytes(root_pem.into_body(), usize::MAX).await.unwrap();
        assert_eq!(String::from_utf8_lossy(&body).matches("BEGIN X509 CRL").count(), 1);
        let again = intermediate(State(st.clone()), headers(&[(header::IF_NONE_MATCH, &etag)])).await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        let roots = roots(State(st)).await.into_response();
        let body = axum::body::to_bytes(roots.into_body(), usize::MAX).await.unwrap();
        assert_eq!(body, pem_encode("CERTIFICATE", t.ca.root_der()).as_bytes());
    }
}
