//! `ambos proxy`: the mTLS proxy, from proxy.toml or from flags; `--check` says what it loaded.
use crate::process;
use ambos_proxy::{ProxyConfig, ProxyFlags};
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct ProxyArgs {
    /// proxy.toml (see docs/proxy.md); the flags below are the simple alternative.
    #[arg(long, conflicts_with_all = ["listen", "upstream", "cert", "key", "client_ca", "crl", "allow", "tcp", "crl_url", "revocation", "unknown_revocation", "crl_grace", "crl_from_distribution_points", "upstream_ca", "upstream_cert", "upstream_key", "upstream_server_name", "upstream_expect"])]
    config: Option<PathBuf>,
    #[command(flatten)]
    flags: ProxyFlags,
    /// Validate the configuration and its files, then exit.
    #[arg(long)]
    check: bool,
}

pub fn run(a: ProxyArgs) -> anyhow::Result<()> {
    let config = match &a.config {
        Some(path) => ProxyConfig::from_file(path)?,
        None => ProxyConfig::from_flags(&a.flags)?,
    };
    // Every file is loaded now, so a bad one is reported before we listen.
    let report = match a.check {
        true => ambos_proxy::check::check(&config),
        false => ambos_proxy::check::describe(&config),
    };
    let report = match report {
        // One `error:` line per problem; the last is the command's error (exit 2).
        Err(ambos_proxy::ProxyError::Check(mut lines)) if lines.len() > 1 => {
            let last = lines.split_off(lines.len() - 1);
            lines.iter().for_each(|l| eprintln!("error: {l}"));
            return Err(ambos_proxy::ProxyError::Check(last).into());
        }
        other => other?,
    };
    if a.check {
        print!("{report}");
        return Ok(());
    }
    process::daemon(|control| ambos_proxy::run(config, control))
}
