//! `ambos tunnel`: a local plaintext listener whose connections leave as
//! mTLS, for clients that cannot present a certificate themselves. The
//! server is verified by `ambos_tls::ServerVerifier` (the proxy's path
//! verifier: name, path, RFC 5280 rules, and the CRLs when given). The
//! certificate and CRL files are re-read when they change (the agent renews
//! them); a `--crl-url` is pulled again every 60 s. Its accept loop is
//! `ambos_tls::net::accept`. Also the client side's CRL loading and server trust
//! (`load_crl_files`, `fetch_crl_url`, `server_trust`), which `probe` and
//! the CLI use.
use crate::authorize::Expected;
use crate::config::CrlSource;
use crate::ProxyError;
use ambos_tls::daemon::Control;
use ambos_tls::HandshakeFailure;
use ambos_tls::{ClientCert, ServerAuth};
use rustls::pki_types::{CertificateRevocationListDer, ServerName};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::net::TcpStream;

/// How often the tunnel pulls `--crl-url` again.
pub const CRL_URL_REFRESH: Duration = Duration::from_secs(60);

/// CRLs with where each came from (a file or a URL).
pub type SourcedCrls = Vec<(String, CertificateRevocationListDer<'static>)>;

/// `ambos tunnel`'s settings; [`run`] checks the listen address and the
/// server name first. With the `cli` feature, the binary's flags.
#[derive(Clone, Debug, Default)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct TunnelConfig {
    /// Local plaintext address, e.g. 127.0.0.1:8080.
    #[cfg_attr(feature = "cli", arg(long))]
    pub listen: String,
    /// The mTLS server, HOST:PORT.
    #[cfg_attr(feature = "cli", arg(long))]
    pub connect: String,
    /// Our client certificate chain (re-read when it changes).
    #[cfg_attr(feature = "cli", arg(long))]
    pub cert: PathBuf,
    #[cfg_attr(feature = "cli", arg(long))]
    pub key: PathBuf,
    /// CA the server's certificate must chain to.
    #[cfg_attr(feature = "cli", arg(long))]
    pub ca: PathBuf,
    /// Name to verify the server's certificate against (default: HOST of --connect).
    #[cfg_attr(feature = "cli", arg(long))]
    pub server_name: Option<String>,
    /// Required server identity, e.g. spiffe://acme.test/api or dns:api.acme.test.
    #[cfg_attr(feature = "cli", arg(long))]
    pub expect: Option<String>,
    /// CRL file(s) (PEM or DER) to check the server's certificate chain against
    /// (repeatable), re-read when they change. Every CA level needs its CRL: use `ambos crl --all`.
    #[cfg_attr(feature = "cli", arg(long = "crl", value_name = "FILE"))]
    pub crl: Vec<PathBuf>,
    /// Fetch the CRLs over HTTPS, e.g. https://ca:9443/v1/crl from `ambos serve`
    /// (that server is verified against the same CA file); pulled every 60 s.
    #[cfg_attr(feature = "cli", arg(long, value_name = "URL"))]
    pub crl_url: Option<String>,
}

impl TunnelConfig {
    /// The address to listen on, and the name the server's certificate
    /// must match: the host of `connect` unless given (an IPv6 host
    /// without its brackets).
    pub fn endpoints(&self) -> Result<(SocketAddr, ServerName<'static>), ProxyError> {
        let listen = self
            .listen
            .parse()
            .map_err(|_| ProxyError::Invalid(format!("--listen '{}' is not an address", self.listen)))?;
        let host = match &self.server_name {
            Some(name) => name.trim_start_matches('[').trim_end_matches(']').to_string(),
            None => crate::config::address_host(&self.connect).to_string(),
        };
        let server_name = ServerName::try_from(host.clone())
            .map_err(|_| ProxyError::Invalid(format!("--server-name '{host}' is not a DNS name or IP")))?;
        Ok((listen, server_name))
    }

    /// Whether the server's chain is checked against CRLs (fail closed).
    pub fn checks_revocation(&self) -> bool {
        !self.crl.is_empty() || self.crl_url.is_some()
    }
}

/// What the files looked like when last read: (modified, length) of each.
type Stamp = Vec<Option<(SystemTime, u64)>>;

struct Loaded {
    stamp: Stamp,
    /// Generation of the pulled CRLs this config was built with.
    pulled: u64,
    config: Arc<rustls::ClientConfig>,
}

/// The CRLs last pulled from `--crl-url` and a generation counter.
#[derive(Default)]
struct Pulled {
    crls: SourcedCrls,
    generation: u64,
}

fn stamp(cfg: &TunnelConfig) -> Stamp {
    let m = |p: &PathBuf| std::fs::metadata(p).ok().and_then(|m| Some((m.modified().ok()?, m.len())));
    [&cfg.cert, &cfg.key, &cfg.ca].into_iter().chain(cfg.crl.iter()).map(m).collect()
}

