//! The `signet-agent` binary: `run` starts the agent, `api` and `healthcheck` call a running
//! agent's Workload API, `helper` writes its SVID to files.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use signet_agent::cli::{self, Cli, Command};
use signet_agent::config::{AgentConfig, RunArgs};
use signet_agent::helper::{self, HelperArgs, HelperConfig};
use signet_agent::run;
use signet_core::process::{
    EXIT_EXPLAIN_FAILED, EXIT_INVALID_CONFIG, init_tracing, shutdown_signal, usage_exit,
};
use tokio::runtime::Runtime;

// NOTE: the agent keeps the system allocator: `signet-bench memory` measured no lower resident
// memory per cached X509-SVID with mimalloc or jemalloc (docs/benchmarks.md).
/// Log filter when `SIGNET_LOG` is unset: our crates at info, everything else at warn.
const DEFAULT_LOG_FILTER: &str = "warn,signet_agent=info,signet_core=info";

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return usage_exit(&error),
    };
    init_tracing(DEFAULT_LOG_FILTER);
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
        Command::Helper(args) => return run_helper(&runtime, args),
        Command::Explain(args) => return explain(&runtime, &args),
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
/// already contains (the spiffe crate repeats its sources in its messages). A gRPC status counts
/// as its message, because its Display adds the code to a message the spiffe crate already shows.
fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    let mut previous = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        let repeated = match cause.downcast_ref::<tonic::Status>() {
            Some(status) => previous.contains(status.message()),
            None => previous.contains(&text),
        };
        if repeated {
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
            return ExitCode::from(EXIT_INVALID_CONFIG);
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

/// Exits 0 when the workload receives an identity, 1 when it does not, and
/// [`EXIT_EXPLAIN_FAILED`] when the agent could not explain it.
fn explain(runtime: &Runtime, args: &cli::ExplainArgs) -> ExitCode {
    match runtime.block_on(cli::explain(args)) {
        Ok(cli::Verdict::Issue) => ExitCode::SUCCESS,
        Ok(cli::Verdict::NoIdentity) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("error: {}", one_line(&error));
            ExitCode::from(EXIT_EXPLAIN_FAILED)
        }
    }
}

fn run_helper(runtime: &Runtime, args: HelperArgs) -> ExitCode {
    let config = match HelperConfig::from_args(args) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(EXIT_INVALID_CONFIG);
        }
    };
    match runtime.block_on(helper::run(config, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", one_line(&error));
            ExitCode::FAILURE
        }
    }
}
