//! Command line of `signet-agent`: `run` starts the agent, `api` and `healthcheck` call a running
//! agent's Workload API the way a workload does.

mod explain;
mod healthcheck;
mod jwt;
mod x509;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use signet_core::duration::parse_ttl;
use spiffe::WorkloadApiClient;
use spiffe::transport::Endpoint;

use crate::config::{DEFAULT_SOCKET_PATH, RunArgs};
use crate::helper::HelperArgs;

pub use self::explain::{ExplainArgs, Verdict, explain};
pub use self::healthcheck::healthcheck;

/// Environment variable that SPIFFE clients read the Workload API endpoint from, for example
/// `unix:///tmp/signet-agent/public/api.sock`.
pub const ENDPOINT_SOCKET_ENV: &str = "SPIFFE_ENDPOINT_SOCKET";

/// Signet agent: attests this node to the Signet server and serves the SPIFFE Workload API.
#[derive(Debug, clap::Parser)]
#[command(name = "signet-agent", version)]
pub struct Cli {
    /// Subcommand to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands of `signet-agent`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Runs the agent: attests the node, keeps workload SVIDs fresh and serves the Workload API.
    Run(RunArgs),
    /// Calls the Workload API as a workload would.
    #[command(subcommand)]
    Api(ApiCommand),
    /// Checks through the gRPC health service on the Workload API socket that the agent is ready
    /// (attested and synced). Exits 0 if it is, else 1.
    Healthcheck(HealthcheckArgs),
    /// Explains which identities a process (or a process of a uid) receives from the running
    /// agent, and which selectors the other entries miss. Exits 0 if an identity is issued, 1 if
    /// none is (also when its X509-SVID expired unrenewed), 2 if the agent cannot be reached or
    /// the PID does not exist, and 64 for a usage error.
    Explain(ExplainArgs),
    /// Writes the X509-SVID, key and bundle (and optionally JWT-SVIDs and the JWT bundle) to
    /// files and signals or runs a command after each rotation, for software that cannot speak
    /// the Workload API.
    Helper(HelperArgs),
}

/// Subcommands of `signet-agent api`.
#[derive(Debug, clap::Subcommand)]
pub enum ApiCommand {
    /// Fetches once and prints what the agent returned.
    #[command(subcommand)]
    Fetch(FetchCommand),
    /// Has the agent validate an SVID.
    #[command(subcommand)]
    Validate(ValidateCommand),
    /// Prints every X509-SVID update as it arrives, until interrupted.
    Watch(WatchArgs),
}

/// Subcommands of `signet-agent api fetch`.
#[derive(Debug, clap::Subcommand)]
pub enum FetchCommand {
    /// Fetches JWT-SVIDs for an audience and prints their tokens.
    Jwt(FetchJwtArgs),
    /// Fetches the JWT bundles (JWK Sets) the caller may use to verify JWT-SVIDs.
    JwtBundle(FetchJwtBundleArgs),
    /// Fetches the caller's X509-SVIDs and X.509 bundles.
    X509(FetchX509Args),
}

/// Subcommands of `signet-agent api validate`.
#[derive(Debug, clap::Subcommand)]
pub enum ValidateCommand {
    /// Validates a JWT-SVID for an audience. Exits 0 if it is valid, else 1.
    Jwt(ValidateJwtArgs),
}

/// Location of the Workload API.
#[derive(Debug, clap::Args)]
pub struct EndpointArgs {
    /// Path of the Workload API socket [default: from SPIFFE_ENDPOINT_SOCKET, else
    /// /tmp/signet-agent/public/api.sock].
    #[arg(long, value_name = "PATH")]
    pub socket_path: Option<PathBuf>,
}

/// Arguments of `signet-agent api fetch x509`.
#[derive(Debug, clap::Args)]
pub struct FetchX509Args {
    #[command(flatten)]
    pub endpoint: EndpointArgs,
    /// Directory to write svid.N.pem, svid.N.key (mode 0600), bundle.N.pem and
    /// federated_bundle.N.M.pem into; created if missing.
    #[arg(long, value_name = "DIR")]
    pub write: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    pub output: OutputFormat,
}

/// Arguments of `signet-agent api fetch jwt`.
#[derive(Debug, clap::Args)]
pub struct FetchJwtArgs {
    #[command(flatten)]
    pub endpoint: EndpointArgs,
    /// Audience to put in the tokens' `aud` claim; repeat for several.
    #[arg(long, required = true, value_name = "AUDIENCE")]
    pub audience: Vec<String>,
    /// SPIFFE ID to fetch a JWT-SVID for [default: every identity of the caller].
    #[arg(long, value_name = "ID")]
    pub spiffe_id: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    pub output: OutputFormat,
}

