//! `signet-server agent list|show|evict|ban|count`.

use std::io::{self, Write};

use anyhow::{Context, bail};
use signet_core::ids::{parse_spiffe_id, to_proto_id};
use signet_proto::spire::api::server::agent::v1::agent_client::AgentClient;
use signet_proto::spire::api::server::agent::v1::{
    BanAgentRequest, CountAgentsRequest, DeleteAgentRequest, GetAgentRequest, ListAgentsRequest,
};
use signet_proto::spire::api::types;
use tonic::transport::Channel;

use super::output::{agent_json, agent_text, print_json};
use super::{CommonArgs, OutputFormat, client, rpc_error};

/// Attested agent commands.
#[derive(Debug, clap::Subcommand)]
pub enum AgentCommand {
    /// Bans an agent: it may neither renew its SVID nor attest again.
    Ban(AgentArgs),
    /// Counts attested agents.
    Count(CommonArgs),
    /// Evicts an agent: its SVID stops working and it must attest again.
    Evict(AgentArgs),
    /// Lists attested agents.
    List(CommonArgs),
    /// Shows one attested agent.
    Show(AgentArgs),
}

/// Flags of the commands about one agent.
#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// SPIFFE ID of the agent, for example spiffe://example.org/spire/agent/join_token/<token>.
    #[arg(long)]
    spiffe_id: String,
    #[command(flatten)]
    common: CommonArgs,
}

pub(super) async fn execute(command: AgentCommand) -> anyhow::Result<()> {
    match command {
        AgentCommand::Ban(args) => ban(args).await,
        AgentCommand::Count(common) => count(common).await,
        AgentCommand::Evict(args) => evict(args).await,
        AgentCommand::List(common) => list(common).await,
        AgentCommand::Show(args) => show(args).await,
    }
}

async fn ban(args: AgentArgs) -> anyhow::Result<()> {
    let (mut client, id) = connect(&args).await?;
    client
        .ban_agent(BanAgentRequest { id: Some(id) })
        .await
        .map_err(|status| rpc_error("ban the agent", &status))?;
    print_done("Agent banned successfully", &args)?;
    Ok(())
}

async fn evict(args: AgentArgs) -> anyhow::Result<()> {
    let (mut client, id) = connect(&args).await?;
    client
        .delete_agent(DeleteAgentRequest { id: Some(id) })
        .await
        .map_err(|status| rpc_error("evict the agent", &status))?;
    print_done("Agent evicted successfully", &args)?;
    Ok(())
}

async fn show(args: AgentArgs) -> anyhow::Result<()> {
    let (mut client, id) = connect(&args).await?;
    let agent = client
        .get_agent(GetAgentRequest {
            id: Some(id),
            output_mask: None,
        })
        .await
        .map_err(|status| rpc_error("show the agent", &status))?
        .into_inner();
    match args.common.output {
        OutputFormat::Human => write!(io::stdout().lock(), "{}", agent_text(&agent))?,
        OutputFormat::Json => print_json(&agent_json(&agent))?,
    }
    Ok(())
}

async fn list(common: CommonArgs) -> anyhow::Result<()> {
    let channel = client::connect(&common.admin_socket).await?;
    let agents = list_all(&mut AgentClient::new(channel)).await?;
    match common.output {
        OutputFormat::Human if agents.is_empty() => {
            writeln!(io::stdout().lock(), "No attested agents found")?;
        }
        OutputFormat::Human => {
            let noun = if agents.len() == 1 { "agent" } else { "agents" };
            let mut stdout = io::stdout().lock();
            writeln!(stdout, "Found {} attested {noun}:\n", agents.len())?;
            for agent in &agents {
                writeln!(stdout, "{}", agent_text(agent))?;
            }
        }
        OutputFormat::Json => print_json(&serde_json::json!({
            "agents": agents.iter().map(agent_json).collect::<Vec<_>>(),
        }))?,
    }
    Ok(())
}

async fn count(common: CommonArgs) -> anyhow::Result<()> {
    let channel = client::connect(&common.admin_socket).await?;
    let count = AgentClient::new(channel)
        .count_agents(CountAgentsRequest::default())
        .await
        .map_err(|status| rpc_error("count agents", &status))?
        .into_inner()
        .count;
    match common.output {
        OutputFormat::Human if count == 1 => writeln!(io::stdout().lock(), "1 attested agent")?,
        OutputFormat::Human => writeln!(io::stdout().lock(), "{count} attested agents")?,
        OutputFormat::Json => print_json(&serde_json::json!({ "count": count }))?,
    }
    Ok(())
}

async fn list_all(client: &mut AgentClient<Channel>) -> anyhow::Result<Vec<types::Agent>> {
    let mut agents = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_agents(ListAgentsRequest {
                page_token,
                ..ListAgentsRequest::default()
            })
            .await
            .map_err(|status| rpc_error("list agents", &status))?
            .into_inner();
        agents.extend(page.agents);
        if page.next_page_token.is_empty() {
            return Ok(agents);
        }
        page_token = page.next_page_token;
    }
}

async fn connect(args: &AgentArgs) -> anyhow::Result<(AgentClient<Channel>, types::Spiffeid)> {
    let id = parse_spiffe_id(&args.spiffe_id).context("invalid --spiffe-id")?;
    if !id.path().starts_with("/spire/agent/") {
        bail!(
            "invalid --spiffe-id {:?}: agent IDs have a path starting with /spire/agent/",
            args.spiffe_id
        );
    }
    let channel = client::connect(&args.common.admin_socket).await?;
    Ok((AgentClient::new(channel), to_proto_id(&id)))
}

fn print_done(message: &str, args: &AgentArgs) -> io::Result<()> {
    match args.common.output {
        OutputFormat::Human => writeln!(io::stdout().lock(), "{message}"),
        OutputFormat::Json => print_json(&serde_json::json!({})),
    }
}