/// The CRLs of the files, each named by its path.
pub fn load_crl_files(files: &[PathBuf]) -> Result<SourcedCrls, ProxyError> {
    let mut out = Vec::new();
    for f in files {
        let source = f.display().to_string();
        out.extend(ambos_tls::load_crls(f)?.into_iter().map(|c| (source.clone(), c)));
    }
    Ok(out)
}

/// Checks that `url` is one or more https:// URLs (comma-separated).
pub fn crl_source(url: &str) -> Result<CrlSource, ProxyError> {
    CrlSource::parse(url, CRL_URL_REFRESH, "--crl-url")
}

/// One pull of `url` over HTTPS, its server verified against the CA file(s)
/// `ca` with a plain verifier (no CRL is needed to fetch the CRL).
/// `Ok(None)`: unchanged since `etag`. Errors name the URL.
pub async fn fetch_crl_url(
    url: &str,
    ca: &[PathBuf],
    etag: Option<&str>,
) -> Result<Option<(SourcedCrls, String)>, ProxyError> {
    // The proxy's messages say `CRL URL: ...`; name the flag instead.
    crate::crl_pull::fetch(&crl_source(url)?, ca, etag).await.map_err(|e| match e {
        ProxyError::Invalid(m) => ProxyError::Invalid(m.replacen("CRL ", "--crl-url ", 1)),
        e => e,
    })
}

pub use crate::trust::server_trust;

fn client_config(cfg: &TunnelConfig, pulled: &SourcedCrls) -> Result<Arc<rustls::ClientConfig>, ProxyError> {
    let mut crls = load_crl_files(&cfg.crl)?;
    crls.extend(pulled.iter().cloned());
    let trust = server_trust(std::slice::from_ref(&cfg.ca), crls, cfg.checks_revocation())?;
    let (chain, key) = ambos_tls::load_cert_and_key(&cfg.cert, &cfg.key)?;
    let chain = ClientCert::Chain(chain, key);
    let config = ambos_tls::client_config(ServerAuth::Trust(trust), chain).map_err(|e| match e {
        ambos_tls::TlsError::Config(e) => {
            ProxyError::Invalid(format!("{} / {}: {e}", cfg.cert.display(), cfg.key.display()))
        }
        e => e.into(),
    })?;
    Ok(Arc::new(config))
}

/// Pulls `--crl-url` every [`CRL_URL_REFRESH`]; a failed pull keeps the previous CRLs.
fn spawn_crl_pull(cfg: Arc<TunnelConfig>, url: String, pulled: Arc<Mutex<Pulled>>, mut etag: Option<String>) {
    tokio::spawn(async move {
        let ca = [cfg.ca.clone()];
        loop {
            tokio::time::sleep(CRL_URL_REFRESH).await;
            match fetch_crl_url(&url, &ca, etag.as_deref()).await {
                Ok(Some((crls, tag))) => {
                    let mut p = pulled.lock().expect("tunnel CRL lock");
                    p.crls = crls;
                    p.generation += 1;
                    etag = Some(tag);
                    tracing::info!("pulled new CRLs from {url}");
                }
                Ok(None) => {}
                Err(e) => tracing::warn!("{e}; keeping the previous CRLs"),
            }
        }
    });
}

/// Runs until `control` asks it to stop; a reload request re-reads the
/// certificate, key, CA and CRL files at once (they are also re-read when
/// they change, at the next connection).
pub async fn run(cfg: TunnelConfig, control: Control) -> Result<(), ProxyError> {
    let (listen, server_name) = cfg.endpoints()?;
    ambos_tls::install_default_provider();
    let expect = cfg
        .expect
        .as_deref()
        .map(Expected::parse)
        .transpose()
        .map_err(|e| ProxyError::Invalid(format!("--expect: {e}")))?;
    let pulled = Arc::new(Mutex::new(Pulled::default()));
    let mut etag = None;
    if let Some(url) = &cfg.crl_url {
        // The first pull must work: without it every server would be refused.
        if let Some((crls, tag)) = fetch_crl_url(url, std::slice::from_ref(&cfg.ca), None).await? {
            pulled.lock().expect("tunnel CRL lock").crls = crls;
            etag = Some(tag);
        }
    }
    let initial = client_config(&cfg, &pulled.lock().expect("tunnel CRL lock").crls)?;
    let loaded = Arc::new(Mutex::new(Loaded { stamp: stamp(&cfg), pulled: 0, config: initial }));
    let listener = ambos_tls::net::bind(listen).map_err(|why| ProxyError::Bind { addr: listen, why })?;
    tracing::info!(
        "tunnel listening on {} -> mTLS {}{}",
        listener.local_addr().unwrap_or(listen),
        cfg.connect,
        if cfg.checks_revocation() { " (server checked against CRLs)" } else { "" }
    );
    let cfg = Arc::new(cfg);
    if let Some(url) = &cfg.crl_url {
        spawn_crl_pull(cfg.clone(), url.clone(), pulled.clone(), etag);
    }
    let expect = Arc::new(expect);
    {
        let (mut control, loaded, cfg, pulled) = (control.clone(), loaded.clone(), cfg.clone(), pulled.clone());
        tokio::spawn(async move {
            loop {
                control.reload_requested().await;
                ambos_tls::daemon::notify_reloading();
                refresh(&loaded, &cfg, &pulled, Some("SIGHUP"));
                ambos_tls::daemon::notify_ready();
            }
        });
    }
    ambos_tls::daemon::notify_ready();
    let shutdown = control.stopped();
    tokio::pin!(shutdown);
    while let Some((local, peer)) = ambos_tls::net::accept(&listener, shutdown.as_mut()).await {
        // Pick up renewed certificate files and new CRLs for this and later connections.
        let config = refresh(&loaded, &cfg, &pulled, None);
        let (cfg, name, expect) = (cfg.clone(), server_name.clone(), expect.clone());
        tokio::spawn(async move {
            if let Err(why) = forward(local, config, &cfg, name, expect.as_ref().as_ref()).await {
                tracing::warn!(%peer, "tunnel to {} failed: {why}", cfg.connect);
            }
        });
    }
    ambos_tls::daemon::notify_stopping();
    Ok(())
}

