//! An axum service with mutual TLS, caller JWT-SVIDs and a policy file that reloads on change.
//!
//! ```sh
//! SPIFFE_ENDPOINT_SOCKET=unix:/tmp/signet-agent/public/api.sock \
//!     cargo run -p signet-sdk --example server -- 127.0.0.1:8443 sdk/examples/policy.toml \
//!     spiffe://example.org/my-service
//! ```
//!
//! Arguments: the address to listen on, the policy file (`sdk/examples/policy.toml` fits the
//! README quick start), and the audience that caller JWT-SVIDs must carry. An optional fourth
//! argument is the SPIFFE ID to serve as when the agent serves several SVIDs; without it the
//! server uses the first. Clients of the service's own trust domain may connect; the policy decides what
//! they may do.

use std::time::Duration;

use anyhow::Context;
use axum::routing::get;
use axum::{Extension, Router};
use signet_sdk::policy::PolicyWatcher;
use signet_sdk::{AllowedPeers, CallerJwt, Identities, MtlsListener, PolicyLayer};
use signet_sdk::{SpiffeId, SpiffeIdPattern, SvidSelection, WorkloadIdentity, serve_http};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let mut args = std::env::args().skip(1);
    let (Some(address), Some(policy_file), Some(audience)) =
        (args.next(), args.next(), args.next())
    else {
        anyhow::bail!("usage: server <address> <policy file> <audience> [SPIFFE ID]");
    };

    let mut builder = WorkloadIdentity::builder();
    if let Some(id) = args.next() {
        let id = SpiffeId::new(&id).with_context(|| format!("invalid SPIFFE ID {id:?}"))?;
        builder = builder.svid(SvidSelection::SpiffeId(id));
    }
    let identity = builder.build().await?;
    let own_id = identity.spiffe_id()?;
    let peers = AllowedPeers::new([SpiffeIdPattern::trust_domain(own_id.trust_domain().clone())]);
    let tcp = tokio::net::TcpListener::bind(&address)
        .await
        .with_context(|| format!("binding {address}"))?;
    let listener = MtlsListener::new(tcp, identity.server_config(peers)?)?;

    // The watcher reloads the file for as long as `policy` lives.
    let (policy, _watcher) = PolicyWatcher::spawn(&policy_file, Duration::from_secs(2))?;
    let callers = CallerJwt::new(identity.jwt_source().await?, [audience]);
    let app = Router::new()
        .route("/orders/{id}", get(order).delete(order))
        .route("/orders/{id}/items", get(order))
        .layer(PolicyLayer::new(policy).callers(callers));

    tracing::info!(%address, spiffe_id = %own_id, "Listening");
    serve_http(listener, app).await;
    Ok(())
}

/// Returns the identities the policy layer found.
async fn order(Extension(identities): Extension<Identities>) -> String {
    let show = |id: Option<SpiffeId>| id.map_or_else(|| "-".to_owned(), |id| id.to_string());
    format!(
        "peer {} caller {}\n",
        show(identities.peer),
        show(identities.caller)
    )
}
