//! `ambos issue server|client`: one certificate from flags, or many from
//! a batch file (`ambos_pki::parse_batch`), with locally generated keys.
use crate::cmd::{key_type, open_authority, NameArgs};
use crate::input::{input_error, read_input};
use crate::Global;
use ambos_agent::P12Out;
use ambos_ca::OffsetDateTime;
use ambos_files::LeafFiles;
use ambos_pki::{LeafRequest, LeafSpec, Profile};
use ambos_store::AuthorityRole;
use clap::{Args, Subcommand};
use std::path::PathBuf;

/// `ambos issue server|client NAME ...` or `ambos issue --profile P NAME ...`.
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct IssueArgs {
    #[command(subcommand)]
    kind: Option<IssueKind>,
    /// server, client or server,client (both EKUs), instead of the subcommand.
    #[arg(long, required = true)]
    profile: Option<Profile>,
    #[command(flatten)]
    leaf: LeafArgs,
}

#[derive(Subcommand)]
pub enum IssueKind {
    /// A TLS server certificate (EKU serverAuth); NAME, if a host name or IP, is its first SAN.
    Server(LeafArgs),
    /// A TLS client certificate (EKU clientAuth).
    Client(LeafArgs),
}

#[derive(Args)]
pub struct LeafArgs {
    /// Common name and file stem: writes NAME.crt, NAME.key, ca.crt.
    #[arg(required_unless_present = "batch")]
    name: Option<String>,
    #[command(flatten)]
    names: NameArgs,
    /// Organization (defaults to the CA's name).
    #[arg(long = "o")]
    organization: Option<String>,
    /// Lifetime (default 30d for servers, 24h for clients), capped by the intermediate's.
    #[arg(long)]
    ttl: Option<String>,
    /// Key type of the new key (default ec-p256).
    #[arg(long, default_value = "ec-p256")]
    key_type: String,
    /// Output directory.
    #[arg(long, default_value = ".")]
    out: PathBuf,
    #[command(flatten)]
    p12: P12Out,
    /// Issue many: CSV lines `name,profile,sans` (sans separated by spaces) or JSON lines.
    #[arg(long, conflicts_with_all = ["name", "sans", "spiffe"])]
    batch: Option<PathBuf>,
    /// Replace existing NAME.crt / NAME.key files.
    #[arg(long)]
    force: bool,
    /// Start of validity instead of now: +DURATION from now (e.g. +1h) or RFC 3339.
    #[arg(long, value_name = "WHEN")]
    not_before: Option<String>,
    /// Client certificate that may use the CA API's admin endpoints (revoke, list).
    #[arg(long, conflicts_with = "batch")]
    admin: bool,
    #[arg(long)]
    json: bool,
}

pub fn issue(g: &Global, args: IssueArgs) -> anyhow::Result<()> {
    let (profile, a) = match args.kind {
        Some(IssueKind::Server(a)) => (Profile::Server, a),
        Some(IssueKind::Client(a)) => (Profile::Client, a),
        None => (args.profile.unwrap_or(Profile::Client), args.leaf),
    };
    let key_type = key_type(&a.key_type)?;
    let now = OffsetDateTime::now_utc();
    let not_before = a.not_before.as_deref().map(|w| LeafRequest::parse_not_before(w, now)).transpose()?;
    let spec = LeafSpec {
        name: a.name.clone().unwrap_or_default(),
        profile,
        sans: a.names.sans.clone(),
        spiffe: a.names.spiffe.clone(),
        ous: a.names.ous.clone(),
        organization: a.organization.clone(),
        ttl: a.ttl.clone(),
        key_type,
    };
    let mut requests = match &a.batch {
        Some(file) => {
            let text = String::from_utf8(read_input(file)?)
                .map_err(|_| input_error(format!("{} is not UTF-8 text", file.display())))?;
            ambos_pki::parse_batch(&text, &file.display().to_string(), &spec)?
        }
        None => vec![LeafRequest::from_spec(&spec)?],
    };
    if a.admin && !profile.client_auth() {
        return Err(input_error("--admin is for client certificates"));
    }
    for r in &mut requests {
        r.not_before = not_before;
    }
    let outputs =
        LeafFiles { dir: a.out.clone(), p12_password: a.p12.password()?.map(|p| p.0), durable: a.batch.is_none() };
    if let Some(p) = outputs.existing(requests.iter().map(|r| r.name.as_str())).filter(|_| !a.force) {
        return Err(input_error(format!("{} exists; use --force to replace it", p.display())));
    }
    // Unlock (and fail on a wrong passphrase) before anything is issued.
    let (mut ca, signer) = open_authority(g, AuthorityRole::Intermediate)?;
    outputs.write_root(ca.root_der())?;
    // A batch: keys and signatures per certificate, one durable transaction per chunk.
    let batch = a.batch.is_some();
    let bar = if batch { indicatif::ProgressBar::new(requests.len() as u64) } else { indicatif::ProgressBar::hidden() };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} issuing [{bar:40}] {pos}/{len} {per_sec} eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    for chunk in requests.chunks(500) {
        for c in &ca.issue(&signer, chunk)? {
            if a.admin {
                ca.set_admin(&c.serial)?;
            }
            let out = outputs.write(&signer, c)?;
            match (a.json, batch) {
                (true, true) => println!("{}", serde_json::to_string(&out)?),
                (true, false) => println!("{}", serde_json::to_string_pretty(&out)?),
                (false, false) => print!("{out}"),
                (false, true) => {}
            }
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    if batch {
        ambos_files::sync_dir(&a.out);
        if !a.json {
            println!("issued {} certificates into {}", requests.len(), a.out.display());
        }
    }
    Ok(())
}