/// The client config for the next connection, rebuilt when a file or the
/// pulled CRLs changed, or always when `forced` names why (SIGHUP).
fn refresh(
    loaded: &Mutex<Loaded>,
    cfg: &TunnelConfig,
    pulled: &Mutex<Pulled>,
    forced: Option<&str>,
) -> Arc<rustls::ClientConfig> {
    let mut l = loaded.lock().expect("tunnel lock");
    let now = stamp(cfg);
    let generation = pulled.lock().expect("tunnel CRL lock").generation;
    if forced.is_some() || now != l.stamp || generation != l.pulled {
        let crls = pulled.lock().expect("tunnel CRL lock").crls.clone();
        let trigger = forced.unwrap_or("file change");
        match client_config(cfg, &crls) {
            Ok(c) => {
                l.config = c;
                tracing::info!(trigger, "reloaded the client certificate, CA and CRLs");
            }
            Err(e) => {
                tracing::error!(
                    trigger,
                    "cannot reload the client certificate, CA or CRLs, using the previous ones: {e}"
                )
            }
        }
        l.stamp = now;
        l.pulled = generation;
    }
    l.config.clone()
}

async fn forward(
    mut local: TcpStream,
    config: Arc<rustls::ClientConfig>,
    cfg: &TunnelConfig,
    server_name: ServerName<'static>,
    expect: Option<&Expected>,
) -> Result<(), String> {
    let _ = local.set_nodelay(true);
    let tcp = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(&cfg.connect))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    let connector = tokio_rustls::TlsConnector::from(config);
    let mut tls = tokio::time::timeout(Duration::from_secs(10), connector.connect(server_name, tcp))
        .await
        .map_err(|_| "TLS handshake timed out".to_string())?
        .map_err(|e| {
            let f = HandshakeFailure::from_io(&e);
            format!("TLS handshake failed ({}): {f}", f.label())
        })?;
    if let Some(expect) = expect {
        expect.check(tls.get_ref().1).map_err(|why| format!("server {why} (--expect)"))?;
    }
    tokio::io::copy_bidirectional(&mut local, &mut tls).await.map(|_| ()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(connect: &str, server_name: Option<&str>) -> TunnelConfig {
        TunnelConfig {
            listen: "127.0.0.1:8080".into(),
            connect: connect.into(),
            server_name: server_name.map(String::from),
            ..Default::default()
        }
    }

    fn name(connect: &str, server_name: Option<&str>) -> String {
        let (listen, name) = config(connect, server_name).endpoints().unwrap();
        assert_eq!(listen, "127.0.0.1:8080".parse().unwrap());
        name.to_str().into_owned()
    }

    #[test]
    fn the_server_name_is_the_host_of_connect_unless_given() {
        assert_eq!(name("api.acme.test:8443", None), "api.acme.test");
        assert_eq!(name("127.0.0.1:8443", None), "127.0.0.1");
        assert_eq!(name("[::1]:8443", None), "::1");
        assert_eq!(name("api.acme.test", None), "api.acme.test");
        assert_eq!(name("10.0.0.5:8443", Some("api.acme.test")), "api.acme.test");
        assert_eq!(name("10.0.0.5:8443", Some("[::1]")), "::1");
    }

    #[test]
    fn a_bad_listen_address_or_server_name_names_its_flag() {
        let err = |c: TunnelConfig| {
            let e = c.endpoints().unwrap_err();
            assert!(e.is_input(), "{e}");
            e.to_string()
        };
        assert_eq!(
            err(TunnelConfig { listen: "nope".into(), ..config("a:1", None) }),
            "--listen 'nope' is not an address"
        );
        assert_eq!(err(config("a b:1", None)), "--server-name 'a b' is not a DNS name or IP");
        assert_eq!(err(config("a:1", Some("x_y z"))), "--server-name 'x_y z' is not a DNS name or IP");
    }
}
