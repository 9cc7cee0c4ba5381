//! The audit log: one JSON line per decision (request, TCP connection,
//! failed handshake, or connection closed because its client was revoked).
//! Lines go through a channel to a writer thread, so the request path never
//! blocks on disk and many lines share one write.
//!
//! Rotation happens in the writer thread, between whole lines: by size
//! (`[audit] max_size`, `keep`), and by reopening the path on SIGUSR1 or
//! SIGHUP (logrotate renames the file, then signals) or when the writer,
//! idle, sees that the path names another file.
use crate::ProxyError;
use ambos_tls::Identity;
use serde::Serialize;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// The client in an audit line: its SPIFFE ID and CN where the certificate
/// has them, its serial and SHA-256 fingerprint.
pub struct AuditIdentity<'a>(&'a Identity);

impl<'a> From<&'a Identity> for AuditIdentity<'a> {
    fn from(id: &'a Identity) -> Self {
        AuditIdentity(id)
    }
}

impl Serialize for AuditIdentity<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let id = self.0;
        let mut map = s.serialize_map(None)?;
        for (key, name) in [("spiffe", &id.spiffe), ("cn", &id.cn)] {
            if let Some(name) = name {
                map.serialize_entry(key, name)?;
            }
        }
        map.serialize_entry("serial", &id.serial)?;
        map.serialize_entry("sha256", &id.sha256)?;
        map.end()
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

/// Where the audit log goes and how it rotates (`[audit]` or `--audit`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditConfig {
    pub path: PathBuf,
    /// `max_size`: when a line would take the file past this many bytes, the
    /// file is rotated first (`audit.jsonl` → `audit.jsonl.1` → ...).
    pub max_size: Option<u64>,
    /// `keep`: how many rotated files are kept (default 5).
    pub keep: u32,
}

impl AuditConfig {
    pub const DEFAULT_KEEP: u32 = 5;
    /// The smallest `max_size` accepted.
    pub const MIN_SIZE: u64 = 1024;
    /// The most rotated files `keep` allows.
    pub const MAX_KEEP: u32 = 1000;

    /// A log at `path` that is never rotated by size (reopened on SIGUSR1/SIGHUP).
    pub fn new(path: PathBuf) -> AuditConfig {
        AuditConfig { path, max_size: None, keep: Self::DEFAULT_KEEP }
    }
}

/// Parses a size: `100MB`, `512KB`, `1GB`, `4096` (bytes). Units are
/// powers of 1024 (`KiB`, `MiB`, `GiB`, `K`, `M`, `G` are accepted too).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(format!("'{text}' is not a size (use e.g. 100MB, 512KB, 1GB)")),
    };
    let n: u64 = num.parse().map_err(|_| format!("'{text}' is not a size (use e.g. 100MB, 512KB, 1GB)"))?;
    n.checked_mul(1u64 << shift).ok_or_else(|| format!("'{text}' is too large"))
}

/// Handle to the audit writer; cheap to clone. Without a file, events are
/// dropped (handshake failures are still logged through `tracing`).
#[derive(Clone)]
pub struct AuditLog {
    tx: Option<mpsc::SyncSender<String>>,
}

/// The writer thread's file: it rotates and reopens only between whole
/// lines, so no line is split across two files.
struct Writer {
    config: AuditConfig,
    out: BufWriter<File>,
    /// Bytes in the current file (what it had when opened plus what we wrote).
    size: u64,
    /// (device, inode) of the open file: when the path names another file
    /// (renamed or removed without a signal), the next idle check reopens.
    id: (u64, u64),
}

impl Writer {
    fn open(config: AuditConfig) -> std::io::Result<Writer> {
        let (file, size, id) = open_append(&config.path)?;
        Ok(Writer { config, out: BufWriter::with_capacity(64 * 1024, file), size, id })
    }

    fn write_line(&mut self, line: &str) {
        if let Some(max) = self.config.max_size {
            if self.size > 0 && self.size + line.len() as u64 > max {
                self.rotate();
            }
        }
        if let Err(e) = self.out.write_all(line.as_bytes()) {
            tracing::error!("audit log write failed: {e}");
        }
        self.size += line.len() as u64;
    }

