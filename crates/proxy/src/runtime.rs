//! What connections use, built from a validated config by [`Runtime::build`]
//! (TLS acceptor and client verifier, route table and its counters) and
//! swapped whole on reload: a new TLS config (and so a fresh session cache)
//! and new routes for new connections; connections in flight keep theirs.
//! [`Reloader`] rebuilds it on a change of a watched file or SIGHUP and
//! keeps the old one when any step fails; [`Connections`] holds the open
//! connections' verified chains, so new CRLs close the revoked ones.
use crate::authorize::jwks::PulledJwks;
use crate::authorize::RouteTable;
use crate::config::ProxyConfig;
use crate::ProxyError;
use ambos_tls::daemon::Control;
use arc_swap::ArcSwap;
use notify::Watcher;
use rustls_pki_types::CertificateRevocationListDer;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;

pub struct Runtime {
    pub config: ProxyConfig,
    /// `config.routes` compiled, with their counters.
    pub routes: RouteTable,
    pub acceptor: TlsAcceptor,
    /// The client verifier inside `acceptor`, for post-handshake checks.
    pub verifier: Arc<ambos_tls::ClientVerifier>,
    /// For a TLS upstream (`https://`, or TCP mode with `[upstream.tls]`): how to connect to it.
    pub upstream_tls: Option<crate::upstream_tls::UpstreamTls>,
    /// The serving and client CA certificates' notAfter, for the expiry gauges.
    pub expiries: Vec<crate::certs::Expiry>,
}

/// CRLs pulled from URLs, each with the URL it came from.
pub type PulledCrls = Vec<(String, CertificateRevocationListDer<'static>)>;

/// Open connections with a verified client certificate: when new CRLs
/// load, each is judged again and a revoked one is told to close.
#[derive(Default)]
pub struct Connections {
    next: std::sync::atomic::AtomicU64,
    open: Mutex<std::collections::HashMap<u64, OpenConnection>>,
}

/// An open connection's verified chain, and how to tell it to close.
type OpenConnection = (Arc<ambos_tls::VerifiedChain>, Arc<tokio::sync::Notify>);

/// Removes its connection from the registry when the connection ends.
pub struct Registered<'a> {
    conns: &'a Connections,
    id: u64,
    pub revoked: Arc<tokio::sync::Notify>,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        if let Ok(mut open) = self.conns.open.lock() {
            open.remove(&self.id);
        }
    }
}

impl Connections {
    pub fn register(&self, chain: Arc<ambos_tls::VerifiedChain>) -> Registered<'_> {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let revoked = Arc::new(tokio::sync::Notify::new());
        if let Ok(mut open) = self.open.lock() {
            open.insert(id, (chain, revoked.clone()));
        }
        Registered { conns: self, id, revoked }
    }

    /// Tells every open connection whose path `trust`'s CRLs revoke to close; returns how many.
    fn sweep(&self, trust: &ambos_tls::Trust) -> usize {
        if trust.revocation().is_none() {
            return 0;
        }
        let now = unix_now();
        let Ok(open) = self.open.lock() else { return 0 };
        let mut closed = 0;
        for (chain, notify) in open.values() {
            if trust.recheck(chain, now).is_err() {
                notify.notify_one();
                closed += 1;
            }
        }
        closed
    }
}

