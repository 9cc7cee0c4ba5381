//! `ambos renew` (once) and `ambos agent` (forever, on the schedule of
//! `ambos_ca::renewer`): renewal over mTLS with the current certificate.
use crate::cmd::CaConnection;
use crate::input::{input_error, read_input};
use crate::process::{init_logging, runtime, shutdown_signal};
use ambos_ca::renewer::{Renew, RenewOptions, Renewed, Renewer, Validity, RENEW_AT};
use ambos_files::write_identity;
use ambos_pki::PrivateKey;
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args)]
pub struct RenewArgs {
    #[command(flatten)]
    ca: CaConnection,
    /// Current certificate chain (replaced in place, atomically).
    #[arg(long)]
    cert: PathBuf,
    /// Current key (replaced in place, atomically, unless --keep-key).
    #[arg(long)]
    key: PathBuf,
    /// Keep the current key instead of generating a new one.
    #[arg(long)]
    keep_key: bool,
}

#[derive(Args)]
pub struct AgentArgs {
    #[command(flatten)]
    renew: RenewArgs,
    /// Command run (via sh -c) after each successful renewal, e.g. a reload.
    #[arg(long)]
    exec: Option<String>,
    /// Fraction of the lifetime after which to renew.
    #[arg(long, default_value_t = 2.0 / 3.0, hide = true)]
    renew_at: f64,
}

/// `--cert`, `--key`, `--keep-key` (and for the agent `--exec`, `--renew-at`) as plain options.
fn renew_options(a: &RenewArgs, exec: Option<String>, renew_at: f64) -> RenewOptions {
    RenewOptions { cert: a.cert.clone(), key: a.key.clone(), keep_key: a.keep_key, renew_at, exec }
}

/// One renewal over mTLS with the current files and `crls`; files change only on success.
async fn renew_once(
    o: &RenewOptions,
    ca: &CaConnection,
    crls: &ambos_proxy::tunnel::SourcedCrls,
) -> anyhow::Result<ambos_ca::client::Issued> {
    let chain = ambos_tls::load_certs(&o.cert)?;
    let current_key = ambos_tls::load_key(&o.key)?;
    let key_text =
        String::from_utf8(read_input(&o.key)?).map_err(|_| input_error(format!("{} is not PEM", o.key.display())))?;
    let old = PrivateKey::from_pem(&key_text, None).with_context(|| o.key.display().to_string())?;
    let id = ambos_tls::Identity::from_der(&chain[0])?;
    let client = ca.client(crls.clone(), Some((chain, current_key)))?;
    let (key, csr) = if o.keep_key {
        (old, None)
    } else {
        let key = old.key_type().generate()?;
        let csr = ambos_pki::create_csr(&key, id.cn.as_deref(), &[])?;
        (key, Some(ambos_pki::pem_encode("CERTIFICATE REQUEST", &csr)))
    };
    let issued = client.renew(csr.as_deref()).await?;
    write_identity(&o.key, &key, &o.cert, &issued.certificate)?;
    Ok(issued)
}

pub fn renew(a: RenewArgs) -> anyhow::Result<()> {
    let o = renew_options(&a, None, 2.0 / 3.0);
    let issued = runtime()?.block_on(async {
        let crls = a.ca.crls().await?;
        renew_once(&o, &a.ca, &crls).await
    })?;
    println!("renewed '{}' serial {} valid until {}", issued.name, issued.serial, issued.not_after);
    Ok(())
}

/// The agent's side of `ambos_ca::renewer`: files, CRLs, the CA client, signals.
struct Agent {
    opts: RenewOptions,
    ca: CaConnection,
    crls: ambos_proxy::tunnel::SourcedCrls,
}

impl Renew for Agent {
    type Error = anyhow::Error;

    fn validity(&self) -> anyhow::Result<Validity> {
        let chain = ambos_tls::load_certs(&self.opts.cert)?;
        let (_, cert) = x509_parser::parse_x509_certificate(&chain[0])
            .map_err(|e| input_error(format!("{}: {e}", self.opts.cert.display())))?;
        Ok(Validity {
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
        })
    }

    async fn refresh(&mut self) {
        if self.ca.revocation.sources().enabled() {
            match self.ca.crls().await {
                Ok(c) => self.crls = c,
                Err(e) => tracing::warn!("cannot read the CRLs again, using the previous ones: {e:#}"),
            }
        }
    }

    async fn renew(&mut self) -> anyhow::Result<Renewed> {
        let issued = renew_once(&self.opts, &self.ca, &self.crls).await?;
        Ok(Renewed { serial: issued.serial, not_after: issued.not_after })
    }

    async fn pause(&mut self, d: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => true,
            _ = shutdown_signal() => false,
        }
    }
}

pub fn agent(a: AgentArgs) -> anyhow::Result<()> {
    if !RENEW_AT.contains(&a.renew_at) {
        return Err(input_error("--renew-at must be between 0.1 and 0.95"));
    }
    init_logging();
    let opts = renew_options(&a.renew, a.exec, a.renew_at);
    runtime()?.block_on(async move {
        // Bad CRL files or URL: an error now. Later they are read again
        // before each renewal (a failure then keeps the previous ones).
        let crls = a.renew.ca.crls().await?;
        let mut agent = Agent { opts: opts.clone(), ca: a.renew.ca, crls };
        Renewer::new(opts).run(&mut agent).await
    })
}
