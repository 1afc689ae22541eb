//! The `signet-server` binary: `run` starts the server, the other subcommands talk to a running
//! server over its admin socket.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use signet_server::cli::{self, OperatorCommand};
use signet_server::config::{Config, ConfigError, LOG_FILTER_ENV, LOG_FORMAT_ENV, RunArgs};
use signet_server::run;
use tracing_subscriber::EnvFilter;

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
        Err(error) => return usage_error(&error),
    };
    init_tracing();
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
            eprintln!("error: {error}");
            return ExitCode::from(ConfigError::EXIT_CODE);
        }
    };
    let shutdown = async {
        if let Err(error) = run::shutdown_signal().await {
            tracing::error!(error = %error, "Failed to install signal handlers");
        }
    };
    match runtime.block_on(run::run(config, shutdown)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "Server failed");
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
        ExitCode::from(ConfigError::EXIT_CODE)
    } else {
        ExitCode::SUCCESS
    }
}

fn init_tracing() {
    let filter = std::env::var(LOG_FILTER_ENV).unwrap_or_else(|_| DEFAULT_LOG_FILTER.to_owned());
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|error| {
        eprintln!(
            "warning: invalid {LOG_FILTER_ENV} {filter:?} ({error}); using {DEFAULT_LOG_FILTER:?}"
        );
        EnvFilter::new(DEFAULT_LOG_FILTER)
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match std::env::var(LOG_FORMAT_ENV).as_deref() {
        Ok("json") => builder.json().init(),
        Ok("plain") | Err(_) => builder.init(),
        Ok(other) => {
            builder.init();
            tracing::warn!(value = other, "Unknown {LOG_FORMAT_ENV}; use plain or json");
        }
    }
}