impl Runtime {
    /// Loads every TLS file (plus CRLs pulled from `crl_url`) and builds the
    /// route table and its counters (with the JWKS pulled from URLs); fails
    /// without side effects if a file is bad.
    pub fn build(
        config: ProxyConfig,
        pulled_crls: &[(String, CertificateRevocationListDer<'static>)],
        pulled_jwks: &PulledJwks,
    ) -> Result<Runtime, ProxyError> {
        let loaded = config.load_tls(pulled_crls)?;
        let expiries = crate::certs::expiries(&config.tls)?;
        metrics::gauge!("ambos_proxy_certificate_expiry_timestamp_seconds").set(loaded.cert_not_after as f64);
        for crl in loaded.verifier.trust().crls().summaries() {
            if let Some(problem) = &crl.problem {
                tracing::warn!(source = %crl.source, issuer = %crl.issuer, "CRL cannot be used: {problem}");
            }
        }
        let routes = RouteTable::build(&config.routes, pulled_jwks, &config.tls.client_ca)
            .map_err(crate::ProxyError::Invalid)?;
        let upstream_tls = match &config.upstream {
            crate::config::Upstream::Http { tls: Some(t), protocol, .. } => {
                Some(crate::upstream_tls::UpstreamTls::build(t, Some(*protocol))?)
            }
            crate::config::Upstream::Tcp { tls: Some(t), .. } => {
                Some(crate::upstream_tls::UpstreamTls::build(t, None)?)
            }
            _ => None,
        };
        Ok(Runtime {
            acceptor: TlsAcceptor::from(loaded.config),
            verifier: loaded.verifier,
            routes,
            config,
            upstream_tls,
            expiries,
        })
    }
}

/// Certificate and CRL freshness as metrics and log lines: called after
/// each load and every 30 s, so an alert can fire before a certificate
/// expires or a CRL's nextUpdate passes, and the log says when a CRL's has
/// (it is still enforced until `crl_grace` runs out).
pub fn report_crls(rt: &Runtime) {
    let now = unix_now();
    for problem in crate::certs::serving_problems(&rt.config.tls.cert, now) {
        tracing::error!("{problem}");
    }
    for e in &rt.expiries {
        let labels = [("cert", e.cert.to_string()), ("subject", e.subject.clone())];
        metrics::gauge!("ambos_proxy_certificate_expiry_seconds", &labels).set((e.not_after - now) as f64);
    }
    let Some(policy) = rt.verifier.trust().revocation() else { return };
    for crl in rt.verifier.trust().crls().summaries() {
        let labels = [("issuer", crl.issuer.clone()), ("source", crl.source.clone())];
        let next = crl.next_update.unwrap_or(0);
        metrics::gauge!("ambos_proxy_crl_next_update_timestamp_seconds", &labels).set(next as f64);
        metrics::gauge!("ambos_proxy_crl_this_update_timestamp_seconds", &labels).set(crl.this_update as f64);
        metrics::gauge!("ambos_proxy_crl_seconds_until_next_update", &labels).set((next - now) as f64);
        metrics::gauge!("ambos_proxy_crl_age_seconds", &labels).set((now - crl.this_update) as f64);
        metrics::gauge!("ambos_proxy_crl_usable", &labels).set(if crl.problem.is_none() { 1.0 } else { 0.0 });
        if crl.problem.is_none() && now > next {
            let late = now - next;
            let grace = policy.grace.as_secs() as i64;
            if late > grace {
                tracing::error!(issuer = %crl.issuer, source = %crl.source, "CRL is {late} s past its nextUpdate, beyond crl_grace ({grace} s): revocation status unknown for this CA");
            } else {
                tracing::warn!(issuer = %crl.issuer, source = %crl.source, "CRL is {late} s past its nextUpdate; still enforced, status unknown in {} s (crl_grace)", grace - late);
            }
        }
    }
}

/// Where a reload gets its config: the file again, or the flags given at start.
pub enum ConfigSource {
    File(PathBuf),
    Flags(Box<ProxyConfig>),
}

/// Rebuilds the runtime when files change or on SIGHUP.
pub struct Reloader {
    pub current: Arc<ArcSwap<Runtime>>,
    source: ConfigSource,
    /// Fingerprint of the watched files at the last successful load.
    fingerprint: Mutex<u64>,
    /// The files' fingerprint and the error of the last failed reload: the
    /// same failure again is not worth another ERROR line (nor, from the
    /// watcher, another attempt).
    failed: Mutex<Option<(u64, String)>>,
    watched_dirs: Mutex<HashSet<PathBuf>>,
    watcher: Mutex<Option<notify::RecommendedWatcher>>,
    /// The last CRLs pulled, by URL (`crl_url`, distribution points).
    pulled_crls: Mutex<std::collections::BTreeMap<String, PulledCrls>>,
    /// The last JWKS pulled, by URL (`[[route]] token.jwks`).
    pub pulled_jwks: PulledJwks,
    /// Open connections with a client certificate.
    pub connections: Connections,
}

/// What identifies a version of the watched files: for each, its inode,
/// size and change times. Reading and hashing the contents instead cost
/// ~50 ms for a 1M-entry CRL on every event in a watched directory — and a
/// directory that also holds, say, a log file sees events all the time.
/// Replacing a file by rename (editors, Kubernetes) changes the inode; an
/// in-place write changes the modification time (nanoseconds).
fn fingerprint(files: &[PathBuf]) -> u64 {
    use std::hash::{Hash, Hasher};
    #[cfg(unix)]
    use std::os::unix::fs::MetadataExt;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for f in files {
        f.hash(&mut h);
        match std::fs::metadata(f) {
            Ok(m) => {
                m.len().hash(&mut h);
                m.modified().ok().hash(&mut h);
                #[cfg(unix)]
                (m.ino(), m.dev(), m.ctime(), m.ctime_nsec()).hash(&mut h);
            }
            Err(e) => e.kind().hash(&mut h),
        }
    }
    h.finish()
}

impl Reloader {
    pub fn new(
        runtime: Runtime,
        source: ConfigSource,
        pulled: std::collections::BTreeMap<String, PulledCrls>,
        pulled_jwks: PulledJwks,
    ) -> Arc<Reloader> {
        let fp = fingerprint(&runtime.config.watched_files());
        Arc::new(Reloader {
            current: Arc::new(ArcSwap::from_pointee(runtime)),
            source,
            fingerprint: Mutex::new(fp),
            failed: Mutex::new(None),
            watched_dirs: Mutex::new(HashSet::new()),
            watcher: Mutex::new(None),
            pulled_crls: Mutex::new(pulled),
            pulled_jwks,
            connections: Connections::default(),
        })
    }

    /// Builds a new runtime and swaps it in; on any error the old one stays.
    pub fn reload(&self, why: &str) -> Result<(), ProxyError> {
        let result: Result<(), ProxyError> = (|| {
            let config = match &self.source {
                ConfigSource::File(p) => ProxyConfig::from_file(p)?,
                ConfigSource::Flags(c) => (**c).clone(),
            };
            let old = self.current.load();
            if config.listen != old.config.listen
                || config.mode != old.config.mode
                || config.metrics != old.config.metrics
                || config.audit != old.config.audit
            {
                tracing::warn!(
                    "listen address, mode, metrics or audit path changed: these take effect after a restart"
                );
            }
            let files = config.watched_files();
            let pulled: PulledCrls = self.pulled_crls.lock().expect("crl lock").values().flatten().cloned().collect();
            let rt = Arc::new(Runtime::build(config, &pulled, &self.pulled_jwks)?);
            report_crls(&rt);
            self.current.store(rt.clone());
            let urls: Vec<String> =
                rt.routes.token_policies().filter_map(|p| p.remote()).map(|(r, ..)| r.url().to_string()).collect();
            self.pulled_jwks.retain(&urls);
            let closed = self.connections.sweep(rt.verifier.trust());
            if closed > 0 {
                tracing::warn!("closing {closed} open connection(s) whose client certificate the new CRLs revoke");
            }
            *self.fingerprint.lock().expect("fingerprint lock") = fingerprint(&files);
            self.watch(&files);
            Ok(())
        })();
        match &result {
            Ok(()) => {
                metrics::counter!("ambos_proxy_config_reloads_total", "result" => "ok").increment(1);
                *self.failed.lock().expect("failed lock") = None;
                tracing::info!(trigger = why, "configuration reloaded");
            }
            Err(e) => {
                metrics::counter!("ambos_proxy_config_reloads_total", "result" => "failed").increment(1);
                let failure = Some((fingerprint(&self.current.load().config.watched_files()), e.to_string()));
                let mut last = self.failed.lock().expect("failed lock");
                if *last == failure {
                    tracing::debug!(trigger = why, "reload failed again the same way: {e}");
                } else {
                    tracing::error!(trigger = why, "reload failed, still serving the previous configuration: {e}");
                    *last = failure;
                }
            }
        }
        result
    }

    /// Replaces the pulled CRLs and rebuilds; on failure the old CRLs stay.
    pub fn set_pulled_crls(&self, url: &str, crls: PulledCrls) -> Result<(), ProxyError> {
        let old = self.pulled_crls.lock().expect("crl lock").insert(url.to_string(), crls);
        let result = self.reload(url);
        if result.is_err() {
            let mut pulled = self.pulled_crls.lock().expect("crl lock");
            match old {
                Some(o) => pulled.insert(url.to_string(), o),
                None => pulled.remove(url),
            };
        }
        result
    }

    /// Reloads only if a watched file's content changed since the last load.
    fn reload_if_changed(&self) {
        let files = self.current.load().config.watched_files();
        let now = fingerprint(&files);
        let failed_on = self.failed.lock().expect("failed lock").as_ref().map(|f| f.0);
        if now != *self.fingerprint.lock().expect("fingerprint lock") && failed_on != Some(now) {
            let _ = self.reload("file change");
        }
    }

    /// Watches the parent directory of each file: editors and Kubernetes
    /// replace files by rename or symlink swap, which a watch on the file misses.
    fn watch(&self, files: &[PathBuf]) {
        let mut guard = self.watcher.lock().expect("watcher lock");
        let Some(w) = guard.as_mut() else { return };
        let mut dirs = self.watched_dirs.lock().expect("dirs lock");
        for f in files {
            let dir = f.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
            if dirs.insert(dir.clone()) {
                if let Err(e) = w.watch(&dir, notify::RecursiveMode::NonRecursive) {
                    tracing::warn!("cannot watch {}: {e}; use SIGHUP to reload", dir.display());
                }
            }
        }
    }

    /// Starts the file watcher and the listener for reload requests (SIGHUP).
    pub fn start(self: &Arc<Self>, mut control: Control) -> Result<(), ProxyError> {
        let (tx, mut rx) = mpsc::unbounded_channel::<()>();
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            // Our own reads of the files (a reload) are events too: not a change.
            if res.is_ok_and(|e| !e.kind.is_access()) {
                let _ = tx.send(());
            }
        })
        .map_err(|e| ProxyError::Watch { path: PathBuf::from("."), why: e.to_string() })?;
        *self.watcher.lock().expect("watcher lock") = Some(watcher);
        self.watch(&self.current.load().config.watched_files());

        let me = self.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(30));
            loop {
                every.tick().await;
                report_crls(&me.current.load());
            }
        });

        let me = self.clone();
        tokio::spawn(async move {
            while rx.recv().await.is_some() {
                // Let a burst of events (write, rename, chmod) settle first.
                tokio::time::sleep(Duration::from_millis(200)).await;
                while rx.try_recv().is_ok() {}
                let me = me.clone();
                let _ = tokio::task::spawn_blocking(move || me.reload_if_changed()).await;
            }
        });

        let me = self.clone();
        tokio::spawn(async move {
            loop {
                control.reload_requested().await;
                ambos_tls::daemon::notify_reloading();
                let me = me.clone();
                let _ = tokio::task::spawn_blocking(move || me.reload("SIGHUP")).await;
                ambos_tls::daemon::notify_ready();
            }
        });
        Ok(())
    }
}

