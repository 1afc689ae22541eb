//! `signet-agent run`: attests the node, keeps entries and SVIDs in sync, and serves the
//! Workload API until shutdown.

use std::future::Future;
use std::sync::Arc;

use anyhow::Context as _;
use signet_core::ids::redacted_agent_id;
use tokio::sync::watch;

use crate::cache::Cache;
use crate::config::AgentConfig;
use crate::node::Node;
use crate::sync;
use crate::workload_api::WorkloadApiListener;

/// Runs the agent until `shutdown` completes or its SVID expires without renewal.
///
/// # Errors
///
/// Node attestation failures, a Workload API socket that cannot be bound or served, and an
/// agent SVID that expired because the server could not renew it.
///
/// # Cancel safety
///
/// Not cancel safe: complete `shutdown` instead, so open Workload API streams end cleanly and
/// the socket file is removed.
pub async fn run(config: AgentConfig, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let mut shutdown = std::pin::pin!(shutdown);
    let node = tokio::select! {
        node = Node::start(&config) => Arc::new(node.context("node attestation failed")?),
        () = &mut shutdown => return Ok(()),
    };

    let cache = Cache::new(config.trust_domain.clone());
    let listener = WorkloadApiListener::bind(&config.socket_path)
        .context("failed to start the Workload API")?;
    let mut syncing = std::pin::pin!(sync::run(Arc::clone(&node), cache.clone()));

    let (stop, stopped) = watch::channel(false);
    let serving = listener.serve(cache.clone(), async move {
        let mut stopped = stopped;
        // An error means the sender is gone, which also means stop.
        let _ = stopped.wait_for(|stop| *stop).await;
    });
    let mut serving = std::pin::pin!(serving);
    let mut ready = std::pin::pin!(first_sync(cache, &node, &config));

    let mut renewal = std::pin::pin!(node.keep_renewed());
    let mut is_ready = false;
    let outcome = loop {
        tokio::select! {
            () = &mut ready, if !is_ready => is_ready = true,
            () = &mut syncing => break Err(anyhow::anyhow!("entry sync stopped")),
            () = &mut shutdown => break Ok(()),
            error = &mut renewal => break Err(anyhow::Error::new(error)),
            result = &mut serving => return result.context("Workload API failed"),
        }
    };

    stop.send_replace(true);
    serving.await.context("Workload API failed")?;
    tracing::info!("Agent stopped");
    outcome
}

/// Waits for the first complete sync, then logs that the agent is ready.
async fn first_sync(cache: Cache, node: &Node, config: &AgentConfig) {
    let mut snapshots = cache.subscribe();
    // An error means the cache is gone, which ends the agent anyway.
    if snapshots
        .wait_for(|snapshot| snapshot.is_synced())
        .await
        .is_ok()
    {
        tracing::info!(
            spiffe_id = %redacted_agent_id(node.agent_id()),
            socket_path = %config.socket_path.display(),
            "Agent ready"
        );
    }
}
