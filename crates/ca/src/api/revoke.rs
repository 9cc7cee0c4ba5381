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
        let rec = st2.ca.lock().expect("ca lock").revoke(&CertSelector::Serial(serial), reason)?;
        st2.refresh_crl()?;
        Ok(rec)
    })
    .await?;
    metrics::counter!("ambos_ca_revocations_total").increment(1);
    Ok(Json(json!({"serial": rec.serial, "name": rec.name, "revoked": true})).into_response())
}
