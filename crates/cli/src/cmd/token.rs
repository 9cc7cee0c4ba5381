//! `ambos token create`: one-time enrollment tokens.
use crate::cmd::{duration, NameArgs, ProfileArg};
use crate::input::input_error;
use crate::Global;
use ambos_ca::{CertificateAuthority, TokenOptions};
use ambos_pki::{Profile, San};
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
    profile: ProfileArg,
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
    let profile: Profile = a.profile.into();
    let mut sans = a.names.sans.iter().map(|s| s.parse::<San>()).collect::<Result<Vec<_>, _>>()?;
    if let Some(id) = &a.names.spiffe {
        ambos_pki::validate_spiffe_id(id).map_err(|why| input_error(format!("--spiffe '{id}': {why}")))?;
        sans.push(San::Uri(id.clone()));
    }
    let opts = TokenOptions {
        name: a.name.clone(),
        profile,
        sans,
        ous: a.names.ous.clone(),
        cert_ttl: match &a.cert_ttl {
            Some(t) => duration(t, "cert-ttl")?,
            None => profile.default_ttl(),
        },
        ttl: duration(&a.ttl, "ttl")?,
    };
    if a.count == 0 || a.count > 1_000_000 {
        return Err(input_error("--count must be between 1 and 1000000"));
    }
    let mut ca = CertificateAuthority::open(&g.dir)?;
    let secrets = ca.create_tokens(&opts, a.count)?;
    let mut out = String::with_capacity(secrets.len() * 72);
    for s in secrets {
        out.push_str(&s);
        out.push('\n');
    }
    print!("{out}");
    Ok(())
}
