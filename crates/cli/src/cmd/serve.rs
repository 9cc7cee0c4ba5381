//! `ambos serve`: the CA's HTTPS API (`ambos_ca::api`).
use crate::cmd::ca_passphrase;
use crate::process::daemon;
use crate::Global;
use ambos_ca::api::{ServeFlags, ServeOptions};

pub fn serve(g: &Global, flags: ServeFlags) -> anyhow::Result<()> {
    let opts = ServeOptions::from_flags(&flags)?;
    let ca = g.open()?;
    let pass = if ca.keys_encrypted() { Some(ca_passphrase(g, false)?) } else { None };
    drop(ca);
    let store = g.store()?;
    daemon(|control| ambos_ca::api::serve(&store, pass.as_ref().map(|p| p.as_bytes()), opts, control))
}
