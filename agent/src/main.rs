//! The `signet-agent` binary: `run` starts the agent, `api` and `healthcheck` call a running
//! agent's Workload API.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use signet_agent::cli::{self, Cli, Command};
use signet_agent::config::{AgentConfig, LOG_FILTER_ENV, LOG_FORMAT_ENV, RunArgs};
use signet_agent::run;
use tokio::runtime::Runtime;
use tracing_subscriber::EnvFilter;

/// Log filter when `SIGNET_LOG` is unset: our crates at info, everything else at warn.
const DEFAULT_LOG_FILTER: &str = "warn,signet_agent=info,signet_core=info";
/// Exit code for invalid configuration: `EX_USAGE` from sysexits.h, as signet-server uses.
const INVALID_CONFIG_EXIT_CODE: u8 = 64;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    // Another provider can only be installed already if this process did it, so the error is
    // harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();

    let runtime = match Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: failed to start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = match cli.command {
        Command::Run(args) => return run_agent(&runtime, args),
        Command::Api(command) => runtime.block_on(cli::run_api(command)),
        Command::Healthcheck(args) => runtime.block_on(cli::healthcheck(&args)),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", one_line(&error));
            ExitCode::FAILURE
        }
    }
}

/// Joins an error and its causes with ": ", leaving out a cause whose text the previous message
/// already contains (the spiffe crate repeats its sources in its messages).
fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    let mut previous = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if previous.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
        previous = text;
    }
    line
}

fn run_agent(runtime: &Runtime, args: RunArgs) -> ExitCode {
    let config = match AgentConfig::from_args(args) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(INVALID_CONFIG_EXIT_CODE);
        }
    };
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "Starting signet-agent");
    match runtime.block_on(run::run(config, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "Agent failed");
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Completes on SIGTERM or SIGINT. If the handlers cannot be installed, it logs the error and
/// never completes, so the agent keeps running until it is killed.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};

    let (terminate, interrupt) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(terminate), Ok(interrupt)) => (terminate, interrupt),
        (Err(error), _) | (_, Err(error)) => {
            tracing::error!(%error, "Failed to install signal handlers");
            return std::future::pending().await;
        }
    };
    let (mut terminate, mut interrupt) = (terminate, interrupt);
    tokio::select! {
        _ = terminate.recv() => tracing::info!(signal = "SIGTERM", "Shutting down"),
        _ = interrupt.recv() => tracing::info!(signal = "SIGINT", "Shutting down"),
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
