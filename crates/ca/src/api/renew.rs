//! `POST /v1/renew`: a client with a current, unrevoked certificate (mTLS)
//! gets a new one for the same identity ([`CertificateAuthority::renew`]).
use super::{blocking, csr_der, parse_json, ApiError, CaState, Peer};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bytes::Bytes;
use serde::Deserialize;
use std::sync::Arc;

#[cfg(doc)]
use crate::CertificateAuthority;

/// An empty body or no `csr`: the same key again.
#[derive(Deserialize)]
struct RenewBody {
    csr: Option<String>,
}

pub(super) async fn renew(
    State(st): State<Arc<CaState>>,
    Extension(peer): Extension<Peer>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body: RenewBody = if body.is_empty() { RenewBody { csr: None } } else { parse_json(&body)? };
    let csr = body.csr.as_deref().map(csr_der).transpose()?;
    let st2 = st.clone();
    let issued = blocking(move || {
        let peer = peer.required()?;
        let mut ca = st2.ca.lock().expect("ca lock");
        ca.acting_as(format!("cert:{}", peer.serial));
        Ok(ca.renew(&st2.signer, &peer.der, csr.as_deref())?)
    })
    .await?;
    metrics::counter!("ambos_ca_renewals_total").increment(1);
    Ok(Json(st.issued_json(&issued)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::test_api::{answer, api, peer};
    use crate::test_ca::test_ca;
    use axum::http::StatusCode;

    #[tokio::test]
    async fn renewal_needs_a_client_certificate_issued_here() {
        let a = api();
        let (st, old) = (a.st.clone(), &a.user);
        let (status, _, v) = answer(renew(State(st.clone()), Extension(Peer(None)), Bytes::new()).await).await;
        assert_eq!((status, v["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("client certificate required")));
        let foreign = test_ca("other").issue_client("user");
        let r = renew(State(st.clone()), Extension(peer(&foreign.cert_der)), Bytes::new()).await;
        let (status, _, v) = answer(r).await;
        assert_eq!((status, v["error"].as_str()), (StatusCode::FORBIDDEN, Some("unknown certificate")));

        let (status, _, v) = answer(renew(State(st), Extension(peer(&old.cert_der)), Bytes::new()).await).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(v["name"], "user");
        assert_ne!(v["serial"].as_str(), Some(old.serial.to_hex().as_str()));
    }

    #[tokio::test]
    async fn a_bad_csr_is_400_before_anything_is_issued() {
        let a = api();
        let body = Bytes::from_static(br#"{"csr": "not PEM"}"#);
        let (status, _, v) = answer(renew(State(a.st.clone()), Extension(peer(&a.user.cert_der)), body).await).await;
        assert_eq!((status, v["error"].as_str()), (StatusCode::BAD_REQUEST, Some("bad request")));
        let user = ambos_store::CertFilter { name: Some("user".into()), ..Default::default() };
        assert_eq!(a.t.ca.list(&user).unwrap().len(), 1, "nothing new for user");
    }
}
