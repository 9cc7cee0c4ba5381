//! `POST /v1/revoke` (administrators): revokes a serial and publishes the
//! new CRL at once, so proxies pulling `/v1/crl` see it on their next refresh.
use super::{blocking, parse_json, ApiError, CaState, Peer};
use crate::{CaError, CertSelector};
use ambos_pki::{RevocationReason, Serial};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

#[derive(Deserialize)]
struct RevokeBody {
    serial: String,
    reason: Option<String>,
}

pub(super) async fn revoke(
    State(st): State<Arc<CaState>>,
    Extension(peer): Extension<Peer>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body: RevokeBody = parse_json(&body)?;
    let st2 = st.clone();
    let rec = blocking(move || {
        let peer = peer.required()?;
        st2.ca.lock().expect("ca lock").admin(&peer.serial)?;
        let serial: Serial = body.serial.parse().map_err(CaError::from)?;
        let reason: RevocationReason = match &body.reason {
            Some(r) => r.parse().map_err(ApiError::bad_request)?,
            None => RevocationReason::Unspecified,
        };
        let rec = {
            let mut ca = st2.ca.lock().expect("ca lock");
            ca.acting_as(format!("admin:{}", peer.serial));
            ca.revoke(&CertSelector::Serial(serial), reason)?
        };
        st2.refresh_crl()?;
        Ok(rec)
    })
    .await?;
    metrics::counter!("ambos_ca_revocations_total").increment(1);
    Ok(Json(json!({"serial": rec.serial, "name": rec.name, "revoked": true})).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::test_api::{answer, api, peer};
    use axum::http::StatusCode;

    /// The ETag of `/v1/crl`: it changes with the CRL's contents.
    async fn published(st: &Arc<CaState>) -> String {
        let r = crate::api::crl::intermediate(State(st.clone()), axum::http::HeaderMap::new()).await;
        r.headers()[axum::http::header::ETAG].to_str().unwrap().to_string()
    }

    #[tokio::test]
    async fn only_an_administrator_revokes_and_the_crl_is_published_at_once() {
        let (st, user, admin) = {
            let a = api();
            (a.st, a.user, a.admin)
        };
        let etag = published(&st).await;
        let body = || Bytes::from(json!({"serial": user.serial.to_hex(), "reason": "keyCompromise"}).to_string());

        let (status, _, v) = answer(revoke(State(st.clone()), Extension(peer(&user.cert_der)), body()).await).await;
        assert_eq!((status, v["error"].as_str()), (StatusCode::FORBIDDEN, Some("admin certificate required")));
        assert_eq!(published(&st).await, etag, "nothing revoked, nothing published");

        let (status, _, v) = answer(revoke(State(st.clone()), Extension(peer(&admin.cert_der)), body()).await).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!((v["name"].as_str(), v["revoked"].as_bool()), (Some("user"), Some(true)));
        assert_ne!(published(&st).await, etag, "the new CRL is published");

        let (status, _, v) = answer(revoke(State(st.clone()), Extension(peer(&admin.cert_der)), body()).await).await;
        assert_eq!((status, v["error"].as_str()), (StatusCode::CONFLICT, Some("already revoked")));
        let bad = Bytes::from(json!({"serial": admin.serial.to_hex(), "reason": "because"}).to_string());
        let (status, _, _) = answer(revoke(State(st), Extension(peer(&admin.cert_der)), bad).await).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }
}
