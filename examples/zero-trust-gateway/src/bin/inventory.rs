//! `inventory`: a service that reads order items straight from the orders service, with
//! mutual TLS and no gateway in between. Prints the outcome as one JSON line.

use std::process::ExitCode;

use clap::Parser;
use zero_trust_gateway::cli::{TargetArgs, call_as, report, workload_identity};
use zero_trust_gateway::client::Outcome;

/// Calls the orders API as inventory.
#[derive(Debug, Parser)]
#[command(name = "inventory")]
struct Args {
    #[command(flatten)]
    target: TargetArgs,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    signet_core::process::init_tracing("warn");
    report("inventory", run(Args::parse()).await)
}

async fn run(args: Args) -> anyhow::Result<Outcome> {
    let identity = workload_identity().await?;
    call_as(&identity, &args.target, None).await
}
