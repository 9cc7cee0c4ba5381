//! The audit log: one JSON line per decision (request, TCP connection, or
//! failed handshake). Lines go through a channel to a writer thread, so the
//! request path never blocks on disk and many lines share one write.
use crate::ProxyError;
use ambos_tls::Identity;
use serde::Serialize;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::mpsc;

#[derive(Serialize)]
pub struct AuditIdentity<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spiffe: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cn: Option<&'a str>,
    pub serial: &'a str,
    pub sha256: &'a str,
}

impl<'a> From<&'a Identity> for AuditIdentity<'a> {
    fn from(id: &'a Identity) -> Self {
        AuditIdentity { spiffe: id.spiffe.as_deref(), cn: id.cn.as_deref(), serial: &id.serial, sha256: &id.sha256 }
    }
}

/// One decision. `event` is `request`, `connection` (TCP) or `handshake`.
#[derive(Serialize)]
pub struct AuditEvent<'a> {
    pub time: String,
    pub event: &'static str,
    pub peer: SocketAddr,
    pub identity: Option<AuditIdentity<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<&'a str>,
    pub decision: &'static str,
    pub reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    pub latency_ms: f64,
}

/// Current time as RFC 3339 with milliseconds.
pub fn now() -> String {
    let t = time::OffsetDateTime::now_utc();
    let t = t.replace_nanosecond(t.millisecond() as u32 * 1_000_000).unwrap_or(t);
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// Handle to the audit writer; cheap to clone. Without a file, events are
/// dropped (handshake failures are still logged through `tracing`).
#[derive(Clone)]
pub struct AuditLog {
    tx: Option<mpsc::SyncSender<String>>,
}

impl AuditLog {
    pub fn disabled() -> AuditLog {
        AuditLog { tx: None }
    }

    /// Opens `path` for appending and starts the writer thread.
    pub fn open(path: &Path) -> Result<AuditLog, ProxyError> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| ProxyError::Audit { path: path.to_path_buf(), source })?;
        let (tx, rx) = mpsc::sync_channel::<String>(65_536);
        std::thread::Builder::new()
            .name("ambos-audit".into())
            .spawn(move || {
                let mut out = std::io::BufWriter::with_capacity(64 * 1024, file);
                while let Ok(line) = rx.recv() {
                    let _ = out.write_all(line.as_bytes());
                    // Drain what is queued, then write it in one go.
                    while let Ok(more) = rx.try_recv() {
                        let _ = out.write_all(more.as_bytes());
                    }
                    if let Err(e) = out.flush() {
                        tracing::error!("audit log write failed: {e}");
                    }
                }
            })
            .map_err(|source| ProxyError::Audit { path: path.to_path_buf(), source })?;
        Ok(AuditLog { tx: Some(tx) })
    }

    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    pub fn record(&self, event: &AuditEvent<'_>) {
        let Some(tx) = &self.tx else { return };
        let mut line = serde_json::to_string(event).unwrap_or_default();
        line.push('\n');
        if tx.try_send(line).is_err() {
            metrics::counter!("ambos_proxy_audit_dropped_total").increment(1);
        }
    }
}
