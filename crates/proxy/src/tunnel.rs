//! `ambos tunnel`: a local plaintext listener whose connections leave as
//! mTLS, for clients that cannot present a certificate themselves. The
//! certificate files are re-read when they change (the agent renews them).
use crate::policy::AllowRule;
use crate::ProxyError;
use ambos_tls::{HandshakeFailure, Identity};
use rustls::pki_types::ServerName;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::net::{TcpListener, TcpStream};

#[derive(Clone, Debug)]
pub struct TunnelConfig {
    pub listen: SocketAddr,
    /// host:port of the mTLS server.
    pub connect: String,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// CA certificate(s) the server must chain to.
    pub ca: PathBuf,
    pub server_name: ServerName<'static>,
    /// The server's identity must match this (e.g. a SPIFFE ID), beyond the CA check.
    pub expect: Option<String>,
}

struct Loaded {
    stamp: (Option<SystemTime>, Option<SystemTime>),
    config: Arc<rustls::ClientConfig>,
}

fn stamp(cfg: &TunnelConfig) -> (Option<SystemTime>, Option<SystemTime>) {
    let m = |p: &PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    (m(&cfg.cert), m(&cfg.key))
}

fn client_config(cfg: &TunnelConfig) -> Result<Arc<rustls::ClientConfig>, ProxyError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in ambos_tls::load_certs(&cfg.ca)? {
        roots.add(c).map_err(|e| ProxyError::Invalid(format!("{}: {e}", cfg.ca.display())))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(ambos_tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ProxyError::Invalid(e.to_string()))?
        .with_root_certificates(roots)
        .with_client_auth_cert(ambos_tls::load_certs(&cfg.cert)?, ambos_tls::load_key(&cfg.key)?)
        .map_err(|e| ProxyError::Invalid(format!("{} / {}: {e}", cfg.cert.display(), cfg.key.display())))?;
    Ok(Arc::new(config))
}

/// Runs until `shutdown` resolves.
pub async fn run(cfg: TunnelConfig, shutdown: impl std::future::Future<Output = ()>) -> Result<(), ProxyError> {
    ambos_tls::install_default_provider();
    let expect = cfg
        .expect
        .as_deref()
        .map(AllowRule::parse)
        .transpose()
        .map_err(|e| ProxyError::Invalid(format!("--expect: {e}")))?;
    let loaded = Arc::new(Mutex::new(Loaded { stamp: stamp(&cfg), config: client_config(&cfg)? }));
    let listener =
        TcpListener::bind(cfg.listen).await.map_err(|source| ProxyError::Bind { addr: cfg.listen, source })?;
    tracing::info!("tunnel listening on {} -> mTLS {}", listener.local_addr().unwrap_or(cfg.listen), cfg.connect);
    let cfg = Arc::new(cfg);
    let expect = Arc::new(expect);
    tokio::pin!(shutdown);
    loop {
        let (local, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = &mut shutdown => return Ok(()),
        };
        // Pick up renewed certificate files for this and later connections.
        let config = {
            let mut l = loaded.lock().expect("tunnel lock");
            let now = stamp(&cfg);
            if now != l.stamp {
                match client_config(&cfg) {
                    Ok(c) => {
                        l.config = c;
                        tracing::info!("reloaded {} and {}", cfg.cert.display(), cfg.key.display());
                    }
                    Err(e) => tracing::error!("cannot reload the client certificate, using the previous one: {e}"),
                }
                l.stamp = now;
            }
            l.config.clone()
        };
        let cfg = cfg.clone();
        let expect = expect.clone();
        tokio::spawn(async move {
            if let Err(why) = forward(local, config, &cfg, expect.as_ref().as_ref()).await {
                tracing::warn!(%peer, "tunnel to {} failed: {why}", cfg.connect);
            }
        });
    }
}

async fn forward(
    mut local: TcpStream,
    config: Arc<rustls::ClientConfig>,
    cfg: &TunnelConfig,
    expect: Option<&AllowRule>,
) -> Result<(), String> {
    let _ = local.set_nodelay(true);
    let tcp = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(&cfg.connect))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    let connector = tokio_rustls::TlsConnector::from(config);
    let mut tls = tokio::time::timeout(Duration::from_secs(10), connector.connect(cfg.server_name.clone(), tcp))
        .await
        .map_err(|_| "TLS handshake timed out".to_string())?
        .map_err(|e| HandshakeFailure::from_io(&e).to_string())?;
    if let Some(rule) = expect {
        let der = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).ok_or("server sent no certificate")?;
        let id = Identity::from_der(der).map_err(|e| e.to_string())?;
        if !rule.matches(Some(&id)) {
            return Err(format!("server identity {} does not match --expect", id.display_name()));
        }
    }
    tokio::io::copy_bidirectional(&mut local, &mut tls).await.map(|_| ()).map_err(|e| e.to_string())
}
