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
use ambos_store::{StoreError, StoreLocation};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bytes::Bytes;
use serde::Deserialize;
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
    let (st2, token, csr) = (st.clone(), body.token.clone(), der.clone());
    let enrollment = blocking(move || {
        let mut ca = st2.ca.lock().expect("ca lock");
        let signed = ca.check_token(&token).and_then(|grant| grant.sign(&st2.signer, &csr));
        match signed {
            Ok(e) => Ok(Ok(e)),
            Err(e) => match again(&mut ca, &token, &csr, &e) {
                Some(rec) => Ok(Err(rec)),
                None => {
                    ca.enrollment_refused(&token, &e);
                    Err(e.into())
                }
            },
        }
    })
    .await?;
    let enrollment = match enrollment {
        Ok(e) => e,
        Err(rec) => return Ok(retried(st, &rec)),
    };
    let unavailable = || ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store unavailable", "");
    let (reply, answer) = oneshot::channel();
    st.enroll.send(EnrollJob { enrollment, reply }).map_err(|_| unavailable())?;
    match answer.await.map_err(|_| unavailable())? {
        Ok(issued) => {
            metrics::counter!("ambos_ca_enrollments_total", "result" => "ok").increment(1);
            Ok((StatusCode::CREATED, Json(st.issued_json(&issued))).into_response())
        }
        Err(e) => {
            // The same request on two nodes at once: the one that lost the race answers like the winner.
            let st2 = st.clone();
            let rec = blocking(move || {
                let mut ca = st2.ca.lock().expect("ca lock");
                Ok(again(&mut ca, &body.token, &der, &e).ok_or(e))
            })
            .await?;
            match rec {
                Ok(rec) => Ok(retried(st, &rec)),
                Err(e) => {
                    metrics::counter!("ambos_ca_enrollments_total", "result" => "refused").increment(1);
                    Err(e.into())
                }
            }
        }
    }
}

/// For a spent token, the certificate it bought if `csr` is for the same
/// key: the client is retrying an enrollment whose answer it never got.
fn again(
    ca: &mut crate::CertificateAuthority,
    token: &str,
    csr: &[u8],
    why: &CaError,
) -> Option<ambos_store::CertRecord> {
    if !matches!(why, CaError::Store(StoreError::TokenSpent)) {
        return None;
    }
    ca.retried_enrollment(token, csr).unwrap_or_else(|e| {
        tracing::warn!("a retried enrollment could not be looked up: {e}");
        None
    })
}

/// 200 (not 201): nothing new was issued.
fn retried(st: &CaState, rec: &ambos_store::CertRecord) -> Response {
    metrics::counter!("ambos_ca_enrollments_total", "result" => "retried").increment(1);
    (StatusCode::OK, Json(st.record_json(rec))).into_response()
}

