//! `ambos store`: the schema of a PostgreSQL store (`--store postgres://...`)
//! and moving a CA between stores.
use crate::Global;
use ambos_store::StoreLocation;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum StoreKind {
    /// Apply the schema migrations this ambos knows (idempotent; nodes refuse a schema they do not know).
    #[command(
        after_help = "Example:\n  ambos store migrate --store 'postgres://ambos@db.internal/ambos?sslmode=verify-full&sslrootcert=db-ca.pem'"
    )]
    Migrate,
    /// Move a CA to another store (which must hold none): serials, revocations, tokens and CRL numbers unchanged.
    #[command(
        after_help = "Example:\n  ambos store copy --from sqlite:ambos-data --to 'postgres://ambos@db.internal/ambos?sslmode=disable'"
    )]
    Copy {
        /// sqlite:DIR or postgres://...
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
    },
}

pub fn store(g: &Global, kind: StoreKind) -> anyhow::Result<()> {
    match kind {
        StoreKind::Migrate => {
            let at = g.store()?;
            let (from, to) = ambos_ca::migrate_store(&at)?;
            println!("schema of {}: version {from} -> {to}", at.shown());
        }
        StoreKind::Copy { from, to } => {
            let at = |s: &str| StoreLocation::new(std::path::Path::new(""), Some(s));
            let (from, to) = (at(&from)?, at(&to)?);
            let c = ambos_ca::copy_store(&from, &to)?;
            let what = format!("{} certificates ({} revoked), {} tokens", c.certificates, c.revoked, c.tokens);
            println!("copied {what} and the CRL numbers to {}", to.shown());
        }
    }
    Ok(())
}
