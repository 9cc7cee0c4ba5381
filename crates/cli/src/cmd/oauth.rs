//! `ambos oauth`: who may get access tokens from `ambos serve` (grants in
//! the store), its token-signing key, and a token for scripts.
use crate::cmd::ca_passphrase;
use crate::process::runtime;
use crate::Global;
use ambos_agent::CaConnection;
use ambos_ca::oauth::Grants;
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum OauthKind {
    /// Let an identity (SPIFFE ID, else DNS name, else CN of its certificate) get tokens for an audience.
    #[command(
        after_help = "Example:\n  ambos oauth allow spiffe://acme.test/checkout --audience payments --scope payments:write"
    )]
    Allow {
        identity: String,
        #[arg(long)]
        audience: String,
        /// A scope the tokens may carry (repeatable).
        #[arg(long = "scope")]
        scopes: Vec<String>,
    },
    /// List the grants, revoked ones too.
    #[command(after_help = "Example:\n  ambos oauth list --json")]
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a grant: no new tokens from it (tokens already issued live until they expire).
    #[command(alias = "deny")]
    #[command(after_help = "Example:\n  ambos oauth revoke 3")]
    Revoke { id: i64 },
    /// New token-signing key; the old one stays published until its last token has expired.
    #[command(after_help = "Example:\n  ambos oauth rotate-key   # a running `ambos serve` signs with it within 2 s")]
    RotateKey,
    /// Get an access token bound to your certificate from `ambos serve`, and print it.
    #[command(
        after_help = "Example:\n  TOKEN=$(ambos oauth token --ca-url https://ca:9443 --root ca.crt --cert alice.crt --key alice.key --audience payments)\n  curl --cert alice.crt --key alice.key --cacert ca.crt -H \"Authorization: Bearer $TOKEN\" https://api:8443/"
    )]
    Token(TokenArgs),
}

#[derive(Args)]
pub struct TokenArgs {
    #[command(flatten)]
    ca: CaConnection,
    /// Your certificate chain and key (the token is bound to this certificate).
    #[arg(long)]
    cert: PathBuf,
    #[arg(long)]
    key: PathBuf,
    /// Space-separated scopes to ask for (default: all granted for the audience).
    #[arg(long)]
    scope: Option<String>,
    #[arg(long)]
    audience: Option<String>,
    /// Print the token endpoint's whole JSON answer.
    #[arg(long)]
    json: bool,
}

pub fn oauth(g: &Global, kind: OauthKind) -> anyhow::Result<()> {
    let mut ca = match kind {
        OauthKind::Token(a) => return token(a),
        _ => g.open()?,
    };
    match kind {
        OauthKind::Allow { identity, audience, scopes } => {
            let id = ca.allow(&identity, &audience, &scopes)?.id;
            println!("grant {id}: {identity} may get tokens for {audience} (scope '{}')", scopes.join(" "));
        }
        OauthKind::List { json: true } => println!("{}", serde_json::to_string_pretty(&Grants(ca.grants()?).json())?),
        OauthKind::List { json: false } => print!("{}", Grants(ca.grants()?)),
        OauthKind::Revoke { id } => println!("revoked grant {id} of {}", ca.revoke_grant(id)?.identity),
        OauthKind::RotateKey => {
            let pass = if ca.keys_encrypted() { Some(ca_passphrase(g, false)?) } else { None };
            let kid = ca.rotate_signing_key(pass.as_ref().map(|p| p.as_bytes()))?;
            println!("new token-signing key {kid}; the previous one stays published for an hour");
        }
        OauthKind::Token(_) => {}
    }
    Ok(())
}

fn token(a: TokenArgs) -> anyhow::Result<()> {
    let (scope, audience) = (a.scope.as_deref(), a.audience.as_deref());
    let answer = runtime()?.block_on(ambos_agent::access_token(&a.ca.endpoint(), &a.cert, &a.key, scope, audience))?;
    match a.json {
        true => println!("{answer}"),
        false => println!("{}", answer["access_token"].as_str().unwrap_or_default()),
    }
    Ok(())
}