/// The group-commit writer: up to 512 waiting enrollments per transaction.
pub(super) fn spawn_writer(at: &StoreLocation, node: String) -> Result<mpsc::Sender<EnrollJob>, CaError> {
    let mut ca = CertificateAuthority::open_at(at)?;
    ca.on_node(node);
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
                        let down = matches!(&e, CaError::Store(s) if s.is_unavailable());
                        for reply in replies {
                            let why = e.to_string();
                            let e = if down { StoreError::Unavailable(why) } else { StoreError::Corrupt(why) };
                            let _ = reply.send(Err(e.into()));
                        }
                    }
                }
            }
        })
        .map_err(|e| CaError::Tls(e.to_string()))?;
    Ok(tx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::test_api::{answer, state};
    use crate::api::ServeLimits;
    use crate::test_ca::{csr, spiffe, test_ca};
    use crate::TokenOptions;
    use ambos_pki::{pem_encode, Profile};
    use std::time::Duration;

    fn token(t: &mut crate::test_ca::TestCa) -> String {
        let opts = TokenOptions {
            name: "dev".into(),
            profile: Profile::Client,
            sans: vec![spiffe("dev")],
            ous: vec![],
            cert_ttl: Duration::from_secs(3600),
            ttl: Duration::from_secs(600),
        };
        t.ca.create_tokens(&opts, 1).unwrap().remove(0)
    }

    fn body(token: &str) -> Bytes {
        let (_, der) = csr("dev", &[]);
        serde_json::json!({"token": token, "csr": pem_encode("CERTIFICATE REQUEST", &der)}).to_string().into()
    }

    fn from(ip: [u8; 4]) -> Extension<PeerAddr> {
        Extension(PeerAddr((ip, 40000).into()))
    }

    #[tokio::test]
    async fn a_token_answers_201_with_the_chain_once_then_409() {
        let mut t = test_ca("api");
        let secret = token(&mut t);
        let st = state(&t, ServeLimits::default());
        let (status, _, v) = answer(enroll(State(st.clone()), from([10, 0, 0, 1]), body(&secret)).await).await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
        assert_eq!(v["name"], "dev");
        assert_eq!(v["certificate"].as_str().unwrap().matches("BEGIN CERTIFICATE").count(), 2, "leaf + intermediate");
        assert!(v["ca"].as_str().unwrap().contains("BEGIN CERTIFICATE"));
        assert!(v["not_after"].as_str().unwrap().ends_with('Z'));
        let (status, _, v) = answer(enroll(State(st), from([10, 0, 0, 1]), body(&secret)).await).await;
        assert_eq!((status, v["error"].as_str()), (StatusCode::CONFLICT, Some("token already used")));
    }

    #[tokio::test]
    async fn a_retry_with_the_same_csr_gets_the_same_certificate_and_nothing_else_does() {
        let mut t = test_ca("api");
        let secret = token(&mut t);
        let st = state(&t, ServeLimits::default());
        let (_, der) = csr("dev", &[]);
        let same = || -> Bytes {
            serde_json::json!({"token": secret, "csr": pem_encode("CERTIFICATE REQUEST", &der)}).to_string().into()
        };
        let (status, _, first) = answer(enroll(State(st.clone()), from([10, 0, 0, 1]), same()).await).await;
        assert_eq!(status, StatusCode::CREATED, "{first}");
        // The answer was lost; the client sends the same request again (here or to another node).
        let (status, _, again) = answer(enroll(State(st.clone()), from([10, 0, 0, 1]), same()).await).await;
        assert_eq!(status, StatusCode::OK, "{again}");
        assert_eq!((&again["serial"], &again["certificate"]), (&first["serial"], &first["certificate"]));
        let listed = t.ca.list(&ambos_store::CertFilter { name: Some("dev".into()), ..Default::default() }).unwrap();
        assert_eq!(listed.len(), 1, "nothing new issued");
        // Another key with the token: refused.
        let (status, _, v) = answer(enroll(State(st.clone()), from([10, 0, 0, 1]), body(&secret)).await).await;
        assert_eq!((status, v["error"].as_str()), (StatusCode::CONFLICT, Some("token already used")));
        // The same key's CSR with a broken signature proves nothing: refused.
        let mut forged = der.clone();
        let last = forged.len() - 1;
        forged[last] ^= 1;
        let b: Bytes =
            serde_json::json!({"token": secret, "csr": pem_encode("CERTIFICATE REQUEST", &forged)}).to_string().into();
        let (status, _, v) = answer(enroll(State(st.clone()), from([10, 0, 0, 1]), b).await).await;
        assert_eq!((status, v["error"].as_str()), (StatusCode::CONFLICT, Some("token already used")));
        // Revoked since: not handed out again.
        let serial: ambos_pki::Serial = first["serial"].as_str().unwrap().parse().unwrap();
        t.ca.revoke(&crate::CertSelector::Serial(serial), ambos_pki::RevocationReason::KeyCompromise).unwrap();
        let (status, _, v) = answer(enroll(State(st), from([10, 0, 0, 1]), same()).await).await;
        assert_eq!((status, v["error"].as_str()), (StatusCode::CONFLICT, Some("token already used")));
    }

    #[tokio::test]
    async fn failed_tokens_from_one_source_are_answered_429_with_retry_after() {
        let t = test_ca("api");
        let limits = ServeLimits { token_failure_limit: 2, ..ServeLimits::default() };
        let st = state(&t, limits);
        for _ in 0..2 {
            let (status, _, _) = answer(enroll(State(st.clone()), from([10, 0, 0, 1]), body("ambos_nope")).await).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
        }
        let (status, headers, v) =
            answer(enroll(State(st.clone()), from([10, 0, 0, 1]), body("ambos_nope")).await).await;
        assert_eq!((status, v["error"].as_str()), (StatusCode::TOO_MANY_REQUESTS, Some("too many failed tokens")));
        let wait: u64 = headers[header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
        assert!((1..=60).contains(&wait), "{wait}");
        // Another source is not held back; a malformed body is not a token failure.
        let (status, _, _) = answer(enroll(State(st.clone()), from([10, 0, 0, 2]), body("ambos_nope")).await).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        for _ in 0..3 {
            let r = enroll(State(st.clone()), from([10, 0, 0, 3]), Bytes::from_static(b"{")).await;
            assert_eq!(answer(r).await.0, StatusCode::BAD_REQUEST);
        }
    }
}
