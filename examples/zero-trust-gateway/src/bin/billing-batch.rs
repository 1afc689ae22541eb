//! `billing-batch`: an automated client behind the gateway. It fetches a JWT-SVID for the
//! orders audience from the Workload API, calls the orders API through nginx with it, and
//! checks that the gateway's X509-SVID carries the gateway's SPIFFE ID. Prints the outcome as
//! one JSON line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use zero_trust_gateway::ORDERS_AUDIENCE;
use zero_trust_gateway::cli::{TargetArgs, call_as, report, workload_identity};
use zero_trust_gateway::client::{BearerToken, Outcome};
use zeroize::Zeroizing;

/// Calls the orders API as billing-batch.
#[derive(Debug, Parser)]
#[command(name = "billing-batch")]
struct Args {
    #[command(flatten)]
    target: TargetArgs,
    /// Audience of the JWT-SVID to fetch.
    #[arg(long, default_value = ORDERS_AUDIENCE)]
    audience: String,
    /// Send the JWT-SVID in this file instead of fetching one.
    #[arg(long, value_name = "FILE", conflicts_with = "no_token")]
    token_file: Option<PathBuf>,
    /// Send no JWT-SVID.
    #[arg(long)]
    no_token: bool,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    signet_core::process::init_tracing("warn");
    report("billing-batch", run(Args::parse()).await)
}

async fn run(args: Args) -> anyhow::Result<Outcome> {
    let identity = workload_identity().await?;
    let token = match (&args.token_file, args.no_token) {
        (_, true) => None,
        (Some(path), false) => {
            let text = std::fs::read_to_string(path)
                .map(Zeroizing::new)
                .with_context(|| format!("reading the JWT-SVID from {} failed", path.display()))?;
            Some(BearerToken::new(&text))
        }
        (None, false) => {
            let svid = identity
                .fetch_jwt_svid([args.audience.as_str()])
                .await
                .with_context(|| format!("fetching a JWT-SVID for {:?} failed", args.audience))?;
            Some(BearerToken::new(svid.token()))
        }
    };
    call_as(&identity, &args.target, token.as_ref()).await
}