    fn flush(&mut self) {
        if let Err(e) = self.out.flush() {
            tracing::error!("audit log write failed: {e}");
        }
    }

    /// `audit.jsonl.N-1` → `.N`, ..., `audit.jsonl` → `.1`, then a new file.
    fn rotate(&mut self) {
        self.flush();
        let p = &self.config.path;
        let numbered = |n: u32| {
            let mut s = p.as_os_str().to_owned();
            s.push(format!(".{n}"));
            PathBuf::from(s)
        };
        for n in (1..self.config.keep).rev() {
            match std::fs::rename(numbered(n), numbered(n + 1)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::error!("audit log rotation: cannot rename {}: {e}", numbered(n).display()),
            }
        }
        if let Err(e) = std::fs::rename(p, numbered(1)) {
            tracing::error!("audit log rotation: cannot rename {}: {e}", p.display());
        }
        metrics::counter!("ambos_proxy_audit_rotations_total").increment(1);
        self.reopen();
    }

    /// Opens the path again (after logrotate moved the file away).
    fn reopen(&mut self) {
        self.flush();
        match open_append(&self.config.path) {
            Ok((file, size, id)) => {
                self.out = BufWriter::with_capacity(64 * 1024, file);
                self.size = size;
                self.id = id;
            }
            Err(e) => tracing::error!("cannot reopen audit log {}: {e}", self.config.path.display()),
        }
    }

    /// Whether the path no longer names the open file.
    fn replaced(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        match std::fs::metadata(&self.config.path) {
            Ok(m) => (m.dev(), m.ino()) != self.id,
            Err(_) => true,
        }
    }
}

fn open_append(path: &Path) -> std::io::Result<(File, u64, (u64, u64))> {
    use std::os::unix::fs::MetadataExt;
    let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    let m = file.metadata()?;
    Ok((file, m.len(), (m.dev(), m.ino())))
}

/// Sets `flag` on SIGUSR1 and SIGHUP (the proxy's own SIGHUP handler
/// reloads the configuration as well; both see the signal).
fn listen_for_reopen(flag: Arc<AtomicBool>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(handle) = tokio::runtime::Handle::try_current() else { return };
    handle.spawn(async move {
        let (Ok(mut usr1), Ok(mut hup)) = (signal(SignalKind::user_defined1()), signal(SignalKind::hangup())) else {
            tracing::warn!("cannot listen for SIGUSR1/SIGHUP: the audit log will not be reopened on signal");
            return;
        };
        loop {
            tokio::select! {
                _ = usr1.recv() => {}
                _ = hup.recv() => {}
            }
            flag.store(true, Ordering::SeqCst);
        }
    });
}

impl AuditLog {
    pub fn disabled() -> AuditLog {
        AuditLog { tx: None }
    }

