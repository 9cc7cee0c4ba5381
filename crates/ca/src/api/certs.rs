//! `GET /v1/certs?name=N&current=true&expiring=7d&revoked=true&summary=true`
//! (administrators): the issued certificates as `ambos list --json` shows
//! them (RFC 3339 times, status), or their counts per status.
use super::{blocking, ApiError, CaState, Peer};
use crate::{ListQuery, Listing};
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use std::sync::Arc;

pub(super) async fn certs(
    State(st): State<Arc<CaState>>,
    Extension(peer): Extension<Peer>,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let now = crate::OffsetDateTime::now_utc().unix_timestamp();
    let filter = q.filter(now).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let listing = blocking(move || {
        let peer = peer.required()?;
        let ca = st.ca.lock().expect("ca lock");
        ca.admin(&peer.serial)?;
        Ok(Listing { certs: ca.list(&filter)?, now })
    })
    .await?;
    Ok(if q.summary { Json(listing.summary()).into_response() } else { Json(listing.json()).into_response() })
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
        let q = |name: &str| Query(ListQuery { name: Some(name.into()), ..Default::default() });
        let (status, _, _) = answer(certs(State(st.clone()), Extension(peer(&user.cert_der)), q("user")).await).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _, v) = answer(certs(State(st), Extension(peer(&admin.cert_der)), q("user")).await).await;
        assert_eq!(status, StatusCode::OK);
        let list = v.as_array().unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0]["serial"].as_str(), Some(user.serial.to_hex().as_str()));
        assert!(list[0]["not_after"].as_str().is_some_and(|t| t.ends_with('Z')), "RFC 3339: {}", list[0]);
    }
}
