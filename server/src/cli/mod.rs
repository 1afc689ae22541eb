//! The operator commands of `signet-server` (`entry`, `token`, `agent`, `bundle`, `healthcheck`),
//! which call the admin API over the admin socket.

mod agent;
mod bundle;
mod client;
mod entry;
mod entry_json;
mod output;
mod token;

use std::path::PathBuf;

use tonic::Status;

use crate::config::DEFAULT_ADMIN_SOCKET;

pub use agent::AgentCommand;
pub use bundle::BundleCommand;
pub use entry::EntryCommand;
pub use token::TokenCommand;

/// The operator subcommands.
#[derive(Debug, clap::Subcommand)]
#[expect(
    clippy::large_enum_variant,
    reason = "parsed once per process, so the size does not matter"
)]
pub enum OperatorCommand {
    /// Manages attested agents.
    #[command(subcommand)]
    Agent(AgentCommand),
    /// Shows the trust bundle.
    #[command(subcommand)]
    Bundle(BundleCommand),
    /// Creates, shows, updates and deletes registration entries.
    #[command(subcommand)]
    Entry(EntryCommand),
    /// Checks that the server responds on its admin socket.
    Healthcheck(CommonArgs),
    /// Creates join tokens for agents.
    #[command(subcommand)]
    Token(TokenCommand),
}

/// Flags every operator command takes.
#[derive(Clone, Debug, clap::Args)]
pub struct CommonArgs {
    /// Unix socket of the server's admin API.
    #[arg(long, env = "SIGNET_SERVER_ADMIN_SOCKET", default_value = DEFAULT_ADMIN_SOCKET)]
    pub admin_socket: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    pub output: OutputFormat,
}

/// Output format of a command.
#[derive(Clone, Copy, Debug, Eq, PartialEq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Text for people, in SPIRE's layout.
    Human,
    /// JSON in the shape of SPIRE's API messages.
    Json,
}

/// Runs an operator command and prints its result to stdout.
///
/// # Errors
///
/// A one-line description of what failed: bad input (naming the value), an unreachable server or
/// an error the server returned.
pub async fn execute(command: OperatorCommand) -> anyhow::Result<()> {
    match command {
        OperatorCommand::Agent(command) => agent::execute(command).await,
        OperatorCommand::Bundle(command) => bundle::execute(command).await,
        OperatorCommand::Entry(command) => entry::execute(command).await,
        OperatorCommand::Healthcheck(common) => healthcheck(&common).await,
        OperatorCommand::Token(command) => token::execute(command).await,
    }
}

async fn healthcheck(common: &CommonArgs) -> anyhow::Result<()> {
    let channel = client::connect(&common.admin_socket).await?;
    client::fetch_bundle(channel)
        .await
        .map_err(|error| anyhow::anyhow!("server is unhealthy: {error:#}"))?;
    match common.output {
        OutputFormat::Human => println!("Server is healthy."),
        OutputFormat::Json => println!("{}", serde_json::json!({ "healthy": true })),
    }
    Ok(())
}

/// Turns a failed RPC into an error that shows the server's message without gRPC details.
fn rpc_error(action: &str, status: &Status) -> anyhow::Error {
    anyhow::anyhow!("failed to {action}: {}", status_text(status))
}

fn status_text(status: &Status) -> String {
    if status.message().is_empty() {
        format!("{:?}", status.code())
    } else {
        status.message().to_owned()
    }
}
