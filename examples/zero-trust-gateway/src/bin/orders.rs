//! `orders`: the protected service. It accepts only mutual TLS connections from workloads of its
//! own trust domain, and decides on every request with the policy file: who connects (the
//! gateway, inventory) and which client is behind the gateway (the JWT-SVID in
//! `authorization: Bearer ...`, validated locally for the `orders` audience).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use axum::extract::Path;
use axum::routing::get;
use axum::{Extension, Router};
use clap::Parser;
use signet_sdk::policy::PolicyWatcher;
use signet_sdk::serve_http;
use signet_sdk::{AllowedPeers, CallerJwt, Identities, MtlsListener, PolicyLayer, SpiffeIdPattern};
use zero_trust_gateway::ORDERS_AUDIENCE;
use zero_trust_gateway::cli::workload_identity;

/// How often orders checks the policy file for changes.
const POLICY_POLL_INTERVAL: Duration = Duration::from_secs(2);

/// Serves the orders API.
#[derive(Debug, Parser)]
#[command(name = "orders")]
struct Args {
    /// Address to listen on.
    #[arg(long, value_name = "HOST:PORT")]
    listen: SocketAddr,
    /// Policy file (TOML or YAML), reloaded when it changes.
    #[arg(long, value_name = "FILE")]
    policy: PathBuf,
    /// Audience that caller JWT-SVIDs must carry.
    #[arg(long, default_value = ORDERS_AUDIENCE)]
    audience: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    signet_core::process::init_tracing("warn,orders=info,signet_sdk=info");
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("orders: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let identity = workload_identity().await?;

    // The TLS layer admits any workload of our trust domain that proves its identity. The
    // policy then decides per request, so a workload it does not allow gets a 403 and a reason.
    let trust_domain = identity.spiffe_id()?.trust_domain().clone();
    let peers = AllowedPeers::new([SpiffeIdPattern::trust_domain(trust_domain)]);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {} failed", args.listen))?;
    let listener = MtlsListener::new(listener, identity.server_config(peers)?)?;

    let (policy, _watcher) = PolicyWatcher::spawn(&args.policy, POLICY_POLL_INTERVAL)
        .with_context(|| format!("loading the policy {} failed", args.policy.display()))?;
    let callers = CallerJwt::new(identity.jwt_source().await?, [args.audience]);

    let app = Router::new()
        .route("/orders/{id}", get(show_order).delete(cancel_order))
        .route("/orders/{id}/items", get(order_items))
        .layer(PolicyLayer::new(policy).callers(callers));
    tracing::info!(address = %listener.local_addr(), "Serving the orders API");
    tokio::select! {
        () = serve_http(listener, app) => Ok(()),
        () = signet_core::process::shutdown_signal() => Ok(()),
    }
}

async fn show_order(Path(id): Path<String>, Extension(who): Extension<Identities>) -> String {
    format!("order {id} {}", describe(&who))
}

async fn order_items(Path(id): Path<String>, Extension(who): Extension<Identities>) -> String {
    format!("items of order {id} {}", describe(&who))
}

async fn cancel_order(Path(id): Path<String>, Extension(who): Extension<Identities>) -> String {
    format!("order {id} cancelled {}", describe(&who))
}

/// Returns "for <caller> via <peer>", or "for <peer>" when the request carried no caller. The
/// listener admits no connection without a client certificate, so the peer is always known.
fn describe(who: &Identities) -> String {
    let peer = who
        .peer
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    match &who.caller {
        Some(caller) => format!("for {caller} via {peer}"),
        None => format!("for {peer}"),
    }
}