/// Arguments of `signet-agent api fetch jwt-bundle`.
#[derive(Debug, clap::Args)]
pub struct FetchJwtBundleArgs {
    #[command(flatten)]
    pub endpoint: EndpointArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    pub output: OutputFormat,
}

/// Arguments of `signet-agent api validate jwt`.
#[derive(Debug, clap::Args)]
pub struct ValidateJwtArgs {
    #[command(flatten)]
    pub endpoint: EndpointArgs,
    /// Audience the token must contain in its `aud` claim.
    #[arg(long, value_name = "AUDIENCE")]
    pub audience: String,
    /// The JWT-SVID in JWS compact serialization, or `-` to read it from standard input. A
    /// token on the command line is visible to other users in the process list, so prefer `-`
    /// or --svid-file.
    #[arg(long, value_name = "TOKEN", required_unless_present = "svid_file")]
    pub svid: Option<String>,
    /// File that contains the JWT-SVID. Blanks around the token are ignored.
    #[arg(long, value_name = "PATH", conflicts_with = "svid")]
    pub svid_file: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    pub output: OutputFormat,
}

/// Arguments of `signet-agent api watch`.
#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    #[command(flatten)]
    pub endpoint: EndpointArgs,
    /// Output format; `json` prints one JSON object per line and update.
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    pub output: OutputFormat,
}

/// Arguments of `signet-agent healthcheck`.
#[derive(Debug, clap::Args)]
pub struct HealthcheckArgs {
    #[command(flatten)]
    pub endpoint: EndpointArgs,
    /// Maximum time to wait for the agent's response, for example `10s`; must be above zero.
    #[arg(long, default_value = "10s", value_parser = parse_ttl)]
    pub timeout: Duration,
}

/// Output format of the `api` and `explain` commands.
#[derive(Clone, Copy, Debug, Eq, PartialEq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Aligned text for people.
    Human,
    /// JSON for scripts.
    Json,
}

/// Runs an `api` subcommand.
///
/// # Errors
///
/// When the Workload API cannot be reached, denies the request or returns unusable material,
/// or when `--write` fails.
pub async fn run_api(command: ApiCommand) -> anyhow::Result<()> {
    match command {
        ApiCommand::Fetch(FetchCommand::Jwt(args)) => jwt::fetch(&args).await,
        ApiCommand::Fetch(FetchCommand::JwtBundle(args)) => jwt::fetch_bundles(&args).await,
        ApiCommand::Fetch(FetchCommand::X509(args)) => x509::fetch(&args).await,
        ApiCommand::Validate(ValidateCommand::Jwt(args)) => jwt::validate(&args).await,
        ApiCommand::Watch(args) => x509::watch(&args).await,
    }
}

// === impl EndpointArgs ===

impl EndpointArgs {
    /// Returns the endpoint from `--socket-path`, else from `SPIFFE_ENDPOINT_SOCKET`, else the
    /// default socket path.
    ///
    /// # Errors
    ///
    /// When `SPIFFE_ENDPOINT_SOCKET` is set but is not a valid endpoint URI.
    pub fn endpoint(&self) -> anyhow::Result<Endpoint> {
        if let Some(path) = &self.socket_path {
            return Ok(Endpoint::Unix(path.clone()));
        }
        let Some(value) = std::env::var_os(ENDPOINT_SOCKET_ENV) else {
            return Ok(Endpoint::Unix(PathBuf::from(DEFAULT_SOCKET_PATH)));
        };
        let text = value.to_str().with_context(|| {
            format!("{ENDPOINT_SOCKET_ENV} {value:?} is not valid UTF-8; use --socket-path")
        })?;
        Endpoint::parse(text).with_context(|| {
            format!(
                "invalid {ENDPOINT_SOCKET_ENV} {text:?}: expected unix:///path/to/api.sock, \
                 or use --socket-path"
            )
        })
    }
}

/// Connects to the Workload API at `endpoint`.
async fn connect(endpoint: &Endpoint) -> anyhow::Result<WorkloadApiClient> {
    WorkloadApiClient::connect(endpoint.clone())
        .await
        .with_context(|| {
            format!(
                "connecting to the Workload API at {} failed (is signet-agent running with \
                 this socket path?)",
                describe(endpoint)
            )
        })
}

/// Returns the endpoint as a user would type it.
pub(crate) fn describe(endpoint: &Endpoint) -> String {
    match endpoint {
        Endpoint::Unix(path) => path.display().to_string(),
        Endpoint::Tcp { host, port } => format!("tcp:{host}:{port}"),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests;