    /// Opens the log for appending and starts the writer thread; when called
    /// inside a tokio runtime, SIGUSR1 and SIGHUP make it reopen the path.
    pub fn open(config: &AuditConfig) -> Result<AuditLog, ProxyError> {
        let path = config.path.clone();
        let mut writer = Writer::open(config.clone()).map_err(|why| ProxyError::Audit { path: path.clone(), why })?;
        let (tx, rx) = mpsc::sync_channel::<String>(65_536);
        let reopen = Arc::new(AtomicBool::new(false));
        let flag = reopen.clone();
        std::thread::Builder::new()
            .name("ambos-audit".into())
            .spawn(move || {
                let mut checked = Instant::now();
                loop {
                    match rx.recv_timeout(Duration::from_millis(200)) {
                        Ok(line) => {
                            writer.write_line(&line);
                            // Drain what is queued, then write it in one go.
                            while let Ok(more) = rx.try_recv() {
                                writer.write_line(&more);
                            }
                            writer.flush();
                        }
                        Err(mpsc::RecvTimeoutError::Timeout) => {
                            if checked.elapsed() >= Duration::from_secs(1) {
                                checked = Instant::now();
                                if writer.replaced() {
                                    flag.store(true, Ordering::SeqCst);
                                }
                            }
                        }
                        Err(mpsc::RecvTimeoutError::Disconnected) => break,
                    }
                    if flag.swap(false, Ordering::SeqCst) {
                        writer.reopen();
                    }
                }
                writer.flush();
            })
            .map_err(|why| ProxyError::Audit { path: path.clone(), why })?;
        listen_for_reopen(reopen);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("100MB").unwrap(), 100 << 20);
        assert_eq!(parse_size("512 KiB").unwrap(), 512 << 10);
        assert_eq!(parse_size("1g").unwrap(), 1 << 30);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        for bad in ["", "MB", "10 parsecs", "-1MB", "1.5MB", "99999999999999999999TB", "18446744073709551615G"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_audit_line_names_only_what_the_event_and_certificate_have() {
        let mut id = Identity { serial: "0a".into(), sha256: "ff".into(), ..Identity::default() };
        fn event<'a>(id: &'a Identity, route: Option<&'a str>) -> AuditEvent<'a> {
            AuditEvent {
                time: "t".into(),
                event: "connection",
                peer: "127.0.0.1:9".parse().unwrap(),
                identity: Some(AuditIdentity::from(id)),
                route,
                method: None,
                path: None,
                decision: "allow",
                reason: "allowed",
                status: None,
                latency_ms: 1.5,
            }
        }
        assert_eq!(
            serde_json::to_string(&event(&id, None)).unwrap(),
            r#"{"time":"t","event":"connection","peer":"127.0.0.1:9","identity":{"serial":"0a","sha256":"ff"},"decision":"allow","reason":"allowed","latency_ms":1.5}"#
        );
        (id.spiffe, id.cn) = (Some("spiffe://acme.test/web".into()), Some("web".into()));
        assert_eq!(
            serde_json::to_string(&event(&id, Some("db"))).unwrap(),
            r#"{"time":"t","event":"connection","peer":"127.0.0.1:9","identity":{"spiffe":"spiffe://acme.test/web","cn":"web","serial":"0a","sha256":"ff"},"route":"db","decision":"allow","reason":"allowed","latency_ms":1.5}"#
        );
    }

    fn lines(p: &Path) -> Vec<String> {
        std::fs::read_to_string(p).unwrap_or_default().lines().map(str::to_string).collect()
    }

    #[test]
    fn rotates_by_size_between_whole_lines_and_keeps_n_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let config = AuditConfig { path: path.clone(), max_size: Some(1024), keep: 3 };
        let mut w = Writer::open(config).unwrap();
        for i in 0..200 {
            w.write_line(&format!("{{\"n\":{i},\"pad\":\"{}\"}}\n", "x".repeat(i % 50)));
        }
        w.flush();
        let mut all = Vec::new();
        for name in ["audit.jsonl.3", "audit.jsonl.2", "audit.jsonl.1", "audit.jsonl"] {
            let p = dir.path().join(name);
            let len = std::fs::metadata(&p).unwrap().len();
            assert!(len <= 1024, "{name}: {len} bytes");
            all.extend(lines(&p));
        }
        assert!(!dir.path().join("audit.jsonl.4").exists());
        // The newest lines, in order, each whole.
        let numbers: Vec<u64> =
            all.iter().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["n"].as_u64().unwrap()).collect();
        assert_eq!(*numbers.last().unwrap(), 199);
        assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{numbers:?}");
    }

    #[test]
    fn reopens_after_an_external_rename() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let mut w = Writer::open(AuditConfig::new(path.clone())).unwrap();
        w.write_line("{\"n\":1}\n");
        w.flush();
        std::fs::rename(&path, dir.path().join("old")).unwrap();
        assert!(w.replaced());
        w.write_line("{\"n\":2}\n");
        w.reopen();
        assert!(!w.replaced());
        w.write_line("{\"n\":3}\n");
        w.flush();
        assert_eq!(lines(&dir.path().join("old")), ["{\"n\":1}", "{\"n\":2}"]);
        assert_eq!(lines(&path), ["{\"n\":3}"]);
    }
}
