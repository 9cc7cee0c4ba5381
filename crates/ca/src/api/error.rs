//! The API's one error answer, `{"error": "...", "detail": "..."}`, and the
//! one mapping from the authority's errors to a status and that message.
use crate::CaError;
use ambos_pki::PkiError;
use ambos_store::StoreError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// A JSON error with a fitting status.
#[derive(Debug)]
pub struct ApiError {
    pub(super) status: StatusCode,
    pub(super) error: &'static str,
    pub(super) detail: String,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, error: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError { status, error, detail: detail.into() }
    }

    pub(super) fn bad_request(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad request", detail)
    }

    /// Whether an enrollment failed on its token (unknown, spent or expired):
    /// what the per-source failure limit counts.
    pub(super) fn is_token_failure(&self) -> bool {
        matches!(self.status, StatusCode::UNAUTHORIZED | StatusCode::CONFLICT | StatusCode::GONE)
            && matches!(self.error, "invalid token" | "token already used" | "token expired")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({"error": self.error, "detail": self.detail}))).into_response()
    }
}

impl From<CaError> for ApiError {
    fn from(e: CaError) -> ApiError {
        match e {
            CaError::Store(StoreError::UnknownToken) => ApiError::new(StatusCode::UNAUTHORIZED, "invalid token", ""),
            CaError::Store(StoreError::TokenSpent) => {
                ApiError::new(StatusCode::CONFLICT, "token already used", "a token buys exactly one certificate")
            }
            CaError::Store(StoreError::TokenExpired) => ApiError::new(StatusCode::GONE, "token expired", ""),
            CaError::Store(StoreError::UnknownCertificate(s)) => {
                ApiError::new(StatusCode::NOT_FOUND, "unknown certificate", s)
            }
            CaError::Store(StoreError::AlreadyRevoked(s)) => ApiError::new(StatusCode::CONFLICT, "already revoked", s),
            // The why names the database: it goes to the log, not to the client.
            CaError::Store(e) if e.is_unavailable() => {
                tracing::warn!("store unavailable: {e}");
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store unavailable", "")
            }
            CaError::UnknownPeer(s) => ApiError::new(StatusCode::FORBIDDEN, "unknown certificate", s),
            CaError::PeerRevoked(s) => ApiError::new(StatusCode::FORBIDDEN, "certificate revoked", s),
            CaError::NotAdmin(_) => ApiError::new(
                StatusCode::FORBIDDEN,
                "admin certificate required",
                "issue one with `ambos issue client NAME --admin`",
            ),
            CaError::NotRenewable(profile) => {
                ApiError::new(StatusCode::FORBIDDEN, "not renewable", format!("profile {profile}"))
            }
            CaError::BadPeerCertificate(why) => ApiError::new(StatusCode::BAD_REQUEST, "bad certificate", why),
            CaError::Pki(p @ PkiError::CsrNotAllowed(..)) => {
                ApiError::new(StatusCode::FORBIDDEN, "names not allowed", p.to_string())
            }
            CaError::Pki(
                p @ (PkiError::BadCsrSignature
                | PkiError::MalformedCsr(_)
                | PkiError::MalformedPem(_)
                | PkiError::MissingPemItem(_)
                | PkiError::InvalidSan { .. }
                | PkiError::InvalidSerial(_)),
            ) => ApiError::bad_request(p.to_string()),
            other => {
                tracing::error!("internal error: {other}");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error", other.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapped(e: CaError) -> (u16, &'static str, String) {
        let a = ApiError::from(e);
        (a.status.as_u16(), a.error, a.detail)
    }

    #[test]
    fn token_errors_map_to_their_status_and_count_as_token_failures() {
        for (e, status, error) in [
            (StoreError::UnknownToken, 401, "invalid token"),
            (StoreError::TokenSpent, 409, "token already used"),
            (StoreError::TokenExpired, 410, "token expired"),
        ] {
            let a = ApiError::from(CaError::Store(e));
            assert_eq!((a.status.as_u16(), a.error), (status, error));
            assert!(a.is_token_failure(), "{error}");
        }
        assert!(!ApiError::from(CaError::Store(StoreError::AlreadyRevoked("ab".into()))).is_token_failure());
        let down = StoreError::Connect { url: "postgres://db".into(), why: "refused".into() };
        let a = ApiError::from(CaError::Store(down));
        assert_eq!((a.status.as_u16(), a.error, a.detail.as_str()), (503, "store unavailable", ""));
        assert!(!ApiError::bad_request("x").is_token_failure());
    }

    #[test]
    fn peer_and_certificate_errors_name_the_serial() {
        let cases = [
            (CaError::UnknownPeer("ab".into()), 403, "unknown certificate", "ab"),
            (CaError::PeerRevoked("ab".into()), 403, "certificate revoked", "ab"),
            (CaError::NotRenewable("root".into()), 403, "not renewable", "profile root"),
            (CaError::BadPeerCertificate("short".into()), 400, "bad certificate", "short"),
            (CaError::Store(StoreError::UnknownCertificate("cd".into())), 404, "unknown certificate", "cd"),
            (CaError::Store(StoreError::AlreadyRevoked("cd".into())), 409, "already revoked", "cd"),
        ];
        for (e, status, error, detail) in cases {
            assert_eq!(mapped(e), (status, error, detail.to_string()));
        }
        let (status, error, detail) = mapped(CaError::NotAdmin("ab".into()));
        assert_eq!((status, error), (403, "admin certificate required"));
        assert!(detail.contains("--admin"), "{detail}");
    }

    #[test]
    fn bad_input_is_400_names_out_of_terms_403_the_rest_500() {
        let (status, error, detail) = mapped(CaError::Pki(PkiError::CsrNotAllowed("dns:x".into(), "token")));
        assert_eq!((status, error), (403, "names not allowed"));
        assert!(detail.contains("dns:x"), "{detail}");
        for e in [PkiError::BadCsrSignature, PkiError::MalformedCsr("x".into()), PkiError::InvalidSerial("x".into())] {
            assert_eq!(mapped(CaError::Pki(e)).0, 400);
        }
        assert_eq!(
            mapped(CaError::Store(StoreError::Corrupt("x".into()))),
            (500, "internal error", "store corrupt: x".into())
        );
        assert_eq!(mapped(CaError::Random).0, 500);
    }

    #[test]
    fn the_answer_is_json_with_error_and_detail() {
        let r = ApiError::from(CaError::PeerRevoked("ab".into())).into_response();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        let body = body_of(r);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v, json!({"error": "certificate revoked", "detail": "ab"}));
    }

    fn body_of(r: Response) -> bytes::Bytes {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(axum::body::to_bytes(r.into_body(), usize::MAX)).unwrap()
    }
}
