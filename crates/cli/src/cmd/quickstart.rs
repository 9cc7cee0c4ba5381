//! `ambos quickstart`: the whole system on one machine (`ambos_quickstart`),
//! narrated: an allowed call, a call without a certificate, a call the
//! policy denies, and a call after revocation.
use crate::cmd::probe;
use crate::input::input_error;
use ambos_quickstart::Demo;
use clap::Args;
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
    let dir = &a.dir;
    if dir.join("ca").exists() {
        return Err(input_error(format!("{} already holds a quickstart: remove it or pass --dir", dir.display())));
    }
    ambos_files::ensure_dir(&dir.join("certs"))?;
    println!("== 1. a CA, a server certificate and two client certificates in {}", dir.display());
    let mut demo = Demo::create(dir)?;
    println!("== 2. an upstream service and `ambos proxy` in front of it (only alice allowed)");
    let proxy = demo.start_proxy()?;
    let port = proxy.port;
    println!("   proxy on https://localhost:{port} -> upstream http://127.0.0.1:{}\n", proxy.upstream);
    let mut as_expected = true;
    let mut show = |demo: &Demo, title: &str, who: Option<&str>, expect_ok: bool| -> anyhow::Result<()> {
        println!("== {title}");
        println!("   by hand: {}", demo.curl(who));
        let r = demo.call(who)?;
        probe::print(&r);
        println!();
        as_expected &= r.ok == expect_ok;
        Ok(())
    };
    show(&demo, "3. alice, who is on the allow list: allowed", Some("alice"), true)?;
    show(&demo, "4. no client certificate: refused in the TLS handshake", None, false)?;
    show(
        &demo,
        "5. bob, a valid certificate but not on the allow list: 403 from the route policy",
        Some("bob"),
        false,
    )?;
    demo.revoke_alice()?;
    show(&demo, "6. alice again, after `ambos revoke alice` and a new CRL: refused, revoked", Some("alice"), false)?;
    println!("== files");
    for (path, what) in demo.files() {
        println!("   {:<44} {what}", path.display().to_string());
    }
    println!(
        "   more: ambos --dir {} list; ambos probe localhost:{port} --ca {}/ca.crt --cert ... --key ...",
        dir.join("ca").display(),
        demo.certs.display()
    );
    if !a.exit {
        println!("\nThe proxy keeps running on https://localhost:{port}; Ctrl-C stops it.");
        crate::process::small_runtime()?.block_on(crate::process::shutdown_signal());
    }
    demo.stop()?;
    if !as_expected {
        anyhow::bail!("the demo did not go as expected (see above)");
    }
    println!("quickstart: all four calls behaved as expected");
    Ok(())
}
