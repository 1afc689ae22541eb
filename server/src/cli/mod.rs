//! The operator commands of `signet-server` (`entry`, `token`, `agent`, `bundle`, `jwt`, `x509`,
//! `healthcheck`), which call the admin API over the admin socket.

mod agent;
mod bundle;
mod client;
mod entry;
mod entry_apply;
mod entry_file;
mod entry_json;
mod jwt;
mod localauthority;
mod output;
mod token;
mod x509;

use std::io::{self, Write};
use std::path::PathBuf;

use signet_proto::spire::api::types;
use tonic::Status;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::config::DEFAULT_ADMIN_SOCKET;
use crate::model::{unix_now, unix_time_text};

pub use agent::AgentCommand;
pub use bundle::BundleCommand;
pub use entry::EntryCommand;
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
    /// Checks that the server responds on its admin socket and that its trust bundle has an
    /// unexpired X.509 authority.
    Healthcheck(CommonArgs),
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
        OperatorCommand::Healthcheck(common) => healthcheck(&common).await,
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

async fn healthcheck(common: &CommonArgs) -> anyhow::Result<()> {
    let channel = client::connect(&common.admin_socket).await?;
    let bundle = client::fetch_bundle(channel)
        .await
        .map_err(|error| anyhow::anyhow!("server is unhealthy: {error:#}"))?;
    check_x509_authorities(&bundle, unix_now())
        .map_err(|reason| anyhow::anyhow!("server is unhealthy: {reason}"))?;
    match common.output {
        OutputFormat::Human => writeln!(io::stdout().lock(), "Server is healthy.")?,
        OutputFormat::Json => output::print_json(&serde_json::json!({ "healthy": true }))?,
    }
    Ok(())
}

/// Fails when no X.509 authority of the bundle is valid at `now` (Unix seconds), because then
/// nothing the server signs verifies.
fn check_x509_authorities(bundle: &types::Bundle, now: i64) -> Result<(), String> {
    let mut latest_expiry = None;
    for authority in &bundle.x509_authorities {
        let (_, certificate) = X509Certificate::from_der(&authority.asn1)
            .map_err(|error| format!("the trust bundle has an invalid X.509 authority: {error}"))?;
        let not_after = certificate.validity().not_after.timestamp();
        latest_expiry = latest_expiry.max(Some(not_after));
    }
    match latest_expiry {
        None => Err("the trust bundle has no X.509 authority".to_owned()),
        Some(expiry) if expiry <= now => Err(format!(
            "every X.509 authority in the trust bundle has expired, the latest at {}: restart \
             the server to create a new CA, then give agents the new trust bundle",
            unix_time_text(expiry)
        )),
        Some(_) => Ok(()),
    }
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

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, KeyPair};
    use time::{Duration, OffsetDateTime};

    use super::*;

    /// Returns a bundle of self-signed authorities that expire at the given offsets from now.
    fn bundle_expiring_in(offsets: &[Duration]) -> types::Bundle {
        let key = KeyPair::generate().unwrap();
        let now = OffsetDateTime::now_utc();
        let x509_authorities = offsets
            .iter()
            .map(|offset| {
                let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
                params.not_before = now - Duration::days(2);
                params.not_after = now + *offset;
                types::X509Certificate {
                    asn1: params.self_signed(&key).unwrap().der().to_vec(),
                    ..types::X509Certificate::default()
                }
            })
            .collect();
        types::Bundle {
            x509_authorities,
            ..types::Bundle::default()
        }
    }

    #[test]
    fn healthcheck_fails_when_every_authority_expired() {
        let bundle = bundle_expiring_in(&[Duration::hours(-2), Duration::hours(-1)]);

        let reason = check_x509_authorities(&bundle, unix_now()).unwrap_err();

        assert!(reason.contains("every X.509 authority"), "{reason}");
        let (_, after) = reason.split_once("the latest at ").unwrap();
        let latest = humantime::parse_rfc3339(after.get(..20).unwrap()).unwrap();
        let expected = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        let difference = expected.duration_since(latest).unwrap_or_default();
        assert!(difference.as_secs() < 60, "{reason}");
    }

    #[test]
    fn healthcheck_passes_with_one_current_authority() {
        let bundle = bundle_expiring_in(&[Duration::hours(-1), Duration::hours(1)]);
        assert_eq!(check_x509_authorities(&bundle, unix_now()), Ok(()));
    }

    #[test]
    fn healthcheck_fails_without_authorities() {
        let reason = check_x509_authorities(&types::Bundle::default(), unix_now()).unwrap_err();
        assert!(reason.contains("no X.509 authority"), "{reason}");
    }
}
