//! `ambos token create`: one-time enrollment tokens.
use crate::cmd::{duration, NameArgs};
use crate::Global;
use ambos_ca::TokenOptions;
use ambos_pki::Profile;
use clap::{Args, Subcommand};

#[derive(Subcommand)]
pub enum TokenKind {
    /// Create a one-time enrollment token bound to a name; prints the token alone.
    #[command(
        after_help = "Examples:\n  ambos token create web --spiffe spiffe://acme.test/web\n  ambos token create api.acme.test --profile server --san ip:10.0.0.5 --ttl 1h"
    )]
    Create(TokenCreateArgs),
}

#[derive(Args)]
pub struct TokenCreateArgs {
    /// Name the certificate will carry (CN; for servers also the first DNS SAN).
    name: String,
    #[arg(long, value_enum, default_value = "client")]
    profile: Profile,
    #[command(flatten)]
    names: NameArgs,
    /// How long the token can be used.
    #[arg(long, default_value = "10m")]
    ttl: String,
    /// Lifetime of the certificate it buys (default 30d servers, 24h clients).
    #[arg(long)]
    cert_ttl: Option<String>,
    /// Create this many tokens with the same terms (one per line), e.g. for a fleet.
    #[arg(long, default_value_t = 1)]
    count: usize,
}

pub fn token(g: &Global, kind: TokenKind) -> anyhow::Result<()> {
    let TokenKind::Create(a) = kind;
    let profile = a.profile;
    let (sans, ous) = ambos_pki::parse_names(&a.names.sans, a.names.spiffe.as_deref(), &a.names.ous)?;
    let opts = TokenOptions {
        name: a.name.clone(),
        profile,
        sans,
        ous,
        cert_ttl: a.cert_ttl.as_deref().map(|t| duration(t, "cert-ttl")).transpose()?.unwrap_or(profile.default_ttl()),
        ttl: duration(&a.ttl, "ttl")?,
    };
    let mut ca = g.open()?;
    let secrets = ca.create_tokens(&opts, a.count)?;
    print!("{}", secrets.iter().map(|s| format!("{s}\n")).collect::<String>());
    Ok(())
}
