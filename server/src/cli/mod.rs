//! The operator commands of `signet-server` (`entry`, `token`, `agent`, `bundle`, `jwt`, `x509`,
//! `healthcheck`), which call the admin API over the admin socket.

mod agent;
mod bundle;
mod client;
mod entry;
mod entry_apply;
mod entry_explain;
mod entry_file;
mod entry_json;
mod jwt;
mod localauthority;
mod output;
mod token;
mod x509;

use std::io::{self, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use signet_core::duration::parse_ttl;
use signet_core::health::{SERVER_SERVICE, check_serving};
use tonic::Status;

use crate::config::DEFAULT_ADMIN_SOCKET;

pub use agent::AgentCommand;
pub use bundle::BundleCommand;
pub use entry::EntryCommand;
pub use entry_explain::{ExplainArgs, Verdict, explain};
pub use jwt::JwtCommand;
pub use localauthority::LocalAuthorityCommand;
pub use token::TokenCommand;
pub use x509::X509Command;

/// The operator subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum OperatorCommand {
    /// Manages attested agents.
    #[command(subcommand)]
    Agent(AgentCommand),
    /// Shows the trust bundle.
    #[command(subcommand)]
    Bundle(BundleCommand),
    /// Creates, shows, updates and deletes registration entries, one by one or from a file.
    #[command(subcommand)]
    Entry(EntryCommand),
    /// Checks through the gRPC health service on the admin socket that the server is ready: its
    /// datastore responds and its active X.509 CA and JWT signing key have not expired. Exits 0
    /// if it is, else 1.
    Healthcheck(HealthcheckArgs),
    /// Mints JWT-SVIDs.
    #[command(subcommand)]
    Jwt(JwtCommand),
    /// Shows and rotates the server's own X.509 CA and JWT signing key.
    #[command(subcommand)]
    Localauthority(LocalAuthorityCommand),
    /// Creates join tokens for agents.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Mints X509-SVIDs.
    #[command(subcommand)]
    X509(X509Command),
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

/// Arguments of `signet-server healthcheck`.
#[derive(Clone, Debug, clap::Args)]
pub struct HealthcheckArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Maximum time to wait for the server's answer, for example `10s`; must be above zero.
    #[arg(long, default_value = "10s", value_parser = parse_ttl)]
    pub timeout: Duration,
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
    let result = match command {
        OperatorCommand::Agent(command) => agent::execute(command).await,
        OperatorCommand::Bundle(command) => bundle::execute(command).await,
        OperatorCommand::Entry(command) => entry::execute(command).await,
        OperatorCommand::Healthcheck(args) => healthcheck(&args).await,
        OperatorCommand::Jwt(command) => jwt::execute(command).await,
        OperatorCommand::Localauthority(command) => localauthority::execute(command).await,
        OperatorCommand::Token(command) => token::execute(command).await,
        OperatorCommand::X509(command) => x509::execute(command).await,
    };
    // A reader that stops early, such as `head`, closes the pipe. That ends the output as the
    // reader requested, so it is no error.
    match result {
        Err(error) if is_broken_pipe(&error) => Ok(()),
        result => result,
    }
}

async fn healthcheck(args: &HealthcheckArgs) -> anyhow::Result<()> {
    let check = async {
        let channel = client::connect(&args.common.admin_socket).await?;
        check_serving(channel, SERVER_SERVICE, args.timeout)
            .await
            .context("server is unhealthy")
    };
    tokio::time::timeout(args.timeout, check)
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "server is unhealthy: no response on {} within {}",
                args.common.admin_socket.display(),
                humantime::format_duration(args.timeout)
            )
        })??;
    match args.common.output {
        OutputFormat::Human => writeln!(io::stdout().lock(), "Server is healthy.")?,
        OutputFormat::Json => output::print_json(&serde_json::json!({ "healthy": true }))?,
    }
    Ok(())
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|error| error.kind() == io::ErrorKind::BrokenPipe)
    })
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
