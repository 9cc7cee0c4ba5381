//! `ambos store`: the schema of a PostgreSQL store (`--store postgres://...`).
use crate::Global;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum StoreKind {
    /// Apply the schema migrations this ambos knows (idempotent; nodes refuse a schema they do not know).
    #[command(
        after_help = "Example:\n  ambos store migrate --store 'postgres://ambos@db.internal/ambos?sslmode=verify-full&sslrootcert=db-ca.pem'"
    )]
    Migrate,
}

pub fn store(g: &Global, kind: StoreKind) -> anyhow::Result<()> {
    match kind {
        StoreKind::Migrate => {
            let at = g.store()?;
            let (from, to) = ambos_ca::migrate_store(&at)?;
            println!("schema of {}: version {from} -> {to}", at.shown());
        }
    }
    Ok(())
}
