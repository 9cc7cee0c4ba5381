//! `GET /v1/certs?name=N&revoked=true` (administrators): the issued certificates.
use super::{blocking, ApiError, CaState, Peer};
use ambos_store::CertFilter;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use std::sync::Arc;

#[derive(Deserialize)]
pub(super) struct CertsQuery {
    name: Option<String>,
    revoked: Option<bool>,
}

pub(super) async fn certs(
    State(st): State<Arc<CaState>>,
    Extension(peer): Extension<Peer>,
    Query(q): Query<CertsQuery>,
) -> Result<Response, ApiError> {
    let list = blocking(move || {
        let peer = peer.required()?;
        let ca = st.ca.lock().expect("ca lock");
        ca.admin(&peer.serial)?;
        let filter = CertFilter { name: q.name, revoked_only: q.revoked.unwrap_or(false), ..CertFilter::default() };
        Ok(ca.list(&filter)?)
    })
    .await?;
    Ok(Json(list).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::test_api::{answer, api, peer};
    use axum::http::StatusCode;

    #[tokio::test]
    async fn the_list_is_for_administrators_and_filters_by_name() {
        let (st, user, admin) = {
            let a = api();
            (a.st, a.user, a.admin)
        };
        let q = |name: &str| Query(CertsQuery { name: Some(name.into()), revoked: None });
        let (status, _, _) = answer(certs(State(st.clone()), Extension(peer(&user.cert_der)), q("user")).await).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _, v) = answer(certs(State(st), Extension(peer(&admin.cert_der)), q("user")).await).await;
        assert_eq!(status, StatusCode::OK);
        let list = v.as_array().unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0]["serial"].as_str(), Some(user.serial.to_hex().as_str()));
    }
}
