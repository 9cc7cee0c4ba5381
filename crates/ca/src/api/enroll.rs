//! `POST /v1/enroll`: a CSR and a one-time token buy a certificate.
//!
//! The hot path: the token is checked and the CSR signed outside the CA's
//! lock, then one writer thread commits every enrollment waiting at that
//! moment in one transaction (one fsync for the group), through
//! [`CertificateAuthority::commit_enrollments`].
use super::limits::PeerAddr;
use super::{blocking, csr_der, parse_json, ApiError, CaState};
use crate::{CaError, CertificateAuthority, Enrollment};
use ambos_pki::IssuedCert;
use ambos_store::StoreError;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bytes::Bytes;
use serde::Deserialize;
use std::path::Path;
use std::sync::{mpsc, Arc};
use tokio::sync::oneshot;

#[derive(Deserialize)]
struct EnrollBody {
    token: String,
    csr: String,
}

/// A signed enrollment waiting for the writer, and where its outcome goes.
pub(super) struct EnrollJob {
    enrollment: Enrollment,
    reply: oneshot::Sender<crate::Result<IssuedCert>>,
}

/// `/v1/enroll`: after `token_failure_limit` failed tokens from one source
/// within the window, 429 with `Retry-After` (the token is not even looked
/// at). Failures are logged with the peer address, never the token.
pub(super) async fn enroll(
    State(st): State<Arc<CaState>>,
    Extension(PeerAddr(addr)): Extension<PeerAddr>,
    body: Bytes,
) -> Result<Response, ApiError> {
    if let Some(wait) = st.failures.blocked(addr.ip()) {
        metrics::counter!("ambos_ca_enrollments_total", "result" => "throttled").increment(1);
        tracing::warn!(peer = %addr, "enrollment refused: too many failed tokens from this address");
        let e = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too many failed tokens", format!("retry in {wait} s"));
        let mut r = e.into_response();
        r.headers_mut().insert(header::RETRY_AFTER, wait.max(1).into());
        return Ok(r);
    }
    let result = enroll_with_token(&st, body).await;
    if let Err(e) = &result {
        if e.is_token_failure() {
            st.failures.record(addr.ip());
            metrics::counter!("ambos_ca_token_failures_total").increment(1);
            tracing::warn!(peer = %addr, why = e.error, "enrollment with a failed token");
        }
    }
    result
}

async fn enroll_with_token(st: &Arc<CaState>, body: Bytes) -> Result<Response, ApiError> {
    let body: EnrollBody = parse_json(&body)?;
    let der = csr_der(&body.csr)?;
    let st2 = st.clone();
    let enrollment = blocking(move || {
        let grant = st2.ca.lock().expect("ca lock").check_token(&body.token)?;
        Ok(grant.sign(&st2.signer, &der)?)
    })
    .await?;
    let unavailable = || ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store unavailable", "");
    let (reply, answer) = oneshot::channel();
    st.enroll.send(EnrollJob { enrollment, reply }).map_err(|_| unavailable())?;
    match answer.await.map_err(|_| unavailable())? {
        Ok(issued) => {
            metrics::counter!("ambos_ca_enrollments_total", "result" => "ok").increment(1);
            Ok((StatusCode::CREATED, Json(st.issued_json(&issued))).into_response())
        }
        Err(e) => {
            metrics::counter!("ambos_ca_enrollments_total", "result" => "refused").increment(1);
            Err(e.into())
        }
    }
}

/// The group-commit writer: up to 512 waiting enrollments per transaction.
pub(super) fn spawn_writer(dir: &Path) -> Result<mpsc::Sender<EnrollJob>, CaError> {
    let mut ca = CertificateAuthority::open(dir)?;
    let (tx, rx) = mpsc::channel::<EnrollJob>();
    std::thread::Builder::new()
        .name("ambos-enroll-writer".into())
        .spawn(move || {
            while let Ok(first) = rx.recv() {
                let mut jobs = vec![first];
                while jobs.len() < 512 {
                    match rx.try_recv() {
                        Ok(j) => jobs.push(j),
                        Err(_) => break,
                    }
                }
                let (batch, replies): (Vec<_>, Vec<_>) = jobs.into_iter().map(|j| (j.enrollment, j.reply)).unzip();
                // A requester that went away finds its certificate stored all the same.
                match ca.commit_enrollments(batch) {
                    Ok(results) => {
                        for (reply, r) in replies.into_iter().zip(results) {
                            let _ = reply.send(r);
                        }
                    }
                    Err(e) => {
                        tracing::error!("enrollment transaction failed: {e}");
                        for reply in replies {
                            let _ = reply.send(Err(StoreError::Corrupt(e.to_string()).into()));
                        }
                    }
                }
            }
        })
        .map_err(|e| CaError::Tls(e.to_string()))?;
    Ok(tx)
}
