//! `signet-server token generate`: creates a join token for an agent.

use std::io::{self, Write};

use anyhow::Context;
use signet_core::duration::{parse_ttl, ttl_seconds};
use signet_core::ids::{parse_spiffe_id, to_proto_id};
use signet_proto::spire::api::server::agent::v1::CreateJoinTokenRequest;
use signet_proto::spire::api::server::agent::v1::agent_client::AgentClient;

use super::output::print_json;
use super::{CommonArgs, OutputFormat, client, rpc_error};

/// Join token commands.
#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Creates a join token and prints it as `Token: <value>`.
    Generate(GenerateArgs),
}

/// Flags of `token generate`.
#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// Also give agents attested with this token this SPIFFE ID, through a node alias entry.
    #[arg(long)]
    spiffe_id: Option<String>,
    /// How long the token can be used, in seconds or with a unit (600, 10m, 1h).
    #[arg(long, default_value = "600", allow_hyphen_values = true)]
    ttl: String,
    #[command(flatten)]
    common: CommonArgs,
}

pub(super) async fn execute(command: TokenCommand) -> anyhow::Result<()> {
    let TokenCommand::Generate(args) = command;
    let ttl = parse_ttl(&args.ttl)
        .and_then(ttl_seconds)
        .with_context(|| format!("invalid --ttl {:?}", args.ttl))?;
    let agent_id = args
        .spiffe_id
        .as_deref()
        .map(parse_spiffe_id)
        .transpose()
        .context("invalid --spiffe-id")?;

    let channel = client::connect(&args.common.admin_socket).await?;
    let token = AgentClient::new(channel)
        .create_join_token(CreateJoinTokenRequest {
            ttl,
            token: String::new(),
            agent_id: agent_id.as_ref().map(to_proto_id),
        })
        .await
        .map_err(|status| rpc_error("create the join token", &status))?
        .into_inner();

    match args.common.output {
        OutputFormat::Human => writeln!(io::stdout().lock(), "Token: {}", token.value)?,
        OutputFormat::Json => print_json(&serde_json::json!({
            "value": token.value,
            "expires_at": token.expires_at.to_string(),
        }))?,
    }
    Ok(())
}
