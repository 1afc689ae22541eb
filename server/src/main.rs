//! The `signet-server` binary: `run` starts the server, the other subcommands talk to a running
//! server over its admin socket.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use signet_core::process::{
    EXIT_EXPLAIN_FAILED, EXIT_INVALID_CONFIG, init_tracing, shutdown_signal, usage_exit,
};
use signet_server::cli::{self, EntryCommand, OperatorCommand};
use signet_server::config::{Config, RunArgs};
use signet_server::run;

/// Log filter when `SIGNET_LOG` is unset: our crates at info, everything else at warn.
const DEFAULT_LOG_FILTER: &str = "warn,signet_server=info,signet_core=info";

/// Signet server: signs X509-SVIDs for attested agents and their workloads.
#[derive(Debug, Parser)]
#[command(name = "signet-server", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Runs the server.
    Run(RunArgs),
    #[command(flatten)]
    Operator(OperatorCommand),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return usage_exit(&error),
    };
    init_tracing(DEFAULT_LOG_FILTER);
    // Another provider can only be installed already if this process did it, so the error is
    // harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();

    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: failed to start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Run(args) => run_server(&runtime, &args),
        Command::Operator(OperatorCommand::Entry(EntryCommand::Explain(args))) => {
            explain(&runtime, &args)
        }
        Command::Operator(command) => match runtime.block_on(cli::execute(command)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: {error:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn run_server(runtime: &tokio::runtime::Runtime, args: &RunArgs) -> ExitCode {
    let config = match Config::load(args) {
        Ok(config) => config,
        Err(error) => {
            // The alternate form of anyhow's Display adds the causes, such as the OS error.
            eprintln!("error: {:#}", anyhow::Error::new(error));
            return ExitCode::from(EXIT_INVALID_CONFIG);
        }
    };
    match runtime.block_on(run::run(config, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "Server failed");
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Exits 0 when an agent is authorized for the entry, 1 when none is, and
/// [`EXIT_EXPLAIN_FAILED`] when the entry could not be explained.
fn explain(runtime: &tokio::runtime::Runtime, args: &cli::ExplainArgs) -> ExitCode {
    match runtime.block_on(cli::explain(args)) {
        Ok(cli::Verdict::Authorized) => ExitCode::SUCCESS,
        Ok(cli::Verdict::NoAgent) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(EXIT_EXPLAIN_FAILED)
        }
    }
}
