//! The `signet-oidc` binary: `run` serves the OIDC discovery document and JWKS of a Signet server.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use signet_core::process::{EXIT_INVALID_CONFIG, init_tracing, shutdown_signal};
use signet_oidc::config::{Config, RunArgs};
use signet_oidc::run;

/// Log filter when `SIGNET_LOG` is unset: our crates at info, everything else at warn.
const DEFAULT_LOG_FILTER: &str = "warn,signet_oidc=info,signet_core=info";

/// Signet OIDC discovery provider: publishes JWT-SVID keys for OIDC relying parties.
#[derive(Debug, Parser)]
#[command(name = "signet-oidc", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Serves the discovery document and JWKS.
    Run(RunArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return usage_error(&error),
    };
    init_tracing(DEFAULT_LOG_FILTER);
    // Another provider can only be installed already if this process did it, so the error is
    // harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let Command::Run(args) = cli.command;
    let config = match Config::load(&args) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(EXIT_INVALID_CONFIG);
        }
    };
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "Starting signet-oidc");

    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: failed to start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run::run(config, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "Provider failed");
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Prints help, the version or a usage error; usage errors exit with `EX_USAGE` (64) like an
/// invalid configuration.
fn usage_error(error: &clap::Error) -> ExitCode {
    // Printing can fail only if stdout or stderr is closed, and then there is nowhere to report it.
    let _ = error.print();
    if error.use_stderr() {
        ExitCode::from(EXIT_INVALID_CONFIG)
    } else {
        ExitCode::SUCCESS
    }
}