/// Now, in Unix seconds.
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ambos_pki::{LeafRequest, NewCa, OffsetDateTime, Profile};

    /// A proxy.toml and the TLS files it names, in a temporary directory.
    struct Files {
        dir: tempfile::TempDir,
    }

    impl Files {
        fn new() -> Files {
            ambos_tls::install_default_provider();
            let now = OffsetDateTime::now_utc();
            let month = Duration::from_secs(30 * 86_400);
            let ca = NewCa::create("Reload", ambos_pki::KeyType::EcP256, month, month, now).unwrap();
            let authority =
                ambos_pki::Authority::new(&ca.intermediate_cert_der, ca.intermediate_key, &ca.root_cert_der).unwrap();
            let issued = authority.issue(&LeafRequest::new("localhost", Profile::Server), now).unwrap();
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("ca.crt"), ambos_pki::pem_encode("CERTIFICATE", &ca.root_cert_der)).unwrap();
            std::fs::write(dir.path().join("api.crt"), authority.chain_pem(&issued.cert_der)).unwrap();
            std::fs::write(dir.path().join("api.key"), issued.key.unwrap().pkcs8_pem().as_bytes()).unwrap();
            Files { dir }
        }

        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }

        /// Replaces `name` by rename, as editors and Kubernetes do.
        fn replace(&self, name: &str, contents: &str) {
            let tmp = self.path(&format!(".{name}.tmp"));
            std::fs::write(&tmp, contents).unwrap();
            std::fs::rename(tmp, self.path(name)).unwrap();
        }

        /// proxy.toml with one route.
        fn config(&self, route: &str) -> String {
            format!(
                "[listen]\naddress = \"127.0.0.1:8443\"\n[tls]\ncert = \"api.crt\"\nkey = \"api.key\"\nclient_ca = \"ca.crt\"\n\
                 [upstream]\nurl = \"http://127.0.0.1:8080\"\n[[route]]\npath = \"{route}\"\nallow = [\"any\"]\n"
            )
        }

        /// A reloader serving `proxy.toml` with `route`.
        fn reloader(&self, route: &str) -> Arc<Reloader> {
            self.replace("proxy.toml", &self.config(route));
            let path = self.path("proxy.toml");
            let runtime = Runtime::build(ProxyConfig::from_file(&path).unwrap(), &[], &PulledJwks::default()).unwrap();
            Reloader::new(runtime, ConfigSource::File(path), Default::default(), PulledJwks::default())
        }
    }

    /// The route that decides `GET path` in the runtime being served.
    fn route_for(reloader: &Reloader, path: &str) -> Option<String> {
        reloader.current.load().routes.find(&http::Method::GET, path).map(|r| r.name.to_string())
    }

    /// What `f` logs, as text.
    fn logs_of(f: impl FnOnce()) -> String {
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt().with_ansi(false).with_writer(move || writer.clone()).finish();
        tracing::subscriber::with_default(subscriber, f);
        let text = buf.0.lock().unwrap().clone();
        String::from_utf8(text).unwrap()
    }

    #[test]
    fn a_changed_config_file_is_picked_up() {
        let files = Files::new();
        let reloader = files.reloader("/a/**");
        assert_eq!(route_for(&reloader, "/a/x").as_deref(), Some("/a/**"));
        let before = reloader.current.load_full();
        reloader.reload_if_changed();
        assert!(Arc::ptr_eq(&before, &reloader.current.load_full()), "nothing changed: no reload");
        files.replace("proxy.toml", &files.config("/bb/**"));
        let logs = logs_of(|| reloader.reload_if_changed());
        assert!(logs.contains("configuration reloaded") && logs.contains("file change"), "{logs}");
        assert_eq!(route_for(&reloader, "/bb/x").as_deref(), Some("/bb/**"));
        assert_eq!(route_for(&reloader, "/a/x"), None);
    }

    #[test]
    fn an_invalid_config_keeps_the_old_runtime_and_logs_why() {
        let files = Files::new();
        let reloader = files.reloader("/a/**");
        let before = reloader.current.load_full();
        files.replace("proxy.toml", &files.config("a/**"));
        let logs = logs_of(|| reloader.reload_if_changed());
        assert!(Arc::ptr_eq(&before, &reloader.current.load_full()), "the old runtime stays");
        assert!(logs.contains("reload failed, still serving the previous configuration"), "{logs}");
        assert!(logs.contains("route[0].path: 'a/**' must start with /"), "{logs}");
        // A broken TLS file: the same.
        files.replace("proxy.toml", &files.config("/bb/**"));
        let good = std::fs::read_to_string(files.path("api.crt")).unwrap();
        files.replace("api.crt", "not a certificate");
        let logs = logs_of(|| reloader.reload_if_changed());
        assert!(Arc::ptr_eq(&before, &reloader.current.load_full()), "the old runtime stays");
        assert!(logs.contains("reload failed") && logs.contains("api.crt"), "{logs}");
        assert_eq!(route_for(&reloader, "/a/x").as_deref(), Some("/a/**"));
        // Once the files are right again, the next change is picked up.
        files.replace("api.crt", &good);
        reloader.reload_if_changed();
        assert_eq!(route_for(&reloader, "/bb/x").as_deref(), Some("/bb/**"));
    }

    #[test]
    fn the_same_failure_is_logged_once_until_a_file_or_the_error_changes() {
        let files = Files::new();
        let reloader = files.reloader("/a/**");
        files.replace("proxy.toml", &files.config("a/**"));
        let errors = |f: &dyn Fn()| logs_of(f).matches("ERROR").count();
        assert_eq!(errors(&|| reloader.reload_if_changed()), 1);
        // Events in the directory (the proxy's own log file, our reads) change nothing.
        assert_eq!(errors(&|| reloader.reload_if_changed()), 0, "not tried again");
        assert_eq!(
            errors(&|| assert!(reloader.reload("SIGHUP").is_err())),
            0,
            "tried, the same failure: not logged again"
        );
        files.replace("proxy.toml", &files.config("b/**"));
        assert_eq!(errors(&|| reloader.reload_if_changed()), 1, "another edit, another failure");
        files.replace("proxy.toml", &files.config("/c/**"));
        assert!(logs_of(|| reloader.reload_if_changed()).contains("configuration reloaded"));
        assert_eq!(route_for(&reloader, "/c/x").as_deref(), Some("/c/**"));
    }
}
