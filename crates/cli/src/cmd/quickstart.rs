//! `ambos quickstart`: the whole system on one machine, narrated by
//! `ambos_quickstart::narrate`; then the proxy runs until Ctrl-C (or not, with --exit).
use ambos_quickstart::QuickstartOptions;
use clap::Args;
use std::io::IsTerminal;
use std::path::PathBuf;

#[derive(Args)]
pub struct QuickstartArgs {
    /// Where to put the CA, certificates, proxy.toml and audit log.
    #[arg(long, default_value = "ambos-quickstart")]
    dir: PathBuf,
    /// Stop everything after the demo instead of waiting for Ctrl-C.
    #[arg(long)]
    exit: bool,
}

pub fn run(a: QuickstartArgs) -> anyhow::Result<()> {
    let mut out = std::io::stdout();
    let done = ambos_quickstart::narrate(&QuickstartOptions { dir: a.dir, color: out.is_terminal() }, &mut out)?;
    if !a.exit {
        println!("\nThe proxy keeps running on https://localhost:{}; Ctrl-C stops it.", done.port);
        crate::process::wait_for_stop()?;
    }
    Ok(done.finish(&mut out)?)
}
