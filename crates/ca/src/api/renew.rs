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
        Ok(st2.ca.lock().expect("ca lock").renew(&st2.signer, &peer.der, csr.as_deref())?)
    })
    .await?;
    metrics::counter!("ambos_ca_renewals_total").increment(1);
    Ok(Json(st.issued_json(&issued)).into_response())
}
