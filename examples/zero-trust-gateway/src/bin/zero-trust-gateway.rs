//! `zero-trust-gateway`: runs the whole example and prints the table of attempted calls. Exits
//! 0 when every call had its expected outcome, 1 when one did not, 2 when the scenario could
//! not run.

use std::process::ExitCode;

use clap::Parser;
use zero_trust_gateway::scenario::{self, table};

/// Runs the zero-trust gateway scenario on loopback addresses in a temporary directory.
#[derive(Debug, Parser)]
#[command(name = "zero-trust-gateway")]
struct Args {
    /// Print the rows as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    signet_core::process::init_tracing("warn");
    let args = Args::parse();
    // On SIGTERM or SIGINT the scenario is dropped, which stops nginx, orders, the agent and
    // the server before the runner exits.
    let result = tokio::select! {
        result = scenario::run() => result,
        () = signet_core::process::shutdown_signal() => Err(anyhow::anyhow!("interrupted")),
    };
    let rows = match result {
        Ok(rows) => rows,
        Err(error) => {
            eprintln!("zero-trust-gateway: {error:#}");
            return ExitCode::from(2);
        }
    };
    if args.json {
        match serde_json::to_string_pretty(&rows) {
            Ok(json) => println!("{json}"),
            Err(error) => {
                eprintln!("zero-trust-gateway: {error}");
                return ExitCode::from(2);
            }
        }
    } else {
        print!("{}", table::render(&rows));
    }
    if rows.iter().all(table::Row::is_as_expected) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
