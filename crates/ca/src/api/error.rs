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
