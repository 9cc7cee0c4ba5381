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
