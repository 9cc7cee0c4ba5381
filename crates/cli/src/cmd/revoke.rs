//! `ambos revoke`: in the local store, or through `ambos serve` with an admin certificate.
use crate::input::input_error;
use crate::Global;
use ambos_agent::RemoteRevoke;
use ambos_pki::RevocationReason;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct RevokeArgs {
    /// Serial (hex, any case, colons allowed) or certificate name.
    target: String,
    /// Revoke through a remote `ambos serve` (needs an admin certificate) instead of the local store.
    #[arg(long, requires_all = ["root", "cert", "key"])]
    ca_url: Option<String>,
    /// CA root (PEM) for --ca-url.
    #[arg(long)]
    root: Option<PathBuf>,
    /// Admin client certificate for --ca-url.
    #[arg(long)]
    cert: Option<PathBuf>,
    /// Its key.
    #[arg(long)]
    key: Option<PathBuf>,
    /// unspecified | key-compromise | affiliation-changed | superseded | cessation-of-operation
    #[arg(long, default_value = "unspecified")]
    reason: String,
    #[arg(long)]
    json: bool,
}

pub fn revoke(g: &Global, a: RevokeArgs) -> anyhow::Result<()> {
    let reason: RevocationReason = a.reason.parse().map_err(|e: String| input_error(format!("--reason: {e}")))?;
    if let (Some(url), Some(root), Some(cert), Some(key)) = (a.ca_url, a.root, a.cert, a.key) {
        let o = RemoteRevoke { url, root, cert, key, serial: a.target, reason };
        let done = crate::process::small_runtime()?.block_on(ambos_agent::revoke_remote(&o))?;
        if a.json {
            println!("{}", done.answer);
        } else {
            println!("revoked {} '{}' ({}) at {}", done.serial, done.name, reason, o.url);
        }
        return Ok(());
    }
    let rec = g.open()?.revoke_target(&a.target, reason)?;
    if a.json {
        println!("{}", serde_json::json!({"serial": rec.serial, "name": rec.name, "reason": reason.as_str()}));
    } else {
        println!("revoked {} '{}' ({}); publish it with: ambos crl --out crl.pem", rec.serial, rec.name, reason);
    }
    Ok(())
}
