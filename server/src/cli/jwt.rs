//! `signet-server jwt mint`: signs a JWT-SVID for any SPIFFE ID of the trust domain.

use std::path::PathBuf;

use anyhow::Context;
use serde_json::json;
use signet_core::duration::{parse_ttl, ttl_seconds};
use signet_core::ids::{parse_spiffe_id, to_proto_id};
use signet_proto::spire::api::server::svid::v1::MintJwtsvidRequest;
use signet_proto::spire::api::server::svid::v1::svid_client::SvidClient;

use super::output::print_json;
use super::{CommonArgs, OutputFormat, client, rpc_error};

/// JWT-SVID commands.
#[derive(Debug, clap::Subcommand)]
pub enum JwtCommand {
    /// Mints a JWT-SVID and prints the token, or writes it to a file with --write.
    Mint(MintArgs),
}

/// Flags of `jwt mint`.
#[derive(Debug, clap::Args)]
pub struct MintArgs {
    /// SPIFFE ID of the token's subject (`sub`), in the server's trust domain.
    #[arg(long)]
    spiffe_id: String,
    /// Audience (`aud`) of the token. Repeat the flag for several audiences.
    #[arg(long, required = true)]
    audience: Vec<String>,
    /// Lifetime of the token, in seconds or with a unit (300, 5m), cut to the signing key's
    /// expiry [default: the server's default JWT-SVID TTL].
    #[arg(long)]
    ttl: Option<String>,
    /// File to write the token to (mode 0600) instead of printing it.
    #[arg(long, value_name = "FILE")]
    write: Option<PathBuf>,
    #[command(flatten)]
    common: CommonArgs,
}

pub(super) async fn execute(command: JwtCommand) -> anyhow::Result<()> {
    let JwtCommand::Mint(args) = command;
    let spiffe_id = parse_spiffe_id(&args.spiffe_id)
        .with_context(|| format!("invalid --spiffe-id {:?}", args.spiffe_id))?;
    let ttl = match &args.ttl {
        Some(text) => parse_ttl(text)
            .and_then(ttl_seconds)
            .with_context(|| format!("invalid --ttl {text:?}"))?,
        None => 0,
    };

    let channel = client::connect(&args.common.admin_socket).await?;
    let svid = SvidClient::new(channel)
        .mint_jwtsvid(MintJwtsvidRequest {
            id: Some(to_proto_id(&spiffe_id)),
            audience: args.audience,
            ttl,
        })
        .await
        .map_err(|status| rpc_error("mint the JWT-SVID", &status))?
        .into_inner()
        .svid
        .context("the server returned no JWT-SVID")?;

    // The token is printed only because the operator asked for it. It is never logged.
    if let Some(path) = &args.write {
        signet_core::fs::write_secret(path, svid.token.as_bytes())
            .with_context(|| format!("failed to write the JWT-SVID to {}", path.display()))?;
    }
    match (args.common.output, &args.write) {
        (OutputFormat::Human, None) => println!("{}", svid.token),
        (OutputFormat::Human, Some(path)) => {
            println!("JWT-SVID written to {}", path.display());
        }
        (OutputFormat::Json, path) => print_json(&json!({
            "token": if path.is_none() { Some(&svid.token) } else { None },
            "path": path,
            "spiffe_id": spiffe_id.to_string(),
            "issued_at": svid.issued_at.to_string(),
            "expires_at": svid.expires_at.to_string(),
        }))?,
    }
    Ok(())
}
